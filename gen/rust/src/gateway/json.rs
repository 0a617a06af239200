//! JSON bodies of the routes: requests and responses in the proto3 JSON mapping of the
//! generated messages (their pbjson impls), read within the body limit, and rejected with the
//! contract's error body ([`HttpError`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{HttpError, json_response};

/// The largest request body the JSON routes accept, in bytes (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
/// As an extractor it reads at most [`MAX_BODY_BYTES`] (with [`body_limit`] on the route), takes an empty body as the message's
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

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
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

/// The whole request body, read by axum's `Bytes` extractor within the route's
/// [`body_limit`], its rejections answered with the contract's error body (the derive and
/// `rejection` of axum's `examples/error-handling`; `via` needs a wrapper extractor such as
/// `Json`, and the bytes need none).
#[derive(FromRequest)]
#[from_request(rejection(HttpError))]
struct RawBody(Bytes);

/// The body limit of the JSON routes: [`MAX_BODY_BYTES`], which axum's body extractors
/// enforce while reading (413 past it).
pub fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BODY_BYTES)
}

impl From<BytesRejection> for HttpError {
    fn from(rejection: BytesRejection) -> Self {
        Self::body_unreadable(
            rejection.status() == StatusCode::PAYLOAD_TOO_LARGE,
            &rejection,
            rejection.body_text(),
        )
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

impl<T: Serialize> IntoResponse for ProtoJson<T> {
    fn into_response(self) -> Response {
        json_with_status(StatusCode::OK, &self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use serde::Deserialize;
    use serde_json::{Value, json};
    use tower::ServiceExt as _;

    use super::*;
    use crate::gateway::error::tests::parts;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Login {
        #[serde(default)]
        email: String,
        #[serde(default)]
        attempts: u32,
    }

    /// `body` through a route with the JSON routes' body limit: the extracted message, or
    /// the error answer.
    async fn extract(body: impl Into<Body>) -> Result<Login, Response> {
        async fn echo(ProtoJson(login): ProtoJson<Login>) -> String {
            serde_json::to_string(&(login.email, login.attempts)).unwrap()
        }
        let router = Router::new().route("/", post(echo)).layer(body_limit());
        let request = http::Request::builder()
            .method("POST")
            .uri("/")
            .body(body.into())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        if response.status() != StatusCode::OK {
            return Err(response);
        }
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let (email, attempts) = serde_json::from_slice(&bytes).unwrap();
        Ok(Login { email, attempts })
    }

    async fn error_parts(response: Response) -> (StatusCode, Value) {
        let (status, content_type, body) = parts(response).await;
        assert_eq!(content_type.as_deref(), Some("application/json"));
        (status, body)
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
