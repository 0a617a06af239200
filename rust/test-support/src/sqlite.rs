//! SQLite files the services keep, seen from another process's side.

use std::path::Path;

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// A connection holding the write lock of the SQLite database at `path` (an open
/// `BEGIN IMMEDIATE` transaction) until it is dropped: what another process writing to the
/// same file looks like. Readers go on (WAL); writers wait for their busy timeout.
pub struct WriteLock(SqliteConnection);

/// Takes the write lock of the database at `path`.
pub async fn write_lock(path: &Path) -> WriteLock {
    let mut connection =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut connection)
        .await
        .unwrap();
    WriteLock(connection)
}

impl WriteLock {
    /// Ends the transaction, letting writers in.
    pub async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
        let _ = self.0.close().await;
    }
}
