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
//! or records a header other than the request id. [`http_layer`] and [`grpc_layer`] are the
//! `TraceLayer`s the services put on their routers.

use std::time::Duration;

use grimos_common::telemetry::{self, UNTRACED_TARGET};
use http::{HeaderMap, Request, Response};
use tower_http::trace::{
    DefaultOnBodyChunk, DefaultOnEos, DefaultOnRequest, DefaultOnResponse, GrpcMakeClassifier,
    HttpMakeClassifier, MakeSpan, OnEos, OnResponse, TraceLayer,
};
use tracing::Span;
use tracing::field::Empty;

use crate::{MAX_REQUEST_ID_BYTES, REQUEST_ID_HEADER};

/// A server span of `target`, named `name`, with the request's fields; `$($fields)*` are the
/// first ones (user-service's port logs the method too).
macro_rules! server_span {
    ($target:expr, $name:literal, $request:ident, $($fields:tt)*) => {
        tracing::info_span!(
            target: $target,
            $name,
            $($fields)*
            path = %$request.uri().path(),
            request_id = request_id($request),
            otel.kind = Empty,
            trace_id = Empty,
        )
    };
}

/// The span of a request on user-service's port (HTTP/JSON, gRPC, gRPC-Web).
pub fn http_span<B>(request: &Request<B>) -> Span {
    let span = if traced(request.uri().path()) {
        server_span!(module_path!(), "request", request, method = %request.method(),)
    } else {
        server_span!(UNTRACED_TARGET, "request", request, method = %request.method(),)
    };
    start(&span, request);
    span
}

/// The span of a call on auth-service's port (gRPC).
pub fn grpc_span<B>(request: &Request<B>) -> Span {
    let span = if traced(request.uri().path()) {
        server_span!(module_path!(), "grpc", request,)
    } else {
        server_span!(UNTRACED_TARGET, "grpc", request,)
    };
    start(&span, request);
    span
}

/// The trace layer of user-service's port: [`http_span`], its outcome ([`Outcome`]), and no
/// "response failed" line: a 5xx is logged once, where its cause is known (the error
/// mapping, the auth client, the deadline).
pub fn http_layer() -> TraceLayer<
    HttpMakeClassifier,
    HttpSpan,
    DefaultOnRequest,
    Outcome,
    DefaultOnBodyChunk,
    Outcome,
    (),
> {
    TraceLayer::new_for_http()
        .make_span_with(HttpSpan)
        .on_response(Outcome)
        .on_eos(Outcome)
        .on_failure(())
}

/// The trace layer of auth-service's port: [`grpc_span`], its outcome ([`Outcome`]), and no
/// "response failed" line: an UNAUTHENTICATED answer is the service working, and an
/// internal error is logged once, where its cause is known.
pub fn grpc_layer() -> TraceLayer<
    GrpcMakeClassifier,
    GrpcSpan,
    DefaultOnRequest,
    Outcome,
    DefaultOnBodyChunk,
    Outcome,
    (),
> {
    TraceLayer::new_for_grpc()
        .make_span_with(GrpcSpan)
        .on_response(Outcome)
        .on_eos(Outcome)
        .on_failure(())
}

/// Makes [`http_span`]s.
#[derive(Debug, Clone, Copy)]
pub struct HttpSpan;

impl<B> MakeSpan<B> for HttpSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        http_span(request)
    }
}

/// Makes [`grpc_span`]s.
#[derive(Debug, Clone, Copy)]
pub struct GrpcSpan;

impl<B> MakeSpan<B> for GrpcSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        grpc_span(request)
    }
}

/// Logs a response as `tower_http` does and records it on the span ([`on_response`],
/// [`on_eos`]).
#[derive(Debug, Clone, Copy)]
pub struct Outcome;

impl<B> OnResponse<B> for Outcome {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        DefaultOnResponse::default().on_response(response, latency, span);
        on_response(response, span);
    }
}

impl OnEos for Outcome {
    fn on_eos(self, trailers: Option<&HeaderMap>, stream: Duration, span: &Span) {
        DefaultOnEos::default().on_eos(trailers, stream, span);
        on_eos(trailers, span);
    }
}

/// Whether requests to `path` are traced: not the probes' and scrapers' (health, readiness,
/// metrics), which would bury the requests' traces under one every few seconds.
fn traced(path: &str) -> bool {
    !(path.starts_with("/grpc.health.v1.Health/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics"))
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
/// it): its kind (the one thing that cannot change later), the caller's trace, and, when the
/// trace is sampled, its name and request attributes.
fn start<B>(span: &Span, request: &Request<B>) {
    if !telemetry::exporting() || !traced(request.uri().path()) {
        return;
    }
    let path = request.uri().path();
    span.record("otel.kind", "server");
    if !telemetry::continue_trace(span, request.headers()) {
        return;
    }
    telemetry::attribute(span, "url.path", path);
    telemetry::attribute(span, "http.request.method", request.method().as_str());
    match grpc_method(path).filter(|_| is_grpc(request.headers())) {
        Some((service, method)) => {
            telemetry::rename(span, path[1..].to_owned());
            telemetry::attribute(span, "rpc.system", "grpc");
            telemetry::attribute(span, "rpc.service", service);
            telemetry::attribute(span, "rpc.method", method);
        }
        // Named for its route once routing has found it (`record_route`).
        None => telemetry::rename(span, request.method().as_str().to_owned()),
    }
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && service.contains('.') && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// Names the current (HTTP) server span for the route that matched (`GET /v1/users/{id}`).
pub fn record_route(method: &str, route: &str) {
    if !telemetry::exporting() {
        return;
    }
    let span = Span::current();
    if !telemetry::sampled(&span) {
        return;
    }
    telemetry::attribute(&span, "http.route", route);
    telemetry::rename(&span, format!("{method} {route}"));
}

/// Records a response's status: the HTTP status, and the gRPC code when the response carries
/// it in its headers (an error, answered trailers-only); a 5xx is a failed span.
pub fn on_response<B>(response: &Response<B>, span: &Span) {
    if !telemetry::sampled(span) {
        return;
    }
    let status = response.status().as_u16();
    telemetry::int_attribute(span, "http.response.status_code", i64::from(status));
    if let Some(code) = grpc_status(response.headers()) {
        telemetry::record_grpc_code(span, code, true);
    } else if status >= 500 {
        telemetry::failed(span);
    }
}

/// Records the gRPC code a response's trailers carry (a gRPC answer that was not an error
/// sent trailers-only).
pub fn on_eos(trailers: Option<&HeaderMap>, span: &Span) {
    if trailers.is_none() || !telemetry::sampled(span) {
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
