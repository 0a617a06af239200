//! The balanced channel over several auth-service endpoints ([`balanced`]), built from tower's
//! parts the way tonic's `Channel::balance_channel` is (a power-of-two-choices
//! [`Balance`] over a stream of endpoint changes, behind a [`Buffer`]), but with each endpoint
//! a service of ours ([`EndpointService`]), which tonic's balancer has no room for:
//!
//! - **Ejection at once.** A call on an endpoint that failed in a way that proves it was not
//!   processed (a refused connection, a GOAWAY that left the stream out, `REFUSED_STREAM`,
//!   the server's connection-limit answer; see `retry`) closes that endpoint's gate before
//!   the error reaches the caller: from then on the endpoint reports itself not ready, so the
//!   balancer cannot pick it, and the retry goes elsewhere. The discovery task is told
//!   ([`Report`]) and treats the endpoint as one that failed its health check: it is out
//!   until a check passes, when a fresh service (a new connection) takes its place.
//! - **Served on probation.** When no endpoint passes its health check, the discovery task
//!   keeps them all in rotation, each on probation; the first call one of them serves is
//!   reported too, and that endpoint is back in rotation at once rather than at its next
//!   check, so the calls stop going to the ones still down.
//! - **Load.** tonic's endpoints all report a load of zero, so its "power of two choices" is
//!   a random pick. Ours report their calls in flight, so of two random endpoints the less
//!   busy one is picked, and an endpoint that stopped answering (a partition, not a refusal)
//!   soon gets no new calls while its calls wait out their deadline.
//! - **Counts.** Each endpoint counts its calls in `auth_client_endpoint_calls_total{endpoint}`.
//!
//! The discovery task (`discovery`) decides which endpoints are in the set; this module only
//! carries out its changes and reports ejections back to it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::Load;
use tower::util::BoxService;
use tower::{BoxError, Service};

use super::retry;

/// Calls queued for the balancer while it picks an endpoint (as tonic's channel does).
const BUFFER: usize = 1024;

type Request = http::Request<tonic::body::Body>;
type Response = http::Response<tonic::body::Body>;
type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

/// The balanced channel: a cheap-to-clone handle on the balancer's task.
pub(super) type BalancedChannel = Buffer<Request, BoxFuture>;

/// A change to the balancer's set of endpoints, keyed by `host:port`.
pub(super) type EndpointChange = Change<String, EndpointService>;

/// What a call showed about its endpoint's service, reported to the discovery task.
#[derive(Debug)]
pub(super) struct Report {
    /// The endpoint's key.
    pub(super) key: String,
    /// The service the call went through, to tell it from a newer one under the same key.
    pub(super) gate: Gate,
    pub(super) outcome: Outcome,
}

/// See [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A call was not processed; the service was ejected. Why: a `retry` reason (`connect`,
    /// `goaway`, ...).
    Ejected(&'static str),
    /// The service, inserted on probation, served a call (once per service).
    Served,
}

/// The balanced channel, fed by the changes sent to the returned sender; ejections are sent to
/// `ejections`. The balancer runs in a task that ends when the channel and the sender are gone.
pub(super) fn balanced() -> (BalancedChannel, mpsc::Sender<EndpointChange>) {
    let (changes, receiver) = mpsc::channel(BUFFER);
    let balance = Balance::new(Changes(receiver));
    let (channel, worker) = Buffer::pair(BoxService::new(balance), BUFFER);
    tokio::spawn(worker);
    (channel, changes)
}

/// The balancer's source of changes.
struct Changes(mpsc::Receiver<EndpointChange>);

