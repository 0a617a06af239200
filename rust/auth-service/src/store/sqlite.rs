//! [`Store`](super::Store) on SQLite: WAL, `synchronous = FULL`, migrations embedded in the
//! binary. Every write transaction takes the database's one write lock up front
//! (`BEGIN IMMEDIATE`), which serializes writers: this backend needs no lock of its own.
//!
//! SQLite has no notifications, but it says when the database changed: `PRAGMA data_version`,
//! asked on one connection, changes when any other connection (another replica's process, or
//! this one's pool) has committed since. [`Backend::follow`] asks it every
//! [`DATA_VERSION_CHECK`] and wakes the revocation sync on a change, so replicas sharing a
//! file agree in milliseconds too; the sync interval stays the safety net.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Pool, Sqlite, SqliteConnection};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use super::Task;

use super::sql::{Backend, SqlStore};

/// How often `PRAGMA data_version` is asked: a read of the WAL index that costs microseconds.
pub const DATA_VERSION_CHECK: Duration = Duration::from_millis(25);
/// The wait before a new connection is made, after the one asking failed.
const DATA_VERSION_RETRY: Duration = Duration::from_secs(1);

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

    /// Not a channel: the database's `data_version` (see the module documentation).
    async fn follow(
        pool: &Pool<Self>,
        _: &'static str,
        on_change: Arc<Notify>,
    ) -> sqlx::Result<Option<Task>> {
        let (connection, seen) = data_version_connection(pool).await?;
        let task: Task = Box::pin(watch_data_version(
            pool.clone(),
            connection,
            seen,
            on_change,
        ));
        Ok(Some(task))
    }

    async fn claim_purge(_: &mut Self::Connection) -> sqlx::Result<bool> {
        Ok(true)
    }
}

/// A connection of its own (detached from `pool`, which may open another), and the
/// `data_version` it sees now.
async fn data_version_connection(pool: &Pool<Sqlite>) -> sqlx::Result<(SqliteConnection, i64)> {
    let mut connection = pool.acquire().await?.detach();
    let seen = data_version(&mut connection).await?;
    Ok((connection, seen))
}

async fn data_version(connection: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(connection)
        .await
}

/// Wakes `on_change` whenever `data_version` changes, for ever; after an error, a new
/// connection ([`reconnect`]), and `on_change` woken (a change may have been missed).
async fn watch_data_version(
    pool: Pool<Sqlite>,
    mut connection: SqliteConnection,
    mut seen: i64,
    on_change: Arc<Notify>,
) {
    let mut ticker = tokio::time::interval(DATA_VERSION_CHECK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match data_version(&mut connection).await {
            Ok(version) if version == seen => {}
            Ok(version) => {
                seen = version;
                on_change.notify_one();
            }
            Err(error) => {
                tracing::warn!(%error, "cannot ask SQLite whether revocations changed; reconnecting");
                (connection, seen) = reconnect(&pool).await;
                on_change.notify_one();
            }
        }
    }
}

/// A new [`data_version_connection`], tried every [`DATA_VERSION_RETRY`] until one is made.
async fn reconnect(pool: &Pool<Sqlite>) -> (SqliteConnection, i64) {
    loop {
        tokio::time::sleep(DATA_VERSION_RETRY).await;
        match data_version_connection(pool).await {
            Ok(made) => return made,
            Err(error) => {
                tracing::warn!(%error, "cannot connect to SQLite to watch revocations; retrying")
            }
        }
    }
}
