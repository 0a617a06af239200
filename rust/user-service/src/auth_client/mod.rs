//! The gRPC client of `grimos.auth.v1.AuthService`: the only way user-service talks to
//! auth-service, whether it runs elsewhere (`AUTH_SERVICE_ADDRESS`) or in this process.
//!
//! One job per file:
//! - `address`: parsing `AUTH_SERVICE_ADDRESS` ([`AuthAddress`]).
//! - `endpoints`, `discovery`, `balancer`: the endpoints dialled, and the channel over them
//!   (one URL, or a list or a DNS name re-resolved periodically, balanced client-side over
//!   the endpoints that pass their health checks, an endpoint ejected at once when a call
//!   proves it is not processing calls).
//! - `tls`: TLS to an external auth-service ([`tls::client_config`]).
//! - `outgoing`: what every call carries (deadline, request id, service credential), added
//!   by a tonic interceptor.
//! - `call`: the one call path (span, deadline, hard bound, retries, status, metrics, logs).
//! - `status`: the one mapping of failures to what callers see, and the metrics of each call.
//! - `retry`: which failed calls may be sent again.
//! - `cache`: recent `ValidateToken` answers.
//! - `local`: verifying tokens here, against the keys and role table auth-service publishes
//!   (`AUTH_LOCAL_VERIFICATION`), with `ValidateToken` as the fallback whenever local state
//!   is not provably current; `watch`: the `WatchRevocations` stream that keeps it current.
//! - `health`: the one health check, used by readiness and by the balancer's probes.
//!
//! Invariants:
//! - Construction does no network I/O. Channels connect lazily and reconnect by themselves,
//!   so user-service starts while auth-service is down and recovers when it comes up.
//! - The embedded auth-service ([`AuthClient::in_process`]) is called through its tower
//!   service: the same generated client, codec, status mapping, deadline and tracing, and
//!   no socket, TLS or port of its own to trust.
//! - Every call is bounded: `grpc-timeout` carries the deadline to auth-service, and a hard
//!   timer a little longer than the deadline covers time spent before a connection is picked
//!   (the balancer waits for a ready endpoint without looking at `grpc-timeout`).
//! - Callers see a status auth-service produced (`UNAUTHENTICATED`, `INVALID_ARGUMENT`,
//!   `ALREADY_EXISTS`, `INTERNAL`, ...) unchanged, and `UNAVAILABLE` when auth-service could
//!   not be reached or did not answer in time. `status::map_status` is the only place that
//!   decides.
//! - A call is retried, within the same deadline, only when it provably was not processed (a
//!   refused connection, a GOAWAY that left it out, `REFUSED_STREAM`, the server's
//!   connection-limit answer), or, for the idempotent reads (`ValidateToken`,
//!   `CheckPermission`, the health check), after any `UNAVAILABLE`; at most twice, and never
//!   a call that may have run (see `retry`). So a replica that stops or restarts costs no
//!   caller a failed request.
//! - Tokens, passwords and the service token are never logged or recorded in metrics.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use grimos_proto::auth::v1 as pb;
use grimos_proto::auth::v1::auth_service_client::AuthServiceClient;
use secrecy::{ExposeSecret, SecretString};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::ClientTlsConfig;
use tonic_health::pb::health_client::HealthClient;
use tower::util::BoxCloneSyncService;
use tower::util::{MapErr, MapResponse};

mod address;
mod balancer;
mod cache;
mod call;
mod discovery;
mod endpoints;
mod health;
mod local;
mod outgoing;
mod retry;
mod status;
pub mod tls;
mod watch;

pub use address::AuthAddress;
pub use local::{DEFAULT_KEY_FETCH_INTERVAL, LocalSettings, MAX_SILENCE};

use cache::{VALIDATION_CACHE_CAPACITY, Validations};
use discovery::AbortOnDrop;
pub(crate) use outgoing::Outgoing;
use retry::Idempotency;

/// How long a call may take when the configuration does not say.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
/// How often a `dns:///` address is re-resolved when the configuration does not say.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);
/// How often the balancer checks each endpoint's health when the configuration does not say.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What the generated clients send calls through: a channel to a remote auth-service (one
/// endpoint, or the balancer), or the embedded one's tower service (which cannot fail).
pub type Transport = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;

/// Why a call did not reach auth-service or did not get its answer; its sources say what
/// happened (tonic reads them to pick the status, `retry` to decide on a retry).
#[derive(Debug)]
pub struct TransportError(tower::BoxError);

