//! The bounds on what a client can hold of auth-service's port (issue 12's finding 1): it is
//! the network-facing service in split mode, so it enforces the same limits as
//! user-service's port, through the same server code.

use std::time::{Duration, Instant};

use grimos_test_support::wire;

use crate::helpers::{spawn_app, spawn_app_with};

const SHORT: Duration = Duration::from_millis(300);
const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_port_advertises_its_stream_limit() {
    let app = spawn_app().await;
    let h2 = wire::h2(app.addr, None).await;
    // The server's SETTINGS arrive just after the handshake.
    let deadline = Instant::now() + WITHIN;
    while h2.send.current_max_send_streams() != 200 {
        assert!(
            Instant::now() < deadline,
            "SETTINGS_MAX_CONCURRENT_STREAMS is {}",
            h2.send.current_max_send_streams()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn open_streams_that_never_send_their_request_end_at_the_body_read_timeout() {
    let app = spawn_app_with(|c| c.limits.body_read_timeout = SHORT).await;
    let h2 = wire::h2(app.addr, None).await;
    let mut send = h2.send;
    // Login streams with their headers sent and no body, the flood of the finding.
    let mut streams = Vec::new();
    for _ in 0..50 {
        let request = wire::grpc_request(app.addr, "/grimos.auth.v1.AuthService/Login", &[]);
        let (response, body) = send.send_request(request, false).unwrap();
        streams.push((response, body));
    }
    let started = Instant::now();
    for (response, _body) in streams {
        let response = tokio::time::timeout(WITHIN, response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.headers()["grpc-status"], "4", "{response:?}");
    }
    assert!(started.elapsed() < WITHIN);
    // A normal call is served meanwhile.
    let status = app
        .login("nobody@example.com", "correct horse battery")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let app = spawn_app_with(|c| c.limits.idle_timeout = SHORT).await;
    let mut h2 = wire::h2(app.addr, None).await;
    let closed = tokio::time::timeout(WITHIN, &mut h2.driver).await;
    assert!(closed.is_ok(), "the idle connection is still open");
}

#[tokio::test]
async fn an_expired_grpc_timeout_is_deadline_exceeded() {
    let app = spawn_app().await;
    let mut h2 = wire::h2(app.addr, None).await;
    // 1 ms: less than any login takes (its password hash alone takes longer).
    let request = wire::grpc_request(
        app.addr,
        "/grimos.auth.v1.AuthService/Login",
        &[("grpc-timeout", "1m")],
    );
    let (response, mut body) = h2.send.send_request(request, false).unwrap();
    let login = grimos_proto::auth::v1::LoginRequest {
        email: "nobody@example.com".into(),
        password: "correct horse battery".into(),
    };
    body.send_data(
        wire::grpc_frame(&prost::Message::encode_to_vec(&login)),
        true,
    )
    .unwrap();
    let response = tokio::time::timeout(WITHIN, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "4", "{response:?}");
}
