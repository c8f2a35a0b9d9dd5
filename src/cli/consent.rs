//! `consentry consent list|show|grant|revoke`: read and change the consent
//! file, then tell a running daemon so the change applies at once (a revoke
//! purges what that clause had queued).

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use consentry::catalogue::Catalogue;
use consentry::collect::ksn;
use consentry::config::Config;
use consentry::consent::{self, Consents, Method};
use consentry::control::{self, ControlError, Request, Response};
use consentry::store::{Store, database_exists, queue};
use consentry::upload::purge_disallowed;
use serde::Serialize;

use super::table::{self, Cell, Detail, Row, Style, Table, Tone};
use super::{OutputArgs, print_json};

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
  consentry --config ./consentry.toml consent grant ksn --json")]
    Grant {
        /// The clause id (`consentry consent list` names them).
        clause: String,
    },
    /// Withdraw a clause; what it had queued is purged.
    #[command(after_help = "Examples:
  consentry consent revoke ksn
  consentry consent revoke eula --json")]
    Revoke {
        /// The clause id (`consentry consent list` names them).
        clause: String,
    },
    /// Every consent receipt: grants, withdrawals, renewals, policy and
    /// region changes, oldest first.
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

pub async fn run(command: ConsentCommand, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    match command {
        ConsentCommand::List => list(output),
        ConsentCommand::Show { clause } => show(&clause, output),
        ConsentCommand::Grant { clause } => change(&clause, output, true).await,
        ConsentCommand::Revoke { clause } => change(&clause, output, false).await,
        ConsentCommand::History => super::receipts::history(output),
        ConsentCommand::Receipt { id } => super::receipts::receipt(&id, output),
    }
}