impl TransportError {
    fn new(error: tower::BoxError) -> Self {
        Self(error)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The wrapped error is shown by `Display`; the chain continues with its causes.
        self.0.source()
    }
}

/// The generated client of auth-service as this client calls it (deadline, request id and, on
/// the service client, the service credential added by [`outgoing`]).
pub(crate) type Intercepted = InterceptedService<Transport, Outgoing>;

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
    /// How often the balancer (a list or a `dns:///` name) checks each endpoint's health
    /// ([`DEFAULT_HEALTH_CHECK_INTERVAL`]: 1 s).
    pub health_check_interval: Duration,
}

impl AuthClientConfig {
    /// The defaults for `address`: 2 s deadline, no service token, no TLS, 5 s DNS refresh,
    /// a health check every second.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            deadline: DEFAULT_DEADLINE,
            service_token: None,
            tls: None,
            dns_refresh: DEFAULT_DNS_REFRESH,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
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
            .field("health_check_interval", &self.health_check_interval)
            .finish()
    }
}

/// A cheap-to-clone client of auth-service; every clone shares one channel.
#[derive(Clone)]
pub struct AuthClient {
    /// Calls on behalf of end users.
    user: AuthServiceClient<Intercepted>,
    /// `CreateCredential` and `DeleteCredential`, with the service credential.
    service: AuthServiceClient<Intercepted>,
    /// `WatchRevocations`: the service credential and no deadline.
    stream: AuthServiceClient<Intercepted>,
    health: HealthClient<Intercepted>,
    deadline: Duration,
    /// The task that keeps a balanced channel's endpoints (see `discovery`); stopped when
    /// the last clone is dropped.
    balancer: Option<Arc<AbortOnDrop>>,
    /// Recent `ValidateToken` answers, if enabled.
    validations: Option<Arc<Validations>>,
    /// Local verification, if enabled.
    local: Option<Arc<local::Local>>,
    /// The `watch` task, stopped when the last clone is dropped (the task's own clone does
    /// not hold it).
    watch: Option<Arc<AbortOnDrop>>,
}

