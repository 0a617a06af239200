//! [`PostgresUserStore`]: the same behaviour as the SQLite store, on a PostgreSQL pool.
//!
//! SQLite serialises every multi-step write behind `BEGIN IMMEDIATE`; PostgreSQL runs them
//! concurrently (READ COMMITTED), so each one is built to need no table lock:
//! - a reservation inserts first (`ON CONFLICT (email) DO NOTHING`, which waits for a
//!   concurrent insert of the same email to commit or roll back) and only then reads the row
//!   that holds the email;
//! - every state change is one conditional `UPDATE`/`DELETE`: a concurrent writer of the same
//!   row waits for the row lock, then re-checks the condition on the row as committed, so
//!   exactly one of them matches.
//!
//! `id` is compared byte-wise (`COLLATE "C"`, as SQLite's `BINARY`), so ListUsers pages come
//! in the same order on both backends, whatever the database's default collation.

use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore as _;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};

use super::{Profile, Reservation, State, UserStore, columns, split_roles};
use crate::error::{Error, Result};

/// The embedded migrations of `migrations-postgres/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Connections per process: requests hold one for a single statement (or a two-statement
/// transaction), so a few keep up with many concurrent calls.
const MAX_CONNECTIONS: u32 = 16;
/// user-service's schema: its tables and migration records, apart from auth-service's when
/// both use one database.
pub const SCHEMA: &str = "user_service";

/// How many times a reservation retries when the row holding its email vanished between
/// its insert and its read (a deletion finished in between): each retry can only find the
/// email free or held again, so this is never reached in practice.
const RESERVE_ATTEMPTS: usize = 4;

/// Connections of the read pool (see [`PostgresUserStore`]).
const MAX_READERS: u32 = 8;

/// [`UserStore`] on PostgreSQL.
///
/// Writes go through a pool that checks each connection with a round trip before lending it,
/// so one broken while idle (a server restart, a failover) is replaced, never used. The hot
/// reads (a profile by id on every authenticated request, and list pages) go through a second
/// pool on the same database that skips that check, which saves a round trip per request
/// (about 15 % of `/me`'s throughput, docs/BENCHMARKS.md); a read that meets a broken
/// connection there is retried once on the checked pool, which reads are safe to repeat.
#[derive(Clone)]
pub struct PostgresUserStore {
    pool: PgPool,
    readers: PgPool,
}

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
        Ok(Self { pool, readers })
    }

    /// `read` on the unchecked read pool, and once more on the checked pool if the
    /// connection it got had broken (not when the server cannot be reached at all: the
    /// checked pool would only wait as long again).
    async fn read<'a, T, F, Fut>(&'a self, read: F) -> Result<T, sqlx::Error>
    where
        F: Fn(&'a PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        match read(&self.readers).await {
            Err(error)
                if grimos_common::db::database_unavailable(&error)
                    && !matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) =>
            {
                tracing::debug!(%error, "a pooled read connection had broken; reading again");
                read(&self.pool).await
            }
            result => result,
        }
    }
}

/// A profile's columns.
const COLUMNS: &str = columns!();
/// One profile by id.
const GET_BY_ID: &str = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");
/// The first page of active profiles (by the partial index `users_by_create_time`).
pub(super) const LIST_FIRST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE state = 'active' ORDER BY create_time, id LIMIT $1"
);
/// The page of active profiles after a (create time, id) position: a row comparison, which
/// PostgreSQL answers from the same index, starting right after the position.
pub(super) const LIST_AFTER: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE state = 'active' AND (create_time, id) > ($1, $2)",
    " ORDER BY create_time, id LIMIT $3"
);

fn profile(row: &PgRow) -> Result<Profile, sqlx::Error> {
    Ok(Profile {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        display_name: row.try_get(2)?,
        roles: split_roles(row.try_get::<&str, _>(3)?),
        state: State::parse(row.try_get::<&str, _>(4)?),
        create_time: row.try_get(5)?,
        update_time: row.try_get(6)?,
        lease_until: row.try_get(7)?,
    })
}

fn optional_profile(row: Option<PgRow>) -> Result<Option<Profile>> {
    Ok(row.as_ref().map(profile).transpose()?)
}

