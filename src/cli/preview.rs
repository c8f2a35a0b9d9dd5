//! `consentry preview [PURPOSE]`: exactly what the next report of each
//! purpose would send, with real values, whether or not it is allowed now.
//! Reads only: sends nothing, creates no state directory, asks no daemon.
//!
//! Values the agent adds (installation id, OS, virtual environment,
//! country, the open KSN window as committed) are real; values that only a
//! component's event can carry are shown as `<from the … event>`. A field
//! the gate randomises (local differential privacy) is shown with its real
//! value and the note that only its mechanism's report leaves.

use std::process::ExitCode;
use std::time::SystemTime;

use consentry::catalogue::Region;
use consentry::collect::activation::{Activation, Method};
use consentry::collect::installation_errors::InstallTask;
use consentry::collect::ksn::{COUNTER_MAX, KsnAggregate};
use consentry::collect::{CollectContext, GeoDistribution, Record, UpdateTask, country};
use consentry::config::Config;
use consentry::daemon::ksn_extra;
use consentry::store::{Durable, Store, database_exists, queue};
use serde::Serialize;

use super::{OutputArgs, print_json};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry preview
  consentry preview ksn_scan_aggregates --json")]
pub struct PreviewArgs {
    /// Only this purpose.
    pub purpose: Option<String>,
}

/// One purpose in `consentry.preview/1` (docs/cli-json.md).
#[derive(Serialize)]
struct Preview {
    purpose: String,
    allowed: bool,
    reason: String,
    /// The record's fields, or `None` when the next report sends nothing.
    fields: Option<serde_json::Value>,
    /// When and how such a record is made, in words.
    message: String,
}

#[derive(Serialize)]
struct Previews {
    previews: Vec<Preview>,
}

