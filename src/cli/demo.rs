//! `consentry demo`: the whole path on loopback, with no root, no setup and
//! no network. A throwaway CA and HTTPS receiver on 127.0.0.1, a daemon on a
//! temporary state directory with the EULA and the Security Network
//! statement accepted; one of each event kind through the ingest socket
//! (and a bad line, rejected), a flush, what the server received per
//! purpose; then revokes ksn (verdicts are discarded at the door) and the
//! EULA, and shows that nothing more leaves. Last, it writes the
//! transparency report (`consentry report`) to a file that outlives the
//! demo, and prints its path.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use consentry::catalogue::BuiltIn;
use consentry::config::Config;
use consentry::consent::{self, Decision, Method};
use consentry::control::{self, Request, Response};
use consentry::daemon::{self, Agent, Listeners};
use consentry::receiver::{LoopbackPki, ReceivedRequest, Receiver};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

/// How long the demo waits for the first batch before calling it a failure.
const FIRST_BATCH_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  consentry demo
  consentry demo --keep
  consentry demo --protocol otlp-http")]
pub struct DemoArgs {
    /// Keep the temporary directory (config, consent file, queue) and print its path.
    #[arg(long)]
    keep: bool,
    /// The wire format the agent sends: consentry's JSON envelopes, or OTLP
    /// logs as an OpenTelemetry Collector takes them (docs/fleet.md).
    #[arg(long, value_name = "PROTOCOL", default_value = "consentry-json", value_parser = ["consentry-json", "otlp-http"])]
    protocol: String,
    /// The product whose built-in catalogue the demo runs: each has the
    /// clauses and purposes its own seed text names (docs/catalogue.md).
    #[arg(long, value_name = "PRODUCT", value_enum, default_value_t = BuiltIn::Kis)]
    catalogue: BuiltIn,
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("consentry-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let pki = LoopbackPki::generate()?;
    let ca_file = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).context("cannot write the demo CA")?;
    let receiver = Receiver::start(&pki).await?;
    let config_path = write_config(dir.path(), &receiver.url(), &args.protocol, args.catalogue)?;
    let config = Config::load(&config_path)?;
    let catalogue = config.load_catalogue()?;

    say_setup(args, &receiver.url(), &config);
    grant_as_the_installer(&config, &catalogue)?;
    say!("  consent    eula and ksn accepted by the installer\n");

    let control_socket = config.control_socket();
    let ingest_socket = config.ingest_socket();
    let agent = Agent::open(config.clone()).await?;
    let listeners = Listeners::bind(&agent.config())?;
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run(agent, listeners, shutdown.clone()));

    say!("Decisions:");
    for decision in config.evaluate_consent(&catalogue).decisions() {
        print_decision(decision);
    }

    say_regions(&catalogue);

    say!(
        "\nComponents report through {} (`consentry emit`):",
        ingest_socket.display()
    );
    let summary = emit(&ingest_socket, &demo_events(&catalogue, DEMO_VERDICTS)).await?;
    say!(
        "  {} lines: {} accepted, {} rejected, {} discarded; every accepted line is durable",
        summary.lines,
        summary.accepted,
        summary.rejected,
        summary.discarded
    );
    for error in &summary.errors {
        say!(
            "  line {} rejected ({}): {}",
            error.line,
            error.error,
            error.message
        );
    }

    say!("\nFlushing (`consentry flush`: periodic collectors run, the KSN window closes):");
    control::request(&control_socket, &Request::Flush).await?;
    let arrived = receiver.wait_for_requests(1, FIRST_BATCH_TIMEOUT).await;
    say!("\nReceived by the server:");
    let requests = receiver.requests();
    print_requests(&requests);
    say_randomised(&catalogue, &requests);
    if !arrived {
        shutdown.cancel();
        let _ = daemon.await;
        anyhow::bail!("no batch reached the receiver within {FIRST_BATCH_TIMEOUT:?}");
    }

    let (before, after) = revoke_ksn_then_eula(&config, &catalogue, &receiver).await?;
    // While the daemon runs: its door counts (the discarded verdicts) are
    // in its memory only.
    let report = write_report(&config).await;

    shutdown.cancel();
    daemon.await.context("the demo daemon panicked")??;
    say_what_was_kept(&config, &receiver)?;
    match report {
        Ok(path) => say!(
            "\nTransparency report (`consentry report`): {}\n  one page, no script, nothing fetched: open it in a browser",
            path.display()
        ),
        Err(err) => anyhow::bail!("cannot write the transparency report: {err:#}"),
    }
    if args.keep {
        let kept = dir.keep();
        say!("\nKept {}", kept.display());
    }
    if after != before {
        anyhow::bail!("something was sent after the revoke");
    }
    say!("\nDone: only catalogue fields of allowed purposes left the agent.");
    Ok(ExitCode::SUCCESS)
}

