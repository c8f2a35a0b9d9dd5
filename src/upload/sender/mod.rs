//! The uploader: from the queue to the receiver, up to two batches on the
//! wire at once (`window`).
//!
//! [`Uploader::upload_pending`] reads the consent snapshot (the gate's, read
//! again before every batch), claims batches of what it allows through the
//! store writer, encodes them (`protocol`), sends them (`transport`) and
//! applies the outcome (`policy`). Every outcome is written to the audit
//! trail. The uploader never decides consent itself:
//! it asks the gate, and it never deletes on consent's account (that is
//! the consent owner's, `daemon::consent`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::compression::Compression;
use super::in_flight::InFlight;
use super::policy::{Protocol, Refusal, UploadResult};
use super::protocol::{Body, DeletionEnvelope};
use super::schedule::{Pace, next_attempt};
use super::send_lock::{ANOTHER_SENDER, SendLock};
use super::transport::Answer;
use super::{AgentIdentity, Transport, UploadConfig, otlp};
use crate::clock::rfc3339;
use crate::gate::Gate;
use crate::store::{
    Batch, BatchLimits, Durable, NextBatch, SentBody, StoreError, Writer, WriterError,
};
use answer::{Accepted, Numbers};
use pipeline::Prepared;
use uuid::Uuid;
use window::Filled;

/// What one call of [`Uploader::upload_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSummary {
    pub batches_sent: u64,
    pub records_sent: u64,
    /// Records the receiver refused one by one, now in the dead-letter
    /// table.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Records an OTLP receiver took but said it rejected (a partial
    /// success); the batches they were in are copied to the dead-letter
    /// table.
    #[serde(default)]
    pub rejected_by_receiver: u64,
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
    /// A kept body that cannot be read back (to recompress it).
    #[error(transparent)]
    Protocol(#[from] super::protocol::ProtocolError),
    #[error(transparent)]
    Writer(#[from] WriterError),
}

/// How long a flush waits for another process's send to finish.
const FLUSH_PATIENCE: Duration = Duration::from_secs(10);

/// Sends queued batches, remembering failures between calls. Owned by one
/// task: the daemon's uploader, or the CLI's `flush` when no daemon runs.
pub struct Uploader<S> {
    writer: Writer<S>,
    gate: Arc<Gate>,
    in_flight: Arc<InFlight>,
    transport: Transport,
    identity: AgentIdentity,
    /// Failures in a row, the receiver's interval: when to try next.
    pace: Pace,
    limits: BatchLimits,
    /// Smaller batches while bisecting a refused one (see `Refusal`).
    split_limit: Option<usize>,
    not_before: Option<Instant>,
    /// Held while sending: one sender per `state_dir`.
    lock: SendLock,
    /// Batches the receiver accepted whose removal from the queue failed
    /// (a full disk, say; two when both on the wire were), oldest first:
    /// the removal is retried, the batch never resent.
    unremoved: VecDeque<Delivered>,
    /// The compression of new bodies: `[upload] compression`, or gzip
    /// for an endpoint that refused zstd with 415 (`compression`).
    compression: Compression,
    /// Whether the store has been asked about such a refusal yet.
    compression_known: bool,
    /// The next batch, claimed in the job that removed the one answered
    /// last, for `prepare`.
    claimed: Option<NextBatch>,
}

/// What comes after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The next batch.
    Go,
    /// The same records, first: the batch recompressed as gzip after a 415,
    /// or in halves after a refusal of its content.
    Again,
    /// Nothing more for now (a failure, a wait).
    Stop,
}

/// A delivered batch still to be removed from the queue.
struct Delivered {
    id: Uuid,
    records: u64,
    detail: String,
    facts: serde_json::Value,
    /// The dead-letter copy a partial success asks for, if any.
    dead_letter: Option<(u16, String)>,
}

impl<S: Durable> Uploader<S> {
    pub fn new(
        writer: Writer<S>,
        gate: Arc<Gate>,
        transport: Transport,
        config: &UploadConfig,
        identity: AgentIdentity,
        lock: SendLock,
    ) -> Self {
        Self {
            writer,
            gate,
            in_flight: Arc::default(),
            transport,
            identity,
            pace: config.pace(),
            limits: config.batch_limits(),
            split_limit: None,
            not_before: None,
            lock,
            unremoved: VecDeque::new(),
            compression: config.compression,
            compression_known: false,
            claimed: None,
        }
    }

