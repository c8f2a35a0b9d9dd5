//! What the store keeps for a report, read in one go through the store's
//! own functions (the report holds no SQL): the trail of the period, every
//! receipt, the newest kept bodies, the dead letters of the period, the
//! drop totals and what is queued now. Read only; it never creates,
//! checks or moves anything the reader of `history` could not.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::consent::receipt::Receipt;
use crate::store::queue::{self, AuditFilter, DeadLetterCount};
use crate::store::{AuditEntry, Drops, SentBody, Store, StoreError, receipts};

/// The store's part of [`super::Sources`].
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Audit lines at or after the period's start, oldest first.
    pub trail: Vec<AuditEntry>,
    /// Every consent receipt, oldest first.
    pub receipts: Vec<Receipt>,
    /// The kept bodies of the newest batches of the period, newest first.
    pub bodies: Vec<SentBody>,
    /// Dead letters moved in the period, per purpose and reason.
    pub dead_letters: Vec<DeadLetterCount>,
    /// Records dropped to keep the bounds since the store was created.
    pub dropped: Drops,
    /// Records queued now, per purpose.
    pub queued: BTreeMap<String, u64>,
}

/// What `store` keeps about the period from `since`, with the kept bodies
/// of at most `batches` batches.
pub fn stored(store: &Store, since: SystemTime, batches: usize) -> Result<Stored, StoreError> {
    let health = store.health()?;
    let since = crate::clock::rfc3339(since);
    store.read(|c| {
        let filter = AuditFilter {
            since: Some(since.clone()),
            ..AuditFilter::default()
        };
        Ok(Stored {
            // Every line of the period: it is bounded by the audit
            // retention, and the charts need them all.
            trail: queue::audit_where(c, usize::MAX >> 1, &filter)?,
            receipts: receipts::list(c)?,
            bodies: queue::sent_bodies_since(c, &since, batches)?,
            dead_letters: queue::dead_letter_counts(c, &since)?,
            dropped: health.dropped,
            queued: health.queued,
        })
    })
}
