//! The HTTP/JSON error body and the JSON request and response plumbing of the `/v1` routes.
//!
//! It owns the one mapping from a `tonic::Status` to the contract's HTTP status and
//! `{"code","message","details"}` body, the body-size limit, and the JSON extractor whose
//! rejections use that same body. It never invents messages for failures of the service layer:
//! the gRPC handlers already hide internals behind "internal error", so a status message is
//! passed through unchanged, and 5xx statuses are logged here. A client mistake (bad JSON, an
//! unknown field, an oversized body, an unknown path) never becomes a 500.

use std::future::poll_fn;
use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};
use tonic_types::{ErrorDetail, FieldViolation, LocalizedMessage, StatusExt};

/// The largest request body the JSON routes accept, in bytes (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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

    /// A 413 for a request body over [`MAX_BODY_BYTES`] (code 3, `INVALID_ARGUMENT`).
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
    fn internal() -> Self {
        Self::from(Status::internal("internal error"))
    }

    /// A 400 (code 3) for a body that is not the JSON the route expects.
    fn invalid_json(error: impl std::fmt::Display) -> Self {
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
        let http = self.http.unwrap_or_else(|| http_status(self.status.code()));
        if http.is_server_error() {
            tracing::error!(
                code = ?self.status.code(),
                message = self.status.message(),
                %http,
                "request failed"
            );
        }
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

/// A response with `status` and an already serialized JSON `body`.
fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON response with `status` and `body` serialized with its serde (proto3 JSON) mapping.
///
/// Routes whose success is not 200 use this, such as 201 for `POST /v1/users`. A value that
/// cannot be serialized (a timestamp out of range, say) is a server bug: it is logged and
/// answered with a bare 500.
pub fn json_with_status<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(json) => json_response(status, json),
        Err(error) => {
            tracing::error!(%error, "cannot serialize response body");
            HttpError::internal().into_response()
        }
    }
}

/// A JSON request or response body in the proto3 JSON mapping of a generated message.
///
/// As an extractor it reads at most [`MAX_BODY_BYTES`], takes an empty body as the message's
/// default (so `POST /v1/auth/logout` works without one), and rejects anything else that does
/// not parse as `T`, unknown fields included, with the contract's 400 or 413 body. The
/// `Content-Type` header is not checked, so clients that omit it still work. As a response it
/// is a 200 with the JSON body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtoJson<T>(pub T);

impl<T, S> FromRequest<S> for ProtoJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body()).await?;
        if bytes
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            return Ok(Self(T::default()));
        }
        // One rule for every body: a key given twice is an error, at any depth. serde_json
        // would keep the last value where a map is built first (the PATCH body) and refuse
        // it where a generated message is (pbjson), so the rule is checked here, once.
        serde_json::from_slice::<NoDuplicateKeys>(&bytes).map_err(HttpError::invalid_json)?;
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(HttpError::invalid_json)
    }
}

/// Deserializes any JSON value, failing on an object that has the same key twice.
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeysVisitor)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoDuplicateKeys>()?;
            if !keys.insert(key) {
                return Err(serde::de::Error::custom("an object has the same key twice"));
            }
        }
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
}

/// Reads a whole request body, failing with 413 once it grows past [`MAX_BODY_BYTES`].
///
/// This counts the bytes itself rather than calling `axum::body::to_bytes`: that function's
/// error does not tell "too large" (413) from "the connection broke" (400) without naming a
/// type from `http-body-util`, which this crate does not depend on.
async fn read_body(mut body: Body) -> Result<Bytes, HttpError> {
    // A declared length over the limit is refused before anything is read.
    if usize::try_from(body.size_hint().lower()).map_or(true, |len| len > MAX_BODY_BYTES) {
        return Err(HttpError::payload_too_large());
    }
    let mut collected = Vec::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|error| {
            if grimos_server::is_body_timeout(&error) {
                HttpError::request_timeout()
            } else {
                HttpError::from(Status::invalid_argument(format!(
                    "cannot read request body: {error}"
                )))
            }
        })?;
        // Trailers carry no JSON; only data frames count.
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > MAX_BODY_BYTES {
                return Err(HttpError::payload_too_large());
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(collected))
}

