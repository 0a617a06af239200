//! The one verifier of access tokens. It accepts EdDSA only, a `kid` of its [`KeySet`], the
//! issuer [`ISSUER`] and audience [`AUDIENCE`], and `exp`/`nbf` with [`LEEWAY`]; so `alg:
//! none`, HMAC-confusion and tampered tokens all fail. Expiry is compared to the clock with
//! sub-second precision: a token is refused as soon as `exp` + 5 s has passed, not at the end
//! of that second. Revocation is the caller's check ([`crate::Revocations`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};

use crate::claims::AccessClaims;
use crate::keys::KeySet;

/// Clock skew tolerated on `exp` and `nbf`: the contract's 5 s, at most.
pub const LEEWAY: Duration = Duration::from_secs(5);
/// [`LEEWAY`] in whole seconds (it is a whole number of them), for revocation lifetimes.
pub const LEEWAY_SECS: u64 = LEEWAY.as_secs();
/// The `iss` of every access token.
pub const ISSUER: &str = "grimos-auth";
/// The `aud` of every access token: the grimOS services.
pub const AUDIENCE: &str = "grimos";
/// Longer "access tokens" are refused unread.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 8 * 1024;
/// How many verified access tokens are remembered (about 1 KiB each): the tokens in active
/// use by that many clients within their 15-minute life.
const VERIFIED_CACHE_CAPACITY: usize = 4096;

/// Why a token was refused. Callers answer both the same way (`UNAUTHENTICATED`); a
/// verifier whose keys come from auth-service fetches them again on [`Rejected::UnknownKey`],
/// since the token may be signed by a key added after it last fetched them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// A well-formed EdDSA token whose `kid` is not in the key set.
    #[error("the token's key id is not known")]
    UnknownKey,
    /// Anything else: malformed, another algorithm, bad signature, wrong issuer or audience,
    /// expired, not yet valid, too long.
    #[error("invalid or expired token")]
    Invalid,
}

/// Verifies access tokens with one [`KeySet`]. Build a new one when the keys change: the
/// tokens it remembers were verified with its keys.
pub struct Verifier {
    keys: KeySet,
    validation: Validation,
    /// Tokens whose signature and claims verified, by their exact text.
    verified: quick_cache::sync::Cache<String, Arc<AccessClaims>>,
    /// Counted on each lookup in `verified` that finds the token, and each that does not.
    cache_hits: metrics::Counter,
    cache_misses: metrics::Counter,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier of tokens signed by any of `keys`.
    pub fn new(keys: KeySet) -> Self {
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
            validation,
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_CAPACITY),
            cache_hits: metrics::Counter::noop(),
            cache_misses: metrics::Counter::noop(),
        }
    }

    /// This verifier, counting its lookups of verified tokens in `hits` and `misses` (each
    /// service names its own series).
    #[must_use]
    pub fn count_cache_lookups(mut self, hits: metrics::Counter, misses: metrics::Counter) -> Self {
        self.cache_hits = hits;
        self.cache_misses = misses;
        self
    }

    /// The keys it verifies with.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The claims of a valid access token (signature, algorithm, key, issuer, audience and
    /// time checked; revocation is the caller's job).
    ///
    /// A token whose signature was verified once is remembered (exactly its bytes, in a
    /// bounded cache), so verifying it again only rechecks its expiry: Ed25519 verification
    /// is most of the cost, and services see the same token on every request its holder
    /// makes.
    pub fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, Rejected> {
        self.verify_at(token, since_epoch())
    }

    /// [`Verifier::verify`] with the clock at `now` (since the Unix epoch) for the sub-second
    /// expiry check.
    pub fn verify_at(&self, token: &str, now: Duration) -> Result<Arc<AccessClaims>, Rejected> {
        if token.is_empty() || token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(Rejected::Invalid);
        }
        if let Some(claims) = self.verified.get(token) {
            self.cache_hits.increment(1);
            if expired(claims.exp, now) {
                self.verified.remove(token);
                return Err(Rejected::Invalid);
            }
            return Ok(claims);
        }
        self.cache_misses.increment(1);
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(Rejected::Invalid);
        }
        let kid = header.kid.as_deref().ok_or(Rejected::Invalid)?;
        let key = self.keys.decoding_key(kid).ok_or(Rejected::UnknownKey)?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| Arc::new(data.claims))
            .map_err(|_| Rejected::Invalid)?;
        if !header_and_claims_are_json(token) {
            return Err(Rejected::Invalid);
        }
        // jsonwebtoken compares `exp` with the clock in whole seconds, which lets a token live
        // up to a second past its leeway; this is the check that decides.
        if expired(claims.exp, now) {
            return Err(Rejected::Invalid);
        }
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }
}