/// The installer's answers: eula and ksn accepted.
fn grant_as_the_installer(
    config: &Config,
    catalogue: &consentry::catalogue::Catalogue,
) -> anyhow::Result<()> {
    consent::grant(
        &config.consent_file,
        catalogue,
        config.region,
        "eula",
        Method::Installer,
    )?;
    consent::grant(
        &config.consent_file,
        catalogue,
        config.region,
        "ksn",
        Method::Installer,
    )?;
    Ok(())
}

/// Revokes ksn (verdicts sent after it are discarded at the door), then
/// eula (its queue purged); returns the receiver's request count before
/// and after the eula's revoke, which must be the same.
async fn revoke_ksn_then_eula(
    config: &Config,
    catalogue: &consentry::catalogue::Catalogue,
    receiver: &Receiver,
) -> anyhow::Result<(usize, usize)> {
    let (control_socket, ingest_socket) = (config.control_socket(), config.ingest_socket());
    say!("\nRevoking ksn, then sending 1,000 more scan verdicts:");
    revoke(config, catalogue, "ksn").await?;
    let summary = emit(&ingest_socket, &verdict_lines(1000)).await?;
    say!(
        "  {} accepted, {} discarded at the door (never stored)",
        summary.accepted,
        summary.discarded
    );
    control::request(&control_socket, &Request::Flush).await?;
    let before = receiver.requests().len();

    say!("\nRevoking eula (`consentry consent revoke eula`), then flushing:");
    match revoke(config, catalogue, "eula").await? {
        Response::ConsentApplied(applied) => say!(
            "  purged {} queued record(s); installation id replaced: {}",
            applied.purged,
            applied.installation_id_rotated
        ),
        other => say!("  daemon answered: {other:?}"),
    }
    control::request(&control_socket, &Request::Flush).await?;
    let after = receiver.requests().len();
    say!("  requests at the receiver: {before} before the revoke, {after} after");
    Ok((before, after))
}

/// Where the demo runs, and how to see the other products and protocols.
fn say_setup(args: &DemoArgs, receiver_url: &str, config: &Config) {
    say!("consentry demo (everything stays on this machine)");
    say!(
        "  receiver   {} (TLS, certificate from a throwaway CA)",
        receiver_url
    );
    say!("  state      {}", config.state_dir.display());
    say!("  region     {}", config.region);
    say!(
        "  catalogue  {} ({}; `consentry demo --catalogue {}` for another product)",
        args.catalogue,
        args.catalogue.product(),
        BuiltIn::ALL
            .into_iter()
            .filter(|b| *b != args.catalogue)
            .map(BuiltIn::id)
            .collect::<Vec<_>>()
            .join("|")
    );
    say!(
        "  protocol   {}{}",
        args.protocol,
        if args.protocol == "otlp-http" {
            " (OTLP logs, protobuf; the receiver reads them back into records below)"
        } else {
            " (`consentry demo --protocol otlp-http` for OTLP)"
        }
    );
}

/// Each region's clauses and the purposes they can allow.
fn say_regions(catalogue: &consentry::catalogue::Catalogue) {
    say!("\nRegional editions (clauses that apply, and the purposes they can allow):");
    for region in consentry::catalogue::Region::ALL {
        let clauses: Vec<&str> = catalogue
            .clauses()
            .filter(|c| c.applies_in(region))
            .map(|c| c.id.as_str())
            .collect();
        let purposes: Vec<&str> = catalogue
            .purposes()
            .filter(|p| p.clauses.iter().any(|c| clauses.contains(&c.as_str())))
            .map(|p| p.id.as_str())
            .collect();
        say!("  {:<7} {}", region.as_str(), clauses.join(", "));
        say!("          {}", purposes.join(", "));
    }
}

