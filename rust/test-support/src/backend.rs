//! Which database backend a test runs on: SQLite files, or PostgreSQL on the server of
//! `GRIMOS_TEST_POSTGRES_URL` ([`crate::postgres`]).
//!
//! - A store's scenarios run on both, as two tests each: [`on_both_backends!`](crate::on_both_backends).
//! - A service's API suite runs on the backend `GRIMOS_TEST_BACKEND` names ([`Backend::from_env`]):
//!   `sqlite` (the default) or `postgres`; `spawn_app()` puts its data there
//!   ([`crate::app::TestData`]). `just test-rust` runs each service's API suite a second time
//!   with `postgres`. A test about one backend only names it: `postgres` in its name (it makes
//!   its own database) or `sqlite` (it starts its app on [`TestData::on`](crate::app::TestData::on)
//!   SQLite); that second run leaves both kinds out, since they do not depend on the variable.

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
