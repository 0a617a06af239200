//! The HTTP/JSON face of user-service: the contract's `/v1` routes, health, readiness and
//! metrics, the OpenAPI document and reference page, and the JSON error mapping. It never
//! holds logic of its own: `/v1` routes go through the gRPC handlers.

pub mod docs;
pub mod error;
pub mod json;
pub mod ops;
pub mod routes;

/// Whether a request is gRPC or gRPC-Web (by content type), for the fallback and metrics.
pub fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
