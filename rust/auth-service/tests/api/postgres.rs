//! auth-service on PostgreSQL, for what only PostgreSQL has: its login refused. The whole API
//! suite runs on PostgreSQL too (`GRIMOS_TEST_BACKEND=postgres`, `just test-rust`); writers
//! blocking on its locks are tested at the store (`src/store/postgres.rs`), and a server that
//! goes away in `health.rs`. Each test here gets a fresh database on the server named by
//! `GRIMOS_TEST_POSTGRES_URL`; without it they fail (`just test-rust` skips them).

use std::time::{Duration, Instant};

use grimos_test_support::postgres::database;

use crate::helpers::build_error;

#[tokio::test]
async fn a_wrong_password_fails_the_start_without_showing_it() {
    let db = database().await;
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (_, host_and_db) = rest.rsplit_once('@').unwrap();
    let user = rest.split(':').next().unwrap();
    let url = format!("{scheme}://{user}:wrong-pw-xyz@{host_and_db}");
    let start = Instant::now();
    let error = build_error(move |c| c.database_url = url).await;
    assert!(start.elapsed() < Duration::from_secs(10), "{error}");
    assert!(error.contains("PostgreSQL"), "{error}");
    assert!(
        !error.contains("wrong-pw-xyz"),
        "the password leaked: {error}"
    );
}
