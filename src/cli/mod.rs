//! The command line: one clap definition, one file per verb group. This is
//! the binary's edge, so errors here are `anyhow` with context; every verb
//! reads the agent config from `--config` and prints text, or JSON with
//! `--json` (shapes in docs/cli-json.md). The global options (`--config`,
//! `--json`, `--log-format`, `--log-level`) go before or after the verb;
//! `exit` maps errors to exit codes, `reference` prints completions and the
//! man page.

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

mod check;
mod consent;
mod daemon;
#[cfg(feature = "demo")]
mod demo;
mod disclosure;
mod emit;
pub mod exit;
mod flush;
mod history;
mod preview;
mod receipts;
mod reference;
mod report;
mod status;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use consentry::config::{self, Config};

/// consentry: sends a product's telemetry only as far as its accepted
/// clauses allow.
#[derive(Debug, Parser)]
#[command(
    name = "consentry",
    version,
    about,
    long_about = None,
    after_help = exit::HELP_FOOTER,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: collect on schedule, gate by consent, upload.
    #[command(after_help = "Examples:
  consentry daemon
  consentry --config /etc/consentry/consentry.toml --log-format json daemon")]
    Daemon,
    /// Validate the config, the catalogue, the consent file and the upload
    /// settings; with --connect, also reach the endpoint.
    Check(check::CheckArgs),
    /// List, show, grant, revoke or decline clauses; their receipts.
    #[command(subcommand)]
    Consent(consent::ConsentCommand),
    /// Show, per purpose, whether it may send and why.
    Status(status::StatusArgs),
    /// Collect and upload now.
    #[command(after_help = "Examples:
  consentry flush
  consentry flush --json")]
    Flush,
    /// Hand events to the daemon through its ingest socket.
    Emit(emit::EmitArgs),
    /// Show exactly what the next report of each purpose would send.
    Preview(preview::PreviewArgs),
    /// The audit trail: every upload, failed attempt and purge.
    History(history::HistoryArgs),
    /// Print what is sent and why, per region, from the enforced catalogue.
    Disclosure(disclosure::DisclosureArgs),
    /// Write the transparency report of a period: what was sent, per
    /// purpose and day, under which consent, and what did not leave.
    Report(report::ReportArgs),
    /// Run the whole path on loopback with a throwaway receiver, then exit.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Print a shell completion script on stdout.
    Completions(reference::CompletionsArgs),
    /// Print the manual page (roff) on stdout.
    #[command(hide = true)]
    Man(reference::ManArgs),
}

/// The options every verb takes, before or after the verb
/// (`consentry --config X status` and `consentry status --config X`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print machine-readable JSON instead of text (docs/cli-json.md);
    /// errors too, as a JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// How logs on stderr look: `text` (one plain line per event, no colour
    /// unless stderr is a terminal) or `json` (one object per line).
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Which logs to write, as a level (`debug`) or a filter
    /// (`consentry=debug,warn`). Default: `info` for the daemon, `error`
    /// for the other verbs, which report their outcome themselves.
    #[arg(long, global = true, value_name = "FILTER", env = "CONSENTRY_LOG", value_parser = log_filter)]
    pub log_level: Option<String>,
}

