//! Local verification of access tokens (`AUTH_LOCAL_VERIFICATION`): user-service checks a
//! token itself with [`grimos_token::Verifier`] (the same code auth-service runs) against the
//! keys and role table auth-service publishes (`GetVerificationKeys`), and refuses revoked
//! ones with a [`grimos_token::Revocations`] set that `watch` keeps from auth-service's
//! `WatchRevocations` stream. No request then needs a round trip.
//!
//! Local state is trusted only while it is provably current ([`Local::trusted`]): keys
//! fetched, the stream's first message applied, and a message (a revocation or a heartbeat)
//! received within the silence bound (`AUTH_REVOCATION_SILENCE`, by default four of the
//! server's heartbeat intervals and at most 1 s). Otherwise every request goes to
//! `ValidateToken` as before (`auth_client_local_fallbacks_total`), so a broken stream makes
//! requests slower or `UNAVAILABLE`, never lets a revoked token through.
//!
//! Keys are fetched when the stream (re)connects, and when a token names a `kid` the keys do
//! not hold: single-flight (concurrent requests wait for the one fetch), and at most once per
//! `AUTH_KEY_FETCH_INTERVAL`. A token with an unknown `kid` while a fetch is not allowed goes
//! to `ValidateToken`, so a flood of made-up key ids costs auth-service round trips it
//! answers cheaply, not key fetches, and a real new key is never refused.
//!
//! Revocations made through this client (`RevokeToken`, `ChangePassword`, `DeleteCredential`)
//! are applied to the local set at once, before the stream brings them back. A password change
//! ends sessions this client cannot name (the user's other ones), so until the stream reaches
//! the cursor auth-service answered the change with ([`grimos_token::CURSOR_HEADER`]), that
//! user's tokens go to `ValidateToken`, which knows ([`Local::settle_after`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use grimos_proto::auth::v1 as pb;
use grimos_token::{KeySet, Kind, Rejected, Revocation, Revocations, RoleTable, Verifier};
use tonic::Status;

use super::AuthClient;
use super::retry::Idempotency;

/// How often keys may be fetched for an unknown `kid`, when the configuration does not say.
pub const DEFAULT_KEY_FETCH_INTERVAL: Duration = Duration::from_secs(1);
/// The silence bound never exceeds this, so a revocation is refused within the contract's 1 s.
pub const MAX_SILENCE: Duration = Duration::from_secs(1);
/// The default silence bound, in heartbeats of the server.
const SILENCE_HEARTBEATS: u32 = 4;
/// How long a revocation made through this client is held before the stream's copy (which
/// carries the real expiry) takes over: longer than any access token lives in practice.
const LOCAL_REVOCATION_HOLD: i64 = 24 * 3600;
/// The longest a user's tokens go to `ValidateToken` after a password change, waiting for the
/// stream to bring the sessions it ended: the stream does in milliseconds, or is out of sync
/// (then every token goes there anyway); this only bounds the map when it never does (a cursor
/// of another database, or none).
const UNSETTLED_HOLD: Duration = Duration::from_secs(30);

/// The settings of local verification.
#[derive(Debug, Clone, Copy)]
pub struct LocalSettings {
    /// `AUTH_REVOCATION_SILENCE`: how long the stream may be silent before local state is not
    /// trusted; `None`: four of the server's heartbeat intervals, at most [`MAX_SILENCE`].
    pub silence: Option<Duration>,
    /// `AUTH_KEY_FETCH_INTERVAL`: the least time between two fetches for unknown key ids.
    pub key_fetch_interval: Duration,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            silence: None,
            key_fetch_interval: DEFAULT_KEY_FETCH_INTERVAL,
        }
    }
}

/// What auth-service published: the verifier over its keys, and its role table.
struct Published {
    verifier: Verifier,
    roles: RoleTable,
    /// Bumped on every fetch, so a request knows whether keys changed since it looked.
    version: u64,
}

/// The state of one fetch of keys at a time.
struct Fetches {
    last: Option<Instant>,
}

/// Everything local verification holds; shared by the client's clones and the `watch` task.
pub(super) struct Local {
    settings: LocalSettings,
    published: ArcSwapOption<Published>,
    pub(super) revocations: Revocations,
    /// The stream's first message was applied, and it has not failed since.
    synced: AtomicBool,
    /// When the stream's last message came, in milliseconds since `epoch`.
    last_message: AtomicU64,
    /// The silence bound in force, in milliseconds.
    silence: AtomicU64,
    epoch: Instant,
    fetches: tokio::sync::Mutex<Fetches>,
    /// The cursor of the stream's last message.
    position: Mutex<String>,
    /// Users whose password changed through this client, by the cursor the stream must reach
    /// before their tokens are checked here again, and since when.
    unsettled: Mutex<HashMap<String, (String, Instant)>>,
    /// `unsettled`'s length, read without the lock on every check.
    unsettled_users: AtomicUsize,
}

