//! The uploader: from the queue to the receiver, one batch at a time.
//!
//! [`Uploader::upload_pending`] reads the consent snapshot (the gate's, read
//! again before every batch) and purges what is no longer allowed, then
//! claims batches through the store writer, encodes them (`protocol`), sends
//! them (`transport`) and applies the outcome (`policy`). Every outcome is
//! written to the audit trail. The uploader never decides consent itself:
//! it asks the gate.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::policy::{Refusal, RetryPolicy, UploadResult};
use super::protocol::{Body, DeletionEnvelope, Envelope};
use super::{Transport, UploadConfig};
use crate::clock::rfc3339;
use crate::consent::Registry;
use crate::gate::Gate;
use crate::store::{
    Batch, BatchLimits, Durable, SentBody, Store, StoreError, Writer, WriterError, bounds, queue,
    receipts,
};
use uuid::Uuid;

/// What one call of [`Uploader::upload_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSummary {
    pub batches_sent: u64,
    pub records_sent: u64,
    /// Records dropped from the queue because their consent is gone.
    pub records_purged: u64,
    /// Records the receiver refused one by one, now in the dead-letter
    /// table.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Records still queued afterwards.
    pub records_queued: u64,
    /// Why sending stopped early, if it did.
    pub stopped: Option<String>,
    /// Seconds until the next attempt, when waiting after a failure.
    pub retry_in_seconds: Option<u64>,
}

/// Why the uploader could not do its job at all (the queue is unusable).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Writer(#[from] WriterError),
}

/// Why queued records are purged when their consent is gone.
pub const PURGE_REASON: &str = "consent for these purposes was withdrawn";

/// [`PURGE_REASON`] with the registry's words for each withdrawal (which
/// clause is no longer accepted), so the trail names the clause.
fn purge_reason(registry: &Registry) -> String {
    let mut reasons: Vec<&str> = registry
        .decisions()
        .filter(|d| registry.may_purge(d.purpose()))
        .map(|d| d.reason())
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    if reasons.is_empty() {
        PURGE_REASON.to_owned()
    } else {
        format!("{PURGE_REASON} ({})", reasons.join("; "))
    }
}

/// Deletes queued records whose consent was withdrawn (no clause that could
/// allow them is accepted any more), with a line in the audit trail. Any
/// other block (a renewal that is due, an acceptance the catalogue does not
/// recognise, an unusable consent file) purges nothing: fail closed, but
/// only an explicit withdrawal deletes data.
/// For the CLI when no daemon runs; the daemon purges through its writer.
pub fn purge_disallowed(store: &Store, registry: &Registry) -> Result<u64, StoreError> {
    if registry.unreadable().is_some() {
        return Ok(0);
    }
    let why = purge_reason(registry);
    let purged = store.purge_blocked(|purpose| !registry.may_purge(purpose), &why)?;
    if purged > 0 {
        tracing::info!(
            records = purged,
            "purged queued records whose consent is gone"
        );
    }
    Ok(purged)
}

/// [`purge_disallowed`] through the daemon's writer.
pub async fn purge_disallowed_via<S: Durable>(
    writer: &Writer<S>,
    registry: Arc<Registry>,
) -> Result<u64, WriterError> {
    if registry.unreadable().is_some() {
        return Ok(0);
    }
    let why = purge_reason(&registry);
    let purged = writer
        .purge_blocked(move |purpose| !registry.may_purge(purpose), why)
        .await?;
    if purged > 0 {
        tracing::info!(
            records = purged,
            "purged queued records whose consent is gone"
        );
    }
    Ok(purged)
}

/// The batch being sent right now, so that a withdrawal can stop it: the
/// control handler publishes the new consent, then cancels an in-flight
/// batch that carries a purpose it no longer allows, and waits until the
/// uploader has let go of it. The uploader registers a batch *before* its
/// last look at the consent snapshot, so either the handler sees the batch
/// or the uploader sees the new consent: never neither.
#[derive(Default)]
pub struct InFlight {
    batch: std::sync::Mutex<Option<(Vec<String>, CancellationToken)>>,
    released: tokio::sync::Notify,
}

