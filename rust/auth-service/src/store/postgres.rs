//! [`Store`] on PostgreSQL (sqlx), migrations embedded in the binary.
//!
//! The observable behaviour is [`super::sqlite::SqliteStore`]'s. SQLite serializes every
//! writer (`BEGIN IMMEDIATE`); here transactions run at READ COMMITTED and serialize where it
//! matters:
//!
//! - a refresh token is only changed (rotated, its session ended or deleted) by a transaction
//!   holding its session's row lock (`SELECT ... FOR UPDATE`), taken before anything else of
//!   the session is read, so a rotation, a logout, a reuse and a credential deletion of one
//!   session happen one after the other;
//! - login attempts are counted by one `INSERT ... ON CONFLICT DO UPDATE`;
//! - revocations are inserted under a transaction-scoped advisory lock, so their `seq`
//!   values become visible in order and a replica polling "after seq N" never skips a row
//!   committed late with a smaller `seq`;
//! - a credential deletion racing a login is settled by the foreign key, as in SQLite.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::{Credential, RefreshOutcome, Session, Store};
use crate::error::{Error, Result};
use crate::revocation::{Kind, Revocation};

/// The embedded migrations of `migrations-postgres/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Connections per replica, as for SQLite.
const MAX_CONNECTIONS: u32 = 8;
/// auth-service's schema: its tables and migration records, apart from user-service's when
/// both use one database.
pub const SCHEMA: &str = "auth_service";
/// How long opening the database (and later, waiting for a pooled connection) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Advisory lock key held, to the end of its transaction, by every insert into
/// `revocations` ("grimosrv").
const REVOCATIONS_LOCK: i64 = 0x6772_696d_6f73_7276;
/// Advisory lock key a purge holds, so replicas never purge at once ("grimospg").
const PURGE_LOCK: i64 = 0x6772_696d_6f73_7067;

/// auth-service's tables in one PostgreSQL database, shared by replicas.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` and runs the migrations (under sqlx's advisory
    /// lock, so replicas starting together do not race). Fails within a few seconds when
    /// the server does not answer; errors never show the password.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = grimos_common::db::open_postgres_migrated(
            url,
            SCHEMA,
            MAX_CONNECTIONS,
            CONNECT_TIMEOUT,
            &MIGRATOR,
        )
        .await?;
        Ok(Self { pool })
    }
}

fn join_roles(roles: &[String]) -> String {
    roles.join(",")
}

fn split_roles(roles: &str) -> Vec<String> {
    roles
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Inserts a revocation; the caller's transaction holds [`REVOCATIONS_LOCK`] from here to
/// its end, so concurrent inserts commit in `seq` order.
async fn insert_revocation_in(tx: &mut PgConnection, revocation: &Revocation) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(REVOCATIONS_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO revocations (kind, subject, revoke_time, expire_time) VALUES ($1, $2, $3, $4)",
    )
    .bind(revocation.kind.as_str())
    .bind(&revocation.subject)
    .bind(revocation.revoke_time)
    .bind(revocation.expire_time)
    .execute(tx)
    .await?;
    Ok(())
}

/// Looks a refresh token up with its session, inside a transaction, and locks the session
/// row until the transaction ends. The session is locked before the token is read: every
/// change to a session's tokens holds that lock, so what is read stays true until commit,
/// and the lock order (session, then token) is the one of the cascades.
async fn find_refresh_token(
    tx: &mut PgConnection,
    digest: &[u8],
) -> Result<Option<(Session, Option<i64>, Option<i64>)>> {
    let session_id: Option<String> =
        sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(session_id) = session_id else {
        return Ok(None);
    };
    let Some(row) = sqlx::query(
        "SELECT id, user_id, create_time, expire_time, revoke_time FROM sessions
         WHERE id = $1 FOR UPDATE",
    )
    .bind(&session_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        // Deleted (credential deleted, or purged) since the token was read.
        return Ok(None);
    };
    let session = Session {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        create_time: row.try_get(2)?,
        expire_time: row.try_get(3)?,
    };
    let revoke_time: Option<i64> = row.try_get(4)?;
    // Read again under the lock: the token may have been rotated meanwhile.
    let use_time: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT use_time FROM refresh_tokens WHERE token_hash = $1 AND session_id = $2",
    )
    .bind(digest)
    .bind(&session.id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(use_time.map(|use_time| (session, revoke_time, use_time)))
}

