//! Keys and tokens for the tests: signing, which this crate otherwise never does.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::{AUDIENCE, ISSUER, KeySet, key_id, unix_now};

/// An Ed25519 key pair with its `kid`.
pub struct TestKey {
    pub signing: SigningKey,
    pub kid: String,
}

impl TestKey {
    pub fn generate() -> Self {
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let kid = key_id(&signing.verifying_key());
        Self { signing, kid }
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// A key set of this key alone.
    pub fn key_set(&self) -> KeySet {
        let mut set = KeySet::new();
        set.insert(self.kid.clone(), self.public());
        set
    }

    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ed_der(self.signing.to_pkcs8_der().unwrap().as_bytes())
    }

    /// `claims` signed with this key, EdDSA, naming `kid`.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// `claims` signed with this key, as auth-service signs.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// A token this key signed whose header and claims are exactly the bytes given, JSON or
    /// not.
    pub fn sign_raw(&self, header: &[u8], claims: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding_key(), Algorithm::EdDSA)
                .unwrap();
        format!("{message}.{signature}")
    }
}

/// Claims exactly like the ones auth-service issues, valid from now for 900 s.
pub fn good_claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u1",
        "exp": now + 900,
        "nbf": now,
        "iat": now,
        "jti": "j1",
        "sid": "s1",
        "roles": ["user"],
    })
}

/// `claims` with `name` set to `value`.
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}
