//! The command line: one clap definition, one file per verb group. This is
//! the binary's edge, so errors here are `anyhow` with context; every verb
//! reads the agent config from `--config` and prints text, or JSON with
//! `--json`.

/// `println!` for the CLI: a closed stdout (`consentry status | head -1`)
/// ends the process quietly instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(err) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::cli::stdout_failed(err);
        }
    }};
}

mod consent;
mod daemon;
mod demo;
mod emit;
mod flush;
mod history;
mod preview;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use consentry::config::{self, Config};

/// consentry: sends a product's telemetry only as far as its accepted
/// clauses allow.
#[derive(Debug, Parser)]
#[command(name = "consentry", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: collect on schedule, gate by consent, upload.
    Daemon(ConfigArgs),
    /// Validate the config, the catalogue, the consent file and the upload
    /// settings; with --connect, also reach the endpoint.
    Check(status::CheckArgs),
    /// List, show, grant or revoke clauses.
    #[command(subcommand)]
    Consent(consent::ConsentCommand),
    /// Show, per purpose, whether it may send and why.
    Status(status::StatusArgs),
    /// Collect and upload now.
    Flush(OutputArgs),
    /// Hand events to the daemon through its ingest socket.
    Emit(emit::EmitArgs),
    /// Show exactly what the next report of each purpose would send.
    Preview(preview::PreviewArgs),
    /// The audit trail: every upload, failed attempt and purge.
    History(history::HistoryArgs),
    /// Run the whole path on loopback with a throwaway receiver, then exit.
    Demo(demo::DemoArgs),
}

/// `--config PATH`, shared by every verb.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The agent config file.
    #[arg(long, short = 'c', value_name = "PATH", env = "CONSENTRY_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

impl ConfigArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config)?)
    }
}

/// `--config PATH` and `--json`.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Logs go to stderr; `CONSENTRY_LOG` (e.g. `debug`) overrides the level.
pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Daemon(_) => "info",
        // The CLI reports outcomes itself; its logs are for real trouble.
        _ => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONSENTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon(args) => daemon::run(&args).await,
        Command::Check(args) => status::check(&args).await,
        Command::Consent(command) => consent::run(command).await,
        Command::Status(args) => status::run(&args).await,
        Command::Flush(args) => flush::run(&args).await,
        Command::History(args) => history::run(&args),
        Command::Emit(args) => emit::run(&args).await,
        Command::Preview(args) => preview::run(&args),
        Command::Demo(args) => demo::run(&args).await,
    }
}

/// Refuses a purpose argument the catalogue does not have, naming those it
/// has.
pub fn check_purpose_arg(
    catalogue: &consentry::catalogue::Catalogue,
    purpose: Option<&String>,
) -> anyhow::Result<()> {
    if let Some(purpose) = purpose
        && catalogue.purpose(purpose).is_none()
    {
        anyhow::bail!(
            "unknown purpose `{purpose}` (the catalogue has: {})",
            catalogue.purpose_ids()
        );
    }
    Ok(())
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON output")?;
    say!("{text}");
    Ok(())
}

/// Where `say!` goes when stdout is gone: a reader that stopped reading is
/// not an error of ours; anything else is reported once.
pub fn stdout_failed(err: std::io::Error) -> ! {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {err}");
    std::process::exit(1);
}
