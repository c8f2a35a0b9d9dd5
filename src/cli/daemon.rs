//! `consentry daemon`: load and validate everything, bind the control
//! socket, then run until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use consentry::daemon;
use consentry::pipeline::Pipeline;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::ConfigArgs;

pub async fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let socket = config.control_socket();
    let pipeline = Pipeline::open(config)?;
    let listener = daemon::bind_control_socket(&socket)?;
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
    daemon::run(pipeline, listener, shutdown.clone()).await;
    shutdown.cancel();
    let _ = watcher.await;
    // Remove our socket so the next start does not have to probe it.
    let _ = std::fs::remove_file(&socket);
    Ok(ExitCode::SUCCESS)
}