/// A `--log-level` value: comma-separated directives, each a level or
/// `target=level`, the target a Rust module path. A typo is a usage error,
/// not a filter that silently shows something else.
fn log_filter(text: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in text.split(',') {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        let level_ok = LEVELS.contains(&level.trim().to_ascii_lowercase().as_str());
        let target_ok = target.is_none_or(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        if !level_ok || !target_ok {
            return Err(format!(
                "`{directive}` is not a level ({}) or `module=level`",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(text.to_owned())
}

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--config PATH`, shared by every verb.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The agent config file.
    #[arg(long, short = 'c', global = true, value_name = "PATH", env = "CONSENTRY_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

impl ConfigArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config)?)
    }
}

/// What every verb that reads the config and prints a result needs: the
/// config path and whether to print JSON.
#[derive(Debug, Clone)]
pub struct OutputArgs {
    pub config: ConfigArgs,
    pub json: bool,
}

/// Logs go to stderr, in the format `--log-format` asks for. Text lines are
/// plain `LEVEL target: message key=value` for journald: no colour unless
/// stderr is a terminal (and `NO_COLOR` is unset), and no timestamp when
/// systemd's journal stamps them itself (`JOURNAL_STREAM`).
///
/// The filter is a `Targets` list (`debug`, `consentry=debug,warn`: a
/// default level and levels per module path), checked by `log_filter`
/// when the command line is parsed.
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let default = match cli.command {
        Command::Daemon => LevelFilter::INFO,
        // The CLI reports outcomes itself; its logs are for real trouble.
        _ => LevelFilter::ERROR,
    };
    let filter = cli
        .global
        .log_level
        .as_deref()
        .and_then(|text| text.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match cli.global.log_format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => {
            registry.with(layer.with_ansi(false).without_time()).init()
        }
        LogFormat::Text => registry
            .with(layer.with_ansi(colour_on(&std::io::stderr())))
            .init(),
    }
}

/// Colour only for a person at a terminal who has not asked for none
/// (<https://no-color.org>).
pub fn colour_on(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = OutputArgs {
        config: cli.global.config.clone(),
        json: cli.global.json,
    };
    match cli.command {
        Command::Daemon => daemon::run(&out.config).await,
        Command::Check(args) => check::run(&args, &out).await,
        Command::Consent(command) => consent::run(command, &out).await,
        Command::Status(args) => status::run(&args, &out).await,
        Command::Flush => flush::run(&out).await,
        Command::History(args) => history::run(&args, &out),
        Command::Disclosure(args) => disclosure::run(&args, &out),
        Command::Report(args) => report::run(&args, &out).await,
        Command::Emit(args) => emit::run(&args, &out).await,
        Command::Preview(args) => preview::run(&args, &out),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&args).await,
        Command::Completions(args) => reference::completions(&args),
        Command::Man(args) => reference::man(&args),
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

/// Prints `value` as pretty JSON on stdout, with `"schema": SCHEMA` first.
/// `value` must serialize as an object; every schema id and shape is
/// documented in docs/cli-json.md (and checked against it by tests).
pub fn print_json(schema: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = json_text(schema, value)?;
    say!("{text}");
    Ok(())
}

/// `value` as pretty JSON with `"schema": SCHEMA` first (see
/// [`print_json`]).
pub fn json_text(schema: &str, value: &impl serde::Serialize) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct Tagged<'a, T> {
        schema: &'a str,
        #[serde(flatten)]
        value: &'a T,
    }
    serde_json::to_string_pretty(&Tagged { schema, value }).context("cannot encode JSON output")
}

/// A line of prose in a JSON list (a warning, a collector error): always
/// an object with `message`, so prose never stands where data is expected.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    pub message: String,
}

/// `CollectSummary` as `--json` shows it: errors as `{message}` objects
/// (blocked purposes are objects in the control protocol already).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectView {
    pub queued: u64,
    pub blocked: Vec<consentry::control::Blocked>,
    pub errors: Vec<Message>,
}

impl From<&consentry::control::CollectSummary> for CollectView {
    fn from(summary: &consentry::control::CollectSummary) -> Self {
        Self {
            queued: summary.queued,
            blocked: summary.blocked.clone(),
            errors: summary
                .errors
                .iter()
                .map(|e| Message { message: e.clone() })
                .collect(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_filter_is_levels_and_module_levels_and_a_typo_is_refused() {
        for good in [
            "debug",
            "WARN",
            "consentry=debug,warn",
            "consentry::upload=trace,off",
        ] {
            assert_eq!(log_filter(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["bad[[[", "verbose", "consentry=loud", "=debug", "debug,"] {
            let err = log_filter(bad).unwrap_err();
            assert!(err.contains("is not a level"), "{bad}: {err}");
        }
        let parsed = Cli::try_parse_from(["consentry", "--log-level", "nope", "status"]);
        assert!(parsed.is_err());
    }
}
