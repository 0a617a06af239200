//! The auth-service binary: settings from the environment, serve until SIGTERM (drain, then
//! stop) or Ctrl-C (stop now).

use auth_service::{App, Cli};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    grimos_common::telemetry::init_tracing();
    let config = Cli::parse().into_config();
    let app = App::build(config).await?;
    app.run_until_stopped(grimos_common::shutdown::shutdown_signal())
        .await
}
