//! `/metrics`, in a test binary of its own. The Prometheus recorder is global to a process, and
//! `cargo test` runs all of a binary's tests in one process, so in the `api` binary another
//! test's traffic could satisfy these assertions; here the only traffic is this test's, and
//! the counts can be exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_imports)]
#[path = "api/helpers.rs"]
mod helpers;

use grimos_proto::user::v1 as pb;
use grimos_test_support::metrics::sample;
use tonic::Code;

use helpers::{PASSWORD, expect_code, spawn_app};

#[tokio::test]
async fn requests_are_counted_by_route_or_rpc_and_status_and_auth_calls_by_rpc() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, "Ada")
        .await
        .unwrap();
    for _ in 0..3 {
        let response = app.http.get(app.url("/v1/users/me")).send().await.unwrap();
        assert_eq!(response.status(), 401);
    }
    for _ in 0..2 {
        let result = app
            .grpc
            .clone()
            .get_current_user(pb::GetCurrentUserRequest {})
            .await;
        expect_code(result, Code::Unauthenticated);
    }
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let count = |name, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(
        count(
            "http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/v1/users/me"),
                ("status", "401")
            ]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        count(
            "http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/v1/auth/login"),
                ("status", "200")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(
            "grpc_server_requests_total",
            &[
                ("server", "user"),
                ("rpc", "/grimos.user.v1.UserService/GetCurrentUser"),
                ("code", "16")
            ]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        count(
            "grpc_server_requests_total",
            &[
                ("rpc", "/grimos.user.v1.UserService/CreateUser"),
                ("code", "0")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    // The sign-up and the login each called auth-service once, and the embedded
    // auth-service (called in-process, sharing this process's recorder) counted each call
    // under its own server label.
    for rpc in ["CreateCredential", "Login"] {
        assert_eq!(
            count("auth_client_requests_total", &[("rpc", rpc)]),
            Some(1.0),
            "{rpc}: {text}"
        );
        let path = format!("/grimos.auth.v1.AuthService/{rpc}");
        assert_eq!(
            count(
                "grpc_server_requests_total",
                &[("server", "auth"), ("rpc", path.as_str()), ("code", "0")]
            ),
            Some(1.0),
            "{rpc}: {text}"
        );
    }
    assert!(
        text.contains("auth_client_request_duration_seconds"),
        "{text}"
    );
}
