//! `consentry flush`: collect and upload now, through the running daemon if
//! there is one, or in this process if not.

use std::process::ExitCode;

use consentry::config::Config;
use consentry::control::{self, ControlError, FlushSummary, Request, Response};
use consentry::daemon::instance::InstanceError;
use consentry::daemon::{Agent, AgentError};
use std::time::{Duration, Instant};

use super::{CollectView, OutputArgs, print_json};

/// `consentry.flush/1` (docs/cli-json.md).
#[derive(serde::Serialize)]
struct Flushed<'a> {
    collect: CollectView,
    upload: &'a consentry::upload::UploadSummary,
}

/// How long a flush waits for a daemon that holds the state directory's
/// lock but does not answer yet (it is starting).
const DAEMON_STARTING: Duration = Duration::from_secs(10);

/// Flushes in this process, under the state directory's daemon lock; a
/// daemon that holds it is starting, and is asked instead once it answers.
async fn flush_here(config: &Config) -> anyhow::Result<FlushSummary> {
    let deadline = Instant::now() + DAEMON_STARTING;
    loop {
        match Agent::open(config.clone()).await {
            Ok(agent) => return Ok(agent.flush().await?),
            Err(AgentError::Instance(
                InstanceError::Running { .. } | InstanceError::Busy { .. },
            )) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(err.into()),
        }
        match control::request(&config.control_socket(), &Request::Flush).await {
            Ok(Response::Flushed(summary)) => return Ok(summary),
            Ok(Response::Error { message }) => {
                anyhow::bail!("the daemon could not flush: {message}")
            }
            Ok(other) => anyhow::bail!("the daemon answered unexpectedly: {other:?}"),
            Err(ControlError::NotRunning(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

pub async fn run(args: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let summary = match control::request(&config.control_socket(), &Request::Flush).await {
        Ok(Response::Flushed(summary)) => summary,
        Ok(Response::Error { message }) => anyhow::bail!("the daemon could not flush: {message}"),
        Ok(other) => anyhow::bail!("the daemon answered unexpectedly: {other:?}"),
        Err(ControlError::NotRunning(_)) => flush_here(&config).await?,
        Err(err) => return Err(err.into()),
    };
    if args.json {
        let flushed = Flushed {
            collect: CollectView::from(&summary.collect),
            upload: &summary.upload,
        };
        print_json("consentry.flush/1", &flushed)?;
    } else {
        print_summary(&summary);
    }
    Ok(
        if summary.upload.stopped.is_some() || !summary.collect.errors.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn print_summary(summary: &FlushSummary) {
    say!("collected: {} record(s) queued", summary.collect.queued);
    for blocked in &summary.collect.blocked {
        say!("  blocked  {}: {}", blocked.purpose, blocked.reason);
    }
    for error in &summary.collect.errors {
        say!("  error    {error}");
    }
    let upload = &summary.upload;
    say!(
        "uploaded: {} record(s) in {} batch(es); {} still queued",
        upload.records_sent,
        upload.batches_sent,
        upload.records_queued
    );
    if let Some(stopped) = &upload.stopped {
        say!("  stopped  {stopped}");
    }
}