    /// Sends through `transport` with `config`'s limits and waits from now
    /// on (a reload); the failures counted so far still count.
    pub fn reconfigure(&mut self, transport: Transport, config: &UploadConfig) {
        self.transport = transport;
        self.pace.reconfigure(
            config.retry_policy(),
            config.batch_max_delay.0,
            config.interval_bounds(),
        );
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

    /// When the next attempt is due after a failure or a receiver's
    /// `Retry-After` (`None`: now).
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// When to try next: the installation's first upload slot (of
    /// `batch_max_delay`, or of the receiver's interval) after now, or after
    /// the wait a failure or a `Retry-After` set (`schedule::next_attempt`).
    /// `waits`: false to ignore the wait (after a store error, retried at
    /// the next slot).
    pub fn next_attempt(&self, waits: bool) -> Instant {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let since_epoch =
            |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let wall_now = since_epoch(wall);
        let not_before = self
            .not_before
            .filter(|_| waits)
            .map(|t| wall_now + t.saturating_duration_since(now));
        let next = next_attempt(
            &self.identity.jitter(),
            self.pace.interval(),
            wall_now,
            not_before,
        );
        now + next.saturating_sub(wall_now)
    }

    /// Whether a full batch may go at once: not while the receiver has set
    /// the interval (the fleet is being slowed down).
    pub fn sends_full_batches_at_once(&self) -> bool {
        !self.pace.is_slowed()
    }

    /// Sends batches of what the consent snapshot allows until none is
    /// left or an attempt fails (it never deletes on consent's account:
    /// that is the consent owner's, `daemon::consent`). The snapshot is
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
        // A flush waits a while for another sender (the daemon starting up,
        // a flush from the CLI) to finish; the daemon's own rounds do not.
        let held = if force {
            self.lock.hold_within(FLUSH_PATIENCE).await?
        } else {
            self.lock.try_hold()?
        };
        let Some(_held) = held else {
            summary.stopped = Some(ANOTHER_SENDER.into());
            summary.records_queued = self.writer.depth();
            return Ok(summary);
        };
        if !self.remove_delivered(&mut summary).await || !self.send_deletions(&mut summary).await? {
            summary.records_queued = self.writer.depth();
            return Ok(summary);
        }
        // New bodies are built while another is on the wire: their
        // compression is settled first.
        self.compression().await?;
        // A claim made ahead in a round that ended in an error goes back.
        self.let_go().await;
        let mut wire = VecDeque::with_capacity(window::WIDTH);
        loop {
            if let Filled::Hold(why) = self.fill(&mut wire, &mut summary).await? {
                summary.stopped = Some(why);
                self.settle_rest(&mut wire, &mut summary).await?;
                break;
            }
            if wire.is_empty() {
                break;
            }
            match self.settle(&mut wire, true, &mut summary).await? {
                Next::Go => {}
                Next::Again => {
                    // The same records go again first (gzip, or in
                    // halves), once what left beside them is answered; a
                    // delivery beside a bisection does not end it.
                    let split = self.split_limit;
                    if self.settle_rest(&mut wire, &mut summary).await? == Next::Stop {
                        break;
                    }
                    self.split_limit = match (split, self.split_limit) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Next::Stop => {
                    self.settle_rest(&mut wire, &mut summary).await?;
                    break;
                }
            }
        }
        self.let_go().await;
        summary.records_queued = self.writer.depth();
        Ok(summary)
    }

    /// Removes the delivered batches whose removal failed before; false
    /// (with a backoff) while one still fails. Never sends anything.
    async fn remove_delivered(&mut self, summary: &mut UploadSummary) -> bool {
        while let Some(delivered) = self.unremoved.pop_front() {
            if !self.remove_one(delivered, summary).await {
                return false;
            }
        }
        true
    }

    /// [`Uploader::remove_delivered`] of one batch.
    async fn remove_one(&mut self, delivered: Delivered, summary: &mut UploadSummary) -> bool {
        match self
            .writer
            .complete_batch(
                delivered.id,
                "uploaded",
                delivered.detail.clone(),
                Some(delivered.facts.clone()),
                delivered.dead_letter.clone(),
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
                self.unremoved.push_front(delivered);
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
        let pending = self.writer.pending_deletions().await?;
        for request in pending {
            let id = request.request_id;
            let clause = request.clause.id.clone();
            let compression = self.compression().await?;
            let body = match self.transport.protocol() {
                Protocol::ConsentryJson => DeletionEnvelope::new(request).encode(compression),
                Protocol::OtlpHttp => {
                    otlp::encode(
                        &otlp::deletion_request(&request, self.identity.region),
                        compression,
                    )
                    .bytes
                }
            };
            let answer = self.transport.send(id, body, compression).await;
            if self.refused_zstd(&answer, compression, None).await? {
                return Ok(false);
            }
            let result = self.paced(&answer);
            if let UploadResult::Accepted { .. } = result {
                let detail = format!("{clause}: {}", result.detail());
                self.writer.deletion_sent(id, detail).await?;
                tracing::info!(request = %id, clause, "deletion request delivered");
            } else {
                let why = format!("deletion request {id} not delivered: {}", result.detail());
                tracing::warn!(request = %id, error = %why, "deletion request not delivered; it is sent again");
                self.note_wait(summary);
                summary.stopped = Some(why);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A batch of `records` is delivered and gone from the queue.
    fn delivered(&mut self, records: u64, summary: &mut UploadSummary) {
        self.split_limit = None;
        summary.batches_sent += 1;
        summary.records_sent += records;
    }

    /// Waits longer after each failure in a row that had no answer to read
    /// (the store failed); `why` goes in the summary.
    fn back_off(&mut self, why: String, summary: &mut UploadSummary) -> Duration {
        let wait = self.pace.failed(&self.identity.jitter());
        self.not_before = Some(Instant::now() + wait);
        summary.stopped = Some(why);
        summary.retry_in_seconds = Some(wait.as_secs());
        wait
    }

    /// Notes an answer in the pace (failures in a row, `Retry-After`, the
    /// receiver's interval) and sets when the next attempt may start;
    /// returns the result.
    fn paced(&mut self, answer: &Answer) -> UploadResult {
        let wait = self
            .pace
            .after(&self.identity.jitter(), &answer.result, answer.pacing);
        self.not_before = wait.map(|wait| Instant::now() + wait);
        answer.result.clone()
    }

    /// The summary's note of a wait the last answer set, if any.
    fn note_wait(&self, summary: &mut UploadSummary) -> Option<Duration> {
        let wait = self
            .not_before
            .map(|t| t.saturating_duration_since(Instant::now()))?;
        summary.retry_in_seconds = Some(wait.as_secs());
        Some(wait)
    }

    /// The body to send for `prepared`: the one kept from its first
    /// attempt (a retry sends the same bytes under the same key), or its
    /// new one (built again if the compression changed since), kept before
    /// it leaves. `None`: its batch was released meanwhile (a purge), or it
    /// cannot be encoded now and went to the dead-letter table.
    async fn body(
        &mut self,
        prepared: &Prepared,
        summary: &mut UploadSummary,
    ) -> Result<Option<Body>, UploadError> {
        let Prepared {
            batch,
            body,
            kept,
            drops,
        } = prepared;
        if *kept {
            return Ok(Some(body.clone()));
        }
        let body = if body.compression == self.compression {
            body.clone()
        } else {
            match self.encode(batch, drops) {
                Ok(body) => body,
                Err(err) => {
                    summary.dead_lettered += self.unencodable(batch, err).await?;
                    return Ok(None);
                }
            }
        };
        let still_claimed = self
            .writer
            .keep_body(SentBody {
                batch_id: batch.id.to_string(),
                at: rfc3339(SystemTime::now()),
                records: batch.len() as u64,
                sha256: body.sha256.clone(),
                bytes: body.bytes.clone(),
                drops: drops.clone(),
            })
            .await?;
        if !still_claimed {
            tracing::info!(batch = %batch.id, "a batch claimed was released before it left; what is left of it is claimed afresh");
            return Ok(None);
        }
        Ok(Some(body))
    }

    /// Applies the receiver's `answer` (after `latency`) to `batch` (sent
    /// as `body`, put on the wire at `launched`), and says what comes next. `claim_next`: a delivery
    /// claims the next batch beside this batch on the wire
    /// (`Uploader::accepted`).
    async fn answered(
        &mut self,
        batch: &Batch,
        body: Body,
        numbers: Numbers,
        (answer, latency, launched): (Answer, Duration, Instant),
        claim_next: Option<Option<Uuid>>,
        summary: &mut UploadSummary,
    ) -> Result<Next, UploadError> {
        let id = batch.id.to_string();
        if self
            .refused_zstd(&answer, body.compression, Some((&id, &body)))
            .await?
        {
            // The same batch goes again at once, gzip, under its own id.
            return Ok(Next::Again);
        }
        let result = self.paced(&answer);
        let facts = numbers.facts(self.transport.protocol(), &result, latency);
        match &result {
            UploadResult::Accepted { rejected, .. } => {
                let detail = format!(
                    "{} in {} ms; {}",
                    result.detail(),
                    latency.as_millis(),
                    numbers.sizes()
                );
                let accepted = Accepted {
                    status: result.status().unwrap_or(200),
                    rejected: rejected.clone(),
                    detail,
                    facts,
                    launched,
                };
                let go_on = self.accepted(batch, accepted, claim_next, summary).await?;
                Ok(if go_on { Next::Go } else { Next::Stop })
            }
            UploadResult::Refused { status, detail }
                if Refusal::of(*status, batch.len()) != Refusal::RetryLater =>
            {
                self.refused_content(batch, *status, detail, summary)
                    .await?;
                Ok(Next::Again)
            }
            UploadResult::Retryable { .. } | UploadResult::Refused { .. } => {
                let wait = self.note_wait(summary);
                let detail = result.detail();
                summary.stopped = Some(detail.clone());
                let count = batch.len() as u64;
                self.writer
                    .audit_with("failed", Some(batch.id), count, detail.clone(), Some(facts))
                    .await?;
                let sent_us_ago = launched.elapsed().as_micros() as u64;
                tracing::warn!(batch = %batch.id, records = count, sent_us_ago, error = %detail, retry_in = ?wait, "batch not delivered; it stays queued");
                Ok(Next::Stop)
            }
        }
    }
}

mod answer;
mod fallback;
mod pipeline;
mod window;

// These run against the loopback receiver, which only the `demo` feature
// builds.
#[cfg(all(test, feature = "demo"))]
mod tests;
