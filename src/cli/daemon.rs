//! `consentry daemon`: run the start-up preflight, take the state
//! directory's daemon lock, bind the sockets, then run until SIGTERM or
//! SIGINT. SIGHUP reloads the config (see `daemon::reload`). A second
//! SIGTERM or SIGINT while draining exits at once: everything acknowledged
//! is already on disk.

use std::process::ExitCode;

use anyhow::Context;
use consentry::daemon::{self, Agent, Listeners};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::ConfigArgs;

pub async fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let preflight = consentry::preflight::run(&config)?;
    let sockets = [config.control_socket(), config.ingest_socket()];
    let agent = Agent::open_daemon(config, preflight).await?;
    let listeners = Listeners::bind(&agent.config())?;
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let reload = agent.reload_handle();
    let watcher = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = terminate.recv() => "SIGTERM",
                    _ = interrupt.recv() => "SIGINT",
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading the config");
                        reload.notify_one();
                        continue;
                    }
                };
                if shutdown.is_cancelled() {
                    tracing::warn!(
                        "{name} again: exiting now; every acknowledged record is on disk"
                    );
                    std::process::exit(1);
                }
                tracing::info!("{name}: shutting down (send it again to exit at once)");
                shutdown.cancel();
            }
        })
    };
    let stopped = daemon::run(agent, listeners, shutdown.clone()).await;
    watcher.abort();
    // Remove our sockets so the next start does not have to probe them.
    for socket in sockets {
        let _ = std::fs::remove_file(&socket);
    }
    stopped?;
    Ok(ExitCode::SUCCESS)
}
