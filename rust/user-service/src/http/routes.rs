//! The contract's HTTP/JSON routes. Each one decodes its JSON body (the generated message,
//! through its pbjson impl), path and query into the gRPC request message, calls the same
//! [`UserApi`] handler that gRPC clients reach, and encodes the reply: one behaviour, two
//! encodings. Auth routes forward to auth-service through the user-service's client.

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::user::v1 as pb;
use grimos_proto::user::v1::user_service_server::UserService as _;
use grimos_proto::wkt::FieldMask;
use tonic::Status;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use super::error::HttpError;
use super::json::{ProtoJson, body_limit, json_with_status};
use crate::api::UserApi;

/// The routes of `/v1`, and the API's description (`/openapi.json`, `/docs`).
pub fn routes(api: UserApi) -> Router {
    Router::new()
        .merge(super::docs::routes())
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/me", get(current_user))
        .route(
            "/v1/users/{user_id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .layer(body_limit())
        .with_state(api)
}

/// A gRPC request carrying the HTTP request's bearer token and request id.
fn grpc<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok())
        && let Ok(value) = value.parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn bad_request(field: &str, description: impl Into<String>) -> HttpError {
    let description = description.into();
    HttpError::from(Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid argument: {field}: {description}"),
        ErrorDetails::with_bad_request(vec![FieldViolation::new(field, description)]),
    ))
}

fn path_param(path: Result<Path<String>, PathRejection>) -> Result<String, HttpError> {
    path.map(|Path(value)| value)
        .map_err(|rejection| bad_request("user_id", rejection.body_text()))
}

fn query_params(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, HttpError> {
    query
        .map(|Query(params)| params)
        .map_err(|rejection| HttpError::from(Status::invalid_argument(rejection.body_text())))
}

/// The value of a query parameter given as `lowerCamel` or `snake_case`.
fn param<'a>(params: &'a HashMap<String, String>, camel: &str, snake: &str) -> Option<&'a str> {
    params
        .get(camel)
        .or_else(|| params.get(snake))
        .map(String::as_str)
}

async fn create_user(
    State(api): State<UserApi>,
    headers: HeaderMap,
    ProtoJson(body): ProtoJson<pb::CreateUserRequest>,
) -> Result<Response, HttpError> {
    let response = api.create_user(grpc(&headers, body)).await?;
    Ok(json_with_status(
        StatusCode::CREATED,
        &response.into_inner(),
    ))
}

async fn current_user(
    State(api): State<UserApi>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let response = api
        .get_current_user(grpc(&headers, pb::GetCurrentUserRequest {}))
        .await?;
    Ok(ProtoJson(response.into_inner()).into_response())
}

async fn get_user(
    State(api): State<UserApi>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let user_id = path_param(path)?;
    let response = api
        .get_user(grpc(&headers, pb::GetUserRequest { user_id }))
        .await?;
    Ok(ProtoJson(response.into_inner()).into_response())
}

async fn update_user(
    State(api): State<UserApi>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ProtoJson(body): ProtoJson<serde_json::Value>,
) -> Result<Response, HttpError> {
    let user_id = path_param(path)?;
    let params = query_params(query)?;
    let serde_json::Value::Object(fields) = body else {
        return Err(bad_request(
            "user",
            "the body must be a JSON object (a partial User)",
        ));
    };
    let mut user: pb::User = serde_json::from_value(serde_json::Value::Object(fields.clone()))
        .map_err(|e| {
            HttpError::from(Status::invalid_argument(format!("invalid JSON body: {e}")))
        })?;
    if !user.id.is_empty() && user.id != user_id {
        return Err(bad_request(
            "user.id",
            "user.id must be absent or equal the id in the path",
        ));
    }
    user.id = user_id;
    let update_mask = match param(&params, "updateMask", "update_mask") {
        Some(mask) => {
            FieldMask::from_json_str(mask).map_err(|e| bad_request("update_mask", e.to_string()))?
        }
        // No mask given: the fields present in the body, except the id.
        None => FieldMask::new(
            fields
                .keys()
                .filter(|key| !matches!(key.as_str(), "id"))
                .map(|key| snake_case(key)),
        ),
    };
    let request = pb::UpdateUserRequest {
        user: Some(user),
        update_mask: Some(update_mask),
    };
    let response = api.update_user(grpc(&headers, request)).await?;
    Ok(ProtoJson(response.into_inner()).into_response())
}

/// `displayName` → `display_name`; names already in snake_case stay as they are.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

async fn delete_user(
    State(api): State<UserApi>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let user_id = path_param(path)?;
    api.delete_user(grpc(&headers, pb::DeleteUserRequest { user_id }))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_users(
    State(api): State<UserApi>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, HttpError> {
    let params = query_params(query)?;
    // Absent is the proto default (0: 50 users); present must be an integer, as the
    // OpenAPI document says, so `?pageSize=` is refused like `?pageSize=lots`.
    let page_size = match param(&params, "pageSize", "page_size") {
        None => 0,
        Some(raw) => raw
            .parse::<i32>()
            .map_err(|_| bad_request("page_size", "page_size must be an integer"))?,
    };
    let page_token = param(&params, "pageToken", "page_token")
        .unwrap_or_default()
        .to_owned();
    let response = api
        .list_users(grpc(
            &headers,
            pb::ListUsersRequest {
                page_size,
                page_token,
            },
        ))
        .await?;
    Ok(ProtoJson(response.into_inner()).into_response())
}

async fn login(
    State(api): State<UserApi>,
    ProtoJson(body): ProtoJson<auth_pb::LoginRequest>,
) -> Result<Response, HttpError> {
    let response = api.users().auth().login(body).await?;
    Ok(ProtoJson(response).into_response())
}

async fn refresh(
    State(api): State<UserApi>,
    ProtoJson(body): ProtoJson<auth_pb::RefreshTokenRequest>,
) -> Result<Response, HttpError> {
    let response = api.users().auth().refresh_token(body).await?;
    Ok(ProtoJson(response).into_response())
}

/// Revokes the token in the body, or else the bearer access token.
async fn logout(
    State(api): State<UserApi>,
    headers: HeaderMap,
    ProtoJson(mut body): ProtoJson<auth_pb::RevokeTokenRequest>,
) -> Result<Response, HttpError> {
    if body.token.is_empty() {
        body.token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(grimos_common::bearer::bearer_token)
            .unwrap_or_default()
            .to_owned();
    }
    if body.token.is_empty() {
        return Err(HttpError::from(Status::unauthenticated(
            "give the token to revoke in the body or as a bearer token",
        )));
    }
    api.users().auth().revoke_token(body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_become_field_paths() {
        assert_eq!(snake_case("displayName"), "display_name");
        assert_eq!(snake_case("display_name"), "display_name");
        assert_eq!(snake_case("email"), "email");
    }
}