impl<T: Serialize> IntoResponse for ProtoJson<T> {
    fn into_response(self) -> Response {
        json_with_status(StatusCode::OK, &self.0)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::time::Duration;

    use serde::Deserialize;
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

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Login {
        #[serde(default)]
        email: String,
        #[serde(default)]
        attempts: u32,
    }

    async fn extract(body: impl Into<Body>) -> Result<Login, HttpError> {
        let request = http::Request::builder()
            .method("POST")
            .uri("/v1/auth/login")
            .body(body.into())
            .unwrap();
        ProtoJson::<Login>::from_request(request, &())
            .await
            .map(|ProtoJson(login)| login)
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

    #[tokio::test]
    async fn valid_json_body_is_extracted() {
        let login = extract(r#"{"email":"a@x.io","attempts":2}"#).await.unwrap();
        assert_eq!(
            login,
            Login {
                email: "a@x.io".into(),
                attempts: 2
            }
        );
    }

    #[tokio::test]
    async fn empty_or_blank_body_is_the_default_message() {
        assert_eq!(extract(Body::empty()).await.unwrap(), Login::default());
        assert_eq!(extract(" \r\n\t ").await.unwrap(), Login::default());
    }

    #[tokio::test]
    async fn malformed_json_is_400_with_code_3() {
        let (status, body) = error_parts(extract(r#"{"email":"#).await.unwrap_err()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], 3);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON body: ")
        );
    }

    #[tokio::test]
    async fn wrong_json_type_is_400_with_code_3() {
        let (status, body) = error_parts(extract(r#"{"attempts":"two"}"#).await.unwrap_err()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], 3);
    }

    #[tokio::test]
    async fn unknown_json_field_is_400_with_code_3() {
        let (status, body) = error_parts(extract(r#"{"admin":true}"#).await.unwrap_err()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], 3);
    }

    #[tokio::test]
    async fn body_over_64_kib_is_413_with_code_3() {
        let body = format!(r#"{{"email":"{}"}}"#, "a".repeat(70_000));
        let (status, body) = error_parts(extract(body).await.unwrap_err()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body,
            json!({"code": 3, "message": "request body is larger than 64 KiB", "details": []})
        );
    }

    #[tokio::test]
    async fn streamed_body_over_64_kib_is_413() {
        // A stream declares no length, so the limit must hold while reading.
        let chunks = (0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
        let stream = tokio_stream::iter(chunks);
        let (status, body) =
            error_parts(extract(Body::from_stream(stream)).await.unwrap_err()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["code"], 3);
    }

    #[tokio::test]
    async fn body_of_exactly_64_kib_is_accepted() {
        let padding = " ".repeat(MAX_BODY_BYTES - 2);
        assert_eq!(
            extract(format!("{{}}{padding}")).await.unwrap(),
            Login::default()
        );
    }

    #[tokio::test]
    async fn proto_json_response_is_200_json() {
        let (status, content_type, body) =
            parts(ProtoJson(json!({"userId": "u1"})).into_response()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(body, json!({"userId": "u1"}));
    }

    #[tokio::test]
    async fn json_with_status_sets_the_status() {
        let (status, _, body) =
            parts(json_with_status(StatusCode::CREATED, &json!({"user": {}}))).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body, json!({"user": {}}));
    }

    #[tokio::test]
    async fn unserializable_response_is_a_bare_500() {
        struct Broken;
        impl Serialize for Broken {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("timestamp out of range"))
            }
        }
        let (status, _, body) = parts(ProtoJson(Broken).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"code": 13, "message": "internal error", "details": []})
        );
    }
}
