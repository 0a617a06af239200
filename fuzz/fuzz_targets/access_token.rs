//! Access-token verification: auth-service's `Tokens::verify_access` with a real key ring
//! (`fixtures/signing-key.pem`, a key for these targets only).
//!
//! Input: if it holds a 0xFF byte (never in UTF-8), the bytes before it are a JWT header and
//! the bytes after it the claims, base64url-encoded and signed here with the ring's key: a
//! token the service signed, with whatever header and claims. Otherwise the input is the token
//! text a client sends.
//!
//! Must hold: no panic, and a token is accepted only if this check, written independently of
//! the service's, agrees: three base64url parts; an Ed25519 signature by the ring's key over
//! the first two; a header with `alg` `EdDSA` and the key's `kid`; claims with the issuer and
//! audience, `sub`, `jti`, `sid`, `roles`, `iat`, and `exp` and `nbf` within 5 s of now.

#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_service::keys::KeyRing;
use auth_service::tokens::{AUDIENCE, ISSUER, LEEWAY_SECS, Tokens};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const KEY_PEM: &str = include_str!("../fixtures/signing-key.pem");

struct Fixture {
    tokens: Tokens,
    key: SigningKey,
    kid: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ring = KeyRing::from_pem(KEY_PEM).expect("the fixture key ring");
    let kid = ring.signing_kid.clone();
    let fixture = Fixture {
        tokens: Tokens::new(ring, Duration::from_secs(900)),
        key: SigningKey::from_pkcs8_pem(KEY_PEM).expect("the fixture key"),
        kid,
    };
    // A real token passes both checks, or the target would be testing nothing.
    let (token, _) = fixture
        .tokens
        .issue_access("u1", "s1", &["user".to_owned()])
        .expect("a token");
    assert!(fixture.tokens.verify_access(&token).is_ok());
    assert_eq!(
        independent_check(&fixture, &token, unix_now(), unix_now()),
        Ok(())
    );
    fixture
});

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let token = match data.iter().position(|b| *b == 0xff) {
        Some(at) => {
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(&data[..at]),
                URL_SAFE_NO_PAD.encode(&data[at + 1..])
            );
            let signature = fixture.key.sign(message.as_bytes());
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
        }
        None => String::from_utf8_lossy(data).into_owned(),
    };
    let before = unix_now();
    let verdict = fixture.tokens.verify_access(&token);
    let after = unix_now();
    if verdict.is_ok() {
        if let Err(reason) = independent_check(fixture, &token, before, after) {
            panic!("accepted a token it must refuse ({reason}): {token:?}");
        }
    }
});

/// Whether `token` is one the service may accept at some instant between `before` and
/// `after` (Unix seconds), or why not.
fn independent_check(
    fixture: &Fixture,
    token: &str,
    before: u64,
    after: u64,
) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("{} parts", parts.len()));
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| format!("signature: {e}"))?;
    let signature = Signature::from_slice(&signature).map_err(|e| format!("signature: {e}"))?;
    fixture
        .key
        .verifying_key()
        .verify_strict(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "not signed by the ring's key".to_owned())?;
    let json = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let header = json(header)?;
    let claims = json(claims)?;
    if header["alg"] != "EdDSA" || header["kid"] != fixture.kid.as_str() {
        return Err(format!("header {header}"));
    }
    if claims["iss"] != ISSUER || claims["aud"] != AUDIENCE {
        return Err(format!("issuer or audience in {claims}"));
    }
    for name in ["sub", "jti", "sid"] {
        if !claims[name].is_string() {
            return Err(format!("{name} in {claims}"));
        }
    }
    if !claims["roles"]
        .as_array()
        .is_some_and(|roles| roles.iter().all(Value::is_string))
    {
        return Err(format!("roles in {claims}"));
    }
    let number = |name: &str| {
        claims[name]
            .as_f64()
            .ok_or_else(|| format!("{name} in {claims}"))
    };
    let (exp, nbf) = (number("exp")?, number("nbf")?);
    number("iat")?;
    let leeway = LEEWAY_SECS as f64;
    if exp + leeway < before as f64 {
        return Err(format!("expired: {claims}"));
    }
    if nbf > after as f64 + leeway {
        return Err(format!("not yet valid: {claims}"));
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