pub fn run(args: &PreviewArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = output.config.load()?;
    let catalogue = config.load_catalogue()?;
    super::check_purpose_arg(&catalogue, args.purpose.as_ref())?;
    let activation = consentry::store::activation::peek(&config.state_dir).unwrap_or_default();
    let registry = config
        .evaluate_consent(&catalogue)
        .with_activation(activation);
    let state = State::read(&config)?;
    let previews: Vec<Preview> = catalogue
        .purposes()
        .filter(|p| args.purpose.as_ref().is_none_or(|id| *id == p.id))
        .map(|purpose| {
            let decision = registry.decide(&purpose.id);
            let (record, note) = state.next_report(&purpose.id);
            Preview {
                purpose: purpose.id.clone(),
                allowed: decision.is_allowed(),
                reason: decision.reason().to_owned(),
                fields: record.map(|r| serde_json::to_value(&r.fields).expect("fields serialize")),
                message: with_randomised(note, purpose),
            }
        })
        .collect();
    if output.json {
        print_json("consentry.preview/1", &Previews { previews })?;
        return Ok(ExitCode::SUCCESS);
    }
    for preview in &previews {
        let verdict = if preview.allowed {
            "allowed"
        } else {
            "blocked"
        };
        say!("{} ({verdict}: {})", preview.purpose, preview.reason);
        say!("  {}", preview.message);
        if let Some(fields) = &preview.fields {
            let text = serde_json::to_string_pretty(fields).expect("JSON values serialize");
            for line in text.lines() {
                say!("  {line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `note`, and for each field the gate randomises (local differential
/// privacy) that the value shown is the real one, which never leaves:
/// only its mechanism's report does.
fn with_randomised(note: String, purpose: &consentry::catalogue::Purpose) -> String {
    let randomised: Vec<String> = purpose
        .fields
        .iter()
        .filter_map(|f| {
            f.ldp
                .as_ref()
                .map(|ldp| format!("`{}` {}", f.name, ldp.in_words()))
        })
        .collect();
    if randomised.is_empty() {
        return note;
    }
    let separator = if note.ends_with('.') { " " } else { ". " };
    format!(
        "{note}{separator}Randomised before anything is stored (a value shown here is the real one, which never leaves; only its report does): {}.",
        randomised.join("; ")
    )
}

/// What the agent knows now, read without changing anything.
struct State {
    context: CollectContext,
    installation_known: bool,
    ksn: KsnAggregate,
}

impl State {
    fn read(config: &Config) -> anyhow::Result<Self> {
        let mut ksn = KsnAggregate::new();
        let (installation_id, installation_known) = if database_exists(&config.state_dir)? {
            let store = Store::open(&config.state_dir)?;
            let id = store.read(|c| {
                Ok(queue::meta_get(c, "installation_id")?
                    .and_then(|text| uuid::Uuid::parse_str(&text).ok()))
            })?;
            store.read(|c| ksn.reload(c))?;
            (id.unwrap_or_else(uuid::Uuid::nil), id.is_some())
        } else {
            (uuid::Uuid::nil(), false)
        };
        Ok(Self {
            context: CollectContext::new(config.product.clone(), installation_id, config.region),
            installation_known,
            ksn,
        })
    }

    /// What the open KSN window's report is, in words: with its capped
    /// counters, if any, as the report itself cannot say so.
    fn ksn_note(&self) -> String {
        let note = "the open window as committed, if it closed now";
        match self.ksn.capped_summary() {
            Some(capped) => format!(
                "{note}; capped at {COUNTER_MAX}, the largest integer a report carries: {capped}, so the true totals are larger"
            ),
            None => note.into(),
        }
    }

    fn next_report(&self, purpose: &str) -> (Option<Record>, String) {
        let id_note = if self.installation_known {
            ""
        } else {
            " (the installation id is made at the daemon's first start; shown as nil)"
        };
        let event = |kind: &str| format!("<from the `{kind}` event>");
        match purpose {
            "update_identity" => (
                Some(UpdateTask::default().record(&self.context)),
                format!(
                    "one record per `update_task` event (and per collection when the fallback is on){id_note}"
                ),
            ),
            "activation" => {
                let activation = Activation {
                    method: Method::Code,
                    code: Some(event("activation")),
                    locale: None,
                    license_edition: Some(event("activation")),
                    license_units_total: None,
                    license_units_used: None,
                    svm_id: None,
                };
                (
                    activation.record(&self.context, SystemTime::now()),
                    format!(
                        "one record per activation by code; a key-file activation sends nothing{id_note}"
                    ),
                )
            }
            "installation_errors" | "installation_quality" => {
                let task = InstallTask {
                    task: event("install_task").into(),
                    status: event("install_task").into(),
                    error_type: None,
                    error_code: None,
                    duration_ms: None,
                    campaign_id: None,
                };
                let mut context = self.context.clone();
                context.region = if purpose == "installation_errors" {
                    Region::Global
                } else {
                    Region::Eu
                };
                (
                    Some(task.record(&context)),
                    format!(
                        "one record per `install_task` event in the {} edition; error and campaign fields when the installer sends them",
                        if purpose == "installation_errors" {
                            "global"
                        } else {
                            "regional"
                        }
                    ),
                )
            }
            "ksn_scan_aggregates" => {
                let extra = ksn_extra(&self.context.product);
                match self.ksn.report(SystemTime::now(), &extra) {
                    Some(record) => (Some(record), self.ksn_note()),
                    None => (
                        None,
                        "nothing: no scan verdict or request in the open window".into(),
                    ),
                }
            }
            "geo_distribution" => match country::country_code() {
                Some(country) => (
                    GeoDistribution::record(&self.context, Some(country)),
                    "one record per collection".into(),
                ),
                None => (
                    None,
                    "nothing: the country cannot be told from this machine's time zone and locale"
                        .into(),
                ),
            },
            _ => (
                None,
                "sent as a component gives it in `record` events, checked field by field".into(),
            ),
        }
    }
}