async fn revoke_session_in(
    tx: &mut PgConnection,
    session_id: &str,
    now: i64,
    revocation_ttl: i64,
) -> Result<Revocation> {
    sqlx::query("UPDATE sessions SET revoke_time = $2 WHERE id = $1 AND revoke_time IS NULL")
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
    insert_revocation_in(tx, &revocation).await?;
    Ok(revocation)
}

fn credential_from(row: &PgRow) -> Result<Credential> {
    Ok(Credential {
        user_id: row.try_get(0)?,
        email: row.try_get(1)?,
        password_hash: row.try_get(2)?,
        roles: split_roles(row.try_get::<&str, _>(3)?),
        create_time: row.try_get(4)?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_credential(&self, c: &Credential) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO credentials (user_id, email, password_hash, roles, create_time)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.user_id)
        .bind(&c.email)
        .bind(&c.password_hash)
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
        let row = sqlx::query(
            "SELECT user_id, email, password_hash, roles, create_time FROM credentials WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(credential_from).transpose()
    }

    async fn delete_credential(&self, user_id: &str, revocation: &Revocation) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Locks the credential, then (cascade) its sessions, then their tokens. A concurrent
        // deletion of the same user waits here and then finds nothing to delete.
        let deleted = sqlx::query("DELETE FROM credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted > 0 {
            insert_revocation_in(&mut tx, revocation).await?;
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
        let row = sqlx::query(
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
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn clear_login_attempts(&self, email: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_attempts WHERE email = $1")
            .bind(email)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_session(&self, session: &Session, token_digest: &[u8]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // The foreign key check share-locks the credential: a deletion in progress makes this
        // wait, then fail; a deletion after this commits cascades to the new session.
        sqlx::query(
            "INSERT INTO sessions (id, user_id, create_time, expire_time) VALUES ($1, $2, $3, $4)",
        )
        .bind(&session.id)
        .bind(&session.user_id)
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
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issue_time) VALUES ($1, $2, $3)",
        )
        .bind(token_digest)
        .bind(&session.id)
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
        let mut tx = self.pool.begin().await?;
        let Some((session, revoke_time, use_time)) =
            find_refresh_token(&mut tx, old_digest).await?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        if revoke_time.is_some() || session.expire_time <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        if use_time.is_some() {
            let revocation = revoke_session_in(&mut tx, &session.id, now, revocation_ttl).await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Ended {
                revocation,
                reused: true,
            });
        }
        sqlx::query("UPDATE refresh_tokens SET use_time = $2 WHERE token_hash = $1")
            .bind(old_digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issue_time) VALUES ($1, $2, $3)",
        )
        .bind(new_digest)
        .bind(&session.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let roles: Option<String> =
            sqlx::query_scalar("SELECT roles FROM credentials WHERE user_id = $1")
                .bind(&session.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(roles) = roles else {
            return Ok(RefreshOutcome::Invalid);
        };
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated {
            session,
            roles: split_roles(&roles),
        })
    }

    async fn end_session(
        &self,
        digest: &[u8],
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = self.pool.begin().await?;
        let Some((session, revoke_time, use_time)) = find_refresh_token(&mut tx, digest).await?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        if revoke_time.is_some() || session.expire_time <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        let revocation = revoke_session_in(&mut tx, &session.id, now, revocation_ttl).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Ended {
            revocation,
            reused: use_time.is_some(),
        })
    }

    async fn end_session_by_id(
        &self,
        session_id: &str,
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = self.pool.begin().await?;
        // The session's row lock, as for every change to a session.
        let revoke_time: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoke_time FROM sessions WHERE id = $1 FOR UPDATE")
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?;
        if matches!(revoke_time, Some(Some(_))) {
            return Ok(RefreshOutcome::Invalid);
        }
        let revocation = revoke_session_in(&mut tx, session_id, now, revocation_ttl).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Ended {
            revocation,
            reused: false,
        })
    }

    async fn insert_revocation(&self, revocation: &Revocation) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_revocation_in(&mut tx, revocation).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revocations_after(&self, seq: i64) -> Result<Vec<(i64, Revocation)>> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject, revoke_time, expire_time FROM revocations
             WHERE seq > $1 ORDER BY seq",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        let mut revocations = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(kind) = Kind::parse(row.try_get::<&str, _>(1)?) else {
                continue;
            };
            revocations.push((
                row.try_get(0)?,
                Revocation {
                    kind,
                    subject: row.try_get(2)?,
                    revoke_time: row.try_get(3)?,
                    expire_time: row.try_get(4)?,
                },
            ));
        }
        Ok(revocations)
    }

    async fn purge(&self, now: i64, login_window_secs: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // One replica purges at a time; the others skip this round.
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(());
        }
        sqlx::query("DELETE FROM revocations WHERE expire_time < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Sessions locked by a rotation, logout or deletion in progress are left for the
        // next purge rather than waited for (waiting could deadlock with a deletion that
        // locks a user's sessions in another order).
        sqlx::query(
            "DELETE FROM sessions WHERE id IN (
               SELECT id FROM sessions WHERE expire_time < $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM login_attempts WHERE window_start <= $1")
            .bind(now.saturating_sub(login_window_secs))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The store's concurrency on a real server (`GRIMOS_TEST_POSTGRES_URL`; they fail without one).

    use std::sync::Arc;

    use grimos_test_support::postgres::{PgDatabase, database};

    use super::*;

    async fn store() -> (PgDatabase, Arc<PostgresStore>) {
        let db = database().await;
        let store = PostgresStore::open(&db.url).await.unwrap();
        (db, Arc::new(store))
    }

    /// Waits (at most 5 s) until some session of this database waits for a lock another one
    /// holds: the condition, as the server sees it, that a test of blocking is about.
    async fn until_a_session_waits_for_a_lock(store: &PostgresStore) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE NOT l.granted AND a.datname = current_database())",
            )
            .fetch_one(&store.pool)
            .await
            .unwrap();
            if waiting {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing waits for a lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn credential(user_id: &str, email: &str) -> Credential {
        Credential {
            user_id: user_id.into(),
            email: email.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            roles: vec!["user".into(), "admin".into()],
            create_time: 1_000,
        }
    }

    fn session(id: &str, user_id: &str) -> Session {
        Session {
            id: id.into(),
            user_id: user_id.into(),
            create_time: 1_000,
            expire_time: 10_000,
        }
    }

    fn revocation(subject: &str) -> Revocation {
        Revocation {
            kind: Kind::Token,
            subject: subject.into(),
            revoke_time: 1_000,
            expire_time: 2_000,
        }
    }

    #[tokio::test]
    async fn credentials_round_trip_and_duplicates_are_already_exists() {
        let (_db, store) = store().await;
        store.ping().await.unwrap();
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        let found = store
            .credential_by_email("ada@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.user_id, "u1");
        assert_eq!(found.roles, ["user", "admin"]);
        assert_eq!(found.create_time, 1_000);
        assert!(
            store
                .credential_by_email("bob@example.com")
                .await
                .unwrap()
                .is_none()
        );
        for duplicate in [
            credential("u1", "bob@example.com"),
            credential("u2", "ada@example.com"),
        ] {
            assert!(matches!(
                store.insert_credential(&duplicate).await,
                Err(Error::AlreadyExists)
            ));
        }
    }

    #[tokio::test]
    async fn a_login_racing_a_deletion_gets_invalid_credentials() {
        let (_db, store) = store().await;
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        // The deletion is in progress (uncommitted) when the login stores its session.
        let mut deleting = store.pool.begin().await.unwrap();
        sqlx::query("DELETE FROM credentials WHERE user_id = 'u1'")
            .execute(&mut *deleting)
            .await
            .unwrap();
        let login = tokio::spawn({
            let store = store.clone();
            async move { store.create_session(&session("s1", "u1"), b"t1").await }
        });
        until_a_session_waits_for_a_lock(&store).await;
        assert!(!login.is_finished(), "the login waits for the deletion");
        deleting.commit().await.unwrap();
        assert!(matches!(
            login.await.unwrap(),
            Err(Error::InvalidCredentials)
        ));
        // And once it is gone, plainly.
        assert!(matches!(
            store.create_session(&session("s2", "u1"), b"t2").await,
            Err(Error::InvalidCredentials)
        ));
    }

    #[tokio::test]
    async fn a_deletion_removes_sessions_and_tokens_once() {
        let (_db, store) = store().await;
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        store
            .create_session(&session("s1", "u1"), b"t1")
            .await
            .unwrap();
        let deletions = (0..4).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.delete_credential("u1", &revocation("u1")).await })
        });
        let mut deleted = 0;
        for deletion in deletions.collect::<Vec<_>>() {
            if deletion.await.unwrap().unwrap() {
                deleted += 1;
            }
        }
        assert_eq!(deleted, 1, "exactly one concurrent deletion deletes");
        assert_eq!(store.revocations_after(0).await.unwrap().len(), 1);
        let outcome = store
            .rotate_refresh_token(b"t1", b"t2", 1_001, 900)
            .await
            .unwrap();
        assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
        let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(tokens, 0, "the cascade removed the refresh tokens");
    }

    #[tokio::test]
    async fn concurrent_rotations_of_one_token_rotate_once_then_end_the_session() {
        let (_db, store) = store().await;
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        store
            .create_session(&session("s1", "u1"), b"t0")
            .await
            .unwrap();
        let rotations = (0..8u8).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_refresh_token(b"t0", &[b'n', i], 1_001, 900)
                    .await
            })
        });
        let (mut rotated, mut ended, mut invalid) = (0, 0, 0);
        for rotation in rotations.collect::<Vec<_>>() {
            match rotation.await.unwrap().unwrap() {
                RefreshOutcome::Rotated { session, roles } => {
                    assert_eq!(session.id, "s1");
                    assert_eq!(roles, ["user", "admin"]);
                    rotated += 1;
                }
                RefreshOutcome::Ended { revocation, reused } => {
                    assert!(reused);
                    assert_eq!(revocation.kind, Kind::Session);
                    assert_eq!(revocation.subject, "s1");
                    assert_eq!(revocation.expire_time, 1_901);
                    ended += 1;
                }
                RefreshOutcome::Invalid => invalid += 1,
            }
        }
        // As if one after the other: one rotation, one reuse that ends the session, and the
        // rest find it ended.
        assert_eq!((rotated, ended, invalid), (1, 1, 6));
        let sessions = store.revocations_after(0).await.unwrap();
        assert_eq!(sessions.len(), 1);
    }

    #[tokio::test]
    async fn ending_a_session_reports_reuse_and_only_once() {
        let (_db, store) = store().await;
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        store
            .create_session(&session("s1", "u1"), b"t0")
            .await
            .unwrap();
        store
            .create_session(&session("s2", "u1"), b"x0")
            .await
            .unwrap();
        let outcome = store
            .rotate_refresh_token(b"t0", b"t1", 1_001, 900)
            .await
            .unwrap();
        assert!(matches!(outcome, RefreshOutcome::Rotated { .. }));
        // Logging out with the current token; then with the rotated one: already ended.
        let outcome = store.end_session(b"t1", 1_002, 900).await.unwrap();
        assert!(
            matches!(outcome, RefreshOutcome::Ended { reused: false, .. }),
            "{outcome:?}"
        );
        let outcome = store.end_session(b"t0", 1_003, 900).await.unwrap();
        assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
        // Logging out with a rotated token of a live session reports the reuse.
        let outcome = store
            .rotate_refresh_token(b"x0", b"x1", 1_001, 900)
            .await
            .unwrap();
        assert!(matches!(outcome, RefreshOutcome::Rotated { .. }));
        let outcome = store.end_session(b"x0", 1_004, 900).await.unwrap();
        assert!(
            matches!(outcome, RefreshOutcome::Ended { reused: true, .. }),
            "{outcome:?}"
        );
        // Unknown and expired tokens are invalid.
        let outcome = store.end_session(b"nope", 1_004, 900).await.unwrap();
        assert!(matches!(outcome, RefreshOutcome::Invalid));
        store
            .create_session(&session("s3", "u1"), b"y0")
            .await
            .unwrap();
        let outcome = store
            .rotate_refresh_token(b"y0", b"y1", 10_000, 900)
            .await
            .unwrap();
        assert!(matches!(outcome, RefreshOutcome::Invalid), "expired");
    }

    #[tokio::test]
    async fn revocations_become_visible_in_seq_order() {
        let (_db, store) = store().await;
        // A revocation written but not yet committed...
        let mut first = store.pool.begin().await.unwrap();
        insert_revocation_in(&mut first, &revocation("a"))
            .await
            .unwrap();
        // ...holds back the next one, which would otherwise commit first with a higher seq
        // and let a poller move past the lower one for good.
        let second = tokio::spawn({
            let store = store.clone();
            async move { store.insert_revocation(&revocation("b")).await }
        });
        until_a_session_waits_for_a_lock(&store).await;
        assert!(!second.is_finished(), "the second insert waits");
        assert!(store.revocations_after(0).await.unwrap().is_empty());
        first.commit().await.unwrap();
        second.await.unwrap().unwrap();
        let rows = store.revocations_after(0).await.unwrap();
        let subjects: Vec<_> = rows.iter().map(|(_, r)| r.subject.as_str()).collect();
        assert_eq!(subjects, ["a", "b"]);
        assert!(rows[0].0 < rows[1].0);
        let after_first = store.revocations_after(rows[0].0).await.unwrap();
        assert_eq!(after_first.len(), 1);
        assert_eq!(after_first[0].1, revocation("b"));
    }

    #[tokio::test]
    async fn parallel_login_attempts_are_each_counted() {
        let (_db, store) = store().await;
        let attempts = (0..20).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .count_login_attempt("ada@example.com", 1_000, 60)
                    .await
            })
        });
        let mut counts = Vec::new();
        for attempt in attempts.collect::<Vec<_>>() {
            let (count, window_start) = attempt.await.unwrap().unwrap();
            assert_eq!(window_start, 1_000);
            counts.push(count);
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=20).collect::<Vec<i64>>());
        // Within the window the count goes on; once it has passed, a new window starts.
        assert_eq!(
            store
                .count_login_attempt("ada@example.com", 1_059, 60)
                .await
                .unwrap(),
            (21, 1_000)
        );
        assert_eq!(
            store
                .count_login_attempt("ada@example.com", 1_060, 60)
                .await
                .unwrap(),
            (1, 1_060)
        );
        store.clear_login_attempts("ada@example.com").await.unwrap();
        assert_eq!(
            store
                .count_login_attempt("ada@example.com", 1_061, 60)
                .await
                .unwrap(),
            (1, 1_061)
        );
    }

    #[tokio::test]
    async fn purge_deletes_only_what_has_expired() {
        let (_db, store) = store().await;
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        let mut old = session("old", "u1");
        old.expire_time = 1_500;
        store.create_session(&old, b"old").await.unwrap();
        store
            .create_session(&session("new", "u1"), b"new")
            .await
            .unwrap();
        let mut expired = revocation("expired");
        expired.expire_time = 1_500;
        store.insert_revocation(&expired).await.unwrap();
        store.insert_revocation(&revocation("kept")).await.unwrap();
        store
            .count_login_attempt("old@example.com", 1_000, 60)
            .await
            .unwrap();
        store
            .count_login_attempt("new@example.com", 1_990, 60)
            .await
            .unwrap();

        // Another replica purging meanwhile: this one skips its round.
        let mut other = store.pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .execute(&mut *other)
            .await
            .unwrap();
        store.purge(2_000, 60).await.unwrap();
        assert_eq!(store.revocations_after(0).await.unwrap().len(), 2);
        other.rollback().await.unwrap();

        store.purge(2_000, 60).await.unwrap();
        let left: Vec<_> = store
            .revocations_after(0)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.subject)
            .collect();
        assert_eq!(left, ["kept"]);
        let sessions: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(sessions, ["new"]);
        let emails: Vec<String> = sqlx::query_scalar("SELECT email FROM login_attempts")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(emails, ["new@example.com"]);
    }
}
