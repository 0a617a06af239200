//! The HTTP/JSON error body of every route.
//!
//! It owns the one mapping from a `tonic::Status` to the contract's HTTP status and
//! `{"code","message","details"}` body, which the JSON extractor's rejections ([`super::json`])
//! and the binding errors ([`super::bind`]) use too. It never invents messages for failures of
//! the service layer: the gRPC handlers already hide internals behind "internal error", so a
//! status message is passed through unchanged. It logs nothing: a 5xx is logged once, where
//! its cause is known. A client mistake (bad JSON, an unknown field, an oversized body, an
//! unknown path) never becomes a 500.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use prost::Message;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};

use crate::google::rpc;

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

    /// The answer to a request body that could not be read: 413 past the limit, 408 when it
    /// did not arrive in time ([`is_body_timeout`]), else 400.
    pub fn body_unreadable(
        too_large: bool,
        error: &(dyn std::error::Error + 'static),
        text: impl std::fmt::Display,
    ) -> Self {
        if too_large {
            Self::payload_too_large()
        } else if is_body_timeout(error) {
            Self::request_timeout()
        } else {
            Self::from(Status::invalid_argument(format!(
                "cannot read request body: {text}"
            )))
        }
    }

    /// A 500 that says nothing about its cause; the caller logs the cause first.
    pub(crate) fn internal() -> Self {
        Self::from(Status::internal("internal error"))
    }

    /// A 400 (code 3) for a body that is not the JSON the route expects.
    pub(crate) fn invalid_json(error: impl std::fmt::Display) -> Self {
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

/// The status's `google.rpc` error details in proto3 JSON, each with its `@type`: the pbjson
/// impls of the generated `google.rpc` types, decoded from the status's details.
///
/// `DebugInfo` is left out on purpose: it exists to carry stack traces and internals, which
/// must not reach HTTP clients. Detail types that are not `google.rpc` error details, and
/// details that do not decode, are left out as well.
fn details_json(status: &Status) -> Vec<Value> {
    if status.details().is_empty() {
        return Vec::new();
    }
    let Ok(decoded) = rpc::Status::decode(status.details()) else {
        return Vec::new();
    };
    decoded.details.iter().filter_map(detail_json).collect()
}

/// The `@type` prefix of every `google.rpc` error detail.
const RPC_TYPE_URL: &str = "type.googleapis.com/google.rpc.";

/// One error detail in proto3 JSON with its `@type`, if it is a type rendered to clients.
fn detail_json(any: &pbjson_types::Any) -> Option<Value> {
    let name = any.type_url.strip_prefix(RPC_TYPE_URL)?;
    let fields = match name {
        "ErrorInfo" => fields::<rpc::ErrorInfo>(&any.value),
        "RetryInfo" => fields::<rpc::RetryInfo>(&any.value),
        "QuotaFailure" => fields::<rpc::QuotaFailure>(&any.value),
        "PreconditionFailure" => fields::<rpc::PreconditionFailure>(&any.value),
        "BadRequest" => fields::<rpc::BadRequest>(&any.value),
        "RequestInfo" => fields::<rpc::RequestInfo>(&any.value),
        "ResourceInfo" => fields::<rpc::ResourceInfo>(&any.value),
        "Help" => fields::<rpc::Help>(&any.value),
        "LocalizedMessage" => fields::<rpc::LocalizedMessage>(&any.value),
        // DebugInfo, and anything else: not for clients.
        _ => None,
    }?;
    let mut object = Map::new();
    object.insert("@type".into(), any.type_url.clone().into());
    object.extend(fields);
    Some(Value::Object(object))
}

/// The proto3 JSON fields of an encoded `T` (its pbjson impl), or `None` if it does not decode.
fn fields<T: Message + Default + serde::Serialize>(bytes: &[u8]) -> Option<Map<String, Value>> {
    let message = T::decode(bytes).ok()?;
    match serde_json::to_value(&message).ok()? {
        Value::Object(fields) => Some(fields),
        _ => None,
    }
}

/// Whether `error`, from reading a request body, is the body's deadline passing: a
/// `DEADLINE_EXCEEDED` `tonic::Status` at any depth of its source chain, which is how a server's
/// body deadline ends the body (`grimos_server::DeadlineBody`; tonic answers gRPC calls with
/// that status the same way). The client was too slow, so this is a 408, not a 504.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(status) = error.downcast_ref::<Status>() {
            return status.code() == Code::DeadlineExceeded;
        }
        current = error.source();
    }
    false
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
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::time::Duration;

    use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

    use super::*;

    /// Splits a response into its HTTP status, content type and parsed JSON body.
    pub(crate) async fn parts(response: Response) -> (StatusCode, Option<String>, Value) {
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

    #[test]
    fn a_deadline_exceeded_status_in_a_body_error_is_the_body_timeout() {
        #[derive(Debug)]
        struct Wrapper(Box<dyn std::error::Error + Send + Sync>);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "reading the body failed")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(self.0.as_ref())
            }
        }
        let late = Wrapper(Box::new(Status::deadline_exceeded("late")));
        assert!(is_body_timeout(&late));
        let other = Wrapper(Box::new(Status::internal("broken")));
        assert!(!is_body_timeout(&other));
        let io = std::io::Error::other("reset");
        assert!(!is_body_timeout(&io));
    }
}