/// The receipts and the audit trail the demo left, and the proof that the
/// body the receiver got is the one the trail recorded.
fn say_what_was_kept(config: &Config, receiver: &Receiver) -> anyhow::Result<()> {
    let store = consentry::store::Store::open(&config.state_dir)?;
    say!("\nConsent receipts (`consentry consent history`):");
    for receipt in store.read(consentry::store::receipts::list)? {
        let clause = receipt
            .clause
            .as_ref()
            .map_or(String::new(), |c| format!("{} v{}", c.id, c.version));
        say!(
            "  {:?} {clause}: {} -> {} ({}, {}), receipt {}",
            receipt.event,
            receipt.previous_state,
            receipt.new_state,
            receipt.collection_method,
            receipt.jurisdiction,
            &receipt.receipt_id.to_string()[..8]
        );
    }
    say!("\nAudit trail (`consentry history`):");
    let trail = store.recent_audit(12)?;
    super::history::print_entries(&trail);
    // What the receiver got is what the trail says was sent.
    if let Some(first) = receiver.requests().first()
        && let Some(key) = &first.idempotency_key
    {
        let kept = store.read(|c| consentry::store::queue::sent_body(c, key))?;
        let received = hex::encode(sha2::Sha256::digest(&first.body));
        let recorded = kept.first().map(|k| k.sha256.as_str()).unwrap_or("none");
        say!(
            "\n`consentry history --show {} --wire` prints the bytes the receiver got: sha256 {} (recorded at send time: {})",
            &key[..8],
            received,
            if received == recorded {
                "the same"
            } else {
                "DIFFERENT"
            }
        );
        if received != recorded {
            anyhow::bail!("the kept body differs from the one received");
        }
    }
    Ok(())
}

/// The transparency report of the last week, as `consentry report`
/// writes it, in a file of its own that outlives the demo's directory.
async fn write_report(config: &Config) -> anyhow::Result<std::path::PathBuf> {
    let now = std::time::SystemTime::now();
    let since = now - Duration::from_secs(7 * 86_400);
    let report = super::report::build(config, since, now, 5).await?;
    let html = super::report::render(&report, super::report::Format::Html)?;
    let mut file = tempfile::Builder::new()
        .prefix("consentry-report-")
        .suffix(".html")
        .tempfile()
        .context("cannot create the report file")?;
    std::io::Write::write_all(&mut file, html.as_bytes()).context("cannot write the report")?;
    let (_, path) = file.keep().context("cannot keep the report file")?;
    Ok(path)
}

/// Scan verdicts the demo's scanner reports (over a third as many objects).
const DEMO_VERDICTS: usize = 3000;

/// One of each event kind a product's components send for the purposes
/// its catalogue names, a bad line, and `verdicts` scan verdicts (when the
/// catalogue has the Security Network's scan aggregates).
fn demo_events(catalogue: &consentry::catalogue::Catalogue, verdicts: usize) -> String {
    let has = |purpose: &str| catalogue.purpose(purpose).is_some();
    let mut lines = String::new();
    if has("ksn_scan_aggregates") {
        lines.push_str(&verdict_lines(verdicts));
        lines.push_str(r#"{"kind":"ksn_request","ok":true,"duration_ms":42,"bytes_sent":512,"bytes_received":2048}"#);
        lines.push('\n');
    }
    // A key file first (it sends nothing), then a code: what waits for an
    // activation by code (`after_activation`) goes from then on.
    let events = [
        ("update_identity", r#"{"kind":"update_task"}"#),
        ("activation", r#"{"kind":"activation","method":"key_file"}"#),
        (
            "activation",
            r#"{"kind":"activation","method":"code","code":"DEMO1-DEMO2-DEMO3","locale":"en-US","license_edition":"standard","license_units_total":3,"license_units_used":1}"#,
        ),
        (
            "installation_errors",
            r#"{"kind":"install_task","task":"upgrade","status":"failed","error_type":"disk_full","error_code":112,"duration_ms":5400,"campaign_id":"demo-campaign"}"#,
        ),
        (
            "link_following",
            r#"{"kind":"record","purpose":"link_following","fields":{"product_type":"suite","interface_language":"en","web_page_id":"renewal"}}"#,
        ),
        (
            "virtual_infrastructure",
            r#"{"kind":"record","purpose":"virtual_infrastructure","fields":{"product_type":"ksv","product_version":"6.2.0","platform_type":"kvm","platform_version":"8.2","protected_os_type":"windows","protected_os_version":"10","protected_os_bitness":64,"protected_vm_count":40}}"#,
        ),
        (
            "license_units",
            r#"{"kind":"record","purpose":"license_units","fields":{"license_edition":"standard","licensing_scheme":"per_machine","license_units_total":50,"license_units_used":40}}"#,
        ),
        (
            "ksn_threat_reports",
            r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"threat_name":"EICAR-Test-File","detected_at":"2026-11-26T07:00:00Z","object_size":68,"protection_status":"enabled"}}"#,
        ),
        (
            "installation_errors",
            r#"{"kind":"install_task","task":"install","status":"failed","hostname":"my-laptop"}"#,
        ),
    ];
    for (purpose, line) in events {
        if has(purpose) {
            lines.push_str(line);
            lines.push('\n');
        }
    }
    lines
}

/// `count` scan verdicts over a third as many objects.
fn verdict_lines(count: usize) -> String {
    use std::fmt::Write;
    let mut lines = String::new();
    for n in 0..count {
        let object = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            ((n % 1000) as u64).to_le_bytes(),
        ));
        let (verdict, reason) = [
            ("trusted", "certificate"),
            ("unknown", "none"),
            ("untrusted", "none"),
        ][n % 3];
        let _ = writeln!(
            lines,
            r#"{{"kind":"scan_verdict","object":"{object}","verdict":"{verdict}","trust_reason":"{reason}"}}"#
        );
    }
    lines
}

