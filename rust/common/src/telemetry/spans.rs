//! The spans both services make besides their server spans, named and attributed as
//! OpenTelemetry's semantic conventions say: a gRPC client call ([`client_span`]) and a
//! database statement ([`db_span`]). Each is `Span::none()` unless spans are exported
//! ([`super::exporting`]) and a request's span is current, so logs do not change and nothing
//! is paid for them otherwise.
//!
//! A database span carries the statement's text (with its `$1` placeholders), never the
//! values bound to it.

use tracing::Span;

/// Whether a span made now would be part of a request's trace: spans are exported, and a
/// span is current. Background work (the reconciler, revocation sync, health checks) runs
/// in none, and a trace per statement of it would only bury the requests' traces.
fn within_a_request() -> bool {
    super::exporting() && !Span::current().is_none()
}

/// The span of one call to the gRPC method `service/method` (`grimos.auth.v1.AuthService`,
/// `ValidateToken`), kind client; its code is recorded with [`record_grpc_code`].
pub fn client_span(service: &'static str, method: &'static str) -> Span {
    if !within_a_request() {
        return Span::none();
    }
    tracing::info_span!(
        "grpc_call",
        otel.name = format_args!("{service}/{method}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// Renames the OpenTelemetry span of `span`, which may have started already (a server
/// span is named for its route once routing has found it); `otel.name` is read only before
/// the span starts.
pub fn rename(span: &Span, name: String) {
    if !super::exporting() {
        return;
    }
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    span.context().span().update_name(name);
}

/// Records the gRPC status `code` of the call or request of `span` (which declares
/// `rpc.grpc.status_code` and `otel.status_code`), and marks it failed as the semantic
/// conventions say: a client call for any code but OK, a server for the codes that are the
/// server's fault (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS), not the caller's.
pub fn record_grpc_code(span: &Span, code: tonic::Code, server: bool) {
    if !super::exporting() {
        return;
    }
    span.record("rpc.grpc.status_code", code as i32);
    let failed = if server {
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
    if failed {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one statement `sql` on the database `system` (`sqlite`, `postgresql`):
/// named for its operation (`SELECT`, `INSERT`, ...), kind client.
pub fn db_span(system: &'static str, sql: &str) -> Span {
    if !within_a_request() {
        return Span::none();
    }
    let operation = operation(sql);
    tracing::info_span!(
        "db",
        otel.name = operation,
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = operation,
        db.query.text = sql,
    )
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
