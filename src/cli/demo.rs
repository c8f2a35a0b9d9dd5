//! `consentry demo`: the whole path on loopback, with no root, no setup and
//! no network. A throwaway CA and HTTPS receiver on 127.0.0.1, a daemon on a
//! temporary state directory with only the EULA accepted; shows what was
//! sent, what was blocked and why, then revokes the EULA and shows that
//! nothing more leaves.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use consentry::config::Config;
use consentry::consent::{self, Method};
use consentry::control::{self, Request, Response};
use consentry::daemon;
use consentry::pipeline::{Pipeline, current_registry};
use consentry::receiver::{LoopbackPki, ReceivedRequest, Receiver};
use tokio_util::sync::CancellationToken;

/// How long the demo waits for the first batch before calling it a failure.
const FIRST_BATCH_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the temporary directory (config, consent file, queue) and print its path.
    #[arg(long)]
    keep: bool,
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
    let config_path = write_config(dir.path(), &receiver.url())?;
    let config = Config::load(&config_path)?;
    let catalogue = config.load_catalogue()?;

    say!("consentry demo (everything stays on this machine)");
    say!(
        "  receiver   {} (TLS, certificate from a throwaway CA)",
        receiver.url()
    );
    say!("  state      {}", config.state_dir.display());
    consent::grant(&config.consent_file, &catalogue, "eula", Method::Installer)?;
    say!("  consent    eula accepted by the installer; ksn not accepted\n");

    let socket = config.control_socket();
    let pipeline = Pipeline::open(config.clone())?;
    let listener = daemon::bind_control_socket(&socket)?;
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(daemon::run(pipeline, listener, shutdown.clone()));

    let arrived = receiver.wait_for_requests(1, FIRST_BATCH_TIMEOUT).await;
    say!("Decisions:");
    for decision in current_registry(&config, &catalogue).decisions() {
        super::status::print_decision(decision);
    }
    say!("\nReceived by the server:");
    let requests = receiver.requests();
    print_requests(&requests);
    if !arrived {
        shutdown.cancel();
        let _ = agent.await;
        anyhow::bail!("no batch reached the receiver within {FIRST_BATCH_TIMEOUT:?}");
    }

    say!("\nRevoking eula (`consentry consent revoke eula`), then flushing:");
    consent::revoke(&config.consent_file, &catalogue, "eula")?;
    match control::request(&socket, &Request::ConsentChanged).await? {
        Response::Flushed(summary) => {
            for blocked in &summary.collect.blocked {
                say!("  not collected: {blocked}");
            }
        }
        other => say!("  daemon answered: {other:?}"),
    }
    control::request(&socket, &Request::Flush).await?;
    let after = receiver.requests().len();
    say!(
        "  requests at the receiver: {} before the revoke, {after} after",
        requests.len()
    );

    shutdown.cancel();
    agent.await.context("the demo daemon panicked")?;
    say!("\nAudit trail (`consentry history`):");
    let store = consentry::store::Store::open(&config.state_dir)?;
    super::history::print_entries(&store.recent_audit(10)?);
    if args.keep {
        let kept = dir.keep();
        say!("\nKept {}", kept.display());
    }
    if after != requests.len() {
        anyhow::bail!("something was sent after the revoke");
    }
    say!("\nDone: only catalogue fields of allowed purposes left the agent.");
    Ok(ExitCode::SUCCESS)
}

fn write_config(dir: &Path, endpoint: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("consentry.toml");
    let text = format!(
        r#"# Written by `consentry demo`.
region = "global"
state_dir = "state"
runtime_dir = "run"
consent_file = "consent.toml"

[product]
id = "consentry-demo-suite"
version = "1.0.0.0"
license_id = "DEMO-LICENSE-0001"

[collect]
interval = "1h"

[upload]
endpoint = "{endpoint}"
ca_file = "receiver-ca.pem"
interval = "1s"
timeout = "5s"
retry_initial = "1s"
retry_max = "5s"
"#
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
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
