//! A fresh PostgreSQL database per test, on the server named by `GRIMOS_TEST_POSTGRES_URL`
//! (for example `postgres://grimos:grimos@127.0.0.1:5432/grimos_test`; its role needs
//! `CREATEDB`).
//!
//! A test that needs a server has `postgres` in its path (a `postgres` module, or the word in
//! its name) and fails without one: it never passes having tested nothing. `just test-rust`
//! leaves those tests out when the variable is unset, so nextest's summary counts them as
//! skipped (`.config/nextest.toml`, profile `no-postgres`); `.ci/run` always sets it.

use std::str::FromStr as _;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// A database made for one test; dropped (with its connections) when this is dropped.
pub struct PgDatabase {
    /// Its URL, to give a service as `AUTH_DATABASE_URL` or `USER_DATABASE_URL`.
    pub url: String,
    server: PgConnectOptions,
    name: String,
}

/// What a test without a server says.
const NO_SERVER: &str = "GRIMOS_TEST_POSTGRES_URL is unset: this test needs a PostgreSQL server \
     (export GRIMOS_TEST_POSTGRES_URL=$(tools/test-postgres.sh)); `just test-rust` skips the \
     PostgreSQL tests without one";

/// A new, empty database; panics when `GRIMOS_TEST_POSTGRES_URL` is unset.
pub async fn database() -> PgDatabase {
    let url = std::env::var("GRIMOS_TEST_POSTGRES_URL").expect(NO_SERVER);
    let server = PgConnectOptions::from_str(&url).unwrap_or_else(|error| {
        panic!(
            "GRIMOS_TEST_POSTGRES_URL is not a postgres:// URL ({error}); it starts with {:?}",
            url.chars().take(24).collect::<String>()
        )
    });
    let name = format!("grimos_test_{}", uuid_like());
    let mut admin = PgConnection::connect_with(&server)
        .await
        .expect("connect to GRIMOS_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE (the role needs CREATEDB)");
    let _ = admin.close().await;
    let base = url.split('?').next().unwrap_or(&url);
    let (prefix, _) = base.rsplit_once('/').expect("the URL names a database");
    let query = url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    PgDatabase {
        url: format!("{prefix}/{name}{query}"),
        server,
        name,
    }
}

impl PgDatabase {
    /// A connection to this database whose `search_path` is `schema` (a service's own), for
    /// tests that read or write its tables directly.
    pub async fn connect_in(&self, schema: &str) -> PgConnection {
        let mut connection = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(&format!("SET search_path TO {schema}"))
            .execute(&mut connection)
            .await
            .unwrap();
        connection
    }
}

impl PgDatabase {
    /// Takes the database down for the services using it, as a server outage does: new
    /// connections are refused and the open ones are ended.
    pub async fn refuse_connections(&self) {
        self.alter(false).await;
        let mut admin = PgConnection::connect_with(&self.server).await.unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut admin)
        .await
        .unwrap();
        let _ = admin.close().await;
    }

    /// Brings the database back after [`PgDatabase::refuse_connections`].
    pub async fn allow_connections(&self) {
        self.alter(true).await;
    }

    async fn alter(&self, allow: bool) {
        let mut admin = PgConnection::connect_with(&self.server).await.unwrap();
        sqlx::query(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        let _ = admin.close().await;
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).expect("random bytes");
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{nanos:x}_{random}")
}

/// How long dropping a database may hold up the test's runtime (see [`PgDatabase`]'s `Drop`).
const DROP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime; do the async work on a thread of its own, and
        // wait for it a few seconds only. `DROP DATABASE` waits for every backend of the
        // server to acknowledge it, and a connection an app of this test was still opening
        // cannot finish its authentication while this runtime is blocked here: its backend
        // would answer only at `authentication_timeout` (60 s). Past the wait the runtime
        // goes on, that connection ends with the test's tasks, and the drop, sent already,
        // completes on the server.
        let server = self.server.clone();
        let name = self.name.clone();
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect_with(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
            let _ = done.send(());
        });
        let _ = dropped.recv_timeout(DROP_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;
    use sqlx::postgres::PgConnection;

    #[tokio::test]
    async fn each_database_is_new_usable_and_gone_when_dropped() {
        let first = super::database().await;
        let second = super::database().await;
        assert_ne!(first.url, second.url);
        let mut connection = PgConnection::connect(&first.url).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        assert_eq!(tables, 0);
        connection.close().await.unwrap();

        let url = first.url.clone();
        drop(first);
        let error = PgConnection::connect(&url).await.unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
}
