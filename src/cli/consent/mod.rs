//! `consentry consent list|show|grant|revoke|decline`: read and change the
//! consent file, then tell a running daemon so the change applies at once
//! (a revoke purges what that clause had queued). `decline` changes
//! nothing: it records that a clause was offered and refused, as a declared
//! receipt. `--method` says who asked: a person at the command line (`cli`,
//! the default) or an installer that asked the question itself and runs the
//! verb with the answer (`installer`); the consent file and the act's
//! receipt carry it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use consentry::catalogue::Catalogue;
use consentry::config::Config;
use consentry::consent::{self, Act, ActKind, ConsentLock, Method};
use consentry::control::{self, ControlError, Request, Response};
use consentry::daemon::instance::InstanceError;
use consentry::daemon::{Agent, AgentError};
use serde::Serialize;

use super::{OutputArgs, print_json};

mod view;

use view::{list, show};

#[derive(Debug, Subcommand)]
#[command(after_help = "Examples:
  consentry consent list
  consentry consent show ksn
  consentry consent grant eula
  consentry consent revoke ksn --json")]
pub enum ConsentCommand {
    /// Every clause of the catalogue and whether it is accepted.
    #[command(after_help = "Examples:
  consentry consent list
  consentry consent list --json")]
    List,
    /// A clause's full text, and the purposes and fields it allows.
    #[command(after_help = "Examples:
  consentry consent show eula
  consentry consent show ksn --json")]
    Show {
        /// The clause id (`consentry consent list` names them).
        clause: String,
    },
    /// Accept the catalogue's current version of a clause.
    #[command(after_help = "Examples:
  consentry consent grant eula
  consentry consent grant ksn --method installer
  consentry consent grant ksn --check
  consentry --config ./consentry.toml consent grant ksn --json")]
    Grant(OfferArgs),
    /// Withdraw a clause; what it had queued is purged.
    #[command(after_help = "Examples:
  consentry consent revoke ksn
  consentry consent revoke eula --json")]
    Revoke(ActArgs),
    /// Record that a clause was offered and refused (an installer's "no"):
    /// nothing is accepted or changed; a declared receipt keeps the answer.
    #[command(after_help = "Examples:
  consentry consent decline ksn --method installer
  consentry consent decline ksn --json")]
    Decline(OfferArgs),
    /// Every consent receipt: grants, withdrawals, renewals, declines,
    /// policy and region changes, oldest first.
    #[command(after_help = "Examples:
  consentry consent history
  consentry consent history --json")]
    History,
    /// One consent receipt, as JSON (docs/consent-receipts.md).
    #[command(after_help = "Examples:
  consentry consent receipt 3f2a
  consentry consent receipt 3f2a9c1e-0b7d-4c55-9a51-2d8e6f0a1b2c")]
    Receipt {
        /// The receipt id, or its first characters.
        id: String,
    },
}

/// What `grant` and `revoke` take: the clause, and who asked.
#[derive(Debug, Args)]
pub struct ActArgs {
    /// The clause id (`consentry consent list` names them).
    clause: String,
    /// Who asked the question this act answers: `cli` (a person at this
    /// command line) or `installer` (an installer that showed the clause,
    /// asked, and runs this command with the answer). Recorded in the
    /// consent file and in the act's receipt (`collection_method`).
    #[arg(long, value_enum, value_name = "METHOD", default_value_t = MethodArg::Cli)]
    method: MethodArg,
}

/// What `grant` and `decline` take besides: they answer a clause that was
/// offered, so an installer can name the text it showed, or ask first.
#[derive(Debug, Args)]
pub struct OfferArgs {
    #[command(flatten)]
    act: ActArgs,
    /// Refuse unless the clause's text is still the one with this SHA-256
    /// (the one shown: `consentry consent show CLAUSE` prints it), so an
    /// answer is never recorded against a text nobody was shown.
    #[arg(long, value_name = "HEX")]
    text_sha256: Option<String>,
    /// Check that the act would be accepted now, and change and record
    /// nothing: exit 0 if it would (a grant: also when the clause is
    /// already accepted as it is now), 1 with the reason if not.
    #[arg(long)]
    check: bool,
}

