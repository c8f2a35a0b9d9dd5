//! `consentry flush`: collect and upload now, through the running daemon if
//! there is one, or in this process if not.

use std::process::ExitCode;

use consentry::control::{self, ControlError, FlushSummary, Request, Response};
use consentry::daemon::Agent;

use super::{CollectView, OutputArgs, print_json};

/// `consentry.flush/1` (docs/cli-json.md).
#[derive(serde::Serialize)]
struct Flushed<'a> {
    collect: CollectView,
    upload: &'a consentry::upload::UploadSummary,
}

pub async fn run(args: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let summary = match control::request(&config.control_socket(), &Request::Flush).await {
        Ok(Response::Flushed(summary)) => summary,
        Ok(Response::Error { message }) => anyhow::bail!("the daemon could not flush: {message}"),
        Ok(other) => anyhow::bail!("the daemon answered unexpectedly: {other:?}"),
        Err(ControlError::NotRunning(_)) => Agent::open(config).await?.flush().await?,
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
        "uploaded: {} record(s) in {} batch(es); {} purged; {} still queued",
        upload.records_sent,
        upload.batches_sent,
        upload.records_purged,
        upload.records_queued
    );
    if let Some(stopped) = &upload.stopped {
        say!("  stopped  {stopped}");
    }
}
