//! [`SqliteUserStore`]: [`SqlUserStore`] on SQLite, writes and lists through a sqlx pool, and
//! the hot reads inline on rusqlite read-only connections. Every multi-step write takes the
//! database's one write lock up front, which serializes writers.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use grimos_common::db::split_roles;
use sqlx::{Sqlite, SqlitePool};

use super::sql::{Backend, GET_BY_ID, LIST_AFTER, LIST_FIRST, SqlUserStore};
use super::{Profile, State};

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// [`UserStore`](super::UserStore) on SQLite.
pub type SqliteUserStore = SqlUserStore<Sqlite>;

impl SqliteUserStore {
    /// Opens the database at `url` (creating it) and runs the migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = grimos_common::db::open_sqlite_migrated(url, 8, &MIGRATOR).await?;
        let reads = Readers::open(&grimos_common::db::sqlite_path(url)?)?;
        Ok(Self { pool, reads })
    }
}

impl Backend for Sqlite {
    type Reads = Readers;

    fn get_inline(reads: &Readers, id: &str) -> Option<Option<Profile>> {
        reads.get(id)
    }

    fn list_inline(
        reads: &Readers,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Option<Vec<Profile>> {
        if limit > INLINE_LIST_LIMIT {
            return None;
        }
        reads.list(after, limit)
    }

    fn read_pool(store: &SqlUserStore<Self>) -> &SqlitePool {
        &store.pool
    }

    /// A SQLite connection is a file handle, which does not break the way a socket does.
    fn read_again(_: &sqlx::Error) -> bool {
        false
    }
}

/// Read-only connections for the hot paths: `get` by id (every authenticated request reads
/// the caller's profile) and `list` (pages of up to 100 rows, by index). A sqlx SQLite query
/// hands each statement to the connection's worker thread and back, plus a ping on release: two thread wake-ups that cost more than the
/// lookup itself. These connections run the primary-key lookup inline instead: in WAL mode a
/// reader never waits for a writer, and the lookup touches a few B-tree pages that stay in
/// memory, so it takes microseconds. A reader is borrowed with `try_lock` only; when all are
/// busy, or the read fails, the caller falls back to the pool, so no task ever waits here.
pub struct Readers {
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
        let _span = grimos_common::telemetry::db_span("sqlite", GET_BY_ID).entered();
        self.read(|conn| {
            let mut statement = conn.prepare_cached(GET_BY_ID)?;
            let mut rows = statement.query([id])?;
            rows.next()?.map(profile_row).transpose()
        })
    }

    /// Active profiles after `after` (create time, id), in that order, at most `limit`.
    fn list(&self, after: Option<(i64, &str)>, limit: i64) -> Option<Vec<Profile>> {
        let sql = if after.is_some() {
            LIST_AFTER
        } else {
            LIST_FIRST
        };
        let _span = grimos_common::telemetry::db_span("sqlite", sql).entered();
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
