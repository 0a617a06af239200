//! `/healthz` (the process answers), `/readyz` (the database and auth-service answer, and the
//! service is not draining: its stop has not begun) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use grimos_proto::gateway::HttpError;
use grimos_server::health::Draining;
use tonic::Status;

use crate::service::Users;

#[derive(Clone)]
struct Ops {
    users: Arc<Users>,
    draining: Draining,
}

/// The operations routes; `/readyz` answers 503 once `draining` is set.
pub fn routes(users: Arc<Users>, draining: Draining) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Ops { users, draining })
}

async fn healthz() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
        .into_response()
}

async fn readyz(State(ops): State<Ops>) -> Result<Response, HttpError> {
    if ops.draining.is_draining() {
        // A proxy or probe that sees this sends new work elsewhere; the requests that still
        // arrive are served until the drain grace ends.
        return Err(HttpError::from(Status::unavailable(
            "draining: this replica is stopping",
        )));
    }
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

/// The process's metrics: user-service's, and the embedded auth-service's when it runs one
/// (one recorder per process; the `server` label tells them apart).
async fn render_metrics() -> Response {
    grimos_server::metrics::render()
}
