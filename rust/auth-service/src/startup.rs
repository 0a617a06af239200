//! Building and running auth-service: the one builder that `main`, the tests and
//! user-service's embedded mode all use.
//!
//! [`App::build`] opens the database and runs migrations, loads (or creates) the signing
//! key, loads revocations and binds the listener, so `local_addr` is known before serving
//! (port 0 works) and every failure surfaces at start-up. [`App::run_until_stopped`] serves
//! until the shutdown future resolves, drains if asked to, then lets in-flight calls finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grimos_common::shutdown::Stop;
use grimos_proto::auth::v1::auth_service_server::AuthServiceServer;
use grimos_server::health::{self, Draining};
use grimos_server::tls::ClientCertificates;
use grimos_server::{DeadlineLayer, Limits};
use grimos_token::Revocations;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tonic::server::NamedService;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use crate::api::AuthApi;
use crate::config::Config;
use crate::feed::{RevocationFeed, WatchSettings};
use crate::keys::KeyRing;
use crate::passwords::Passwords;
use crate::service::{Auth, AuthParts, Throttle};
use crate::store::Store;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::tokens::{self, Tokens};

/// Requests are small; this caps what a client can make the server buffer.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Expired revocations, sessions and login windows are purged this often.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A built auth-service, bound to its address and ready to serve.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// Every gRPC service of the port, with its layers: served on `listener`, and callable
    /// in-process ([`App::in_process`]).
    router: axum::Router,
    health: HealthReporter,
    /// The metrics port, when `AUTH_METRICS_LISTEN_ADDR` is set.
    metrics_listener: Option<TcpListener>,
    store: Arc<dyn Store>,
    feed: Arc<RevocationFeed>,
    /// Listens for other replicas' revocations (PostgreSQL), once it runs.
    revocation_listener: Option<crate::store::Task>,
    /// Turned true when the server stops: the metrics port and the revocation streams end.
    stop: tokio::sync::watch::Sender<bool>,
    sync_interval: Duration,
    login_window: Duration,
    tls: Option<Arc<ServerConfig>>,
    /// Whether clients must present a certificate (`GRIMOS_TLS_CA` with TLS on).
    mutual_tls: bool,
    limits: Limits,
    /// `db_pool_*` read at every scrape while the app lives.
    _pool_gauges: grimos_server::metrics::Sampling,
}

