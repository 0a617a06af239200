//! user-service settings: environment variables (or flags of the same meaning) with the
//! contract's names and defaults. The settings of the process (`GRIMOS_TLS_*` and the
//! limits) are read once, for user-service's port and the embedded auth-service's; the
//! embedded auth-service's own settings (`AUTH_*`) are [`auth_service::Config`], flattened
//! in. Only `main` reads the environment.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use grimos_common::tls::TlsSettings;
use grimos_server::Limits;

/// Everything user-service can be told.
#[derive(Debug, Clone, Parser)]
#[group(id = "user-service-settings")]
#[command(
    name = "user-service",
    version,
    about = "grimOS user-service: profiles over gRPC, gRPC-Web and HTTP/JSON"
)]
pub struct Config {
    /// Address for HTTP/JSON, gRPC and gRPC-Web (one port); port 0 picks a free port.
    #[arg(long, env = "USER_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub user_listen_addr: SocketAddr,

    /// Database URL: `sqlite://PATH` (relative to the working directory), `sqlite:///ABS`, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (`postgresql://` too; the database must exist,
    /// its tables are created at start).
    #[arg(
        long,
        env = "USER_DATABASE_URL",
        default_value = "sqlite://data/user.db"
    )]
    pub user_database_url: String,

    /// Where AuthService is: `http://host:port` or `https://host:port`, a comma-separated list
    /// (load-balanced), or `dns:///name:port` (re-resolved). TLS: `https://` needs
    /// `GRIMOS_TLS_CA`, the CA trusted for auth-service's certificate, and `dns:///` uses TLS
    /// whenever it is set (`http://` then is refused); `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY`,
    /// if set, are presented as the client certificate (mutual TLS). Unset: an embedded
    /// auth-service is started: it serves `AUTH_LISTEN_ADDR` for other clients (over TLS when
    /// TLS is set), and user-service calls it in-process.
    #[arg(long, env = "AUTH_SERVICE_ADDRESS")]
    pub auth_service_address: Option<String>,

    /// Deadline of every call to auth-service.
    #[arg(long, env = "AUTH_CLIENT_DEADLINE", default_value = "2s", value_parser = humantime::parse_duration)]
    pub auth_deadline: Duration,

    /// How often the client checks the health of each auth-service endpoint when it balances
    /// over several (a list or a `dns:///` name); one that does not answer SERVING leaves the
    /// rotation until it does.
    #[arg(long, env = "AUTH_HEALTH_CHECK_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub auth_health_check_interval: Duration,

    /// How often a `dns:///` `AUTH_SERVICE_ADDRESS` is resolved again, so that replicas added
    /// or removed under the name are followed.
    #[arg(long, env = "AUTH_DNS_REFRESH", default_value = "5s", value_parser = humantime::parse_duration)]
    pub auth_dns_refresh: Duration,

    /// How long an answer of auth-service's `ValidateToken` may be reused for the same token
    /// (never past the token's expiry); `0s` asks auth-service on every request. Revocations
    /// made through this user-service (logout, `RevokeToken`, `DeleteUser`) take effect here at
    /// once; revocations made elsewhere within this time.
    #[arg(long, env = "AUTH_VALIDATION_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub validation_cache_ttl: Duration,

    /// Verify access tokens here, against the keys and role table auth-service publishes,
    /// refusing revoked ones as auth-service's `WatchRevocations` stream reports them;
    /// `false`: ask auth-service `ValidateToken` on every request (with the validation
    /// cache). While the stream is down or silent past `AUTH_REVOCATION_SILENCE`, requests
    /// are validated by auth-service either way.
    #[arg(long, env = "AUTH_LOCAL_VERIFICATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub auth_local_verification: bool,

    /// How long the revocation stream may be silent before local verification is not trusted
    /// (every request then goes to `ValidateToken` until the stream is back). Unset: four of
    /// the heartbeat intervals auth-service announces, at most 1 s.
    #[arg(long, env = "AUTH_REVOCATION_SILENCE", value_parser = humantime::parse_duration)]
    pub auth_revocation_silence: Option<Duration>,

    /// The least time between two fetches of auth-service's keys for tokens naming a key id
    /// this user-service does not know; such tokens go to `ValidateToken` meanwhile.
    #[arg(long, env = "AUTH_KEY_FETCH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub auth_key_fetch_interval: Duration,

    /// Origins allowed to call from browsers (gRPC-Web, HTTP/JSON), comma-separated; `*` for
    /// any. Empty: no CORS headers.
    #[arg(
        long,
        env = "USER_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_allowed_origins: Vec<String>,

    /// How often unfinished sign-ups and deletions are reconciled.
    #[arg(long, env = "USER_RECONCILE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,

    /// TLS files (`GRIMOS_TLS_*`): what user-service serves with and presents to an external
    /// auth-service; the embedded auth-service serves its own port with them too.
    #[command(flatten)]
    pub tls: TlsSettings,

    /// Bounds on what clients can hold of a port (`GRIMOS_*`): user-service's, and the
    /// embedded auth-service's.
    #[command(flatten)]
    pub limits: Limits,

    /// The embedded auth-service's own settings (`AUTH_*`, `GRIMOS_ADMIN_EMAILS`,
    /// `GRIMOS_SERVICE_TOKEN`).
    #[command(flatten)]
    pub auth: auth_service::Config,
}

