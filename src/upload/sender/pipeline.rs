//! The pipeline: up to two batches are on the wire at once, each under its
//! own id (its `Idempotency-Key`). While one is on the wire the next is
//! claimed beside it, its body built, kept and sent (`window`), so the
//! receiver's round trip overlaps the store's work and the encoding.
//!
//! A body is kept (`Writer::keep_body`) only just before it leaves, and
//! only while its batch is still claimed as it was when the body was
//! built: a batch released unsent (a revoke's purge, a failed attempt)
//! never shows in `history` as sent. Before it leaves it passes the same
//! consent check as any batch. Its envelope's drop counts leave out those
//! the body on the wire reports (`bounds::drops_beside`), so that no count
//! is reported twice.

use uuid::Uuid;

use super::Uploader;
use crate::store::{Batch, Drops, Durable, NextBatch};
use crate::upload::UploadError;
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
    /// The purposes the consent snapshot lets send now, or why the queue
    /// is held (the consent cannot be read: fail closed without
    /// destroying anything).
    pub(super) fn sendable(&self) -> Result<Vec<String>, String> {
        let registry = self.gate.registry();
        if let Some(why) = registry.unreadable() {
            return Err(format!("holding the queue: {why}"));
        }
        Ok(registry
            .decisions()
            .filter(|d| d.is_allowed())
            .map(|d| d.purpose().to_owned())
            .collect())
    }

    /// Claims the next batch the consent snapshot allows, beside batch
    /// `held` (on the wire), unless the removal of the batch answered last
    /// claimed it already (`Uploader::accepted`), and builds its body
    /// unless it has a kept one.
    pub(super) async fn prepare(&mut self, held: Option<Uuid>) -> Result<Ahead, UploadError> {
        let sendable = match self.sendable() {
            Ok(sendable) => sendable,
            Err(why) => return Ok(Ahead::Hold(why)),
        };
        let next = match self.claimed.take() {
            Some(next) => Some(next),
            None => {
                self.writer
                    .next_batch(self.limits(), sendable, held)
                    .await?
            }
        };
        let Some(NextBatch { batch, kept, drops }) = next else {
            return Ok(Ahead::Empty);
        };
        if let Some(kept) = kept {
            let body = Body::kept(kept.bytes, kept.sha256);
            return Ok(Ahead::Batch(Prepared {
                batch,
                body,
                kept: true,
                drops,
            }));
        }
        match self.encode(&batch, &drops) {
            Ok(body) => Ok(Ahead::Batch(Prepared {
                batch,
                body,
                kept: false,
                drops,
            })),
            Err(err) => Ok(Ahead::DeadLettered(self.unencodable(&batch, err).await?)),
        }
    }

    /// Lets go of a batch claimed ahead that will not be sent now (sending
    /// stopped): its records are claimed afresh later. Best effort: should
    /// the store refuse (a full disk), the claim stays, and the next claim
    /// retries or releases it.
    pub(super) async fn let_go(&mut self) {
        if let Some(next) = self.claimed.take()
            && next.kept.is_none()
            && let Err(err) = self.writer.release_batch(next.batch.id).await
        {
            tracing::warn!(batch = %next.batch.id, error = %err, "a batch claimed ahead stays claimed; the next claim takes it up");
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
}
