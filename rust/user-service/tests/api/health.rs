//! gRPC health and `/readyz` follow what user-service needs to do its job: its database and
//! auth-service (which is itself NOT_SERVING while its own database is down), and whether it
//! is stopping (a drain). A balancer or probe then stops sending work here until both are
//! back, or before the replica stops.

use std::time::{Duration, Instant};

use grimos_common::shutdown::Stop;
use grimos_proto::user::v1 as pb;
use grimos_test_support::grpc::{ServingStatus, bearer, wait_for_health};
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

#[tokio::test]
async fn a_drain_turns_health_and_readyz_unready_but_serves_until_the_grace_ends() {
    const GRACE: Duration = Duration::from_millis(1500);
    let mut app = spawn_app_with(|c| c.limits.drain_grace = GRACE).await;
    let session = app.sign_up("drain@example.com").await;
    expect_health(&app, ServingStatus::Serving).await;
    // Connections made before the drain, as a proxy's or balancer's would be.
    let (channel, http) = (app.channel().await, app.http.clone());
    let (me, readyz) = (app.url("/v1/users/me"), app.url("/readyz"));

    let start = Instant::now();
    app.begin_stop(Stop::Drain);
    // At once: NOT_SERVING and 503, for every name, so probes take the replica out...
    for name in NAMES {
        wait_for_health(channel.clone(), name, ServingStatus::NotServing, WITHIN).await;
    }
    let response = http.get(&readyz).send().await.unwrap();
    let body = expect_http_error(response, 503, 14).await;
    assert!(
        body["message"].as_str().unwrap().contains("draining"),
        "{body}"
    );
    // ... while every request still succeeds, over HTTP/JSON and gRPC, for the grace.
    let mut served = 0;
    while start.elapsed() < GRACE - Duration::from_millis(500) {
        let response = http
            .get(&me)
            .bearer_auth(&session.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "after {:?}", start.elapsed());
        let mut grpc = pb::user_service_client::UserServiceClient::new(channel.clone());
        grpc.get_current_user(bearer(pb::GetCurrentUserRequest {}, &session.access_token))
            .await
            .unwrap_or_else(|status| panic!("after {:?}: {status:?}", start.elapsed()));
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 5, "{served}");
    let addr = app.addr;
    app.stop().await;
    let took = start.elapsed();
    assert!(
        took >= GRACE,
        "stopped after {took:?}, before the grace ended"
    );
    assert!(took < GRACE + WITHIN, "stopped only after {took:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
