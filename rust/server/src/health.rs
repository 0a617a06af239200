//! gRPC health that tells the truth, and the one stop sequence of both services.
//!
//! [`keep_health`] runs the service's readiness check every [`HEALTH_EVERY`] and sets
//! `grpc.health.v1.Health` for the overall status (`""`) and each of the service's names to
//! SERVING or NOT_SERVING accordingly. A balancer (user-service's, Kubernetes' `grpc:` probe)
//! then stops sending work to a replica that cannot do it, for instance one whose database is
//! down, and sends it again once it recovers. The first check runs before the port serves.
//!
//! [`Health::until_stopped`] is what [`crate::Server::serve`] is given as its shutdown: when
//! the stop comes, health turns NOT_SERVING for good (and [`Draining`] is set, which
//! user-service's `/readyz` answers 503 on); for [`Stop::Drain`] the port keeps serving for
//! the drain grace (`GRIMOS_DRAIN_GRACE`), so that balancers and probes notice and send their
//! work elsewhere; then the server stops accepting, sends HTTP/2 GOAWAY and lets the requests
//! in flight finish. A client that sent a call after the GOAWAY learns, from the GOAWAY, that
//! it was not processed, and may send it to another replica.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use grimos_common::shutdown::Stop;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often readiness is checked, and how long one check may take before it counts as
/// failed.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Whether a port is draining (its stop has begun); shared by the stop sequence, which sets
/// it, and the readiness answers that must turn unready with it (`/readyz`).
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Whether the stop has begun.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A port's health, kept true to its readiness check until the stop ([`keep_health`]).
pub struct Health {
    reporter: HealthReporter,
    server: &'static str,
    services: Vec<&'static str>,
    draining: Draining,
    task: tokio::task::JoinHandle<()>,
}

/// Runs `check` once and sets every name in `services` (and `""`) by its result, then keeps
/// them true to it in a task until the stop ([`Health::until_stopped`]). Call it before
/// serving, so that the first answer is already a checked one.
pub async fn keep_health<F, Fut>(
    reporter: HealthReporter,
    server: &'static str,
    services: Vec<&'static str>,
    draining: Draining,
    check: F,
) -> Health
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let mut watch = Watch {
        reporter: reporter.clone(),
        server,
        services: services.clone(),
        ready: None,
    };
    watch.update(bounded(&check).await).await;
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HEALTH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            watch.update(bounded(&check).await).await;
        }
    });
    Health {
        reporter,
        server,
        services,
        draining,
        task,
    }
}

impl Health {
    /// The stop sequence (see the module documentation): resolves when the server should stop
    /// accepting, which is at once for [`Stop::Now`] and `grace` after `stop` for
    /// [`Stop::Drain`]; health reports NOT_SERVING from the moment `stop` resolves.
    pub async fn until_stopped<S: Into<Stop>>(
        self,
        stop: impl Future<Output = S>,
        grace: Duration,
    ) {
        let stop = stop.await.into();
        let server = self.server;
        self.task.abort();
        self.draining.begin();
        set(&self.reporter, &self.services, ServingStatus::NotServing).await;
        metrics::gauge!("server_ready", "server" => server).set(0.0);
        if stop == Stop::Drain && !grace.is_zero() {
            tracing::info!(
                server,
                grace = %humantime::format_duration(grace),
                "draining: NOT_SERVING, still serving for the grace period"
            );
            tokio::time::sleep(grace).await;
        }
        tracing::info!(
            server,
            "stopping: no new connections, GOAWAY, finishing in-flight requests"
        );
    }
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
