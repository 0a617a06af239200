//! W3C trace context (`traceparent`, `tracestate`) across the services: taken from a
//! request's HTTP headers or gRPC metadata (the same thing on the wire) to continue the
//! caller's trace ([`continue_trace`]), and written into the metadata of every call made on
//! behalf of a request ([`inject`]).
//!
//! Both do nothing unless spans are exported ([`super::exporting`]): without an exporter
//! there is no trace to continue or pass on, and a request pays for neither.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (gRPC metadata key) of W3C trace context: version, trace id, parent span id
/// and flags.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Makes `span` (a request's server span, not yet entered) a child of the trace context
/// the caller sent in `headers`, if any, and records its trace id as the span's `trace_id`
/// field when it is sampled, so that every log line of the request carries it. The span
/// must declare `trace_id` (as `tracing::field::Empty`). Whether the span is sampled.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) -> bool {
    if !super::exporting() {
        return false;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when the span is disabled or has no OpenTelemetry data: then there is no
    // trace to continue.
    let _ = span.set_parent(parent);
    record_trace_id(span)
}

/// Records the trace id of `span` (its own trace, or the one it continues) as its
/// `trace_id` field, when the span is sampled; whether it is.
pub fn record_trace_id(span: &tracing::Span) -> bool {
    if !super::exporting() {
        return false;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    let sampled = span_context.is_sampled();
    if sampled {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
    sampled
}

/// Writes the trace context of the current span (a client call's span) into `metadata`,
/// so the server it calls continues the same trace.
pub fn inject(metadata: &mut MetadataMap) {
    if !super::exporting() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut Metadata(metadata));
}

/// HTTP headers as the propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// gRPC metadata as the propagator writes it.
struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes only its own lower-case keys and visible ASCII values.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn the_trace_context_round_trips_through_metadata_and_headers() {
        let sent = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "value")]).unwrap(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(sent.clone());
        let mut metadata = MetadataMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut Metadata(&mut metadata));
        let headers = metadata.into_headers();
        assert_eq!(
            headers.get(TRACEPARENT_HEADER).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let received = TraceContextPropagator::new().extract(&Headers(&headers));
        let received = received.span().span_context().clone();
        assert_eq!(received.trace_id(), sent.trace_id());
        assert_eq!(received.span_id(), sent.span_id());
        assert!(received.is_sampled());
        assert_eq!(received.trace_state().get("vendor"), Some("value"));
    }
}
