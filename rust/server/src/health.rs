//! gRPC health that tells the truth: a task that runs the service's readiness check every
//! [`HEALTH_EVERY`] and sets `grpc.health.v1.Health` for the overall status (`""`) and each
//! of the service's names to SERVING or NOT_SERVING accordingly.
//!
//! A balancer (user-service's, Kubernetes' `grpc:` probe) then stops sending work to a
//! replica that cannot do it, for instance one whose database is down, and sends it again
//! once it recovers. The first check runs before the port serves.

use std::future::Future;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often readiness is checked, and how long one check may take before it counts as
/// failed.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Runs `check` once and sets every name in `services` (and `""`) by its result, then keeps
/// them true to it in a task, until that task is aborted (do that before setting NOT_SERVING
/// for a stop). Call it before serving, so that the first answer is already a checked one.
pub async fn keep_health<F, Fut>(
    reporter: HealthReporter,
    server: &'static str,
    services: Vec<&'static str>,
    check: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let mut watch = Watch {
        reporter,
        server,
        services,
        ready: None,
    };
    watch.update(bounded(&check).await).await;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HEALTH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            watch.update(bounded(&check).await).await;
        }
    })
}

/// One check, failed if it takes longer than [`HEALTH_EVERY`].
async fn bounded<F, Fut>(check: &F) -> Result<(), String>
where
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = Result<(), String>>,
{
    tokio::time::timeout(HEALTH_EVERY, check())
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the readiness check took over {}",
                humantime::format_duration(HEALTH_EVERY)
            ))
        })
}

struct Watch {
    reporter: HealthReporter,
    server: &'static str,
    services: Vec<&'static str>,
    ready: Option<bool>,
}

impl Watch {
    /// Sets the status from one check's `result`, logging changes.
    async fn update(&mut self, result: Result<(), String>) {
        let ready = result.is_ok();
        if self.ready == Some(ready) {
            return;
        }
        let server = self.server;
        match &result {
            Ok(()) if self.ready.is_some() => tracing::info!(server, "ready again: SERVING"),
            Ok(()) => tracing::debug!(server, "ready: SERVING"),
            Err(reason) => tracing::warn!(server, reason, "not ready: NOT_SERVING"),
        }
        metrics::gauge!("server_ready", "server" => server).set(if ready { 1.0 } else { 0.0 });
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        set(&self.reporter, &self.services, status).await;
        self.ready = Some(ready);
    }
}

/// Sets `""` and every name in `services` to `status`.
pub async fn set(reporter: &HealthReporter, services: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in services {
        reporter.set_service_status(*service, status).await;
    }
}
