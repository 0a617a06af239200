//! Opening a crash-safe SQLite database for a service, migrated once even when replicas
//! start together.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::url::sqlite_path;

/// Opens (creating the file and its folder if missing) a SQLite database for a service:
/// WAL journal, `synchronous = FULL` (a committed transaction survives a crash or power
/// loss), foreign keys on, and a busy timeout so that writers from several processes (replicas
/// sharing one file) wait for each other instead of failing.
pub async fn open_sqlite(url: &str, max_connections: u32) -> anyhow::Result<SqlitePool> {
    let path = sqlite_path(url)?;
    create_parent(&path)?;
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("invalid database URL {url:?}"))?
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        // A SQLite connection is a local file handle, not a socket that can go stale; pinging
        // it before every query cost a second trip to its worker thread per query.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the database {}", display(&path)))
}

/// Opens the SQLite database at `url` like [`open_sqlite`] and applies `migrator`, holding an
/// exclusive lock on a file beside the database (`<file>.migrate-lock`) meanwhile, so that
/// replicas starting together on a new shared database do not race: without it, two of them
/// could both see a migration as pending and one would fail (`table ... already exists`), or
/// both switch a new file to WAL at once (`database is locked`).
pub async fn open_sqlite_migrated(
    url: &str,
    max_connections: u32,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<SqlitePool> {
    let path = sqlite_path(url)?;
    create_parent(&path)?;
    let mut lock_path = path.clone().into_os_string();
    lock_path.push(".migrate-lock");
    let lock_path = PathBuf::from(lock_path);
    let lock = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        Ok(file)
    })
    .await
    .context("the migration lock task failed")??;
    let pool = open_sqlite(url, max_connections).await?;
    migrator
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate the database {}", display(&path)))?;
    // Closing the file releases the lock.
    drop(lock);
    Ok(pool)
}

/// Creates the folder a database file goes in, if it is missing.
fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the database folder {}", parent.display()))?;
    }
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_relative_and_absolute_files() {
        assert_eq!(
            sqlite_path("sqlite://data/auth.db").unwrap(),
            PathBuf::from("data/auth.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert!(sqlite_path("postgres://localhost/x").is_err());
        assert!(sqlite_path("sqlite::memory:").is_err());
        assert!(sqlite_path("sqlite://").is_err());
    }

    #[tokio::test]
    async fn opening_creates_the_folder_and_a_wal_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/db.sqlite", dir.path().display());
        let pool = open_sqlite(&url, 2).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(dir.path().join("nested/db.sqlite").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_together_on_a_new_database_all_migrate_it_once() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/test-migrations"));
        let migrator = std::sync::Arc::new(sqlx::migrate::Migrator::new(dir).await.unwrap());
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/shared.db", dir.path().display());
            let starts = (0..8).map(|_| {
                let (url, migrator) = (url.clone(), migrator.clone());
                tokio::spawn(async move { open_sqlite_migrated(&url, 2, &migrator).await })
            });
            let pools = futures_join_all(starts).await;
            for pool in &pools {
                let pool = pool
                    .as_ref()
                    .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
                let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM first")
                    .fetch_one(pool)
                    .await
                    .unwrap();
                assert_eq!(rows, 1, "the second migration ran exactly once");
            }
        }
    }

    async fn futures_join_all<T>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles.collect::<Vec<_>>() {
            out.push(handle.await.unwrap());
        }
        out
    }
}
