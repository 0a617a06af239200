//! [`Store`](super::Store) on SQLite: WAL, `synchronous = FULL`, migrations embedded in the
//! binary. Every write transaction takes the database's one write lock up front
//! (`BEGIN IMMEDIATE`), which serializes writers: this backend needs no lock of its own.

use std::sync::Arc;

use sqlx::{Pool, Sqlite};
use tokio::sync::Notify;

use super::Task;

use super::sql::{Backend, SqlStore};

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// auth-service's tables in one SQLite database.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqliteStore {
    /// Opens the database at `url` (creating it) and runs the migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = grimos_common::db::open_sqlite_migrated(url, 8, &MIGRATOR).await?;
        Ok(Self::new(pool))
    }
}

impl Backend for Sqlite {
    // The write transaction holds the database's write lock already.
    const LOCK_SESSION: &'static str =
        "SELECT id, user_id, create_time, expire_time, revoke_time FROM sessions WHERE id = $1";

    const PURGE_SESSIONS: &'static str = "DELETE FROM sessions WHERE expire_time < $1";

    async fn lock_revocations(_: &mut Self::Connection) -> sqlx::Result<()> {
        Ok(())
    }

    async fn announce(_: &mut Self::Connection, _: &'static str) -> sqlx::Result<()> {
        Ok(())
    }

    async fn follow(_: &Pool<Self>, _: &'static str, _: Arc<Notify>) -> sqlx::Result<Option<Task>> {
        Ok(None)
    }

    async fn claim_purge(_: &mut Self::Connection) -> sqlx::Result<bool> {
        Ok(true)
    }
}
