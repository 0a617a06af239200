//! Which database backend a test runs on: SQLite files, or PostgreSQL on the server of
//! `GRIMOS_TEST_POSTGRES_URL` ([`crate::postgres`]).
//!
//! - A store's scenarios run on both, as two tests each: [`on_both_backends!`](crate::on_both_backends).
//! - A service's API suite runs on the backend `GRIMOS_TEST_BACKEND` names ([`Backend::from_env`]):
//!   `sqlite` (the default) or `postgres`. `just test-rust` runs each service's suite a second
//!   time with `postgres`. A test that only makes sense on one backend says so with
//!   [`Backend::skip_unless`], which prints why it did nothing.

use std::path::Path;

use crate::postgres::PgDatabase;

/// The variable that picks the API suites' backend.
pub const VARIABLE: &str = "GRIMOS_TEST_BACKEND";

/// A database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in the test's folder.
    Sqlite,
    /// A fresh PostgreSQL database per service per test.
    Postgres,
}

impl Backend {
    /// The backend `GRIMOS_TEST_BACKEND` names: `sqlite` when unset or empty, `postgres`;
    /// anything else panics, so a typo never runs the suite on the wrong backend.
    pub fn from_env() -> Self {
        match std::env::var(VARIABLE).as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("" | "sqlite") => Backend::Sqlite,
            Ok("postgres") => Backend::Postgres,
            Ok(other) => panic!("{VARIABLE}={other:?}: expected sqlite or postgres"),
            Err(error) => panic!("{VARIABLE}: {error}"),
        }
    }

    /// Its name, as `GRIMOS_TEST_BACKEND` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Whether a test that needs `backend` (because `why`) runs on the suite's backend;
    /// when not, it prints that it was skipped and why, and the test returns at once:
    /// `if !Backend::skip_unless(Backend::Sqlite, "it reads the SQLite file") { return; }`.
    #[must_use = "the test must return when this is false"]
    pub fn skip_unless(backend: Backend, why: &str) -> bool {
        let current = Backend::from_env();
        if current != backend {
            println!(
                "SKIPPED on {}: this test is about {} only ({why})",
                current.name(),
                backend.name()
            );
        }
        current == backend
    }
}

/// A service's database for one test app, on the suite's backend: its URL, and what keeps it
/// (on PostgreSQL, the database, dropped with the last app using it).
pub struct TestDatabase {
    /// The URL to give the service (`AUTH_DATABASE_URL`, `USER_DATABASE_URL`).
    pub url: String,
    /// The PostgreSQL database, when the suite runs on PostgreSQL.
    pub postgres: Option<PgDatabase>,
}

impl TestDatabase {
    /// A new database for a service on the suite's backend: `sqlite://<dir>/<file>` (the
    /// service creates the file), or a fresh PostgreSQL database.
    pub async fn new(dir: &Path, file: &str) -> Self {
        match Backend::from_env() {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}", dir.join(file).display()),
                postgres: None,
            },
            Backend::Postgres => {
                let database = crate::postgres::database().await;
                TestDatabase {
                    url: database.url.clone(),
                    postgres: Some(database),
                }
            }
        }
    }
}

/// Each scenario as two tests, `on_sqlite::NAME` and `on_postgres::NAME`: `NAME` is an async
/// function of the calling module taking what `$sqlite().await` (or `$postgres().await`)
/// returns. The PostgreSQL ones need a server, so without one they are skipped
/// (`just test-rust`) or fail, and never pass having tested nothing.
///
/// ```ignore
/// grimos_test_support::on_both_backends!(sqlite_store, postgres_store; a_scenario, another);
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident; $($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::$sqlite().await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::$postgres().await).await;
                }
            )*
        }
    };
}
