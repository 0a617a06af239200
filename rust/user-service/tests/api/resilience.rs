//! Restarts, auth-service and database outages, and gRPC-Web.

use std::time::{Duration, Instant};

use grimos_test_support::app::TestData;
use grimos_test_support::backend::Backend;
use grimos_test_support::ports::Reserved;
use prost::Message as _;
use reqwest::Method;
use secrecy::SecretString;

use crate::helpers::{
    PASSWORD, build_error, expect_http_error, spawn_app, spawn_app_with, spawn_in, start_auth,
};
use grimos_proto::user::v1 as pb;

#[tokio::test]
async fn users_and_sessions_survive_a_restart() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada@example.com").await;
    let dir = app.stop().await;
    let app = spawn_in(dir, |_| {}).await;
    // The access token from before the restart still works (the signing key persisted).
    let response = app
        .authed(Method::GET, "/v1/users/me", &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn auth_down_gives_503_within_the_deadline_and_the_service_recovers_by_itself() {
    let auth_port = Reserved::new();
    let auth = start_auth(
        TestData::new(),
        Some(&auth_port),
        "outage-test-token",
        |_| {},
    )
    .await;
    let auth_addr = auth.addr;
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{auth_addr}"));
        c.auth.service_token = Some(SecretString::from("outage-test-token".to_owned()));
        c.auth_deadline = Duration::from_millis(500);
    })
    .await;
    let ada = app.sign_up("ada@example.com").await;

    let auth_data = auth.stop().await;
    let start = Instant::now();
    // Until user-service has seen its revocation stream end (at once on a closed connection,
    // within AUTH_REVOCATION_SILENCE at worst) it may still verify the token itself; then
    // every request needs auth-service and gets 503, within the deadline.
    let response = loop {
        let response = app
            .authed(Method::GET, "/v1/users/me", &ada)
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            break response;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "still served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    expect_http_error(response, 503, 14).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let status = app
        .create_user("bob@example.com", PASSWORD, "Bob")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let response = app
        .http
        .post(app.url("/v1/users"))
        .json(&serde_json::json!({"email": "bob@example.com", "password": PASSWORD, "displayName": "Bob"}))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 503, 14).await;

    // auth-service comes back on the same address: no restart of user-service needed.
    let _auth = start_auth(auth_data, Some(&auth_port), "outage-test-token", |_| {}).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = app
            .authed(Method::GET, "/v1/users/me", &ada)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The failed sign-up left nothing behind: the email is free.
    app.create_user("bob@example.com", PASSWORD, "Bob")
        .await
        .unwrap();
}

#[tokio::test]
async fn grpc_web_calls_work_on_the_same_port() {
    let app =
        spawn_app_with(|c| c.cors_allowed_origins = vec!["http://localhost:5173".into()]).await;
    let message = pb::CreateUserRequest {
        email: "web@example.com".into(),
        password: PASSWORD.into(),
        display_name: "Web".into(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let response = app
        .http
        .post(app.url("/grimos.user.v1.UserService/CreateUser"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://localhost:5173")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "http://localhost:5173"
    );
    let body = response.bytes().await.unwrap();
    // First frame: the message; then a trailer frame (flag 0x80) with grpc-status: 0.
    assert_eq!(body[0], 0);
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let reply = pb::CreateUserResponse::decode(&body[5..5 + len]).unwrap();
    assert_eq!(reply.user.unwrap().email, "web@example.com");
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]);
    assert_eq!(body[5 + len], 0x80);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // The browser's preflight is answered too.
    let preflight = app
        .http
        .request(
            Method::OPTIONS,
            app.url("/grimos.user.v1.UserService/CreateUser"),
        )
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert!(
        preflight
            .headers()
            .contains_key("access-control-allow-methods")
    );
}

#[tokio::test]
async fn grpc_calls_to_unknown_methods_are_unimplemented() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/grimos.user.v1.NoSuchService/Nope"))
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("grpc-status").unwrap(), "12");

    // The same over plain gRPC (HTTP/2), with a real client.
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let result: Result<tonic::Response<()>, _> = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/grimos.user.v1.NoSuchService/Nope"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    let status = result.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn a_write_blocked_by_another_sqlite_writer_is_503_and_then_succeeds() {
    // About SQLite's one write lock, whatever the suite's backend (PostgreSQL outages:
    // `health.rs`, `postgres.rs`).
    let app = spawn_in(TestData::on(Backend::Sqlite), |_| {}).await;
    let ada = app.sign_up("ada@example.com").await;
    let path = format!("/v1/users/{}", ada.user_id);

    // Another process holds user.db's write lock past the 5 s busy timeout.
    let lock = grimos_test_support::sqlite::write_lock(&app.dir.path().join("user.db")).await;
    let started = Instant::now();
    let response = app
        .authed(Method::PATCH, &path, &ada)
        .json(&serde_json::json!({"displayName": "Blocked"}))
        .send()
        .await
        .unwrap();
    let body = expect_http_error(response, 503, 14).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered after the busy timeout, not hung"
    );
    assert!(
        body["message"].as_str().unwrap().contains("database"),
        "{body}"
    );
    // Reads still work meanwhile (WAL readers do not wait for writers).
    let me = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(me["user"]["displayName"], "Test User", "{me}");

    lock.release().await;
    let response = app
        .authed(Method::PATCH, &path, &ada)
        .json(&serde_json::json!({"displayName": "Unblocked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(me["user"]["displayName"], "Unblocked", "{me}");
}

/// `USER_DATABASE_URL` naming a PostgreSQL server that does not answer (needs no server).
#[tokio::test]
async fn an_unreachable_postgres_server_fails_the_start_quickly_without_the_password() {
    let start = Instant::now();
    let (postgres, postgresql) = tokio::join!(
        build_error(|c| {
            c.user_database_url = "postgres://grimos:s3cret-pw@127.0.0.1:1/grimos".into();
        }),
        build_error(|c| {
            c.user_database_url = "postgresql://grimos:s3cret-pw@127.0.0.1:1/grimos".into();
        })
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    for error in [postgres, postgresql] {
        assert!(error.contains("USER_DATABASE_URL"), "{error}");
        assert!(error.contains("grimos:***@127.0.0.1:1/grimos"), "{error}");
        assert!(!error.contains("s3cret-pw"), "{error}");
    }
}

#[tokio::test]
async fn a_silent_auth_service_gives_503_within_5_seconds_at_the_shipped_deadline() {
    use clap::CommandFactory as _;
    // The contract: while auth-service cannot be reached, a request user-service cannot vouch
    // for is 503 within 5 s; checked at the deadline user-service ships (2 s), against the
    // worst kind of outage: an auth-service that accepts connections and never answers.
    let deadline =
        grimos_test_support::shipped_duration(&user_service::Config::command(), "auth-deadline");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{silent}"));
        c.auth.service_token = Some(SecretString::from("silent-test-token".to_owned()));
        c.auth_deadline = deadline;
    })
    .await;

    let started = Instant::now();
    let response = app
        .http
        .get(app.url("/v1/users/me"))
        .bearer_auth("a-token-only-auth-service-could-vouch-for")
        .send()
        .await
        .unwrap();
    expect_http_error(response, 503, 14).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "503 after {took:?}");
}