/// Unique violations (the email, or the id) are `ALREADY_EXISTS`, as on SQLite.
fn unique_is_already_exists(error: sqlx::Error) -> Error {
    match error {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => Error::AlreadyExists,
        e => e.into(),
    }
}

/// Inserts `p` as a pending row; `false` (nothing written) if its email is taken.
async fn insert_if_email_free(conn: &mut PgConnection, p: &Profile) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         VALUES ($1, $2, $3, '', 'pending', $4, $4, $5)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(&p.id)
    .bind(&p.email)
    .bind(&p.display_name)
    .bind(p.create_time)
    .bind(p.lease_until)
    .execute(conn)
    .await
    .map_err(unique_is_already_exists)?
    .rows_affected();
    Ok(inserted > 0)
}

#[async_trait]
impl UserStore for PostgresUserStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn page_key(&self) -> Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ('page_token_key', $1)
             ON CONFLICT (name) DO NOTHING",
        )
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
        let mut conn = self.pool.acquire().await?;
        for _ in 0..RESERVE_ATTEMPTS {
            if insert_if_email_free(&mut conn, p).await? {
                return Ok(Reservation::Reserved);
            }
            let existing = sqlx::query("SELECT id, state, lease_until FROM users WHERE email = $1")
                .bind(&p.email)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = existing {
                return Ok(Reservation::of_existing(
                    row.try_get(0)?,
                    State::parse(row.try_get::<&str, _>(1)?),
                    row.try_get(2)?,
                    p.create_time,
                ));
            }
        }
        // The email kept changing hands under this request: as with a sign-up in flight,
        // the caller may retry.
        Ok(Reservation::InFlight)
    }

    async fn replace_abandoned(&self, old_id: &str, p: &Profile, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM users WHERE id = $1 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $2)",
        )
        .bind(old_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        // Another sign-up for the email waits on the deleted row's index entry until this
        // commits, then finds the new row: the email is never free in between.
        if !insert_if_email_free(&mut tx, p).await? {
            return Err(Error::AlreadyExists);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn activate(&self, id: &str, roles: &[String]) -> Result<Option<Profile>> {
        let row = sqlx::query(&format!(
            "UPDATE users SET state = 'active', roles = $2, lease_until = NULL
             WHERE id = $1 AND state = 'pending' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(roles.join(","))
        .fetch_optional(&self.pool)
        .await?;
        optional_profile(row)
    }

    async fn release(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE users SET lease_until = 0 WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_pending(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM users WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Profile>> {
        let row = self
            .read(|pool| sqlx::query(GET_BY_ID).bind(id).fetch_optional(pool))
            .await?;
        optional_profile(row)
    }

    async fn update_display_name(
        &self,
        id: &str,
        display_name: &str,
        now: i64,
    ) -> Result<Option<Profile>> {
        let row = sqlx::query(&format!(
            "UPDATE users SET display_name = $2, update_time = GREATEST($3, update_time + 1)
             WHERE id = $1 AND state = 'active' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(display_name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        optional_profile(row)
    }

    async fn mark_deleting(&self, id: &str, pending_expired_before: Option<i64>) -> Result<bool> {
        let result = match pending_expired_before {
            None => {
                sqlx::query("UPDATE users SET state = 'deleting' WHERE id = $1 AND state = 'active'")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
            Some(now) => {
                sqlx::query(
                    "UPDATE users SET state = 'deleting'
                     WHERE id = $1 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $2)",
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
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list(&self, after: Option<(i64, String)>, limit: i64) -> Result<Vec<Profile>> {
        let rows = match &after {
            None => {
                self.read(|pool| sqlx::query(LIST_FIRST).bind(limit).fetch_all(pool))
                    .await?
            }
            Some((create_time, id)) => {
                self.read(|pool| {
                    sqlx::query(LIST_AFTER)
                        .bind(*create_time)
                        .bind(id.as_str())
                        .bind(limit)
                        .fetch_all(pool)
                })
                .await?
            }
        };
        Ok(rows.iter().map(profile).collect::<Result<_, _>>()?)
    }

    async fn unfinished(&self, now: i64) -> Result<Vec<(String, State)>> {
        let rows = sqlx::query(
            "SELECT id, state FROM users
             WHERE state = 'deleting' OR (state = 'pending' AND (lease_until IS NULL OR lease_until <= $1))",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, State::parse(row.try_get::<&str, _>(1)?))))
            .collect()
    }
}
