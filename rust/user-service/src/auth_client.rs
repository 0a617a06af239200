//! The gRPC client of `grimos.auth.v1.AuthService`: the only way user-service talks to
//! auth-service.
//!
//! It owns where auth-service is ([`AuthAddress`]: one URL, a list balanced client-side, or a
//! DNS name re-resolved periodically), the per-call deadline, the service credential for
//! `CreateCredential` and `DeleteCredential`, the metrics of every call, and the one mapping
//! of transport failures to `UNAVAILABLE`.
//!
//! Invariants:
//! - Construction does no network I/O. Channels connect lazily and reconnect by themselves,
//!   so user-service starts while auth-service is down and recovers when it comes up.
//! - Every call is bounded: `grpc-timeout` carries the deadline to auth-service, and a hard
//!   timer a little longer than the deadline covers time spent before a connection is picked
//!   (the balancer waits for a ready endpoint without looking at `grpc-timeout`).
//! - Callers see a status auth-service produced (`UNAUTHENTICATED`, `INVALID_ARGUMENT`,
//!   `ALREADY_EXISTS`, `INTERNAL`, ...) unchanged, and `UNAVAILABLE` when auth-service could
//!   not be reached or did not answer in time. `map_status` is the only place that decides.
//! - Nothing is retried, not even the idempotent `ValidateToken`: a retry would have to fit
//!   in the same deadline, and the callers (HTTP and gRPC clients) already retry on 503.
//! - Tokens, passwords and the service token are never logged or recorded in metrics.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::balancer::{self, Dns, Resolve, Source};
use grimos_proto::auth::v1 as pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use http::Uri;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long a call may take when the configuration does not say.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
/// How often a `dns:///` address is re-resolved when the configuration does not say.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);

/// The hard bound on a call is the deadline plus this: `grpc-timeout` should fire first.
const HARD_TIMEOUT_MARGIN: Duration = Duration::from_millis(100);
/// What `AUTH_SERVICE_ADDRESS` may look like, for error messages.
const ADDRESS_FORMS: &str = "expected http://host:port, https://host:port, a comma-separated list of them, or dns:///name:port";

/// Where auth-service is, as `AUTH_SERVICE_ADDRESS` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAddress {
    /// One or more `http://` or `https://` URLs; several are balanced client-side.
    Urls(Vec<Uri>),
    /// A DNS name whose every address is used, re-resolved periodically.
    Dns {
        /// The name (or a literal IP address) to resolve.
        host: String,
        /// The port every resolved address is reached on.
        port: u16,
    },
}

