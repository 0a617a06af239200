//! auth-service settings: environment variables (or flags of the same meaning), with the
//! contract's names and defaults. Only `main` reads the environment ([`Cli`]); tests and the
//! embedded mode of user-service build a [`Config`] value directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use grimos_common::tls::TlsSettings;
use grimos_server::Limits;
use secrecy::SecretString;

use crate::feed::MIN_SYNC_INTERVAL;

/// Everything auth-service can be told.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "auth-service-settings")]
pub struct Config {
    /// Address the gRPC server listens on; port 0 picks a free port.
    #[arg(long, env = "AUTH_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,

    /// Database URL: `sqlite://PATH` (relative to the working directory), `sqlite:///ABS`, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (replicas may share one PostgreSQL database).
    #[arg(
        long,
        env = "AUTH_DATABASE_URL",
        default_value = "sqlite://data/auth.db"
    )]
    pub database_url: String,

    /// PEM file of Ed25519 PKCS#8 keys: the first signs, every one verifies (key rotation).
    /// Generated on first start if missing. Replicas share it.
    #[arg(
        long,
        env = "AUTH_SIGNING_KEY_FILE",
        default_value = "data/auth-signing-key.pem"
    )]
    pub signing_key_file: PathBuf,

    /// Lifetime of an access token.
    #[arg(long, env = "AUTH_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,

    /// Lifetime of a session: a refresh token, however often rotated, stops working this long
    /// after the login it descends from.
    #[arg(long, env = "AUTH_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Duration,

    /// Comma-separated emails that get the `admin` role when their credential is created.
    #[arg(
        long,
        env = "GRIMOS_ADMIN_EMAILS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub admin_emails: Vec<String>,

    /// The secret user-service presents for CreateCredential and DeleteCredential. Unset:
    /// those calls are refused.
    #[arg(long, env = "GRIMOS_SERVICE_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub service_token: Option<SecretString>,

    /// The service token read from this file instead (`GRIMOS_SERVICE_TOKEN_FILE`; one trailing
    /// newline is not part of it), as Compose and Kubernetes mount secrets. Read at start; an
    /// unreadable or empty file, or both settings at once, fail the start. Each binary moves
    /// it into the service token once it has read its settings.
    #[arg(
        long = "service-token-file",
        env = "GRIMOS_SERVICE_TOKEN_FILE",
        value_name = "PATH",
        value_parser = read_secret_file,
        conflicts_with = "service_token"
    )]
    pub service_token_from_file: Option<SecretString>,

    /// Login attempts allowed per email within `login_lockout`; further ones are refused with
    /// RESOURCE_EXHAUSTED until the window ends. A successful login resets the count.
    #[arg(long, env = "AUTH_LOGIN_MAX_ATTEMPTS", default_value_t = 5)]
    pub login_max_attempts: u32,

    /// The throttling window, counted from an email's first attempt.
    #[arg(long, env = "AUTH_LOGIN_LOCKOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    pub login_lockout: Duration,

    /// Extra delay per attempt once an email has used half of its attempts.
    #[arg(long, env = "AUTH_LOGIN_SLOWDOWN", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub login_slowdown: Duration,

    /// Password hashes computed at once (default: one less than the CPU count, at least
    /// one), so that a burst of logins leaves a core for token validation.
    #[arg(long, env = "AUTH_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,

    /// How often each replica reads the revocations made by the others, whatever else
    /// happens: the safety net behind PostgreSQL's notification of each revocation and
    /// SQLite's `data_version` (asked every 25 ms).
    /// At least 10 ms.
    #[arg(long, env = "AUTH_REVOCATION_SYNC_INTERVAL", default_value = "2s", value_parser = parse_sync_interval)]
    pub revocation_sync_interval: Duration,

    /// How often a WatchRevocations stream with nothing to send sends a heartbeat, so that a
    /// verifier tells a silent stream from a broken one within a second.
    #[arg(long, env = "AUTH_REVOCATION_HEARTBEAT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub revocation_heartbeat: Duration,

    /// How many batches of revocations a WatchRevocations stream may fall behind (its client
    /// reading too slowly) before it is sent the whole set again.
    #[arg(long, env = "AUTH_REVOCATION_WATCH_BACKLOG", default_value_t = 1024)]
    pub revocation_watch_backlog: usize,

    /// WatchRevocations streams served at once (one per verifying service replica and auth
    /// endpoint); more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "AUTH_MAX_REVOCATION_WATCHERS", default_value_t = 256)]
    pub max_revocation_watchers: usize,

    /// Address of the metrics port: `GET /metrics` (Prometheus text) over plain HTTP/1.1,
    /// apart from the gRPC port (which speaks HTTP/2 only). Unset: no metrics port (embedded
    /// in user-service, its metrics are on user-service's `/metrics`).
    #[arg(long, env = "AUTH_METRICS_LISTEN_ADDR")]
    pub metrics_listen_addr: Option<SocketAddr>,

    /// TLS files (`GRIMOS_TLS_*`): a setting of the process, not read here (see [`Cli`]).
    #[arg(skip)]
    pub tls: TlsSettings,

    /// Bounds on what clients can hold of the port (`GRIMOS_*` connections, streams, headers,
    /// time): a setting of the process, not read here (see [`Cli`]).
    #[arg(skip)]
    pub limits: Limits,
}

/// The auth-service binary's command line: [`Config`] and the settings of the process that
/// serves it (`GRIMOS_TLS_*` and the limits). user-service reads the same process settings
/// once for its own port and hands them to the auth-service it embeds, so they are not part
/// of [`Config`]'s command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "auth-service",
    version,
    about = "grimOS auth-service: credentials, roles and tokens over gRPC"
)]
pub struct Cli {
    /// auth-service's own settings.
    #[command(flatten)]
    pub config: Config,