/// One clause in `consentry.consent.list/1` (docs/cli-json.md).
#[derive(Serialize)]
struct ClauseState {
    clause: String,
    kind: consentry::catalogue::ClauseKind,
    version: u32,
    title: String,
    accepted: Option<consent::Acceptance>,
    state: AcceptanceState,
    /// Why an acceptance does not count (`renewal_needed`), in words.
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum AcceptanceState {
    Accepted,
    NotAccepted,
    RenewalNeeded,
}

#[derive(Serialize)]
struct ClauseList {
    clauses: Vec<ClauseState>,
}

fn load(output: &OutputArgs) -> anyhow::Result<(Config, Catalogue)> {
    let config = output.config.load()?;
    let catalogue = config.load_catalogue()?;
    Ok((config, catalogue))
}

fn list(output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let (config, catalogue) = load(output)?;
    let consents = Consents::load(&config.consent_file, &catalogue)?;
    let states: Vec<ClauseState> = catalogue
        .clauses()
        .map(|clause| {
            let accepted = consents.get(&clause.id).cloned();
            let (state, reason) = match &accepted {
                None => (AcceptanceState::NotAccepted, None),
                Some(a) if a.version != clause.version => (
                    AcceptanceState::RenewalNeeded,
                    Some(format!(
                        "accepted at version {}, catalogue is at {}",
                        a.version, clause.version
                    )),
                ),
                Some(a) if a.text_sha256 != clause.text_sha256 => (
                    AcceptanceState::RenewalNeeded,
                    Some("accepted text differs".to_owned()),
                ),
                Some(_) => (AcceptanceState::Accepted, None),
            };
            ClauseState {
                clause: clause.id.clone(),
                kind: clause.kind,
                version: clause.version,
                title: clause.title.clone(),
                accepted,
                state,
                reason,
            }
        })
        .collect();
    if output.json {
        print_json("consentry.consent.list/1", &ClauseList { clauses: states })?;
    } else {
        let style = Style::detect();
        for line in table::render(&clause_table(&states, &style), &style) {
            say!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per clause: its state, the version in the catalogue, and when
/// and how it was accepted; the title (and why a renewal is needed) below.
fn clause_table(states: &[ClauseState], style: &Style) -> Table {
    let rows = states
        .iter()
        .map(|state| {
            let kind = match state.kind {
                consentry::catalogue::ClauseKind::Eula => "eula",
                consentry::catalogue::ClauseKind::Voluntary => "voluntary",
            };
            let verdict = match state.state {
                AcceptanceState::Accepted => style.verdict(Tone::Good, "accepted"),
                AcceptanceState::NotAccepted => style.verdict(Tone::Plain, "not accepted"),
                AcceptanceState::RenewalNeeded => style.verdict(Tone::Warn, "outdated"),
            };
            let (at, method) = match &state.accepted {
                Some(a) => (a.accepted_at.clone(), a.method.as_str()),
                None => ("-".to_owned(), "-"),
            };
            let mut detail = vec![format!("{} ({kind})", state.title)];
            detail.extend(state.reason.iter().map(|r| format!("renewal needed: {r}")));
            Row {
                cells: vec![
                    Cell::plain(state.clause.clone()),
                    verdict,
                    Cell::plain(format!("v{}", state.version)),
                    Cell::plain(at),
                    Cell::plain(method),
                ],
                detail,
            }
        })
        .collect();
    Table {
        header: vec!["CLAUSE", "STATE", "VERSION", "ACCEPTED AT", "METHOD"],
        detail_header: "",
        detail: Detail::Below,
        rows,
    }
}

fn show(clause_id: &str, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let (_, catalogue) = load(output)?;
    let clause = catalogue.clause(clause_id).with_context(|| {
        format!(
            "unknown clause `{clause_id}` (the catalogue has: {})",
            catalogue.clause_ids()
        )
    })?;
    let purposes: Vec<_> = catalogue
        .purposes()
        .filter(|p| p.clauses.iter().any(|c| c == clause_id))
        .collect();
    if output.json {
        #[derive(Serialize)]
        struct Shown<'a> {
            clause: &'a consentry::catalogue::Clause,
            purposes: Vec<&'a consentry::catalogue::Purpose>,
        }
        print_json("consentry.consent.show/1", &Shown { clause, purposes })?;
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{} (version {}, sha256 {})",
        clause.title,
        clause.version,
        clause.text_sha256
    );
    say!("\n{}", clause.text.trim_end());
    if !clause.requires.is_empty() {
        say!(
            "\nTakes effect only together with: {}",
            clause.requires.join(", ")
        );
    }
    for purpose in purposes {
        say!("\nPurpose {}: {}", purpose.id, purpose.title);
        for field in &purpose.fields {
            say!(
                "  {:<26} {:<9} {}",
                field.name,
                field.ty.to_string(),
                field.description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `consentry.consent.change/1` (docs/cli-json.md): grant and revoke.
#[derive(Serialize)]
struct Change {
    clause: String,
    granted: bool,
    /// False for a revoke of a clause that was not accepted, or a grant of
    /// one already accepted as it is now.
    changed: bool,
    acceptance: Option<consent::Acceptance>,
    daemon: Told,
}

/// What came of telling the daemon about the change.
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
    /// What went wrong, for `refused`, `not_told`, or a purge that failed.
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    /// Nothing changed, so the daemon was not told.
    Unchanged,
    /// The daemon applied the change before answering.
    Applied,
    /// No daemon runs; the change applies when it starts (a withdrawal
    /// was purged here).
    NotRunning,
    /// The daemon answered with an error.
    Refused,
    /// The daemon could not be asked; it re-reads the file before its next
    /// upload.
    NotTold,
}

impl Told {
    fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            purged: 0,
            queued: None,
            ksn_window_discarded: false,
            installation_id_rotated: false,
            message: None,
        }
    }

    fn with_message(outcome: Outcome, message: String) -> Self {
        Self {
            message: Some(message),
            ..Self::new(outcome)
        }
    }
}

impl std::fmt::Display for Told {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.message.as_deref().unwrap_or("");
        match self.outcome {
            Outcome::Unchanged => write!(f, "unchanged"),
            Outcome::Applied => write!(
                f,
                "applied (purged {}{}{}, {} still queued)",
                self.purged,
                if self.ksn_window_discarded {
                    ", open KSN window discarded"
                } else {
                    ""
                },
                if self.installation_id_rotated {
                    ", installation id replaced"
                } else {
                    ""
                },
                self.queued.unwrap_or_default()
            ),
            Outcome::NotRunning if self.message.is_some() => write!(
                f,
                "not running, and the queue could not be purged here ({message}); it will be before the next upload"
            ),
            Outcome::NotRunning if self.purged > 0 => write!(
                f,
                "not running; purged {} queued record(s) here",
                self.purged
            ),
            Outcome::NotRunning => write!(f, "not running; the change applies when it starts"),
            Outcome::Refused => write!(f, "refused the change notice: {message}"),
            Outcome::NotTold => write!(
                f,
                "not told ({message}); it re-reads the consent file before its next upload"
            ),
        }
    }
}

async fn change(clause: &str, output: &OutputArgs, grant: bool) -> anyhow::Result<ExitCode> {
    let (config, catalogue) = load(output)?;
    let (changed, acceptance) = if grant {
        let granted = consent::grant(
            &config.consent_file,
            &catalogue,
            config.region,
            clause,
            Method::Cli,
        )?;
        (granted.changed, Some(granted.acceptance))
    } else {
        (
            consent::revoke(&config.consent_file, &catalogue, clause)?,
            None,
        )
    };
    let daemon = if changed {
        let revoked = (!grant).then(|| clause.to_owned());
        tell_daemon(&config, &catalogue, revoked).await
    } else {
        Told::new(Outcome::Unchanged)
    };
    let report = Change {
        clause: clause.to_owned(),
        granted: grant,
        changed,
        acceptance,
        daemon,
    };
    if output.json {
        print_json("consentry.consent.change/1", &report)?;
    } else {
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
    Ok(ExitCode::SUCCESS)
}

/// With no daemon to tell, a revoke still takes effect on the queue at once:
/// whatever the consent file no longer allows is purged here.
fn purge_without_daemon(
    config: &Config,
    catalogue: &Catalogue,
    revoked: Option<String>,
) -> anyhow::Result<u64> {
    if !database_exists(&config.state_dir)? {
        return Ok(0);
    }
    let registry = config.evaluate_consent(catalogue);
    let store = Store::open(&config.state_dir)?;
    if let Ok(consents) = consentry::consent::Consents::load(&config.consent_file, catalogue) {
        let snapshot = consentry::consent::receipt::Snapshot::of(
            consents.iter(),
            &config.jurisdiction(catalogue),
            catalogue,
        );
        let by = revoked.is_some().then_some("cli");
        store.write(|c| consentry::store::receipts::record(c, &snapshot, catalogue, by))?;
    }
    if let Some(clause) = revoked
        && catalogue.clause_carries_installation_id(&clause)
    {
        let why = format!("installation id replaced: consent for {clause} withdrawn");
        store.write(|c| queue::rotate_installation_id(c, &why))?;
    }
    let mut purged = purge_disallowed(&store, &registry)?;
    if registry.unreadable().is_none() && !registry.is_allowed(ksn::PURPOSE) {
        purged += store.write(ksn::discard_stored_window)?;
    }
    Ok(purged)
}

/// Best effort: a stopped daemon reads the file when it starts.
async fn tell_daemon(config: &Config, catalogue: &Catalogue, revoked: Option<String>) -> Told {
    let request = Request::ConsentChanged {
        revoked: revoked.clone(),
    };
    match control::request(&config.control_socket(), &request).await {
        Ok(Response::ConsentApplied(applied)) => Told {
            purged: applied.purged,
            queued: Some(applied.queued),
            ksn_window_discarded: applied.ksn_window_discarded,
            installation_id_rotated: applied.installation_id_rotated,
            ..Told::new(Outcome::Applied)
        },
        Ok(Response::Error { message }) => Told::with_message(Outcome::Refused, message),
        Ok(other) => Told::with_message(
            Outcome::Refused,
            format!("the daemon answered unexpectedly: {other:?}"),
        ),
        Err(ControlError::NotRunning(_)) => {
            match purge_without_daemon(config, catalogue, revoked) {
                Ok(purged) => Told {
                    purged,
                    ..Told::new(Outcome::NotRunning)
                },
                Err(err) => Told::with_message(Outcome::NotRunning, format!("{err:#}")),
            }
        }
        Err(err) => Told::with_message(Outcome::NotTold, err.to_string()),
    }
}