impl AuthAddress {
    /// Parses `http://host:port`, `https://host:port`, a comma-separated list of them
    /// (whitespace around commas is fine, empty entries are not), or `dns:///name:port`
    /// (also `dns:name:port`). The port is always required.
    pub fn parse(s: &str) -> anyhow::Result<AuthAddress> {
        let s = s.trim();
        if s.is_empty() {
            bail!("the address is empty; {ADDRESS_FORMS}");
        }
        if let Some(rest) = strip_prefix_ignore_case(s, "dns:") {
            return parse_dns(rest);
        }
        let entries: Vec<&str> = s.split(',').map(str::trim).collect();
        let mut urls = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            if entry.is_empty() {
                bail!(
                    "entry {} of the address list is empty; {ADDRESS_FORMS}",
                    index + 1
                );
            }
            urls.push(parse_url(entry)?);
        }
        Ok(AuthAddress::Urls(urls))
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_dns(rest: &str) -> anyhow::Result<AuthAddress> {
    let target = if let Some(target) = rest.strip_prefix("///") {
        target
    } else if rest.starts_with("//") {
        bail!("dns://AUTHORITY/ (a custom DNS server) is not supported; write dns:///name:port");
    } else {
        rest
    };
    let (host, port) = if let Some(bracketed) = target.strip_prefix('[') {
        // An IPv6 literal: `[::1]:50051`.
        let (host, after) = bracketed
            .split_once(']')
            .with_context(|| format!("{target:?}: missing `]` after the IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .with_context(|| format!("{target:?}: missing port; write dns:///name:port"))?;
        (host, port)
    } else {
        let (host, port) = target
            .rsplit_once(':')
            .with_context(|| format!("{target:?}: missing port; write dns:///name:port"))?;
        if host.contains(':') {
            bail!("{target:?}: write an IPv6 address in brackets, as in dns:///[::1]:50051");
        }
        (host, port)
    };
    if host.is_empty() {
        bail!("{target:?}: missing host name; write dns:///name:port");
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@' | ','))
    {
        bail!("{target:?}: {host:?} is not a host name");
    }
    let port = parse_port(port, target)?;
    Ok(AuthAddress::Dns {
        host: host.to_owned(),
        port,
    })
}

fn parse_port(port: &str, whole: &str) -> anyhow::Result<u16> {
    if port.is_empty() {
        bail!("{whole:?}: missing port");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bail!("{whole:?}: {port:?} is not a port (1 to 65535)"),
        Ok(port) => Ok(port),
    }
}

fn parse_url(entry: &str) -> anyhow::Result<Uri> {
    let uri: Uri = entry
        .parse()
        .with_context(|| format!("{entry:?} is not a URL; {ADDRESS_FORMS}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => bail!("{entry:?}: unsupported scheme {other:?}; {ADDRESS_FORMS}"),
        None => bail!("{entry:?}: missing http:// or https://; {ADDRESS_FORMS}"),
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{entry:?}: missing host; {ADDRESS_FORMS}"))?;
    if authority.as_str().contains('@') {
        bail!("{entry:?}: user information in the URL is not supported");
    }
    if authority.host().is_empty() {
        bail!("{entry:?}: missing host; {ADDRESS_FORMS}");
    }
    let port = authority
        .port()
        .with_context(|| format!("{entry:?}: missing port; write scheme://host:port"))?;
    parse_port(port.as_str(), entry)?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("{entry:?}: a path or query is not allowed; write scheme://host:port");
    }
    Ok(uri)
}

/// How to reach auth-service.
#[derive(Clone)]
pub struct AuthClientConfig {
    /// `AUTH_SERVICE_ADDRESS`, in any form [`AuthAddress::parse`] accepts.
    pub address: String,
    /// How long one call may take, connecting included ([`DEFAULT_DEADLINE`]: 2 s).
    pub deadline: Duration,
    /// `GRIMOS_SERVICE_TOKEN`, presented on `CreateCredential` and `DeleteCredential`.
    pub service_token: Option<SecretString>,
    /// TLS settings for `https://` addresses (and for `dns:///`, which then uses TLS).
    pub tls: Option<ClientTlsConfig>,
    /// How often a `dns:///` address is re-resolved ([`DEFAULT_DNS_REFRESH`]: 5 s).
    pub dns_refresh: Duration,
}

impl AuthClientConfig {
    /// The defaults for `address`: 2 s deadline, no service token, no TLS, 5 s DNS refresh.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            deadline: DEFAULT_DEADLINE,
            service_token: None,
            tls: None,
            dns_refresh: DEFAULT_DNS_REFRESH,
        }
    }
}

impl fmt::Debug for AuthClientConfig {
    // By hand: the TLS settings may hold a private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClientConfig")
            .field("address", &self.address)
            .field("deadline", &self.deadline)
            .field(
                "service_token",
                &self.service_token.as_ref().map(|_| "[redacted]"),
            )
            .field("tls", &self.tls.is_some())
            .field("dns_refresh", &self.dns_refresh)
            .finish()
    }
}

/// A cheap-to-clone client of auth-service; every clone shares one channel.
#[derive(Clone)]
pub struct AuthClient {
    auth: AuthServiceClient<Channel>,
    health: HealthClient<Channel>,
    deadline: Duration,
    service_token: Option<SecretString>,
    /// The task that keeps a balanced channel's endpoints (see `balancer.rs`); stopped when
    /// the last clone is dropped.
    balancer: Option<Arc<AbortOnDrop>>,
    /// Recent `ValidateToken` answers, if enabled.
    validations: Option<Arc<Validations>>,
}

/// How many tokens' validations are remembered.
const VALIDATION_CACHE_CAPACITY: usize = 10_000;

/// Recent successful `ValidateToken` answers by token, each reused for at most `ttl` and
/// never past the token's expiry. Every authenticated request validates its token, and the
/// round trip to auth-service costs several times what the rest of a read does; a client
/// usually sends many requests with one token, so most of them skip it.
///
/// Revocations that go through this client apply at once: revoking a token ends its session,
/// so every answer of that session is forgotten (and every answer of a user whose credential
/// is deleted). An answer fetched before such a revocation but stored after it is caught by
/// `generation`: [`Validations::forget`] bumps it, and [`Validations::insert`] drops its own
/// entry if it changed while the answer was on its way.
struct Validations {
    ttl: Duration,
    answers: quick_cache::sync::Cache<String, (Instant, pb::ValidateTokenResponse)>,
    generation: AtomicU64,
}

impl Validations {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            answers: quick_cache::sync::Cache::new(capacity),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation to pass to [`Validations::insert`]: read before asking auth-service.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Forgets every answer `matches` selects, and any answer in flight.
    fn forget(&self, matches: impl Fn(&pb::ValidateTokenResponse) -> bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.answers.retain(|_, (_, answer)| !matches(answer));
    }

    fn get(&self, token: &str) -> Option<pb::ValidateTokenResponse> {
        let (until, answer) = self.answers.get(token)?;
        if Instant::now() < until {
            Some(answer)
        } else {
            self.answers.remove(token);
            None
        }
    }

    fn insert(&self, token: &str, answer: &pb::ValidateTokenResponse, generation: u64) {
        let now = Instant::now();
        let mut until = now + self.ttl;
        // Never past the token's expiry: inside the leeway after it, only auth-service says
        // whether the token is still accepted.
        if let Some(expiry) = answer.expire_time.as_ref() {
            let Some(expiry) = system_time(expiry) else {
                return;
            };
            match expiry.duration_since(SystemTime::now()) {
                Ok(left) => until = until.min(now + left),
                Err(_) => return,
            }
        }
        self.answers
            .insert(token.to_owned(), (until, answer.clone()));
        if self.generation() != generation {
            // A revocation went through meanwhile; it may have ended this token.
            self.answers.remove(token);
        }
    }
}

/// A protobuf timestamp as a `SystemTime`, to the nanosecond; `None` if it is before the
/// Unix epoch or malformed.
fn system_time(timestamp: &grimos_proto::wkt::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(timestamp.seconds).ok()?;
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

impl fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClient")
            .field("deadline", &self.deadline)
            .field(
                "service_token",
                &self.service_token.as_ref().map(|_| "[redacted]"),
            )
            .field("balanced", &self.balancer.is_some())
            .finish_non_exhaustive()
    }
}

/// A channel balanced over what `source` names, and the task that keeps its endpoints.
fn balanced(source: Source, deadline: Duration) -> (Channel, Option<Arc<AbortOnDrop>>) {
    let (channel, changes) = Channel::balance_channel::<String>(balancer::CHANGES_CAPACITY);
    let task = tokio::spawn(balancer::maintain(
        source,
        changes,
        deadline,
        balancer::PROBE_INTERVAL,
    ));
    (channel, Some(Arc::new(AbortOnDrop(task))))
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AuthClient {
    /// Builds the client without touching the network.
    ///
    /// Must be called inside a tokio runtime: the channel's workers (and, for `dns:///`, the
    /// task that re-resolves the name) are spawned on it. Fails on an unparsable address,
    /// a zero deadline or refresh period, `https://` without TLS settings, or TLS settings
    /// with an `http://` address.
    pub fn new(config: AuthClientConfig) -> anyhow::Result<AuthClient> {
        if config.deadline.is_zero() {
            bail!("the auth-service deadline must be positive");
        }
        tokio::runtime::Handle::try_current()
            .context("AuthClient::new must be called inside a tokio runtime")?;
        let address = AuthAddress::parse(&config.address)?;
        let tls = config.tls.as_ref();
        let (channel, balancer) = match address {
            AuthAddress::Urls(urls) => {
                let endpoints = urls
                    .into_iter()
                    .map(|uri| url_endpoint(uri, tls, config.deadline))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                match <[Endpoint; 1]>::try_from(endpoints) {
                    // One URL: nothing to balance or to fail over to.
                    Ok([endpoint]) => (endpoint.connect_lazy(), None),
                    Err(endpoints) => balanced(Source::List(endpoints), config.deadline),
                }
            }
            AuthAddress::Dns { host, port } => {
                if config.dns_refresh.is_zero() {
                    bail!("the DNS refresh period must be positive");
                }
                let template = EndpointTemplate::new(&host, port, tls.cloned(), config.deadline)?;
                let resolve_bound = config.dns_refresh.max(Duration::from_secs(1));
                let name = host.clone();
                let resolve: Resolve = Box::new(move || {
                    let name = name.clone();
                    Box::pin(async move {
                        let lookup = tokio::net::lookup_host((name.as_str(), port));
                        match tokio::time::timeout(resolve_bound, lookup).await {
                            Ok(result) => result.map(Iterator::collect),
                            Err(_) => Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "DNS lookup timed out",
                            )),
                        }
                    })
                });
                let source = Source::Dns(Box::new(Dns {
                    name: host,
                    resolve,
                    template,
                    refresh: config.dns_refresh,
                }));
                balanced(source, config.deadline)
            }
        };
        let mut client = Self::with_channel(channel, config.deadline, config.service_token);
        client.balancer = balancer;
        Ok(client)
    }

