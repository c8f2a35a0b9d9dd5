//! Model-based test of the queue: random sequences of enqueue, claim (on
//! its own, or beside a batch on the wire, as the pipelined uploader
//! claims: two batches claimed at once), complete, a failed attempt (the
//! batch kept for a retry), release, purge, dead-letter, reopen and a
//! crash in the middle of a transaction, run against the real store and
//! against a plain in-memory model; after every step the two must agree
//! on what is queued, what is claimed and under which id, and what was
//! dead-lettered.

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
    /// The same, beside claimed batch `which` (the one on the wire).
    ClaimBeside {
        limit: usize,
        sendable: u8,
        which: usize,
    },
    /// Ops on claimed batch `which` (modulo how many are claimed, oldest
    /// first).
    Complete(usize),
    /// The send failed: the batch stays claimed for its retry.
    Fail(usize),
    Release(usize),
    /// Purge every purpose whose bit is clear in `keep`.
    Purge {
        keep: u8,
    },
    DeadLetter(usize),
    Reopen,
    /// A transaction that enqueues and claims, then dies uncommitted.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..6i64).prop_map(|(purpose, count)| Op::Enqueue { purpose, count }),
        4 => (1..8usize, 1..8u8).prop_map(|(limit, sendable)| Op::Claim { limit, sendable }),
        3 => (1..8usize, 1..8u8, 0..2usize)
            .prop_map(|(limit, sendable, which)| Op::ClaimBeside { limit, sendable, which }),
        2 => (0..2usize).prop_map(Op::Complete),
        1 => (0..2usize).prop_map(Op::Fail),
        1 => (0..2usize).prop_map(Op::Release),
        1 => (0..8u8).prop_map(|keep| Op::Purge { keep }),
        1 => (0..2usize).prop_map(Op::DeadLetter),
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

/// The model: records by number (with the enqueue that made their
/// segment), oldest first, and the claimed batches.
#[derive(Default)]
struct Model {
    queued: Vec<(i64, &'static str, i64)>,
    claims: Vec<(uuid::Uuid, Vec<i64>)>,
    dead: BTreeSet<i64>,
    next: i64,
    segments: i64,
}

impl Model {
    /// The claimed batches, oldest (lowest record) first.
    fn sorted(&mut self) {
        self.claims
            .sort_by_key(|(_, numbers)| numbers.iter().min().copied());
    }

    fn which(&mut self, which: usize) -> Option<uuid::Uuid> {
        self.sorted();
        let count = self.claims.len();
        (count > 0).then(|| self.claims[which % count].0)
    }

    fn claim(
        &mut self,
        limit: usize,
        sendable: &[&str],
        held: Option<uuid::Uuid>,
        got: Option<uuid::Uuid>,
    ) -> Vec<i64> {
        self.sorted();
        // The oldest batch already claimed beside `held`, when every record
        // left in it may still be sent and some are left, is claimed again
        // as it is; one that may not is released.
        let mut index = 0;
        while index < self.claims.len() {
            let (id, numbers) = self.claims[index].clone();
            if Some(id) == held {
                index += 1;
                continue;
            }
            let left: Vec<i64> = numbers
                .iter()
                .copied()
                .filter(|n| self.queued.iter().any(|(q, _, _)| q == n))
                .collect();
            let all_sendable = left.iter().all(|n| {
                self.queued
                    .iter()
                    .any(|(q, p, _)| q == n && sendable.contains(p))
            });
            if !left.is_empty() && all_sendable {
                assert_eq!(got, Some(id), "a retry keeps its batch id");
                self.claims[index].1 = left.clone();
                return left;
            }
            self.claims.remove(index);
        }
        // A new claim takes no segment a claim (the held one) touches.
        let touched: BTreeSet<i64> = self
            .claims
            .iter()
            .flat_map(|(_, numbers)| numbers)
            .filter_map(|n| self.queued.iter().find(|(q, _, _)| q == n))
            .map(|(_, _, segment)| *segment)
            .collect();
        let numbers: Vec<i64> = self
            .queued
            .iter()
            .filter(|(_, p, segment)| sendable.contains(p) && !touched.contains(segment))
            .take(limit)
            .map(|(n, _, _)| *n)
            .collect();
        match got {
            Some(id) if !numbers.is_empty() => self.claims.push((id, numbers.clone())),
            _ => assert!(numbers.is_empty(), "the store claimed nothing"),
        }
        numbers
    }

    fn remove_claimed(&mut self, id: uuid::Uuid) -> Vec<i64> {
        let Some(index) = self.claims.iter().position(|(claim, _)| *claim == id) else {
            return Vec::new();
        };
        let (_, numbers) = self.claims.remove(index);
        self.queued.retain(|(n, _, _)| !numbers.contains(n));
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
                    model
                        .queued
                        .push((model.next + i, PURPOSES[purpose], model.segments));
                }
                model.next += count;
                model.segments += 1;
            }
            Op::Claim { limit, sendable } => {
                let sendable = chosen(sendable);
                let batch = store.claim_batch(limit, &sendable).unwrap();
                let expected = model.claim(limit, &sendable, None, batch.as_ref().map(|b| b.id));
                let got = batch.as_ref().map(numbers_of).unwrap_or_default();
                assert_eq!(got, expected, "claim of {limit} from {sendable:?}");
            }
            Op::ClaimBeside {
                limit,
                sendable,
                which,
            } => {
                let sendable = chosen(sendable);
                let held = model.which(which);
                let limits = super::BatchLimits::records(limit);
                let (batch, _) = store
                    .write(|c| queue::claim_batch_counting(c, limits, &sendable, held))
                    .unwrap();
                let expected = model.claim(limit, &sendable, held, batch.as_ref().map(|b| b.id));
                let got = batch.as_ref().map(numbers_of).unwrap_or_default();
                assert_eq!(
                    got, expected,
                    "claim of {limit} from {sendable:?} beside {held:?}"
                );
            }
            Op::Complete(which) => {
                if let Some(id) = model.which(which) {
                    let removed = model.remove_claimed(id);
                    let deleted = store.complete_batch(id, "uploaded", "model").unwrap();
                    assert_eq!(deleted, removed.len() as u64);
                }
            }
            Op::Fail(which) => {
                if let Some(id) = model.which(which) {
                    store
                        .write(|c| queue::insert_audit(c, "failed", Some(id), 0, "model"))
                        .unwrap();
                }
            }
            Op::Release(which) => {
                if let Some(id) = model.which(which) {
                    model.claims.retain(|(claim, _)| *claim != id);
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
                    .filter(|(_, p, _)| !keep.contains(p))
                    .map(|(n, _, _)| *n)
                    .collect();
                model.queued.retain(|(n, _, _)| !doomed.contains(n));
                assert_eq!(purged, (before - model.queued.len()) as u64);
                // A batch that lost records to the purge is released.
                model
                    .claims
                    .retain(|(_, numbers)| !numbers.iter().any(|n| doomed.contains(n)));
            }
            Op::DeadLetter(which) => {
                if let Some(id) = model.which(which) {
                    let removed = model.remove_claimed(id);
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
    // The batches still claimed go first, oldest first, as retries.
    model.sorted();
    let mut expected: Vec<i64> = model
        .claims
        .iter()
        .flat_map(|(_, numbers)| numbers.clone())
        .collect();
    for (n, _, _) in &model.queued {
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
