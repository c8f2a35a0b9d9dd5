//! `consentry daemon`: load and validate everything, bind the control
//! socket, then run until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use consentry::daemon::{self, Agent, Listeners};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::ConfigArgs;

pub async fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let sockets = [config.control_socket(), config.ingest_socket()];
    let agent = Agent::open(config).await?;
    let listeners = Listeners::bind(&agent.config)?;
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let watcher = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                _ = shutdown.cancelled() => {}
            }
            shutdown.cancel();
        })
    };
    daemon::run(agent, listeners, shutdown.clone()).await;
    shutdown.cancel();
    let _ = watcher.await;
    // Remove our sockets so the next start does not have to probe them.
    for socket in sockets {
        let _ = std::fs::remove_file(&socket);
    }
    Ok(ExitCode::SUCCESS)
}