async fn emit(
    socket: &Path,
    lines: &str,
) -> anyhow::Result<consentry::ingest::client::EmitSummary> {
    Ok(consentry::ingest::client::send(socket, lines.as_bytes()).await?)
}

fn write_config(
    dir: &Path,
    endpoint: &str,
    protocol: &str,
    catalogue: BuiltIn,
) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("consentry.toml");
    let text = format!(
        r#"# Written by `consentry demo`.
region = "global"
catalogue = "{catalogue}"
state_dir = "state"
runtime_dir = "run"
consent_file = "consent.toml"

[product]
id = "consentry-demo-suite"
version = "1.0.0.0"
license_id = "DEMO-LICENSE-0001"
locale = "en-US"

[collect]
interval = "1h"

[upload]
endpoint = "{endpoint}"
protocol = "{protocol}"
ca_file = "receiver-ca.pem"
batch_max_delay = "1s"
timeout = "5s"
retry_initial = "1s"
retry_max = "5s"
"#
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Each field the gate randomised (local differential privacy) and what
/// the receiver got for it: only the mechanism's report, never the value.
fn say_randomised(catalogue: &consentry::catalogue::Catalogue, requests: &[ReceivedRequest]) {
    let randomised: Vec<(&str, &str, String)> = catalogue
        .purposes()
        .flat_map(|p| {
            p.fields.iter().filter_map(|f| {
                let ldp = f.ldp.as_ref()?;
                Some((
                    p.id.as_str(),
                    f.name.as_str(),
                    format!("{}, ε = {} a report", ldp.mechanism.as_str(), ldp.epsilon),
                ))
            })
        })
        .collect();
    if randomised.is_empty() {
        return;
    }
    say!("\nRandomised before anything is stored (local differential privacy):");
    for (purpose, field, how) in randomised {
        let received: Vec<String> = requests
            .iter()
            .filter_map(|r| r.envelope.as_ref().ok())
            .flat_map(|e| &e.records)
            .filter(|r| r.purpose == purpose)
            .filter_map(|r| {
                let fields: serde_json::Value = serde_json::from_str(r.fields.get()).ok()?;
                fields.get(field).map(|v| {
                    let text = v.to_string();
                    if text.len() > 24 {
                        format!("{}…", &text[..24])
                    } else {
                        text
                    }
                })
            })
            .collect();
        let got = if received.is_empty() {
            "nothing of it was sent in this run".to_owned()
        } else {
            format!(
                "the receiver got {}, a report; the real value never left",
                received.join(", ")
            )
        };
        say!("  {purpose}.{field} ({how}): {got}");
    }
}

fn print_requests(requests: &[ReceivedRequest]) {
    if requests.is_empty() {
        say!("  nothing");
    }
    for request in requests {
        say!(
            "  {} {} -> {}  Idempotency-Key: {}",
            request.method,
            request.path,
            request.status,
            request.idempotency_key.as_deref().unwrap_or("-")
        );
        match &request.envelope {
            Ok(envelope) => {
                for record in &envelope.records {
                    say!(
                        "    {} under {} v{} (sha256 {}…)",
                        record.purpose,
                        record.clause,
                        record.clause_version,
                        &record.clause_sha256[..12.min(record.clause_sha256.len())]
                    );
                    say!("      {}", record.fields.get());
                }
            }
            Err(err) => say!("    undecodable body: {err}"),
        }
    }
}

/// One line per purpose: verdict, reason, and a note when this build has
/// no collector for it (allowed, but nothing to send).
fn print_decision(decision: &Decision) {
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

/// What `consentry consent revoke CLAUSE` does with a daemon running: the
/// consent file rewritten under its lock, and the act declared to the
/// daemon, which records its receipt and purges before answering.
async fn revoke(
    config: &Config,
    catalogue: &consentry::catalogue::Catalogue,
    clause: &str,
) -> anyhow::Result<Response> {
    let _lock = consent::ConsentLock::exclusive(&config.consent_file)?;
    let revoked = consent::revoke(&config.consent_file, catalogue, clause)?;
    let act = consent::Act::revoke(clause, revoked.record.as_ref(), Method::Cli.as_str());
    let request = Request::ConsentChanged { act: Some(act) };
    Ok(control::request(&config.control_socket(), &request).await?)
}
