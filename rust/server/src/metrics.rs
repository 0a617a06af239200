//! Prometheus metrics of a serving process: the one recorder ([`recorder`]) and the middleware
//! that counts and times every request of a port ([`track`]): gRPC and gRPC-Web calls by rpc
//! and `grpc-status`, HTTP requests by method, route template and status, each labelled with
//! the server that answered (`user`, `auth`), since the embedded auth-service shares its
//! process, and so its recorder, with user-service.
//!
//! Values that are cheap to read but would cost something to keep current on every change
//! (a database pool's connections) are read when `/metrics` is rendered, by the samplers
//! registered with [`sample_at_scrape`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of every latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the process's recorder, if it is not yet, and records `grimos_build_info` for
/// `server` at `version`: call it before recording anything (each service's `App::build`
/// does), or the first values go to no recorder.
pub fn install(server: &'static str, version: &'static str) {
    recorder();
    describe(&[
        (
            "grimos_build_info",
            "1, labelled with the version each server runs",
        ),
        (
            "grpc_server_requests_total",
            "gRPC and gRPC-Web calls answered, by rpc and numeric grpc-status code",
        ),
        (
            "grpc_server_request_duration_seconds",
            "Durations of gRPC and gRPC-Web calls, by rpc",
        ),
        (
            "http_requests_total",
            "HTTP requests answered, by method, route template and status",
        ),
        (
            "http_request_duration_seconds",
            "Durations of HTTP requests, by method and route template",
        ),
        ("server_connections_total", "Connections accepted"),
        ("server_connections_open", "Connections open now"),
        (
            "server_connections_closed_total",
            "Connections the server closed, by reason",
        ),
        (
            "server_connections_refused_total",
            "Connections refused over GRIMOS_MAX_CONNECTIONS",
        ),
        (
            "server_request_deadlines_exceeded_total",
            "Requests ended by their deadline",
        ),
        (
            "server_request_body_timeouts_total",
            "Requests ended because their body stalled",
        ),
        ("server_ready", "1 while the port reports SERVING, else 0"),
        (
            "db_pool_connections",
            "Database pool connections, by pool and state (in_use, idle), read at each scrape",
        ),
        (
            "db_pool_max_connections",
            "The most connections a database pool opens",
        ),
        (
            "db_up",
            "1 if the database answered the latest readiness check, else 0",
        ),
    ]);
    // The counters without labels exist from the start, at zero.
    metrics::counter!("server_request_deadlines_exceeded_total").increment(0);
    metrics::counter!("server_request_body_timeouts_total").increment(0);
    metrics::gauge!("grimos_build_info", "server" => server, "version" => version).set(1.0);
}

/// Gives each metric of `help` (name, description) its `# HELP` line on `/metrics`.
pub fn describe(help: &[(&'static str, &'static str)]) {
    for &(name, text) in help {
        // The kind does not matter to the Prometheus exporter: it keeps one text per name.
        metrics::describe_counter!(name, text);
    }
}

/// The process's recorder, installed on first use; render it for `/metrics`.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows this one only"
                );
            }
            handle
        })
        .clone()
}

/// What a sampler does: sets its gauges to the values now.
type Sampler = Box<dyn Fn() + Send + Sync>;

/// The samplers [`render`] runs first, by id.
fn samplers() -> &'static Mutex<Vec<(u64, Sampler)>> {
    static SAMPLERS: Mutex<Vec<(u64, Sampler)>> = Mutex::new(Vec::new());
    &SAMPLERS
}

/// Runs `sampler` every time `/metrics` is rendered, before rendering, until the returned
/// [`Sampling`] is dropped (keep it as long as what it reads lives).
#[must_use = "sampling stops when the Sampling is dropped"]
pub fn sample_at_scrape(sampler: impl Fn() + Send + Sync + 'static) -> Sampling {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    samplers()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((id, Box::new(sampler)));
    Sampling(id)
}

/// A sampler registered with [`sample_at_scrape`]; dropping it unregisters it.
#[derive(Debug)]
pub struct Sampling(u64);

impl Drop for Sampling {
    fn drop(&mut self) {
        samplers()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(id, _)| *id != self.0);
    }
}

/// Samples `server`'s database pools (what `pools` returns) at every scrape:
/// `db_pool_connections{server,pool,state="in_use"|"idle"}` and
/// `db_pool_max_connections{server,pool}`.
pub fn sample_pools(
    server: &'static str,
    pools: impl Fn() -> Vec<grimos_common::db::PoolStats> + Send + Sync + 'static,
) -> Sampling {
    sample_at_scrape(move || {
        for stats in pools() {
            let pool = stats.pool;
            metrics::gauge!("db_pool_connections", "server" => server, "pool" => pool, "state" => "in_use")
                .set(f64::from(stats.in_use()));
            metrics::gauge!("db_pool_connections", "server" => server, "pool" => pool, "state" => "idle")
                .set(f64::from(stats.idle));
            metrics::gauge!("db_pool_max_connections", "server" => server, "pool" => pool)
                .set(f64::from(stats.max));
        }
    })
}

/// Records the result of `server`'s latest database check: `db_up{server}` is 1 when the
/// database answered, 0 when it did not.
pub fn database_up(server: &'static str, up: bool) {
    metrics::gauge!("db_up", "server" => server).set(if up { 1.0 } else { 0.0 });
}

/// The response of `/metrics`: the samplers run, then the recorder in Prometheus text format.
pub fn render() -> Response {
    for (_, sampler) in samplers()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        sampler();
    }
    let mut response = Response::new(axum::body::Body::from(recorder().render()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Middleware (with `axum::middleware::from_fn_with_state(server, track)`, as a route layer
/// so that the route template is known) recording every request `server` answers.
pub async fn track(State(server): State<&'static str>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    // Only the labels this kind of request is recorded with are copied out of it.
    let (path, route, method) = if grpc {
        (
            request.uri().path().to_owned(),
            String::new(),
            String::new(),
        )
    } else {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
            .to_owned();
        crate::trace::record_route(request.method().as_str(), &route);
        (String::new(), route, request.method().as_str().to_owned())
    };
    let response = next.run(request).await;
    let seconds = start.elapsed().as_secs_f64();
    if grpc {
        // A unary error is a trailers-only answer (`grpc-status` in the headers); a success
        // carries it in the trailers, after this point, and is counted as OK.
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_owned();
        metrics::counter!("grpc_server_requests_total", "server" => server, "rpc" => path.clone(), "code" => code)
            .increment(1);
        metrics::histogram!("grpc_server_request_duration_seconds", "server" => server, "rpc" => path)
            .record(seconds);
    } else {
        let status = response.status().as_u16().to_string();
        metrics::counter!("http_requests_total", "server" => server, "method" => method.clone(), "route" => route.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("http_request_duration_seconds", "server" => server, "method" => method, "route" => route)
            .record(seconds);
    }
    response
}
