//! Logging set-up: the global `tracing` subscriber.

use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber: `RUST_LOG` filters (default `info`), output
/// goes to stderr, coloured only on a terminal (log collectors get plain `key=value` text).
/// Safe to call more than once (later calls do nothing), so tests and an embedding process
/// can all call it.
pub fn init_tracing() {
    use std::io::IsTerminal as _;
    // PostgreSQL's notices (such as "relation ... already exists, skipping" from the
    // migrator at every start) are not news at info.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
