//! Databases both services use: opening SQLite ([`sqlite`]) and PostgreSQL ([`postgres`])
//! from a URL ([`url`]), store code written once for both ([`sql`]), the roles column both
//! schemas keep ([`split_roles`], [`join_roles`]), what a database error means for the
//! caller ([`Failure`]), and a pool's connections at one moment ([`PoolStats`]).

pub mod postgres;
pub mod sql;
pub mod sqlite;
pub mod url;

pub use postgres::open_postgres_migrated;
pub use sqlite::{open_sqlite, open_sqlite_migrated};
pub use url::{is_postgres_url, redact_password, sqlite_path};

/// Whether `error` means the database could not be reached or could not take the request
/// now (connection lost or refused, pool exhausted, server shutting down or starting, SQLite
/// busy past its timeout), as opposed to a fault in the request or the data. Services answer
/// those with UNAVAILABLE, which callers may retry, instead of INTERNAL.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes (the low byte is
                // the primary code).
                return code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
            }
            // PostgreSQL: class 08 (connection exception), 53 (insufficient resources),
            // 57P01-57P03 (administrator or crash shutdown, cannot connect now).
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

/// A database error as a service reports it: the one rule behind both services'
/// `From<sqlx::Error>`.
#[derive(Debug)]
pub enum Failure {
    /// The database cannot take the request now ([`database_unavailable`]): the service
    /// answers UNAVAILABLE ([`UNAVAILABLE_MESSAGE`]), which callers may retry. Logged (a
    /// warning) when classified.
    Unavailable,
    /// Anything else: a fault, which the service answers INTERNAL and logs as an error.
    Fault(anyhow::Error),
}

/// What callers are told when the database is unavailable.
pub const UNAVAILABLE_MESSAGE: &str = "the database is unavailable; try again";

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            tracing::warn!(%error, "the database is unavailable");
            return Self::Unavailable;
        }
        Self::Fault(anyhow::Error::new(error).context("database"))
    }
}

/// A connection pool's connections at one moment, for the `db_pool_*` gauges: read from the
/// pool's own counters, so taking it costs no query and no lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Which of a service's pools (`main`; user-service on PostgreSQL also has `readers`).
    pub pool: &'static str,
    /// Connections open, in use or idle.
    pub open: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

impl PoolStats {
    /// `pool`'s connections now, as the pool `name`.
    pub fn of<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> Self {
        Self {
            pool: name,
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }

    /// Connections lent out now.
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

/// The roles column of both services' schemas: comma-separated role names, as auth-service
/// grants them (`user,admin`); empty names are skipped, so `""` is no roles.
pub fn split_roles(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|role| !role.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `roles` as the roles column stores them ([`split_roles`] reads them back).
pub fn join_roles(roles: &[String]) -> String {
    roles.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_the_column() {
        let roles = vec!["user".to_owned(), "admin".to_owned()];
        assert_eq!(join_roles(&roles), "user,admin");
        assert_eq!(split_roles(&join_roles(&roles)), roles);
        assert!(split_roles("").is_empty());
        assert_eq!(split_roles(",user,,"), ["user"]);
    }

    #[test]
    fn failures_tell_unavailable_from_faults() {
        assert!(matches!(
            Failure::from(sqlx::Error::PoolTimedOut),
            Failure::Unavailable
        ));
        match Failure::from(sqlx::Error::RowNotFound) {
            Failure::Fault(error) => assert!(format!("{error:#}").starts_with("database")),
            Failure::Unavailable => panic!("a missing row is a fault"),
        }
    }

    #[tokio::test]
    async fn unreachable_or_busy_databases_are_unavailable_and_faults_are_not() {
        assert!(database_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(database_unavailable(&sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset)
        )));
        assert!(!database_unavailable(&sqlx::Error::RowNotFound));

        // Real SQLite errors: a write blocked by another connection's write transaction past
        // the busy timeout is unavailable; a constraint violation is not.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("x.db").display());
        let pool = open_sqlite(&url, 2).await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let duplicate = sqlx::query("INSERT INTO t VALUES (1), (1)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(!database_unavailable(&duplicate), "{duplicate}");

        let mut holder = pool.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut other = pool.acquire().await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 10")
            .execute(&mut *other)
            .await
            .unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *other)
            .await
            .unwrap_err();
        assert!(database_unavailable(&busy), "{busy}");
    }
}
