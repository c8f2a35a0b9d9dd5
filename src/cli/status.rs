//! `consentry status`: per purpose, whether it may send and why, then the
//! daemon's and the store's state. The answer comes from the consent file
//! as it is now (evaluated here) and from the daemon when one answers;
//! without one, the store is read, never created. Text is laid out by
//! `table`; `--json` is `consentry.status/1`.

use std::process::ExitCode;

use consentry::consent::Decision;
use consentry::control::{self, DaemonStatus, Request, Response};
use consentry::store::{Fault, Store, StoreHealth, activation, database_exists, receipts};
use serde::Serialize;

use super::table::{self, Cell, Detail, Entry, Row, Style, Table, Tone};
use super::{CollectView, OutputArgs, print_json};

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
    refused: consentry::gate::RefusedValues,
    decisions: Vec<Decision>,
    last_collect: Option<CollectView>,
    last_upload: Option<consentry::upload::UploadSummary>,
    last_upload_at: Option<String>,
    next_upload_at: Option<String>,
    store: StoreHealth,
    reload: Option<consentry::control::ReloadReport>,
    consent: consentry::control::ConsentState,
    privacy_budget: std::collections::BTreeMap<String, consentry::control::BudgetStatus>,
}

impl From<DaemonStatus> for DaemonView {
    fn from(status: DaemonStatus) -> Self {
        Self {
            pid: status.pid,
            records_queued: status.records_queued,
            discarded: status.discarded,
            refused: status.refused,
            decisions: status.decisions,
            last_collect: status.last_collect.as_ref().map(CollectView::from),
            last_upload: status.last_upload,
            last_upload_at: status.last_upload_at,
            next_upload_at: status.next_upload_at,
            store: status.store,
            reload: status.reload,
            consent: status.consent,
            privacy_budget: status.privacy_budget,
        }
    }
}

