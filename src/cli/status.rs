//! `consentry status` and `consentry check`: what is allowed and why, and
//! whether every file the agent reads is valid.

use std::process::ExitCode;

use consentry::consent::{Consents, Decision};
use consentry::control::{self, DaemonStatus, Request, Response};
use consentry::store::{DATABASE_FILE, Store, StoreHealth};
use consentry::upload::transport::Probe;
use serde::Serialize;

use super::{CollectView, Message, OutputArgs, print_json};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry status
  consentry status update_identity
  consentry --config ./consentry.toml status --json")]
pub struct StatusArgs {
    /// Only this purpose.
    pub purpose: Option<String>,
}

/// `consentry.status/1` (docs/cli-json.md).
#[derive(Serialize)]
struct Status {
    region: String,
    decisions: Vec<Decision>,
    /// The running daemon's view, when one answers.
    daemon: Option<DaemonView>,
    /// The store as read directly, when no daemon answers and one exists.
    store: Option<StoreHealth>,
}

/// `DaemonStatus` with its last collection in the CLI's typed form.
#[derive(Serialize)]
struct DaemonView {
    pid: u32,
    records_queued: u64,
    discarded: std::collections::BTreeMap<String, u64>,
    decisions: Vec<Decision>,
    last_collect: Option<CollectView>,
    last_upload: Option<consentry::upload::UploadSummary>,
    store: StoreHealth,
    reload: Option<consentry::control::ReloadReport>,
}

impl From<DaemonStatus> for DaemonView {
    fn from(status: DaemonStatus) -> Self {
        Self {
            pid: status.pid,
            records_queued: status.records_queued,
            discarded: status.discarded,
            decisions: status.decisions,
            last_collect: status.last_collect.as_ref().map(CollectView::from),
            last_upload: status.last_upload,
            store: status.store,
            reload: status.reload,
        }
    }
}

pub async fn run(args: &StatusArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = output.config.load()?;
    let catalogue = config.load_catalogue()?;
    super::check_purpose_arg(&catalogue, args.purpose.as_ref())?;
    let registry = config.evaluate_consent(&catalogue);
    let decisions: Vec<Decision> = registry
        .decisions()
        .filter(|d| args.purpose.as_ref().is_none_or(|p| *p == d.purpose()))
        .cloned()
        .collect();
    let daemon = match control::request(&config.control_socket(), &Request::Status).await {
        Ok(Response::Status(status)) => Some(DaemonView::from(*status)),
        Err(control::ControlError::NotRunning(_)) => None,
        // A daemon that cannot be asked (no permission, an untrusted
        // socket) is not "not running": say so, on stderr.
        Err(err) => {
            eprintln!("warning: cannot ask the daemon: {err}");
            None
        }
        Ok(other) => {
            eprintln!("warning: the daemon answered status with {other:?}");
            None
        }
    };
    // Without a daemon, read the store directly (if there is one: status
    // never creates a state directory).
    let store = match &daemon {
        None if config.state_dir.join(DATABASE_FILE).exists() => {
            Some(Store::peek_health(&config.state_dir))
        }
        _ => None,
    };
    let status = Status {
        region: config.region.to_string(),
        decisions,
        daemon,
        store,
    };
    if output.json {
        print_json("consentry.status/1", &status)?;
        return Ok(ExitCode::SUCCESS);
    }
    say!("region {}", status.region);
    for decision in &status.decisions {
        let verdict = if decision.is_allowed() {
            "allowed"
        } else {
            "blocked"
        };
        let basis = decision.basis().map_or("-", |b| b.as_str());
        say!(
            "{:<24} {verdict}  {basis:<19} {}",
            decision.purpose(),
            decision.reason()
        );
    }
    match &status.daemon {
        Some(daemon) => {
            say!(
                "daemon: running (pid {}), {} record(s) queued",
                daemon.pid,
                daemon.records_queued
            );
            for (purpose, count) in &daemon.discarded {
                say!("discarded at the door (not allowed): {purpose} {count}");
            }
            if let Some(upload) = &daemon.last_upload {
                let outcome = upload.stopped.as_deref().unwrap_or("ok");
                say!(
                    "last upload: {} record(s) sent; {outcome}",
                    upload.records_sent
                );
            }
            if let Some(reload) = &daemon.reload {
                match &reload.error {
                    Some(error) => say!(
                        "reload at {} REJECTED (running on the last good config): {error}",
                        reload.at
                    ),
                    None => say!("reloaded at {}", reload.at),
                }
                if !reload.restart_needed.is_empty() {
                    say!(
                        "changed, applies at the next restart: {}",
                        reload.restart_needed.join(", ")
                    );
                }
            }
        }
        None => say!("daemon: not running"),
    }
    if let Some(store) = status
        .daemon
        .as_ref()
        .map(|d| &d.store)
        .or(status.store.as_ref())
    {
        print_store(store);
    }
    Ok(ExitCode::SUCCESS)
}

/// The store's troubles, if any: a quarantine, dead letters, a fault.
fn print_store(store: &StoreHealth) {
    if let Some(fault) = &store.fault {
        say!("store: TROUBLE since {}: {}", fault.at, fault.message);
    }
    if let Some(quarantine) = &store.quarantine {
        say!("store: a database failed its check and was quarantined {quarantine}");
    }
    match store.max_queue_bytes {
        Some(max) => say!(
            "queue: {} of {} bytes ({:.0}%)",
            store.queue_bytes,
            max,
            store.queue_bytes as f64 * 100.0 / max.max(1) as f64
        ),
        None => say!("queue: {} bytes", store.queue_bytes),
    }
    for (purpose, reasons) in &store.dropped {
        let reasons: Vec<String> = reasons
            .iter()
            .map(|(reason, count)| format!("{count} {}", reason.replace('_', " ")))
            .collect();
        say!(
            "dropped to keep the bounds: {purpose}: {}",
            reasons.join(", ")
        );
    }
    if store.dead_letters > 0 {
        say!(
            "dead letters: {} record(s) that will not be sent (newest: {}); see `consentry history`",
            store.dead_letters,
            store
                .dead_letter_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        );
    }
}