    /// A client on a channel the caller built; `deadline` bounds every call.
    pub fn with_channel(
        channel: Channel,
        deadline: Duration,
        service_token: Option<SecretString>,
    ) -> AuthClient {
        AuthClient {
            auth: AuthServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            deadline,
            service_token,
            balancer: None,
            validations: None,
        }
    }

    /// Reuses each successful `ValidateToken` answer for up to `ttl` (zero: never).
    #[must_use]
    pub fn with_validation_cache(mut self, ttl: Duration) -> Self {
        self.validations =
            (!ttl.is_zero()).then(|| Arc::new(Validations::new(ttl, VALIDATION_CACHE_CAPACITY)));
        self
    }

    /// `ValidateToken`: who holds `access_token`, with their roles and permissions.
    pub async fn validate_token(
        &self,
        access_token: &str,
        request_id: &str,
    ) -> Result<pb::ValidateTokenResponse, Status> {
        plausible(access_token)?;
        if let Some(answer) = self.validations.as_ref().and_then(|v| v.get(access_token)) {
            return Ok(answer);
        }
        let generation = self.validations.as_ref().map(|v| v.generation());
        let request = self.request(
            pb::ValidateTokenRequest {
                access_token: access_token.to_owned(),
            },
            request_id,
        );
        let mut auth = self.auth.clone();
        let answer = self
            .call("ValidateToken", async move {
                auth.validate_token(request).await
            })
            .await?;
        if let (Some(validations), Some(generation)) = (&self.validations, generation) {
            validations.insert(access_token, &answer, generation);
        }
        Ok(answer)
    }

