//! The OpenTelemetry side of the services' spans, named and attributed as OpenTelemetry's
//! semantic conventions say: a gRPC client call ([`client_span`]), a database statement
//! ([`db_span`]), and the attributes, names and status of server spans ([`attribute`],
//! [`rename`], [`record_grpc_code`]). Attributes go to the OpenTelemetry span only, not into
//! the `tracing` fields that log lines print. Everything here does nothing unless spans are
//! exported ([`super::exporting`]), and the two span makers return `Span::none()` unless a
//! request's span is current, so logs do not change and nothing is paid for them otherwise.
//!
//! A database span carries the statement's text (with its `$1` placeholders), never the
//! values bound to it.

use opentelemetry::trace::{Status, TraceContextExt as _};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether a span made now would be part of a sampled request's trace: spans are exported,
/// and the current span is sampled. Background work (the reconciler, revocation sync, health
/// checks) runs in no span, and a trace per statement of it would only bury the requests'
/// traces; the child spans of a trace that is not sampled would be dropped anyway.
fn within_a_request() -> bool {
    sampled(&Span::current())
}

/// Whether `span` is part of a sampled trace (and spans are exported): the attributes and
/// child spans of a request are worth making only then.
pub fn sampled(span: &Span) -> bool {
    super::exporting() && span.context().span().span_context().is_sampled()
}

/// The span of one call to the gRPC method `service/method` (`grimos.auth.v1.AuthService`,
/// `ValidateToken`), kind client; its code is recorded with [`record_grpc_code`].
pub fn client_span(service: &'static str, method: &'static str) -> Span {
    if !within_a_request() {
        return Span::none();
    }
    let span = tracing::info_span!("grpc_call", rpc.method = method, otel.kind = "client");
    span.set_attribute("rpc.system", "grpc");
    span.set_attribute("rpc.service", service);
    rename(&span, format!("{service}/{method}"));
    span
}

/// The span of one statement `sql` on the database `system` (`sqlite`, `postgresql`):
/// named for its operation (`SELECT`, `INSERT`, ...), kind client.
pub fn db_span(system: &'static str, sql: &str) -> Span {
    if !within_a_request() {
        return Span::none();
    }
    let operation = operation(sql);
    let span = tracing::info_span!("db", db.operation.name = operation, otel.kind = "client");
    span.set_attribute("db.system.name", system);
    span.set_attribute("db.query.text", sql.to_owned());
    rename(&span, operation.to_owned());
    span
}

/// Sets the attribute `key` of the OpenTelemetry span of `span` to `value`.
pub fn attribute(span: &Span, key: &'static str, value: &str) {
    if super::exporting() {
        span.set_attribute(key, value.to_owned());
    }
}

/// Sets the integer attribute `key` of the OpenTelemetry span of `span` to `value`.
pub fn int_attribute(span: &Span, key: &'static str, value: i64) {
    if super::exporting() {
        span.set_attribute(key, value);
    }
}

/// Names the OpenTelemetry span of `span` `name`, even once it has started (a server span
/// is named for its route once routing has found it).
pub fn rename(span: &Span, name: String) {
    if super::exporting() {
        span.context().span().update_name(name);
    }
}

/// Marks the OpenTelemetry span of `span` failed.
pub fn failed(span: &Span) {
    if super::exporting() {
        span.set_status(Status::error(""));
    }
}

/// Records the gRPC status `code` of the call or request of `span` as
/// `rpc.grpc.status_code`, and marks it failed as the semantic conventions say: a client
/// call for any code but OK, a server for the codes that are the server's fault (UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), not the caller's.
pub fn record_grpc_code(span: &Span, code: tonic::Code, server: bool) {
    if !super::exporting() {
        return;
    }
    span.set_attribute("rpc.grpc.status_code", code as i64);
    let fault = if server {
        matches!(
            code,
            tonic::Code::Unknown
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unimplemented
                | tonic::Code::Internal
                | tonic::Code::Unavailable
                | tonic::Code::DataLoss
        )
    } else {
        code != tonic::Code::Ok
    };
    if fault {
        failed(span);
    }
}

/// The statement's first keyword, upper-cased: its operation (`WITH` for a common table
/// expression).
fn operation(sql: &str) -> &'static str {
    let word = sql.split_whitespace().next().unwrap_or_default();
    const KNOWN: [&str; 10] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK", "CREATE",
        "PRAGMA",
    ];
    KNOWN
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(word))
        .unwrap_or("SQL")
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn a_statement_is_named_for_its_first_keyword() {
        assert_eq!(operation("SELECT id FROM users WHERE id = $1"), "SELECT");
        assert_eq!(operation("\n  insert into t VALUES ($1)"), "INSERT");
        assert_eq!(operation("VACUUM"), "SQL");
        assert_eq!(operation(""), "SQL");
    }
}
