//! [`SqlUserStore`], the one implementation of [`UserStore`]: what a reservation, a takeover
//! of an abandoned sign-up, an activation, a deletion and a list page do is written here once,
//! over [`grimos_common::db::sql`], for both backends. A [`Backend`] gives only what differs:
//! a statement whose dialects differ, and how the hot reads (a profile by id on every
//! authenticated request, list pages) reach the database (`sqlite.rs`, `postgres.rs`).
//!
//! Every multi-step write needs no table lock, so it behaves the same whether writers are
//! serialized (SQLite) or run at once (PostgreSQL, READ COMMITTED):
//! - a reservation inserts first (`ON CONFLICT (email) DO NOTHING`, which on PostgreSQL waits
//!   for a concurrent insert of the same email to commit or roll back) and only then reads
//!   the row that holds the email;
//! - every state change is one conditional `UPDATE`/`DELETE`: a concurrent writer of the same
//!   row waits for it, then re-checks the condition on the row as committed, so exactly one of
//!   them matches.
//!
//! Every statement here is the same text on both backends (`$1`, `$2`, ... parameters).

use std::future::Future;

use async_trait::async_trait;
use grimos_common::db::sql::{Columns, Sql};
use grimos_common::db::{PoolStats, join_roles, split_roles};
use rand::RngCore as _;
use sqlx::Pool;

use super::{Profile, Reservation, State, UserStore};
use crate::error::{Error, Result};

/// What a backend adds to [`Sql`] for user-service's store.
pub trait Backend: Sql {
    /// What the backend keeps for its hot reads besides the pool.
    type Reads: Send + Sync + 'static;

    /// The profile with `id`, in any state, read without a trip through a pool when the
    /// backend can (the hot read of every authenticated request); `None` to read it from
    /// [`Backend::read_pool`].
    fn get_inline(reads: &Self::Reads, id: &str) -> Option<Option<Profile>>;

    /// A page of active profiles ([`page`]) read without a trip through a pool when the
    /// backend can; `None` to read it from [`Backend::read_pool`].
    fn list_inline(
        reads: &Self::Reads,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Option<Vec<Profile>>;

    /// The pool the reads that were not inline go through.
    fn read_pool(store: &SqlUserStore<Self>) -> &Pool<Self>;

    /// Whether a read that failed with `error` on [`Backend::read_pool`] is tried once more
    /// on the store's own pool (reads are safe to repeat).
    fn read_again(error: &sqlx::Error) -> bool;
}

/// user-service's profiles in one database of backend `DB`.
pub struct SqlUserStore<DB: Backend> {
    pub(super) pool: Pool<DB>,
    pub(super) reads: DB::Reads,
}

impl<DB: Backend> SqlUserStore<DB> {
    /// `read` on the backend's read pool, and once more on the store's own pool if the
    /// backend says the error calls for it ([`Backend::read_again`]).
    async fn read<'a, T, F, Fut>(&'a self, read: F) -> sqlx::Result<T>
    where
        F: Fn(&'a Pool<DB>) -> Fut,
        Fut: Future<Output = sqlx::Result<T>>,
    {
        match read(DB::read_pool(self)).await {
            Err(error) if DB::read_again(&error) => {
                tracing::debug!(%error, "a pooled read connection had broken; reading again");
                read(&self.pool).await
            }
            result => result,
        }
    }
}

/// A profile's columns, in the order [`profile`] and the SQLite store's inline reader read
/// them (a macro, so that statements can be `concat!`ed from it).
macro_rules! columns {
    () => {
        "id, email, display_name, roles, state, create_time, update_time, lease_until"
    };
}

/// One profile by id.
pub const GET_BY_ID: &str = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");
/// The first page of active profiles (by the partial index `users_by_create_time`).
pub const LIST_FIRST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE state = 'active' ORDER BY create_time, id LIMIT $1"
);
/// The page of active profiles after a (create time, id) position: a row comparison, which
/// both backends answer from the same index, starting right after the position.
pub const LIST_AFTER: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE state = 'active' AND (create_time, id) > ($1, $2)",
    " ORDER BY create_time, id LIMIT $3"
);

/// How many times a reservation retries when the row holding its email vanished between
/// its insert and its read (a deletion finished in between): each retry can only find the
/// email free or held again, so this is never reached in practice.
const RESERVE_ATTEMPTS: usize = 4;

/// A profile from a row of its columns (`columns!`).
pub(super) fn profile<R: Columns>(row: &R) -> sqlx::Result<Profile> {
    Ok(Profile {
        id: row.column(0)?,
        email: row.column(1)?,
        display_name: row.column(2)?,
        roles: split_roles(row.column(3)?),
        state: State::parse(row.column(4)?),
        create_time: row.column(5)?,
        update_time: row.column(6)?,
        lease_until: row.column(7)?,
    })
}

/// The profile with `id` in any state, read on `pool`.
async fn get_by_id<DB: Sql>(pool: &Pool<DB>, id: &str) -> sqlx::Result<Option<Profile>> {
    DB::query(GET_BY_ID)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(profile)
        .transpose()
}

