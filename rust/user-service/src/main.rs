//! The user-service binary: settings from the environment, serve until SIGTERM (drain, then
//! stop) or Ctrl-C (stop now).
//! With `AUTH_SERVICE_ADDRESS` unset it also runs auth-service in-process, so this one
//! command is the whole system.

use clap::Parser;
use user_service::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    grimos_common::telemetry::init_tracing();
    let config = Config::parse();
    let app = App::build(config).await?;
    app.run_until_stopped(grimos_common::shutdown::shutdown_signal())
        .await
}
