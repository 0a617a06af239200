//! Shared pieces of the benchmark binaries: the fixed user the floor servers answer with,
//! and the loopback-only address parsing.
//!
//! The floor servers exist to measure what the frameworks (tonic, axum, hyper, prost,
//! serde_json) cost with the services' message shapes and sizes and nothing else, so the
//! harness (`bench/harness/`) can report each workload as a ratio to its floor. The fixed
//! values below mirror what the harness's bench user looks like in the real services (a UUID
//! v7 id, the same email and display name, the `user` role and its permissions, timestamps
//! with microseconds), so both sides send messages of the same size; the harness prints both
//! sizes.

use std::net::SocketAddr;

use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::user::v1 as user_pb;
use grimos_proto::wkt::Timestamp;

/// The bench user's id shape: a UUID v7 in its 36-character text form.
pub const USER_ID: &str = "019a0b7c-3d4e-7f01-8a2b-3c4d5e6f7a8b";
/// The bench user's email; the harness (`bench/harness/common.py`) signs up the real bench
/// user with the same one.
pub const EMAIL: &str = "bench-user@example.com";
/// The bench user's display name; the harness uses the same one.
pub const DISPLAY_NAME: &str = "Bench User";
/// The roles of an ordinary user.
pub const ROLES: &[&str] = &["user"];
/// A session id's shape: 128 random bits, base64url (22 characters), as auth-service makes.
pub const SESSION_ID: &str = "q0W2xEVUh4bo7iJjnDkXlA";
/// The permissions the `user` role grants (auth-service's role table).
pub const PERMISSIONS: &[&str] = &["users.delete.self", "users.read.self", "users.update.self"];

/// A time with microseconds, like user-service's stored times.
fn timestamp(seconds: i64, micros: i32) -> Timestamp {
    Timestamp {
        seconds,
        nanos: micros * 1000,
    }
}

/// The fixed `ValidateTokenResponse` of the floor (the real one for an ordinary user).
pub fn validate_token_response() -> auth_pb::ValidateTokenResponse {
    auth_pb::ValidateTokenResponse {
        user_id: USER_ID.to_owned(),
        roles: ROLES.iter().map(|r| (*r).to_owned()).collect(),
        expire_time: Some(timestamp(1_893_456_000, 0)),
        permissions: PERMISSIONS.iter().map(|p| (*p).to_owned()).collect(),
        session_id: SESSION_ID.to_owned(),
    }
}

/// The fixed user of the floor. Its sub-second part is large (987654 µs), as most real ones
/// are, so the `nanos` varints take as many bytes as in user-service's replies.
pub fn user() -> user_pb::User {
    user_pb::User {
        id: USER_ID.to_owned(),
        email: EMAIL.to_owned(),
        display_name: DISPLAY_NAME.to_owned(),
        roles: ROLES.iter().map(|r| (*r).to_owned()).collect(),
        create_time: Some(timestamp(1_767_225_600, 987_654)),
        update_time: Some(timestamp(1_767_225_600, 987_654)),
    }
}

/// The listen address: the first argument, else the environment variable `env`, else
/// `127.0.0.1:0` (a free port). Anything but a loopback address is refused: these servers
/// are for benchmarking on one machine only.
pub fn listen_addr(env: &str) -> Result<SocketAddr, String> {
    let raw = std::env::args()
        .nth(1)
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let addr: SocketAddr = raw
        .parse()
        .map_err(|e| format!("invalid listen address {raw:?}: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr}: floor servers listen on loopback only"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_user_is_the_services_and_the_harness_bench_user() {
        // The permissions auth-service's role table grants an ordinary user.
        assert_eq!(PERMISSIONS, auth_service::roles::permissions(ROLES));
        assert_eq!(ROLES, [auth_service::roles::USER]);
        // The user the harness (bench/harness/) signs up, with the same email and display name.
        let harness = include_str!("../../../bench/harness/common.py");
        for line in [
            format!("BENCH_EMAIL = \"{EMAIL}\""),
            format!("BENCH_NAME = \"{DISPLAY_NAME}\""),
        ] {
            assert!(
                harness.contains(&line),
                "bench/harness/common.py lacks {line:?}"
            );
        }
        // A UUID v7 in its text form, like user-service's ids.
        let parts: Vec<usize> = USER_ID.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(USER_ID.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(USER_ID.as_bytes()[14], b'7', "version 7");
    }
}
