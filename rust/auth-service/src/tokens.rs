//! Access tokens (Ed25519-signed JWTs) and refresh tokens (opaque random strings).
//!
//! Access tokens carry `iss`, `aud`, `sub`, `exp`, `nbf`, `iat`, `jti`, `sid` (the session)
//! and `roles`, with the signing key's `kid` in the header. Verification accepts EdDSA only,
//! a known `kid`, the configured issuer and audience, and `exp`/`nbf` with 5 s of leeway; so
//! `alg: none`, HMAC-confusion and tampered tokens all fail. Expiry is compared to the clock
//! with sub-second precision: a token is refused as soon as `exp` + 5 s has passed, not at
//! the end of that second. Refresh tokens are 256 bits from
//! the OS CSPRNG; only their SHA-256 digest is stored. No token is ever logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::keys::KeyRing;

/// Clock skew tolerated on `exp` and `nbf`: the contract's 5 s, at most.
pub const LEEWAY: Duration = Duration::from_secs(5);
/// [`LEEWAY`] in whole seconds (it is a whole number of them), for revocation lifetimes.
pub const LEEWAY_SECS: u64 = LEEWAY.as_secs();
/// The `iss` of every token this service signs.
pub const ISSUER: &str = "grimos-auth";
/// The `aud` of every access token: the grimOS services.
pub const AUDIENCE: &str = "grimos";
/// Refresh tokens start with this, so they are easy to tell from JWTs and to spot in leaks.
const REFRESH_PREFIX: &str = "grt_";
/// Longer "access tokens" are refused unread.
const MAX_ACCESS_TOKEN_BYTES: usize = 8 * 1024;
/// How many verified access tokens are remembered (about 1 KiB each): the tokens in active
/// use by that many clients within their 15-minute life.
const VERIFIED_CACHE_CAPACITY: usize = 4096;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not before, Unix seconds.
    pub nbf: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Unique token id, the handle for revoking this one token.
    pub jti: String,
    /// The session (refresh-token family) the token was issued for.
    pub sid: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

/// Signs and verifies access tokens with a [`KeyRing`].
pub struct Tokens {
    keys: KeyRing,
    access_ttl: Duration,
    validation: Validation,
    /// Tokens whose signature and claims verified, by their exact text.
    verified: quick_cache::sync::Cache<String, Arc<AccessClaims>>,
    /// `auth_verified_token_cache_lookups_total{result="hit"}` and `{result="miss"}`.
    verified_hits: metrics::Counter,
    verified_misses: metrics::Counter,
}

impl Tokens {
    /// Tokens signed by `keys`, living `access_ttl`.
    pub fn new(keys: KeyRing, access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        Self {
            keys,
            access_ttl,
            validation,
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_CAPACITY),
            verified_hits: metrics::counter!("auth_verified_token_cache_lookups_total", "result" => "hit"),
            verified_misses: metrics::counter!("auth_verified_token_cache_lookups_total", "result" => "miss"),
        }
    }

    /// A signed access token for `user_id` in session `sid`, and its expiry.
    pub fn issue_access(
        &self,
        user_id: &str,
        sid: &str,
        roles: &[String],
    ) -> Result<(String, SystemTime)> {
        let now = unix_now();
        let exp = now + self.access_ttl.as_secs().max(1);
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user_id.to_owned(),
            exp,
            nbf: now,
            iat: now,
            jti: random_token_id(),
            sid: sid.to_owned(),
            roles: roles.to_vec(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.keys.signing_key)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot sign a token: {e}")))?;
        Ok((token, UNIX_EPOCH + Duration::from_secs(exp)))
    }

    /// The claims of a valid access token (signature, algorithm, key, issuer, audience and
    /// time checked; revocation is the caller's job), or `Unauthenticated`.
    ///
    /// A token whose signature was verified once is remembered (exactly its bytes, in a
    /// bounded cache), so validating it again only rechecks its expiry: Ed25519 verification
    /// is most of the cost of a `ValidateToken` call, and services validate the same token on
    /// every request its holder makes.
    pub fn verify_access(&self, token: &str) -> Result<Arc<AccessClaims>> {
        self.verify_access_at(token, since_epoch())
    }

    /// [`Tokens::verify_access`] with the clock at `now` (since the Unix epoch).
    fn verify_access_at(&self, token: &str, now: Duration) -> Result<Arc<AccessClaims>> {
        if token.is_empty() || token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(Error::Unauthenticated);
        }
        if let Some(claims) = self.verified.get(token) {
            self.verified_hits.increment(1);
            if expired(claims.exp, now) {
                self.verified.remove(token);
                return Err(Error::Unauthenticated);
            }
            return Ok(claims);
        }
        self.verified_misses.increment(1);
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::Unauthenticated)?;
        if header.alg != Algorithm::EdDSA {
            return Err(Error::Unauthenticated);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifying.get(kid))
            .ok_or(Error::Unauthenticated)?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| Arc::new(data.claims))
            .map_err(|_| Error::Unauthenticated)?;
        // jsonwebtoken compares `exp` with the clock in whole seconds, which lets a token live
        // up to a second past its leeway; this is the check that decides.
        if expired(claims.exp, now) {
            return Err(Error::Unauthenticated);
        }
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    /// The access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }
}