    /// `Login`: exchanges an email and password for tokens.
    pub async fn login(
        &self,
        req: pb::LoginRequest,
        request_id: &str,
    ) -> Result<pb::LoginResponse, Status> {
        let request = self.request(req, request_id);
        let mut auth = self.auth.clone();
        self.call("Login", async move { auth.login(request).await })
            .await
    }

    /// `RefreshToken`: exchanges a refresh token for new (rotated) tokens.
    pub async fn refresh_token(
        &self,
        req: pb::RefreshTokenRequest,
        request_id: &str,
    ) -> Result<pb::RefreshTokenResponse, Status> {
        plausible(&req.refresh_token)?;
        let request = self.request(req, request_id);
        let mut auth = self.auth.clone();
        self.call(
            "RefreshToken",
            async move { auth.refresh_token(request).await },
        )
        .await
    }

    /// `RevokeToken`: revokes an access or refresh token, ending its session; every cached
    /// answer of that session is forgotten.
    pub async fn revoke_token(
        &self,
        req: pb::RevokeTokenRequest,
        request_id: &str,
    ) -> Result<pb::RevokeTokenResponse, Status> {
        plausible(&req.token)?;
        let token = req.token.clone();
        let request = self.request(req, request_id);
        let mut auth = self.auth.clone();
        let result = self
            .call(
                "RevokeToken",
                async move { auth.revoke_token(request).await },
            )
            .await;
        if let Some(validations) = &self.validations {
            // Whatever the outcome, this token is not vouched for from memory again.
            validations.answers.remove(token.as_str());
            if let Ok(response) = &result {
                validations.forget(|answer| answer.session_id == response.session_id);
            }
        }
        result
    }

    /// `CheckPermission`: whether the holder of an access token has a permission.
    pub async fn check_permission(
        &self,
        req: pb::CheckPermissionRequest,
        request_id: &str,
    ) -> Result<pb::CheckPermissionResponse, Status> {
        plausible(&req.access_token)?;
        let request = self.request(req, request_id);
        let mut auth = self.auth.clone();
        self.call("CheckPermission", async move {
            auth.check_permission(request).await
        })
        .await
    }

    /// `CreateCredential`, with the service credential: stores a user's email and password
    /// and returns the roles granted.
    pub async fn create_credential(
        &self,
        req: pb::CreateCredentialRequest,
        request_id: &str,
    ) -> Result<pb::CreateCredentialResponse, Status> {
        const RPC: &str = "CreateCredential";
        let mut request = self.request(req, request_id);
        if let Err(status) = self.authorize(&mut request) {
            record(RPC, Instant::now(), status.code());
            return Err(status);
        }
        let mut auth = self.auth.clone();
        self.call(RPC, async move { auth.create_credential(request).await })
            .await
    }

