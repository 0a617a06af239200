//! The server span of every request both services serve, as `tower_http`'s `TraceLayer`
//! makes it ([`http_span`] for user-service's port, [`grpc_span`] for auth-service's): the
//! request id on every log line of the request and, when spans are exported, an
//! OpenTelemetry server span under the caller's trace (W3C `traceparent`), named and
//! attributed as the semantic conventions say (`http.request.method`, `url.path`,
//! `http.route`, `http.response.status_code`; for gRPC `rpc.system`, `rpc.service`,
//! `rpc.method`, `rpc.grpc.status_code`), its `trace_id` on the log lines too.
//!
//! [`on_response`] and [`on_eos`] record the outcome; `metrics::track`, which knows the
//! matched route, names an HTTP span for it ([`record_route`]). Nothing here reads a body
//! or records a header other than the request id.

use grimos_common::telemetry;
use http::{HeaderMap, Request, Response};
use tracing::Span;
use tracing::field::Empty;

use crate::{MAX_REQUEST_ID_BYTES, REQUEST_ID_HEADER};

/// The span of a request on user-service's port (HTTP/JSON, gRPC, gRPC-Web).
pub fn http_span<B>(request: &Request<B>) -> Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = request_id(request),
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        http.request.method = Empty,
        url.path = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
        rpc.system = Empty,
        rpc.service = Empty,
        rpc.method = Empty,
        rpc.grpc.status_code = Empty,
        trace_id = Empty,
    );
    start(&span, request);
    span
}

/// The span of a call on auth-service's port (gRPC).
pub fn grpc_span<B>(request: &Request<B>) -> Span {
    let span = tracing::info_span!(
        "grpc",
        path = %request.uri().path(),
        request_id = request_id(request),
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        http.request.method = Empty,
        url.path = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
        rpc.system = Empty,
        rpc.service = Empty,
        rpc.method = Empty,
        rpc.grpc.status_code = Empty,
        trace_id = Empty,
    );
    start(&span, request);
    span
}

/// The request id the request carries (the `RequestIdLayer` in front has made it sane on
/// user-service's port; a caller of auth-service may send anything).
fn request_id<B>(request: &Request<B>) -> &str {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= MAX_REQUEST_ID_BYTES)
        .unwrap_or_default()
}

/// Whether `headers` are a gRPC or gRPC-Web request's or response's.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The OpenTelemetry side of a new server span, before it is first entered (which starts
/// it): its kind, name and request attributes, then the caller's trace.
fn start<B>(span: &Span, request: &Request<B>) {
    if !telemetry::exporting() {
        return;
    }
    let path = request.uri().path();
    span.record("otel.kind", "server");
    span.record("url.path", path);
    span.record("http.request.method", request.method().as_str());
    match grpc_method(path).filter(|_| is_grpc(request.headers())) {
        Some((service, method)) => {
            span.record("otel.name", &path[1..]);
            span.record("rpc.system", "grpc");
            span.record("rpc.service", service);
            span.record("rpc.method", method);
        }
        // Named for its route once routing has found it (`record_route`).
        None => {
            span.record("otel.name", request.method().as_str());
        }
    }
    telemetry::continue_trace(span, request.headers());
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// Names the current (HTTP) server span for the route that matched (`GET /v1/users/{id}`).
pub fn record_route(method: &str, route: &str) {
    if !telemetry::exporting() {
        return;
    }
    let span = Span::current();
    span.record("http.route", route);
    telemetry::rename(&span, format!("{method} {route}"));
}

/// Records a response's status: the HTTP status, and the gRPC code when the response carries
/// it in its headers (an error, answered trailers-only); a 5xx is a failed span.
pub fn on_response<B>(response: &Response<B>, span: &Span) {
    if !telemetry::exporting() {
        return;
    }
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if let Some(code) = grpc_status(response.headers()) {
        telemetry::record_grpc_code(span, code, true);
    } else if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// Records the gRPC code a response's trailers carry (a gRPC answer that was not an error
/// sent trailers-only).
pub fn on_eos(trailers: Option<&HeaderMap>, span: &Span) {
    if !telemetry::exporting() {
        return;
    }
    if let Some(code) = trailers.and_then(grpc_status) {
        telemetry::record_grpc_code(span, code, true);
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(code))
}

#[cfg(test)]
mod tests {
    use super::grpc_method;

    #[test]
    fn a_grpc_path_names_its_service_and_method() {
        assert_eq!(
            grpc_method("/grimos.auth.v1.AuthService/ValidateToken"),
            Some(("grimos.auth.v1.AuthService", "ValidateToken"))
        );
        assert_eq!(grpc_method("/v1/users/me"), None);
        assert_eq!(grpc_method("/healthz"), None);
        assert_eq!(grpc_method("//x"), None);
    }
}
