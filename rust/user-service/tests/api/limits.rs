//! The bounds on what a client can hold of user-service's port (issue 12's findings 2, 3, 4,
//! 7 and 9): slow and idle clients are cut off, connections over the limit are refused with
//! an answer, deadlines are enforced and passed on, oversized tokens and duplicate JSON keys
//! are refused. Each test shortens the one bound it exercises so that it runs in about a
//! second; the hostile-client suite (`just test-hostile`) attacks the shipped defaults.

use std::time::{Duration, Instant};

use grimos_proto::user::v1 as pb;
use grimos_test_support::wire::{self, SilentGrpc};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tonic::Code;

use crate::helpers::{PASSWORD, bearer, expect_http_error, spawn_app, spawn_app_with};

/// The paths of auth-service's rpcs (user-service's health checks of it are not calls).
const AUTH_CALLS: &str = "/grimos.auth.v1.AuthService/";
const SHORT: Duration = Duration::from_millis(300);
/// Long enough for a bound of [`SHORT`] to have fired on a loaded machine.
const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_partial_request_head_is_dropped_at_the_header_read_timeout() {
    let app = spawn_app_with(|c| c.limits.header_read_timeout = SHORT).await;
    let mut tcp = wire::http1(app.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    assert!(wire::closed_within(&mut tcp, WITHIN).await);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout() {
    let app = spawn_app_with(|c| c.limits.idle_timeout = SHORT).await;
    let mut h2 = wire::h2(app.addr, None).await;
    let request = http::Request::get(format!("http://{}/healthz", app.addr))
        .body(())
        .unwrap();
    let (response, _) = h2.send.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let closed = tokio::time::timeout(WITHIN, &mut h2.driver).await;
    assert!(closed.is_ok(), "the idle connection is still open");
}

#[tokio::test]
async fn a_slow_body_gets_408_at_the_body_read_timeout() {
    let app = spawn_app_with(|c| c.limits.body_read_timeout = SHORT).await;
    let head = b"POST /v1/users HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
                 content-length: 100\r\n\r\n{\"email\"";
    let started = Instant::now();
    let mut tcp = wire::http1(app.addr, head).await;
    let answer = wire::read_text(&mut tcp, WITHIN).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":4"#), "{answer}");
    assert!(started.elapsed() < WITHIN);
}

#[tokio::test]
async fn a_response_the_client_never_takes_ends_the_connection_at_the_send_timeout() {
    let app = spawn_app_with(|c| c.limits.send_timeout = SHORT).await;
    // A window of zero: the server may send headers but no response body.
    let mut h2 = wire::h2(app.addr, Some(0)).await;
    let request = wire::grpc_request(app.addr, "/grpc.health.v1.Health/Check", &[]);
    let (response, mut body) = h2.send.send_request(request, false).unwrap();
    body.send_data(wire::grpc_frame(&[]), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let closed = tokio::time::timeout(WITHIN, &mut h2.driver).await;
    assert!(
        closed.is_ok(),
        "a response nobody takes still holds the connection"
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_answered_503_and_unavailable() {
    const LIMIT: usize = 4;
    let app = spawn_app_with(|c| c.limits.max_connections = LIMIT).await;
    // Enough idle connections to fill every slot, whatever the test's own clients hold.
    let mut idle = Vec::new();
    for _ in 0..LIMIT {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    let mut tcp = wire::http1(
        app.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = wire::read_text(&mut tcp, WITHIN).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":14"#), "{answer}");
    // Marked as not processed, so that a client may send it elsewhere, even a write.
    assert!(
        answer.contains(&format!(
            "{}: connection-limit",
            grimos_server::NOT_PROCESSED_HEADER
        )),
        "{answer}"
    );

    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr)).unwrap();
    let channel = endpoint.connect().await.unwrap();
    let mut client = pb::user_service_client::UserServiceClient::new(channel);
    let status = client
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .metadata()
            .get(grimos_server::NOT_PROCESSED_HEADER)
            .is_some(),
        "{status:?}"
    );

    // Slots come back as connections close.
    drop(idle);
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut tcp = wire::http1(
            app.addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if wire::read_text(&mut tcp, WITHIN)
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no slot came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_still_sending_an_oversized_body_reads_the_413() {
    let app = spawn_app().await;
    const SIZE: usize = 300 * 1024;
    let head = format!(
        "POST /v1/users HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         content-length: {SIZE}\r\n\r\n"
    );
    let mut tcp = wire::http1(app.addr, head.as_bytes()).await;
    // Sent slowly in chunks, long after the answer left, by a client that (like Python's
    // `requests`) reads the answer only once it has sent the whole body: a reset while it
    // sends loses the answer.
    let chunk = vec![b' '; 16 * 1024];
    for sent in 0..SIZE / chunk.len() {
        let written = tcp.write_all(&chunk).await;
        assert!(written.is_ok(), "chunk {sent}: {written:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = wire::read_text(&mut tcp, WITHIN).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
}

#[tokio::test]
async fn the_callers_grpc_timeout_ends_the_call_and_bounds_the_call_to_auth_service() {
    let auth = SilentGrpc::start().await;
    let app =
        spawn_app_with(|c| c.auth_service_address = Some(format!("http://{}", auth.addr))).await;
    // A raw HTTP/2 client: tonic's would end the call itself at its own grpc-timeout.
    let mut h2 = wire::h2(app.addr, None).await;
    let request = wire::grpc_request(
        app.addr,
        "/grimos.user.v1.UserService/GetCurrentUser",
        &[
            ("grpc-timeout", "200m"),
            ("authorization", "Bearer any-token"),
        ],
    );
    let started = Instant::now();
    let (response, mut body) = h2.send.send_request(request, false).unwrap();
    body.send_data(wire::grpc_frame(&[]), true).unwrap();
    let response = response.await.unwrap();
    // DEADLINE_EXCEEDED, in a trailers-only response.
    assert_eq!(response.headers()["grpc-status"], "4", "{response:?}");
    // Not the 2 s of AUTH_CLIENT_DEADLINE.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let heads = auth.heads(AUTH_CALLS);
    assert_eq!(heads.len(), 1);
    let passed_on = grimos_server::grpc_timeout(&heads[0]).unwrap();
    assert!(passed_on <= Duration::from_millis(200), "{passed_on:?}");
}

#[tokio::test]
async fn an_http_request_ends_at_the_request_timeout_with_504() {
    let auth = SilentGrpc::start().await;
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{}", auth.addr));
        c.limits.request_timeout = SHORT;
    })
    .await;
    let started = Instant::now();
    let response = app
        .http
        .get(app.url("/v1/users/me"))
        .bearer_auth("any-token")
        .send()
        .await
        .unwrap();
    expect_http_error(response, 504, 4).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_token_longer_than_any_issued_is_refused_without_asking_auth_service() {
    // A hung auth-service: a token that reached it would be 503 after 2 s, not 401.
    let auth = SilentGrpc::start().await;
    let app =
        spawn_app_with(|c| c.auth_service_address = Some(format!("http://{}", auth.addr))).await;
    let long = "a".repeat(8 * 1024);
    for (method, path) in [
        (reqwest::Method::GET, "/v1/users/me"),
        (reqwest::Method::GET, "/v1/users"),
        (reqwest::Method::POST, "/v1/auth/logout"),
    ] {
        let response = app
            .http
            .request(method, app.url(path))
            .bearer_auth(&long)
            .send()
            .await
            .unwrap();
        expect_http_error(response, 401, 16).await;
    }
    let response = app
        .http
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({ "refreshToken": long }))
        .send()
        .await
        .unwrap();
    expect_http_error(response, 401, 16).await;
    let request = bearer(pb::GetCurrentUserRequest {}, &long);
    let status = app
        .grpc
        .clone()
        .get_current_user(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // A header block over the header limit is refused by the protocol layer: 431.
    let huge = "a".repeat(70 * 1024);
    let response = app
        .http
        .get(app.url("/v1/users/me"))
        .bearer_auth(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert!(auth.heads(AUTH_CALLS).is_empty(), "auth-service was asked");
}

#[tokio::test]
async fn a_key_given_twice_is_refused_in_every_body() {
    let app = spawn_app().await;
    let session = app.sign_up("twice@example.com").await;
    let path = format!("/v1/users/{}", session.user_id);
    let response = app
        .authed(reqwest::Method::PATCH, &path, &session)
        .header("content-type", "application/json")
        .body(r#"{"displayName":"First","displayName":"Second"}"#)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 400, 3).await;
    let profile = app.get_json("/v1/users/me", &session).await;
    assert_eq!(profile["user"]["displayName"], "Test User");

    let body = format!(
        r#"{{"email":"a@example.com","email":"b@example.com","password":"{PASSWORD}","displayName":"A"}}"#
    );
    let response = app
        .http
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 400, 3).await;
    let response = app
        .http
        .post(app.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email":"twice@example.com","password":"x","password":"y"}"#)
        .send()
        .await
        .unwrap();
    expect_http_error(response, 400, 3).await;
}