impl InFlight {
    fn start(&self, purposes: Vec<String>) -> CancellationToken {
        let token = CancellationToken::new();
        *self.lock() = Some((purposes, token.clone()));
        token
    }

    fn finish(&self) {
        *self.lock() = None;
        self.released.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Vec<String>, CancellationToken)>> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels the batch in flight if it carries a purpose `still_allowed`
    /// refuses, and returns once the uploader has let go of it. Returns
    /// whether a batch was stopped.
    pub async fn stop_unless(&self, still_allowed: impl Fn(&str) -> bool) -> bool {
        let released = self.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        {
            let batch = self.lock();
            let Some((purposes, token)) = batch.as_ref() else {
                return false;
            };
            if purposes.iter().all(|p| still_allowed(p)) {
                return false;
            }
            token.cancel();
        }
        released.await;
        true
    }
}

/// Sends queued batches, remembering failures between calls. Owned by one
/// task: the daemon's uploader, or the CLI's `flush` when no daemon runs.
pub struct Uploader<S> {
    writer: Writer<S>,
    gate: Arc<Gate>,
    in_flight: Arc<InFlight>,
    transport: Transport,
    policy: RetryPolicy,
    limits: BatchLimits,
    /// Smaller batches while bisecting a refused one (see `Refusal`).
    split_limit: Option<usize>,
    consecutive_failures: u32,
    not_before: Option<Instant>,
    /// Held while sending: one sender per `state_dir`.
    lock: SendLock,
    /// A batch the receiver accepted whose removal from the queue failed
    /// (a full disk, say): the removal is retried, the batch never resent.
    unremoved: Option<Delivered>,
}

/// A delivered batch still to be removed from the queue.
struct Delivered {
    id: Uuid,
    records: u64,
    detail: String,
    facts: serde_json::Value,
}

/// The file lock that makes one process at a time the sender for a
/// `state_dir` (the daemon, or a `flush` when no daemon runs).
pub struct SendLock {
    file: Arc<File>,
    path: PathBuf,
}

/// The words for an upload skipped because another process is sending.
pub const ANOTHER_SENDER: &str = "another consentry process is sending from this state directory";