/// What local verification says of a token.
pub(super) enum Checked {
    Valid(pb::ValidateTokenResponse),
    Invalid,
    /// The token names a key id the keys of this version do not hold.
    UnknownKey(u64),
    /// Its user changed password through this client, and the stream has not brought the
    /// sessions that ended yet: only auth-service can tell.
    Unsettled,
}

impl Local {
    pub(super) fn new(settings: LocalSettings) -> Self {
        let silence = settings.silence.unwrap_or(MAX_SILENCE);
        Self {
            settings,
            published: ArcSwapOption::empty(),
            revocations: Revocations::default(),
            synced: AtomicBool::new(false),
            last_message: AtomicU64::new(0),
            silence: AtomicU64::new(millis(silence)),
            epoch: Instant::now(),
            fetches: tokio::sync::Mutex::new(Fetches { last: None }),
            position: Mutex::new(String::new()),
            unsettled: Mutex::new(HashMap::new()),
            unsettled_users: AtomicUsize::new(0),
        }
    }

    /// After a password change of `user_id` through this client: their tokens are not checked
    /// here until the stream reaches `cursor` (auth-service's answer, with the sessions the
    /// change ended) or, without one, for [`UNSETTLED_HOLD`].
    pub(super) fn settle_after(&self, user_id: &str, cursor: Option<&str>) {
        let wanted = cursor.unwrap_or_default();
        let position = self.position.lock().unwrap_or_else(PoisonError::into_inner);
        if grimos_token::reached(&position, wanted) {
            return;
        }
        let mut unsettled = self
            .unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        unsettled.insert(user_id.to_owned(), (wanted.to_owned(), Instant::now()));
        self.unsettled_users
            .store(unsettled.len(), Ordering::SeqCst);
    }

    /// The stream's message at `cursor` was applied: users it settles are checked here again.
    pub(super) fn reached(&self, cursor: &str) {
        let mut position = self.position.lock().unwrap_or_else(PoisonError::into_inner);
        cursor.clone_into(&mut position);
        if self.unsettled_users.load(Ordering::SeqCst) > 0 {
            let mut unsettled = self
                .unsettled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            unsettled.retain(|_, (wanted, since)| {
                !grimos_token::reached(cursor, wanted) && since.elapsed() < UNSETTLED_HOLD
            });
            self.unsettled_users
                .store(unsettled.len(), Ordering::SeqCst);
        }
    }

    /// Whether `user_id`'s tokens wait for the stream (see [`Local::settle_after`]).
    fn is_unsettled(&self, user_id: &str) -> bool {
        if self.unsettled_users.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let unsettled = self
            .unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        unsettled
            .get(user_id)
            .is_some_and(|(_, since)| since.elapsed() < UNSETTLED_HOLD)
    }

