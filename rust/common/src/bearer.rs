//! Bearer tokens in `authorization` headers and metadata.

/// The longest token either service accepts, in bytes. Access tokens (Ed25519 JWTs with a
/// user id, roles and a session id) are about 400 bytes and refresh tokens 47; anything much
/// longer is refused as invalid without further work.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The token of an `authorization: Bearer <token>` header value: the scheme matched without
/// regard to case (RFC 7235), the token trimmed; `None` for another scheme or no token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_any_case_of_the_scheme() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
