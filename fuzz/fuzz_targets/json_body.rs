//! HTTP JSON bodies through the gateway's real extractor (`grimos_proto::gateway::ProtoJson`,
//! with its 64 KiB limit) for every message a `/v1` route decodes, then what the generated
//! route does next with it.
//!
//! Input: byte 0 picks the route, byte 1 how the body arrives, the rest is the body.
//! - route (byte 0 % 5): `POST /v1/users` (`CreateUserRequest`, then the input rules),
//!   `PATCH /v1/users/{id}` (any JSON, then a `User` and the update-mask rules with the mask
//!   the body's keys imply), `POST /v1/auth/login`, `/refresh`, `/logout`.
//! - delivery (byte 1): the low 4 bits are the chunk size of a streamed body (0: one buffer
//!   with a known length); bits 4 to 6 prepend that many sevenths of 64 KiB (less 2 bytes) of
//!   white space, so bodies reach and cross the limit.
//!
//! Must hold: no panic; a body is accepted only if it fits in 64 KiB and is blank or JSON;
//! a refusal is a 400 or (exactly when the body is over the limit) a 413, with the contract's
//! `{"code":3,...}` body; the rules after decoding refuse with `INVALID_ARGUMENT`, never a 5xx.

#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::gateway::{HttpError, MAX_BODY_BYTES, ProtoJson, bind};
use grimos_proto::user::v1 as pb;
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
});

fuzz_target!(|data: &[u8]| {
    let [route, delivery, json @ ..] = data else {
        return;
    };
    // Sevenths of the limit, less two bytes: seven of them and `{}` are exactly 64 KiB.
    let padding = (usize::from((delivery >> 4) & 7) * MAX_BODY_BYTES / 7).saturating_sub(2);
    let mut body = vec![b' '; padding];
    body.extend_from_slice(json);
    let chunk = usize::from(delivery & 0x0f);
    RUNTIME.block_on(async {
        match route % 5 {
            0 => {
                if let Some(request) = extract::<pb::CreateUserRequest>(&body, chunk).await {
                    // What `create_user` checks first; it must refuse, not panic.
                    let _ = grimos_common::validate::email(&request.email);
                    let _ = grimos_common::validate::password(&request.password);
                    let _ = grimos_common::validate::display_name(&request.display_name);
                }
            }
            1 => {
                if let Some(value) = extract::<serde_json::Value>(&body, chunk).await {
                    patch(value).await;
                }
            }
            2 => drop(extract::<auth_pb::LoginRequest>(&body, chunk).await),
            3 => drop(extract::<auth_pb::RefreshTokenRequest>(&body, chunk).await),
            _ => drop(extract::<auth_pb::RevokeTokenRequest>(&body, chunk).await),
        }
    });
});

/// Runs the real extractor on `body` and checks its verdict; the message if it accepted.
async fn extract<T: DeserializeOwned + Default>(body: &[u8], chunk: usize) -> Option<T> {
    let streamed = if chunk == 0 {
        Body::from(body.to_vec())
    } else {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(chunk * chunk).map(|c| Ok(c.to_vec())).collect();
        Body::from_stream(tokio_stream::iter(chunks))
    };
    let request = Request::builder()
        .method("POST")
        .uri("/v1/users")
        .header("content-type", "application/json")
        // The routes' `body_limit()` layer, as the router applies it.
        .body(Body::new(http_body_util::Limited::new(streamed, MAX_BODY_BYTES)))
        .expect("a request");
    let over_limit = body.len() > MAX_BODY_BYTES;
    match ProtoJson::<T>::from_request(request, &()).await {
        Ok(ProtoJson(message)) => {
            assert!(!over_limit, "a body of {} bytes was accepted", body.len());
            let blank = body.iter().all(|b| b" \t\n\r".contains(b));
            assert!(
                blank || serde_json::from_slice::<serde_json::Value>(body).is_ok(),
                "a body that is not JSON was accepted"
            );
            Some(message)
        }
        Err(error) => {
            let expected = if over_limit {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            check_refusal(error.into_response(), expected).await;
            None
        }
    }
}

/// What `PATCH /v1/users/{id}` does with a decoded body before it touches the database: a
/// JSON object, read as a partial `User`, with the mask its keys imply, through the
/// update-mask rules (the generated route's steps, from the gateway's `bind`). Every refusal
/// is a 400.
async fn patch(value: serde_json::Value) {
    let Ok(fields) = bind::body_object(value, "user", "User") else {
        return;
    };
    let mask = bind::inferred_mask(&fields, &["id"]);
    let Ok(user) = bind::from_object::<pb::User>(&fields) else {
        return;
    };
    if let Err(error) = user_service::service::updated_display_name(&user, Some(&mask)) {
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        check_refusal(
            HttpError::from(status).into_response(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

/// Checks that `response` is the contract's error body for code 3 with HTTP `expected`.
async fn check_refusal(response: Response, expected: StatusCode) {
    assert_eq!(response.status(), expected);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("an error body");
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error body");
    assert_eq!(body["code"], 3, "{body}");
    assert!(
        body["message"].is_string() && body["details"].is_array(),
        "{body}"
    );
}
