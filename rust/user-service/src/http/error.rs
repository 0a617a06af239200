//! The HTTP/JSON error body of every route.
//!
//! It owns the one mapping from a `tonic::Status` to the contract's HTTP status and
//! `{"code","message","details"}` body, which the JSON extractor's rejections ([`super::json`])
//! use too. It never invents messages for failures of the service layer: the gRPC handlers
//! already hide internals behind "internal error", so a status message is passed through
//! unchanged. It logs nothing: a 5xx is logged once, where its cause is known. A client
//! mistake (bad JSON, an unknown field, an oversized body, an unknown path) never becomes a
//! 500.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};
use tonic::{Code, Status};
use tonic_types::{ErrorDetail, FieldViolation, LocalizedMessage, StatusExt};

/// The contract's HTTP status for a gRPC status code.
///
/// Codes the contract does not name (`UNKNOWN`, `INTERNAL`, `DATA_LOSS`, `CANCELLED`,
/// `ABORTED`, `OUT_OF_RANGE`) are server failures and give 500. `OK` gives 200, although no
/// error carries it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer of the HTTP/JSON routes: a gRPC status rendered as the contract's JSON body.
///
/// Build it from any `tonic::Status` with `From`; the HTTP status then follows
/// [`http_status`]. The few answers whose HTTP status the table cannot express (405, 413) come
/// from the named constructors, which set [`HttpError::http`].
#[derive(Debug)]
pub struct HttpError {
    /// The gRPC status whose code, message and details make up the body.
    pub status: Status,
    /// An HTTP status that replaces the one [`http_status`] would pick, if set.
    pub http: Option<StatusCode>,
}

