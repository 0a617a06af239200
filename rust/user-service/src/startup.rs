//! Building and running user-service: one builder for `main` and the tests.
//!
//! [`App::build`] opens the database, connects (lazily) to auth-service or builds the
//! embedded one, assembles the one-port router and binds the listener. The router serves
//! gRPC and gRPC-Web (`/grimos.user.v1.UserService/*`, health, reflection) and HTTP/JSON
//! (`/v1/*`, `/healthz`, `/readyz`, `/metrics`): the paths never overlap, and gRPC-Web is
//! translated to gRPC by `tonic-web` in front of each gRPC service, so no content-type
//! sniffing is needed. [`App::run_until_stopped`] serves until shutdown, lets in-flight
//! requests finish, then stops the embedded auth-service.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use grimos_common::shutdown::Stop;
use grimos_common::tls::TlsSettings;
use grimos_proto::auth::v1::auth_service_server::AuthServiceServer;
use grimos_proto::gateway;
use grimos_proto::user::v1::user_service_server::UserServiceServer;
use grimos_server::health::{self, Draining};
use grimos_server::tls::ClientCertificates;
use grimos_server::{DeadlineLayer, Limits};
use http::{HeaderName, HeaderValue, Method};
use rand::RngCore as _;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tower::{Layer as _, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::PropagateRequestIdLayer;

use crate::api::UserApi;
use crate::auth_client::{AuthClient, AuthClientConfig, tls};
use crate::auth_edge::AuthEdge;
use crate::config::Config;
use crate::http::ops;
use crate::service::Users;
use crate::store::{PostgresUserStore, SqliteUserStore, UserStore};

/// How long opening a PostgreSQL database may wait for the server before the start fails.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a sign-up owns its pending row: several auth deadlines.
const SIGN_UP_LEASE_DEADLINES: u32 = 5;

/// A built user-service, bound to its address and ready to serve.
pub struct App {
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    local_addr: SocketAddr,
    router: Router,
    users: Arc<Users>,
    embedded_auth: Option<auth_service::App>,
    auth_addr: Option<SocketAddr>,
    reconcile_interval: Duration,
    limits: Limits,
    health: HealthReporter,
    /// Set when the stop begins; `/readyz` answers 503 from then on.
    draining: Draining,
    /// `db_pool_*` read at every scrape while the app lives.
    _pool_gauges: grimos_server::metrics::Sampling,
}

impl App {
    /// Prepares everything that can fail before serving.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        grimos_server::metrics::install("user", env!("CARGO_PKG_VERSION"));
        grimos_server::metrics::describe(&[
            (
                "auth_client_requests_total",
                "Calls to auth-service, after retries, by rpc and code",
            ),
            (
                "auth_client_request_duration_seconds",
                "Durations of calls to auth-service, by rpc",
            ),
            (
                "auth_client_retries_total",
                "Calls to auth-service sent again, by rpc and reason",
            ),
            (
                "auth_client_endpoint_calls_total",
                "Calls per auth-service endpoint",
            ),
            (
                "auth_client_endpoint_in_rotation",
                "1 while the balancer may pick the endpoint, else 0",
            ),
            (
                "auth_client_endpoint_healthy",
                "1 while the endpoint passes its health checks, else 0",
            ),
            (
                "auth_client_endpoint_ejections_total",
                "Endpoints taken out after a call they did not process",
            ),
            (
                "auth_client_validation_cache_lookups_total",
                "Lookups in the cache of ValidateToken answers, by result (hit, miss)",
            ),
            (
                "auth_client_verification_keys",
                "Verification keys fetched from auth-service for local verification",
            ),
            (
                "auth_client_key_fetches_total",
                "GetVerificationKeys calls, by outcome (ok, error)",
            ),
            (
                "auth_client_local_fallbacks_total",
                "Requests sent to ValidateToken because local verification could not vouch for its state",
            ),
            (
                "auth_client_revocation_stream_connected",
                "1 while the WatchRevocations stream is in sync, else 0",
            ),
            (
                "auth_client_revocation_stream_lag_seconds",
                "Seconds since the WatchRevocations stream's last message",
            ),
            (
                "auth_client_revocations_applied_total",
                "Revocations applied from the WatchRevocations stream",
            ),
        ]);
        let tls = server_tls(&config.tls)?;
        let store: Arc<dyn UserStore> =
            if grimos_common::db::is_postgres_url(&config.user_database_url) {
                Arc::new(
                    PostgresUserStore::open(&config.user_database_url, POSTGRES_CONNECT_TIMEOUT)
                        .await
                        .context("USER_DATABASE_URL")?,
                )
            } else {
                Arc::new(SqliteUserStore::open(&config.user_database_url).await?)
            };

        let (auth, embedded_auth, auth_addr) = match &config.auth_service_address {
            Some(address) => {
                let tls = tls::client_config(&config.tls, config.auth_deadline)?;
                let client = AuthClient::new(AuthClientConfig {
                    address: address.clone(),
                    deadline: config.auth_deadline,
                    service_token: config.auth.service_token.clone(),
                    tls,
                    dns_refresh: config.auth_dns_refresh,
                    health_check_interval: config.auth_health_check_interval,
                })
                .with_context(|| format!("AUTH_SERVICE_ADDRESS {address:?}"))?;
                (client, None, None)
            }
            None => {
                // auth-service in this process: it serves AUTH_LISTEN_ADDR for other clients
                // (over TLS, mutual with GRIMOS_TLS_CA, exactly as a standalone one does),
                // and this client calls it through its tower service, with a service token
                // made up for this process.
                let token = SecretString::from(random_token());
                let mut auth_config = config.embedded_auth();
                auth_config.service_token = Some(token.clone());
                let app = auth_service::App::build(auth_config)
                    .await
                    .context("cannot start the embedded auth-service")?;
                let client =
                    AuthClient::in_process(app.in_process(), config.auth_deadline, Some(token))?;
                let addr = app.local_addr();
                (client, Some(app), Some(addr))
            }
        };

        let mut auth = auth.with_validation_cache(config.validation_cache_ttl);
        // The keys and the stream need the service credential (the embedded auth-service's is
        // made up above); without one, every request asks ValidateToken.
        let credential = embedded_auth.is_some() || config.auth.service_token.is_some();
        match config.local_verification() {
            Some(settings) if credential => auth = auth.with_local_verification(settings),
            Some(_) => tracing::warn!(
                "AUTH_LOCAL_VERIFICATION needs GRIMOS_SERVICE_TOKEN to fetch auth-service's keys and revocations; every request is validated by auth-service instead"
            ),
            None => {}
        }
        let pools = store.clone();
        let pool_gauges = grimos_server::metrics::sample_pools("user", move || pools.pools());
        let lease = config.auth_deadline.saturating_mul(SIGN_UP_LEASE_DEADLINES);
        let users = Arc::new(Users::new(store, auth, lease).await?);
        let limits = config.limits.clone();
        let draining = Draining::default();
        let (router, health) = router(
            users.clone(),
            &config.cors_allowed_origins,
            &limits,
            draining.clone(),
        )
        .await?;
        let listener = TcpListener::bind(config.user_listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.user_listen_addr))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            tls,
            local_addr,
            router,
            users,
            embedded_auth,
            auth_addr,
            reconcile_interval: config.reconcile_interval,
            limits,
            health,
            draining,
            _pool_gauges: pool_gauges,
        })
    }

    /// The address user-service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The embedded auth-service's address, when there is one.
    pub fn embedded_auth_addr(&self) -> Option<SocketAddr> {
        self.auth_addr
    }

    /// Serves until `shutdown` resolves, then stops as [`grimos_server::health`] says: for
    /// [`Stop::Drain`] (SIGTERM) NOT_SERVING and `/readyz` 503 for `GRIMOS_DRAIN_GRACE` while
    /// still serving, then (at once for [`Stop::Now`], which a future of `()` means) no new
    /// connections, GOAWAY, and in-flight requests finish; then the embedded auth-service
    /// stops, at once (it served throughout).
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future + Send + 'static,
        F::Output: Into<Stop>,
    {
        let (stopped, on_stop) = tokio::sync::watch::channel(false);
        let auth_task = self.embedded_auth.map(|auth| {
            let mut on_stop = on_stop.clone();
            tokio::spawn(auth.run_until_stopped(async move {
                let _ = on_stop.wait_for(|stopped| *stopped).await;
                Stop::Now
            }))
        });
        let users = self.users.clone();
        let interval = self.reconcile_interval.max(Duration::from_millis(100));
        let reconciler = tokio::spawn(async move {
            // The first pass one interval after the start, not at it, where it would race
            // the first requests (and the tests that write unfinished rows themselves).
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                users.reconcile().await;
            }
        });

        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match self.auth_addr {
            Some(auth) => {
                tracing::info!(addr = %self.local_addr, scheme, %auth, "user-service listening (HTTP/JSON, gRPC, gRPC-Web); embedded auth-service on gRPC")
            }
            None => {
                tracing::info!(addr = %self.local_addr, scheme, "user-service listening (HTTP/JSON, gRPC, gRPC-Web)")
            }
        }
        // Health follows readiness (the database and auth-service answer), as /readyz does.
        let ready = self.users.clone();
        let health = health::keep_health(
            self.health.clone(),
            "user",
            health_names(),
            self.draining.clone(),
            move || {
                let ready = ready.clone();
                async move { ready.readiness().await }
            },
        )
        .await;
        let shutdown = health.until_stopped(shutdown, self.limits.drain_grace);
        let served = grimos_server::Server::new("user", self.limits)
            .tls(self.tls)
            .serve(self.listener, self.router, shutdown)
            .await;
        reconciler.abort();
        let _ = stopped.send(true);
        if let Some(task) = auth_task {
            task.await.context("embedded auth-service task")??;
        }
        served.context("user-service server failed")?;
        tracing::info!("user-service stopped");
        Ok(())
    }
}

