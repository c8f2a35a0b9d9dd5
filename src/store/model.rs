//! Model-based test of the queue: random sequences of enqueue, claim,
//! complete, a failed attempt (the batch kept for a retry), release,
//! purge, dead-letter, reopen and a crash in the middle of a transaction,
//! run against the real store and against a plain in-memory model; after
//! every step the two must agree on what is queued, what is claimed and
//! under which id, and what was dead-lettered.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::{Store, queue};
use crate::gate::test_record;

const PURPOSES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        purpose: usize,
        count: i64,
    },
    /// Claim with at most `limit` records of the purposes in `sendable`
    /// (bit i: PURPOSES[i]).
    Claim {
        limit: usize,
        sendable: u8,
    },
    Complete,
    /// The send failed: the batch stays claimed for its retry.
    Fail,
    Release,
    /// Purge every purpose whose bit is clear in `keep`.
    Purge {
        keep: u8,
    },
    DeadLetter,
    Reopen,
    /// A transaction that enqueues and claims, then dies uncommitted.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..6i64).prop_map(|(purpose, count)| Op::Enqueue { purpose, count }),
        4 => (1..8usize, 1..8u8).prop_map(|(limit, sendable)| Op::Claim { limit, sendable }),
        2 => Just(Op::Complete),
        1 => Just(Op::Fail),
        1 => Just(Op::Release),
        1 => (0..8u8).prop_map(|keep| Op::Purge { keep }),
        1 => Just(Op::DeadLetter),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn chosen(mask: u8) -> Vec<&'static str> {
    (0..3)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| PURPOSES[i])
        .collect()
}

/// The model: records by number, oldest first, and the claimed batch.
#[derive(Default)]
struct Model {
    queued: Vec<(i64, &'static str)>,
    claimed: Option<(uuid::Uuid, Vec<i64>)>,
    dead: BTreeSet<i64>,
    next: i64,
}

impl Model {
    fn claim(&mut self, limit: usize, sendable: &[&str], got: Option<uuid::Uuid>) -> Vec<i64> {
        // The batch already claimed, when every record left in it may
        // still be sent and some are left, is claimed again as it is.
        if let Some((id, numbers)) = &self.claimed {
            let left: Vec<i64> = numbers
                .iter()
                .copied()
                .filter(|n| self.queued.iter().any(|(q, _)| q == n))
                .collect();
            let all_sendable = left.iter().all(|n| {
                self.queued
                    .iter()
                    .any(|(q, p)| q == n && sendable.contains(p))
            });
            if !left.is_empty() && all_sendable {
                assert_eq!(got, Some(*id), "a retry keeps its batch id");
                self.claimed = Some((*id, left.clone()));
                return left;
            }
        }
        let numbers: Vec<i64> = self
            .queued
            .iter()
            .filter(|(_, p)| sendable.contains(p))
            .take(limit)
            .map(|(n, _)| *n)
            .collect();
        self.claimed = match got {
            Some(id) if !numbers.is_empty() => Some((id, numbers.clone())),
            _ => None,
        };
        numbers
    }

    fn remove_claimed(&mut self) -> Vec<i64> {
        let Some((_, numbers)) = self.claimed.take() else {
            return Vec::new();
        };
        self.queued.retain(|(n, _)| !numbers.contains(n));
        numbers
    }
}

fn numbers_of(batch: &super::Batch) -> Vec<i64> {
    batch
        .record_vec()
        .iter()
        .map(|r| {
            let fields: serde_json::Value = serde_json::from_str(&r.fields_json).unwrap();
            fields["n"].as_i64().unwrap()
        })
        .collect()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Enqueue { purpose, count } => {
                let records: Vec<_> = (0..count)
                    .map(|i| test_record(PURPOSES[purpose], model.next + i))
                    .collect();
                store.enqueue(&records).unwrap();
                for i in 0..count {
                    model.queued.push((model.next + i, PURPOSES[purpose]));
                }
                model.next += count;
            }
            Op::Claim { limit, sendable } => {
                let sendable = chosen(sendable);
                let batch = store.claim_batch(limit, &sendable).unwrap();
                let expected = model.claim(limit, &sendable, batch.as_ref().map(|b| b.id));
                let got = batch.as_ref().map(numbers_of).unwrap_or_default();
                assert_eq!(got, expected, "claim of {limit} from {sendable:?}");
            }
            Op::Complete => {
                if let Some((id, _)) = model.claimed {
                    let removed = model.remove_claimed();
                    let deleted = store.complete_batch(id, "uploaded", "model").unwrap();
                    assert_eq!(deleted, removed.len() as u64);
                }
            }
            Op::Fail => {
                if let Some((id, _)) = model.claimed {
                    store
                        .write(|c| queue::insert_audit(c, "failed", Some(id), 0, "model"))
                        .unwrap();
                }
            }
            Op::Release => {
                if let Some((id, _)) = model.claimed.take() {
                    store.write(|c| queue::release_batch(c, id)).unwrap();
                }
            }
            Op::Purge { keep } => {
                let keep = chosen(keep);
                let purged = store.purge_blocked(|p| keep.contains(&p), "model").unwrap();
                let before = model.queued.len();
                let doomed: BTreeSet<i64> = model
                    .queued
                    .iter()
                    .filter(|(_, p)| !keep.contains(p))
                    .map(|(n, _)| *n)
                    .collect();
                model.queued.retain(|(n, _)| !doomed.contains(n));
                assert_eq!(purged, (before - model.queued.len()) as u64);
                // A batch that lost records to the purge is released.
                if model
                    .claimed
                    .as_ref()
                    .is_some_and(|(_, numbers)| numbers.iter().any(|n| doomed.contains(n)))
                {
                    model.claimed = None;
                }
            }
            Op::DeadLetter => {
                if let Some((id, _)) = model.claimed {
                    let removed = model.remove_claimed();
                    let moved = store
                        .write(|c| queue::dead_letter_batch(c, id, Some(422), "model"))
                        .unwrap();
                    assert_eq!(moved, removed.len() as u64);
                    model.dead.extend(removed);
                }
            }
            Op::Reopen => {
                drop(store);
                store = Store::open(dir.path()).unwrap();
            }
            Op::Crash => {
                // Work done in a transaction that never commits is gone.
                let crashed = store.write(|c| {
                    queue::enqueue(c, &[test_record("a", -1)])?;
                    queue::claim_batch(c, super::BatchLimits::records(5), &PURPOSES)?;
                    Err::<(), _>(super::StoreError::Corrupt {
                        what: "model",
                        message: "crash".into(),
                    })
                });
                assert!(crashed.is_err());
                drop(store);
                store = Store::open(dir.path()).unwrap();
            }
        }
        assert_eq!(store.depth().unwrap(), model.queued.len() as u64);
        let dead: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM dead_letter", [], |row| row.get(0))?))
            .unwrap();
        assert_eq!(dead as usize, model.dead.len());
    }
    // At the end, draining everything sends exactly what the model holds,
    // in order.
    let mut drained = Vec::new();
    while let Some(batch) = store.claim_batch(3, &PURPOSES).unwrap() {
        drained.extend(numbers_of(&batch));
        store.complete_batch(batch.id, "uploaded", "drain").unwrap();
    }
    let mut expected: Vec<i64> = match &model.claimed {
        // A batch still claimed goes first, as a retry.
        Some((_, numbers)) => numbers.clone(),
        None => Vec::new(),
    };
    for (n, _) in &model.queued {
        if !expected.contains(n) {
            expected.push(*n);
        }
    }
    assert_eq!(drained, expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
