//! `consentry history`: the audit trail the user can read: every upload,
//! failed attempt and purge, newest last.

use std::process::ExitCode;

use std::io::Write;

use consentry::config::Config;
use consentry::store::{AuditEntry, Store, database_exists, queue};
use consentry::upload::shown;
use serde::Serialize;

use super::{OutputArgs, print_json};

/// How many lines `history` shows unless told otherwise.
const DEFAULT_LIMIT: usize = 50;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry history
  consentry history --kind uploaded --since 24h
  consentry history --purpose update_identity --limit 500 --json
  consentry history --show 3f2a91 > sent-body.json
  consentry history --show 3f2a91 --wire | sha256sum")]
pub struct HistoryArgs {
    /// Show at most this many of the newest lines.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: usize,
    /// Print the exact JSON body sent for this batch (its id, or the start
    /// of it) on stdout, decompressed.
    #[arg(long, value_name = "BATCH")]
    pub show: Option<String>,
    /// With --show: print the body's bytes as they went on the wire
    /// (compressed) instead; their SHA-256 is the one the trail recorded.
    #[arg(long, requires = "show")]
    pub wire: bool,
    /// Only lines of this kind: uploaded, failed, refused, purged, dropped,
    /// dead-lettered, consent, quarantined, rotated, capped, activated.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only lines since then: an RFC 3339 time, or a duration back from
    /// now ("24h", "7d").
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines about this purpose (uploads and purges name theirs).
    #[arg(long, value_name = "PURPOSE")]
    pub purpose: Option<String>,
}

/// `--since` as an RFC 3339 time: given as one, or a duration back from now.
fn since(value: &str) -> anyhow::Result<String> {
    Ok(consentry::clock::rfc3339(since_time(value)?))
}

/// A `--since` value (`history`, `report`) as a time: an RFC 3339 time as
/// given, or a duration back from now.
pub(super) fn since_time(value: &str) -> anyhow::Result<std::time::SystemTime> {
    if let Ok(at) = humantime::parse_rfc3339_weak(value) {
        return Ok(at);
    }
    let back = humantime::parse_duration(value).map_err(|_| {
        anyhow::anyhow!(
            "--since `{value}` is neither a time (2026-11-26T10:00:00Z) nor a duration (24h, 7d)"
        )
    })?;
    Ok(std::time::SystemTime::now()
        .checked_sub(back)
        .unwrap_or(std::time::UNIX_EPOCH))
}

pub fn run(args: &HistoryArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = output.config.load()?;
    if let Some(batch) = &args.show {
        anyhow::ensure!(
            !(args.wire && output.json),
            "--wire prints the compressed bytes sent; it cannot be combined with --json"
        );
        return show(&config, batch, output.json, args.wire);
    }
    let filter = queue::AuditFilter {
        kind: args.kind.clone(),
        since: args.since.as_deref().map(since).transpose()?,
        purpose: args.purpose.clone(),
    };
    // Never create a state directory just to say there is nothing in it.
    let entries = if database_exists(&config.state_dir)? {
        Store::open(&config.state_dir)?.read(|c| queue::audit_where(c, args.limit, &filter))?
    } else {
        Vec::new()
    };
    if output.json {
        #[derive(Serialize)]
        struct History {
            entries: Vec<AuditEntry>,
        }
        print_json("consentry.history/1", &History { entries })?;
    } else {
        print_entries(&entries);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_entries(entries: &[AuditEntry]) {
    if entries.is_empty() {
        say!("  nothing recorded yet");
    }
    for entry in entries {
        say!(
            "  {}  {:<8} {:>5} record(s)  {}  {}",
            entry.at,
            entry.event,
            entry.records,
            entry.batch_id.as_deref().unwrap_or("-"),
            entry.detail
        );
    }
}

/// `consentry.history.show/1` (docs/cli-json.md).
#[derive(Serialize)]
struct Shown {
    batch_id: String,
    sent_at: String,
    records: u64,
    sha256: String,
    body: Box<serde_json::value::RawValue>,
}

/// `history --show BATCH`: the body as sent, byte for byte (decompressed,
/// or as on the wire with `wire`).
fn show(config: &Config, batch: &str, json: bool, wire: bool) -> anyhow::Result<ExitCode> {
    let batch = batch.trim().to_ascii_lowercase();
    anyhow::ensure!(!batch.is_empty(), "--show needs a batch id");
    let found = if database_exists(&config.state_dir)? {
        Store::open(&config.state_dir)?.read(|c| queue::sent_body(c, &batch))?
    } else {
        Vec::new()
    };
    let kept = match found.as_slice() {
        [one] => one,
        [] => anyhow::bail!(
            "no body is kept for batch `{batch}`: it was never sent, or it is older than the audit retention (see `consentry history`)"
        ),
        _ => anyhow::bail!("`{batch}` is the start of more than one batch id; give more of it"),
    };
    let shown = shown::readable(kept)?;
    if json {
        print_json(
            "consentry.history.show/1",
            &Shown {
                batch_id: kept.batch_id.clone(),
                sent_at: kept.at.clone(),
                records: kept.records,
                sha256: kept.sha256.clone(),
                body: serde_json::from_slice(&shown.document)?,
            },
        )?;
    } else {
        eprintln!(
            "batch {}: {} record(s), first sent {}, sha256 {} (of the {} bytes sent, {}){}",
            kept.batch_id,
            kept.records,
            kept.at,
            kept.sha256,
            kept.bytes.len(),
            if wire {
                "printed here"
            } else {
                "printed with --wire"
            },
            match (wire, shown.otlp) {
                (false, true) => "; the OTLP protobuf inside is shown here as OTLP/JSON",
                _ => "",
            }
        );
        let mut out = std::io::stdout().lock();
        out.write_all(if wire { &kept.bytes } else { &shown.document })
            .and_then(|()| out.flush())
            .unwrap_or_else(|err| super::stdout_failed(err));
    }
    Ok(ExitCode::SUCCESS)
}
