//! The queue's counters that the daemon reads without asking SQLite:
//! records and bytes queued, and the writer's live fault.
//!
//! They are changed inside the writer's jobs, by what the jobs do
//! ([`Tally`]), so the writer thread sees them in commit order when it
//! keeps the queue within its byte bound after a commit. A failed commit
//! undoes its jobs' work but not their counts: the writer then counts the
//! queue again ([`Gauges::recount`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::bounds::{self, Bounds};
use super::{Fault, StoreError, queue};
use crate::gate::GatedRecord;

/// What the writer's handles and its thread share.
pub(super) struct Gauges {
    /// Records queued.
    depth: AtomicU64,
    /// The queue's size in bytes: exact after each count, raised by every
    /// enqueue, lowered by deliveries and evictions. Other deletions leave
    /// it high and clear `exact`, so that the bound counts before it acts.
    bytes: AtomicU64,
    exact: AtomicBool,
    pub(super) fault: Mutex<Option<Fault>>,
    pub(super) bounds: Bounds,
    /// The depth at which `batch_ready` is notified (once, then disarmed).
    batch_mark: AtomicU64,
    pub(super) batch_ready: Arc<tokio::sync::Notify>,
    /// Cancelled when the database is no longer at its path.
    pub(super) lost: tokio_util::sync::CancellationToken,
}

impl Gauges {
    /// Counts the queue in `connection`.
    pub(super) fn new(connection: &Connection, bounds: Bounds) -> Result<Self, StoreError> {
        Ok(Self {
            depth: AtomicU64::new(queue::depth(connection)?),
            bytes: AtomicU64::new(bounds::queue_bytes(connection)?),
            exact: AtomicBool::new(true),
            fault: Mutex::new(None),
            bounds,
            batch_mark: AtomicU64::new(u64::MAX),
            batch_ready: Arc::new(tokio::sync::Notify::new()),
            lost: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Counts again (after a failed commit).
    pub(super) fn recount(&self, connection: &Connection) {
        if let (Ok(depth), Ok(bytes)) = (queue::depth(connection), bounds::queue_bytes(connection))
        {
            self.depth.store(depth, Ordering::Relaxed);
            self.bytes.store(bytes, Ordering::Relaxed);
            self.exact.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The queue's size when it is known exactly.
    pub(super) fn exact_bytes(&self) -> Option<u64> {
        self.exact.load(Ordering::Relaxed).then(|| self.bytes())
    }

    pub(super) fn added(&self, records: u64, bytes: u64) {
        let depth = self.depth.fetch_add(records, Ordering::Relaxed) + records;
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mark = self.batch_mark.load(Ordering::Relaxed);
        if depth >= mark
            && self
                .batch_mark
                .compare_exchange(mark, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.batch_ready.notify_one();
        }
    }

    /// Notify `batch_ready` once the queue holds `depth` records.
    pub(super) fn arm_batch_ready(&self, depth: u64) {
        self.batch_mark.store(depth, Ordering::Relaxed);
        if self.depth() >= depth
            && self
                .batch_mark
                .compare_exchange(depth, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.batch_ready.notify_one();
        }
    }

    /// `records` of `bytes` left the queue.
    pub(super) fn removed(&self, records: u64, bytes: u64) {
        sub(&self.depth, records);
        sub(&self.bytes, bytes);
    }

    /// `records` left the queue, their sizes not counted.
    pub(super) fn removed_uncounted(&self, records: u64) {
        if records > 0 {
            self.exact.store(false, Ordering::Relaxed);
        }
        sub(&self.depth, records);
    }

    /// The queue's exact size after keeping the bound.
    pub(super) fn set_exact(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.exact.store(true, Ordering::Relaxed);
    }
}

fn sub(counter: &AtomicU64, by: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(by))
    });
}

/// Enqueueing that counts what it adds, for jobs the caller writes itself
/// (an ingest chunk, a KSN window's report). Get one from
/// [`Writer::tally`](super::Writer::tally).
#[derive(Clone)]
pub struct Tally(pub(super) Arc<Gauges>);

impl Tally {
    /// [`queue::enqueue`], counted.
    pub fn enqueue(
        &self,
        connection: &Connection,
        records: &[GatedRecord],
    ) -> Result<(), StoreError> {
        let bytes = queue::enqueue(connection, records)?;
        self.0.added(records.len() as u64, bytes);
        Ok(())
    }

    /// Inserts `segments` (built by the caller, off the writer thread),
    /// counted.
    pub fn enqueue_segments(
        &self,
        connection: &Connection,
        segments: &crate::store::Segments,
    ) -> Result<(), StoreError> {
        let bytes = segments.insert(connection)?;
        self.0.added(segments.records(), bytes);
        Ok(())
    }

    /// [`queue::purge_blocked`], counted.
    pub fn purge_blocked(
        &self,
        connection: &Connection,
        keep: impl Fn(&str) -> bool,
        why: &str,
    ) -> Result<u64, StoreError> {
        let purged = queue::purge_blocked(connection, keep, why)?;
        self.0.removed_uncounted(purged);
        Ok(purged)
    }
}
