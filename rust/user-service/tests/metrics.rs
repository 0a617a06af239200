//! `/metrics`, in a test binary of its own. The Prometheus recorder is global to a process, and
//! `cargo test` runs all of a binary's tests in one process, so in the `api` binary another
//! test's traffic could satisfy these assertions; here the only traffic is this test's, and
//! the counts can be exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_imports)]
#[path = "api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use grimos_proto::user::v1 as pb;
use grimos_test_support::app::TestData;
use grimos_test_support::backend::Backend;
use grimos_test_support::metrics::{sample, sum, undescribed};
use secrecy::SecretString;
use tonic::Code;

use helpers::{PASSWORD, TestApp, expect_code, spawn_app, spawn_app_with, spawn_in, start_auth};

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
    assert_eq!(undescribed(&text), Vec::<&str>::new(), "{text}");
}

#[tokio::test]
async fn each_auth_replica_s_calls_and_place_in_rotation_are_counted() {
    let data = TestData::new();
    let replica_a = start_auth(data.clone(), None, AUTH_TOKEN, |_| {}).await;
    let replica_b = start_auth(data, None, AUTH_TOKEN, |_| {}).await;
    // The balancer registers each endpoint's metrics as soon as the client is built, which is
    // early in the app's build: they must not be lost to a recorder not yet installed.
    let (a, b) = (replica_a.addr, replica_b.addr);
    let app = spawn_app_with(|c| {
        c.auth_service_address = Some(format!("http://{a},http://{b}"));
        c.auth.service_token = Some(SecretString::from(AUTH_TOKEN.to_owned()));
        c.auth_health_check_interval = Duration::from_millis(200);
    })
    .await;
    let session = app.sign_up("ada@example.com").await;
    me_times(&app, &session, 10).await;

    let text = scrape(&app).await;
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
    for endpoint in [&a, &b] {
        let labels = [("endpoint", endpoint.as_str())];
        assert_eq!(
            sample(&text, "auth_client_endpoint_healthy", &labels),
            Some(1.0),
            "{endpoint}: {text}"
        );
    }

    // One replica stops: its health check fails and it leaves the rotation; the other stays.
    replica_a.stop().await;
    let text = scrape_until(&app, "replica a unhealthy and out of rotation", |text| {
        let labels = [("endpoint", a.as_str())];
        sample(text, "auth_client_endpoint_healthy", &labels) == Some(0.0)
            && sample(text, "auth_client_endpoint_in_rotation", &labels) == Some(0.0)
    })
    .await;
    let labels = [("endpoint", b.as_str())];
    assert_eq!(
        sample(&text, "auth_client_endpoint_healthy", &labels),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "auth_client_endpoint_in_rotation", &labels),
        Some(1.0),
        "{text}"
    );
    assert_eq!(undescribed(&text), Vec::<&str>::new(), "{text}");
    drop(replica_b);
}

/// `GET /v1/users/me` `times` times as `session`, each answered 200.
async fn me_times(app: &TestApp, session: &helpers::Session, times: usize) {
    for _ in 0..times {
        let response = app
            .authed(reqwest::Method::GET, "/v1/users/me", session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Scrapes `app` until `done` holds for the text, for at most five seconds (health, which
/// sets `db_up`, is checked every second).
async fn scrape_until(app: &TestApp, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(app).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} within 5 s: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pools of both services (user-service's and the embedded auth-service's) are read at
/// the scrape; the validation cache's hits and misses count what `/v1/users/me` did; both
/// databases are up. `pools` are the pools user-service has on this backend.
async fn pools_caches_and_database_are_measured(app: &TestApp, pools: &[&str]) {
    for (server, pool) in pools
        .iter()
        .map(|pool| ("user", *pool))
        .chain([("auth", "main")])
    {
        let text = scrape(app).await;
        let labels = [("server", server), ("pool", pool)];
        let max = sample(&text, "db_pool_max_connections", &labels).unwrap_or(0.0);
        let open = sum(&text, "db_pool_connections", &labels);
        assert!(max >= 1.0, "{server}/{pool}: {text}");
        assert!(open <= max, "{server}/{pool}: {text}");
        for state in ["in_use", "idle"] {
            let labels = [("server", server), ("pool", pool), ("state", state)];
            assert!(
                sample(&text, "db_pool_connections", &labels).is_some(),
                "{server}/{pool}/{state}: {text}"
            );
        }
    }
    // SQLite's pool opened its connections at the start (migrations); the PostgreSQL
    // readers pool connects on its first use.
    let text = scrape(app).await;
    let open = sum(
        &text,
        "db_pool_connections",
        &[("server", "user"), ("pool", "main")],
    );
    assert!(open >= 1.0, "{text}");

    let session = app.sign_up("cache@example.com").await;
    let before = scrape(app).await;
    me_times(app, &session, 4).await;
    let after = scrape(app).await;
    // The first `/me` asked auth-service (a miss here, and a miss in auth-service's cache of
    // verified signatures); the next three reused its answer and never reached auth-service.
    for (cache, result, count) in [
        ("auth_client_validation_cache_lookups_total", "miss", 1.0),
        ("auth_client_validation_cache_lookups_total", "hit", 3.0),
        ("auth_verified_token_cache_lookups_total", "miss", 1.0),
        ("auth_verified_token_cache_lookups_total", "hit", 0.0),
    ] {
        let labels = [("result", result)];
        let moved = sum(&after, cache, &labels) - sum(&before, cache, &labels);
        assert_eq!(moved, count, "{cache} {result}: {after}");
    }
    let open = sum(&after, "db_pool_connections", &[("server", "user")]);
    assert!(open >= 1.0, "{after}");

    for server in ["user", "auth"] {
        scrape_until(app, &format!("db_up{{server={server}}} = 1"), |text| {
            sample(text, "db_up", &[("server", server)]) == Some(1.0)
        })
        .await;
    }
}

#[tokio::test]
async fn pools_caches_and_database_are_measured_on_sqlite() {
    // The validation cache is on the ValidateToken path: local verification off.
    let app = spawn_in(TestData::on(Backend::Sqlite), |c| {
        c.auth_local_verification = false;
    })
    .await;
    pools_caches_and_database_are_measured(&app, &["main"]).await;
}

#[tokio::test]
async fn pools_caches_and_database_are_measured_on_postgres() {
    let db = grimos_test_support::postgres::database().await;
    let url = db.url.clone();
    let app = spawn_app_with(move |c| {
        c.user_database_url = url.clone();
        c.auth.database_url = url;
        c.auth_local_verification = false;
    })
    .await;
    pools_caches_and_database_are_measured(&app, &["main", "readers"]).await;

    // The database goes down: both services' `db_up` turn 0, and back to 1 with it.
    db.refuse_connections().await;
    scrape_until(&app, "db_up = 0 for both services", |text| {
        sum(text, "db_up", &[]) == 0.0 && sample(text, "db_up", &[("server", "auth")]).is_some()
    })
    .await;
    db.allow_connections().await;
    scrape_until(&app, "db_up = 1 for both services", |text| {
        sum(text, "db_up", &[]) == 2.0
    })
    .await;
}
