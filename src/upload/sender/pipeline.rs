//! The pipeline: the next batch is claimed and its body built while the
//! one before it is on the wire, so the receiver's round trip and the
//! encoding overlap. At most two batches are in flight: one on the wire,
//! one prepared. Each has its own id (its `Idempotency-Key`).
//!
//! A prepared body is kept (`Writer::keep_body`) only just before it
//! leaves, and only while its batch is still claimed as it was when the
//! body was built: a batch released unsent (a revoke's purge, a refusal of
//! the one before it, a failed attempt) never shows in `history` as sent.
//! When the batch before it was delivered, that is the moment its removal
//! commits: both go in one commit ([`Uploader::remove_and_keep`]), once
//! the next batch is registered in `InFlight` and its consent looked at,
//! so the wait between two batches on the wire is one commit, not two.
//! Before it leaves it passes the same consent check as any batch
//! (`Uploader::upload_pending`). Its envelope's drop counts leave out
//! those the body on the wire reports (`bounds::drops_beside`), so that no
//! count is reported twice.

use std::time::SystemTime;

use uuid::Uuid;

use super::Uploader;
use crate::clock::rfc3339;
use crate::store::{Batch, Drops, Durable, NextBatch, SentBody, WriterError};
use crate::upload::UploadError;
use crate::upload::in_flight::Registration;
use crate::upload::policy::Protocol;
use crate::upload::protocol::{self, Body};
use crate::upload::{otlp, protocol::ProtocolError};

/// A batch claimed, with the body it goes in.
pub(super) struct Prepared {
    pub batch: Batch,
    pub body: Body,
    /// Whether `body` is the one kept at its first attempt (a retry sends
    /// the same bytes); else it is new, kept just before it leaves.
    pub kept: bool,
    /// The drop counts `body`'s envelope reports.
    pub drops: Drops,
    /// Its place in `InFlight`, when it was registered there while the
    /// batch before it was removed (its body kept in that commit).
    pub registration: Option<Registration>,
}

/// What keeping `body`, the body of `batch` reporting `drops`, stores.
pub(super) fn to_keep(batch: &Batch, body: &Body, drops: &Drops) -> SentBody {
    SentBody {
        batch_id: batch.id.to_string(),
        at: rfc3339(SystemTime::now()),
        records: batch.len() as u64,
        sha256: body.sha256.clone(),
        bytes: body.bytes.clone(),
        drops: drops.clone(),
    }
}

/// What preparing the next batch came to.
pub(super) enum Ahead {
    Batch(Prepared),
    /// Nothing sendable is queued.
    Empty,
    /// The consent cannot be read: the queue is held (why).
    Hold(String),
    /// The batch claimed could not be encoded: its records (this many)
    /// went to the dead-letter table. Prepare again.
    DeadLettered(u64),
}

impl<S: Durable> Uploader<S> {
    /// Claims the next batch the consent snapshot allows, beside batch
    /// `held` (on the wire), and builds its body unless it has a kept one.
    /// Takes `&self`: it runs while `held` is being sent.
    pub(super) async fn prepare(&self, held: Option<Uuid>) -> Result<Ahead, UploadError> {
        let registry = self.gate.registry();
        if let Some(why) = registry.unreadable() {
            // Fail closed without destroying anything: hold the queue.
            return Ok(Ahead::Hold(format!("holding the queue: {why}")));
        }
        let sendable: Vec<String> = registry
            .decisions()
            .filter(|d| d.is_allowed())
            .map(|d| d.purpose().to_owned())
            .collect();
        let Some(NextBatch { batch, kept, drops }) = self
            .writer
            .next_batch(self.limits(), sendable, held)
            .await?
        else {
            return Ok(Ahead::Empty);
        };
        if let Some(kept) = kept {
            let body = Body::kept(kept.bytes, kept.sha256);
            return Ok(Ahead::Batch(Prepared {
                batch,
                body,
                kept: true,
                drops,
                registration: None,
            }));
        }
        match self.encode(&batch, &drops) {
            Ok(body) => Ok(Ahead::Batch(Prepared {
                batch,
                body,
                kept: false,
                drops,
                registration: None,
            })),
            Err(err) => Ok(Ahead::DeadLettered(self.unencodable(&batch, err).await?)),
        }
    }

