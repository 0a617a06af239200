//! [`SqlStore`], the one implementation of [`Store`]: every decision (what a rotation, a
//! reuse, a logout, a deletion, a login attempt and a purge do, and in which transaction) is
//! written here once, over [`grimos_common::db::sql`], for both backends. A [`Backend`] gives
//! only what differs: the statements whose dialects differ and the locks PostgreSQL needs where
//! SQLite's single writer already serializes (`sqlite.rs`, `postgres.rs`).
//!
//! Every statement here is the same text on both backends (`$1`, `$2`, ... parameters).

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use grimos_common::db::sql::{Columns, Sql};
use grimos_common::db::{PoolStats, join_roles, split_roles};
use grimos_token::{Kind, Revocation};
use sqlx::Pool;
use tokio::sync::Notify;

use super::{Credential, RefreshOutcome, Session, Store, Task};
use crate::error::{Error, Result};

/// The channel a revocation's commit is announced on, for the replicas that follow them
/// ([`Store::follow_revocations`]).
pub const REVOCATIONS_CHANNEL: &str = "grimos_auth_revocations";

/// What a backend adds to [`Sql`] for auth-service's store.
pub trait Backend: Sql {
    /// Reads session `$1` (`id, user_id, create_time, expire_time, revoke_time`) inside a write
    /// transaction, and keeps it from changing until the transaction ends: every change to a
    /// session or its refresh tokens happens under this, so what is read stays true until the
    /// commit. SQLite's write transaction already excludes every other writer; PostgreSQL locks
    /// the row.
    const LOCK_SESSION: &'static str;

    /// Deletes the sessions that ended before `$1` (with their refresh tokens, by cascade).
    const PURGE_SESSIONS: &'static str;

    /// Runs in a transaction before it inserts a revocation, so that revocations become
    /// visible in `seq` order (a replica polling "after seq N" must never skip a row committed
    /// late with a smaller `seq`). SQLite's writers already commit one at a time.
    fn lock_revocations(tx: &mut Self::Connection)
    -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Announces on `channel`, in transaction `tx`, that it commits a revocation: the
    /// announcement reaches [`Backend::follow`]'s task of every replica when (and only if) `tx`
    /// commits. SQLite has no one to tell: its replicas watch the database's `data_version`.
    fn announce(
        tx: &mut Self::Connection,
        channel: &'static str,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Starts listening on `channel` and returns the task that goes on: it wakes
    /// `on_announcement` for each announcement, and whenever announcements may have been
    /// missed (after a lost connection, which it makes again by itself), or, on a backend
    /// without announcements, whenever the database may hold new ones. `None`: it cannot tell.
    fn follow(
        pool: &Pool<Self>,
        channel: &'static str,
        on_announcement: Arc<Notify>,
    ) -> impl Future<Output = sqlx::Result<Option<Task>>> + Send;

    /// Whether this transaction should purge: false when another replica is purging, so that
    /// replicas do not purge at once.
    fn claim_purge(tx: &mut Self::Connection) -> impl Future<Output = sqlx::Result<bool>> + Send;
}

/// auth-service's tables in one database of backend `DB`, shared by replicas.
pub struct SqlStore<DB: Backend> {
    pub(super) pool: Pool<DB>,
}

impl<DB: Backend> SqlStore<DB> {
    /// The store on an opened and migrated `pool`.
    pub(super) fn new(pool: Pool<DB>) -> Self {
        Self { pool }
    }
}

/// A refresh token found by its digest, read under its session's lock ([`Backend::LOCK_SESSION`]).
struct FoundToken {
    session: Session,
    /// When the session was ended, if it was.
    revoke_time: Option<i64>,
    /// When the token was rotated, if it was.
    use_time: Option<i64>,
}

impl<DB: Backend> SqlStore<DB> {
    /// Inserts a revocation inside transaction `tx`, and announces it to the replicas
    /// following revocations, for when `tx` commits.
    pub(super) async fn insert_revocation_in(
        tx: &mut DB::Connection,
        revocation: &Revocation,
    ) -> Result<()> {
        DB::lock_revocations(&mut *tx).await?;
        DB::query(
            "INSERT INTO revocations (kind, subject, revoke_time, expire_time) VALUES ($1, $2, $3, $4)",
        )
        .bind(revocation.kind.as_str())
        .bind(revocation.subject.as_str())
        .bind(revocation.revoke_time)
        .bind(revocation.expire_time)
        .execute(&mut *tx)
        .await?;
        DB::announce(tx, REVOCATIONS_CHANNEL).await?;
        Ok(())
    }

