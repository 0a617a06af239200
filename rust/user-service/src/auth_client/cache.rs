//! Recent `ValidateToken` answers, reused for a short time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grimos_proto::auth::v1 as pb;

/// How many tokens' validations are remembered.
pub(super) const VALIDATION_CACHE_CAPACITY: usize = 10_000;

/// Recent successful `ValidateToken` answers by token, each reused for at most `ttl` and
/// never past the token's expiry. Every authenticated request validates its token, and the
/// round trip to auth-service costs several times what the rest of a read does; a client
/// usually sends many requests with one token, so most of them skip it.
///
/// Revocations that go through this client apply at once: revoking a token ends its session,
/// so every answer of that session is forgotten (and every answer of a user whose credential
/// is deleted). An answer fetched before such a revocation but stored after it is caught by
/// `generation`: [`Validations::forget`] bumps it, and [`Validations::insert`] drops its own
/// entry if it changed while the answer was on its way.
///
/// Every lookup is counted in `auth_client_validation_cache_lookups_total{result="hit"|"miss"}`
/// (a stale answer is a miss), so the hit ratio is a rate over it.
pub(super) struct Validations {
    ttl: Duration,
    answers: quick_cache::sync::Cache<String, (Instant, pb::ValidateTokenResponse)>,
    generation: AtomicU64,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl Validations {
    pub(super) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            answers: quick_cache::sync::Cache::new(capacity),
            generation: AtomicU64::new(0),
            hits: metrics::counter!("auth_client_validation_cache_lookups_total", "result" => "hit"),
            misses: metrics::counter!("auth_client_validation_cache_lookups_total", "result" => "miss"),
        }
    }

    /// The generation to pass to [`Validations::insert`]: read before asking auth-service.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Forgets every answer `matches` selects, and any answer in flight.
    pub(super) fn forget(&self, matches: impl Fn(&pb::ValidateTokenResponse) -> bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.answers.retain(|_, (_, answer)| !matches(answer));
    }

    /// Forgets the answer for `token`.
    pub(super) fn remove(&self, token: &str) {
        self.answers.remove(token);
    }

    pub(super) fn get(&self, token: &str) -> Option<pb::ValidateTokenResponse> {
        let Some((until, answer)) = self.answers.get(token) else {
            self.misses.increment(1);
            return None;
        };
        if Instant::now() < until {
            self.hits.increment(1);
            Some(answer)
        } else {
            self.misses.increment(1);
            self.answers.remove(token);
            None
        }
    }

    pub(super) fn insert(&self, token: &str, answer: &pb::ValidateTokenResponse, generation: u64) {
        let now = Instant::now();
        let mut until = now + self.ttl;
        // Never past the token's expiry: inside the leeway after it, only auth-service says
        // whether the token is still accepted.
        if let Some(expiry) = answer.expire_time.as_ref() {
            let Some(expiry) = system_time(expiry) else {
                return;
            };
            match expiry.duration_since(SystemTime::now()) {
                Ok(left) => until = until.min(now + left),
                Err(_) => return,
            }
        }
        self.answers
            .insert(token.to_owned(), (until, answer.clone()));
        if self.generation() != generation {
            // A revocation went through meanwhile; it may have ended this token.
            self.answers.remove(token);
        }
    }
}

/// A protobuf timestamp as a `SystemTime`, to the nanosecond; `None` if it is before the
/// Unix epoch or malformed.
fn system_time(timestamp: &grimos_proto::wkt::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(timestamp.seconds).ok()?;
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn answer_expiring_at(expiry: SystemTime) -> pb::ValidateTokenResponse {
        let since_epoch = expiry.duration_since(UNIX_EPOCH).unwrap();
        pb::ValidateTokenResponse {
            user_id: "u1".to_owned(),
            expire_time: Some(grimos_proto::wkt::Timestamp {
                seconds: i64::try_from(since_epoch.as_secs()).unwrap(),
                nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap(),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_cached_answer_is_never_used_past_the_token_expiry() {
        let validations = Validations::new(Duration::from_secs(60), 16);
        let expired = SystemTime::now() - Duration::from_millis(1);
        validations.insert("expired", &answer_expiring_at(expired), 0);
        assert!(validations.get("expired").is_none(), "not even stored");

        let expiry = SystemTime::now() + Duration::from_millis(300);
        validations.insert("soon", &answer_expiring_at(expiry), 0);
        assert!(
            validations.get("soon").is_some(),
            "reused before its expiry"
        );
        grimos_test_support::clock::wait_until(expiry).await;
        assert!(validations.get("soon").is_none(), "not after it");
    }

    #[test]
    fn forgetting_a_session_forgets_its_answers_and_the_ones_in_flight() {
        let validations = Validations::new(Duration::from_secs(60), 16);
        let expiry = SystemTime::now() + Duration::from_secs(600);
        let answer = |session: &str| pb::ValidateTokenResponse {
            session_id: session.to_owned(),
            ..answer_expiring_at(expiry)
        };
        let before = validations.generation();
        validations.insert("a1", &answer("a"), before);
        validations.insert("a2", &answer("a"), before);
        validations.insert("b1", &answer("b"), before);

        validations.forget(|answer| answer.session_id == "a");

        assert!(validations.get("a1").is_none());
        assert!(validations.get("a2").is_none());
        assert!(validations.get("b1").is_some(), "another session is kept");
        // An answer asked for before the revocation and arriving after it is not kept.
        validations.insert("a3", &answer("a"), before);
        assert!(validations.get("a3").is_none());
        validations.insert("b2", &answer("b"), validations.generation());
        assert!(validations.get("b2").is_some());
    }
}
