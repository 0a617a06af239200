//! gRPC health and `/readyz` follow what user-service needs to do its job: its database and
//! auth-service (which is itself NOT_SERVING while its own database is down). A balancer or
//! probe then stops sending work here until both are back.

use std::time::Duration;

use grimos_test_support::grpc::{ServingStatus, wait_for_health};
use grimos_test_support::postgres::{PgDatabase, database};

use crate::helpers::{TestApp, expect_http_error, spawn_app_with};

/// Health is checked every second; a change shows within a few checks.
const WITHIN: Duration = Duration::from_secs(5);
const NAMES: [&str; 3] = [
    "",
    "grimos.user.v1.UserService",
    "grimos.auth.v1.AuthService",
];

async fn expect_health(app: &TestApp, status: ServingStatus) {
    for name in NAMES {
        wait_for_health(app.channel().await, name, status, WITHIN).await;
    }
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    match status {
        ServingStatus::Serving => assert_eq!(response.status(), 200),
        _ => {
            expect_http_error(response, 503, 14).await;
        }
    }
}

/// Takes `db` down, checks that health follows, brings it back, checks again.
async fn down_and_back(app: &TestApp, db: &PgDatabase) {
    expect_health(app, ServingStatus::Serving).await;
    db.refuse_connections().await;
    expect_health(app, ServingStatus::NotServing).await;
    db.allow_connections().await;
    expect_health(app, ServingStatus::Serving).await;
    app.sign_up("back@example.com").await;
}

#[tokio::test]
async fn health_follows_the_user_postgres_database_down_and_back() {
    let db = database().await;
    let url = db.url.clone();
    let app = spawn_app_with(move |c| c.user_database_url = url).await;
    down_and_back(&app, &db).await;
}

#[tokio::test]
async fn health_follows_auth_services_postgres_database_down_and_back() {
    let db = database().await;
    let url = db.url.clone();
    let app = spawn_app_with(move |c| c.auth.database_url = url).await;
    down_and_back(&app, &db).await;
}
