//! Exit codes, and how a failed verb is reported: the one place that turns
//! an error into a code. The error is printed once, on stderr, as one line
//! (the error and each cause not already in its text); with `--json`, a
//! `consentry.error/1` object also goes to stdout, so a script reading
//! stdout always gets JSON. The kind is found by walking the error's chain
//! and downcasting, never by matching its text.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | ok |
//! | 1 | error (including a verb's own failure, e.g. an upload refused) |
//! | 2 | usage: the command line is wrong (clap's code) |
//! | 3 | the daemon is needed and not running |
//! | 4 | permission denied (by the daemon, or by the system) |

use std::process::ExitCode;

use consentry::control::ControlError;
use consentry::ingest::client::ClientError;
use serde::Serialize;

/// The `--help` footer of the top-level command.
pub const HELP_FOOTER: &str =
    "Global options go before or after the verb. With --json, every verb prints \
one JSON object on stdout (docs/cli-json.md), errors included.

Exit codes:
  0  ok
  1  error
  2  usage: the command line is wrong
  3  the daemon is needed and not running (e.g. `consentry emit`)
  4  permission denied (by the daemon, or by the system)

Examples:
  consentry check
  consentry --config ./consentry.toml status
  consentry consent grant eula
  consentry status --json | jq '.decisions[] | select(.allowed)'";

/// The schema id of the error object.
pub const ERROR_SCHEMA: &str = "consentry.error/1";

/// What kind of failure ended the verb; each has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Error,
    Usage,
    NotRunning,
    Denied,
}

impl ErrorKind {
    pub fn code(self) -> u8 {
        match self {
            ErrorKind::Error => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotRunning => 3,
            ErrorKind::Denied => 4,
        }
    }

    /// The first cause in the chain that says more than "error".
    pub fn of(err: &anyhow::Error) -> Self {
        for cause in err.chain() {
            if let Some(control) = cause.downcast_ref::<ControlError>() {
                match control {
                    ControlError::NotRunning(_) => return ErrorKind::NotRunning,
                    ControlError::Denied(_) => return ErrorKind::Denied,
                    _ => {}
                }
            }
            if let Some(ClientError::NotRunning(_)) = cause.downcast_ref::<ClientError>() {
                return ErrorKind::NotRunning;
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::PermissionDenied
            {
                return ErrorKind::Denied;
            }
        }
        ErrorKind::Error
    }
}

/// `consentry.error/1`.
#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub schema: &'static str,
    pub error: ErrorBody,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// The outermost error's own text.
    pub message: String,
    pub kind: ErrorKind,
    pub exit_code: u8,
    /// The texts of the errors that caused it, outermost first.
    pub causes: Vec<String>,
}

impl ErrorReport {
    pub fn new(err: &anyhow::Error) -> Self {
        let kind = ErrorKind::of(err);
        Self::with(
            kind,
            err.to_string(),
            err.chain().skip(1).map(|c| c.to_string()).collect(),
        )
    }

    fn with(kind: ErrorKind, message: String, causes: Vec<String>) -> Self {
        Self {
            schema: ERROR_SCHEMA,
            error: ErrorBody {
                message,
                kind,
                exit_code: kind.code(),
                causes,
            },
        }
    }
}

/// Reports a failed verb: one line on stderr, the JSON object on stdout
/// with `--json`; returns its exit code.
pub fn fail(err: &anyhow::Error, json: bool) -> ExitCode {
    eprintln!("error: {}", render(err));
    let report = ErrorReport::new(err);
    if json {
        print_report(&report);
    }
    ExitCode::from(report.error.kind.code())
}

