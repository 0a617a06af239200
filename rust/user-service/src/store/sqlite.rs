//! [`SqliteUserStore`]: writes and lists through a sqlx pool; hot reads inline on rusqlite
//! read-only connections. Every multi-step write is one transaction that takes the write lock
//! up front.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore as _;
use sqlx::{Row, SqlitePool};

use super::{Profile, Reservation, State, UserStore, columns, split_roles};
use crate::error::{Error, Result};

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// [`UserStore`] on SQLite.
#[derive(Clone)]
pub struct SqliteUserStore {
    pool: SqlitePool,
    readers: Arc<Readers>,
}

impl SqliteUserStore {
    /// Opens the database at `url` (creating it) and runs the migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = grimos_common::db::open_sqlite_migrated(url, 8, &MIGRATOR).await?;
        let readers = Arc::new(Readers::open(&grimos_common::db::sqlite_path(url)?)?);
        Ok(Self { pool, readers })
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A profile's columns, in the order [`profile`] and [`profile_row`] read them.
const COLUMNS: &str = columns!();
/// One profile by id.
const GET_BY_ID: &str = concat!("SELECT ", columns!(), " FROM users WHERE id = ?1");
/// The first page of active profiles.
const LIST_FIRST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE state = 'active' ORDER BY create_time, id LIMIT ?1"
);
/// The page of active profiles after a (create time, id) position.
const LIST_AFTER: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE state = 'active' AND (create_time, id) > (?1, ?2)",
    " ORDER BY create_time, id LIMIT ?3"
);

/// Read-only connections for the hot paths: `get` by id (every authenticated request reads
/// the caller's profile) and `list` (pages of up to 100 rows, by index). A sqlx SQLite query
/// hands each statement to the connection's worker thread and back, plus a ping on release: two thread wake-ups that cost more than the
/// lookup itself. These connections run the primary-key lookup inline instead: in WAL mode a
/// reader never waits for a writer, and the lookup touches a few B-tree pages that stay in
/// memory, so it takes microseconds. A reader is borrowed with `try_lock` only; when all are
/// busy, or the read fails, the caller falls back to the pool, so no task ever waits here.
struct Readers {
    connections: Vec<Mutex<rusqlite::Connection>>,
    next: AtomicUsize,
}

/// Pages up to this many rows are read inline (tens of microseconds); longer ones, which
/// would hold a runtime thread for a millisecond, go through the pool.
const INLINE_LIST_LIMIT: i64 = 101;

impl Readers {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let count = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        let connections = (0..count)
            .map(|_| {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // Only a crash recovery or a checkpoint in TRUNCATE mode makes a WAL reader
                // wait; never long, and then the pool takes over.
                conn.busy_timeout(Duration::from_millis(20))?;
                conn.prepare_cached(GET_BY_ID)?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| anyhow::anyhow!("cannot open a reader of the user database: {e}"))?;
        Ok(Self {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// `read` on a free reader; `None` if none is free or the read failed (the caller then
    /// asks the pool).
    fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.connections.len();
        let conn = (0..n).find_map(|i| self.connections[(start + i) % n].try_lock().ok())?;
        match read(&conn) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::debug!(%error, "inline read failed; asking the pool");
                None
            }
        }
    }

    /// The profile with `id`, in any state.
    fn get(&self, id: &str) -> Option<Option<Profile>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(GET_BY_ID)?;
            let mut rows = statement.query([id])?;
            rows.next()?.map(profile_row).transpose()
        })
    }

    /// Active profiles after `after` (create time, id), in that order, at most `limit`.
    fn list(&self, after: Option<(i64, &str)>, limit: i64) -> Option<Vec<Profile>> {
        self.read(|conn| match after {
            None => conn
                .prepare_cached(LIST_FIRST)?
                .query_map(rusqlite::params![limit], profile_row)?
                .collect(),
            Some((create_time, id)) => conn
                .prepare_cached(LIST_AFTER)?
                .query_map(rusqlite::params![create_time, id, limit], profile_row)?
                .collect(),
        })
    }
}

fn profile_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Profile> {
    Ok(Profile {
        id: row.get(0)?,
        email: row.get(1)?,
        display_name: row.get(2)?,
        roles: split_roles(row.get_ref(3)?.as_str()?),
        state: State::parse(row.get_ref(4)?.as_str()?),
        create_time: row.get(5)?,
        update_time: row.get(6)?,
        lease_until: row.get(7)?,
    })
}

