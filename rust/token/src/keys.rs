//! The public keys that verify access tokens, by `kid`, and their JSON Web Key form (RFC 7517,
//! RFC 8037 for Ed25519): what auth-service publishes and user-service reads back.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use jsonwebtoken::DecodingKey;
use sha2::{Digest, Sha256};

/// The JWK key type of an Ed25519 key.
const KTY: &str = "OKP";
/// The JWK curve of an Ed25519 key.
const CRV: &str = "Ed25519";
/// The JWK algorithm of the keys: EdDSA, the only one tokens are signed with.
const ALG: &str = "EdDSA";
/// The JWK use of the keys: signatures.
const USE: &str = "sig";

/// `kid`: the first 16 base64url characters of the SHA-256 of the raw public key. auth-service
/// names its keys so; a verifier takes the `kid` it is given.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut encoded = URL_SAFE_NO_PAD.encode(digest);
    encoded.truncate(16);
    encoded
}

/// One Ed25519 public key as a JSON Web Key: its `kid` and the members that describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// The key id.
    pub kid: String,
    /// The key type: `OKP`.
    pub kty: String,
    /// The curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The algorithm: `EdDSA`.
    pub alg: String,
    /// The use: `sig`.
    pub key_use: String,
}

/// Why a published key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key has no `kid`.
    #[error("a verification key has no kid")]
    MissingKid,
    /// The key is not an Ed25519 signature key for EdDSA.
    #[error("verification key {kid:?} is not an Ed25519 EdDSA signature key")]
    Unsupported {
        /// The key's `kid`.
        kid: String,
    },
    /// `x` is not a base64url Ed25519 public key.
    #[error("verification key {kid:?} has an invalid public key")]
    InvalidKey {
        /// The key's `kid`.
        kid: String,
    },
}

/// A public key, in the two forms it is used in.
#[derive(Clone)]
struct PublicKey {
    raw: VerifyingKey,
    decoding: DecodingKey,
}

/// The Ed25519 public keys that verify access tokens, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&str> = self.kids().collect();
        kids.sort_unstable();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// An empty set: it verifies nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` under `kid` (replacing a key of the same `kid`).
    pub fn insert(&mut self, kid: impl Into<String>, key: VerifyingKey) {
        let decoding = DecodingKey::from_ed_der(key.as_bytes());
        self.keys
            .insert(kid.into(), PublicKey { raw: key, decoding });
    }

    /// The set of the published keys; every key must be an Ed25519 EdDSA signature key
    /// with a `kid` (an empty `alg` or `use` is taken as EdDSA and `sig`).
    pub fn from_jwks<'a>(jwks: impl IntoIterator<Item = &'a Jwk>) -> Result<Self, KeyError> {
        let mut set = Self::new();
        for jwk in jwks {
            if jwk.kid.is_empty() {
                return Err(KeyError::MissingKid);
            }
            let described = jwk.kty == KTY
                && jwk.crv == CRV
                && (jwk.alg.is_empty() || jwk.alg == ALG)
                && (jwk.key_use.is_empty() || jwk.key_use == USE);
            if !described {
                return Err(KeyError::Unsupported {
                    kid: jwk.kid.clone(),
                });
            }
            let invalid = || KeyError::InvalidKey {
                kid: jwk.kid.clone(),
            };
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&jwk.x)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(invalid)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| invalid())?;
            set.insert(jwk.kid.clone(), key);
        }
        Ok(set)
    }

    /// Every key as a JSON Web Key, ordered by `kid`.
    pub fn jwks(&self) -> Vec<Jwk> {
        let mut jwks: Vec<Jwk> = self
            .keys
            .iter()
            .map(|(kid, key)| Jwk {
                kid: kid.clone(),
                kty: KTY.to_owned(),
                crv: CRV.to_owned(),
                x: URL_SAFE_NO_PAD.encode(key.raw.as_bytes()),
                alg: ALG.to_owned(),
                key_use: USE.to_owned(),
            })
            .collect();
        jwks.sort_unstable_by(|a, b| a.kid.cmp(&b.kid));
        jwks
    }

    /// Whether a key has this `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The `kid`s of the keys, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key named `kid`, for verifying signatures.
    pub(crate) fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid).map(|key| &key.decoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::TestKey;

    #[test]
    fn published_keys_read_back_to_the_same_set() {
        let (a, b) = (TestKey::generate(), TestKey::generate());
        let mut set = KeySet::new();
        set.insert(a.kid.clone(), a.public());
        set.insert(b.kid.clone(), b.public());
        let jwks = set.jwks();
        assert_eq!(jwks.len(), 2);
        assert!(jwks[0].kid < jwks[1].kid);
        assert!(jwks.iter().all(|k| (
            k.kty.as_str(),
            k.crv.as_str(),
            k.alg.as_str(),
            k.key_use.as_str()
        ) == ("OKP", "Ed25519", "EdDSA", "sig")));
        let again = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(again.jwks(), jwks);
        assert!(again.contains(&a.kid) && again.contains(&b.kid));
        assert_eq!(a.kid, key_id(&a.public()));
    }

    #[test]
    fn keys_of_another_type_or_malformed_are_refused_naming_the_kid() {
        let key = TestKey::generate();
        let mut set = KeySet::new();
        set.insert(key.kid.clone(), key.public());
        let good = set.jwks().remove(0);
        let broken = |change: fn(&mut Jwk)| {
            let mut jwk = good.clone();
            change(&mut jwk);
            KeySet::from_jwks([&jwk]).unwrap_err()
        };
        assert_eq!(broken(|k| k.kid.clear()), KeyError::MissingKid);
        let unsupported = KeyError::Unsupported {
            kid: good.kid.clone(),
        };
        assert_eq!(broken(|k| k.kty = "RSA".into()), unsupported);
        assert_eq!(broken(|k| k.crv = "X25519".into()), unsupported);
        assert_eq!(broken(|k| k.alg = "HS256".into()), unsupported);
        assert_eq!(broken(|k| k.key_use = "enc".into()), unsupported);
        let invalid = KeyError::InvalidKey {
            kid: good.kid.clone(),
        };
        assert_eq!(broken(|k| k.x.push('A')), invalid);
        assert_eq!(broken(|k| k.x = "!!".into()), invalid);
        assert_eq!(broken(|k| k.x.truncate(10)), invalid);
        // The optional members may be left out.
        let mut minimal = good.clone();
        minimal.alg.clear();
        minimal.key_use.clear();
        assert!(KeySet::from_jwks([&minimal]).unwrap().contains(&good.kid));
    }
}