    /// `DeleteCredential`, with the service credential: removes a user's credential and
    /// revokes their tokens.
    pub async fn delete_credential(
        &self,
        user_id: &str,
        request_id: &str,
    ) -> Result<pb::DeleteCredentialResponse, Status> {
        const RPC: &str = "DeleteCredential";
        let mut request = self.request(
            pb::DeleteCredentialRequest {
                user_id: user_id.to_owned(),
            },
            request_id,
        );
        if let Err(status) = self.authorize(&mut request) {
            record(RPC, Instant::now(), status.code());
            return Err(status);
        }
        let mut auth = self.auth.clone();
        let result = self
            .call(RPC, async move { auth.delete_credential(request).await })
            .await;
        if let Some(validations) = &self.validations {
            validations.forget(|answer| answer.user_id == user_id);
        }
        result
    }

    /// `grpc.health.v1.Health/Check` for the overall status (`""`) on the same channel: `Ok`
    /// only when auth-service reports `SERVING`.
    pub async fn health_check(&self) -> Result<(), Status> {
        let mut request = Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(self.deadline);
        let mut health = self.health.clone();
        let response = self
            .call("HealthCheck", async move { health.check(request).await })
            .await?;
        if response.status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            let status = ServingStatus::try_from(response.status)
                .map_or("UNKNOWN", |status| status.as_str_name());
            Err(Status::unavailable(format!(
                "auth-service is not serving (status {status})"
            )))
        }
    }

    /// The time a call may take: `AUTH_CLIENT_DEADLINE`, or less when the request being
    /// served has less left (its caller's `grpc-timeout`, or `GRIMOS_REQUEST_TIMEOUT`), and
    /// whether the caller's deadline is what bounds it.
    fn budget(&self) -> (Duration, bool) {
        match grimos_server::call_deadline() {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left < self.deadline {
                    (left, true)
                } else {
                    (self.deadline, false)
                }
            }
            None => (self.deadline, false),
        }
    }

    /// A request carrying the deadline (`grpc-timeout`) and the request id, if it is valid
    /// metadata.
    fn request<T>(&self, message: T, request_id: &str) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.budget().0);
        if !request_id.is_empty() {
            match AsciiMetadataValue::try_from(request_id) {
                Ok(value) => {
                    request.metadata_mut().insert("x-request-id", value);
                }
                Err(_) => tracing::debug!("request id is not valid metadata; not forwarded"),
            }
        }
        request
    }

    /// Adds the service credential, which only `CreateCredential` and `DeleteCredential` need.
    fn authorize<T>(&self, request: &mut Request<T>) -> Result<(), Status> {
        let Some(token) = &self.service_token else {
            tracing::error!("no service token configured: cannot call auth-service as a service");
            return Err(Status::internal("no service token configured"));
        };
        let bearer = format!("Bearer {}", token.expose_secret());
        let mut value: AsciiMetadataValue =
            MetadataValue::try_from(bearer.as_str()).map_err(|_| {
                tracing::error!("the service token is not valid metadata (visible ASCII only)");
                Status::internal("invalid service token configured")
            })?;
        // Keeps the header out of HPACK's dynamic table.
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
        Ok(())
    }

    /// Runs one call under the hard bound, maps its status and records it.
    async fn call<R>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<tonic::Response<R>, Status>>,
    ) -> Result<R, Status> {
        let start = Instant::now();
        let mut cause = None;
        let (budget, callers) = self.budget();
        let result = match tokio::time::timeout(budget + HARD_TIMEOUT_MARGIN, call).await {
            // The caller's deadline passed first: that is what the caller is told, whatever
            // the call ended with meanwhile.
            Ok(Err(_)) | Err(_) if callers && start.elapsed() >= budget => Err(
                Status::deadline_exceeded("the deadline passed while waiting for auth-service"),
            ),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                cause = transport_cause(&status);
                Err(map_status(status, self.deadline))
            }
            Err(_) => Err(did_not_answer(self.deadline)),
        };
        match &result {
            Ok(_) => record(rpc, start, Code::Ok),
            Err(status) => {
                record(rpc, start, status.code());
                if status.code() == Code::Unavailable {
                    // The cause (a refused handshake, say) is logged, not sent to callers.
                    tracing::warn!(
                        rpc,
                        error = status.message(),
                        cause = cause.as_deref().unwrap_or_default(),
                        "auth-service call failed"
                    );
                } else {
                    tracing::debug!(rpc, code = ?status.code(), "auth-service refused the call");
                }
            }
        }
        result
    }
}

/// Refuses, without calling auth-service, a token longer than any it issues: it cannot be
/// valid, and sending it would only cost auth-service a message it must refuse.
fn plausible(token: &str) -> Result<(), Status> {
    if token.len() > grimos_common::bearer::MAX_TOKEN_BYTES {
        return Err(Status::unauthenticated("invalid token"));
    }
    Ok(())
}

