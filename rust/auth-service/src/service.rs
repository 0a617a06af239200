//! What auth-service does, independent of gRPC: login, refresh, revocation, validation,
//! credentials. The handlers in `api.rs` only decode requests, call this and encode replies.
//!
//! Never logs a password, hash or token; records user ids only.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grimos_token::{KeySet, Kind, Revocation, RoleTable};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic_types::FieldViolation;

use crate::error::{Error, Result};
use crate::feed::{RevocationFeed, Watcher};
use crate::passwords::Passwords;
use crate::roles;
use crate::store::{Credential, RefreshOutcome, Session, Store};
use crate::tokens::{self, AccessClaims, LEEWAY_SECS, Tokens};

/// Login throttling: `max_attempts` per email per `window`, slowed after half of them.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Attempts allowed in one window.
    pub max_attempts: u32,
    /// The window, from an email's first attempt.
    pub window: Duration,
    /// Delay added per attempt beyond half of `max_attempts`.
    pub slowdown: Duration,
}

/// Tokens handed out at login or refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    /// The signed access token.
    pub access_token: String,
    /// When it expires.
    pub access_expire_time: SystemTime,
    /// The new refresh token.
    pub refresh_token: String,
    /// When the session, and so the refresh token, expires.
    pub refresh_expire_time: SystemTime,
    /// The user.
    pub user_id: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

/// auth-service's state and operations.
pub struct Auth {
    store: Arc<dyn Store>,
    passwords: Passwords,
    tokens: Tokens,
    feed: Arc<RevocationFeed>,
    throttle: Throttle,
    refresh_ttl: Duration,
    admin_emails: HashSet<String>,
    service_token_digest: Option<[u8; 32]>,
}

/// The parts [`Auth`] is built from.
pub struct AuthParts {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The password pool.
    pub passwords: Passwords,
    /// Token signing and verification.
    pub tokens: Tokens,
    /// The revocations, shared with the sync task.
    pub feed: Arc<RevocationFeed>,
    /// Login throttling.
    pub throttle: Throttle,
    /// Session lifetime.
    pub refresh_ttl: Duration,
    /// Emails that get `admin`.
    pub admin_emails: Vec<String>,
    /// The service credential, if any.
    pub service_token: Option<SecretString>,
}

