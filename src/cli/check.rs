//! `consentry check`: whether every file the agent reads is valid, through
//! the daemon's own start-up preflight, and (with `--connect`) whether the
//! endpoint answers. It never starts anything or writes a file.

use std::process::ExitCode;

use consentry::consent::Consents;
use consentry::store::{Quarantine, Store};
use consentry::upload::transport::Probe;
use serde::Serialize;

use super::{Message, OutputArgs, print_json};

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
    /// The last database that failed its check at a start and was moved
    /// aside, with what was recovered from it; `null`: none ever was.
    quarantine: Option<Quarantine>,
    /// Why the store could not be read (it is checked, and moved aside if
    /// damaged, at the next start); `null`: it could, or there is none.
    fault: Option<String>,
}

/// Validates everything the daemon would read at start-up, through the
/// same preflight (`Transport::new` reads the CA file, server certificate
/// and token file); the first problem found is the error (each file reports
/// all of its own problems). With `--connect`, then probes the endpoint and
/// fails, with an explanation, when it cannot be used.
pub async fn run(check_args: &CheckArgs, args: &OutputArgs) -> anyhow::Result<ExitCode> {
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
        state_dir: state_dir(&config.state_dir, exists),
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
        say_report(&report);
    }
    Ok(if reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report in words, one line per part.
fn say_report(report: &CheckReport) {
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
    if let Some(quarantine) = &report.state_dir.quarantine {
        say!("store      a database failed its check and was quarantined {quarantine}");
    }
    if let Some(fault) = &report.state_dir.fault {
        say!("store      cannot be read: {fault}");
    }
}

/// `state_dir` as `check` reports it: whether it exists, and what the
/// store says about its own past (a quarantine), read only.
fn state_dir(path: &std::path::Path, exists: bool) -> StateDir {
    let (quarantine, fault) = match consentry::store::database_exists(path) {
        Ok(true) => {
            let health = Store::peek_health(path);
            (health.quarantine, health.fault.map(|f| f.message))
        }
        Ok(false) => (None, None),
        Err(err) => (None, Some(err.to_string())),
    };
    StateDir {
        path: path.display().to_string(),
        exists,
        quarantine,
        fault,
    }
}