/// Whether the token's header and claims are both JSON text (RFC 8259). The typed decoding
/// above skips the members it does not know with a lighter check: a string of bytes that are
/// not UTF-8, a lone surrogate escape or a number out of range there would pass it, and a
/// token other JSON parsers refuse must not be accepted here. Only tokens whose signature
/// verified get this far, once each (then the verified cache answers).
fn header_and_claims_are_json(token: &str) -> bool {
    token.split('.').take(2).all(|part| {
        URL_SAFE_NO_PAD
            .decode(part)
            .is_ok_and(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).is_ok())
    })
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
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::test_keys::{TestKey, good_claims, with};

    fn b64_json(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// The key, its verifier, and a good token of it: every forged case below is checked
    /// beside this control, so a refusal is for the one property made wrong.
    fn fixture() -> (TestKey, Verifier, String) {
        let key = TestKey::generate();
        let verifier = Verifier::new(key.key_set());
        let control = key.sign(&good_claims());
        assert_eq!(verifier.verify(&control).unwrap().sub, "u1");
        (key, verifier, control)
    }

    #[test]
    fn a_token_verifies_with_its_claims() {
        let (_, verifier, control) = fixture();
        let claims = verifier.verify(&control).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u1", "s1"));
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            (ISSUER, AUDIENCE)
        );
        assert_eq!(claims.roles, ["user"]);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn alg_none_is_refused() {
        let (key, verifier, _) = fixture();
        let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
        for signature in ["", "AAAA"] {
            let forged = format!(
                "{}.{}.{signature}",
                b64_json(&header),
                b64_json(&good_claims())
            );
            assert_eq!(verifier.verify(&forged).unwrap_err(), Rejected::Invalid);
        }
    }

    #[test]
    fn hs256_keyed_with_the_public_key_is_refused() {
        let (key, verifier, _) = fixture();
        // The classic confusion: an HMAC whose secret is the published public key, in every
        // form a confused verifier might use it.
        let x = URL_SAFE_NO_PAD.encode(key.public().as_bytes());
        for secret in [key.public().as_bytes().to_vec(), x.into_bytes()] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(key.kid.clone());
            let forged =
                jsonwebtoken::encode(&header, &good_claims(), &EncodingKey::from_secret(&secret))
                    .unwrap();
            assert_eq!(verifier.verify(&forged).unwrap_err(), Rejected::Invalid);
        }
    }

    #[test]
    fn a_tampered_payload_or_signature_is_refused() {
        let (_, verifier, control) = fixture();
        let parts: Vec<&str> = control.split('.').collect();
        let admin = with(good_claims(), "roles", json!(["user", "admin"]));
        let payload = format!("{}.{}.{}", parts[0], b64_json(&admin), parts[2]);
        assert_eq!(verifier.verify(&payload).unwrap_err(), Rejected::Invalid);
        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[0] ^= 1;
        let flipped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        );
        assert_eq!(verifier.verify(&flipped).unwrap_err(), Rejected::Invalid);
        let appended = format!("{control}A");
        assert_eq!(verifier.verify(&appended).unwrap_err(), Rejected::Invalid);
        for garbage in ["", "not.a.jwt", "a.b", "...."] {
            assert_eq!(verifier.verify(garbage).unwrap_err(), Rejected::Invalid);
        }
    }

    #[test]
    fn an_unknown_kid_is_told_apart_and_another_keys_signature_is_invalid() {
        let (key, verifier, _) = fixture();
        let other = TestKey::generate();
        // Signed by a key the verifier does not have yet: fetch the keys again.
        assert_eq!(
            verifier.verify(&other.sign(&good_claims())).unwrap_err(),
            Rejected::UnknownKey
        );
        // Naming the known kid but signed by another key: forged.
        let forged = other.sign_as(&key.kid, &good_claims());
        assert_eq!(verifier.verify(&forged).unwrap_err(), Rejected::Invalid);
        // No kid at all.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = None;
        let kidless = jsonwebtoken::encode(&header, &good_claims(), &key.encoding_key()).unwrap();
        assert_eq!(verifier.verify(&kidless).unwrap_err(), Rejected::Invalid);
        // Once the key is in the set, its tokens verify.
        let mut keys = key.key_set();
        keys.insert(other.kid.clone(), other.public());
        let rotated = Verifier::new(keys);
        assert!(rotated.verify(&other.sign(&good_claims())).is_ok());
    }

    #[test]
    fn a_signed_token_whose_header_or_claims_are_not_json_text_is_refused() {
        // Found by the access_token fuzz target: an extra claim whose string is not UTF-8 was
        // accepted, though the claims are not JSON. Each case puts the bad member where the
        // typed decoding skips it (a member it does not know).
        let (key, verifier, _) = fixture();
        let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, key.kid);
        let claims = serde_json::to_string(&good_claims()).unwrap();
        let control = key.sign_raw(header.as_bytes(), claims.as_bytes());
        assert!(verifier.verify(&control).is_ok());
        let with_member = |json: &str, member: &[u8]| {
            let mut bytes = json.as_bytes()[..json.len() - 1].to_vec();
            bytes.extend_from_slice(b",\"x\":");
            bytes.extend_from_slice(member);
            bytes.push(b'}');
            bytes
        };
        for member in [&b"\"\xa6\xa6\""[..], br#""\ud800""#, b"1e400"] {
            let bad_claims = with_member(&claims, member);
            let bad_header = with_member(&header, member);
            for token in [
                key.sign_raw(header.as_bytes(), &bad_claims),
                key.sign_raw(&bad_header, claims.as_bytes()),
            ] {
                assert_eq!(
                    verifier.verify(&token).unwrap_err(),
                    Rejected::Invalid,
                    "{}",
                    String::from_utf8_lossy(member)
                );
            }
        }
    }

    #[test]
    fn a_wrong_issuer_or_audience_or_a_missing_claim_is_refused() {
        let (key, verifier, _) = fixture();
        for claims in [
            with(good_claims(), "iss", json!("someone-else")),
            with(good_claims(), "aud", json!("another-audience")),
            with(good_claims(), "aud", json!(["another-audience"])),
            with(good_claims(), "exp", Value::Null),
            with(good_claims(), "sub", Value::Null),
            with(good_claims(), "sid", Value::Null),
        ] {
            assert_eq!(
                verifier.verify(&key.sign(&claims)).unwrap_err(),
                Rejected::Invalid,
                "{claims}"
            );
        }
    }

    #[test]
    fn expiry_and_not_before_allow_5_seconds_of_skew_and_no_more() {
        let (key, verifier, _) = fixture();
        let now = unix_now();
        let expired_claims = with(good_claims(), "exp", json!(now - 7));
        assert_eq!(
            verifier.verify(&key.sign(&expired_claims)).unwrap_err(),
            Rejected::Invalid
        );
        let early = with(good_claims(), "nbf", json!(now + 60));
        assert_eq!(
            verifier.verify(&key.sign(&early)).unwrap_err(),
            Rejected::Invalid
        );
        let skewed = with(good_claims(), "nbf", json!(now + 3));
        assert!(verifier.verify(&key.sign(&skewed)).is_ok());
    }

    #[test]
    fn the_leeway_past_exp_is_5_seconds_to_the_millisecond() {
        let key = TestKey::generate();
        let token = key.sign(&good_claims());
        let exp = Duration::from_secs(Verifier::new(key.key_set()).verify(&token).unwrap().exp);
        // The contract's bound, written out rather than taken from the constant under test.
        for (past_exp, accepted) in [(4_999, true), (5_000, true), (5_001, false), (5_999, false)] {
            let now = exp + Duration::from_millis(past_exp);
            let fresh = Verifier::new(key.key_set());
            assert_eq!(
                fresh.verify_at(&token, now).is_ok(),
                accepted,
                "a token seen for the first time {past_exp} ms after its exp"
            );
            let remembered = Verifier::new(key.key_set());
            remembered.verify(&token).unwrap();
            assert_eq!(
                remembered.verify_at(&token, now).is_ok(),
                accepted,
                "a remembered token {past_exp} ms after its exp"
            );
        }
    }

    #[test]
    fn a_remembered_token_still_expires_and_tampering_is_still_caught() {
        let (_, verifier, token) = fixture();
        let first = verifier.verify(&token).unwrap();
        let again = verifier.verify(&token).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second check is served from the cache"
        );
        let after_expiry = Duration::from_secs(first.exp) + LEEWAY + Duration::from_millis(1);
        assert!(verifier.verify_at(&token, after_expiry).is_err());
        let reverified = verifier.verify(&token).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &reverified),
            "forgotten once seen expired"
        );
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(verifier.verify(&tampered).is_err());
    }

    #[test]
    fn an_oversized_token_is_refused_unread() {
        let (key, verifier, _) = fixture();
        let padded = with(
            good_claims(),
            "pad",
            json!("x".repeat(MAX_ACCESS_TOKEN_BYTES)),
        );
        let token = key.sign(&padded);
        assert!(token.len() > MAX_ACCESS_TOKEN_BYTES);
        assert_eq!(verifier.verify(&token).unwrap_err(), Rejected::Invalid);
    }
}
