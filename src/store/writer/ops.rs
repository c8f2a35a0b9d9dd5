//! The store's operations as writer jobs: each a call of a `queue`,
//! `claim` or `bounds` function on the writer thread, keeping the gauges
//! exact and choosing how durable its commit must be.

use std::sync::Arc;

use uuid::Uuid;

use super::{Durable, Writer, WriterError};
use crate::gate::GatedRecord;
use crate::store::{Segments, bounds, queue};

/// What the daemon reads from the store once, at start, for its gate and
/// collectors ([`Writer::identity`]).
#[derive(Debug)]
pub struct StoredIdentity {
    /// Created on first use and never changed (`queue::installation_id`).
    pub installation_id: Uuid,
    /// The key of `keyed_hash` fields (`queue::hash_key`).
    pub hash_key: [u8; 32],
    /// Today's randomised reports already counted (`ldp_budget`).
    pub spent: std::collections::BTreeMap<String, crate::store::ldp_budget::Spent>,
    /// The erasure key each clause asked for carries now, with the clause.
    pub erasure_keys: Vec<(Uuid, String)>,
}

impl<S: Durable> Writer<S> {
    /// A job that does nothing: it answers once every job queued before
    /// it has run and been committed (the watchdog's proof that the writer
    /// thread is not stuck).
    pub async fn ping(&self) -> Result<(), WriterError> {
        self.call(|_, _| Ok(())).await
    }

    /// The installation's identity as stored, made on first use, with the
    /// erasure keys of the clauses in `erasing`: one job at start.
    pub async fn identity(&self, erasing: Vec<String>) -> Result<StoredIdentity, WriterError> {
        self.call(move |c, _| {
            Ok(StoredIdentity {
                installation_id: queue::installation_id(c)?,
                hash_key: queue::hash_key(c)?,
                spent: crate::store::ldp_budget::load(c)?,
                erasure_keys: erasing
                    .into_iter()
                    .map(|clause| Ok((queue::erasure_key(c, &clause)?, clause)))
                    .collect::<Result<_, crate::store::StoreError>>()?,
            })
        })
        .await
    }

    /// Queues gated records; answers once they are durable.
    pub async fn enqueue(&self, records: Vec<GatedRecord>) -> Result<(), WriterError> {
        if records.is_empty() {
            return Ok(());
        }
        let tally = self.tally();
        // Built here: the writer thread only inserts the rows.
        let segments = Segments::of(&records);
        drop(records);
        self.call(move |c, _| tally.enqueue_segments(c, &segments))
            .await
    }

    /// Appends `records` and stores `spent`, the count of randomised
    /// reports they were counted in, in one transaction: the count never
    /// runs behind the reports on disk.
    pub async fn enqueue_counted(
        &self,
        records: Vec<GatedRecord>,
        spent: std::collections::BTreeMap<String, crate::store::ldp_budget::Spent>,
    ) -> Result<(), WriterError> {
        let tally = self.tally();
        let segments = Segments::of(&records);
        drop(records);
        self.call(move |c, _| {
            tally.enqueue_segments(c, &segments)?;
            crate::store::ldp_budget::save(c, &spent)
        })
        .await
    }

    /// Drops records past `max_record_age` and old audit lines (see
    /// [`bounds::housekeep`]); returns the records dropped.
    pub async fn housekeep(&self) -> Result<u64, WriterError> {
        let gauges = Arc::clone(&self.gauges);
        self.call(move |c, _| {
            let dropped = bounds::housekeep(c, &gauges.bounds, std::time::SystemTime::now())?;
            gauges.removed_uncounted(dropped);
            Ok(dropped)
        })
        .await
    }

    /// See [`queue::purge_blocked`].
    pub async fn purge_blocked(
        &self,
        keep: impl Fn(&str) -> bool + Send + 'static,
        why: String,
    ) -> Result<u64, WriterError> {
        let gauges = Arc::clone(&self.gauges);
        self.call(move |c, _| {
            let purged = queue::purge_blocked(c, keep, &why)?;
            gauges.removed_uncounted(purged);
            Ok(purged)
        })
        .await
    }