/// HTTPS on the one port with `GRIMOS_TLS_CERT` and `GRIMOS_TLS_KEY` (ALPN `h2` and
/// `http/1.1`), nothing in plaintext. With `GRIMOS_TLS_CA` too, a client certificate is
/// verified against that CA when one is presented, but none is required: user-service is the
/// edge that browsers and end-user programs call, and they have none. (Mutual TLS between
/// the services is user-service's client certificate at auth-service, which requires it.)
fn server_tls(
    settings: &TlsSettings,
) -> anyhow::Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>> {
    grimos_server::tls::server_config(
        settings,
        ClientCertificates::Optional,
        &[b"h2", b"http/1.1"],
    )
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Mounts a tonic service at `/<package.Service>/*`, behind `tonic-web` so the same path also
/// answers gRPC-Web (it passes plain gRPC through untouched), each call bounded by its
/// `grpc-timeout` and `GRIMOS_REQUEST_TIMEOUT`.
fn grpc_service<S>(router: Router, service: S, max_time: Duration) -> Router
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    router.route_service(
        &format!("/{}/{{*rest}}", S::NAME),
        tonic_web::GrpcWebLayer::new().layer(DeadlineLayer::grpc(max_time).layer(service)),
    )
}

/// The whole one-port router.
async fn router(
    users: Arc<Users>,
    cors_origins: &[String],
    limits: &Limits,
    draining: Draining,
) -> anyhow::Result<(Router, HealthReporter)> {
    let max_time = limits.request_timeout;
    let api = UserApi::new(users.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    // Both APIs are served here (AuthService at the edge), so reflection describes both.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grimos_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grimos_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let mut grpc = Router::new();
    grpc = grpc_service(
        grpc,
        UserServiceServer::new(api.clone()).max_decoding_message_size(gateway::MAX_BODY_BYTES),
        max_time,
    );
    grpc = grpc_service(
        grpc,
        AuthServiceServer::new(AuthEdge::new(api.clone()))
            .max_decoding_message_size(gateway::MAX_BODY_BYTES),
        max_time,
    );
    grpc = grpc_service(grpc, health_service, max_time);
    grpc = grpc_service(grpc, reflection_v1, max_time);
    grpc = grpc_service(grpc, reflection_v1alpha, max_time);

    let router = Router::new()
        .merge(
            crate::http::routes(api)
                .layer(DeadlineLayer::http(max_time, gateway::deadline_exceeded)),
        )
        .merge(ops::routes(users, draining))
        .merge(grpc)
        .route_layer(axum::middleware::from_fn_with_state(
            "user",
            grimos_server::metrics::track,
        ))
        .fallback(fallback)
        .method_not_allowed_fallback(gateway::method_not_allowed)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(grimos_server::trace::http_layer())
        // A sane request id on every request (the caller's, or a new one), in its header and
        // in scope for the calls it makes to auth-service.
        .layer(grimos_server::RequestIdLayer);
    let router = match cors(cors_origins)? {
        Some(cors) => router.layer(cors),
        None => router,
    };
    Ok((router, health))
}

/// The names gRPC health reports, besides the overall `""`.
fn health_names() -> Vec<&'static str> {
    vec![
        <UserServiceServer<UserApi> as NamedService>::NAME,
        <AuthServiceServer<AuthEdge> as NamedService>::NAME,
    ]
}

/// Unknown paths: gRPC callers get UNIMPLEMENTED, everyone else the JSON 404.
async fn fallback(request: Request) -> Response {
    let grpc = crate::http::is_grpc(request.headers());
    if grpc {
        tonic::Status::unimplemented(format!("no such method: {}", request.uri().path()))
            .into_http::<axum::body::Body>()
            .into_response()
    } else {
        gateway::not_found().await.into_response()
    }
}

/// CORS for browsers: gRPC-Web and JSON calls from the allowed origins.
fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    let origins: Vec<&String> = origins.iter().filter(|o| !o.trim().is_empty()).collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| HeaderValue::from_str(o.trim()))
            .collect::<Result<Vec<_>, _>>()
            .context("USER_CORS_ALLOWED_ORIGINS has an invalid origin")?;
        AllowOrigin::list(values)
    };
    let header = HeaderName::from_static;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                http::header::CONTENT_TYPE,
                http::header::AUTHORIZATION,
                header("x-grpc-web"),
                header("x-user-agent"),
                header("grpc-timeout"),
                header("x-request-id"),
                header("connect-protocol-version"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
                header("x-request-id"),
            ])
            .max_age(Duration::from_secs(600)),
    ))
}