    /// `batch` cannot be encoded: its records move to the dead-letter
    /// table (unsendable rows must not block the queue, nor be lost).
    /// Returns how many moved.
    pub(super) async fn unencodable(
        &self,
        batch: &Batch,
        err: ProtocolError,
    ) -> Result<u64, UploadError> {
        tracing::error!(batch = %batch.id, error = %err, "a batch cannot be encoded; it moves to the dead-letter table");
        Ok(self
            .writer
            .dead_letter_batch(batch.id, None, err.to_string())
            .await?)
    }

    /// `batch`'s body in the receiver's protocol, compressed as new bodies
    /// are now.
    pub(super) fn encode(&self, batch: &Batch, drops: &Drops) -> Result<Body, ProtocolError> {
        match self.transport.protocol() {
            Protocol::ConsentryJson => Ok(protocol::encode_batch(batch, drops, self.compression)),
            Protocol::OtlpHttp => otlp::request(batch, self.identity.region, drops)
                .map(|request| otlp::encode(&request, self.compression)),
        }
    }

    /// Lets go of a prepared batch that will not be sent now: its records
    /// are claimed afresh later (it has no kept body, nothing of it left).
    /// Best effort: should the store refuse (a full disk), the claim
    /// stays, and the next claim retries or releases it; the failure that
    /// stopped the round is what the caller reports.
    pub(super) async fn let_go(&self, ahead: Option<Prepared>) {
        if let Some(prepared) = ahead
            && !prepared.kept
            && let Err(err) = self.writer.release_batch(prepared.batch.id).await
        {
            tracing::warn!(batch = %prepared.batch.id, error = %err, "a batch prepared ahead stays claimed; the next claim takes it up");
        }
    }
}

impl<S: Durable> Uploader<S> {
    /// Removes `delivered` (answered 2xx, nothing rejected, no wait asked)
    /// and keeps `next`'s new body in one commit, once `next` is
    /// registered in `InFlight` and the consent allows all it carries.
    /// `None` when `next` cannot go that way now (none, kept already,
    /// compressed otherwise than new bodies are now, or not allowed): the
    /// caller removes `delivered` alone, and `next` goes the usual way.
    /// On success `next` is kept and registered, or gone when its batch
    /// was released meanwhile (a purge); on an error neither happened.
    pub(super) async fn remove_and_keep(
        &self,
        delivered: &Batch,
        detail: &str,
        facts: &serde_json::Value,
        next: &mut Option<Prepared>,
    ) -> Option<Result<u64, WriterError>> {
        let prepared = next
            .as_mut()
            .filter(|n| !n.kept && n.body.compression == self.compression)?;
        let purposes: Vec<String> = prepared.batch.purposes().into_keys().collect();
        // Registered first, then the look at the consent: see `InFlight`.
        let registration = self.in_flight.start(purposes.clone());
        if purposes.iter().any(|p| !self.gate.is_allowed(p)) {
            return None;
        }
        let kept = to_keep(&prepared.batch, &prepared.body, &prepared.drops);
        let done = self
            .writer
            .complete_and_keep(delivered.id, detail.to_owned(), facts.clone(), kept)
            .await;
        match done {
            Ok((removed, true)) => {
                prepared.kept = true;
                prepared.registration = Some(registration);
                Some(Ok(removed))
            }
            Ok((removed, false)) => {
                tracing::info!(batch = %prepared.batch.id, "a batch prepared ahead was released before it left; what is left of it is claimed afresh");
                *next = None;
                Some(Ok(removed))
            }
            Err(err) => Some(Err(err)),
        }
    }
}
