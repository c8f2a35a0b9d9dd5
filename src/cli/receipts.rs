//! `consentry consent history` and `consentry consent receipt ID`: the
//! consent receipt log (`consent::receipt`, kept in the store), read
//! without a daemon and without changing anything.

use std::process::ExitCode;

use consentry::consent::receipt::Receipt;
use consentry::store::{Store, database_exists, receipts};
use serde::Serialize;

use super::{OutputArgs, print_json};

#[derive(Serialize)]
struct History {
    receipts: Vec<Receipt>,
}

fn load(output: &OutputArgs) -> anyhow::Result<Option<Store>> {
    let config = output.config.load()?;
    // Never create a state directory just to say there is nothing in it.
    if !database_exists(&config.state_dir)? {
        return Ok(None);
    }
    Ok(Some(Store::open(&config.state_dir)?))
}

pub fn history(output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let receipts = match load(output)? {
        Some(store) => store.read(receipts::list)?,
        None => Vec::new(),
    };
    if output.json {
        print_json("consentry.consent.history/1", &History { receipts })?;
        return Ok(ExitCode::SUCCESS);
    }
    if receipts.is_empty() {
        say!("  no consent receipt yet");
    }
    for receipt in &receipts {
        say!(
            "  {}  {:<13} {:<20} {} -> {}  ({}, {})  {}",
            receipt.timestamp,
            receipt.event.as_str(),
            receipt.subject(),
            receipt.previous_state,
            receipt.new_state,
            receipt.collection_method,
            receipt.jurisdiction,
            &receipt.receipt_id.to_string()[..8]
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn receipt(id: &str, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let id = id.trim().to_ascii_lowercase();
    anyhow::ensure!(
        !id.is_empty(),
        "give a receipt id (`consentry consent history` lists them)"
    );
    let found = match load(output)? {
        Some(store) => store.read(|c| receipts::get(c, &id))?,
        None => Vec::new(),
    };
    match found.as_slice() {
        [one] => {
            print_json("consentry.consent.receipt/1", one)?;
            Ok(ExitCode::SUCCESS)
        }
        [] => anyhow::bail!("no consent receipt `{id}` (`consentry consent history` lists them)"),
        _ => anyhow::bail!("`{id}` is the start of more than one receipt id; give more of it"),
    }
}