impl fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClient")
            .field("deadline", &self.deadline)
            .field("balanced", &self.balancer.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthClient {
    /// A client of the auth-service at `config.address`, built without touching the network.
    ///
    /// Must be called inside a tokio runtime: the channel's workers (and, for a list or
    /// `dns:///`, the task that keeps the balancer's endpoints) are spawned on it. Fails on an
    /// unparsable address, a zero deadline, refresh period or health-check interval,
    /// `https://` without TLS settings, TLS settings with an `http://` address, or a service
    /// token that cannot be sent as metadata.
    pub fn new(config: AuthClientConfig) -> anyhow::Result<AuthClient> {
        if config.deadline.is_zero() {
            bail!("the auth-service deadline must be positive");
        }
        tokio::runtime::Handle::try_current()
            .context("AuthClient::new must be called inside a tokio runtime")?;
        let address = AuthAddress::parse(&config.address)?;
        let (transport, balancer) = discovery::channel(
            address,
            config.tls.as_ref(),
            discovery::Settings {
                deadline: config.deadline,
                health_check_interval: config.health_check_interval,
                dns_refresh: config.dns_refresh,
            },
        )?;
        let mut client = Self::with_transport(transport, config.deadline, config.service_token)?;
        client.balancer = balancer;
        Ok(client)
    }

    /// A client of an auth-service in this process, called through `service` (its
    /// [`auth_service::App::in_process`] router): no socket, same codec and status mapping.
    pub fn in_process(
        service: axum::Router,
        deadline: Duration,
        service_token: Option<SecretString>,
    ) -> anyhow::Result<AuthClient> {
        let service = MapResponse::new(service, |response: http::Response<axum::body::Body>| {
            response.map(tonic::body::Body::new)
        });
        let service = MapErr::new(service, |never: Infallible| -> TransportError {
            match never {}
        });
        let transport = Transport::new(service);
        Self::with_transport(transport, deadline, service_token)
    }

    fn with_transport(
        transport: Transport,
        deadline: Duration,
        service_token: Option<SecretString>,
    ) -> anyhow::Result<AuthClient> {
        let token = service_token.as_ref().map(ExposeSecret::expose_secret);
        let user = Outgoing::user(deadline);
        Ok(AuthClient {
            user: AuthServiceClient::with_interceptor(transport.clone(), user.clone()),
            service: AuthServiceClient::with_interceptor(
                transport.clone(),
                Outgoing::service(deadline, token)?,
            ),
            stream: AuthServiceClient::with_interceptor(
                transport.clone(),
                Outgoing::stream(token)?,
            ),
            health: HealthClient::with_interceptor(transport, user),
            deadline,
            balancer: None,
            validations: None,
            local: None,
            watch: None,
        })
    }

    /// Verifies tokens here (see `local`), keeping the revocation set with one
    /// `WatchRevocations` stream, started now on the current runtime.
    #[must_use]
    pub fn with_local_verification(mut self, settings: LocalSettings) -> Self {
        let local = Arc::new(local::Local::new(settings));
        self.local = Some(local.clone());
        let task = tokio::spawn(watch::watch(self.clone(), local));
        self.watch = Some(Arc::new(AbortOnDrop(task)));
        self
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
    ) -> Result<pb::ValidateTokenResponse, Status> {
        plausible(access_token)?;
        if let Some(local) = &self.local
            && let Some(answer) = self.validate_locally(local, access_token).await
        {
            return answer;
        }
        if let Some(answer) = self.validations.as_ref().and_then(|v| v.get(access_token)) {
            return Ok(answer);
        }
        let generation = self.validations.as_ref().map(|v| v.generation());
        let request = pb::ValidateTokenRequest {
            access_token: access_token.to_owned(),
        };
        let answer = self
            .call("ValidateToken", Idempotency::Read, || {
                let (mut auth, request) = (self.user.clone(), request.clone());
                async move { auth.validate_token(request).await }
            })
            .await?;
        if let (Some(validations), Some(generation)) = (&self.validations, generation) {
            validations.insert(access_token, &answer, generation);
        }
        Ok(answer)
    }

    /// `Login`: exchanges an email and password for tokens.
    pub async fn login(&self, request: pb::LoginRequest) -> Result<pb::LoginResponse, Status> {
        self.call("Login", Idempotency::Write, || {
            let (mut auth, request) = (self.user.clone(), request.clone());
            async move { auth.login(request).await }
        })
        .await
    }

    /// An end user's call passed on to auth-service as it came: the message, and the caller's
    /// `authorization` metadata (their bearer token, for rpcs that authenticate the caller),
    /// on the one call path. `call` sends it with the generated client: how the edge
    /// `AuthService` forwards an rpc that needs nothing of user-service.
    ///
    /// It is retried only when it provably was not processed, as any call that may change
    /// something. The answer is auth-service's whole response: the caller decides what of its
    /// metadata it reads and what it passes on (nothing, by default).
    pub(crate) async fn forward<T, R, F>(
        &self,
        rpc: &'static str,
        request: tonic::Request<T>,
        call: impl Fn(AuthServiceClient<Intercepted>, tonic::Request<T>) -> F,
    ) -> Result<tonic::Response<R>, Status>
    where
        T: Clone,
        F: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let authorization = request.metadata().get("authorization").cloned();
        let message = request.into_inner();
        self.call_for_response(rpc, Idempotency::Write, || {
            let mut outgoing = tonic::Request::new(message.clone());
            if let Some(value) = &authorization {
                outgoing
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            call(self.user.clone(), outgoing)
        })
        .await
    }

    /// Forgets every cached `ValidateToken` answer of `user_id`, and revokes locally every
    /// token of theirs issued before `kept` (the access token of the session a password
    /// change opened) or, without one, until now: after auth-service revoked the user's
    /// tokens through this client.
    pub fn forget_user(&self, user_id: &str, kept: Option<&str>) {
        if let Some(validations) = &self.validations {
            validations.forget(|answer| answer.user_id == user_id);
        }
        if let Some(local) = &self.local {
            let issued_until = match kept {
                None => Some(local::now_secs()),
                // Unknown when its key is not: then local state is not trusted anyway, and
                // the stream brings auth-service's revocations.
                Some(token) => local.issued_at(token).map(|iat| iat - 1),
            };
            if let Some(issued_until) = issued_until {
                local.revoke_user(user_id, issued_until);
            }
        }
    }

    /// After a password change through this client, which ended every session of `user_id`:
    /// forgets their cached answers and revokes locally the caller's session (`caller`, the
    /// token the change was made with) and every token of theirs issued before `kept`, the
    /// new session's access token. Their other sessions (some may be of the same second) are
    /// named only by the stream: until it reaches `cursor` (auth-service's answer's
    /// [`grimos_token::CURSOR_HEADER`]), their tokens are checked by `ValidateToken`.
    pub fn password_changed(
        &self,
        user_id: &str,
        caller: Option<&str>,
        kept: &str,
        cursor: Option<&str>,
    ) {
        self.forget_user(user_id, Some(kept));
        if let Some(local) = &self.local {
            if let Some(caller) = caller {
                local.revoke_session_of(caller);
            }
            local.settle_after(user_id, cursor);
        }
    }

    /// `RefreshToken`: exchanges a refresh token for new (rotated) tokens.
    pub async fn refresh_token(
        &self,
        request: pb::RefreshTokenRequest,
    ) -> Result<pb::RefreshTokenResponse, Status> {
        plausible(&request.refresh_token)?;
        self.call("RefreshToken", Idempotency::Write, || {
            let (mut auth, request) = (self.user.clone(), request.clone());
            async move { auth.refresh_token(request).await }
        })
        .await
    }

    /// `RevokeToken`: revokes an access or refresh token, ending its session; every cached
    /// answer of that session is forgotten.
    pub async fn revoke_token(
        &self,
        request: pb::RevokeTokenRequest,
    ) -> Result<pb::RevokeTokenResponse, Status> {
        plausible(&request.token)?;
        let token = request.token.clone();
        let result = self
            .call("RevokeToken", Idempotency::Write, || {
                let (mut auth, request) = (self.user.clone(), request.clone());
                async move { auth.revoke_token(request).await }
            })
            .await;
        if let Some(validations) = &self.validations {
            // Whatever the outcome, this token is not vouched for from memory again.
            validations.remove(&token);
            if let Ok(response) = &result {
                validations.forget(|answer| answer.session_id == response.session_id);
            }
        }
        if let (Some(local), Ok(response)) = (&self.local, &result) {
            local.revoke_session(&response.session_id);
        }
        result
    }

    /// `CheckPermission`: whether the holder of an access token has a permission.
    pub async fn check_permission(
        &self,
        request: pb::CheckPermissionRequest,
    ) -> Result<pb::CheckPermissionResponse, Status> {
        plausible(&request.access_token)?;
        self.call("CheckPermission", Idempotency::Read, || {
            let (mut auth, request) = (self.user.clone(), request.clone());
            async move { auth.check_permission(request).await }
        })
        .await
    }

    /// `CreateCredential`, with the service credential: stores a user's email and password
    /// and returns the roles granted.
    pub async fn create_credential(
        &self,
        request: pb::CreateCredentialRequest,
    ) -> Result<pb::CreateCredentialResponse, Status> {
        self.call("CreateCredential", Idempotency::Write, || {
            let (mut auth, request) = (self.service.clone(), request.clone());
            async move { auth.create_credential(request).await }
        })
        .await
    }

    /// `DeleteCredential`, with the service credential: removes a user's credential and
    /// revokes their tokens.
    pub async fn delete_credential(
        &self,
        user_id: &str,
    ) -> Result<pb::DeleteCredentialResponse, Status> {
        let request = pb::DeleteCredentialRequest {
            user_id: user_id.to_owned(),
        };
        let result = self
            .call("DeleteCredential", Idempotency::Write, || {
                let (mut auth, request) = (self.service.clone(), request.clone());
                async move { auth.delete_credential(request).await }
            })
            .await;
        if result.is_ok() {
            self.forget_user(user_id, None);
        } else if let Some(validations) = &self.validations {
            // It may have run: no cached answer of the user is trusted.
            validations.forget(|answer| answer.user_id == user_id);
        }
        result
    }

    /// `grpc.health.v1.Health/Check` for the overall status (`""`) on the same channel: `Ok`
    /// only when auth-service reports `SERVING`.
    pub async fn health_check(&self) -> Result<(), Status> {
        let response = self
            .call("HealthCheck", Idempotency::Read, || {
                let mut client = self.health.clone();
                async move { client.check(health::request()).await }
            })
            .await?;
        health::verdict(&response).map_err(|reason| {
            Status::unavailable(format!("auth-service is not serving ({reason})"))
        })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

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
        let mut bad_token = AuthClientConfig::new("http://auth:50051");
        bad_token.service_token = Some(SecretString::from("line\nbreak".to_owned()));
        assert!(
            format!("{:#}", AuthClient::new(bad_token).unwrap_err())
                .contains("GRIMOS_SERVICE_TOKEN")
        );
    }

    #[test]
    fn new_outside_a_runtime_is_an_error_not_a_panic() {
        let error = AuthClient::new(AuthClientConfig::new("http://127.0.0.1:1")).unwrap_err();
        assert!(error.to_string().contains("tokio runtime"));
    }
}
