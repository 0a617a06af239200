//! Which failed calls may be sent again, and when: the retry policy of the one call path.
//!
//! A call is retried, within its own deadline, only when it provably was not processed by
//! auth-service, whatever the rpc:
//!
//! - `connect`: no connection could be made (refused, reset during the handshake, timed out,
//!   a TLS failure): nothing was sent.
//! - `goaway`: the server's HTTP/2 GOAWAY did not include the call's stream (its id is above
//!   the GOAWAY's last stream id, or the stream was to be opened after it): the server says it
//!   never processed it (RFC 9113, section 6.8). A replica that stops gracefully answers this
//!   way to the calls that raced its stop.
//! - `refused_stream`: the server reset the stream with `REFUSED_STREAM` (RFC 9113, section
//!   8.7: "the stream was not processed"), as a connection at its stream limit does.
//! - `not_sent`: the connection closed before the request was handed to it (hyper cancels
//!   such requests; they never reached the socket).
//! - `overload`: `grimos-server`'s connection-limit answer, which carries
//!   [`grimos_server::NOT_PROCESSED_HEADER`]: no application code ran.
//!
//! The idempotent reads (`ValidateToken`, `CheckPermission`, the health check) may in addition
//! be retried after any other `UNAVAILABLE` (`unavailable`): running them twice changes
//! nothing. A call that may have run is never sent again otherwise: a `Login` counts an
//! attempt, a `RefreshToken` rotates (a second one would look like token theft), a
//! `CreateCredential` may have created the credential.
//!
//! At most [`MAX_RETRIES`] retries, after a short backoff ([`backoff`]), and only while the
//! call's deadline leaves time; each is counted in `auth_client_retries_total{rpc,reason}`.
//! The balancer ejects an endpoint that failed a call for the first four reasons (see
//! `balancer`), so the retry goes to another endpoint.

use std::error::Error;
use std::time::Duration;

use tonic::Status;

use super::status::{self, Failure};

/// Retries after the first attempt, at most.
pub(super) const MAX_RETRIES: u32 = 2;

/// Whether running a call twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Idempotency {
    /// A read: may be retried after any `UNAVAILABLE`.
    Read,
    /// May change something: retried only when it provably was not processed.
    Write,
}

/// Why `status` (as the transport or auth-service gave it) may be retried, if it may.
pub(super) fn reason(status: &Status, idempotency: Idempotency) -> Option<&'static str> {
    if status
        .metadata()
        .get(grimos_server::NOT_PROCESSED_HEADER)
        .is_some()
    {
        return Some("overload");
    }
    if let Some(source) = status.source()
        && let Some(reason) = not_processed(source)
    {
        return Some(reason);
    }
    match (idempotency, status::classify(status)) {
        (Idempotency::Read, Failure::Unreachable) => Some("unavailable"),
        _ => None,
    }
}

/// Why the transport error `error` proves that its request was not processed, if it does:
/// its chain of sources holds a connection failure, a GOAWAY that left the stream out, a
/// `REFUSED_STREAM`, or a request hyper never sent.
pub(super) fn not_processed(error: &(dyn Error + 'static)) -> Option<&'static str> {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<tonic::ConnectError>() {
            return Some("connect");
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            // Our own GOAWAY or reset (a protocol error we detected) proves nothing.
            if h2.is_remote() {
                if h2.is_go_away() {
                    return Some("goaway");
                }
                if h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                    return Some("refused_stream");
                }
            }
            return None;
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            // hyper's HTTP/2 client cancels only requests it never handed to the connection
            // ("connection was not ready", "connection closed" while queued).
            return Some("not_sent");
        }
        next = error.source();
    }
    None
}

/// How long to wait before retry number `retry` (1, 2, ...): short against any deadline (the
/// retry goes to another endpoint, the failed one being ejected), and a moment for the one
/// endpoint of a single-URL address to come back.
pub(super) fn backoff(retry: u32) -> Duration {
    Duration::from_millis(10) * 2_u32.saturating_pow(retry.saturating_sub(1).min(4))
}

/// Counts one retry.
pub(super) fn record(rpc: &'static str, reason: &'static str) {
    metrics::counter!("auth_client_retries_total", "rpc" => rpc, "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tonic::Code;

    use super::*;

    /// A status as tonic's client makes it from a transport error.
    fn from_transport(error: impl Error + Send + Sync + 'static) -> Status {
        Status::from_error(Box::new(error))
    }

    #[derive(Debug)]
    struct Wrapped(Box<dyn Error + Send + Sync>);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }
    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_refused_connection_is_retried_whatever_the_rpc() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = from_transport(Wrapped(Box::new(tonic::ConnectError(Box::new(refused)))));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason(&status, Idempotency::Write), Some("connect"));
        assert_eq!(reason(&status, Idempotency::Read), Some("connect"));
    }

    #[test]
    fn a_goaway_or_refused_stream_from_the_server_is_retried_but_not_our_own() {
        // h2's errors cannot be made outside h2 except from a reason (a local reset);
        // the remote ones are tested against a real server in tests/auth_client.rs.
        let local = from_transport(Wrapped(Box::new(h2::Error::from(
            h2::Reason::REFUSED_STREAM,
        ))));
        assert_eq!(reason(&local, Idempotency::Write), None);
    }

    #[test]
    fn a_marked_overload_answer_is_retried_and_an_unmarked_unavailable_only_for_reads() {
        let mut marked = Status::unavailable("the server is at its connection limit");
        marked.metadata_mut().insert(
            grimos_server::NOT_PROCESSED_HEADER,
            "connection-limit".parse().unwrap(),
        );
        assert_eq!(reason(&marked, Idempotency::Write), Some("overload"));

        let plain = Status::unavailable("the database does not answer");
        assert_eq!(reason(&plain, Idempotency::Write), None);
        assert_eq!(reason(&plain, Idempotency::Read), Some("unavailable"));
        // A broken connection after the request was sent: it may have run.
        let broken = from_transport(Wrapped(Box::new(std::io::Error::from(
            std::io::ErrorKind::BrokenPipe,
        ))));
        assert_eq!(reason(&broken, Idempotency::Write), None);
        assert_eq!(reason(&broken, Idempotency::Read), Some("unavailable"));
    }

    #[test]
    fn answers_and_timeouts_are_never_retried() {
        for status in [
            Status::unauthenticated("invalid token"),
            Status::already_exists("email taken"),
            Status::internal("from auth"),
            Status::deadline_exceeded("late"),
            Status::cancelled("Timeout expired"),
        ] {
            assert_eq!(reason(&status, Idempotency::Read), None, "{status:?}");
        }
    }

    #[test]
    fn the_backoff_grows_and_stays_small() {
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(2), Duration::from_millis(20));
        assert!(backoff(100) <= Duration::from_millis(160));
    }
}
