//! Prometheus metrics: requests by route or rpc and status, latency histograms, and (from
//! the auth client) auth-service call latency and errors. One recorder per process.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process's recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
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

/// Middleware recording every matched request: HTTP routes by method, route template and
/// status; gRPC and gRPC-Web calls by rpc path and `grpc-status`.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let grpc = crate::http::is_grpc(request.headers());
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let seconds = start.elapsed().as_secs_f64();
    if grpc {
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_owned();
        metrics::counter!("grpc_server_requests_total", "rpc" => path.clone(), "code" => code)
            .increment(1);
        metrics::histogram!("grpc_server_request_duration_seconds", "rpc" => path).record(seconds);
    } else {
        let status = response.status().as_u16().to_string();
        metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
            .record(seconds);
    }
    response
}
