//! What every outgoing call carries, added by a tonic interceptor rather than by each call
//! site: its deadline (`grpc-timeout`), the id of the request being served (from
//! [`grimos_server::request_id`]), the trace context of the call's span (W3C `traceparent`,
//! when spans are exported), and, on the service client, the service credential.

use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The interceptor of one of the client's generated clients.
#[derive(Clone)]
pub(crate) struct Outgoing {
    /// `AUTH_CLIENT_DEADLINE`; `None` for the long-lived revocation stream, which must not
    /// carry a unary call's deadline.
    deadline: Option<Duration>,
    /// What the client presents as `authorization`.
    credential: Credential,
}

/// Whether calls present the service credential.
#[derive(Clone)]
enum Credential {
    /// Calls on behalf of end users: their own tokens are in the messages.
    None,
    /// `CreateCredential` and `DeleteCredential`: `Bearer <GRIMOS_SERVICE_TOKEN>`.
    Service(AsciiMetadataValue),
    /// The service calls without a service token configured: refused before sending.
    Missing,
}

impl Outgoing {
    /// For calls on behalf of end users.
    pub(super) fn user(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            credential: Credential::None,
        }
    }

    /// For the service-only calls, presenting `token` (none configured: each call fails with
    /// `INTERNAL`, which says so).
    pub(super) fn service(deadline: Duration, token: Option<&str>) -> anyhow::Result<Self> {
        let credential = match token {
            None => Credential::Missing,
            Some(token) => {
                let mut value =
                    AsciiMetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                        anyhow::anyhow!("GRIMOS_SERVICE_TOKEN must be visible ASCII characters")
                    })?;
                // Keeps the header out of HPACK's dynamic table.
                value.set_sensitive(true);
                Credential::Service(value)
            }
        };
        Ok(Self {
            deadline: Some(deadline),
            credential,
        })
    }

    /// For a stream that lives until it fails: the service credential, and no deadline.
    pub(super) fn stream(token: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            deadline: None,
            ..Self::service(Duration::ZERO, token)?
        })
    }
}

impl Interceptor for Outgoing {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(deadline) = self.deadline {
            request.set_timeout(budget(deadline).0);
        }
        if let Some(id) = grimos_server::request_id() {
            // The id was checked when the request came in; a caller's test or task may still
            // hand one that is not metadata, which is then not forwarded.
            if let Ok(value) = AsciiMetadataValue::try_from(&*id) {
                request
                    .metadata_mut()
                    .insert(grimos_server::REQUEST_ID_HEADER, value);
            }
        }
        grimos_common::telemetry::inject(request.metadata_mut());
        match &self.credential {
            Credential::None => {}
            Credential::Service(value) => {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Credential::Missing => {
                tracing::error!(
                    "no service token configured: cannot call auth-service as a service"
                );
                return Err(Status::internal("no service token configured"));
            }
        }
        Ok(request)
    }
}

/// The time a call may take: `deadline` (`AUTH_CLIENT_DEADLINE`), or less when the request
/// being served has less left (its caller's `grpc-timeout`, or `GRIMOS_REQUEST_TIMEOUT`), and
/// whether the caller's deadline is what bounds it.
pub(super) fn budget(deadline: Duration) -> (Duration, bool) {
    match grimos_server::call_deadline() {
        Some(callers) => {
            let left = callers.saturating_duration_since(tokio::time::Instant::now());
            if left < deadline {
                (left, true)
            } else {
                (deadline, false)
            }
        }
        None => (deadline, false),
    }
}
