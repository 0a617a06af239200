//! The user-service binary: settings from the environment, serve until SIGTERM (drain, then
//! stop) or Ctrl-C (stop now).
//! With `AUTH_SERVICE_ADDRESS` unset it also runs auth-service in-process, so this one
//! command is the whole system. With `--health-check` it asks a running user-service's gRPC
//! health and exits instead.

use std::process::ExitCode;

use clap::Parser;
use user_service::{App, Cli};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if cli.health_check {
        let listen = cli.config.user_listen_addr;
        return Ok(
            grimos_server::probe::health_check("user-service", listen, &cli.config.tls).await,
        );
    }
    grimos_common::telemetry::run("user-service", async {
        let app = App::build(cli.into_config()).await?;
        app.run_until_stopped(grimos_common::shutdown::shutdown_signal())
            .await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
