//! The signing key file reader: auth-service's `KeyRing::from_pem` on any text, as an
//! operator's `AUTH_SIGNING_KEY_FILE` may hold anything.
//!
//! Input: the file's text.
//!
//! Must hold: no panic; a key ring is read only from a file with a private key; its signing
//! key is among its verifying keys; and tokens it signs verify with it (so a file that starts
//! the service is a file that works).

#![no_main]

use std::time::Duration;

use auth_service::keys::KeyRing;
use auth_service::tokens::Tokens;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ring) = KeyRing::from_pem(text) else {
        return;
    };
    assert!(text.contains("-----BEGIN PRIVATE KEY-----"));
    assert!(ring.verifying.contains(&ring.signing_kid));
    let tokens = Tokens::new(ring, Duration::from_secs(60));
    let (token, _) = tokens
        .issue_access("u1", "s1", &["user".to_owned()])
        .expect("an accepted key signs");
    let claims = tokens.verify_access(&token).expect("its tokens verify");
    assert_eq!(claims.sub, "u1");
});
