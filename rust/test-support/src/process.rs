//! The services' real binaries in tests: stopping one with a signal, as an operator or an
//! orchestrator would.

use std::process::{Child, Command, ExitStatus};

/// Sends `signal` (`-TERM`, `-INT`, `-KILL`) to `child` and waits for it to exit; its exit
/// status, so a test can assert a clean stop.
pub async fn stop_with(mut child: Child, signal: &str) -> ExitStatus {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap()
}