/// Reports a command line clap refused (exit 2), or prints the help or
/// version it was asked for (exit 0). `--json` is looked for in the raw
/// arguments, as they could not be parsed.
pub fn usage(err: clap::Error) -> ExitCode {
    if !err.use_stderr() {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if std::env::args_os().any(|arg| arg == "--json") {
        let rendered = err.render().to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        print_report(&ErrorReport::with(ErrorKind::Usage, message, Vec::new()));
    }
    let _ = err.print();
    if asked_for_missing_demo(&err) {
        eprintln!(
            "\nnote: this build has no `demo` (the shipped binary leaves it out); in a source\n      checkout, `cargo run --release -- demo` builds and runs it"
        );
    }
    ExitCode::from(ErrorKind::Usage.code())
}

/// Whether the usage error is `consentry demo` on a build without the
/// `demo` feature, which deserves more than "unrecognized subcommand".
fn asked_for_missing_demo(err: &clap::Error) -> bool {
    !cfg!(feature = "demo")
        && err.kind() == clap::error::ErrorKind::InvalidSubcommand
        && matches!(
            err.get(clap::error::ContextKind::InvalidSubcommand),
            Some(clap::error::ContextValue::String(verb)) if verb == "demo"
        )
}

fn print_report(report: &ErrorReport) {
    let text = serde_json::to_string_pretty(report).expect("error reports serialize");
    say!("{text}");
}

/// The error and its causes on one line, each cause once: most of our
/// errors already name their cause in their own message.
pub fn render(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn kind(err: anyhow::Error) -> (ErrorKind, u8) {
        let kind = ErrorKind::of(&err);
        (kind, kind.code())
    }

    #[test]
    fn a_daemon_that_is_not_running_is_exit_3_however_deep() {
        let err = anyhow::Error::from(ControlError::NotRunning("/run/x.sock".into()));
        assert_eq!(kind(err), (ErrorKind::NotRunning, 3));
        let wrapped = Err::<(), _>(ControlError::NotRunning("/run/x.sock".into()))
            .context("cannot flush")
            .unwrap_err();
        assert_eq!(kind(wrapped), (ErrorKind::NotRunning, 3));
        let emit = anyhow::Error::from(ClientError::NotRunning("/run/ingest.sock".into()));
        assert_eq!(kind(emit), (ErrorKind::NotRunning, 3));
    }

    #[test]
    fn a_refusal_or_a_permission_error_is_exit_4() {
        let denied = anyhow::Error::from(ControlError::Denied("uid 1000 may not flush".into()));
        assert_eq!(kind(denied), (ErrorKind::Denied, 4));
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let deep = anyhow::Error::from(ControlError::Io {
            path: "/run/consentry/control.sock".into(),
            source: io,
        })
        .context("cannot ask the daemon");
        assert_eq!(kind(deep), (ErrorKind::Denied, 4));
    }

    #[test]
    fn anything_else_is_exit_1() {
        assert_eq!(kind(anyhow::anyhow!("bad")), (ErrorKind::Error, 1));
        let timeout = anyhow::Error::from(ControlError::Timeout(std::time::Duration::from_secs(1)));
        assert_eq!(kind(timeout), (ErrorKind::Error, 1));
        let missing = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(kind(missing), (ErrorKind::Error, 1));
    }

    #[test]
    fn the_json_report_names_kind_code_and_every_cause() {
        let err = anyhow::Error::from(ControlError::NotRunning("/run/x.sock".into()))
            .context("cannot flush");
        let value = serde_json::to_value(ErrorReport::new(&err)).unwrap();
        assert_eq!(value["schema"], ERROR_SCHEMA);
        assert_eq!(value["error"]["message"], "cannot flush");
        assert_eq!(value["error"]["kind"], "not_running");
        assert_eq!(value["error"]["exit_code"], 3);
        assert_eq!(
            value["error"]["causes"],
            serde_json::json!(["no daemon is listening on /run/x.sock"])
        );
    }

    #[test]
    fn the_line_names_each_cause_once() {
        let err = anyhow::anyhow!("inner").context("outer: inner");
        assert_eq!(render(&err), "outer: inner");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render(&err), "outer: inner");
    }
}