impl OfferArgs {
    /// The same act without the offer's options (`revoke`).
    fn plain(act: ActArgs) -> Self {
        Self {
            act,
            text_sha256: None,
            check: false,
        }
    }
}

/// `--method`: how the acceptance or withdrawal was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    Installer,
    Cli,
}

impl From<MethodArg> for Method {
    fn from(method: MethodArg) -> Self {
        match method {
            MethodArg::Installer => Method::Installer,
            MethodArg::Cli => Method::Cli,
        }
    }
}

pub async fn run(command: ConsentCommand, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    match command {
        ConsentCommand::List => list(output),
        ConsentCommand::Show { clause } => show(&clause, output),
        ConsentCommand::Grant(act) => change(&act, output, ActKind::Grant).await,
        ConsentCommand::Revoke(act) => {
            change(&OfferArgs::plain(act), output, ActKind::Revoke).await
        }
        ConsentCommand::Decline(act) => change(&act, output, ActKind::Decline).await,
        ConsentCommand::History => super::receipts::history(output),
        ConsentCommand::Receipt { id } => super::receipts::receipt(&id, output),
    }
}

pub(super) fn load(output: &OutputArgs) -> anyhow::Result<(Config, Catalogue)> {
    let config = output.config.load()?;
    let catalogue = config.load_catalogue()?;
    Ok((config, catalogue))
}

/// `consentry.consent.change/1` (docs/cli-json.md): grant, revoke and
/// decline.
#[derive(Serialize)]
struct Change {
    clause: String,
    /// Which act: `grant`, `revoke` or `decline`.
    act: ActKind,
    granted: bool,
    /// False for a revoke of a clause that was not accepted, a grant of one
    /// already accepted as it is now, and every decline.
    changed: bool,
    acceptance: Option<consent::Acceptance>,
    daemon: Told,
}

/// What came of recording the change: by the daemon, or here.
#[derive(Debug, Clone, Serialize)]
struct Told {
    outcome: Outcome,
    /// Queued records purged: by the daemon (`applied`) or by this command
    /// (`not_running`).
    purged: u64,
    /// Records still queued (`applied` only).
    queued: Option<u64>,
    ksn_window_discarded: bool,
    installation_id_rotated: bool,
    /// The receipts the change appended, the act's own among them.
    receipts: Vec<uuid::Uuid>,
    /// What went wrong (`refused`, `not_told`, `not_recorded`), or why the
    /// consent file holds everything (`applied`, `not_running`).
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    /// Nothing changed, so nothing was recorded.
    Unchanged,
    /// The daemon recorded and applied the change before answering.
    Applied,
    /// No daemon runs: the change was recorded and applied here.
    NotRunning,
    /// No daemon runs, and the store could not be used here: the daemon
    /// records the change when it starts, as observed.
    NotRecorded,
    /// The daemon answered with an error.
    Refused,
    /// The daemon could not be asked; it reads the file again when the
    /// file watch tells it.
    NotTold,
    /// `--check`: the act would be accepted; nothing was changed or
    /// recorded.
    Checked,
}

impl Told {
    fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            purged: 0,
            queued: None,
            ksn_window_discarded: false,
            installation_id_rotated: false,
            receipts: Vec::new(),
            message: None,
        }
    }

    fn with_message(outcome: Outcome, message: String) -> Self {
        Self {
            message: Some(message),
            ..Self::new(outcome)
        }
    }

    /// "purged N, open KSN window discarded, installation id replaced".
    fn effects(&self) -> String {
        let mut effects = vec![format!("purged {}", self.purged)];
        if self.ksn_window_discarded {
            effects.push("open KSN window discarded".into());
        }
        if self.installation_id_rotated {
            effects.push("installation id replaced".into());
        }
        if let Some(receipt) = self.receipts.first() {
            effects.push(format!("receipt {receipt}"));
        }
        effects.join(", ")
    }
}