impl HttpError {
    /// A 404 (code 5, `NOT_FOUND`) with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::from(Status::not_found(message))
    }

    /// A 405 for a known path called with the wrong method (code 12, `UNIMPLEMENTED`).
    ///
    /// `UNIMPLEMENTED` alone would map to 501, which tells the client the server lacks the
    /// feature; 405 says the path exists under another method.
    pub fn method_not_allowed() -> Self {
        Self {
            status: Status::unimplemented("method not allowed for this path"),
            http: Some(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// A 413 for a request body over [`super::json::MAX_BODY_BYTES`] (code 3, `INVALID_ARGUMENT`).
    pub fn payload_too_large() -> Self {
        Self {
            status: Status::invalid_argument("request body is larger than 64 KiB"),
            http: Some(StatusCode::PAYLOAD_TOO_LARGE),
        }
    }

    /// A 408 for a request body that did not arrive within `GRIMOS_BODY_READ_TIMEOUT`
    /// (code 4, `DEADLINE_EXCEEDED`): the client was too slow, so not the 504 of a server
    /// that was.
    pub fn request_timeout() -> Self {
        Self {
            status: Status::deadline_exceeded("the request body was not received in time"),
            http: Some(StatusCode::REQUEST_TIMEOUT),
        }
    }

    /// A 500 that says nothing about its cause; the caller logs the cause first.
    pub(super) fn internal() -> Self {
        Self::from(Status::internal("internal error"))
    }

    /// A 400 (code 3) for a body that is not the JSON the route expects.
    pub(super) fn invalid_json(error: impl std::fmt::Display) -> Self {
        Self::from(Status::invalid_argument(format!(
            "invalid JSON body: {error}"
        )))
    }
}

impl From<Status> for HttpError {
    fn from(status: Status) -> Self {
        Self { status, http: None }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // Not logged here: a 5xx is logged once, where its cause is known (the service's
        // `Error` mapping, the auth client, the database layer).
        let http = self.http.unwrap_or_else(|| http_status(self.status.code()));
        let body = json!({
            "code": i32::from(self.status.code()),
            "message": self.status.message(),
            "details": details_json(&self.status),
        });
        json_response(http, body.to_string())
    }
}

/// The status's `google.rpc` error details in proto3 JSON, each with its `@type`.
///
/// `DebugInfo` is left out on purpose: it exists to carry stack traces and internals, which
/// must not reach HTTP clients. Detail types this crate does not know are left out as well.
fn details_json(status: &Status) -> Vec<Value> {
    status
        .get_error_details_vec()
        .into_iter()
        .filter_map(|detail| detail_json(&detail))
        .collect()
}

/// One error detail in proto3 JSON, or `None` for a type that is not rendered.
fn detail_json(detail: &ErrorDetail) -> Option<Value> {
    let mut object = Map::new();
    match detail {
        ErrorDetail::BadRequest(bad_request) => {
            object.insert("@type".into(), tonic_types::BadRequest::TYPE_URL.into());
            let violations: Vec<Value> = bad_request
                .field_violations
                .iter()
                .map(field_violation_json)
                .collect();
            insert_list(&mut object, "fieldViolations", violations);
        }
        ErrorDetail::RetryInfo(retry_info) => {
            object.insert("@type".into(), tonic_types::RetryInfo::TYPE_URL.into());
            if let Some(delay) = retry_info.retry_delay {
                object.insert("retryDelay".into(), duration_json(delay).into());
            }
        }
        ErrorDetail::ErrorInfo(error_info) => {
            object.insert("@type".into(), tonic_types::ErrorInfo::TYPE_URL.into());
            insert_string(&mut object, "reason", &error_info.reason);
            insert_string(&mut object, "domain", &error_info.domain);
            if !error_info.metadata.is_empty() {
                let metadata: Map<String, Value> = error_info
                    .metadata
                    .iter()
                    .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
                    .collect();
                object.insert("metadata".into(), Value::Object(metadata));
            }
        }
        ErrorDetail::PreconditionFailure(failure) => {
            object.insert(
                "@type".into(),
                tonic_types::PreconditionFailure::TYPE_URL.into(),
            );
            let violations: Vec<Value> = failure
                .violations
                .iter()
                .map(|violation| {
                    let mut entry = Map::new();
                    insert_string(&mut entry, "type", &violation.r#type);
                    insert_string(&mut entry, "subject", &violation.subject);
                    insert_string(&mut entry, "description", &violation.description);
                    Value::Object(entry)
                })
                .collect();
            insert_list(&mut object, "violations", violations);
        }
        ErrorDetail::ResourceInfo(info) => {
            object.insert("@type".into(), tonic_types::ResourceInfo::TYPE_URL.into());
            insert_string(&mut object, "resourceType", &info.resource_type);
            insert_string(&mut object, "resourceName", &info.resource_name);
            insert_string(&mut object, "owner", &info.owner);
            insert_string(&mut object, "description", &info.description);
        }
        ErrorDetail::Help(help) => {
            object.insert("@type".into(), tonic_types::Help::TYPE_URL.into());
            let links: Vec<Value> = help
                .links
                .iter()
                .map(|link| {
                    let mut entry = Map::new();
                    insert_string(&mut entry, "description", &link.description);
                    insert_string(&mut entry, "url", &link.url);
                    Value::Object(entry)
                })
                .collect();
            insert_list(&mut object, "links", links);
        }
        ErrorDetail::LocalizedMessage(message) => {
            object.insert("@type".into(), LocalizedMessage::TYPE_URL.into());
            object.extend(localized_message_fields(message));
        }
        _ => return None,
    }
    Some(Value::Object(object))
}

/// One `google.rpc.BadRequest.FieldViolation` in proto3 JSON.
fn field_violation_json(violation: &FieldViolation) -> Value {
    let mut entry = Map::new();
    insert_string(&mut entry, "field", &violation.field);
    insert_string(&mut entry, "description", &violation.description);
    insert_string(&mut entry, "reason", &violation.reason);
    if let Some(message) = &violation.localized_message {
        let fields = localized_message_fields(message);
        if !fields.is_empty() {
            entry.insert("localizedMessage".into(), Value::Object(fields));
        }
    }
    Value::Object(entry)
}

/// The non-empty fields of a `google.rpc.LocalizedMessage`.
fn localized_message_fields(message: &LocalizedMessage) -> Map<String, Value> {
    let mut fields = Map::new();
    insert_string(&mut fields, "locale", &message.locale);
    insert_string(&mut fields, "message", &message.message);
    fields
}

/// Adds a string field unless it is empty, as proto3 JSON omits default values.
fn insert_string(object: &mut Map<String, Value>, name: &str, value: &str) {
    if !value.is_empty() {
        object.insert(name.into(), value.into());
    }
}

/// Adds a repeated field unless it is empty, as proto3 JSON omits default values.
fn insert_list(object: &mut Map<String, Value>, name: &str, values: Vec<Value>) {
    if !values.is_empty() {
        object.insert(name.into(), Value::Array(values));
    }
}

/// A `google.protobuf.Duration` in proto3 JSON: seconds with 0, 3, 6 or 9 fractional digits
/// and an `s` suffix, such as "12s" or "1.500s".
fn duration_json(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        format!("{seconds}s")
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{seconds}.{nanos:09}s")
    }
}

/// The answer to an HTTP/JSON request that ran past `GRIMOS_REQUEST_TIMEOUT`: 504 (code 4).
pub fn deadline_exceeded() -> Response {
    HttpError::from(Status::deadline_exceeded("the request took too long")).into_response()
}

/// The router's fallback for unknown paths: 404 with code 5 (`NOT_FOUND`).
pub async fn not_found() -> HttpError {
    HttpError::not_found("no route for this path")
}

/// The router's fallback for a known path called with the wrong method: 405 with code 12
/// (`UNIMPLEMENTED`).
pub async fn method_not_allowed() -> HttpError {
    HttpError::method_not_allowed()
}

/// A response with `status` and an already serialized JSON `body`.
pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::time::Duration;

    use tonic_types::ErrorDetails;

    use super::*;

    /// Splits a response into its HTTP status, content type and parsed JSON body.
    async fn parts(response: Response) -> (StatusCode, Option<String>, Value) {
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    async fn error_parts(error: HttpError) -> (StatusCode, Value) {
        let (status, content_type, body) = parts(error.into_response()).await;
        assert_eq!(content_type.as_deref(), Some("application/json"));
        (status, body)
    }

    #[test]
    fn grpc_codes_map_to_the_contract_http_statuses() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::FailedPrecondition, 412),
            (Code::ResourceExhausted, 429),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Unknown, 500),
            (Code::Internal, 500),
            (Code::DataLoss, 500),
            (Code::Cancelled, 500),
            (Code::Aborted, 500),
            (Code::OutOfRange, 500),
        ];
        for (code, expected) in table {
            assert_eq!(http_status(code).as_u16(), expected, "{code:?}");
        }
    }

    #[tokio::test]
    async fn plain_status_has_code_message_and_empty_details() {
        let (status, body) = error_parts(Status::already_exists("email taken").into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            body,
            json!({"code": 6, "message": "email taken", "details": []})
        );
    }

    #[tokio::test]
    async fn bad_request_details_render_in_proto3_json() {
        let error = Status::with_error_details(
            Code::InvalidArgument,
            "msg",
            ErrorDetails::with_bad_request(vec![FieldViolation::new("email", "bad")]),
        );
        let (status, body) = error_parts(error.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({
                "code": 3,
                "message": "msg",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "email", "description": "bad"}],
                }],
            })
        );
    }

    #[tokio::test]
    async fn retry_info_renders_retry_delay_as_a_duration_string() {
        for (delay, expected) in [
            (Duration::from_secs(12), "12s"),
            (Duration::from_millis(1500), "1.500s"),
            (Duration::from_micros(2_000_001), "2.000001s"),
            (Duration::new(0, 5), "0.000000005s"),
        ] {
            let error = Status::with_error_details(
                Code::ResourceExhausted,
                "slow down",
                ErrorDetails::with_retry_info(Some(delay)),
            );
            let (status, body) = error_parts(error.into()).await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(
                body["details"],
                json!([{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": expected,
                }])
            );
        }
    }

    #[tokio::test]
    async fn error_info_renders_and_omits_empty_fields() {
        let error = Status::with_error_details(
            Code::FailedPrecondition,
            "nope",
            ErrorDetails::with_error_info(
                "TOKEN_REVOKED",
                "",
                HashMap::from([("user".to_owned(), "u1".to_owned())]),
            ),
        );
        let (status, body) = error_parts(error.into()).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            body["details"],
            json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "TOKEN_REVOKED",
                "metadata": {"user": "u1"},
            }])
        );
    }

    #[tokio::test]
    async fn debug_info_never_reaches_the_client() {
        let error = Status::with_error_details(
            Code::Internal,
            "internal error",
            ErrorDetails::with_debug_info(vec!["frame".to_owned()], "secret"),
        );
        let (status, body) = error_parts(error.into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"code": 13, "message": "internal error", "details": []})
        );
    }

    #[tokio::test]
    async fn method_not_allowed_is_405_with_code_12() {
        let (status, body) = error_parts(method_not_allowed().await).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], 12);
        assert_eq!(body["details"], json!([]));
    }

    #[tokio::test]
    async fn unknown_path_is_404_with_code_5() {
        let (status, body) = error_parts(not_found().await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"code": 5, "message": "no route for this path", "details": []})
        );
    }
}
