//! gRPC health follows the database: NOT_SERVING while it does not answer, SERVING again
//! once it does, so balancers stop sending work to a replica that cannot do it.

use std::time::Duration;

use grimos_test_support::grpc::{ServingStatus, wait_for_health};
use grimos_test_support::postgres::database;

use crate::helpers::spawn_app_with;

/// The health check runs every second; a change shows within two checks.
const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn health_follows_a_postgres_database_down_and_back() {
    let db = database().await;
    let url = db.url.clone();
    let app = spawn_app_with(move |c| c.database_url = url).await;
    let names = ["", "grimos.auth.v1.AuthService"];
    for name in names {
        wait_for_health(app.channel().await, name, ServingStatus::Serving, WITHIN).await;
    }

    db.refuse_connections().await;
    for name in names {
        wait_for_health(app.channel().await, name, ServingStatus::NotServing, WITHIN).await;
    }

    db.allow_connections().await;
    for name in names {
        wait_for_health(app.channel().await, name, ServingStatus::Serving, WITHIN).await;
    }
    // And it does its job again.
    app.sign_up("back@example.com").await;
}
