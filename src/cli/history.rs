//! `consentry history`: the audit trail the user can read: every upload,
//! failed attempt and purge, newest last.

use std::process::ExitCode;

use consentry::store::{AuditEntry, DATABASE_FILE, Store};

use super::{OutputArgs, print_json};

/// How many lines `history` shows unless told otherwise.
const DEFAULT_LIMIT: usize = 50;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Show at most this many of the newest lines.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let config = args.output.config.load()?;
    // Never create a state directory just to say there is nothing in it.
    let entries = if config.state_dir.join(DATABASE_FILE).exists() {
        Store::open(&config.state_dir)?.recent_audit(args.limit)?
    } else {
        Vec::new()
    };
    if args.output.json {
        print_json(&entries)?;
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
