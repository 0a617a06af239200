//! The one health check of auth-service: `grpc.health.v1.Health/Check` for the overall
//! status (`""`), which the client's readiness ([`super::AuthClient::health_check`]) and the
//! balancer's probes of each endpoint (`discovery`) both ask.

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The request for the overall status.
pub(super) fn request() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

/// `Ok` when the answer is `SERVING`, else the status it names (`status NOT_SERVING`).
pub(super) fn verdict(response: &HealthCheckResponse) -> Result<(), String> {
    if response.status == ServingStatus::Serving as i32 {
        return Ok(());
    }
    let name = ServingStatus::try_from(response.status).map_or("UNKNOWN", |s| s.as_str_name());
    Err(format!("status {name}"))
}