impl App {
    /// Prepares everything that can fail before serving, listening on `AUTH_LISTEN_ADDR`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen_addr))?;
        Self::build_on(config, listener).await
    }

    /// [`App::build`] on a listener the caller has bound (`config.listen_addr` is not used):
    /// for a supervisor or a test that owns the socket.
    pub async fn build_on(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        grimos_server::metrics::install("auth", env!("CARGO_PKG_VERSION"));
        grimos_server::metrics::describe(&[
            (
                "auth_password_hash_queue_depth",
                "Argon2 hashes waiting or running",
            ),
            (
                "auth_password_hash_rejections_total",
                "Hashes refused because the queue was full",
            ),
            (
                "auth_login_throttled_total",
                "Logins refused for too many failed attempts",
            ),
            (
                "auth_revocations",
                "Revoked sessions and tokens in force in this replica",
            ),
            (
                "auth_revocation_last_sync_timestamp_seconds",
                "When this replica last loaded the revocations of the others",
            ),
            (
                "auth_verified_token_cache_lookups_total",
                "Lookups in the cache of verified access tokens, by result (hit, miss)",
            ),
            (
                "auth_revocation_watchers",
                "WatchRevocations streams open on this replica",
            ),
            (
                "auth_revocation_watch_resets_total",
                "WatchRevocations messages carrying the whole set, by reason (start, behind)",
            ),
            (
                "auth_revocation_listening",
                "1 while this replica listens for other replicas' revocations (PostgreSQL)",
            ),
        ]);
        // The counters without labels exist from the start, at zero: a rate over them is then
        // 0 until the first refusal, not a missing series.
        metrics::counter!("auth_login_throttled_total").increment(0);
        metrics::counter!("auth_password_hash_rejections_total").increment(0);
        let tls = tls_config(&config)?;
        let store: Arc<dyn Store> = if grimos_common::db::is_postgres_url(&config.database_url) {
            Arc::new(PostgresStore::open(&config.database_url).await?)
        } else {
            Arc::new(SqliteStore::open(&config.database_url).await?)
        };
        let keys = KeyRing::load_or_create(&config.signing_key_file)?;
        let concurrency = config.hash_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        });
        let passwords = Passwords::new(concurrency).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let settings = WatchSettings {
            heartbeat: config.revocation_heartbeat,
            backlog: config.revocation_watch_backlog,
            max_watchers: config.max_revocation_watchers,
        };
        let feed = RevocationFeed::new(
            store.clone(),
            Arc::new(Revocations::default()),
            settings,
            stopped,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the database's identity: {e}"))?;
        feed.sync()
            .await
            .map_err(|e| anyhow::anyhow!("cannot load revocations: {e}"))?;
        let revocation_listener = feed
            .listen()
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for revocations: {e}"))?;
        let feed = Arc::new(feed);
        if config.service_token.is_none() {
            tracing::warn!(
                "GRIMOS_SERVICE_TOKEN is not set: CreateCredential and DeleteCredential will be refused"
            );
        }

        let auth = Arc::new(Auth::new(AuthParts {
            store: store.clone(),
            passwords,
            tokens: Tokens::new(keys, config.access_token_ttl),
            feed: feed.clone(),
            throttle: Throttle {
                max_attempts: config.login_max_attempts,
                window: config.login_lockout,
                slowdown: config.login_slowdown,
            },
            refresh_ttl: config.refresh_token_ttl,
            admin_emails: config.admin_emails.clone(),
            service_token: config.service_token.clone(),
        }));

        let (health, health_service) = tonic_health::server::health_reporter();
        let router = router(&auth, health_service, config.limits.request_timeout)?;
        let metrics_listener =
            match config.metrics_listen_addr {
                Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                    format!("AUTH_METRICS_LISTEN_ADDR: cannot listen on {addr}")
                })?),
                None => None,
            };
        let local_addr = listener.local_addr()?;
        let pools = store.clone();
        Ok(Self {
            listener,
            local_addr,
            router,
            health,
            metrics_listener,
            _pool_gauges: grimos_server::metrics::sample_pools("auth", move || pools.pools()),
            store,
            feed,
            revocation_listener,
            stop,
            sync_interval: config.revocation_sync_interval,
            login_window: config.login_lockout,
            mutual_tls: tls.is_some() && config.tls.ca.is_some(),
            tls,
            limits: config.limits,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics port, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The gRPC services of this auth-service as a tower service, for a client in the same
    /// process (user-service's embedded mode): a generated client wrapped around it calls
    /// them with the gRPC codec, status mapping, deadline and tracing of the port, but no
    /// socket. Its health follows the database once [`App::run_until_stopped`] runs.
    pub fn in_process(&self) -> axum::Router {
        self.router.clone()
    }

    /// Serves until `shutdown` resolves, then stops as [`grimos_server::health`] says: for
    /// [`Stop::Drain`] (SIGTERM) NOT_SERVING for `GRIMOS_DRAIN_GRACE` while still serving,
    /// then (at once for [`Stop::Now`], which a future of `()` means) no new connections,
    /// GOAWAY, and in-flight calls finish before this returns.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future + Send + 'static,
        F::Output: Into<Stop>,
    {
        // Health follows the database: NOT_SERVING while it does not answer, so balancers
        // and probes stop sending work here until it does.
        let store = self.store.clone();
        let health = health::keep_health(
            self.health.clone(),
            "auth",
            health_names(),
            Draining::default(),
            move || {
                let store = store.clone();
                async move {
                    let answer = store.ping().await;
                    grimos_server::metrics::database_up("auth", answer.is_ok());
                    answer.map_err(|error| format!("the database does not answer: {error}"))
                }
            },
        )
        .await;

        let sync = tokio::spawn(sync_revocations(self.feed.clone(), self.sync_interval));
        let listener = self.revocation_listener.map(tokio::spawn);
        let purge = tokio::spawn(purge_expired(
            self.store.clone(),
            self.feed.clone(),
            self.login_window,
        ));

        let transport = match (&self.tls, self.mutual_tls) {
            (None, _) => "plaintext",
            (Some(_), false) => "TLS",
            (Some(_), true) => "mutual TLS",
        };
        tracing::info!(addr = %self.local_addr, transport, "auth-service listening (gRPC)");

        let stopped = self.stop;
        let on_stop = stopped.subscribe();
        let draining = health.until_stopped(shutdown, self.limits.drain_grace);
        let stopping = async move {
            draining.await;
            // The metrics port stops with the gRPC port (it serves through the drain), and the
            // revocation streams end, so that the graceful stop does not wait for them.
            let _ = stopped.send(true);
        };
        let metrics = self.metrics_listener.map(|listener| {
            let mut on_stop = on_stop.clone();
            let ops = axum::Router::new().route(
                "/metrics",
                axum::routing::get(|| async { grimos_server::metrics::render() }),
            );
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "auth-service metrics on HTTP");
            }
            tokio::spawn(
                grimos_server::Server::new("auth-metrics", self.limits.clone()).serve(
                    listener,
                    ops,
                    async move {
                        let _ = on_stop.wait_for(|stopped| *stopped).await;
                    },
                ),
            )
        });
        let served = grimos_server::Server::new("auth", self.limits)
            .tls(self.tls)
            .http2_only()
            .serve(self.listener, self.router, stopping)
            .await;
        if let Some(metrics) = metrics {
            match metrics.await {
                Ok(Err(error)) => tracing::warn!(%error, "the metrics port failed"),
                Err(error) => tracing::warn!(%error, "the metrics port task failed"),
                Ok(Ok(())) => {}
            }
        }
        sync.abort();
        purge.abort();
        if let Some(listener) = listener {
            listener.abort();
        }
        served.context("auth-service server failed")?;
        tracing::info!("auth-service stopped");
        Ok(())
    }
}

