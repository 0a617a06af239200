//! Prometheus metrics of a serving process: the one recorder ([`recorder`]) and the middleware
//! that counts and times every request of a port ([`track`]): gRPC and gRPC-Web calls by rpc
//! and `grpc-status`, HTTP requests by method, route template and status, each labelled with
//! the server that answered (`user`, `auth`), since the embedded auth-service shares its
//! process, and so its recorder, with user-service.

use std::sync::OnceLock;
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
    metrics::gauge!("grimos_build_info", "server" => server, "version" => version).set(1.0);
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

/// The response of `/metrics`: the recorder in Prometheus text format.
pub fn render() -> Response {
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