fn now_secs() -> i64 {
    i64::try_from(tokens::unix_now()).unwrap_or(i64::MAX)
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Auth {
    /// Assembles the service.
    pub fn new(parts: AuthParts) -> Self {
        Self {
            store: parts.store,
            passwords: parts.passwords,
            tokens: parts.tokens,
            feed: parts.feed,
            throttle: parts.throttle,
            refresh_ttl: parts.refresh_ttl,
            admin_emails: parts
                .admin_emails
                .iter()
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
            service_token_digest: parts
                .service_token
                .filter(|t| !t.expose_secret().is_empty())
                .map(|t| digest(t.expose_secret())),
        }
    }

    /// How long a revocation of an access token issued now must be kept.
    fn revocation_ttl(&self) -> i64 {
        i64::try_from(self.tokens.access_ttl().as_secs() + LEEWAY_SECS + 1).unwrap_or(i64::MAX)
    }

    /// Checks email and password, throttled per email, and opens a session.
    pub async fn login(&self, email: &str, password: SecretString) -> Result<IssuedTokens> {
        // Too long to be anyone's password: refuse before hashing (Argon2 DoS), same message.
        if password.expose_secret().len() > grimos_common::validate::PASSWORD_MAX_BYTES {
            return Err(Error::InvalidCredentials);
        }
        let Ok(email) = grimos_common::validate::email(email) else {
            // No account can have this email; still spend a hash so timing tells nothing.
            self.passwords.verify(password, None).await?;
            return Err(Error::InvalidCredentials);
        };

        self.count_attempt(&email).await?;
        let credential = self.store.credential_by_email(&email).await?;
        let hash = credential.as_ref().map(|c| c.password_hash.clone());
        if !self.passwords.verify(password, hash).await? {
            return Err(Error::InvalidCredentials);
        }
        let Some(credential) = credential else {
            return Err(Error::InvalidCredentials);
        };
        self.store.clear_login_attempts(&email).await?;
        let issued = self.open_session(credential).await?;
        tracing::info!(user_id = %issued.user_id, "login");
        Ok(issued)
    }

    /// Counts an attempt to present `email`'s password, throttled: beyond the limit the
    /// email is refused until its window ends, beyond half of it each attempt is slowed.
    /// Login and ChangePassword count in the same window.
    async fn count_attempt(&self, email: &str) -> Result<()> {
        let now = now_secs();
        let window = i64::try_from(self.throttle.window.as_secs()).unwrap_or(i64::MAX);
        let (attempts, window_start) = self.store.count_login_attempt(email, now, window).await?;
        let max = i64::from(self.throttle.max_attempts.max(1));
        if attempts > max {
            let retry_after = (window_start + window - now).max(1);
            tracing::warn!(attempts, "login throttled");
            metrics::counter!("auth_login_throttled_total").increment(1);
            return Err(Error::Throttled {
                retry_after: Duration::from_secs(u64::try_from(retry_after).unwrap_or(1)),
            });
        }
        let free = max / 2;
        if attempts > free {
            let extra = u32::try_from(attempts - free).unwrap_or(u32::MAX);
            tokio::time::sleep(self.throttle.slowdown.saturating_mul(extra)).await;
        }
        Ok(())
    }

    /// Opens a new session for `credential`'s user: its refresh token and an access token.
    async fn open_session(&self, credential: Credential) -> Result<IssuedTokens> {
        let now = now_secs();
        let session = Session {
            id: tokens::random_token_id(),
            user_id: credential.user_id.clone(),
            create_time: now,
            expire_time: now
                .saturating_add(i64::try_from(self.refresh_ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        let refresh_token = tokens::new_refresh_token();
        self.store
            .create_session(&session, &tokens::refresh_token_digest(&refresh_token))
            .await?;
        let (access_token, access_expire_time) =
            self.tokens
                .issue_access(&credential.user_id, &session.id, &credential.roles)?;
        Ok(IssuedTokens {
            access_token,
            access_expire_time,
            refresh_token,
            refresh_expire_time: at(session.expire_time),
            user_id: credential.user_id,
            roles: credential.roles,
        })
    }

    /// Changes the password of the holder of `access_token`: `current` is checked under
    /// login's throttling, `new` under sign-up's rules. Every session of the user ends, the
    /// caller's included (revoking a token ends its session, and the caller's token was
    /// presented with the old password), and a new session is opened for the caller. With
    /// the tokens, the cursor this replica's revocation streams reached with the ended
    /// sessions (`None` if publishing them failed; they are published on the next sync).
    pub async fn change_password(
        &self,
        access_token: &str,
        current: SecretString,
        new: SecretString,
    ) -> Result<(IssuedTokens, Option<String>)> {
        let claims = self.validate(access_token)?;
        if let Err(reason) = grimos_common::validate::password(new.expose_secret()) {
            return Err(Error::invalid("new_password", reason));
        }
        let Some(credential) = self.store.credential_by_user_id(&claims.sub).await? else {
            return Err(Error::Unauthenticated);
        };
        self.count_attempt(&credential.email).await?;
        // Too long to be anyone's password: refused before hashing, as at login.
        let too_long = current.expose_secret().len() > grimos_common::validate::PASSWORD_MAX_BYTES;
        if too_long
            || !self
                .passwords
                .verify(current, Some(credential.password_hash.clone()))
                .await?
        {
            return Err(Error::InvalidCredentials);
        }
        self.store.clear_login_attempts(&credential.email).await?;
        let password_hash = self.passwords.hash(new).await?;
        let Some(revocations) = self
            .store
            .change_password(
                &claims.sub,
                &password_hash,
                now_secs(),
                self.revocation_ttl(),
            )
            .await?
        else {
            // Deleted while this call checked the password.
            return Err(Error::Unauthenticated);
        };
        let cursor = self.feed.committed_and_published(&revocations).await;
        let issued = self.open_session(credential).await?;
        tracing::info!(user_id = %issued.user_id, sessions_ended = revocations.len(), "password changed");
        Ok((issued, cursor))
    }

    /// Rotates a refresh token. A token presented after it was rotated ends its session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        if !tokens::looks_like_refresh_token(refresh_token) {
            return Err(Error::Unauthenticated);
        }
        let new_token = tokens::new_refresh_token();
        let outcome = self
            .store
            .rotate_refresh_token(
                &tokens::refresh_token_digest(refresh_token),
                &tokens::refresh_token_digest(&new_token),
                now_secs(),
                self.revocation_ttl(),
            )
            .await?;
        match outcome {
            RefreshOutcome::Rotated { session, roles } => {
                let (access_token, access_expire_time) =
                    self.tokens
                        .issue_access(&session.user_id, &session.id, &roles)?;
                Ok(IssuedTokens {
                    access_token,
                    access_expire_time,
                    refresh_token: new_token,
                    refresh_expire_time: at(session.expire_time),
                    user_id: session.user_id,
                    roles,
                })
            }
            RefreshOutcome::Ended { revocation, .. } => {
                tracing::warn!("refresh token reused; session revoked");
                self.feed.committed(&[revocation]);
                Err(Error::Unauthenticated)
            }
            RefreshOutcome::Invalid => Err(Error::Unauthenticated),
        }
    }

    /// Revokes a token, access or refresh, and so ends the session it belongs to: every
    /// refresh token and every access token of the session (its `sid`) stop working, here at
    /// once, and on other replicas and the services watching revocations as soon as the feed
    /// reads it (see `feed.rs`). Returns the session's id.
    ///
    /// One rule for both kinds of token, and for reuse detection: the store marks the session
    /// ended and writes a `session` revocation in one transaction.
    pub async fn revoke(&self, token: &str) -> Result<String> {
        let (now, ttl) = (now_secs(), self.revocation_ttl());
        let outcome = if tokens::looks_like_refresh_token(token) {
            self.store
                .end_session(&tokens::refresh_token_digest(token), now, ttl)
                .await?
        } else {
            let claims = self.validate(token)?;
            self.store.end_session_by_id(&claims.sid, now, ttl).await?
        };
        match outcome {
            RefreshOutcome::Ended { revocation, reused } => {
                self.feed.committed(std::slice::from_ref(&revocation));
                if reused {
                    tracing::warn!("rotated refresh token presented; session revoked");
                    Err(Error::Unauthenticated)
                } else {
                    tracing::info!("token revoked; session ended");
                    Ok(revocation.subject)
                }
            }
            RefreshOutcome::Rotated { .. } | RefreshOutcome::Invalid => Err(Error::Unauthenticated),
        }
    }

    /// The claims of a valid, unrevoked access token. No database read.
    pub fn validate(&self, access_token: &str) -> Result<Arc<AccessClaims>> {
        let claims = self.tokens.verify_access(access_token)?;
        if self.feed.revocations().is_revoked(&claims) {
            return Err(Error::Unauthenticated);
        }
        Ok(claims)
    }

    /// Whether the holder of `access_token` has `permission`.
    pub fn check_permission(&self, access_token: &str, permission: &str) -> Result<bool> {
        if permission.is_empty() {
            return Err(Error::invalid("permission", "permission is required"));
        }
        let claims = self.validate(access_token)?;
        Ok(roles::allows(&claims.roles, permission))
    }

    /// Checks the `authorization` metadata of a service-only call: the service token passes;
    /// a user's valid access token is `PermissionDenied`; anything else `Unauthenticated`.
    pub fn authorize_service(&self, authorization: Option<&str>) -> Result<()> {
        let bearer = authorization
            .and_then(grimos_common::bearer::bearer_token)
            .ok_or(Error::Unauthenticated)?;
        if let Some(expected) = &self.service_token_digest
            && bool::from(digest(bearer).ct_eq(expected))
        {
            return Ok(());
        }
        if self.validate(bearer).is_ok() {
            return Err(Error::PermissionDenied("this call is for services only"));
        }
        Err(Error::Unauthenticated)
    }

    /// The keys that verify access tokens now, for services that verify them themselves.
    pub fn verification_keys(&self) -> &KeySet {
        self.tokens.verification_keys()
    }

    /// The role table, for services that evaluate permissions themselves.
    pub fn role_table(&self) -> &'static RoleTable {
        roles::table()
    }

    /// A stream of revocations for a client that holds `cursor` (empty: none).
    pub async fn watch_revocations(&self, cursor: &str) -> Result<Watcher> {
        self.feed.watch(cursor).await
    }

    /// Stores a credential and returns the roles granted.
    pub async fn create_credential(
        &self,
        user_id: &str,
        email: &str,
        password: SecretString,
    ) -> Result<Vec<String>> {
        let mut violations = Vec::new();
        if let Err(reason) = check_user_id(user_id) {
            violations.push(FieldViolation::new("user_id", reason));
        }
        let email = match grimos_common::validate::email(email) {
            Ok(email) => Some(email),
            Err(reason) => {
                violations.push(FieldViolation::new("email", reason));
                None
            }
        };
        if let Err(reason) = grimos_common::validate::password(password.expose_secret()) {
            violations.push(FieldViolation::new("password", reason));
        }
        let Some(email) = email.filter(|_| violations.is_empty()) else {
            return Err(Error::InvalidArgument(violations));
        };

        let mut roles = vec![roles::USER.to_owned()];
        if self.admin_emails.contains(&email) {
            roles.push(roles::ADMIN.to_owned());
        }
        let password_hash = self.passwords.hash(password).await?;
        self.store
            .insert_credential(&Credential {
                user_id: user_id.to_owned(),
                email,
                password_hash,
                roles: roles.clone(),
                create_time: now_secs(),
            })
            .await?;
        tracing::info!(%user_id, ?roles, "credential created");
        Ok(roles)
    }

    /// Deletes a credential and revokes every token of its user. Deleting a credential that
    /// does not exist succeeds: the call is idempotent, so callers can retry it safely.
    pub async fn delete_credential(&self, user_id: &str) -> Result<()> {
        if let Err(reason) = check_user_id(user_id) {
            return Err(Error::invalid("user_id", reason));
        }
        let now = now_secs();
        let revocation = Revocation {
            kind: Kind::User,
            subject: user_id.to_owned(),
            revoke_time: now,
            expire_time: now + self.revocation_ttl(),
        };
        if self.store.delete_credential(user_id, &revocation).await? {
            self.feed.committed(&[revocation]);
            tracing::info!(%user_id, "credential deleted");
        }
        Ok(())
    }
}

/// A user id: 1 to 64 characters of letters, digits, `-` and `_` (user-service uses UUIDs).
fn check_user_id(user_id: &str) -> std::result::Result<(), &'static str> {
    if user_id.is_empty() {
        return Err("user_id is required");
    }
    if user_id.len() > 64
        || !user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("user_id must be 1 to 64 letters, digits, '-' or '_'");
    }
    Ok(())
}
