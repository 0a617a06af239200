//! The process's shutdown signal, and how it asks a service to stop ([`Stop`]).

use std::future::Future;

/// How a service is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An orchestrator's stop (SIGTERM: Kubernetes, systemd, Compose): report NOT_SERVING and
    /// keep serving for `GRIMOS_DRAIN_GRACE`, so that balancers and probes stop sending work
    /// here, then stop accepting and finish the requests in flight.
    Drain,
    /// An interactive stop (Ctrl-C, SIGINT), or a test's: no grace; stop accepting at once
    /// and finish the requests in flight.
    Now,
}

/// A future that resolves to `()` (a test's `async {}`, a oneshot) stops at once.
impl From<()> for Stop {
    fn from((): ()) -> Self {
        Stop::Now
    }
}

/// Resolves when the process receives SIGTERM ([`Stop::Drain`]) or Ctrl-C / SIGINT
/// ([`Stop::Now`]): whoever sends SIGTERM (an orchestrator) expects the replica to drain,
/// whoever presses Ctrl-C does not want to wait.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// service calls it before it starts serving, so a signal that arrives while it is still
/// getting ready to wait (after its "listening" line) is not lost. Without a handler in place
/// SIGINT and SIGTERM end the process at once, without a graceful stop.
pub fn shutdown_signal() -> impl Future<Output = Stop> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot listen for SIGINT and SIGTERM");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => {
                    tracing::info!("Ctrl-C (SIGINT) received, stopping now");
                    Stop::Now
                }
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM received, draining");
                    Stop::Drain
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C received, stopping now");
            Stop::Now
        }
    }
}
