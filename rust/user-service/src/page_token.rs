//! `ListUsers` page tokens: the keyset cursor (create time and id of the last profile served),
//! signed so that a client can neither forge one nor alter one it was given.
//!
//! A token is base64url (no padding) of the create time (8 bytes, big-endian), the id's UTF-8
//! bytes and the first 16 bytes of an HMAC-SHA256 over both. The key is the database's page
//! key, so every replica reads every replica's tokens. Decoding never panics and accepts
//! exactly the tokens [`PageTokens::encode`] writes: anything else is `None`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::InvalidLength;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of HMAC kept in a page token.
const MAC_BYTES: usize = 16;
/// Bytes of the create time at the start of a token.
const TIME_BYTES: usize = 8;

/// Writes and reads page tokens with one key.
#[derive(Clone)]
pub struct PageTokens {
    mac: Hmac<Sha256>,
}

impl PageTokens {
    /// Page tokens signed with `key` (any length; the store keeps 32 random bytes).
    pub fn new(key: &[u8]) -> Result<Self, InvalidLength> {
        Ok(Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key)?,
        })
    }

    /// The token for the cursor after the profile (`create_time`, `id`).
    pub fn encode(&self, create_time: i64, id: &str) -> String {
        let mut payload = create_time.to_be_bytes().to_vec();
        payload.extend_from_slice(id.as_bytes());
        let mut mac = self.mac.clone();
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes()[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The cursor in `token`, or `None` if this key did not write exactly that token.
    pub fn decode(&self, token: &str) -> Option<(i64, String)> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() < TIME_BYTES + MAC_BYTES {
            return None;
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        let (time, id) = payload.split_at(TIME_BYTES);
        let create_time = i64::from_be_bytes(time.try_into().ok()?);
        Some((create_time, String::from_utf8(id.to_vec()).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(b"a page key of thirty-two bytes!!").unwrap()
    }

    proptest! {
        #[test]
        fn a_token_decodes_to_the_cursor_it_was_made_from(create_time: i64, id in ".*") {
            let tokens = tokens();
            let token = tokens.encode(create_time, &id);
            prop_assert_eq!(tokens.decode(&token), Some((create_time, id)));
        }

        #[test]
        fn a_changed_character_is_rejected(
            create_time: i64,
            id in ".{0,40}",
            at: prop::sample::Index,
            to in "[A-Za-z0-9_=+/.-]",
        ) {
            let tokens = tokens();
            let token = tokens.encode(create_time, &id);
            let mut chars: Vec<char> = token.chars().collect();
            let at = at.index(chars.len());
            let to = to.chars().next().unwrap();
            prop_assume!(chars[at] != to);
            chars[at] = to;
            let tampered: String = chars.into_iter().collect();
            prop_assert_eq!(tokens.decode(&tampered), None);
        }

        #[test]
        fn a_changed_bit_is_rejected(
            create_time: i64,
            id in ".{0,40}",
            at: prop::sample::Index,
            bit in 0u8..8,
        ) {
            let tokens = tokens();
            let mut bytes = URL_SAFE_NO_PAD.decode(tokens.encode(create_time, &id)).unwrap();
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
            prop_assert_eq!(tokens.decode(&URL_SAFE_NO_PAD.encode(bytes)), None);
        }

        #[test]
        fn a_shortened_or_extended_token_is_rejected(
            create_time: i64,
            id in ".{0,40}",
            cut in 1usize..30,
            extra in "[A-Za-z0-9_-]{1,8}",
        ) {
            let tokens = tokens();
            let token = tokens.encode(create_time, &id);
            let short = &token[..token.len().saturating_sub(cut)];
            prop_assert_eq!(tokens.decode(short), None);
            prop_assert_eq!(tokens.decode(&format!("{token}{extra}")), None);
            prop_assert_eq!(tokens.decode(&format!("{extra}{token}")), None);
        }

        #[test]
        fn another_key_s_token_is_rejected(create_time: i64, id in ".{0,40}") {
            let other = PageTokens::new(b"another key").unwrap();
            prop_assert_eq!(tokens().decode(&other.encode(create_time, &id)), None);
        }

        #[test]
        fn arbitrary_text_is_never_a_token(text in ".{0,80}") {
            prop_assert_eq!(tokens().decode(&text), None);
        }
    }
}