impl tokio_stream::Stream for Changes {
    type Item = Result<EndpointChange, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.poll_recv(cx) {
            Poll::Ready(Some(change)) => Poll::Ready(Some(Ok(change))),
            // The discovery task is gone (the client is being dropped): no more changes, but
            // the balancer keeps what it has rather than failing the calls still queued.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether one endpoint service has been ejected, and whether it is on probation (its
/// endpoint failed its last health check); shared between the service and its [`Report`]s,
/// and compared by identity.
#[derive(Debug, Clone, Default)]
pub(super) struct Gate(Arc<GateState>);

#[derive(Debug, Default)]
struct GateState {
    closed: AtomicBool,
    probation: AtomicBool,
}

impl Gate {
    fn close(&self) -> bool {
        !self.0.closed.swap(true, Ordering::AcqRel)
    }

    /// Whether the service of this gate was ejected.
    pub(super) fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Puts the service on probation: its next served call is reported.
    pub(super) fn begin_probation(&self) {
        self.0.probation.store(true, Ordering::Release);
    }

    /// Ends the probation; whether it was on (so exactly one caller reports it).
    fn end_probation(&self) -> bool {
        // The load keeps the hot path (a healthy endpoint) free of a contended write.
        self.0.probation.load(Ordering::Relaxed) && self.0.probation.swap(false, Ordering::AcqRel)
    }

    /// Whether `self` and `other` are the gate of the same service.
    pub(super) fn same(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One endpoint in the balancer: a lazily connected channel with a gate, a load and a count.
pub(super) struct EndpointService {
    key: String,
    channel: Channel,
    gate: Gate,
    in_flight: Arc<AtomicUsize>,
    calls: metrics::Counter,
    reports: mpsc::UnboundedSender<Report>,
}

impl EndpointService {
    /// A fresh service (its own connection, made on the first call) for `endpoint`, on
    /// probation when its endpoint failed its last health check.
    pub(super) fn new(
        key: String,
        endpoint: &Endpoint,
        probation: bool,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        let calls =
            metrics::counter!("auth_client_endpoint_calls_total", "endpoint" => key.clone());
        let gate = Gate::default();
        if probation {
            gate.begin_probation();
        }
        Self {
            key,
            channel: endpoint.connect_lazy(),
            gate,
            in_flight: Arc::new(AtomicUsize::new(0)),
            calls,
            reports,
        }
    }

    /// This service's gate (closed once it is ejected).
    pub(super) fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// The endpoint's key.
    #[cfg(test)]
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

impl Service<Request> for EndpointService {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.gate.is_closed() {
            // Never ready again: the discovery task replaces or removes this service.
            return Poll::Pending;
        }
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> BoxFuture {
        self.calls.increment(1);
        let in_flight = InFlight::start(&self.in_flight);
        let call = self.channel.call(request);
        let reporter = Reporter {
            key: self.key.clone(),
            gate: self.gate.clone(),
            reports: self.reports.clone(),
        };
        Box::pin(async move {
            let result = call.await.map_err(BoxError::from);
            drop(in_flight);
            match &result {
                Err(error) => {
                    if let Some(reason) = retry::not_processed(error.as_ref()) {
                        reporter.eject(reason);
                    }
                }
                Ok(response) => {
                    if response
                        .headers()
                        .contains_key(grimos_server::NOT_PROCESSED_HEADER)
                    {
                        reporter.eject("overload");
                    } else {
                        reporter.served();
                    }
                }
            }
            result
        })
    }
}

impl Load for EndpointService {
    type Metric = usize;

    fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One call in flight on an endpoint, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a call needs to report on its endpoint's service.
struct Reporter {
    key: String,
    gate: Gate,
    reports: mpsc::UnboundedSender<Report>,
}

impl Reporter {
    /// Closes the gate (the balancer stops picking the endpoint now) and tells the discovery
    /// task, once per service.
    fn eject(self, reason: &'static str) {
        if self.gate.close() {
            metrics::counter!("auth_client_endpoint_ejections_total", "endpoint" => self.key.clone(), "reason" => reason)
                .increment(1);
            tracing::info!(endpoint = %self.key, reason, "auth-service endpoint ejected after a call it did not process");
            self.send(Outcome::Ejected(reason));
        }
    }

    /// Tells the discovery task that a service on probation served a call, once per service.
    fn served(self) {
        if self.gate.end_probation() {
            self.send(Outcome::Served);
        }
    }

    fn send(self, outcome: Outcome) {
        // The discovery task is gone only when the client is: nobody needs the report.
        let _ = self.reports.send(Report {
            key: self.key,
            gate: self.gate,
            outcome,
        });
    }
}
