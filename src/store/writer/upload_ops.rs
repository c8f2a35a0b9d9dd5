//! The uploader's operations as named writer jobs: what it reads and
//! writes around each request, each in one round trip to the writer
//! thread (the uploader waits behind ingest's group commits for each).

use std::sync::Arc;

use uuid::Uuid;

use super::ops::Removal;
use super::{Durable, Writer, WriterError};
use crate::consent::receipt::DeletionRequest;
use crate::store::{Batch, BatchLimits, Drops, SentBody, bounds, queue, receipts};

/// The next batch to send, with what its body needs.
#[derive(Debug)]
pub struct NextBatch {
    pub batch: Batch,
    /// Its body as first sent, when it was sent before (a retry sends the
    /// same bytes).
    pub kept: Option<SentBody>,
    /// The drop counts not yet reported, of the purposes that may send
    /// (what a new body's envelope carries).
    pub drops: Drops,
}

/// A kept body sent again in other bytes (recompressed for a receiver
/// that refused the first compression), with their SHA-256.
#[derive(Debug, Clone)]
pub struct Rekept {
    pub batch_id: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl<S: Durable> Writer<S> {
    /// Claims the next batch of the `sendable` purposes beside batch
    /// `held`, the one on the wire if any (see
    /// [`queue::claim_batch_counting`]; first releasing a batch
    /// housekeeping found past its records' age) and reads its kept body
    /// and the drops to report (less those `held`'s body reports), in one
    /// unsynced job: a claim a power loss undoes is claimed again, and
    /// nothing has left yet.
    pub async fn next_batch(
        &self,
        limits: BatchLimits,
        sendable: Vec<String>,
        held: Option<Uuid>,
    ) -> Result<Option<NextBatch>, WriterError> {
        let gauges = Arc::clone(&self.gauges);
        self.call_unsynced(move |c, _| {
            let now = std::time::SystemTime::now();
            let expired = bounds::expire_in_flight(c, &gauges.bounds, now, held)?;
            gauges.removed_uncounted(expired);
            let purposes: Vec<&str> = sendable.iter().map(String::as_str).collect();
            let (batch, dead) = queue::claim_batch_counting(c, limits, &purposes, held)?;
            gauges.removed_uncounted(dead);
            let Some(batch) = batch else {
                return Ok(None);
            };
            let id = batch.id.to_string();
            let kept = queue::sent_body(c, &id)?
                .into_iter()
                .find(|body| body.batch_id == id);
            let drops = bounds::drops_beside(c, |p| purposes.contains(&p), held)?;
            Ok(Some(NextBatch { batch, kept, drops }))
        })
        .await
    }

    /// Keeps a batch's body as first sent, synced before it leaves: a
    /// retry after a power loss sends the same bytes under the same id.
    /// Only while the batch is still claimed (its records as they were
    /// when the body was built): false, and nothing kept, when a purge or
    /// an expiry released it meanwhile (a body built ahead, while another
    /// batch was on the wire, must then never leave).
    pub async fn keep_body(&self, body: SentBody) -> Result<bool, WriterError> {
        self.call(move |c, _| {
            if !queue::claimed_now(c, &body.batch_id)? {
                return Ok(false);
            }
            queue::keep_body(c, &body)?;
            Ok(true)
        })
        .await
    }

    /// Removes batch `delivered` (answered 2xx with nothing rejected;
    /// `detail` and `facts` as for [`Writer::complete_batch`]) and keeps
    /// `next`'s body as [`Writer::keep_body`] does, in one synced commit:
    /// the next body is kept just before it leaves, which is just after
    /// the answer to the one before it, and one commit between two
    /// batches on the wire is a shorter wait than two. Returns the records
    /// removed and whether `next` was still claimed (false: nothing of it
    /// is kept; the removal stands). On an error neither happened.
    pub async fn complete_and_keep(
        &self,
        delivered: Uuid,
        detail: String,
        facts: serde_json::Value,
        next: SentBody,
    ) -> Result<(u64, bool), WriterError> {
        let gauges = Arc::clone(&self.gauges);
        self.call(move |c, _| {
            let removal = Removal {
                id: delivered,
                event: "uploaded",
                detail: &detail,
                facts: Some(&facts),
                rejected: None,
            };
            let removed = removal.run(c, &gauges)?;
            if !queue::claimed_now(c, &next.batch_id)? {
                return Ok((removed, false));
            }
            queue::keep_body(c, &next)?;
            Ok((removed, true))
        })
        .await
    }

    /// The deletion requests no receiver has acknowledged yet.
    pub async fn pending_deletions(&self) -> Result<Vec<DeletionRequest>, WriterError> {
        self.call(|c, _| receipts::pending_deletions(c)).await
    }

    /// Deletion request `id` was acknowledged (`detail`: by what).
    pub async fn deletion_sent(&self, id: Uuid, detail: String) -> Result<(), WriterError> {
        self.call(move |c, _| receipts::deletion_sent(c, id, &detail))
            .await
    }

    /// One value of the store's `meta` table.
    pub async fn meta(&self, key: String) -> Result<Option<String>, WriterError> {
        self.call(move |c, _| queue::meta_get(c, &key)).await
    }

    /// A receiver refused a compression: remembers it under `key` (at
    /// `value`), keeps `rekept` (a batch id and its body in the other
    /// compression) when there is one, and audits `detail`.
    pub async fn compression_refused(
        &self,
        key: String,
        value: String,
        rekept: Option<Rekept>,
        detail: String,
    ) -> Result<(), WriterError> {
        self.call(move |c, _| {
            queue::meta_set(c, &key, &value)?;
            if let Some(body) = &rekept {
                queue::rekeep_body(c, &body.batch_id, &body.bytes, &body.sha256)?;
            }
            queue::insert_audit(c, "compression", None, 0, &detail)
        })
        .await
    }
}
