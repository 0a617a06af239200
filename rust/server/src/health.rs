//! gRPC health that tells the truth: a task that runs the service's readiness check every
//! [`HEALTH_EVERY`] and sets `grpc.health.v1.Health` for the overall status (`""`) and each
//! of the service's names to SERVING or NOT_SERVING accordingly.
//!
//! A balancer (user-service's, Kubernetes' `grpc:` probe) then stops sending work to a
//! replica that cannot do it, for instance one whose database is down, and sends it again
//! once it recovers. Until the first check has passed the service is NOT_SERVING.

use std::future::Future;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often readiness is checked, and how long one check may take before it counts as
/// failed.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Sets every name in `services` (and `""`) NOT_SERVING now, then keeps them true to `check`
/// until the returned task is aborted (do that before setting NOT_SERVING for a stop).
pub async fn keep_health<F, Fut>(
    reporter: HealthReporter,
    server: &'static str,
    services: Vec<&'static str>,
    check: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    set(&reporter, &services, ServingStatus::NotServing).await;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HEALTH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ready = None;
        loop {
            ticker.tick().await;
            let result = match tokio::time::timeout(HEALTH_EVERY, check()).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "the readiness check took over {}",
                    humantime::format_duration(HEALTH_EVERY)
                )),
            };
            let now_ready = result.is_ok();
            if ready == Some(now_ready) {
                continue;
            }
            match &result {
                Ok(()) if ready.is_some() => tracing::info!(server, "ready again: SERVING"),
                Ok(()) => tracing::debug!(server, "ready: SERVING"),
                Err(reason) => tracing::warn!(server, reason, "not ready: NOT_SERVING"),
            }
            metrics::gauge!("server_ready", "server" => server).set(if now_ready {
                1.0
            } else {
                0.0
            });
            let status = if now_ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set(&reporter, &services, status).await;
            ready = Some(now_ready);
        }
    })
}

/// Sets `""` and every name in `services` to `status`.
pub async fn set(reporter: &HealthReporter, services: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in services {
        reporter.set_service_status(*service, status).await;
    }
}
