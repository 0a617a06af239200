//! The real binary: one command is the whole system, and it keeps committed users across
//! kill -9.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::PASSWORD;

/// Starts `user-service` (with its embedded auth-service) on free ports, data in `dir`.
fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_user-service"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER_LISTEN_ADDR", "127.0.0.1:0")
        .env("AUTH_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the binary logs its address").unwrap();
        if line.contains("user-service listening")
            && let Some(rest) = line.split(" addr=").nth(1)
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, format!("http://{addr}"))
}

#[tokio::test]
async fn a_signed_up_user_survives_kill_9_of_the_whole_system() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (mut child, base) = start(dir.path());
    let response = http
        .post(format!("{base}/v1/users"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "displayName": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    child.kill().unwrap(); // SIGKILL, right after the 201
    child.wait().unwrap();
    // The default relative sqlite:// URLs put everything under ./data.
    assert!(dir.path().join("data/user.db").exists() && dir.path().join("data/auth.db").exists());

    let (mut child, base) = start(dir.path());
    let login: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"]
        .as_str()
        .expect("login works after the crash");
    let me: Value = http
        .get(format!("{base}/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["displayName"], "Ada");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}
