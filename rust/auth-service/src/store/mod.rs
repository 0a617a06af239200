//! Storage behind one trait, so the rpc handlers never see SQL: [`sqlite::SqliteStore`] for
//! `sqlite://` URLs and [`postgres::PostgresStore`] for `postgres://` ones. Both are
//! [`sql::SqlStore`], the one implementation, so they behave the same by construction; each
//! backend's file holds only its SQL where the dialects differ and its locks.
//!
//! Every write runs in a transaction; the operations that read and then write (rotation,
//! throttling, revocation) take their locks up front (SQLite: the write lock; PostgreSQL: row
//! and advisory locks) so concurrent requests and replicas serialize instead of racing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use grimos_token::Revocation;
use tokio::sync::Notify;

use crate::error::Result;

pub mod postgres;
pub mod sql;
pub mod sqlite;

/// A task that runs until it is dropped.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A stored credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The user id, chosen by user-service.
    pub user_id: String,
    /// The email, lower-cased.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Roles granted at creation.
    pub roles: Vec<String>,
    /// Unix seconds.
    pub create_time: i64,
}

/// A login session: one family of refresh tokens.
#[derive(Debug, Clone)]
pub struct Session {
    /// Random id, also the `sid` claim of its access tokens.
    pub id: String,
    /// Whose session.
    pub user_id: String,
    /// Unix seconds.
    pub create_time: i64,
    /// Absolute end of the session, Unix seconds.
    pub expire_time: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was current: it is now used, and `session` continues with a new one.
    Rotated {
        /// The session, with its unchanged expiry.
        session: Session,
        /// The user's roles.
        roles: Vec<String>,
    },
    /// The session was ended now: asked for, or because a rotated token was presented again
    /// (`reused`). The revocation must be applied to the in-memory set.
    Ended {
        /// The session revocation written to the table.
        revocation: Revocation,
        /// True when the token had already been rotated (reuse detection).
        reused: bool,
    },
    /// Unknown, expired or already revoked.
    Invalid,
}

