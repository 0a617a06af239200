//! `/metrics`, in a test binary of its own. The Prometheus recorder is global to a process, and
//! `cargo test` runs all of a binary's tests in one process, so in the `api` binary another
//! test's traffic could satisfy these assertions; here the only traffic is this test's, and
//! the counts can be exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_imports)]
#[path = "api/helpers.rs"]
mod helpers;

use grimos_proto::user::v1 as pb;
use grimos_test_support::app::TestData;
use grimos_test_support::metrics::{sample, sum};
use secrecy::SecretString;
use tonic::Code;

use helpers::{PASSWORD, expect_code, spawn_app, spawn_app_with, start_auth};

/// The service token of the auth-services the tests start.
const AUTH_TOKEN: &str = "metrics-test-token";

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

#[tokio::test]
async fn each_auth_replica_s_calls_and_place_in_rotation_are_counted() {
    let data = TestData::new();
    let a = start_auth(data.clone(), None, AUTH_TOKEN, |_| {}).await;
    let b = start_auth(data, None, AUTH_TOKEN, |_| {}).await;
    // The balancer registers each endpoint's metrics as soon as the client is built, which is
    // early in the app's build: they must not be lost to a recorder not yet installed.
    let (a, b) = (a.addr, b.addr);
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{a},http://{b}"));
        c.auth.service_token = Some(SecretString::from(AUTH_TOKEN.to_owned()));
    })
    .await;
    let session = app.sign_up("ada@example.com").await;
    for _ in 0..10 {
        let response = app
            .authed(reqwest::Method::GET, "/v1/users/me", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (a, b) = (a.to_string(), b.to_string());
    for endpoint in [&a, &b] {
        assert_eq!(
            sample(
                &text,
                "auth_client_endpoint_in_rotation",
                &[("endpoint", endpoint)]
            ),
            Some(1.0),
            "{endpoint}: {text}"
        );
    }
    // Every call of the client went to one of the two (the readiness check, every second,
    // may be in flight: counted by its endpoint, not yet as a finished call).
    let calls_to = |endpoint: &str| {
        sum(
            &text,
            "auth_client_endpoint_calls_total",
            &[("endpoint", endpoint)],
        )
    };
    let per_endpoint = calls_to(&a) + calls_to(&b);
    let calls = sum(&text, "auth_client_requests_total", &[]);
    assert!(calls >= 2.0, "{text}");
    assert!(
        per_endpoint == calls || per_endpoint == calls + 1.0,
        "{per_endpoint} calls by endpoint, {calls} in all: {text}"
    );
    assert_eq!(sum(&text, "auth_client_retries_total", &[]), 0.0, "{text}");
}
