//! `/healthz` (the process answers), `/readyz` (the database and auth-service answer) and
//! `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tonic::Status;

use super::error::HttpError;
use crate::service::Users;

#[derive(Clone)]
struct Ops {
    users: Arc<Users>,
    metrics: PrometheusHandle,
}

/// The operations routes.
pub fn routes(users: Arc<Users>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Ops { users, metrics })
}

async fn healthz() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
        .into_response()
}

async fn readyz(State(ops): State<Ops>) -> Result<Response, HttpError> {
    ops.users
        .readiness()
        .await
        .map_err(|reason| HttpError::from(Status::unavailable(reason)))?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ready"})),
    )
        .into_response())
}

async fn render_metrics(State(ops): State<Ops>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics.render(),
    )
        .into_response()
}