/// The persistence auth-service needs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// The connections of the store's pool now (for `/metrics`; costs no query).
    fn pools(&self) -> Vec<grimos_common::db::PoolStats>;

    /// Stores a new credential; `AlreadyExists` if its email or user id is taken.
    async fn insert_credential(&self, credential: &Credential) -> Result<()>;

    /// The credential with this (lower-cased) email.
    async fn credential_by_email(&self, email: &str) -> Result<Option<Credential>>;

    /// The credential of user `user_id`.
    async fn credential_by_user_id(&self, user_id: &str) -> Result<Option<Credential>>;

    /// Replaces user `user_id`'s password hash and ends every live session of the user, in
    /// one transaction, writing a session revocation for each that expires at
    /// `now + revocation_ttl`: the revocations, or `None` if the user has no credential.
    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        now: i64,
        revocation_ttl: i64,
    ) -> Result<Option<Vec<Revocation>>>;

    /// Deletes a user's credential, sessions and refresh tokens, and records `revocation`
    /// for their access tokens, in one transaction. False if there was no credential.
    async fn delete_credential(&self, user_id: &str, revocation: &Revocation) -> Result<bool>;

    /// Counts one login attempt for `email` and returns the attempts in the current window
    /// and when it started. A window older than `window_secs` restarts at `now`.
    async fn count_login_attempt(
        &self,
        email: &str,
        now: i64,
        window_secs: i64,
    ) -> Result<(i64, i64)>;

    /// Forgets the login attempts of `email` (after a successful login).
    async fn clear_login_attempts(&self, email: &str) -> Result<()>;

    /// Stores a new session with its first refresh token (by digest); `InvalidCredentials`
    /// if the user's credential was deleted meanwhile.
    async fn create_session(&self, session: &Session, token_digest: &[u8]) -> Result<()>;

    /// Rotates a refresh token: marks `old_digest` used and stores `new_digest` in the same
    /// session. A token that was already used ends the session (reuse detection); the
    /// revocation written then expires at `now + revocation_ttl`.
    async fn rotate_refresh_token(
        &self,
        old_digest: &[u8],
        new_digest: &[u8],
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome>;

    /// Ends the session of a refresh token (logout), writing a session revocation that
    /// expires at `now + revocation_ttl`. Never returns `Rotated`.
    async fn end_session(
        &self,
        digest: &[u8],
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome>;

    /// Ends session `session_id` (logout with one of its access tokens), writing a session
    /// revocation that expires at `now + revocation_ttl`: `Ended` (never `reused`), or
    /// `Invalid` if the session was already ended. A session that is gone (expired and
    /// purged, while an access token of it still lives) is ended all the same.
    async fn end_session_by_id(
        &self,
        session_id: &str,
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome>;

    /// Records a revocation.
    async fn insert_revocation(&self, revocation: &Revocation) -> Result<()>;

    /// Revocations stored after row `seq`, with their row numbers, oldest first. Rows become
    /// visible in `seq` order: once row `n` is read, no row below `n` appears later.
    async fn revocations_after(&self, seq: i64) -> Result<Vec<(i64, Revocation)>>;

    /// A random id of this database, made when its tables were: the same for every replica
    /// that shares it, different for any other.
    async fn database_id(&self) -> Result<String>;

    /// Starts listening for revocation commits, and returns the task that goes on listening:
    /// it wakes `on_commit` as soon as a revocation is committed by any replica (and whenever
    /// one may have been missed, such as after a lost connection), for as long as it runs;
    /// on SQLite, within 25 ms of any commit to the database. `None` where the database
    /// cannot tell.
    async fn follow_revocations(&self, on_commit: Arc<Notify>) -> Result<Option<Task>>;

    /// Deletes what can no longer matter: expired revocations, sessions and old login
    /// attempt windows.
    async fn purge(&self, now: i64, login_window_secs: i64) -> Result<()>;
}

/// The same behaviour checked on both backends: SQLite, and PostgreSQL on the server of
/// `GRIMOS_TEST_POSTGRES_URL`. What only PostgreSQL has (blocking on its locks) is tested in
/// `postgres.rs`.
#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use grimos_common::db::sql::Columns as _;

    use super::sql::{Backend, SqlStore};
    use super::*;
    use crate::error::Error;
    use grimos_token::Kind;

    /// A store, and what must live as long as it (its folder or database).
    pub(super) struct Fixture<DB: Backend> {
        pub(super) store: Arc<SqlStore<DB>>,
        _keep: Box<dyn Send>,
    }

    /// SQLite, in a new folder.
    async fn sqlite_store() -> Fixture<sqlx::Sqlite> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/auth.db", dir.path().display());
        Fixture {
            store: Arc::new(sqlite::SqliteStore::open(&url).await.unwrap()),
            _keep: Box::new(dir),
        }
    }

    /// PostgreSQL, in a new database (panics without `GRIMOS_TEST_POSTGRES_URL`).
    pub(super) async fn postgres_store() -> Fixture<sqlx::Postgres> {
        let db = grimos_test_support::postgres::database().await;
        Fixture {
            store: Arc::new(postgres::PostgresStore::open(&db.url).await.unwrap()),
            _keep: Box::new(db),
        }
    }

    grimos_test_support::on_both_backends!(
        sqlite_store,
        postgres_store;
        credentials_round_trip_and_duplicates_are_already_exists,
        a_deletion_removes_sessions_and_tokens_once,
        concurrent_rotations_of_one_token_rotate_once_then_end_the_session,
        ending_a_session_reports_reuse_and_only_once,
        a_session_ends_by_id_once_even_when_it_is_gone,
        parallel_login_attempts_are_each_counted,
        purge_deletes_only_what_has_expired,
        the_database_id_is_one_per_database,
    );

    pub(super) fn credential(user_id: &str, email: &str) -> Credential {
        Credential {
            user_id: user_id.into(),
            email: email.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            roles: vec!["user".into(), "admin".into()],
            create_time: 1_000,
        }
    }

    pub(super) fn session(id: &str, user_id: &str) -> Session {
        Session {
            id: id.into(),
            user_id: user_id.into(),
            create_time: 1_000,
            expire_time: 10_000,
        }
    }

    pub(super) fn revocation(subject: &str) -> Revocation {
        Revocation {
            kind: Kind::Token,
            subject: subject.into(),
            revoke_time: 1_000,
            expire_time: 2_000,
        }
    }

    /// Stores the credential of `u1` (ada@example.com) and a session of hers for each
    /// `(session id, first refresh token)`.
    async fn ada_with_sessions<DB: Backend>(store: &SqlStore<DB>, sessions: &[(&str, &[u8])]) {
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        for (id, token) in sessions {
            store
                .create_session(&session(id, "u1"), token)
                .await
                .unwrap();
        }
    }

    /// Rotates refresh token `old` to `new` at `now`, revocations living 900 s.
    async fn rotate<DB: Backend>(
        store: &SqlStore<DB>,
        old: &[u8],
        new: &[u8],
        now: i64,
    ) -> RefreshOutcome {
        store
            .rotate_refresh_token(old, new, now, 900)
            .await
            .unwrap()
    }

    /// Logs out with refresh token `token` at `now`, revocations living 900 s.
    async fn end<DB: Backend>(store: &SqlStore<DB>, token: &[u8], now: i64) -> RefreshOutcome {
        store.end_session(token, now, 900).await.unwrap()
    }

    /// The subjects of the stored revocations, oldest first.
    async fn revoked<DB: Backend>(store: &SqlStore<DB>) -> Vec<String> {
        let rows = store.revocations_after(0).await.unwrap();
        rows.into_iter().map(|(_, r)| r.subject).collect()
    }

    /// What an outcome was, in a word.
    fn kind(outcome: &RefreshOutcome) -> &'static str {
        match outcome {
            RefreshOutcome::Rotated { .. } => "rotated",
            RefreshOutcome::Ended { reused: false, .. } => "ended",
            RefreshOutcome::Ended { reused: true, .. } => "ended, reused",
            RefreshOutcome::Invalid => "invalid",
        }
    }

    /// The first column of every row `sql` returns, as text.
    async fn texts<DB: Backend>(store: &SqlStore<DB>, sql: &str) -> Vec<String> {
        DB::query(sql)
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.column(0).unwrap())
            .collect()
    }

    async fn credentials_round_trip_and_duplicates_are_already_exists<DB: Backend>(
        fixture: Fixture<DB>,
    ) {
        let store = &fixture.store;
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

    async fn a_deletion_removes_sessions_and_tokens_once<DB: Backend>(fixture: Fixture<DB>) {
        let store = &fixture.store;
        ada_with_sessions(store, &[("s1", b"t1")]).await;
        let deletions = (0..4).map(|_| {
            let store = Arc::clone(store);
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
        let outcome = rotate(store, b"t1", b"t2", 1_001).await;
        assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
        let tokens: i64 = DB::query("SELECT count(*) FROM refresh_tokens")
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .column(0)
            .unwrap();
        assert_eq!(tokens, 0, "the cascade removed the refresh tokens");
    }

    async fn concurrent_rotations_of_one_token_rotate_once_then_end_the_session<DB: Backend>(
        fixture: Fixture<DB>,
    ) {
        let store = &fixture.store;
        ada_with_sessions(store, &[("s1", b"t0")]).await;
        let rotations = (0..8u8).map(|i| {
            let store = Arc::clone(store);
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

    async fn ending_a_session_reports_reuse_and_only_once<DB: Backend>(fixture: Fixture<DB>) {
        let store = &fixture.store;
        ada_with_sessions(store, &[("s1", b"t0"), ("s2", b"x0")]).await;
        assert_eq!(kind(&rotate(store, b"t0", b"t1", 1_001).await), "rotated");
        // Logging out with the current token; then with the rotated one: already ended.
        assert_eq!(kind(&end(store, b"t1", 1_002).await), "ended");
        assert_eq!(kind(&end(store, b"t0", 1_003).await), "invalid");
        // Logging out with a rotated token of a live session reports the reuse.
        assert_eq!(kind(&rotate(store, b"x0", b"x1", 1_001).await), "rotated");
        assert_eq!(kind(&end(store, b"x0", 1_004).await), "ended, reused");
        // Unknown and expired tokens are invalid.
        assert_eq!(kind(&end(store, b"nope", 1_004).await), "invalid");
        store
            .create_session(&session("s3", "u1"), b"y0")
            .await
            .unwrap();
        assert_eq!(kind(&rotate(store, b"y0", b"y1", 10_000).await), "invalid");
    }

    async fn a_session_ends_by_id_once_even_when_it_is_gone<DB: Backend>(fixture: Fixture<DB>) {
        let store = &fixture.store;
        ada_with_sessions(store, &[("s1", b"t0")]).await;
        match store.end_session_by_id("s1", 1_001, 900).await.unwrap() {
            RefreshOutcome::Ended { revocation, reused } => {
                assert!(!reused);
                assert_eq!(revocation.kind, Kind::Session);
                assert_eq!(revocation.subject, "s1");
                assert_eq!(revocation.expire_time, 1_901);
            }
            other => panic!("{other:?}"),
        }
        let outcome = store.end_session_by_id("s1", 1_002, 900).await.unwrap();
        assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
        // Its refresh token is over with it.
        let outcome = rotate(store, b"t0", b"t1", 1_003).await;
        assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
        // A session no longer stored (purged while an access token of it lives) still ends.
        let outcome = store.end_session_by_id("gone", 1_004, 900).await.unwrap();
        assert!(
            matches!(outcome, RefreshOutcome::Ended { reused: false, .. }),
            "{outcome:?}"
        );
        assert_eq!(revoked(store).await, ["s1", "gone"]);
    }

    async fn parallel_login_attempts_are_each_counted<DB: Backend>(fixture: Fixture<DB>) {
        let store = &fixture.store;
        let attempts = (0..20).map(|_| {
            let store = Arc::clone(store);
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

    async fn purge_deletes_only_what_has_expired<DB: Backend>(fixture: Fixture<DB>) {
        let store = &fixture.store;
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

        store.purge(2_000, 60).await.unwrap();
        assert_eq!(revoked(store).await, ["kept"]);
        assert_eq!(
            texts(store, "SELECT id FROM sessions ORDER BY id").await,
            ["new"]
        );
        assert_eq!(
            texts(store, "SELECT email FROM login_attempts").await,
            ["new@example.com"]
        );
    }

    async fn the_database_id_is_one_per_database<DB: Backend>(fixture: Fixture<DB>) {
        let store = &fixture.store;
        let id = store.database_id().await.unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert_eq!(store.database_id().await.unwrap(), id);
        let other = sqlite_store().await;
        assert_ne!(other.store.database_id().await.unwrap(), id);
    }
}