    /// Looks a refresh token up with its session, which stays locked until `tx` ends. The
    /// session is locked before the token is read again: every change to a session's tokens
    /// holds that lock, so what is read stays true until commit, and the lock order (session,
    /// then token) is the one of the cascades.
    async fn find_refresh_token(
        tx: &mut DB::Connection,
        digest: &[u8],
    ) -> Result<Option<FoundToken>> {
        let Some(row) = DB::query("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let session_id: String = row.column(0)?;
        let Some(row) = DB::query(DB::LOCK_SESSION)
            .bind(session_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            // Deleted (credential deleted, or purged) since the token was read.
            return Ok(None);
        };
        let session = Session {
            id: row.column(0)?,
            user_id: row.column(1)?,
            create_time: row.column(2)?,
            expire_time: row.column(3)?,
        };
        let revoke_time = row.column(4)?;
        // Read again under the lock: the token may have been rotated meanwhile.
        let Some(row) = DB::query(
            "SELECT use_time FROM refresh_tokens WHERE token_hash = $1 AND session_id = $2",
        )
        .bind(digest)
        .bind(session.id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(FoundToken {
            session,
            revoke_time,
            use_time: row.column(0)?,
        }))
    }

    /// Ends session `session_id` inside `tx` (which holds its lock) and writes its revocation,
    /// which expires at `now + revocation_ttl`: logout, reuse detection and the end of a
    /// session by id all end it here.
    async fn revoke_session_in(
        tx: &mut DB::Connection,
        session_id: &str,
        now: i64,
        revocation_ttl: i64,
    ) -> Result<Revocation> {
        DB::query("UPDATE sessions SET revoke_time = $2 WHERE id = $1 AND revoke_time IS NULL")
            .bind(session_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let revocation = Revocation {
            kind: Kind::Session,
            subject: session_id.to_owned(),
            revoke_time: now,
            expire_time: now.saturating_add(revocation_ttl),
        };
        Self::insert_revocation_in(tx, &revocation).await?;
        Ok(revocation)
    }

    /// Finds the refresh token `digest` for a rotation or a logout in a write transaction: the
    /// transaction and the token, or `None` when the token is unknown, its session ended
    /// or expired (all `Invalid`).
    async fn live_refresh_token(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<(sqlx::Transaction<'static, DB>, FoundToken)>> {
        let mut tx = DB::begin_write(&self.pool).await?;
        match Self::find_refresh_token(&mut tx, digest).await? {
            Some(found) if found.revoke_time.is_none() && found.session.expire_time > now => {
                Ok(Some((tx, found)))
            }
            _ => Ok(None),
        }
    }
}

fn credential_from<R: Columns>(row: &R) -> Result<Credential> {
    Ok(Credential {
        user_id: row.column(0)?,
        email: row.column(1)?,
        password_hash: row.column(2)?,
        roles: split_roles(row.column(3)?),
        create_time: row.column(4)?,
    })
}

#[async_trait]
impl<DB: Backend> Store for SqlStore<DB> {
    async fn ping(&self) -> Result<()> {
        DB::query(DB::PING).execute(&self.pool).await?;
        Ok(())
    }

    fn pools(&self) -> Vec<PoolStats> {
        vec![PoolStats::of("main", &self.pool)]
    }

    async fn insert_credential(&self, c: &Credential) -> Result<()> {
        let result = DB::query(
            "INSERT INTO credentials (user_id, email, password_hash, roles, create_time)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(c.user_id.as_str())
        .bind(c.email.as_str())
        .bind(c.password_hash.as_str())
        .bind(join_roles(&c.roles))
        .bind(c.create_time)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    async fn credential_by_email(&self, email: &str) -> Result<Option<Credential>> {
        let row = DB::query(
            "SELECT user_id, email, password_hash, roles, create_time FROM credentials WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(credential_from).transpose()
    }

    async fn credential_by_user_id(&self, user_id: &str) -> Result<Option<Credential>> {
        let row = DB::query(
            "SELECT user_id, email, password_hash, roles, create_time FROM credentials WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(credential_from).transpose()
    }

    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        now: i64,
        revocation_ttl: i64,
    ) -> Result<Option<Vec<Revocation>>> {
        let mut tx = DB::begin_write(&self.pool).await?;
        // On PostgreSQL this locks the credential first: a deletion or another change of the
        // same user waits, and so does a new session's foreign-key check, which then sees the
        // session it adds survive (a login that had checked the old password just before).
        let updated = DB::query("UPDATE credentials SET password_hash = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        if updated == 0 {
            return Ok(None);
        }
        let live = DB::query(
            "SELECT id FROM sessions WHERE user_id = $1 AND revoke_time IS NULL AND expire_time > $2 ORDER BY id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut revocations = Vec::with_capacity(live.len());
        for row in live {
            let session_id: String = row.column(0)?;
            // Each under its lock, as every change to a session is; one ended meanwhile stays
            // as it is.
            let locked = DB::query(DB::LOCK_SESSION)
                .bind(session_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let still_live = match &locked {
                Some(row) => row.column::<Option<i64>>(4)?.is_none(),
                None => false,
            };
            if still_live {
                revocations.push(
                    Self::revoke_session_in(&mut tx, &session_id, now, revocation_ttl).await?,
                );
            }
        }
        tx.commit().await?;
        Ok(Some(revocations))
    }

    async fn delete_credential(&self, user_id: &str, revocation: &Revocation) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        // Deletes (cascade) its sessions, then their tokens; on PostgreSQL it locks them in that
        // order, and a concurrent deletion of the same user waits here, then finds nothing.
        let deleted = DB::query("DELETE FROM credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if deleted > 0 {
            Self::insert_revocation_in(&mut tx, revocation).await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn count_login_attempt(
        &self,
        email: &str,
        now: i64,
        window_secs: i64,
    ) -> Result<(i64, i64)> {
        // One statement: concurrent attempts for one email serialize on its row.
        let row = DB::query(
            "INSERT INTO login_attempts AS a (email, attempts, window_start) VALUES ($1, 1, $2)
             ON CONFLICT (email) DO UPDATE SET
               attempts = CASE WHEN a.window_start <= $3 THEN 1 ELSE a.attempts + 1 END,
               window_start = CASE WHEN a.window_start <= $3 THEN $2 ELSE a.window_start END
             RETURNING attempts, window_start",
        )
        .bind(email)
        .bind(now)
        .bind(now.saturating_sub(window_secs))
        .fetch_one(&self.pool)
        .await?;
        Ok((row.column(0)?, row.column(1)?))
    }

    async fn clear_login_attempts(&self, email: &str) -> Result<()> {
        DB::query("DELETE FROM login_attempts WHERE email = $1")
            .bind(email)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_session(&self, session: &Session, token_digest: &[u8]) -> Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        // On PostgreSQL the foreign key check share-locks the credential: a deletion in
        // progress makes this wait, then fail; a deletion after this commits cascades to the
        // new session.
        DB::query(
            "INSERT INTO sessions (id, user_id, create_time, expire_time) VALUES ($1, $2, $3, $4)",
        )
        .bind(session.id.as_str())
        .bind(session.user_id.as_str())
        .bind(session.create_time)
        .bind(session.expire_time)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            // The credential was deleted while this login checked its password.
            sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                Error::InvalidCredentials
            }
            e => e.into(),
        })?;
        DB::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issue_time) VALUES ($1, $2, $3)",
        )
        .bind(token_digest)
        .bind(session.id.as_str())
        .bind(session.create_time)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        old_digest: &[u8],
        new_digest: &[u8],
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let Some((mut tx, found)) = self.live_refresh_token(old_digest, now).await? else {
            return Ok(RefreshOutcome::Invalid);
        };
        let session = found.session;
        if found.use_time.is_some() {
            // Reuse: a rotated token presented again ends the whole session.
            let revocation =
                Self::revoke_session_in(&mut tx, &session.id, now, revocation_ttl).await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Ended {
                revocation,
                reused: true,
            });
        }
        DB::query("UPDATE refresh_tokens SET use_time = $2 WHERE token_hash = $1")
            .bind(old_digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        DB::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issue_time) VALUES ($1, $2, $3)",
        )
        .bind(new_digest)
        .bind(session.id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let Some(row) = DB::query("SELECT roles FROM credentials WHERE user_id = $1")
            .bind(session.user_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        let roles = split_roles(row.column(0)?);
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated { session, roles })
    }

    async fn end_session(
        &self,
        digest: &[u8],
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let Some((mut tx, found)) = self.live_refresh_token(digest, now).await? else {
            return Ok(RefreshOutcome::Invalid);
        };
        let revocation =
            Self::revoke_session_in(&mut tx, &found.session.id, now, revocation_ttl).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Ended {
            revocation,
            reused: found.use_time.is_some(),
        })
    }

    async fn end_session_by_id(
        &self,
        session_id: &str,
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let session = DB::query(DB::LOCK_SESSION)
            .bind(session_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(session) = session
            && session.column::<Option<i64>>(4)?.is_some()
        {
            return Ok(RefreshOutcome::Invalid);
        }
        let revocation = Self::revoke_session_in(&mut tx, session_id, now, revocation_ttl).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Ended {
            revocation,
            reused: false,
        })
    }

    async fn insert_revocation(&self, revocation: &Revocation) -> Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        Self::insert_revocation_in(&mut tx, revocation).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revocations_after(&self, seq: i64) -> Result<Vec<(i64, Revocation)>> {
        let rows = DB::query(
            "SELECT seq, kind, subject, revoke_time, expire_time FROM revocations
             WHERE seq > $1 ORDER BY seq",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        let mut revocations = Vec::with_capacity(rows.len());
        for row in rows {
            // A kind this version does not know (written by a newer one) is skipped.
            let Some(kind) = Kind::parse(row.column(1)?) else {
                continue;
            };
            revocations.push((
                row.column(0)?,
                Revocation {
                    kind,
                    subject: row.column(2)?,
                    revoke_time: row.column(3)?,
                    expire_time: row.column(4)?,
                },
            ));
        }
        Ok(revocations)
    }

    async fn database_id(&self) -> Result<String> {
        let row = DB::query("SELECT id FROM database_identity")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.column(0)?)
    }

    async fn follow_revocations(&self, on_commit: Arc<Notify>) -> Result<Option<Task>> {
        Ok(DB::follow(&self.pool, REVOCATIONS_CHANNEL, on_commit).await?)
    }

    async fn purge(&self, now: i64, login_window_secs: i64) -> Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        if !DB::claim_purge(&mut tx).await? {
            return Ok(());
        }
        DB::query("DELETE FROM revocations WHERE expire_time < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        DB::query(DB::PURGE_SESSIONS)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        DB::query("DELETE FROM login_attempts WHERE window_start <= $1")
            .bind(now.saturating_sub(login_window_secs))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
