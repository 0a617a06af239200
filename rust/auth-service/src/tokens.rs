//! Access tokens (Ed25519-signed JWTs) and refresh tokens (opaque random strings).
//!
//! Access tokens carry `iss`, `aud`, `sub`, `exp`, `nbf`, `iat`, `jti`, `sid` (the session)
//! and `roles`, with the signing key's `kid` in the header. They are signed here and verified
//! by [`grimos_token::Verifier`], the one verifier that user-service uses too (its rules:
//! EdDSA only, a known `kid`, issuer, audience, `exp`/`nbf` with 5 s of leeway, sub-second
//! expiry). Refresh tokens are 256 bits from the OS CSPRNG; only their SHA-256 digest is
//! stored. No token is ever logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use grimos_token::Verifier;
use jsonwebtoken::{Algorithm, Header};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

pub use grimos_token::{
    AUDIENCE, AccessClaims, ISSUER, LEEWAY, LEEWAY_SECS, expired, since_epoch, unix_now,
};

use crate::error::{Error, Result};
use crate::keys::KeyRing;

/// Refresh tokens start with this, so they are easy to tell from JWTs and to spot in leaks.
const REFRESH_PREFIX: &str = "grt_";

/// Signs access tokens with a [`KeyRing`]'s signing key and verifies them with its keys.
pub struct Tokens {
    signing_kid: String,
    signing_key: jsonwebtoken::EncodingKey,
    verifier: Verifier,
    access_ttl: Duration,
}

impl Tokens {
    /// Tokens signed by `keys`, living `access_ttl`.
    pub fn new(keys: KeyRing, access_ttl: Duration) -> Self {
        Self {
            signing_kid: keys.signing_kid,
            signing_key: keys.signing_key,
            verifier: Verifier::new(keys.verifying).count_cache_lookups(
                metrics::counter!("auth_verified_token_cache_lookups_total", "result" => "hit"),
                metrics::counter!("auth_verified_token_cache_lookups_total", "result" => "miss"),
            ),
            access_ttl,
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
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot sign a token: {e}")))?;
        Ok((token, UNIX_EPOCH + Duration::from_secs(exp)))
    }

    /// The claims of a valid access token (signature, algorithm, key, issuer, audience and
    /// time checked by [`Verifier::verify`]; revocation is the caller's job), or
    /// `Unauthenticated`.
    pub fn verify_access(&self, token: &str) -> Result<Arc<AccessClaims>> {
        self.verifier
            .verify(token)
            .map_err(|_| Error::Unauthenticated)
    }

    /// The keys that verify access tokens: what `GetVerificationKeys` publishes.
    pub fn verification_keys(&self) -> &grimos_token::KeySet {
        self.verifier.keys()
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
        let ring = tokens();
        let (jwt, exp) = ring.issue_access("u1", "s1", &["user".to_owned()]).unwrap();
        let claims = ring.verify_access(&jwt).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u1", "s1"));
        assert_eq!(claims.roles, ["user"]);
        assert_eq!(UNIX_EPOCH + Duration::from_secs(claims.exp), exp);
        assert!(claims.exp - claims.iat == 900);
        // The verifier's own rules are tested in grimos-token; here, only that it is this
        // ring's keys it verifies with.
        assert!(tokens().verify_access(&jwt).is_err());
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
