//! The uploader's operations as named writer jobs: what it reads and
//! writes around each request, each in one round trip to the writer
//! thread (the uploader waits behind ingest's group commits for each).

use std::sync::Arc;

use uuid::Uuid;

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
        self.call_unsynced(move |c, _| claim_next(c, &gauges, limits, &sendable, held))
            .await
    }

    /// Removes batch `delivered` (answered 2xx with nothing rejected;
    /// `detail` and `facts` as for [`Writer::complete_batch`]) and claims
    /// the next batch as [`Writer::next_batch`] does, in one unsynced job:
    /// one wait behind ingest's group commits between an answer and the
    /// next claim, not two. The removal comes first, so the claim cannot
    /// take the delivered batch for one to send again. On an error neither
    /// happened.
    pub async fn complete_and_claim(
        &self,
        delivered: Uuid,
        (detail, facts): (String, serde_json::Value),
        limits: BatchLimits,
        sendable: Vec<String>,
        held: Option<Uuid>,
    ) -> Result<(u64, Option<NextBatch>), WriterError> {
        let gauges = Arc::clone(&self.gauges);
        self.call_unsynced(move |c, _| {
            let removed = super::ops::remove(
                c,
                &gauges,
                delivered,
                "uploaded",
                &detail,
                Some(&facts),
                None,
            )?;
            let next = claim_next(c, &gauges, limits, &sendable, held)?;
            Ok((removed, next))
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

/// [`Writer::next_batch`] on the writer thread.
fn claim_next(
    c: &rusqlite::Connection,
    gauges: &crate::store::gauges::Gauges,
    limits: BatchLimits,
    sendable: &[String],
    held: Option<Uuid>,
) -> Result<Option<NextBatch>, crate::store::StoreError> {
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
}
