//! The bounds every listening port enforces, as settings with production defaults.
//!
//! One struct, flattened into auth-service's configuration (and through it into
//! user-service's), so both services' ports read the same `GRIMOS_*` variables. The table in
//! `docs/ARCHITECTURE.md` ("Limits") lists each with its default and where it is enforced;
//! keep the two in step.

use std::time::Duration;

/// What one client can hold of a port: connections, streams, header bytes and time.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "server-limits")]
pub struct Limits {
    /// Open connections per port. Beyond it a new connection gets a short answer (HTTP 503 or
    /// gRPC UNAVAILABLE, then close) and is counted in `server_connections_refused_total`.
    #[arg(long, env = "GRIMOS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// How long a client has to send a request's line and headers (HTTP/1.1; it also ends an
    /// HTTP/1.1 connection idle between requests) and to finish a TLS handshake.
    #[arg(long, env = "GRIMOS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a client has to send a whole request body, counted from the request's start.
    /// Late: HTTP/JSON 408, gRPC DEADLINE_EXCEEDED.
    #[arg(long, env = "GRIMOS_BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// A connection with no request in flight this long is closed (HTTP/2: GOAWAY first).
    #[arg(long, env = "GRIMOS_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How long a response may wait for the client to take it (an HTTP/2 flow-control window
    /// left at zero, a socket nobody reads), from its start or its last frame (so a server
    /// stream lives as long as it keeps sending); past it the connection is closed.
    #[arg(long, env = "GRIMOS_SEND_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub send_timeout: Duration,

    /// The longest a request may run, whatever deadline its caller sets (gRPC calls end
    /// earlier at their `grpc-timeout`): DEADLINE_EXCEEDED, or 504 over HTTP/JSON. Also how
    /// long a graceful stop waits for in-flight requests.
    #[arg(long, env = "GRIMOS_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are
    /// refused with REFUSED_STREAM, which clients retry.
    #[arg(
        long,
        env = "GRIMOS_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 200
    )]
    pub http2_max_concurrent_streams: u32,

    /// How often an HTTP/2 connection is pinged to check that the peer is still there.
    #[arg(long, env = "GRIMOS_HTTP2_KEEPALIVE_INTERVAL", default_value = "20s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a ping may go unanswered before the connection is closed.
    #[arg(long, env = "GRIMOS_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// The largest request head: HTTP/1.1 request line and headers, or an HTTP/2 header list
    /// (SETTINGS_MAX_HEADER_LIST_SIZE). Larger: 431.
    #[arg(long, env = "GRIMOS_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// On SIGTERM, how long the port keeps serving while it reports NOT_SERVING (gRPC health;
    /// user-service's `/readyz` 503), so that balancers and probes stop sending work here
    /// before it stops accepting, sends GOAWAY and finishes what is in flight. `0s`: no grace.
    /// Ctrl-C (SIGINT) never waits.
    #[arg(long, env = "GRIMOS_DRAIN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            http2_max_concurrent_streams: 200,
            http2_keepalive_interval: Duration::from_secs(20),
            http2_keepalive_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            drain_grace: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// Refuses values that would switch a bound off or make the server unusable.
    pub fn check(&self) -> anyhow::Result<()> {
        let durations = [
            ("GRIMOS_HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("GRIMOS_BODY_READ_TIMEOUT", self.body_read_timeout),
            ("GRIMOS_IDLE_TIMEOUT", self.idle_timeout),
            ("GRIMOS_SEND_TIMEOUT", self.send_timeout),
            ("GRIMOS_REQUEST_TIMEOUT", self.request_timeout),
            (
                "GRIMOS_HTTP2_KEEPALIVE_INTERVAL",
                self.http2_keepalive_interval,
            ),
            (
                "GRIMOS_HTTP2_KEEPALIVE_TIMEOUT",
                self.http2_keepalive_timeout,
            ),
        ];
        for (name, value) in durations {
            anyhow::ensure!(!value.is_zero(), "{name} must be positive");
        }
        // A drain grace of zero is allowed (no grace); the bound keeps a slip (`5m` for `5s`)
        // from holding every stop for minutes.
        anyhow::ensure!(
            self.drain_grace <= MAX_DRAIN_GRACE,
            "GRIMOS_DRAIN_GRACE must be at most {}",
            humantime::format_duration(MAX_DRAIN_GRACE)
        );
        anyhow::ensure!(
            self.max_connections > 0,
            "GRIMOS_MAX_CONNECTIONS must be positive"
        );
        anyhow::ensure!(
            self.http2_max_concurrent_streams > 0,
            "GRIMOS_HTTP2_MAX_CONCURRENT_STREAMS must be positive"
        );
        anyhow::ensure!(
            (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.max_header_bytes),
            "GRIMOS_MAX_HEADER_BYTES must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"
        );
        Ok(())
    }
}

/// The longest drain grace: a few health-check rounds of any balancer are enough, and an
/// orchestrator kills a replica that takes longer than its own grace period (Kubernetes:
/// 30 s by default).
const MAX_DRAIN_GRACE: Duration = Duration::from_secs(60);
/// hyper's HTTP/1.1 read buffer cannot be smaller.
const MIN_HEADER_BYTES: usize = 8 * 1024;
/// Above this a header flood costs more memory per stream than any client needs.
const MAX_HEADER_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Limits;

    #[derive(Parser)]
    struct Settings {
        #[command(flatten)]
        limits: Limits,
    }

    #[test]
    fn the_command_line_defaults_are_the_documented_defaults() {
        let parsed = Settings::try_parse_from(["server"]).unwrap().limits;
        let documented = Limits::default();
        assert_eq!(format!("{parsed:?}"), format!("{documented:?}"));
        assert_eq!(parsed.max_connections, 1024);
        assert_eq!(parsed.idle_timeout, std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_zero_bound_is_refused() {
        let limits = Limits {
            idle_timeout: std::time::Duration::ZERO,
            ..Limits::default()
        };
        assert!(
            limits
                .check()
                .unwrap_err()
                .to_string()
                .contains("GRIMOS_IDLE_TIMEOUT")
        );
        assert!(Limits::default().check().is_ok());
    }

    #[test]
    fn the_drain_grace_may_be_zero_but_not_minutes() {
        let parsed = Settings::try_parse_from(["server"]).unwrap().limits;
        assert_eq!(parsed.drain_grace, std::time::Duration::from_secs(5));
        let none = Limits {
            drain_grace: std::time::Duration::ZERO,
            ..Limits::default()
        };
        assert!(none.check().is_ok());
        let minutes = Limits {
            drain_grace: std::time::Duration::from_secs(300),
            ..Limits::default()
        };
        let error = minutes.check().unwrap_err().to_string();
        assert!(error.contains("GRIMOS_DRAIN_GRACE"), "{error}");
    }
}
