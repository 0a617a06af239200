//! Storage behind one trait, so the rpc handlers never see SQL: [`sqlite::SqliteStore`] for
//! `sqlite://` URLs and [`postgres::PostgresStore`] for `postgres://` ones, with the same
//! observable behaviour.
//!
//! Every write runs in a transaction; the operations that read and then write (rotation,
//! throttling, revocation) take their locks up front (SQLite: the write lock; PostgreSQL: row
//! and advisory locks) so concurrent requests and replicas serialize instead of racing.

use async_trait::async_trait;

use crate::error::Result;
use crate::revocation::Revocation;

pub mod postgres;
pub mod sqlite;

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

    /// Stores a new credential; `AlreadyExists` if its email or user id is taken.
    async fn insert_credential(&self, credential: &Credential) -> Result<()>;

    /// The credential with this (lower-cased) email.
    async fn credential_by_email(&self, email: &str) -> Result<Option<Credential>>;

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

    /// Revocations stored after row `seq`, with their row numbers, oldest first.
    async fn revocations_after(&self, seq: i64) -> Result<Vec<(i64, Revocation)>>;

    /// Deletes what can no longer matter: expired revocations, sessions and old login
    /// attempt windows.
    async fn purge(&self, now: i64, login_window_secs: i64) -> Result<()>;
}
