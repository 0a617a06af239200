//! The one call path of [`AuthClient`]: every rpc goes through [`AuthClient::call`] (or
//! [`AuthClient::call_for_response`] when the caller reads the answer's metadata), which runs
//! it in its client span, under one deadline and a hard bound, retries it as `retry` allows,
//! maps its status (`status`), records it and logs failures.

use std::future::Future;
use std::time::{Duration, Instant};

use grimos_proto::auth::v1 as pb;
use tonic::Status;
use tracing::Instrument as _;

use super::retry::{self, Idempotency};
use super::{AuthClient, outgoing, status};

/// The hard bound on a call is the deadline plus this: `grpc-timeout` should fire first.
const HARD_TIMEOUT_MARGIN: Duration = Duration::from_millis(100);

impl AuthClient {
    /// The one call path, in the call's client span (its retries included, whose metadata
    /// carries that span as the trace parent): see [`AuthClient::attempts`]. The answer's
    /// message; [`AuthClient::call_for_response`] keeps its metadata too.
    pub(super) async fn call<R, F, Fut>(
        &self,
        rpc: &'static str,
        idempotency: Idempotency,
        call: F,
    ) -> Result<R, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.call_for_response(rpc, idempotency, call)
            .await
            .map(tonic::Response::into_inner)
    }

    /// [`AuthClient::call`], answering with auth-service's whole response.
    pub(super) async fn call_for_response<R, F, Fut>(
        &self,
        rpc: &'static str,
        idempotency: Idempotency,
        call: F,
    ) -> Result<tonic::Response<R>, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let span = match rpc {
            // Health checks are the client's own business, not a request's.
            "HealthCheck" => tracing::Span::none(),
            rpc => {
                grimos_common::telemetry::client_span(pb::auth_service_server::SERVICE_NAME, rpc)
            }
        };
        let result = self
            .attempts(rpc, idempotency, call)
            .instrument(span.clone())
            .await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        grimos_common::telemetry::record_grpc_code(&span, code, false);
        result
    }

    /// Runs `call` under the hard bound, retries it as `retry` allows within the same
    /// deadline, maps its status, records it and logs failures.
    async fn attempts<R, F, Fut>(
        &self,
        rpc: &'static str,
        idempotency: Idempotency,
        mut call: F,
    ) -> Result<tonic::Response<R>, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let start = Instant::now();
        let mut cause = None;
        let (budget, callers) = outgoing::budget(self.deadline);
        // Every attempt carries what is left of one deadline (the interceptor reads it).
        let end = tokio::time::Instant::now() + budget;
        let mut retries = 0;
        let outcome = loop {
            let attempt = grimos_server::with_deadline(end, call());
            let outcome = tokio::time::timeout_at(end + HARD_TIMEOUT_MARGIN, attempt).await;
            if let Ok(Err(status)) = &outcome
                && retries < retry::MAX_RETRIES
                && let Some(reason) = retry::reason(status, idempotency)
            {
                retries += 1;
                let backoff = retry::backoff(retries);
                if tokio::time::Instant::now() + backoff < end {
                    retry::record(rpc, reason);
                    tracing::debug!(rpc, reason, retries, "retrying an auth-service call");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            break outcome;
        };
        let result = match outcome {
            // The caller's deadline passed first: that is what the caller is told, whatever
            // the call ended with meanwhile.
            Ok(Err(_)) | Err(_) if callers && start.elapsed() >= budget => Err(
                Status::deadline_exceeded("the deadline passed while waiting for auth-service"),
            ),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(status)) => {
                cause = status::transport_cause(&status);
                Err(status::map_status(status, self.deadline))
            }
            Err(_) => Err(status::did_not_answer(self.deadline)),
        };
        match &result {
            Ok(_) => status::record(rpc, start, tonic::Code::Ok),
            Err(status) => {
                status::record(rpc, start, status.code());
                if status.code() == tonic::Code::Unavailable {
                    // The cause (a refused handshake, say) is logged, not sent to callers.
                    tracing::warn!(
                        rpc,
                        error = status.message(),
                        cause = cause.as_deref().unwrap_or_default(),
                        retries,
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
