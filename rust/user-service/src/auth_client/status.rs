//! The one mapping of call failures to what callers see, and the metrics of every call.

use std::time::{Duration, Instant};

use tonic::{Code, Status};

/// What a failed call's status means for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The deadline passed before an answer came.
    Timeout,
    /// auth-service could not be reached, or said it cannot serve now (`UNAVAILABLE`).
    Unreachable,
    /// auth-service's answer, which passes through.
    Answer,
}

/// Sorts a failed call's status (see [`Failure`]).
pub(super) fn classify(status: &Status) -> Failure {
    match status.code() {
        Code::DeadlineExceeded => Failure::Timeout,
        // tonic reports an expired `grpc-timeout` (its own or the server's) as CANCELLED.
        Code::Cancelled if status.message().contains("Timeout expired") => Failure::Timeout,
        Code::Unavailable | Code::Unknown | Code::Cancelled => Failure::Unreachable,
        // A status auth-service sent has no source; one with a source was made by the client
        // from a transport error (an HTTP/2 protocol error, for instance).
        Code::Internal if std::error::Error::source(status).is_some() => Failure::Unreachable,
        _ => Failure::Answer,
    }
}

/// The one mapping of call failures: what auth-service said passes through; failing to reach
/// it, or to hear back in time, becomes `UNAVAILABLE`.
pub(super) fn map_status(status: Status, deadline: Duration) -> Status {
    match classify(&status) {
        Failure::Timeout => did_not_answer(deadline),
        Failure::Unreachable => {
            Status::unavailable(format!("auth-service unavailable: {}", status.message()))
        }
        Failure::Answer => status,
    }
}

/// The chain of errors behind a status the client made from a transport failure, such as
/// "received fatal alert: CertificateRequired" behind "transport error".
pub(super) fn transport_cause(status: &Status) -> Option<String> {
    let mut source = std::error::Error::source(status)?;
    let mut chain = source.to_string();
    while let Some(next) = source.source() {
        chain.push_str(": ");
        chain.push_str(&next.to_string());
        source = next;
    }
    Some(chain)
}

pub(super) fn did_not_answer(deadline: Duration) -> Status {
    Status::unavailable(format!(
        "auth-service did not answer within {}",
        humantime::format_duration(deadline)
    ))
}

pub(super) fn record(rpc: &'static str, start: Instant, code: Code) {
    metrics::histogram!("auth_client_request_duration_seconds", "rpc" => rpc)
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("auth_client_requests_total", "rpc" => rpc, "code" => code_name(code))
        .increment(1);
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_transport_failures_become_unavailable() {
        let deadline = Duration::from_millis(300);
        let expired = map_status(Status::cancelled("Timeout expired"), deadline);
        assert_eq!(expired.code(), Code::Unavailable);
        assert_eq!(
            expired.message(),
            "auth-service did not answer within 300ms"
        );
        let exceeded = map_status(Status::deadline_exceeded("late"), deadline);
        assert_eq!(
            exceeded.message(),
            "auth-service did not answer within 300ms"
        );
        for status in [
            Status::unavailable("refused"),
            Status::unknown("broken pipe"),
        ] {
            let mapped = map_status(status, deadline);
            assert_eq!(mapped.code(), Code::Unavailable);
            assert!(mapped.message().starts_with("auth-service unavailable: "));
        }
    }

    #[test]
    fn statuses_from_auth_service_pass_through() {
        for code in [
            Code::Unauthenticated,
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::Internal,
        ] {
            let mapped = map_status(Status::new(code, "from auth"), Duration::from_secs(2));
            assert_eq!(mapped.code(), code);
            assert_eq!(mapped.message(), "from auth");
        }
    }
}
