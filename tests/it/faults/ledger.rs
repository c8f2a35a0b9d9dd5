//! What the ingest socket acknowledged, and the conservation check: every
//! acknowledged record reached the receiver in a 2xx batch, and a record
//! that arrived more than once did so only under one batch id (a resend
//! the receiver can drop by its `Idempotency-Key`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use consentry::ingest::client;

use crate::support::World;

/// `count` install tasks with the unique error codes from `first` on.
pub fn install_lines(first: u64, count: u64) -> String {
    (first..first + count)
        .map(|code| {
            format!(
                "{{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\",\"error_code\":{code}}}\n"
            )
        })
        .collect()
}

/// The error codes the daemon acknowledged as stored, and how many lines
/// it answered with an error instead (`not_stored`, say).
#[derive(Debug, Default)]
pub struct Ledger {
    pub acked: BTreeSet<u64>,
    pub refused: u64,
    /// The first refusal's words, to check that they say why.
    pub first_refusal: Option<String>,
    next: u64,
}

impl Ledger {
    /// A ledger whose codes start at `first` (apart from another's).
    pub fn starting_at(first: u64) -> Self {
        Self {
            next: first,
            ..Self::default()
        }
    }

    /// Sends `count` new install tasks in one connection. Their codes are
    /// counted as acknowledged only when every line of the connection was
    /// accepted: a connection with a refused chunk counts none (a line
    /// stored but not acknowledged may still arrive; that is no loss).
    /// Returns whether all were accepted.
    pub async fn send(&mut self, socket: &Path, count: u64) -> bool {
        let first = self.next;
        self.next += count;
        let lines = install_lines(first, count);
        match client::send(socket, lines.as_bytes()).await {
            Ok(summary) if summary.rejected == 0 && summary.accepted == count => {
                self.acked.extend(first..first + count);
                true
            }
            Ok(summary) => {
                self.refused += summary.rejected;
                if self.first_refusal.is_none() {
                    self.first_refusal = summary
                        .errors
                        .first()
                        .map(|e| format!("{}: {}", e.error, e.message));
                }
                false
            }
            Err(err) => {
                self.refused += count;
                self.first_refusal.get_or_insert(err.to_string());
                false
            }
        }
    }
}

/// What the receiver accepted (2xx) per error code: under which batch ids.
pub fn delivered_keys(world: &World) -> BTreeMap<u64, BTreeSet<String>> {
    let mut keys: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for request in world.receiver.requests() {
        if !(200..300).contains(&request.status) {
            continue;
        }
        let (Ok(envelope), Some(key)) = (&request.envelope, &request.idempotency_key) else {
            continue;
        };
        for record in &envelope.records {
            if record.purpose != "installation_errors" {
                continue;
            }
            let fields: serde_json::Value = serde_json::from_str(record.fields.get()).unwrap();
            if let Some(code) = fields["error_code"].as_u64() {
                keys.entry(code).or_default().insert(key.clone());
            }
        }
    }
    keys
}

/// What a conservation check found.
#[derive(Debug)]
pub struct Conservation {
    pub acked: usize,
    pub lost: usize,
    /// Codes that arrived under two or more batch ids.
    pub duplicated_across_batches: usize,
    /// Codes that arrived more than once under the same batch id.
    pub resent_same_batch: usize,
}

/// Checks conservation for `ledger` against what the receiver accepted;
/// panics (naming a few codes) when something acknowledged was lost or
/// arrived under two batch ids.
pub fn assert_conserved(world: &World, ledger: &Ledger, what: &str) -> Conservation {
    let keys = delivered_keys(world);
    let lost: Vec<u64> = ledger
        .acked
        .iter()
        .filter(|code| !keys.contains_key(code))
        .copied()
        .collect();
    let across: Vec<u64> = keys
        .iter()
        .filter(|(_, k)| k.len() > 1)
        .map(|(code, _)| *code)
        .collect();
    let mut arrivals: BTreeMap<u64, usize> = BTreeMap::new();
    for request in world.receiver.requests() {
        if let (true, Ok(envelope)) = ((200..300).contains(&request.status), &request.envelope) {
            for record in &envelope.records {
                let fields: serde_json::Value = serde_json::from_str(record.fields.get()).unwrap();
                if let Some(code) = fields["error_code"].as_u64() {
                    *arrivals.entry(code).or_default() += 1;
                }
            }
        }
    }
    let conservation = Conservation {
        acked: ledger.acked.len(),
        lost: lost.len(),
        duplicated_across_batches: across.len(),
        resent_same_batch: arrivals.values().filter(|n| **n > 1).count(),
    };
    assert!(
        lost.is_empty(),
        "{what}: {} acknowledged records lost (first: {:?})",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        across.is_empty(),
        "{what}: {} records delivered under two batch ids (first: {:?})",
        across.len(),
        &across[..across.len().min(10)]
    );
    conservation
}