/// The gRPC services of the port (health, reflection, AuthService), each call bounded by its
/// deadline and traced with the caller's request id.
fn router(
    auth: &Arc<Auth>,
    health_service: HealthServer<impl Health>,
    request_timeout: Duration,
) -> anyhow::Result<axum::Router> {
    let api_descriptors = grimos_proto::descriptor_set_for("grimos.auth.v1")?;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(api_descriptors.clone())
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(api_descriptors)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let api = AuthServiceServer::new(AuthApi::new(auth.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let router = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .prepare()
        .into_axum_router()
        // Every call ends by the caller's grpc-timeout, and by GRIMOS_REQUEST_TIMEOUT
        // whatever the caller asked: DEADLINE_EXCEEDED.
        .route_layer(axum::middleware::from_fn_with_state(
            "auth",
            grimos_server::metrics::track,
        ))
        .layer(DeadlineLayer::grpc(request_timeout))
        // The caller's request id (user-service sends its own) on every log line of the
        // call, so one request can be followed across both services' logs; exported, the
        // server span continues the caller's trace (`grimos_server::trace`).
        .layer(grimos_server::trace::grpc_layer());
    Ok(router)
}

/// The names gRPC health reports, besides the overall `""`.
fn health_names() -> Vec<&'static str> {
    vec![<AuthServiceServer<AuthApi> as NamedService>::NAME]
}

/// The server's TLS settings, checked now so that a bad certificate, key or CA fails the
/// start rather than the first connection. With a CA, clients must present a certificate it
/// signed (mutual TLS).
fn tls_config(config: &Config) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    if config.tls.identity().is_none() && config.tls.ca.is_some() {
        // clap lets GRIMOS_TLS_CA stand alone because user-service, as a client, needs only
        // the CA; a server cannot ask for client certificates without a certificate of its own.
        anyhow::bail!(
            "GRIMOS_TLS_CA is set without GRIMOS_TLS_CERT and GRIMOS_TLS_KEY: auth-service \
             requires client certificates (mutual TLS) only when it serves TLS itself"
        );
    }
    // gRPC only: HTTP/2.
    grimos_server::tls::server_config(&config.tls, ClientCertificates::Required, &[b"h2"])
}

/// Keeps the revocation set and its streams up to date with the table ([`RevocationFeed::run`]).
async fn sync_revocations(feed: Arc<RevocationFeed>, interval: Duration) {
    feed.run(interval, |outcome| match outcome {
        Ok(()) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64());
            metrics::gauge!("auth_revocation_last_sync_timestamp_seconds").set(now);
            #[allow(clippy::cast_precision_loss)] // a count far below 2^52
            metrics::gauge!("auth_revocations").set(feed.revocations().len() as f64);
        }
        Err(error) => tracing::warn!(%error, "revocation sync failed; retrying"),
    })
    .await;
}

/// Purges what has expired, from the table and the set, every [`PURGE_EVERY`].
async fn purge_expired(store: Arc<dyn Store>, feed: Arc<RevocationFeed>, login_window: Duration) {
    let mut ticker = tokio::time::interval(PURGE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = i64::try_from(tokens::unix_now()).unwrap_or(i64::MAX);
        let window = i64::try_from(login_window.as_secs()).unwrap_or(i64::MAX);
        if let Err(error) = store.purge(now, window).await {
            tracing::warn!(%error, "purge failed");
        }
        feed.revocations().purge(now);
    }
}