fn profile(row: &sqlx::sqlite::SqliteRow) -> Profile {
    Profile {
        id: row.get(0),
        email: row.get(1),
        display_name: row.get(2),
        roles: split_roles(row.get::<&str, _>(3)),
        state: State::parse(row.get::<&str, _>(4)),
        create_time: row.get(5),
        update_time: row.get(6),
        lease_until: row.get(7),
    }
}

async fn insert(conn: &mut sqlx::SqliteConnection, p: &Profile) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         VALUES (?1, ?2, ?3, '', 'pending', ?4, ?4, ?5)",
    )
    .bind(&p.id)
    .bind(&p.email)
    .bind(&p.display_name)
    .bind(p.create_time)
    .bind(p.lease_until)
    .execute(conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => Error::AlreadyExists,
        e => e.into(),
    })?;
    Ok(())
}

#[async_trait]
impl UserStore for SqliteUserStore {
    async fn ping(&self) -> Result<()> {
        // Reads the schema, so the file itself must be readable (`SELECT 1` touches nothing).
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn page_key(&self) -> Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        sqlx::query("INSERT OR IGNORE INTO secrets (name, value) VALUES ('page_token_key', ?1)")
            .bind(fresh.as_slice())
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = 'page_token_key'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn reserve(&self, p: &Profile) -> Result<Reservation> {
        let mut tx = self.write_tx().await?;
        let existing = sqlx::query("SELECT id, state, lease_until FROM users WHERE email = ?1")
            .bind(&p.email)
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match existing {
            None => {
                insert(&mut tx, p).await?;
                Reservation::Reserved
            }
            Some(row) => Reservation::of_existing(
                row.get(0),
                State::parse(row.get::<&str, _>(1)),
                row.get(2),
                p.create_time,
            ),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn replace_abandoned(&self, old_id: &str, p: &Profile, now: i64) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query(
            "DELETE FROM users WHERE id = ?1 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= ?2)",
        )
        .bind(old_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        insert(&mut tx, p).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn activate(&self, id: &str, roles: &[String]) -> Result<Option<Profile>> {
        let row = sqlx::query(&format!(
            "UPDATE users SET state = 'active', roles = ?2, lease_until = NULL
             WHERE id = ?1 AND state = 'pending' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(roles.join(","))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(profile))
    }

    async fn release(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE users SET lease_until = 0 WHERE id = ?1 AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_pending(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM users WHERE id = ?1 AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Profile>> {
        if let Some(found) = self.readers.get(id) {
            return Ok(found);
        }
        let row = sqlx::query(GET_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(profile))
    }

    async fn update_display_name(
        &self,
        id: &str,
        display_name: &str,
        now: i64,
    ) -> Result<Option<Profile>> {
        let row = sqlx::query(&format!(
            "UPDATE users SET display_name = ?2, update_time = max(?3, update_time + 1)
             WHERE id = ?1 AND state = 'active' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(display_name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(profile))
    }

    async fn mark_deleting(&self, id: &str, pending_expired_before: Option<i64>) -> Result<bool> {
        let result = match pending_expired_before {
            None => {
                sqlx::query("UPDATE users SET state = 'deleting' WHERE id = ?1 AND state = 'active'")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
            Some(now) => {
                sqlx::query(
                    "UPDATE users SET state = 'deleting'
                     WHERE id = ?1 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= ?2)",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(result.rows_affected() > 0)
    }

    async fn delete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM users WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list(&self, after: Option<(i64, String)>, limit: i64) -> Result<Vec<Profile>> {
        let position = after.as_ref().map(|(time, id)| (*time, id.as_str()));
        if limit <= INLINE_LIST_LIMIT
            && let Some(page) = self.readers.list(position, limit)
        {
            return Ok(page);
        }
        let rows = match after {
            None => {
                sqlx::query(LIST_FIRST)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some((create_time, id)) => {
                sqlx::query(LIST_AFTER)
                    .bind(create_time)
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(profile).collect())
    }

    async fn unfinished(&self, now: i64) -> Result<Vec<(String, State)>> {
        let rows = sqlx::query(
            "SELECT id, state FROM users
             WHERE state = 'deleting' OR (state = 'pending' AND (lease_until IS NULL OR lease_until <= ?1))",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), State::parse(row.get::<&str, _>(1))))
            .collect())
    }
}
