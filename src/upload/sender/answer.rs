//! What the uploader does with a receiver's answer to a batch: a 2xx
//! removes it (and copies it to the dead-letter table when the receiver
//! rejected part of it without saying which); a refusal of the content
//! splits it or dead-letters its one record; and the numbers each attempt
//! leaves in the audit trail.

use super::{Delivered, Uploader};
use crate::store::{Batch, Durable};
use crate::upload::UploadError;
use crate::upload::UploadSummary;
use crate::upload::compression::Compression;
use crate::upload::policy::{Protocol, Refusal, UploadResult};
use crate::upload::protocol::Body;
use uuid::Uuid;

impl<S: Durable> Uploader<S> {
    /// A 2xx: the batch leaves the queue (copied to the dead-letter table
    /// too when the receiver rejected part of it without saying which).
    /// False when nothing more may go now. With `claim_next` (beside the
    /// batch still on the wire, if any), nothing rejected and no wait
    /// asked, the next batch is claimed in the job that removes this one
    /// (`Writer::complete_and_claim`), for `Uploader::prepare`.
    pub(super) async fn accepted(
        &mut self,
        batch: &Batch,
        accepted: Accepted,
        claim_next: Option<Option<Uuid>>,
        summary: &mut UploadSummary,
    ) -> Result<bool, UploadError> {
        let count = batch.len() as u64;
        let Accepted {
            status,
            rejected,
            detail,
            facts,
            launched,
        } = accepted;
        let dead_letter = rejected.as_ref().map(|rejected| {
            (
                status,
                format!(
                    "the receiver rejected {} of the {count} records of batch {} without saying which; the whole batch is kept here, none of it is sent again: {}",
                    rejected.records,
                    batch.id,
                    if rejected.message.is_empty() { "no reason given" } else { &rejected.message }
                ),
            )
        });
        // Only a plain delivery claims the next batch, and only while the
        // consent can be read.
        let claim = claim_next
            .filter(|_| dead_letter.is_none() && self.not_before.is_none())
            .and_then(|held| Some((held, self.sendable().ok()?)));
        let completed = match claim {
            Some((held, sendable)) => {
                let limits = self.limits();
                let done = (detail.clone(), facts.clone());
                self.writer
                    .complete_and_claim(batch.id, done, limits, sendable, held)
                    .await
                    .map(|(removed, next)| {
                        self.claimed = next;
                        removed
                    })
            }
            _ => {
                self.writer
                    .complete_batch(
                        batch.id,
                        "uploaded",
                        detail.clone(),
                        Some(facts.clone()),
                        dead_letter.clone(),
                    )
                    .await
            }
        };
        if let Err(err) = completed {
            let why = format!(
                "batch {} was delivered but cannot be removed from the queue: {err}",
                batch.id
            );
            tracing::error!(batch = %batch.id, error = %err, "batch delivered but not removed from the queue; the removal is retried, the batch is not sent again");
            self.unremoved.push_back(Delivered {
                id: batch.id,
                records: count,
                detail,
                facts,
                dead_letter,
            });
            self.back_off(why, summary);
            return Ok(false);
        }
        if let Some(rejected) = &rejected {
            tracing::warn!(batch = %batch.id, records = count, rejected = rejected.records, message = %rejected.message, "batch delivered, but the receiver rejected some of its records; the batch is copied to the dead-letter table");
            summary.rejected_by_receiver += rejected.records;
        } else {
            let sent_us_ago = launched.elapsed().as_micros() as u64;
            tracing::info!(batch = %batch.id, records = count, sent_us_ago, "batch delivered");
        }
        self.delivered(count, summary);
        // A `Retry-After` on a 2xx: nothing more until then.
        Ok(self.note_wait(summary).is_none())
    }

    /// A refusal of the content: the batch goes again at once in halves,
    /// or, down to one record, that record moves to the dead-letter table.
    pub(super) async fn refused_content(
        &mut self,
        batch: &Batch,
        status: u16,
        detail: &str,
        summary: &mut UploadSummary,
    ) -> Result<(), UploadError> {
        let count = batch.len() as u64;
        if Refusal::of(status, batch.len()) == Refusal::Split {
            // A refusal of the content is no reason to wait.
            self.split_limit = Some((batch.len() / 2).max(1));
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
                .dead_letter_batch(batch.id, Some(status), detail.to_owned())
                .await?;
            tracing::warn!(batch = %batch.id, status, "record refused by the receiver; moved to the dead-letter table");
            summary.dead_lettered += moved;
        }
        Ok(())
    }
}

/// A 2xx's answer, for [`Uploader::accepted`].
pub(super) struct Accepted {
    pub status: u16,
    pub rejected: Option<crate::upload::otlp::Rejected>,
    pub detail: String,
    pub facts: serde_json::Value,
    /// When the batch was put on the wire.
    pub launched: tokio::time::Instant,
}

/// What one body carried, in numbers (for `history`).
pub(super) struct Numbers {
    purposes: std::collections::BTreeMap<String, u64>,
    json_bytes: usize,
    wire_bytes: usize,
    compression: Compression,
    sha256: String,
}

impl Numbers {
    pub(super) fn of(batch: &Batch, body: &Body) -> Self {
        Self {
            purposes: batch.purposes(),
            json_bytes: body
                .json_len
                .or_else(|| body.json().ok().map(|json| json.len()))
                .unwrap_or(0),
            wire_bytes: body.bytes.len(),
            compression: body.compression,
            sha256: body.sha256.clone(),
        }
    }

    /// The audit line's words for the sizes.
    pub(super) fn sizes(&self) -> String {
        format!(
            "{} bytes, {} {}; body sha256 {}",
            self.json_bytes, self.wire_bytes, self.compression, self.sha256
        )
    }

    /// What left, in numbers, beside the words.
    pub(super) fn facts(
        &self,
        protocol: Protocol,
        result: &UploadResult,
        latency: std::time::Duration,
    ) -> serde_json::Value {
        let rejected = match result {
            UploadResult::Accepted {
                rejected: Some(rejected),
                ..
            } => Some(rejected.records),
            _ => None,
        };
        serde_json::json!({
            "protocol": protocol.as_str(),
            "rejected": rejected,
            "purposes": self.purposes,
            "status": result.status(),
            "json_bytes": self.json_bytes,
            "wire_bytes": self.wire_bytes,
            "compression": self.compression.content_encoding(),
            "body_sha256": self.sha256,
            "latency_ms": latency.as_millis() as u64,
        })
    }
}
