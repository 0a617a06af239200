//! The real binary: one command is the whole system, and it keeps committed users across
//! kill -9.

use grimos_test_support::process::{
    self, Log, assert_none_logged, jwt_signature, kill_and_read_log, stop_with,
};
use std::process::{Child, Command};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use grimos_test_support::app::TestData;
use grimos_test_support::backend::Backend;
use serde_json::{Value, json};

use crate::helpers::PASSWORD;

/// Starts `user-service` (with its embedded auth-service) on free ports, in the folder of
/// `data`: on SQLite with the default database URLs (files under `./data`), on PostgreSQL with
/// the database of `data`.
async fn start(data: &TestData) -> (Child, String) {
    let (child, base, _, _) = start_logging(data, &[("RUST_LOG", "info")]).await;
    (child, base)
}

/// [`start`] with `env` added; every stderr line is collected, by a thread that ends when the
/// binary's stderr does.
async fn start_logging(
    data: &TestData,
    env: &[(&str, &str)],
) -> (Child, String, Log, JoinHandle<()>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_user-service"));
    command
        .current_dir(data.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER_LISTEN_ADDR", "127.0.0.1:0")
        .env("AUTH_LISTEN_ADDR", "127.0.0.1:0")
        // No drain on SIGTERM, where the test is not about the drain.
        .env("GRIMOS_DRAIN_GRACE", "0s")
        .envs(env.iter().copied());
    if data.backend() == Backend::Postgres {
        command
            .env("USER_DATABASE_URL", data.database_url("user.db").await)
            .env("AUTH_DATABASE_URL", data.database_url("auth.db").await);
    }
    let (child, addr, log, reader) = process::start_logging(command, "user-service listening");
    (child, format!("http://{addr}"), log, reader)
}

/// Signs Ada up over HTTP: the 201's body.
async fn sign_up(http: &reqwest::Client, base: &str) -> Value {
    let response = http
        .post(format!("{base}/v1/users"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "displayName": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Ada's login over HTTP: the answer's body.
async fn login(http: &reqwest::Client, base: &str) -> Value {
    http.post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_up_user_survives_kill_9_of_the_whole_system() {
    let data = TestData::new();
    let http = reqwest::Client::new();
    let (mut child, base) = start(&data).await;
    sign_up(&http, &base).await;
    child.kill().unwrap(); // SIGKILL, right after the 201
    child.wait().unwrap();
    if data.backend() == Backend::Sqlite {
        // The default relative sqlite:// URLs put everything under ./data.
        let path = data.path();
        assert!(path.join("data/user.db").exists() && path.join("data/auth.db").exists());
    }

    let (child, base) = start(&data).await;
    let login = login(&http, &base).await;
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

    let exit = stop_with(child, "-TERM").await;
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

#[tokio::test]
async fn an_in_flight_request_finishes_on_sigterm() {
    let data = TestData::new();
    // Logins slowed by 1 s from the third attempt on; request starts logged (tower-http).
    let (child, base, log, _) = start_logging(
        &data,
        &[
            ("RUST_LOG", "info,tower_http=debug"),
            ("AUTH_LOGIN_SLOWDOWN", "1s"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    sign_up(&http, &base).await;
    let login = |password: &str, request_id: &str| {
        http.post(format!("{base}/v1/auth/login"))
            .header("x-request-id", request_id)
            .json(&json!({"email": "ada@example.com", "password": password}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(login("wrong password", "warm").await.unwrap().status(), 401);
    }
    let slow = tokio::spawn(login(PASSWORD, "in-flight-canary"));
    // In flight once user-service has logged its start.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("in-flight-canary") && l.contains("started processing request"))
    {
        assert!(Instant::now() < deadline, "the login never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!slow.is_finished(), "the login is slowed by 1 s");
    let exit = stop_with(child, "-TERM").await;
    let finished = slow.await.unwrap().unwrap();
    assert_eq!(finished.status(), 200, "the in-flight login completed");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

#[tokio::test]
async fn sigterm_drains_readyz_503_for_the_grace_and_sigint_stops_at_once() {
    const GRACE: Duration = Duration::from_secs(2);
    let data = TestData::new();
    let (child, base, _, _) = start_logging(&data, &[("GRIMOS_DRAIN_GRACE", "2s")]).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    assert_eq!(get("/readyz").await.unwrap().status(), 200);

    // SIGTERM (an orchestrator's stop): /readyz 503 at once, requests still served...
    let start = Instant::now();
    process::signal(&child, "-TERM");
    while get("/readyz").await.unwrap().status() != 503 {
        assert!(
            start.elapsed() < GRACE,
            "/readyz still 200 during the drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = http
        .post(format!("{base}/v1/users"))
        .json(&json!({"email": "late@example.com", "password": PASSWORD, "displayName": "Late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "a sign-up during the drain");
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert!(
        start.elapsed() < GRACE,
        "the drain took {:?}",
        start.elapsed()
    );
    // ... until the grace has passed; then a clean exit.
    process::exits_after_the_grace(child, start, GRACE).await;

    // Ctrl-C (SIGINT) does not wait for the grace, whatever it is.
    let (child, base, _, _) = start_logging(&data, &[("GRIMOS_DRAIN_GRACE", "60s")]).await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    process::stops_at_once_on_sigint(child).await;
}

#[tokio::test]
async fn no_password_hash_or_token_reaches_user_services_logs_even_at_debug() {
    let data = TestData::new();
    let (child, base, log, reader) = start_logging(&data, &[("RUST_LOG", "debug")]).await;
    let http = reqwest::Client::new();
    let password = "log-canary-password-2";
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let response = post(
        "/v1/users",
        json!({"email": "ada@example.com", "password": password, "displayName": "Ada"}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let wrong = post(
        "/v1/auth/login",
        json!({"email": "ada@example.com", "password": "log-canary-wrong-2"}),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    let login: Value = post(
        "/v1/auth/login",
        json!({"email": "ada@example.com", "password": password}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let refreshed: Value = post(
        "/v1/auth/refresh",
        json!({"refreshToken": login["refreshToken"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let access = refreshed["accessToken"].as_str().unwrap();
    let me = http
        .get(format!("{base}/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let logout = post("/v1/auth/logout", json!({"token": access}))
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let log = kill_and_read_log(child, reader, &log).await;
    assert!(log.contains("/v1/auth/login"), "the log has content: {log}");
    assert_none_logged(
        &log,
        &[
            password.to_owned(),
            "log-canary-wrong-2".to_owned(),
            "$argon2id".to_owned(),
            login["refreshToken"].as_str().unwrap().to_owned(),
            refreshed["refreshToken"].as_str().unwrap().to_owned(),
            jwt_signature(login["accessToken"].as_str().unwrap()),
            jwt_signature(access),
        ],
    );
}

#[tokio::test]
async fn a_500_says_nothing_to_the_client_and_is_logged_once_with_its_cause() {
    let data = TestData::new();
    let (child, base, log, reader) = start_logging(&data, &[("RUST_LOG", "info")]).await;
    let http = reqwest::Client::new();
    let signed_up = sign_up(&http, &base).await;
    let user_id = signed_up["user"]["id"].as_str().unwrap().to_owned();
    let login = login(&http, &base).await;
    let token = login["accessToken"].as_str().unwrap().to_owned();

    // A fault no client can cause: the profiles table is gone from under the service.
    // (On SQLite the binary keeps its default database, `data/user.db` in its folder.)
    let mut database = data.connect("data/user.db", "user_service").await;
    database
        .execute("ALTER TABLE users RENAME TO users_gone", &[])
        .await;
    let response = http
        .get(format!("{base}/v1/users/{user_id}"))
        .bearer_auth(&token)
        .header("x-request-id", "the-failing-request")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code": 13, "message": "internal error", "details": []})
    );

    let log = kill_and_read_log(child, reader, &log).await;
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "one line for one 500: {errors:#?}");
    assert!(
        // SQLite's words, or PostgreSQL's.
        (errors[0].contains("no such table") || errors[0].contains("does not exist"))
            && errors[0].contains("the-failing-request"),
        "the line has the cause and the request id: {}",
        errors[0]
    );
    assert_none_logged(
        &log,
        &[token, jwt_signature(login["accessToken"].as_str().unwrap())],
    );
}

/// `user-service --health-check` with only `USER_LISTEN_ADDR` set, as a container health check
/// runs it beside the service.
fn health_check(base: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_user-service"))
        .arg("--health-check")
        .env_clear()
        .env("USER_LISTEN_ADDR", base.trim_start_matches("http://"))
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_health_check_flag_follows_readiness_not_serving_without_auth_service() {
    let data = TestData::new();
    let (child, base) = start(&data).await;
    let serving = health_check(&base);
    assert!(serving.status.success(), "{serving:?}");
    stop_with(child, "-TERM").await;

    // An auth-service that refuses connections: the port serves, its health is NOT_SERVING.
    let auth = grimos_test_support::ports::Reserved::new();
    let address = format!("http://{}", auth.addr());
    let (child, base, _, _) = start_logging(
        &data,
        &[
            ("AUTH_SERVICE_ADDRESS", &address),
            ("GRIMOS_SERVICE_TOKEN", "t"),
        ],
    )
    .await;
    let not_serving = health_check(&base);
    let stderr = String::from_utf8_lossy(&not_serving.stderr);
    assert_eq!(not_serving.status.code(), Some(1), "{not_serving:?}");
    assert!(stderr.contains("status NOT_SERVING"), "{stderr}");
    stop_with(child, "-TERM").await;
}
