//! One connection: hyper serves it, and a watchdog ends it when a client holds it without
//! using it.
//!
//! hyper bounds what it can see (header size and time, streams, pings), but not a connection
//! that is idle between requests over HTTP/2, nor a response the client never takes (an
//! HTTP/2 window left at zero does not even let hyper poll the body). So every request is
//! tracked from its arrival until its response body is dropped, and the watchdog checks the
//! connection every tick: no request at all within `header_read_timeout` → closed; idle past
//! `idle_timeout` → graceful close (dropped if not done within a second); a response not
//! taken, or writes blocked, for `send_timeout` → closed at once; a graceful stop not done
//! within `request_timeout` → closed at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::Limits;
use crate::body::DeadlineBody;
use crate::linger::WriteStall;

/// How long an idle connection's graceful close may take before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every connection of one port shares.
pub(crate) struct Shared {
    pub(crate) name: &'static str,
    pub(crate) limits: Limits,
    pub(crate) router: Router,
    pub(crate) builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
}

/// The requests of one connection that are in flight, and since when it has had none.
#[derive(Default)]
struct Tracker {
    state: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    /// When the connection opened; `None` once it has had a request.
    unused_since: Option<Instant>,
    next_id: u64,
    in_flight: usize,
    /// When the last request in flight ended (or the connection opened).
    idle_since: Option<Instant>,
    /// Requests whose response is being sent, with when it started or last produced a frame.
    sending: HashMap<u64, Instant>,
}

impl Tracker {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(TrackerState {
                unused_since: Some(Instant::now()),
                idle_since: Some(Instant::now()),
                ..TrackerState::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.lock();
        state.next_id += 1;
        state.in_flight += 1;
        state.unused_since = None;
        state.idle_since = None;
        RequestGuard {
            tracker: self.clone(),
            id: state.next_id,
        }
    }

    /// How long the connection has had no request in flight (zero while it has one).
    fn idle_for(&self, now: Instant) -> Duration {
        self.lock()
            .idle_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// How long the connection has been open without ever having a request (zero once it
    /// has had one).
    fn never_used_for(&self, now: Instant) -> Duration {
        self.lock()
            .unused_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// How long the response still being sent that has waited longest (since it started, or
    /// since its last frame) has been waiting.
    fn oldest_send(&self, now: Instant) -> Duration {
        self.lock()
            .sending
            .values()
            .map(|since| now.saturating_duration_since(*since))
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// A request in flight; it ends when the guard is dropped (with the response body, or with
/// the request if it never got one).
struct RequestGuard {
    tracker: Arc<Tracker>,
    id: u64,
}

impl RequestGuard {
    fn sending(&self) {
        self.tracker.lock().sending.insert(self.id, Instant::now());
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.tracker.lock();
        state.sending.remove(&self.id);
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Some(Instant::now());
        }
    }
}

pin_project! {
    /// A response body that ends its request when dropped.
    pub(crate) struct TrackedBody {
        #[pin]
        inner: axum::body::Body,
        guard: RequestGuard,
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            // The client took what came before (hyper polls for a frame only when there is
            // room for it): the wait is counted from here. A long-lived stream (a server
            // stream with heartbeats) is not a stuck response.
            this.guard.sending();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router, seen by hyper: each request tracked, its body under the body deadline.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    tracker: Arc<Tracker>,
    body_read_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = self.tracker.start();
        let deadline = Instant::now() + self.body_read_timeout;
        let request = request.map(|body| axum::body::Body::new(DeadlineBody::new(body, deadline)));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            guard.sending();
            Ok(response.map(|inner| TrackedBody { inner, guard }))
        })
    }
}

/// How often a connection's watchdog looks: a fraction of the shortest bound it enforces, so
/// that short test settings are honoured too, but at most once a second.
fn tick(limits: &Limits) -> Duration {
    (limits
        .idle_timeout
        .min(limits.send_timeout)
        .min(limits.header_read_timeout)
        / 4)
    .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Serves one (already TLS-terminated) connection until it ends, the watchdog ends it, or
/// the server stops (`stop`) and its requests have finished.
pub(crate) async fn serve<I>(
    io: I,
    stall: Arc<WriteStall>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let tracker = Tracker::new();
    let service = ConnectionService {
        router: shared.router.clone(),
        tracker: tracker.clone(),
        body_read_timeout: shared.limits.body_read_timeout,
    };
    let limits = &shared.limits;
    let connection = shared.builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut ticker = tokio::time::interval(tick(limits));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set once a graceful close has begun: by then it must be done.
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    let reason = if error
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout)
                    {
                        "header_timeout"
                    } else {
                        "error"
                    };
                    closed(shared.name, reason);
                    tracing::debug!(server = shared.name, error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stopping| *stopping), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.request_timeout);
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                if let Some(deadline) = closing {
                    if now >= deadline {
                        closed(shared.name, "close_timeout");
                        return;
                    }
                } else if tracker.oldest_send(now) >= limits.send_timeout
                    || stall.blocked_for(now) >= limits.send_timeout
                {
                    closed(shared.name, "send_timeout");
                    return;
                } else if tracker.never_used_for(now) >= limits.header_read_timeout {
                    // Connected, but no request (not even an HTTP/2 preface) in time.
                    closed(shared.name, "header_timeout");
                    return;
                } else if tracker.idle_for(now) >= limits.idle_timeout {
                    closed(shared.name, "idle");
                    connection.as_mut().graceful_shutdown();
                    // Nothing is in flight: the close needs only the GOAWAY to be sent.
                    closing = Some(now + IDLE_CLOSE_GRACE);
                }
            }
        }
    }
}

/// Counts a connection the server ended, by why.
pub(crate) fn closed(server: &'static str, reason: &'static str) {
    metrics::counter!("server_connections_closed_total", "server" => server, "reason" => reason)
        .increment(1);
}