impl SendLock {
    /// Opens (creating) `state_dir/send.lock`; takes nothing yet.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join("send.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::StateDir {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            file: Arc::new(file),
            path,
        })
    }

    /// Takes the lock if nobody holds it; it is let go when the guard
    /// drops.
    fn try_hold(&self) -> Result<Option<SendGuard>, StoreError> {
        match self.file.try_lock() {
            Ok(()) => Ok(Some(SendGuard(Arc::clone(&self.file)))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(StoreError::StateDir {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

struct SendGuard(Arc<File>);

impl Drop for SendGuard {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl<S: Durable> Uploader<S> {
    pub fn new(
        writer: Writer<S>,
        gate: Arc<Gate>,
        transport: Transport,
        config: &UploadConfig,
        lock: SendLock,
    ) -> Self {
        Self {
            writer,
            gate,
            in_flight: Arc::default(),
            transport,
            policy: config.retry_policy(),
            limits: config.batch_limits(),
            split_limit: None,
            consecutive_failures: 0,
            not_before: None,
            lock,
            unremoved: None,
        }
    }

    /// Sends through `transport` with `config`'s limits and waits from now
    /// on (a reload); the failures counted so far still count.
    pub fn reconfigure(&mut self, transport: Transport, config: &UploadConfig) {
        self.transport = transport;
        self.policy = config.retry_policy();
        self.limits = config.batch_limits();
    }

    /// The limits of the next batch: smaller while bisecting a refusal.
    fn limits(&self) -> BatchLimits {
        match self.split_limit {
            Some(records) => BatchLimits {
                records,
                ..self.limits
            },
            None => self.limits,
        }
    }

    /// The batch in flight, for whoever must be able to stop it.
    pub fn in_flight(&self) -> Arc<InFlight> {
        Arc::clone(&self.in_flight)
    }

    /// When the next attempt is due after a failure (`None`: now).
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// Purges what the consent snapshot no longer allows, then sends
    /// batches until the queue is empty or an attempt fails. The snapshot is
    /// read again before every batch, so a revoke stops a drain between two
    /// batches. `force` ignores the wait after a failure (an explicit
    /// `flush`).
    pub async fn upload_pending(&mut self, force: bool) -> Result<UploadSummary, UploadError> {
        let mut summary = UploadSummary::default();
        if !force && self.not_before.is_some_and(|t| Instant::now() < t) {
            summary.retry_in_seconds = self
                .not_before
                .map(|t| t.saturating_duration_since(Instant::now()).as_secs());
            summary.stopped = Some("waiting after a failed attempt".into());
            summary.records_queued = self.writer.depth();
            return Ok(summary);
        }
        let Some(_held) = self.lock.try_hold()? else {
            summary.stopped = Some(ANOTHER_SENDER.into());
            summary.records_queued = self.writer.depth();
            return Ok(summary);
        };
        if !self.remove_delivered(&mut summary).await || !self.send_deletions(&mut summary).await? {
            summary.records_queued = self.writer.depth();
            return Ok(summary);
        }
        loop {
            let registry = self.gate.registry();
            if let Some(why) = registry.unreadable() {
                // Fail closed without destroying anything: hold the queue.
                summary.stopped = Some(format!("holding the queue: {why}"));
                break;
            }
            summary.records_purged +=
                purge_disallowed_via(&self.writer, Arc::clone(&registry)).await?;
            let sendable: Vec<String> = registry
                .decisions()
                .filter(|d| d.is_allowed())
                .map(|d| d.purpose().to_owned())
                .collect();
            let Some(batch) = self.writer.claim_batch(self.limits(), sendable).await? else {
                break;
            };
            let mut purposes: Vec<String> =
                batch.records.iter().map(|r| r.purpose.clone()).collect();
            purposes.sort();
            purposes.dedup();
            // Registered first, then the last look at the consent: see
            // `InFlight`.
            let cancel = self.in_flight.start(purposes.clone());
            if purposes.iter().any(|p| !self.gate.is_allowed(p)) {
                // Consent changed since the purge above: purge again before
                // anything of this batch can leave.
                self.in_flight.finish();
                continue;
            }
            let sent = self.send(batch, cancel, &mut summary).await;
            self.in_flight.finish();
            if !sent? {
                break;
            }
        }
        summary.records_queued = self.writer.depth();
        Ok(summary)
    }

    /// Removes a delivered batch whose removal failed before; false (with
    /// a backoff) while it still fails. Never sends anything.
    async fn remove_delivered(&mut self, summary: &mut UploadSummary) -> bool {
        let Some(delivered) = self.unremoved.take() else {
            return true;
        };
        match self
            .writer
            .complete_batch(
                delivered.id,
                "uploaded",
                delivered.detail.clone(),
                Some(delivered.facts.clone()),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(batch = %delivered.id, "delivered batch removed from the queue at last");
                self.delivered(delivered.records, summary);
                true
            }
            Err(err) => {
                let why = format!(
                    "batch {} was delivered but cannot be removed from the queue: {err}",
                    delivered.id
                );
                self.unremoved = Some(delivered);
                self.back_off(why, summary);
                false
            }
        }
    }

    /// Sends the deletion requests withdrawals made, before any batch: they
    /// need no consent (they carry the withdrawal out) and are never
    /// dropped; each is sent until a receiver acknowledges it. False (with
    /// a backoff) when one is not acknowledged.
    async fn send_deletions(&mut self, summary: &mut UploadSummary) -> Result<bool, UploadError> {
        let pending = self
            .writer
            .call(|c, _| receipts::pending_deletions(c))
            .await?;
        for request in pending {
            let id = request.request_id;
            let clause = request.clause.id.clone();
            let body = DeletionEnvelope::new(request).encode();
            let result = self.transport.send(id, body).await;
            if let UploadResult::Accepted { .. } = result {
                let detail = format!("{clause}: {}", result.detail());
                self.writer
                    .call(move |c, _| receipts::deletion_sent(c, id, &detail))
                    .await?;
                tracing::info!(request = %id, clause, "deletion request delivered");
            } else {
                let why = format!("deletion request {id} not delivered: {}", result.detail());
                tracing::warn!(request = %id, error = %why, "deletion request not delivered; it is sent again");
                self.back_off_after(&result, summary);
                summary.stopped = Some(why);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A batch of `records` is delivered and gone from the queue.
    fn delivered(&mut self, records: u64, summary: &mut UploadSummary) {
        self.consecutive_failures = 0;
        self.not_before = None;
        self.split_limit = None;
        summary.batches_sent += 1;
        summary.records_sent += records;
    }

    /// Waits longer after each failure in a row (`retry_after`: at least
    /// that long); `why` goes in the summary.
    fn back_off(&mut self, why: String, summary: &mut UploadSummary) -> std::time::Duration {
        self.back_off_after(
            &UploadResult::Retryable {
                status: None,
                retry_after: None,
                detail: why,
            },
            summary,
        )
    }

    fn back_off_after(
        &mut self,
        result: &UploadResult,
        summary: &mut UploadSummary,
    ) -> std::time::Duration {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let wait = self
            .policy
            .wait_after(result, self.consecutive_failures, fastrand::f64());
        self.not_before = Some(Instant::now() + wait);
        summary.stopped = Some(result.detail());
        summary.retry_in_seconds = Some(wait.as_secs());
        wait
    }

    /// The body to send for `batch`: the one kept from its first attempt
    /// (a retry sends the same bytes under the same key), or a new one,
    /// kept before it leaves. `None`: the batch cannot be encoded and went
    /// to the dead-letter table.
    async fn body(
        &mut self,
        batch: &Batch,
        summary: &mut UploadSummary,
    ) -> Result<Option<Body>, UploadError> {
        let id = batch.id.to_string();
        let (kept, drops) = {
            let id = id.clone();
            let registry = self.gate.registry();
            self.writer
                .call(move |c, _| {
                    let drops = bounds::drops(c, true, |p| registry.is_allowed(p))?;
                    Ok((queue::sent_body(c, &id)?, drops))
                })
                .await?
        };
        if let Some(kept) = kept.into_iter().find(|b| b.batch_id == id) {
            return Ok(Some(Body {
                gzip: kept.gzip,
                sha256: kept.sha256,
                json_len: None,
            }));
        }
        let body = match Envelope::from_batch(batch) {
            Ok(envelope) => Envelope {
                dropped: drops.clone(),
                ..envelope
            }
            .encode_body(),
            Err(err) => {
                // Unsendable rows must not block the queue, nor be lost.
                tracing::error!(batch = %batch.id, error = %err, "a batch cannot be encoded; it moves to the dead-letter table");
                summary.dead_lettered += self
                    .writer
                    .dead_letter_batch(batch.id, None, err.to_string())
                    .await?;
                return Ok(None);
            }
        };
        let kept = SentBody {
            batch_id: id,
            at: rfc3339(SystemTime::now()),
            records: batch.records.len() as u64,
            sha256: body.sha256.clone(),
            gzip: body.gzip.clone(),
            drops,
        };
        self.writer
            .call(move |c, _| queue::keep_body(c, &kept))
            .await?;
        Ok(Some(body))
    }

    /// Sends one batch and applies the outcome; false when sending should
    /// stop for now.
    async fn send(
        &mut self,
        batch: Batch,
        cancel: CancellationToken,
        summary: &mut UploadSummary,
    ) -> Result<bool, UploadError> {
        let count = batch.records.len() as u64;
        let Some(body) = self.body(&batch, summary).await? else {
            return Ok(true);
        };
        let mut purposes = std::collections::BTreeMap::<&str, u64>::new();
        for record in &batch.records {
            *purposes.entry(&record.purpose).or_default() += 1;
        }
        let json_bytes = body
            .json_len
            .or_else(|| body.json().ok().map(|json| json.len()))
            .unwrap_or(0);
        let (gzip_bytes, sha256) = (body.gzip.len(), body.sha256.clone());
        let started = Instant::now();
        let result = tokio::select! {
            result = self.transport.send(batch.id, body.gzip) => result,
            _ = cancel.cancelled() => {
                // Consent for part of it was withdrawn mid-send: the request
                // is abandoned, and the purge that follows removes it.
                tracing::info!(batch = %batch.id, "upload stopped: consent withdrawn");
                summary.stopped = Some("stopped: consent withdrawn during the upload".into());
                return Ok(true);
            }
        };
        let latency = started.elapsed();
        // What left, in numbers, beside the words (for `history`).
        let facts = serde_json::json!({
            "purposes": purposes,
            "status": result.status(),
            "json_bytes": json_bytes,
            "gzip_bytes": gzip_bytes,
            "body_sha256": sha256,
            "latency_ms": latency.as_millis() as u64,
        });
        match &result {
            UploadResult::Accepted { .. } => {
                let detail = format!(
                    "{} in {} ms; {json_bytes} bytes, {gzip_bytes} gzipped; body sha256 {sha256}",
                    result.detail(),
                    latency.as_millis()
                );
                match self
                    .writer
                    .complete_batch(batch.id, "uploaded", detail.clone(), Some(facts.clone()))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(batch = %batch.id, records = count, "batch delivered");
                        self.delivered(count, summary);
                        Ok(true)
                    }
                    Err(err) => {
                        let why = format!(
                            "batch {} was delivered but cannot be removed from the queue: {err}",
                            batch.id
                        );
                        tracing::error!(batch = %batch.id, error = %err, "batch delivered but not removed from the queue; the removal is retried, the batch is not sent again");
                        self.unremoved = Some(Delivered {
                            id: batch.id,
                            records: count,
                            detail,
                            facts,
                        });
                        self.back_off(why, summary);
                        Ok(false)
                    }
                }
            }
            UploadResult::Refused { status, detail }
                if Refusal::of(*status, batch.records.len()) != Refusal::RetryLater =>
            {
                if Refusal::of(*status, batch.records.len()) == Refusal::Split {
                    // Send it again in halves, at once: a refusal of the
                    // content is no reason to wait.
                    self.split_limit = Some((batch.records.len() / 2).max(1));
                    self.writer
                        .audit(
                            "refused",
                            Some(batch.id),
                            count,
                            format!("{detail}; sending it again in halves"),
                        )
                        .await?;
                    self.writer.release_batch(batch.id).await?;
                } else {
                    let moved = self
                        .writer
                        .dead_letter_batch(batch.id, Some(*status), detail.clone())
                        .await?;
                    tracing::warn!(batch = %batch.id, status, "record refused by the receiver; moved to the dead-letter table");
                    summary.dead_lettered += moved;
                }
                Ok(true)
            }
            UploadResult::Retryable { .. } | UploadResult::Refused { .. } => {
                let wait = self.back_off_after(&result, summary);
                let detail = result.detail();
                self.writer
                    .audit_with("failed", Some(batch.id), count, detail.clone(), Some(facts))
                    .await?;
                tracing::warn!(batch = %batch.id, records = count, error = %detail, retry_in = ?wait, "batch not delivered; it stays queued");
                Ok(false)
            }
        }
    }
}

// These run against the loopback receiver, which only the `demo` feature
// builds.
#[cfg(all(test, feature = "demo"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::catalogue::{Catalogue, Region};
    use crate::consent::{Consents, Method, grant};
    use crate::gate::test_record;
    use crate::receiver::{LoopbackPki, Receiver};

    /// A store with `records` queued, a receiver, and what an uploader
    /// needs to send to it.
    struct Bench {
        dir: tempfile::TempDir,
        receiver: Receiver,
        writer: Writer<()>,
        gate: Arc<Gate>,
        config: UploadConfig,
    }

    async fn bench(records: i64) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let pki = LoopbackPki::generate().unwrap();
        let receiver = Receiver::start(&pki).await.unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let config: UploadConfig = toml::from_str(&format!(
            "endpoint = \"{}\"\nca_file = \"{}\"",
            receiver.url(),
            ca.display()
        ))
        .unwrap();
        let catalogue = Catalogue::embedded();
        let consent_file = dir.path().join("consent.toml");
        grant(
            &consent_file,
            &catalogue,
            Region::Global,
            "eula",
            Method::Cli,
        )
        .unwrap();
        let consents = Consents::load(&consent_file, &catalogue).unwrap();
        let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
        let gate = Arc::new(Gate::with_registry(catalogue, registry));
        let (writer, _thread) = Writer::spawn(&dir.path().join("state"), ()).unwrap();
        writer
            .enqueue(
                (0..records)
                    .map(|n| test_record("update_identity", n))
                    .collect(),
            )
            .await
            .unwrap();
        Bench {
            dir,
            receiver,
            writer,
            gate,
            config,
        }
    }

    impl Bench {
        fn uploader(&self) -> Uploader<()> {
            Uploader::new(
                self.writer.clone(),
                Arc::clone(&self.gate),
                Transport::new(&self.config).unwrap(),
                &self.config,
                SendLock::open(&self.dir.path().join("state")).unwrap(),
            )
        }

        /// Makes the writer's connection fail every removal from the
        /// queue (`on`), as a full disk can, or stops doing so.
        async fn refuse_deletes(&self, on: bool) {
            let sql = if on {
                "CREATE TEMP TRIGGER refuse_deletes BEFORE DELETE ON main.queue
                 BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;"
            } else {
                "DROP TRIGGER temp.refuse_deletes;"
            };
            self.writer
                .call(move |c, _| Ok(c.execute_batch(sql)?))
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_senders_on_one_state_dir_never_send_at_once() {
        let bench = bench(3).await;
        bench.receiver.set_delay(Duration::from_millis(300));
        let (mut one, mut two) = (bench.uploader(), bench.uploader());
        let (a, b) = tokio::join!(one.upload_pending(true), two.upload_pending(true));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.batches_sent + b.batches_sent, 1, "{a:?} {b:?}");
        let skipped = [&a, &b]
            .iter()
            .filter(|s| s.stopped.as_deref() == Some(ANOTHER_SENDER))
            .count();
        assert_eq!(skipped, 1, "{a:?} {b:?}");
        assert_eq!(bench.receiver.requests().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivered_batch_that_cannot_be_removed_is_removed_later_not_resent() {
        let bench = bench(3).await;
        bench.receiver.set_delay(Duration::from_millis(300));
        let mut uploader = bench.uploader();
        let writer = bench.writer.clone();
        let sending = tokio::spawn(async move {
            let summary = uploader.upload_pending(true).await;
            (uploader, summary)
        });
        assert!(
            bench
                .receiver
                .wait_for_requests(1, Duration::from_secs(10))
                .await
        );
        // The disk "fills" while the receiver is answering.
        bench.refuse_deletes(true).await;
        let (mut uploader, summary) = sending.await.unwrap();
        let summary = summary.unwrap();
        assert_eq!(summary.records_sent, 0);
        assert!(
            summary
                .stopped
                .as_deref()
                .unwrap()
                .contains("delivered but cannot be removed"),
            "{summary:?}"
        );
        assert!(summary.retry_in_seconds.is_some(), "it backs off");

        // Still failing: nothing is sent again.
        let again = uploader.upload_pending(true).await.unwrap();
        assert_eq!(again.records_sent, 0);
        assert_eq!(bench.receiver.requests().len(), 1);

        // Space is back: the removal goes through, without a resend.
        bench.refuse_deletes(false).await;
        let done = uploader.upload_pending(true).await.unwrap();
        assert_eq!(done.records_sent, 3, "{done:?}");
        assert_eq!(done.records_queued, 0);
        assert_eq!(bench.receiver.requests().len(), 1, "the batch was resent");
        let trail = writer
            .call(|c, _| queue::recent_audit(c, 10))
            .await
            .unwrap();
        assert_eq!(
            trail.iter().filter(|a| a.event == "uploaded").count(),
            1,
            "{trail:?}"
        );
    }
}
