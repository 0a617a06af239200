//! The HTTP/JSON face of user-service: the contract's `/v1` routes, health, readiness and
//! metrics, and the OpenAPI document and reference page. It never holds logic of its own:
//! the `/v1` routes are generated from the proto (`grimos_proto::gateway`, with the JSON
//! binding and the error body) and call the same service implementations as gRPC clients.

use axum::Router;
use grimos_proto::auth::v1::auth_service_gateway;
use grimos_proto::user::v1::user_service_gateway;

use crate::api::UserApi;
use crate::auth_edge::AuthEdge;

pub mod docs;
pub mod ops;

/// The `/v1` routes of both APIs (`UserService` through [`UserApi`], the edge `AuthService`
/// through [`AuthEdge`]), and the API's description (`/openapi.json`, `/docs`).
pub fn routes(api: UserApi) -> Router {
    Router::new()
        .merge(docs::routes())
        .merge(user_service_gateway::routes(api.clone()))
        .merge(auth_service_gateway::routes(AuthEdge::new(api)))
}

/// Whether a request is gRPC or gRPC-Web (by content type), for the fallback and metrics.
pub fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