impl std::fmt::Display for Told {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.message.as_deref().unwrap_or("");
        let holding = match &self.message {
            Some(why) => format!("; the consent file holds everything: {why}"),
            None => String::new(),
        };
        match self.outcome {
            Outcome::Unchanged => write!(f, "unchanged"),
            Outcome::Checked => write!(f, "not asked (--check: nothing changed or recorded)"),
            Outcome::Applied => write!(
                f,
                "applied ({}, {} still queued){holding}",
                self.effects(),
                self.queued.unwrap_or_default()
            ),
            Outcome::NotRunning => write!(
                f,
                "not running; recorded and applied here ({}){holding}",
                self.effects()
            ),
            Outcome::NotRecorded => write!(f, "not running, and not recorded here: {message}"),
            Outcome::Refused => write!(f, "refused the change notice: {message}"),
            Outcome::NotTold => write!(
                f,
                "not told ({message}); it reads the consent file again when it notices the change"
            ),
        }
    }
}

async fn change(args: &OfferArgs, output: &OutputArgs, kind: ActKind) -> anyhow::Result<ExitCode> {
    let (clause, method) = (args.act.clause.as_str(), Method::from(args.act.method));
    let (config, catalogue) = load(output)?;
    if let (Some(shown), Some(known)) = (&args.text_sha256, catalogue.clause(clause))
        && !shown.eq_ignore_ascii_case(&known.text_sha256)
    {
        anyhow::bail!(
            "the text of {clause} is not the one shown: it has sha256 {}, the command names {shown}; nothing recorded: show it again (`consentry consent show {clause}`) and ask again",
            known.text_sha256
        );
    }
    // Only reads (the file is replaced whole, never written in place), so
    // it takes no lock and leaves no lock file behind: an installer's
    // question on a machine where nothing is accepted leaves no trace.
    if args.check {
        return check(clause, &config, &catalogue, kind, output);
    }
    // One command at a time; the daemon's own looks wait for our notice,
    // so the change is recorded as this command's act, not as observed.
    // A decline holds it too: nobody grants the clause between our look at
    // the file and the receipt.
    let _lock = ConsentLock::exclusive(&config.consent_file)?;
    let (acceptance, act) = match kind {
        ActKind::Grant => {
            let granted = consent::grant(
                &config.consent_file,
                &catalogue,
                config.region,
                clause,
                method,
            )?;
            let act = granted.changed.then(|| Act::grant(&granted.acceptance));
            (Some(granted.acceptance), act)
        }
        ActKind::Revoke => {
            let revoked = consent::revoke(&config.consent_file, &catalogue, clause)?;
            let act = revoked
                .changed
                .then(|| Act::revoke(clause, revoked.record.as_ref(), method.as_str()));
            (None, act)
        }
        ActKind::Decline => {
            let offered =
                consent::decline(&config.consent_file, &catalogue, config.region, clause)?;
            (None, Some(Act::decline(offered, method)))
        }
    };
    let changed = act.is_some() && kind != ActKind::Decline;
    let daemon = match act {
        Some(act) => record_act(&config, act).await,
        None => Told::new(Outcome::Unchanged),
    };
    // A decline exists only as its receipt: one not recorded did not happen.
    if kind == ActKind::Decline && !matches!(daemon.outcome, Outcome::Applied | Outcome::NotRunning)
    {
        anyhow::bail!(
            "the decline of {clause} was not recorded ({}); nothing changed: run the command again",
            daemon.message.as_deref().unwrap_or("no answer")
        );
    }
    let report = Change {
        clause: clause.to_owned(),
        act: kind,
        granted: kind == ActKind::Grant,
        changed,
        acceptance,
        daemon,
    };
    if output.json {
        print_json("consentry.consent.change/1", &report)?;
    } else {
        print_change(&report, clause);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--check`: whether `kind` on `clause` would be accepted now, said
/// without changing or recording anything (an error, exit 1, if not).
fn check(
    clause: &str,
    config: &Config,
    catalogue: &Catalogue,
    kind: ActKind,
    output: &OutputArgs,
) -> anyhow::Result<ExitCode> {
    let (file, region) = (&config.consent_file, config.region);
    let (acceptance, changed) = match kind {
        ActKind::Grant => {
            let existing = consent::grant_check(file, catalogue, region, clause)?;
            let changed = existing.is_none();
            (existing, changed)
        }
        ActKind::Decline => {
            consent::decline(file, catalogue, region, clause)?;
            (None, false)
        }
        ActKind::Revoke => anyhow::bail!("--check is for grant and decline"),
    };
    let report = Change {
        clause: clause.to_owned(),
        act: kind,
        granted: kind == ActKind::Grant,
        changed,
        acceptance,
        daemon: Told::new(Outcome::Checked),
    };
    if output.json {
        print_json("consentry.consent.change/1", &report)?;
        return Ok(ExitCode::SUCCESS);
    }
    match (&report.acceptance, kind) {
        (Some(a), _) => say!(
            "{clause} version {} is already accepted ({}, {}); a grant would change nothing",
            a.version,
            a.accepted_at,
            a.method.as_str()
        ),
        (None, ActKind::Grant) => say!("{clause} can be granted now; nothing changed"),
        (None, _) => say!("{clause} is not accepted and can be declined; nothing recorded"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_change(report: &Change, clause: &str) {
    if report.act == ActKind::Decline {
        let by = match report.daemon.outcome {
            Outcome::Applied => "by the daemon",
            _ => "here, no daemon running",
        };
        let receipt = report.daemon.receipts.first().map(ToString::to_string);
        say!(
            "declined {clause}: nothing accepted, the consent file unchanged; recorded {by} (receipt {})",
            receipt.as_deref().unwrap_or("-")
        );
        return;
    }
    match (&report.acceptance, report.changed) {
        (Some(a), true) => say!(
            "accepted {} version {} (text sha256 {})",
            a.clause,
            a.version,
            a.text_sha256
        ),
        (Some(a), false) => say!(
            "{} version {} was already accepted ({}, {}); nothing changed",
            a.clause,
            a.version,
            a.accepted_at,
            a.method.as_str()
        ),
        (None, true) => {
            say!("revoked {clause}; anything it had queued is purged")
        }
        (None, false) => say!("{clause} was not accepted; nothing to revoke"),
    }
    say!("daemon: {}", report.daemon);
}

/// How long a command waits for a daemon that holds the state directory's
/// lock but does not answer yet (it is starting) before giving up.
const DAEMON_STARTING: Duration = Duration::from_secs(10);

/// Has `act` recorded and applied: by the running daemon, or, with none
/// running, here, under the daemon's lock (the same consent owner the
/// daemon uses). A daemon that is starting holds the lock before it
/// answers: asked again until it does.
async fn record_act(config: &Config, act: Act) -> Told {
    let request = Request::ConsentChanged {
        act: Some(act.clone()),
    };
    let deadline = Instant::now() + DAEMON_STARTING;
    loop {
        match control::request(&config.control_socket(), &request).await {
            Ok(Response::ConsentApplied(applied)) => {
                return Told {
                    purged: applied.purged,
                    queued: Some(applied.queued),
                    ksn_window_discarded: applied.ksn_window_discarded,
                    installation_id_rotated: applied.installation_id_rotated,
                    receipts: applied.receipts,
                    message: applied.holding,
                    ..Told::new(Outcome::Applied)
                };
            }
            Ok(Response::Error { message }) => {
                return Told::with_message(Outcome::Refused, message);
            }
            Ok(other) => {
                return Told::with_message(
                    Outcome::Refused,
                    format!("the daemon answered unexpectedly: {other:?}"),
                );
            }
            Err(ControlError::NotRunning(_)) => {}
            Err(err) => return Told::with_message(Outcome::NotTold, err.to_string()),
        }
        match Agent::open_with_act(config.clone(), &act).await {
            Ok((agent, applied)) => {
                agent.close().await;
                return Told {
                    purged: applied.purged,
                    ksn_window_discarded: applied.ksn_window_discarded,
                    installation_id_rotated: applied.new_installation_id.is_some(),
                    receipts: applied.receipts.iter().map(|r| r.receipt_id).collect(),
                    message: applied.holding,
                    ..Told::new(Outcome::NotRunning)
                };
            }
            Err(AgentError::Instance(
                InstanceError::Running { .. } | InstanceError::Busy { .. },
            )) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // A decline changes nothing in the file, so no one can
            // observe it later.
            Err(err) if act.kind == ActKind::Decline => {
                return Told::with_message(Outcome::NotRecorded, err.to_string());
            }
            Err(err) => {
                return Told::with_message(
                    Outcome::NotRecorded,
                    format!("{err}; the daemon records the change when it starts, as observed"),
                );
            }
        }
    }
}