    /// See [`queue::complete_batch`]. `rejected`: the receiver took the
    /// batch but said it rejected some of its records without saying which
    /// (an OTLP partial success): the whole batch is also copied to the
    /// dead-letter table with `rejected`'s status and reason, in the same
    /// transaction, and nothing of it is sent again.
    pub async fn complete_batch(
        &self,
        id: Uuid,
        event: &'static str,
        detail: String,
        facts: Option<serde_json::Value>,
        rejected: Option<(u16, String)>,
    ) -> Result<u64, WriterError> {
        let gauges = Arc::clone(&self.gauges);
        let rejected_is_some = rejected.is_some();
        let complete = move |c: &rusqlite::Connection| {
            remove(
                c,
                &gauges,
                id,
                event,
                &detail,
                facts.as_ref(),
                rejected.as_ref(),
            )
        };
        if rejected_is_some {
            // Dead letters are kept through a power loss.
            self.call(move |c, _| complete(c)).await
        } else {
            // A removal a power loss undoes sends the batch again, same
            // body, same `Idempotency-Key`: the receiver keeps it once.
            self.call_unsynced(move |c, _| complete(c)).await
        }
    }

    /// See [`queue::dead_letter_batch`].
    pub async fn dead_letter_batch(
        &self,
        id: Uuid,
        status: Option<u16>,
        reason: String,
    ) -> Result<u64, WriterError> {
        let gauges = Arc::clone(&self.gauges);
        self.call(move |c, _| {
            let moved = queue::dead_letter_batch(c, id, status, &reason)?;
            gauges.removed_uncounted(moved);
            Ok(moved)
        })
        .await
    }

    /// See [`queue::release_batch`].
    pub async fn release_batch(&self, id: Uuid) -> Result<(), WriterError> {
        self.call(move |c, _| queue::release_batch(c, id)).await
    }

    /// Appends one line to the audit trail.
    pub async fn audit(
        &self,
        event: &'static str,
        batch_id: Option<Uuid>,
        records: u64,
        detail: String,
    ) -> Result<(), WriterError> {
        self.audit_with(event, batch_id, records, detail, None)
            .await
    }

    /// [`Writer::audit`] with typed facts beside the words.
    pub async fn audit_with(
        &self,
        event: &'static str,
        batch_id: Option<Uuid>,
        records: u64,
        detail: String,
        facts: Option<serde_json::Value>,
    ) -> Result<(), WriterError> {
        self.call(move |c, _| {
            queue::insert_audit_with(c, event, batch_id, records, &detail, facts.as_ref())
        })
        .await
    }
}

/// Removes batch `id` from the queue, as [`Writer::complete_batch`] does,
/// on the writer thread: once delivered (`uploaded`), the drops its
/// envelope reported count as reported; with `rejected`, it is copied to
/// the dead-letter table first. Audits it, counts it out of the gauges,
/// and returns how many records left.
pub(super) fn remove(
    c: &rusqlite::Connection,
    gauges: &crate::store::gauges::Gauges,
    id: Uuid,
    event: &'static str,
    detail: &str,
    facts: Option<&serde_json::Value>,
    rejected: Option<&(u16, String)>,
) -> Result<u64, crate::store::StoreError> {
    let bytes = queue::batch_bytes(c, id)?;
    if event == "uploaded" {
        bounds::mark_reported_by(c, id)?;
    }
    if let Some((status, reason)) = rejected {
        let copied = queue::copy_to_dead_letter(c, id, Some(*status), reason)?;
        queue::insert_audit(c, "dead-lettered", Some(id), copied, reason)?;
    }
    let deleted = queue::complete_batch_with(c, id, event, detail, facts)?;
    gauges.removed(deleted, bytes);
    Ok(deleted)
}