/// The one mapping of call failures: what auth-service said passes through; failing to reach
/// it, or to hear back in time, becomes `UNAVAILABLE`.
fn map_status(status: Status, deadline: Duration) -> Status {
    match status.code() {
        Code::DeadlineExceeded => did_not_answer(deadline),
        // tonic reports an expired `grpc-timeout` (its own or the server's) as CANCELLED.
        Code::Cancelled if status.message().contains("Timeout expired") => did_not_answer(deadline),
        Code::Unavailable | Code::Unknown | Code::Cancelled => {
            Status::unavailable(format!("auth-service unavailable: {}", status.message()))
        }
        // A status auth-service sent has no source; one with a source was made by the client
        // from a transport error (an HTTP/2 protocol error, for instance).
        Code::Internal if std::error::Error::source(&status).is_some() => {
            Status::unavailable(format!("auth-service unavailable: {}", status.message()))
        }
        _ => status,
    }
}

/// The chain of errors behind a status the client made from a transport failure, such as
/// "received fatal alert: CertificateRequired" behind "transport error".
fn transport_cause(status: &Status) -> Option<String> {
    let mut source = std::error::Error::source(status)?;
    let mut chain = source.to_string();
    while let Some(next) = source.source() {
        chain.push_str(": ");
        chain.push_str(&next.to_string());
        source = next;
    }
    Some(chain)
}

fn did_not_answer(deadline: Duration) -> Status {
    Status::unavailable(format!(
        "auth-service did not answer within {}",
        humantime::format_duration(deadline)
    ))
}

