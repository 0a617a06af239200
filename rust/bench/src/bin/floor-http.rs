//! The HTTP floor: a minimal axum server (served like user-service, with `axum::serve`)
//! answering `GET /v1/users/me` and `GET /v1/users/{id}` with a fixed user, encoded per
//! request with serde_json in the same proto3 JSON shape user-service sends.
//!
//! Usage: `floor-http [127.0.0.1:PORT]` (or `FLOOR_HTTP_ADDR`; default a free port). Prints
//! `floor-http listening on ADDR` on stdout once bound.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use grimos_proto::user::v1 as pb;
use tokio::net::TcpListener;

async fn current_user(State(user): State<Arc<pb::User>>) -> Json<pb::GetCurrentUserResponse> {
    Json(pb::GetCurrentUserResponse {
        user: Some(pb::User::clone(&user)),
    })
}

async fn get_user(
    State(user): State<Arc<pb::User>>,
    Path(_id): Path<String>,
) -> Json<pb::GetUserResponse> {
    Json(pb::GetUserResponse {
        user: Some(pb::User::clone(&user)),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = grimos_bench::listen_addr("FLOOR_HTTP_ADDR")?;
    let listener = TcpListener::bind(addr).await?;
    println!("floor-http listening on {}", listener.local_addr()?);

    let router = Router::new()
        .route("/v1/users/me", get(current_user))
        .route("/v1/users/{user_id}", get(get_user))
        .with_state(Arc::new(grimos_bench::user()));
    axum::serve(listener, router).await?;
    Ok(())
}