    fn now(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// The silence bound in force.
    pub(super) fn silence(&self) -> Duration {
        Duration::from_millis(self.silence.load(Ordering::Relaxed))
    }

    /// How long since the stream's last message (since the client started, before the first).
    pub(super) fn lag(&self) -> Duration {
        Duration::from_millis(
            self.now()
                .saturating_sub(self.last_message.load(Ordering::SeqCst)),
        )
    }

    /// Whether local verification may answer: keys fetched, stream in sync and not silent
    /// past the bound.
    pub(super) fn trusted(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
            && self.published.load().is_some()
            && self.lag() <= self.silence()
    }

    /// A message of the stream was applied (`heartbeat`: the server's heartbeat interval, on
    /// the first message of a stream).
    pub(super) fn received(&self, heartbeat: Option<Duration>) {
        if let Some(heartbeat) = heartbeat {
            let silence = self.settings.silence.unwrap_or_else(|| {
                heartbeat
                    .saturating_mul(SILENCE_HEARTBEATS)
                    .min(MAX_SILENCE)
            });
            self.silence.store(millis(silence), Ordering::Relaxed);
        }
        self.last_message.store(self.now(), Ordering::SeqCst);
        self.synced.store(true, Ordering::SeqCst);
    }

    /// The stream failed or ended: local state is not trusted until a new one is in sync.
    pub(super) fn disconnected(&self) {
        self.synced.store(false, Ordering::SeqCst);
    }

    /// Checks `token` with the published keys, revocations and role table.
    pub(super) fn check(&self, token: &str) -> Checked {
        let Some(published) = self.published.load_full() else {
            return Checked::UnknownKey(0);
        };
        let claims = match published.verifier.verify(token) {
            Ok(claims) => claims,
            Err(Rejected::Invalid) => return Checked::Invalid,
            Err(Rejected::UnknownKey) => return Checked::UnknownKey(published.version),
        };
        if self.revocations.is_revoked(&claims) {
            return Checked::Invalid;
        }
        if self.is_unsettled(&claims.sub) {
            return Checked::Unsettled;
        }
        let permissions = published
            .roles
            .permissions(&claims.roles)
            .into_iter()
            .map(str::to_owned)
            .collect();
        Checked::Valid(pb::ValidateTokenResponse {
            user_id: claims.sub.clone(),
            roles: claims.roles.clone(),
            expire_time: Some(grimos_proto::wkt::Timestamp {
                seconds: i64::try_from(claims.exp).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            permissions,
            session_id: claims.sid.clone(),
        })
    }

    /// When `token` was issued (Unix seconds), if it verifies with the published keys.
    pub(super) fn issued_at(&self, token: &str) -> Option<i64> {
        let published = self.published.load_full()?;
        let claims = published.verifier.verify(token).ok()?;
        i64::try_from(claims.iat).ok()
    }

    /// Revokes, here and now, the session `token` belongs to, if it verifies.
    pub(super) fn revoke_session_of(&self, token: &str) {
        let Some(published) = self.published.load_full() else {
            return;
        };
        if let Ok(claims) = published.verifier.verify(token) {
            self.revoke_session(&claims.sid);
        }
    }

    /// Revokes, here and now, every token of a session ended through this client.
    pub(super) fn revoke_session(&self, session_id: &str) {
        self.revoke(Kind::Session, session_id, now_secs());
    }

    /// Revokes, here and now, every token of `user_id` issued at or before `revoke_time`.
    pub(super) fn revoke_user(&self, user_id: &str, revoke_time: i64) {
        self.revoke(Kind::User, user_id, revoke_time);
    }

    fn revoke(&self, kind: Kind, subject: &str, revoke_time: i64) {
        if subject.is_empty() {
            return;
        }
        self.revocations.apply(&[Revocation {
            kind,
            subject: subject.to_owned(),
            revoke_time,
            expire_time: now_secs().saturating_add(LOCAL_REVOCATION_HOLD),
        }]);
    }

    fn publish(&self, response: pb::GetVerificationKeysResponse) -> anyhow::Result<()> {
        let jwks: Vec<grimos_token::Jwk> = response.keys.into_iter().map(Into::into).collect();
        let keys = KeySet::from_jwks(&jwks)?;
        if response.issuer != grimos_token::ISSUER || response.audience != grimos_token::AUDIENCE {
            anyhow::bail!(
                "auth-service publishes issuer {:?} and audience {:?}; this verifier checks {:?} and {:?}",
                response.issuer,
                response.audience,
                grimos_token::ISSUER,
                grimos_token::AUDIENCE
            );
        }
        let version = self.published.load().as_ref().map_or(0, |p| p.version) + 1;
        metrics::gauge!("auth_client_verification_keys").set(keys.len() as f64);
        self.published.store(Some(Arc::new(Published {
            verifier: Verifier::new(keys),
            roles: RoleTable::from(response.roles),
            version,
        })));
        Ok(())
    }

    fn version(&self) -> u64 {
        self.published.load().as_ref().map_or(0, |p| p.version)
    }
}

impl AuthClient {
    /// Answers `ValidateToken` for `token` from local state, or `None` when only auth-service
    /// can (local state not trusted, or a key id that cannot be looked up now): each `None`
    /// counted as a fallback.
    pub(super) async fn validate_locally(
        &self,
        local: &Local,
        token: &str,
    ) -> Option<Result<pb::ValidateTokenResponse, Status>> {
        let answer = self.answer_locally(local, token).await;
        if answer.is_none() {
            metrics::counter!("auth_client_local_fallbacks_total").increment(1);
        }
        answer
    }

    /// [`AuthClient::validate_locally`], uncounted.
    async fn answer_locally(
        &self,
        local: &Local,
        token: &str,
    ) -> Option<Result<pb::ValidateTokenResponse, Status>> {
        if !local.trusted() {
            return None;
        }
        let seen = match local.check(token) {
            Checked::Valid(answer) => return Some(Ok(answer)),
            Checked::Invalid => return Some(Err(Status::unauthenticated("invalid token"))),
            Checked::UnknownKey(seen) => seen,
            Checked::Unsettled => return None,
        };
        if !self.fetch_keys_for(local, seen).await {
            return None;
        }
        match local.check(token) {
            Checked::Valid(answer) => Some(Ok(answer)),
            // Keys fetched after the token arrived do not hold its key: auth-service does not
            // either.
            Checked::Invalid | Checked::UnknownKey(_) => {
                Some(Err(Status::unauthenticated("invalid token")))
            }
            Checked::Unsettled => None,
        }
    }

    /// Fetches the keys again because a token named a key id that the keys of version `seen`
    /// do not hold. True when keys newer than `seen` are in place (fetched now or by a
    /// concurrent request); false when a fetch is not allowed yet, or failed.
    async fn fetch_keys_for(&self, local: &Local, seen: u64) -> bool {
        let mut fetches = local.fetches.lock().await;
        if local.version() > seen {
            return true;
        }
        let interval = local.settings.key_fetch_interval;
        if fetches.last.is_some_and(|last| last.elapsed() < interval) {
            return false;
        }
        fetches.last = Some(Instant::now());
        self.fetch_keys(local).await.is_ok()
    }

    /// `GetVerificationKeys`, with the service credential, put in place.
    pub(super) async fn fetch_keys(&self, local: &Local) -> anyhow::Result<()> {
        let result = self
            .call("GetVerificationKeys", Idempotency::Read, || {
                let mut auth = self.service.clone();
                async move {
                    auth.get_verification_keys(pb::GetVerificationKeysRequest {})
                        .await
                }
            })
            .await
            .map_err(|status| anyhow::anyhow!("GetVerificationKeys: {}", status.message()))
            .and_then(|response| local.publish(response));
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("auth_client_key_fetches_total", "outcome" => outcome).increment(1);
        if let Err(error) = &result {
            tracing::warn!(error = %format!("{error:#}"), "cannot fetch auth-service's verification keys");
        }
        result
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Unix seconds now.
pub(super) fn now_secs() -> i64 {
    i64::try_from(grimos_token::unix_now()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(silence: Option<Duration>) -> LocalSettings {
        LocalSettings {
            silence,
            key_fetch_interval: DEFAULT_KEY_FETCH_INTERVAL,
        }
    }

    #[test]
    fn the_default_bound_is_four_heartbeats_and_never_more_than_a_second() {
        let local = Local::new(settings(None));
        local.received(Some(Duration::from_millis(100)));
        assert_eq!(local.silence(), Duration::from_millis(400));
        local.received(Some(Duration::from_millis(250)));
        assert_eq!(local.silence(), Duration::from_secs(1));
        local.received(Some(Duration::from_secs(5)));
        assert_eq!(local.silence(), MAX_SILENCE);
        // A setting wins over the server's heartbeat.
        let set = Local::new(settings(Some(Duration::from_millis(300))));
        set.received(Some(Duration::from_secs(5)));
        assert_eq!(set.silence(), Duration::from_millis(300));
    }

    #[test]
    fn local_state_is_trusted_only_with_keys_in_sync_and_within_the_bound() {
        let local = Local::new(settings(Some(Duration::from_millis(50))));
        assert!(!local.trusted(), "nothing yet");
        local.received(Some(Duration::from_millis(10)));
        assert!(!local.trusted(), "no keys yet");
        local
            .publish(pb::GetVerificationKeysResponse {
                issuer: grimos_token::ISSUER.to_owned(),
                audience: grimos_token::AUDIENCE.to_owned(),
                ..Default::default()
            })
            .unwrap();
        assert!(local.trusted());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!local.trusted(), "silent past the bound");
        local.received(None);
        assert!(local.trusted());
        local.disconnected();
        assert!(!local.trusted(), "the stream broke");
    }

    #[test]
    fn keys_for_another_issuer_are_refused() {
        let local = Local::new(settings(None));
        let error = local
            .publish(pb::GetVerificationKeysResponse {
                issuer: "someone-else".to_owned(),
                audience: grimos_token::AUDIENCE.to_owned(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(error.to_string().contains("someone-else"));
        assert_eq!(local.version(), 0);
    }

    #[test]
    fn a_password_change_holds_the_users_tokens_until_the_stream_reaches_its_cursor() {
        let local = Local::new(LocalSettings::default());
        local.reached("db.4");
        local.settle_after("ada", Some("db.5"));
        local.settle_after("bob", Some("db.3")); // the stream is past it already
        assert!(local.is_unsettled("ada"));
        assert!(!local.is_unsettled("bob"));
        assert!(!local.is_unsettled("cy"));
        local.reached("db.4");
        assert!(local.is_unsettled("ada"));
        local.reached("other.9"); // another database's cursor settles nothing
        assert!(local.is_unsettled("ada"));
        local.reached("db.5");
        assert!(!local.is_unsettled("ada"));
        assert_eq!(local.unsettled_users.load(Ordering::SeqCst), 0);
        // Without a cursor, only the hold ends it.
        local.settle_after("ada", None);
        local.reached("db.99");
        assert!(local.is_unsettled("ada"));
    }
}