fn record(rpc: &'static str, start: Instant, code: Code) {
    metrics::histogram!("auth_client_request_duration_seconds", "rpc" => rpc)
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("auth_client_requests_total", "rpc" => rpc, "code" => code_name(code))
        .increment(1);
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The endpoint settings every connection shares.
fn configure(endpoint: Endpoint, deadline: Duration) -> Endpoint {
    endpoint.connect_timeout(deadline).tcp_nodelay(true)
}

fn url_endpoint(
    uri: Uri,
    tls: Option<&ClientTlsConfig>,
    deadline: Duration,
) -> anyhow::Result<Endpoint> {
    let https = uri.scheme_str() == Some("https");
    let endpoint = configure(Endpoint::from(uri.clone()), deadline);
    match (https, tls) {
        (true, Some(tls)) => endpoint
            .tls_config(tls.clone())
            .with_context(|| format!("invalid TLS settings for {uri}")),
        (false, None) => Ok(endpoint),
        (true, None) => bail!("{uri}: https:// needs TLS settings (set GRIMOS_TLS_CA)"),
        (false, Some(_)) => bail!(
            "{uri}: TLS is configured (GRIMOS_TLS_CA is set), so write https:// instead of http://"
        ),
    }
}

/// Builds the endpoint of one resolved address of a `dns:///` name.
pub(crate) struct EndpointTemplate {
    scheme: &'static str,
    /// `scheme://name:port`: the `:authority` auth-service sees, whatever address is dialled.
    origin: Uri,
    /// With the certificate checked against the name, not the dialled address.
    tls: Option<ClientTlsConfig>,
    deadline: Duration,
}

impl EndpointTemplate {
    fn new(
        host: &str,
        port: u16,
        tls: Option<ClientTlsConfig>,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let origin: Uri = format!("{scheme}://{authority}")
            .parse()
            .with_context(|| format!("{authority:?} is not a valid host and port"))?;
        let template = Self {
            scheme,
            origin,
            tls: tls.map(|tls| tls.domain_name(host)),
            deadline,
        };
        // Bad TLS settings fail here, at start-up, rather than once per resolved address.
        template.endpoint(SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(template)
    }

    pub(crate) fn endpoint(&self, addr: SocketAddr) -> anyhow::Result<Endpoint> {
        // `SocketAddr` prints IPv6 in brackets, as a URI wants; a zone id would not parse.
        let uri: Uri = format!("{}://{addr}", self.scheme)
            .parse()
            .with_context(|| format!("cannot make a URI of {addr}"))?;
        let endpoint = configure(Endpoint::from(uri), self.deadline).origin(self.origin.clone());
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .context("invalid TLS settings"),
            None => Ok(endpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tonic::transport::channel::Change;

    use super::*;

    fn urls(s: &str) -> Vec<String> {
        match AuthAddress::parse(s).unwrap() {
            AuthAddress::Urls(urls) => urls.iter().map(ToString::to_string).collect(),
            other => panic!("expected URLs, got {other:?}"),
        }
    }

    fn dns(s: &str) -> (String, u16) {
        match AuthAddress::parse(s).unwrap() {
            AuthAddress::Dns { host, port } => (host, port),
            other => panic!("expected DNS, got {other:?}"),
        }
    }

    fn error(s: &str) -> String {
        format!("{:#}", AuthAddress::parse(s).unwrap_err())
    }

    #[test]
    fn one_url_is_accepted() {
        assert_eq!(urls("http://auth:50051"), ["http://auth:50051/"]);
        assert_eq!(
            urls(" https://auth.example.com:443 "),
            ["https://auth.example.com:443/"]
        );
        assert_eq!(urls("http://127.0.0.1:50051/"), ["http://127.0.0.1:50051/"]);
        assert_eq!(urls("http://[::1]:50051"), ["http://[::1]:50051/"]);
    }

    #[test]
    fn a_comma_separated_list_is_accepted_with_spaces() {
        assert_eq!(
            urls("http://a:1, http://b:2 ,https://c:3"),
            ["http://a:1/", "http://b:2/", "https://c:3/"]
        );
    }

    #[test]
    fn empty_list_entries_are_rejected() {
        assert!(error("http://a:1,,http://b:2").contains("entry 2"));
        assert!(error("http://a:1,").contains("entry 2"));
        assert!(error(", http://a:1").contains("entry 1"));
    }

    #[test]
    fn dns_names_are_accepted_in_both_spellings() {
        assert_eq!(dns("dns:///auth.svc:50051"), ("auth.svc".to_owned(), 50051));
        assert_eq!(dns("dns:auth:50051"), ("auth".to_owned(), 50051));
        assert_eq!(dns("DNS:///localhost:1"), ("localhost".to_owned(), 1));
        assert_eq!(dns("dns:///[::1]:50051"), ("::1".to_owned(), 50051));
    }

    #[test]
    fn dns_needs_a_host_and_a_port() {
        assert!(error("dns:///auth").contains("missing port"));
        assert!(error("dns:///auth:").contains("missing port"));
        assert!(error("dns:///:50051").contains("missing host"));
        assert!(error("dns:///auth:http").contains("not a port"));
        assert!(error("dns:///auth:0").contains("not a port"));
        assert!(error("dns:///auth:65536").contains("not a port"));
        assert!(error("dns:///::1:50051").contains("brackets"));
        assert!(error("dns://8.8.8.8/auth:50051").contains("not supported"));
        assert!(error("dns:///auth/x:50051").contains("not a host name"));
    }

    #[test]
    fn other_forms_are_rejected_clearly() {
        assert!(error("").contains("empty"));
        assert!(error("   ").contains("empty"));
        assert!(error("auth:50051").contains("expected http://"));
        assert!(error("grpc://auth:50051").contains("unsupported scheme"));
        assert!(error("http://auth").contains("missing port"));
        assert!(error("http://auth:0").contains("not a port"));
        assert!(error("http://auth:50051/v1").contains("path"));
        assert!(error("http://auth:50051?x=1").contains("query"));
        assert!(error("http://user@auth:50051").contains("user information"));
        assert!(error("http://a:1 http://b:2").contains("not a URL"));
        assert!(error("http://a:1, dns:///b:2").contains("expected http://"));
    }

    #[test]
    fn timeouts_and_transport_failures_become_unavailable() {
        let deadline = Duration::from_millis(300);
        let expired = map_status(Status::cancelled("Timeout expired"), deadline);
        assert_eq!(expired.code(), Code::Unavailable);
        assert_eq!(
            expired.message(),
            "auth-service did not answer within 300ms"
        );
        let exceeded = map_status(Status::deadline_exceeded("late"), deadline);
        assert_eq!(
            exceeded.message(),
            "auth-service did not answer within 300ms"
        );
        for status in [
            Status::unavailable("refused"),
            Status::unknown("broken pipe"),
        ] {
            let mapped = map_status(status, deadline);
            assert_eq!(mapped.code(), Code::Unavailable);
            assert!(mapped.message().starts_with("auth-service unavailable: "));
        }
    }

    #[test]
    fn statuses_from_auth_service_pass_through() {
        for code in [
            Code::Unauthenticated,
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::Internal,
        ] {
            let mapped = map_status(Status::new(code, "from auth"), Duration::from_secs(2));
            assert_eq!(mapped.code(), code);
            assert_eq!(mapped.message(), "from auth");
        }
    }

    #[tokio::test]
    async fn dns_members_follow_the_resolved_addresses() {
        let a: SocketAddr = "10.0.0.1:50051".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:50051".parse().unwrap();
        let mut answers = vec![
            Ok(vec![a]),
            Err(std::io::Error::other("resolver down")),
            Ok(vec![a, b]),
            Ok(vec![]),
            Ok(vec![b]),
        ]
        .into_iter();
        let resolve: Resolve = Box::new(move || {
            let answer = answers.next().unwrap_or_else(|| Ok(vec![b]));
            Box::pin(async move { answer })
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let template = EndpointTemplate::new("auth", 50051, None, DEFAULT_DEADLINE).unwrap();
        let source = Source::Dns(Box::new(Dns {
            name: "auth".to_owned(),
            resolve,
            template,
            refresh: Duration::from_millis(5),
        }));
        // No health check within the test: membership alone.
        let task = tokio::spawn(balancer::maintain(
            source,
            tx,
            DEFAULT_DEADLINE,
            Duration::from_secs(3600),
        ));

        let mut seen = Vec::new();
        while seen.len() < 3 {
            match rx.recv().await.unwrap() {
                Change::Insert(key, endpoint) => {
                    assert_eq!(endpoint.uri().to_string(), format!("http://{key}/"));
                    seen.push(format!("+{key}"));
                }
                Change::Remove(key) => seen.push(format!("-{key}")),
            }
        }
        assert_eq!(
            seen,
            ["+10.0.0.1:50051", "+10.0.0.2:50051", "-10.0.0.1:50051"]
        );

        drop(rx);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the task stops once the balancer is gone")
            .unwrap();
    }

    #[tokio::test]
    async fn new_needs_no_network_and_rejects_bad_settings() {
        let client = AuthClient::new(AuthClientConfig::new("http://127.0.0.1:1")).unwrap();
        assert!(client.balancer.is_none());
        let client = AuthClient::new(AuthClientConfig::new("dns:///auth.invalid:1")).unwrap();
        assert!(client.balancer.is_some());

        let mut zero = AuthClientConfig::new("http://127.0.0.1:1");
        zero.deadline = Duration::ZERO;
        assert!(AuthClient::new(zero).is_err());
        let https = AuthClientConfig::new("https://auth:443");
        assert!(format!("{:#}", AuthClient::new(https).unwrap_err()).contains("TLS"));
        let mut plain_with_tls = AuthClientConfig::new("http://auth:50051");
        plain_with_tls.tls = Some(ClientTlsConfig::new());
        assert!(format!("{:#}", AuthClient::new(plain_with_tls).unwrap_err()).contains("https://"));
    }

    fn answer_expiring_at(expiry: SystemTime) -> pb::ValidateTokenResponse {
        let since_epoch = expiry.duration_since(UNIX_EPOCH).unwrap();
        pb::ValidateTokenResponse {
            user_id: "u1".to_owned(),
            expire_time: Some(grimos_proto::wkt::Timestamp {
                seconds: i64::try_from(since_epoch.as_secs()).unwrap(),
                nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap(),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_cached_answer_is_never_used_past_the_token_expiry() {
        let validations = Validations::new(Duration::from_secs(60), 16);
        let expired = SystemTime::now() - Duration::from_millis(1);
        validations.insert("expired", &answer_expiring_at(expired), 0);
        assert!(validations.get("expired").is_none(), "not even stored");

        let expiry = SystemTime::now() + Duration::from_millis(300);
        validations.insert("soon", &answer_expiring_at(expiry), 0);
        assert!(
            validations.get("soon").is_some(),
            "reused before its expiry"
        );
        grimos_test_support::clock::wait_until(expiry).await;
        assert!(validations.get("soon").is_none(), "not after it");
    }

    #[test]
    fn forgetting_a_session_forgets_its_answers_and_the_ones_in_flight() {
        let validations = Validations::new(Duration::from_secs(60), 16);
        let expiry = SystemTime::now() + Duration::from_secs(600);
        let answer = |session: &str| pb::ValidateTokenResponse {
            session_id: session.to_owned(),
            ..answer_expiring_at(expiry)
        };
        let before = validations.generation();
        validations.insert("a1", &answer("a"), before);
        validations.insert("a2", &answer("a"), before);
        validations.insert("b1", &answer("b"), before);

        validations.forget(|answer| answer.session_id == "a");

        assert!(validations.get("a1").is_none());
        assert!(validations.get("a2").is_none());
        assert!(validations.get("b1").is_some(), "another session is kept");
        // An answer asked for before the revocation and arriving after it is not kept.
        validations.insert("a3", &answer("a"), before);
        assert!(validations.get("a3").is_none());
        validations.insert("b2", &answer("b"), validations.generation());
        assert!(validations.get("b2").is_some());
    }

    #[test]
    fn new_outside_a_runtime_is_an_error_not_a_panic() {
        let error = AuthClient::new(AuthClientConfig::new("http://127.0.0.1:1")).unwrap_err();
        assert!(error.to_string().contains("tokio runtime"));
    }
}
