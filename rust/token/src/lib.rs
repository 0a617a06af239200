//! grimOS access tokens as every service checks them: the one verifier, the revocation set
//! and the role table's evaluation, shared by auth-service (which issues the tokens and owns
//! the role table) and user-service (which verifies them itself against the keys, revocations
//! and role table auth-service publishes).
//!
//! One copy of each rule, so that the two services cannot disagree on whether a token is
//! valid, revoked, or allowed something:
//!
//! - [`Verifier`] checks an access token against a [`KeySet`] of Ed25519 public keys by `kid`
//!   (EdDSA only, issuer, audience, `exp` and `nbf` with [`LEEWAY`], sub-second expiry);
//! - [`Revocations`] says whether the token behind some [`AccessClaims`] is revoked;
//! - [`RoleTable`] says what a token's roles grant;
//! - [`cursor`] and [`reached`]: where a revocation stream is.
//!
//! This crate signs nothing, holds no private key, does no I/O and never logs a token.
//! [`proto`] converts to and from the `grimos.auth.v1` messages that carry these values
//! between the services.

mod claims;
mod cursor;
mod keys;
pub mod proto;
mod revocation;
mod roles;
mod verify;

pub use claims::AccessClaims;
pub use cursor::{CURSOR_HEADER, cursor, parse_cursor, reached};
pub use keys::{Jwk, KeyError, KeySet, key_id};
pub use revocation::{Kind, Revocation, Revocations};
pub use roles::RoleTable;
pub use verify::{
    AUDIENCE, ISSUER, LEEWAY, LEEWAY_SECS, MAX_ACCESS_TOKEN_BYTES, Rejected, Verifier, expired,
    since_epoch, unix_now,
};

#[cfg(test)]
mod test_keys;