/// A new refresh token: the prefix and 32 random bytes, base64url.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `token` has the shape of a refresh token (cheap, before any database read).
pub fn looks_like_refresh_token(token: &str) -> bool {
    token.strip_prefix(REFRESH_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The digest a refresh token is stored and looked up by.
pub fn refresh_token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A random 128-bit id, base64url: for `jti` and session ids.
pub fn random_token_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a token whose `exp` is `exp` (Unix seconds) is refused at `now` (since the Unix
/// epoch, to the nanosecond): once `exp` + [`LEEWAY`] has passed.
pub fn expired(exp: u64, now: Duration) -> bool {
    Duration::from_secs(exp).saturating_add(LEEWAY) < now
}

/// The time since the Unix epoch, with the clock's full precision.
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    since_epoch().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_pem;

    fn tokens() -> Tokens {
        Tokens::new(
            KeyRing::from_pem(&generate_pem().unwrap()).unwrap(),
            Duration::from_secs(900),
        )
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let tokens = tokens();
        let (jwt, exp) = tokens
            .issue_access("u1", "s1", &["user".to_owned()])
            .unwrap();
        let claims = tokens.verify_access(&jwt).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u1", "s1"));
        assert_eq!(claims.roles, ["user"]);
        assert_eq!(UNIX_EPOCH + Duration::from_secs(claims.exp), exp);
        assert!(claims.exp - claims.iat == 900);
    }

    #[test]
    fn tokens_of_another_key_and_tampered_tokens_fail() {
        let (a, b) = (tokens(), tokens());
        let (jwt, _) = a.issue_access("u1", "s1", &[]).unwrap();
        assert!(b.verify_access(&jwt).is_err());
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
        assert!(a.verify_access(&parts.join(".")).is_err());
        assert!(a.verify_access("").is_err());
        assert!(a.verify_access("not.a.jwt").is_err());
    }

    #[test]
    fn a_remembered_token_still_expires_and_tampering_is_still_caught() {
        let tokens = tokens();
        let (jwt, _) = tokens.issue_access("u1", "s1", &[]).unwrap();
        let first = tokens.verify_access(&jwt).unwrap();
        let again = tokens.verify_access(&jwt).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second check is served from the cache"
        );
        let after_expiry = Duration::from_secs(first.exp) + LEEWAY + Duration::from_millis(1);
        assert!(tokens.verify_access_at(&jwt, after_expiry).is_err());
        let reverified = tokens.verify_access(&jwt).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &reverified),
            "forgotten once seen expired"
        );
        let mut tampered = jwt.clone();
        tampered.push('A');
        assert!(tokens.verify_access(&tampered).is_err());
    }

    #[test]
    fn the_leeway_past_exp_is_5_seconds_to_the_millisecond() {
        let pem = generate_pem().unwrap();
        let verifier = || Tokens::new(KeyRing::from_pem(&pem).unwrap(), Duration::from_secs(900));
        let (jwt, _) = verifier().issue_access("u1", "s1", &[]).unwrap();
        let exp = Duration::from_secs(verifier().verify_access(&jwt).unwrap().exp);
        // The contract's bound, written out rather than taken from the constant under test.
        for (past_exp, accepted) in [(4_999, true), (5_000, true), (5_001, false), (5_999, false)] {
            let now = exp + Duration::from_millis(past_exp);
            let fresh = verifier();
            assert_eq!(
                fresh.verify_access_at(&jwt, now).is_ok(),
                accepted,
                "a token seen for the first time {past_exp} ms after its exp"
            );
            let remembered = verifier();
            remembered.verify_access(&jwt).unwrap();
            assert_eq!(
                remembered.verify_access_at(&jwt, now).is_ok(),
                accepted,
                "a remembered token {past_exp} ms after its exp"
            );
        }
    }

    #[test]
    fn refresh_tokens_are_random_and_recognisable() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_ne!(a, b);
        assert!(looks_like_refresh_token(&a));
        assert!(!looks_like_refresh_token("grt_short"));
        assert!(!looks_like_refresh_token(&a.replace("grt_", "xyz_")));
        assert_eq!(refresh_token_digest(&a).len(), 32);
    }
}