/// One line per purpose: verdict, reason, and a note when this build has
/// no collector for it (allowed, but nothing to send).
pub fn print_decision(decision: &Decision) {
    let verdict = if decision.is_allowed() {
        "allowed"
    } else {
        "blocked"
    };
    let note = if consentry::collect::has_collector(decision.purpose()) {
        ""
    } else {
        " [fed by `record` events]"
    };
    let basis = decision.basis().map_or("-", |b| b.as_str());
    say!(
        "  {:<24} {verdict}  {basis:<19} {}{note}",
        decision.purpose(),
        decision.reason()
    );
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry check
  consentry --config ./consentry.toml check --connect
  consentry check --json")]
pub struct CheckArgs {
    /// Also connect: a real TLS handshake with the endpoint and an empty
    /// probe request (nothing is stored), explaining any failure.
    #[arg(long)]
    pub connect: bool,
}

/// `consentry.check/1` (docs/cli-json.md).
#[derive(Serialize)]
struct CheckReport {
    config: String,
    catalogue: CatalogueSource,
    clauses: usize,
    purposes: usize,
    consent_file: String,
    accepted: Vec<AcceptedVersion>,
    endpoint: String,
    /// Things that work but should be fixed (a token file others can read).
    warnings: Vec<Message>,
    /// The probe's result, with `--connect`; `null` without.
    connect: Option<Probe>,
    state_dir: StateDir,
}

#[derive(Serialize)]
struct CatalogueSource {
    /// True for the catalogue built into the binary.
    embedded: bool,
    /// The catalogue file, when the config names one.
    path: Option<String>,
}

#[derive(Serialize)]
struct AcceptedVersion {
    clause: String,
    version: u32,
}

#[derive(Serialize)]
struct StateDir {
    path: String,
    /// False: the daemon creates it at its first start.
    exists: bool,
}

/// Validates everything the daemon would read at start-up, through the
/// same preflight (`Transport::new` reads the CA file, server certificate
/// and token file); the first problem found is the error (each file reports
/// all of its own problems). With `--connect`, then probes the endpoint and
/// fails, with an explanation, when it cannot be used.
pub async fn check(check_args: &CheckArgs, args: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    // The daemon's own start-up checks, then the stricter consent check.
    let preflight = consentry::preflight::run(&config)?;
    let catalogue = &preflight.catalogue;
    let consents = Consents::load(&config.consent_file, catalogue)?;
    if let Some(problems) = consents.unrecognised() {
        return Err(problems.into());
    }
    let exists = preflight.state_dir_exists;
    let report = CheckReport {
        config: config.path.display().to_string(),
        catalogue: CatalogueSource {
            embedded: config.catalogue_file.is_none(),
            path: config
                .catalogue_file
                .as_ref()
                .map(|p| p.display().to_string()),
        },
        clauses: catalogue.clauses().count(),
        purposes: catalogue.purposes().count(),
        consent_file: config.consent_file.display().to_string(),
        accepted: consents
            .iter()
            .map(|a| AcceptedVersion {
                clause: a.clause.clone(),
                version: a.version,
            })
            .collect(),
        endpoint: config.upload.endpoint_shown(),
        warnings: preflight
            .warnings
            .iter()
            .map(|w| Message { message: w.clone() })
            .collect(),
        connect: None,
        state_dir: StateDir {
            path: config.state_dir.display().to_string(),
            exists,
        },
    };
    let report = CheckReport {
        connect: match check_args.connect {
            true => Some(preflight.transport.probe().await),
            false => None,
        },
        ..report
    };
    let reached = report.connect.as_ref().is_none_or(|probe| probe.ok);
    if args.json {
        print_json("consentry.check/1", &report)?;
    } else {
        say!("config     {}: ok", report.config);
        say!(
            "catalogue  {}: {} clauses, {} purposes",
            report.catalogue.path.as_deref().unwrap_or("embedded"),
            report.clauses,
            report.purposes
        );
        let accepted = if report.accepted.is_empty() {
            "nothing accepted".to_owned()
        } else {
            let accepted: Vec<String> = report
                .accepted
                .iter()
                .map(|a| format!("{} v{}", a.clause, a.version))
                .collect();
            accepted.join(", ")
        };
        say!("consent    {}: {accepted}", report.consent_file);
        match &report.connect {
            None => say!(
                "endpoint   {}: ok (not contacted; --connect does)",
                report.endpoint
            ),
            Some(probe) if probe.ok => say!(
                "endpoint   {}: ok (TLS handshake and probe answered {})",
                report.endpoint,
                probe.status.unwrap_or_default()
            ),
            Some(probe) => {
                say!(
                    "endpoint   {}: FAILED: {}",
                    report.endpoint,
                    probe.explanation.as_deref().unwrap_or("unknown error")
                );
                if let Some(detail) = &probe.detail {
                    say!("           detail: {detail}");
                }
            }
        }
        for warning in &report.warnings {
            say!("warning    {}", warning.message);
        }
        let created = if report.state_dir.exists {
            "exists"
        } else {
            "will be created"
        };
        say!("state_dir  {} ({created})", report.state_dir.path);
    }
    Ok(if reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