pub async fn run(args: &StatusArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = output.config.load()?;
    let catalogue = config.load_catalogue()?;
    super::check_purpose_arg(&catalogue, args.purpose.as_ref())?;
    // The file says what is accepted; the receipts say which of the rest
    // were withdrawn rather than never accepted (`withdrawn`), and the
    // store how the product was last activated. A store that cannot be
    // read is reported below, as the store's fault.
    let withdrawn = receipts::peek_withdrawn(&config.state_dir).unwrap_or_default();
    let activation = activation::peek(&config.state_dir).unwrap_or_default();
    let registry = config
        .evaluate_consent(&catalogue)
        .knowing_withdrawals(&catalogue, &withdrawn)
        .with_activation(activation);
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
        None => store_without_daemon(&config.state_dir),
        Some(_) => None,
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
    let style = Style::detect();
    say!("region {}\n", status.region);
    for line in table::render(&decision_table(&status.decisions, &style), &style) {
        say!("{line}");
    }
    say!("");
    for line in table::render_block(&state_block(&status), &style) {
        say!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The store as read directly: none when there is no database (status
/// never creates one); when it cannot even be looked for (a state directory
/// this user may not enter), that is its fault, shown with the path, not
/// taken for "no store".
fn store_without_daemon(state_dir: &std::path::Path) -> Option<StoreHealth> {
    match database_exists(state_dir) {
        Ok(true) => Some(Store::peek_health(state_dir)),
        Ok(false) => None,
        Err(err) => Some(StoreHealth {
            fault: Some(Fault {
                at: consentry::clock::rfc3339(std::time::SystemTime::now()),
                message: err.to_string(),
            }),
            ..StoreHealth::default()
        }),
    }
}

/// One row per purpose: verdict, legal basis, and why.
fn decision_table(decisions: &[Decision], style: &Style) -> Table {
    let rows = decisions
        .iter()
        .map(|decision| Row {
            cells: vec![
                Cell::plain(decision.purpose()),
                match decision.is_allowed() {
                    true => style.verdict(Tone::Good, "allowed"),
                    false => style.verdict(Tone::Bad, "blocked"),
                },
                Cell::plain(decision.basis().map_or("-", |b| b.as_str())),
            ],
            detail: vec![decision.reason().to_owned()],
        })
        .collect();
    Table {
        header: vec!["PURPOSE", "VERDICT", "BASIS"],
        detail_header: "REASON",
        detail: Detail::InlineIfFits,
        rows,
    }
}

/// "installation_errors: 2 personal_data, 1 out_of_shape (never kept)",
/// one line per purpose whose records were refused for a value.
fn refused_lines(refused: &consentry::gate::RefusedValues) -> Vec<Entry> {
    refused
        .iter()
        .enumerate()
        .map(|(i, (purpose, codes))| {
            let counts: Vec<String> = codes
                .iter()
                .map(|(code, count)| format!("{count} {code}"))
                .collect();
            let label = if i == 0 { "refused" } else { "" };
            Entry::new(
                label,
                format!("{purpose}: {} (values never kept)", counts.join(", ")),
            )
            .tone(Tone::Warn)
        })
        .collect()
}

/// "geo_distribution: 2 of 8 reports today, epsilon 1 of 4", then one
/// line per randomised field ("  country_code: hadamard, epsilon 0.5 a
/// report"; spelt out: the text is ASCII outside a UTF-8 locale),
/// for every purpose with randomised fields.
fn budget_lines(
    budgets: &std::collections::BTreeMap<String, consentry::control::BudgetStatus>,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (purpose, budget) in budgets {
        let label = if entries.is_empty() { "local DP" } else { "" };
        let spent = budget.epsilon_per_report.get() * f64::from(budget.reports_today);
        entries.push(Entry::new(
            label,
            format!(
                "{purpose}: {} of {} reports today, epsilon {} of {}",
                budget.reports_today,
                budget.reports_per_day,
                consentry::privacy::ldp::round(spent),
                budget.epsilon_per_day
            ),
        ));
        for (name, field) in &budget.fields {
            entries.push(Entry::new(
                "",
                format!(
                    "  {name}: {}, epsilon {} a report",
                    field.mechanism, field.epsilon
                ),
            ));
        }
    }
    entries
}

/// The lines under the table: the daemon, its last upload and reload,
/// then the store (as the daemon sees it, or as read here).
fn state_block(status: &Status) -> Vec<Entry> {
    let mut entries = Vec::new();
    match &status.daemon {
        Some(daemon) => {
            entries.push(
                Entry::new(
                    "daemon",
                    format!(
                        "running (pid {}), {} record(s) queued",
                        daemon.pid, daemon.records_queued
                    ),
                )
                .tone(Tone::Good),
            );
            for (i, (purpose, count)) in daemon.discarded.iter().enumerate() {
                let label = if i == 0 { "discarded" } else { "" };
                entries.push(Entry::new(
                    label,
                    format!("{purpose}: {count} at the door (not allowed)"),
                ));
            }
            entries.extend(refused_lines(&daemon.refused));
            entries.extend(budget_lines(&daemon.privacy_budget));
            if let Some(upload) = &daemon.last_upload {
                let outcome = upload.stopped.as_deref().unwrap_or("ok");
                let tone = match upload.stopped {
                    Some(_) => Tone::Warn,
                    None => Tone::Plain,
                };
                let at = daemon
                    .last_upload_at
                    .as_deref()
                    .map(|at| format!("at {at}: "))
                    .unwrap_or_default();
                entries.push(
                    Entry::new(
                        "last upload",
                        format!("{at}{} record(s) sent; {outcome}", upload.records_sent),
                    )
                    .tone(tone),
                );
            }
            if let Some(why) = &daemon.consent.holding {
                entries.push(
                    Entry::new(
                        "consent",
                        format!("holding: {why}; nothing is sent and nothing deleted until the file is whole"),
                    )
                    .tone(Tone::Warn),
                );
            } else if daemon.consent.deletion_waits {
                entries.push(Entry::new(
                    "consent",
                    "a withdrawal read from the file waits for it to stay the same; nothing of it is sent meanwhile",
                ));
            }
            if let Some(next) = &daemon.next_upload_at {
                entries.push(Entry::new("next upload", format!("by {next}")));
            }
            if let Some(reload) = &daemon.reload {
                entries.push(match &reload.error {
                    Some(error) => Entry::new(
                        "reload",
                        format!(
                            "at {} REJECTED (running on the last good config): {error}",
                            reload.at
                        ),
                    )
                    .tone(Tone::Bad),
                    None => Entry::new("reload", format!("at {}, applied", reload.at)),
                });
                if !reload.restart_needed.is_empty() {
                    entries.push(
                        Entry::new(
                            "restart",
                            format!("needed to apply: {}", reload.restart_needed.join(", ")),
                        )
                        .tone(Tone::Warn),
                    );
                }
            }
        }
        None => entries.push(Entry::new("daemon", "not running")),
    }
    let store = status
        .daemon
        .as_ref()
        .map(|d| &d.store)
        .or(status.store.as_ref());
    if let Some(store) = store {
        store_entries(store, &mut entries);
    }
    entries
}

/// The store: its troubles first (a fault, a quarantine), then how full
/// the queue is and what was dropped or given up on.
fn store_entries(store: &StoreHealth, entries: &mut Vec<Entry>) {
    if let Some(fault) = &store.fault {
        entries.push(
            Entry::new(
                "store",
                format!("TROUBLE since {}: {}", fault.at, fault.message),
            )
            .tone(Tone::Bad),
        );
    }
    if let Some(quarantine) = &store.quarantine {
        entries.push(
            Entry::new(
                "quarantine",
                format!("a database failed its check and was quarantined {quarantine}"),
            )
            .tone(Tone::Bad),
        );
    }
    entries.push(Entry::new(
        "queue",
        match store.max_queue_bytes {
            Some(max) => format!(
                "{} of {} bytes ({:.0}%)",
                store.queue_bytes,
                max,
                store.queue_bytes as f64 * 100.0 / max.max(1) as f64
            ),
            None => format!("{} bytes", store.queue_bytes),
        },
    ));
    for (i, (purpose, count)) in store.queued.iter().enumerate() {
        let label = if i == 0 { "queued" } else { "" };
        entries.push(Entry::new(label, format!("{purpose}: {count}")));
    }
    for (i, (purpose, reasons)) in store.dropped.iter().enumerate() {
        let reasons: Vec<String> = reasons
            .iter()
            .map(|(reason, count)| format!("{count} {}", reason.replace('_', " ")))
            .collect();
        let label = if i == 0 { "dropped" } else { "" };
        entries.push(Entry::new(
            label,
            format!("{purpose}: {} (to keep the bounds)", reasons.join(", ")),
        ));
    }
    if store.dead_letters > 0 {
        entries.push(
            Entry::new(
                "dead letters",
                format!(
                    "{} record(s) that will not be sent (newest: {}); see `consentry history`",
                    store.dead_letters,
                    store
                        .dead_letter_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ),
            )
            .tone(Tone::Warn),
        );
    }
}
