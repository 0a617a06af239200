//! user-service on PostgreSQL, for what only PostgreSQL has: its login refused, both services
//! sharing one database in schemas of their own, and the server ending connections. The whole
//! API suite runs on PostgreSQL too (`GRIMOS_TEST_BACKEND=postgres`, `just test-rust`);
//! writers racing on its rows are tested at the store (`src/store/mod.rs`), and a database
//! that goes away in `health.rs`. Each test here gets a fresh database from
//! `GRIMOS_TEST_POSTGRES_URL` (it fails without one; `just test-rust` skips them).

use grimos_test_support::postgres::{PgDatabase, database};
use sqlx::Connection as _;

use crate::helpers::{PASSWORD, TestApp, build_error, spawn_app_with, spawn_in};

/// user-service on the database `db`.
async fn spawn_on(db: &PgDatabase) -> TestApp {
    spawn_app_with(|c| c.user_database_url = db.url.clone()).await
}

#[tokio::test]
async fn a_wrong_password_fails_the_start_without_showing_it() {
    let db = database().await;
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    let url = format!("{scheme}://grimos:not-the-pw-123@{host}");
    let error = build_error(|c| c.user_database_url = url).await;
    assert!(error.contains("USER_DATABASE_URL"), "{error}");
    assert!(!error.contains("not-the-pw-123"), "{error}");
}

#[tokio::test]
async fn both_services_can_share_one_database_each_in_its_own_schema() {
    let db = database().await;
    // The embedded auth-service on the same database as user-service.
    let app = spawn_app_with(|c| {
        c.user_database_url = db.url.clone();
        c.auth.database_url = db.url.clone();
    })
    .await;
    let session = app.sign_up("shared@example.com").await;
    let me = app.get_json("/v1/users/me", &session).await;
    assert_eq!(me["user"]["email"], "shared@example.com");
    let dir = app.stop().await;

    // Each service's tables and migration records are in its own schema.
    let mut conn = db.connect_in("public").await;
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
         WHERE table_schema IN ('auth_service', 'user_service', 'public')
         ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    let has = |schema: &str, table: &str| {
        tables
            .iter()
            .any(|(s, t)| s.as_str() == schema && t.as_str() == table)
    };
    assert!(has("auth_service", "credentials"), "{tables:?}");
    assert!(has("auth_service", "_sqlx_migrations"), "{tables:?}");
    assert!(has("user_service", "users"), "{tables:?}");
    assert!(has("user_service", "_sqlx_migrations"), "{tables:?}");
    assert!(!tables.iter().any(|(s, _)| s == "public"), "{tables:?}");

    // And both start again on it.
    let app = spawn_in(dir, |c| {
        c.user_database_url = db.url.clone();
        c.auth.database_url = db.url.clone();
    })
    .await;
    assert_eq!(
        app.login("shared@example.com", PASSWORD).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn connections_the_server_ends_are_replaced_without_a_failed_request() {
    let db = database().await;
    let app = spawn_on(&db).await;
    let ada = app.sign_up("ada@example.com").await;
    let admin = app.admin().await;
    // Both pools hold connections: the one reads use, and the one writes use.
    app.get_json("/v1/users/me", &ada).await;
    app.get_json("/v1/users", &admin).await;

    // The server ends every connection to the database, as a restart or a failover does.
    let mut connection = db.connect_in("user_service").await;
    let ended: i64 = sqlx::query_scalar(
        "WITH theirs AS MATERIALIZED (
             SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND usename = current_user
               AND pid <> pg_backend_pid())
         SELECT count(*) FROM theirs WHERE pg_terminate_backend(pid)",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(ended >= 2, "ended {ended} connections");

    // Reads and writes carry on, on new connections, without an error reaching the caller.
    let me = app.get_json("/v1/users/me", &ada).await;
    assert_eq!(me["user"]["id"], ada.user_id.as_str());
    let page = app.get_json("/v1/users?pageSize=10", &admin).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2, "{page}");
    let bob = app
        .create_user("bob@example.com", PASSWORD, "Bob")
        .await
        .unwrap();
    let page = app.get_json("/v1/users?pageSize=10", &admin).await;
    assert_eq!(page["users"][2]["id"], bob.id.as_str(), "{page}");
}
