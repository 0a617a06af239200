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

    /// How often each replica loads revocations made by the others.
    #[arg(long, env = "AUTH_REVOCATION_SYNC_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub revocation_sync_interval: Duration,

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
}

impl Cli {
    /// The [`Config`] to build auth-service with.
    pub fn into_config(self) -> Config {
        Config {
            tls: self.tls,
            limits: self.limits,
            ..self.config
        }
    }
}

fn parse_secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw.to_owned()))
}

impl Config {
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
            login_max_attempts: 5,
            login_lockout: Duration::from_secs(15 * 60),
            login_slowdown: Duration::from_millis(500),
            hash_concurrency: None,
            revocation_sync_interval: Duration::from_secs(2),
            metrics_listen_addr: None,
            tls: TlsSettings::default(),
            limits: Limits::default(),
        }
    }
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
}
