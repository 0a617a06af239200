//! The auth-service binary: settings from the environment, serve until SIGTERM (drain, then
//! stop) or Ctrl-C (stop now); or, with `--health-check`, ask a running auth-service's gRPC
//! health and exit.

use std::process::ExitCode;

use auth_service::{App, Cli};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if cli.health_check {
        let listen = cli.config.listen_addr;
        return Ok(grimos_server::probe::health_check("auth-service", listen, &cli.tls).await);
    }
    grimos_common::telemetry::run("auth-service", async {
        let app = App::build(cli.into_config()).await?;
        app.run_until_stopped(grimos_common::shutdown::shutdown_signal())
            .await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
