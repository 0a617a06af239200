//! `ListUsers` page tokens (user-service `page_token.rs`), as a client can send any
//! `pageToken`.
//!
//! Input: byte 0 = 0 makes a cursor from the rest (8 bytes of create time, then the id) and
//! checks that its token decodes to it and that changing any one character of the token is
//! rejected. Anything else is a token as a client sends it, which must decode only if it is
//! exactly the token this key writes for the cursor it decodes to (no forgery, no second
//! spelling of a real token).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use user_service::page_token::PageTokens;

static TOKENS: LazyLock<PageTokens> =
    LazyLock::new(|| PageTokens::new(b"the fuzz targets' page-token key").expect("a key"));

fuzz_target!(|data: &[u8]| {
    match data {
        [0, cursor @ ..] if cursor.len() >= 8 => {
            // Ids are 36-character UUIDs; longer ones only slow the tampering loop down.
            let (time, id) = cursor.split_at(8);
            let id = &id[..id.len().min(40)];
            let create_time = i64::from_be_bytes(time.try_into().expect("8 bytes"));
            let id = String::from_utf8_lossy(id);
            let token = TOKENS.encode(create_time, &id);
            assert_eq!(TOKENS.decode(&token), Some((create_time, id.into_owned())));
            let alphabet = b"Aw_-";
            for at in 0..token.len() {
                for &to in alphabet {
                    let mut tampered = token.clone().into_bytes();
                    if tampered[at] == to {
                        continue;
                    }
                    tampered[at] = to;
                    let tampered = String::from_utf8(tampered).expect("base64 is ASCII");
                    assert_eq!(TOKENS.decode(&tampered), None, "{tampered:?} was accepted");
                }
            }
        }
        _ => {
            let token = String::from_utf8_lossy(data);
            if let Some((create_time, id)) = TOKENS.decode(&token) {
                assert_eq!(
                    TOKENS.encode(create_time, &id),
                    token,
                    "a forged token was accepted"
                );
            }
        }
    }
});