/// The user-service binary's command line: [`Config`], and `--health-check`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "user-service",
    version,
    about = "grimOS user-service: profiles over gRPC, gRPC-Web and HTTP/JSON"
)]
pub struct Cli {
    /// user-service's settings.
    #[command(flatten)]
    pub config: Config,

    /// Ask the gRPC health of the user-service at `USER_LISTEN_ADDR` (plaintext; `0.0.0.0` is
    /// asked on loopback) and exit: 0 when SERVING (its database and auth-service answer), 1
    /// otherwise. A health check for containers without a shell.
    #[arg(long)]
    pub health_check: bool,
}

impl Cli {
    /// The [`Config`] to build user-service with: the service token of
    /// `GRIMOS_SERVICE_TOKEN_FILE`, if given, moved into place.
    pub fn into_config(self) -> Config {
        Config {
            auth: self.config.auth.clone().with_service_token_file(),
            ..self.config
        }
    }
}

impl Config {
    /// The defaults, with both databases and the key file in `data_dir` and both listeners on
    /// port 0 of loopback: what tests start from.
    pub fn with_data_dir(data_dir: &Path) -> Self {
        let loopback: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            user_listen_addr: loopback,
            user_database_url: format!("sqlite://{}", data_dir.join("user.db").display()),
            auth_service_address: None,
            auth_deadline: Duration::from_secs(2),
            auth_health_check_interval: crate::auth_client::DEFAULT_HEALTH_CHECK_INTERVAL,
            auth_dns_refresh: crate::auth_client::DEFAULT_DNS_REFRESH,
            validation_cache_ttl: Duration::from_secs(1),
            auth_local_verification: true,
            auth_revocation_silence: None,
            auth_key_fetch_interval: crate::auth_client::DEFAULT_KEY_FETCH_INTERVAL,
            cors_allowed_origins: Vec::new(),
            reconcile_interval: Duration::from_secs(30),
            tls: TlsSettings::default(),
            limits: Limits::default(),
            auth: auth_service::Config::with_data_dir(data_dir, loopback),
        }
    }

    /// The settings of local verification, when it is on.
    pub fn local_verification(&self) -> Option<crate::auth_client::LocalSettings> {
        self.auth_local_verification
            .then_some(crate::auth_client::LocalSettings {
                silence: self.auth_revocation_silence,
                key_fetch_interval: self.auth_key_fetch_interval,
            })
    }

    /// The configuration of the embedded auth-service: its own settings, with this process's
    /// TLS files and limits.
    pub fn embedded_auth(&self) -> auth_service::Config {
        auth_service::Config {
            tls: self.tls.clone(),
            limits: self.limits.clone(),
            ..self.auth.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Config::command().debug_assert();
    }

    #[test]
    fn the_balancer_settings_default_to_the_clients_defaults() {
        use clap::Parser as _;
        let parsed = super::Config::try_parse_from(["user-service"]).unwrap();
        assert_eq!(
            parsed.auth_health_check_interval,
            crate::auth_client::DEFAULT_HEALTH_CHECK_INTERVAL
        );
        assert_eq!(
            parsed.auth_dns_refresh,
            crate::auth_client::DEFAULT_DNS_REFRESH
        );
    }

    #[test]
    fn a_ca_alone_is_accepted_to_call_auth_service_over_tls() {
        let parsed = super::Config::command().try_get_matches_from([
            "user-service",
            "--auth-service-address",
            "https://auth:50051",
            "--tls-ca",
            "ca.pem",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn the_binary_takes_the_service_token_from_a_file_for_its_auth_client() {
        use clap::Parser as _;
        use secrecy::ExposeSecret as _;
        super::Cli::command().debug_assert();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let cli = super::Cli::try_parse_from([
            "user-service",
            "--health-check",
            "--service-token-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        assert!(cli.health_check);
        let config = cli.into_config();
        assert_eq!(config.auth.service_token.unwrap().expose_secret(), "s3cret");
    }

    #[test]
    fn a_certificate_still_needs_its_key() {
        let parsed = super::Config::command().try_get_matches_from([
            "user-service",
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "c.pem",
        ]);
        assert!(parsed.is_err());
    }
}
