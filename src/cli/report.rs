//! `consentry report`: the transparency report of a period, as one HTML
//! page (by default), Markdown, or `consentry.report/1` JSON; on stdout,
//! or in a file with `--output`. It reads what `history`, `status` and
//! `consent history` read (the store, the consent file, the running
//! daemon's counts when one answers) and writes nothing else: no state
//! directory is created to say there is nothing in it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use consentry::config::Config;
use consentry::control::{self, Request, Response};
use consentry::disclosure::Disclosure;
use consentry::report::{self, Door, Report, Sources, read};
use consentry::store::{Store, activation, database_exists, receipts};

use super::OutputArgs;

/// The schema id of `--format json` (docs/cli-json.md).
pub const SCHEMA: &str = "consentry.report/1";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry report --output report.html
  consentry report --since 7d --format md
  consentry report --since 2026-11-01T00:00:00Z --format json")]
pub struct ReportArgs {
    /// The start of the period: an RFC 3339 time, or a duration back from
    /// now ("24h", "7d"). At most 3660 days back.
    #[arg(long, value_name = "WHEN", default_value = "30d")]
    pub since: String,
    /// html (one self-contained page), md, or json (`consentry.report/1`);
    /// `--json` is the same as `--format json`.
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// Show the bodies of at most this many of the newest batches.
    #[arg(long, value_name = "N", default_value_t = report::DEFAULT_BATCHES)]
    pub batches: usize,
    /// Write the report to this file (readable by its owner only: it holds
    /// the bodies sent) instead of stdout.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// What `report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Md,
    Json,
}

pub async fn run(args: &ReportArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = output.config.load()?;
    let now = SystemTime::now();
    let since = super::history::since_time(&args.since)?;
    let report = build(&config, since, now, args.batches).await?;
    let format = if output.json {
        Format::Json
    } else {
        args.format
    };
    let text = render(&report, format)?;
    match &args.output {
        Some(path) => {
            write_private(path, &text)?;
            if !output.json {
                say!(
                    "wrote {} ({} of {} purposes sent in {} days)",
                    path.display(),
                    report.senders().count(),
                    report.purposes.len(),
                    report.period.days
                );
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .unwrap_or_else(|err| super::stdout_failed(err));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The report of the period from `since` (moved up to [`report::MAX_DAYS`]
/// before `now`) with the bodies of at most `batches` batches: the store
/// as it is, the verdicts as `status` gives them, and the running daemon's
/// door counts when one answers.
pub async fn build(
    config: &Config,
    since: SystemTime,
    now: SystemTime,
    batches: usize,
) -> anyhow::Result<Report> {
    let catalogue = config.load_catalogue()?;
    let oldest = now
        .checked_sub(Duration::from_secs(report::MAX_DAYS * 86_400))
        .unwrap_or(std::time::UNIX_EPOCH);
    let since = since.max(oldest);
    // As `status` decides: the file as it is now, knowing withdrawals and
    // the last activation.
    let withdrawn = receipts::peek_withdrawn(&config.state_dir).unwrap_or_default();
    let activation = activation::peek(&config.state_dir).unwrap_or_default();
    let decisions = config
        .evaluate_consent(&catalogue)
        .knowing_withdrawals(&catalogue, &withdrawn)
        .with_activation(activation)
        .decisions()
        .cloned()
        .collect();
    let stored = if database_exists(&config.state_dir)? {
        read::stored(&Store::open(&config.state_dir)?, since, batches)
            .context("cannot read the store for the report")?
    } else {
        read::Stored::default()
    };
    let sources = Sources {
        now,
        since,
        decisions,
        stored,
        door: door(config).await,
        disclosure: Disclosure::new(&catalogue, config.region, config.store.max_record_age.0),
    };
    Ok(Report::build(&catalogue, sources))
}

/// The running daemon's door counts; none when no daemon answers (a
/// daemon that cannot be asked is said on stderr, as `status` does).
async fn door(config: &Config) -> Option<Door> {
    match control::request(&config.control_socket(), &Request::Status).await {
        Ok(Response::Status(status)) => Some(Door {
            pid: status.pid,
            discarded: status.discarded,
            refused: status.refused,
        }),
        Err(control::ControlError::NotRunning(_)) => None,
        Err(err) => {
            eprintln!("warning: cannot ask the daemon for its door counts: {err}");
            None
        }
        Ok(other) => {
            eprintln!("warning: the daemon answered status with {other:?}");
            None
        }
    }
}

/// The report in `format`.
pub fn render(report: &Report, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Html => report::html::render(report),
        Format::Md => report::markdown::render(report),
        Format::Json => super::json_text(SCHEMA, report)? + "\n",
    })
}

/// `text` in `path`, readable and writable by its owner only (the bodies
/// it holds are what `history --show` shows to those who may read the
/// store), written beside it and renamed over it.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("--output {} names no file", path.display()))?;
    let temporary = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    // A leftover of an interrupted run is replaced, never reused: the mode
    // applies only to a file this call creates.
    let _ = std::fs::remove_file(&temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(err).with_context(|| format!("cannot write the report to {}", path.display()));
    }
    Ok(())
}
