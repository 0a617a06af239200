//! The claims of an access token.

use serde::{Deserialize, Serialize};

/// The claims of an access token: `iss`, `aud`, `sub`, `exp`, `nbf`, `iat`, `jti`, `sid`
/// (the session) and `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
