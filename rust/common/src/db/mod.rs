//! Databases both services use: opening SQLite ([`sqlite`]) and PostgreSQL ([`postgres`])
//! from a URL ([`url`]), and telling an unavailable database from a fault.

pub mod postgres;
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

#[cfg(test)]
mod tests {
    use super::*;

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