    /// TLS files.
    #[command(flatten)]
    pub tls: TlsSettings,

    /// Bounds on what clients can hold of the port.
    #[command(flatten)]
    pub limits: Limits,

    /// Ask the gRPC health of the auth-service at `AUTH_LISTEN_ADDR` (plaintext; `0.0.0.0`
    /// is asked on loopback) and exit: 0 when SERVING, 1 otherwise. A health check for
    /// containers without a shell.
    #[arg(long)]
    pub health_check: bool,
}

impl Cli {
    /// The [`Config`] to build auth-service with.
    pub fn into_config(self) -> Config {
        Config {
            tls: self.tls,
            limits: self.limits,
            ..self.config.with_service_token_file()
        }
    }
}

fn parse_secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw.to_owned()))
}

/// A secret from a file: its text without one trailing newline (`\n` or `\r\n`, which
/// `echo` and editors add); an unreadable or empty file is an error naming the path.
fn read_secret_file(path: &str) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let secret = text.strip_suffix('\n').map_or(text.as_str(), |line| {
        line.strip_suffix('\r').unwrap_or(line)
    });
    if secret.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(SecretString::from(secret.to_owned()))
}

impl Config {
    /// This configuration with the token of `GRIMOS_SERVICE_TOKEN_FILE`, if given, as the
    /// service token (the two settings exclude each other): what each binary does once after
    /// reading its settings.
    pub fn with_service_token_file(mut self) -> Self {
        if let Some(token) = self.service_token_from_file.take() {
            self.service_token = Some(token);
        }
        self
    }

    /// The defaults, with the database and key file in `data_dir` and the listener on
    /// `listen_addr`: what tests and the embedded mode start from.
    pub fn with_data_dir(data_dir: &Path, listen_addr: SocketAddr) -> Self {
        Self {
            listen_addr,
            database_url: format!("sqlite://{}", data_dir.join("auth.db").display()),
            signing_key_file: data_dir.join("auth-signing-key.pem"),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            admin_emails: Vec::new(),
            service_token: None,
            service_token_from_file: None,
            login_max_attempts: 5,
            login_lockout: Duration::from_secs(15 * 60),
            login_slowdown: Duration::from_millis(500),
            hash_concurrency: None,
            revocation_sync_interval: Duration::from_secs(2),
            revocation_heartbeat: Duration::from_millis(250),
            revocation_watch_backlog: 1024,
            max_revocation_watchers: 256,
            metrics_listen_addr: None,
            tls: TlsSettings::default(),
            limits: Limits::default(),
        }
    }
}

/// `AUTH_REVOCATION_SYNC_INTERVAL`: a duration of at least [`MIN_SYNC_INTERVAL`].
fn parse_sync_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if interval < MIN_SYNC_INTERVAL {
        return Err(format!("must be at least {MIN_SYNC_INTERVAL:?}"));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn the_tls_settings_parse_alone_or_together_but_a_certificate_needs_its_key() {
        let parse = |args: &[&str]| {
            super::Cli::command()
                .try_get_matches_from(std::iter::once("auth-service").chain(args.iter().copied()))
        };
        // A CA alone parses (user-service calls auth-service with it); serving refuses it.
        assert!(parse(&["--tls-ca", "ca.pem"]).is_ok());
        assert!(
            parse(&[
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--tls-ca",
                "ca.pem"
            ])
            .is_ok()
        );
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["--tls-key", "k.pem"]).is_err());
    }

    fn parse(args: &[&str]) -> Result<super::Config, clap::Error> {
        use clap::Parser as _;
        super::Cli::try_parse_from(std::iter::once("auth-service").chain(args.iter().copied()))
            .map(super::Cli::into_config)
    }

    #[test]
    fn the_service_token_file_gives_the_token_without_its_trailing_newline() {
        use secrecy::ExposeSecret as _;
        let dir = tempfile::tempdir().unwrap();
        for (content, token) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("a b\n\n", "a b\n"),
        ] {
            let path = dir.path().join("token");
            std::fs::write(&path, content).unwrap();
            let config = parse(&["--service-token-file", path.to_str().unwrap()]).unwrap();
            assert_eq!(
                config.service_token.unwrap().expose_secret(),
                token,
                "{content:?}"
            );
            assert!(config.service_token_from_file.is_none());
        }
        let config = parse(&["--service-token", "direct"]).unwrap();
        assert_eq!(config.service_token.unwrap().expose_secret(), "direct");
    }

    #[test]
    fn a_missing_or_empty_token_file_or_both_settings_fail_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = parse(&["--service-token-file", missing.to_str().unwrap()]).unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
        assert!(
            error.to_string().contains(missing.to_str().unwrap()),
            "{error}"
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let error = parse(&["--service-token-file", empty.to_str().unwrap()]).unwrap_err();
        assert!(error.to_string().contains("is empty"), "{error}");

        let file = dir.path().join("token");
        std::fs::write(&file, "from-file").unwrap();
        let both = parse(&[
            "--service-token",
            "direct",
            "--service-token-file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(
            both.unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn the_revocation_sync_interval_has_a_floor() {
        let config = parse(&["--revocation-sync-interval", "10ms"]).unwrap();
        assert_eq!(
            config.revocation_sync_interval,
            std::time::Duration::from_millis(10)
        );
        let error = parse(&["--revocation-sync-interval", "5ms"]).unwrap_err();
        assert!(
            error.to_string().contains("must be at least 10ms"),
            "{error}"
        );
    }
}