/// Active profiles after `after` (create time, id), in that order, at most `limit`, read on
/// `pool`.
async fn page<DB: Sql>(
    pool: &Pool<DB>,
    after: Option<(i64, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<Profile>> {
    let rows = match after {
        None => DB::query(LIST_FIRST).bind(limit).fetch_all(pool).await?,
        Some((create_time, id)) => {
            DB::query(LIST_AFTER)
                .bind(create_time)
                .bind(id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(profile).collect()
}

/// Unique violations (the email, or the id) are `ALREADY_EXISTS`.
fn unique_is_already_exists(error: sqlx::Error) -> Error {
    match error {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => Error::AlreadyExists,
        e => e.into(),
    }
}

/// Inserts `p` as a pending row on `connection`; `false` (nothing written) if its email is
/// taken.
async fn insert_if_email_free<DB: Sql>(
    connection: &mut DB::Connection,
    p: &Profile,
) -> Result<bool> {
    let inserted = DB::query(
        "INSERT INTO users (id, email, display_name, roles, state, create_time, update_time, lease_until)
         VALUES ($1, $2, $3, '', 'pending', $4, $4, $5)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(p.id.as_str())
    .bind(p.email.as_str())
    .bind(p.display_name.as_str())
    .bind(p.create_time)
    .bind(p.lease_until)
    .execute(connection)
    .await
    .map_err(unique_is_already_exists)?;
    Ok(inserted > 0)
}

#[async_trait]
impl<DB: Backend> UserStore for SqlUserStore<DB> {
    async fn ping(&self) -> Result<()> {
        DB::query(DB::PING).execute(&self.pool).await?;
        Ok(())
    }

    fn pools(&self) -> Vec<PoolStats> {
        let mut pools = vec![PoolStats::of("main", &self.pool)];
        let reads = DB::read_pool(self);
        if !std::ptr::eq(reads, &self.pool) {
            pools.push(PoolStats::of("readers", reads));
        }
        pools
    }

    async fn page_key(&self) -> Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        DB::query(
            "INSERT INTO secrets (name, value) VALUES ('page_token_key', $1)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(fresh.as_slice())
        .execute(&self.pool)
        .await?;
        let row = DB::query("SELECT value FROM secrets WHERE name = 'page_token_key'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.column(0)?)
    }

    async fn reserve(&self, p: &Profile) -> Result<Reservation> {
        let mut connection = self.pool.acquire().await?;
        for _ in 0..RESERVE_ATTEMPTS {
            if insert_if_email_free::<DB>(&mut connection, p).await? {
                return Ok(Reservation::Reserved);
            }
            let existing = DB::query("SELECT id, state, lease_until FROM users WHERE email = $1")
                .bind(p.email.as_str())
                .fetch_optional(&mut *connection)
                .await?;
            if let Some(row) = existing {
                return Ok(Reservation::of_existing(
                    row.column(0)?,
                    State::parse(row.column(1)?),
                    row.column(2)?,
                    p.create_time,
                ));
            }
        }
        // The email kept changing hands under this request: as with a sign-up in flight,
        // the caller may retry.
        Ok(Reservation::InFlight)
    }

    async fn replace_abandoned(&self, old_id: &str, p: &Profile, now: i64) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let deleted = DB::query(
            "DELETE FROM users WHERE id = $1 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $2)",
        )
        .bind(old_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if deleted == 0 {
            return Ok(false);
        }
        // Another sign-up for the email waits (PostgreSQL: on the deleted row's index entry;
        // SQLite: for the write lock) until this commits, then finds the new row: the email is
        // never free in between.
        if !insert_if_email_free::<DB>(&mut tx, p).await? {
            return Err(Error::AlreadyExists);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn activate(&self, id: &str, roles: &[String]) -> Result<Option<Profile>> {
        let row = DB::query(concat!(
            "UPDATE users SET state = 'active', roles = $2, lease_until = NULL
             WHERE id = $1 AND state = 'pending' RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(join_roles(roles))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(profile).transpose()?)
    }

    async fn release(&self, id: &str) -> Result<()> {
        DB::query("UPDATE users SET lease_until = 0 WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_pending(&self, id: &str) -> Result<()> {
        DB::query("DELETE FROM users WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Profile>> {
        if let Some(found) = DB::get_inline(&self.reads, id) {
            return Ok(found);
        }
        Ok(self.read(|pool| get_by_id(pool, id)).await?)
    }

    async fn update_display_name(
        &self,
        id: &str,
        display_name: &str,
        now: i64,
    ) -> Result<Option<Profile>> {
        // `update_time` becomes the later of `now` and one past the last update, so it always
        // moves forward, whatever the clock does.
        let row = DB::query(concat!(
            "UPDATE users SET display_name = $2,
               update_time = CASE WHEN $3 > update_time + 1 THEN $3 ELSE update_time + 1 END
             WHERE id = $1 AND state = 'active' RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(display_name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(profile).transpose()?)
    }

    async fn mark_deleting(&self, id: &str, pending_expired_before: Option<i64>) -> Result<bool> {
        let changed = match pending_expired_before {
            None => {
                DB::query("UPDATE users SET state = 'deleting' WHERE id = $1 AND state = 'active'")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
            Some(now) => {
                DB::query(
                    "UPDATE users SET state = 'deleting'
                     WHERE id = $1 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $2)",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(changed > 0)
    }

    async fn delete(&self, id: &str) -> Result<()> {
        DB::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list(&self, after: Option<(i64, String)>, limit: i64) -> Result<Vec<Profile>> {
        let position = after.as_ref().map(|(time, id)| (*time, id.as_str()));
        if let Some(page) = DB::list_inline(&self.reads, position, limit) {
            return Ok(page);
        }
        Ok(self.read(|pool| page(pool, position, limit)).await?)
    }

    async fn unfinished(&self, now: i64) -> Result<Vec<(String, State)>> {
        let rows = DB::query(
            "SELECT id, state FROM users
             WHERE state = 'deleting' OR (state = 'pending' AND (lease_until IS NULL OR lease_until <= $1))",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.column(0)?, State::parse(row.column(1)?))))
            .collect()
    }
}
