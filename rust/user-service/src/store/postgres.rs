//! [`PostgresUserStore`]: [`SqlUserStore`] on a PostgreSQL pool, with a second pool for the
//! hot reads.
//!
//! The decisions are [`SqlUserStore`]'s, the same as on SQLite; PostgreSQL runs writers at
//! once (READ COMMITTED), which they are built for (see `sql.rs`). `id` is compared byte-wise
//! (`COLLATE "C"`, as SQLite's `BINARY`), so ListUsers pages come in the same order on both
//! backends, whatever the database's default collation.

use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::Profile;
use super::sql::{Backend, SqlUserStore};

/// The embedded migrations of `migrations-postgres/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Connections per process: requests hold one for a single statement (or a two-statement
/// transaction), so a few keep up with many concurrent calls.
const MAX_CONNECTIONS: u32 = 16;
/// user-service's schema: its tables and migration records, apart from auth-service's when
/// both use one database.
pub const SCHEMA: &str = "user_service";

/// Connections of the read pool (see [`PostgresUserStore`]).
const MAX_READERS: u32 = 8;

/// [`UserStore`](super::UserStore) on PostgreSQL.
///
/// Writes go through a pool that checks each connection with a round trip before lending it,
/// so one broken while idle (a server restart, a failover) is replaced, never used. The hot
/// reads (a profile by id on every authenticated request, and list pages) go through a second
/// pool on the same database ([`Readers`]) that skips that check, which saves a round trip per
/// request (about 15 % of `/me`'s throughput, docs/BENCHMARKS.md); a read that meets a broken
/// connection there is retried once on the checked pool, which reads are safe to repeat.
pub type PostgresUserStore = SqlUserStore<Postgres>;

impl PostgresUserStore {
    /// Connects to the database at `url` (failing within about `connect_timeout` when the
    /// server does not answer) and runs the migrations. Errors show the URL without its
    /// password.
    pub async fn open(url: &str, connect_timeout: Duration) -> anyhow::Result<Self> {
        let pool = grimos_common::db::open_postgres_migrated(
            url,
            SCHEMA,
            MAX_CONNECTIONS,
            connect_timeout,
            &MIGRATOR,
        )
        .await?;
        let readers = PgPoolOptions::new()
            .max_connections(MAX_READERS)
            .acquire_timeout(connect_timeout)
            .test_before_acquire(false)
            .connect_lazy_with((*pool.connect_options()).clone());
        Ok(Self {
            pool,
            reads: Readers(readers),
        })
    }
}

/// The read pool of a [`PostgresUserStore`]: connections lent without a check.
pub struct Readers(PgPool);

impl Backend for Postgres {
    type Reads = Readers;

    fn get_inline(_: &Readers, _: &str) -> Option<Option<Profile>> {
        None
    }

    fn list_inline(_: &Readers, _: Option<(i64, &str)>, _: i64) -> Option<Vec<Profile>> {
        None
    }

    fn read_pool(store: &SqlUserStore<Self>) -> &PgPool {
        &store.reads.0
    }

    /// When the connection the read got had broken, which the checked pool would have
    /// replaced; not when the server cannot be reached at all (the checked pool would only
    /// wait as long again).
    fn read_again(error: &sqlx::Error) -> bool {
        grimos_common::db::database_unavailable(error)
            && !matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
    }
}
