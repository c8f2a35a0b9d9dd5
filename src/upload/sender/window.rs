//! The batches on the wire: at most two, each sent from a task of its own
//! under its own id (its `Idempotency-Key`), their answers applied in the
//! order they left. The second is claimed, encoded, kept and sent while
//! the first is still on the wire; a withdrawal stops each that carries
//! its purpose (`InFlight`), and a stopped request is abandoned at once.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::answer::Numbers;
use super::pipeline::{Ahead, Prepared};
use super::{Next, Uploader};
use crate::store::{Batch, Durable};
use crate::upload::in_flight::Registration;
use crate::upload::protocol::Body;
use crate::upload::transport::Answer;
use crate::upload::{UploadError, UploadSummary};

/// Batches on the wire at once, at most.
pub(super) const WIDTH: usize = 2;

/// A batch on the wire.
pub(super) struct OnWire {
    batch: Batch,
    body: Body,
    numbers: Numbers,
    /// Dropped once its answer is applied (or it is stopped).
    registration: Registration,
    /// The request; dropping it abandons the request. `None`: stopped by
    /// a withdrawal.
    answer: AbortOnDropHandle<Option<(Answer, Duration)>>,
    /// When it was put on the wire (what the log says of its answer).
    launched: Instant,
}

/// What came first while waiting on the oldest batch on the wire.
enum Heard {
    Answer(Answer, Duration),
    /// A withdrawal stopped the batch at this place on the wire.
    Stopped(usize),
    /// The request's task was cancelled (the runtime is shutting down).
    Abandoned,
}

/// What filling the wire came to.
pub(super) enum Filled {
    /// Nothing more to send for now (or the wire is full).
    Done,
    /// The queue is held (the consent cannot be read): why.
    Hold(String),
}

impl<S: Durable> Uploader<S> {
    /// How many batches may be on the wire now: one at a time while a
    /// refused batch is being bisected (its halves go in order), after a
    /// failure until an attempt succeeds (a receiver in trouble is not
    /// sent twice the requests), and while the receiver slows the fleet.
    fn width(&self) -> usize {
        if self.split_limit.is_some() || self.pace.failures() > 0 || self.pace.is_slowed() {
            1
        } else {
            WIDTH
        }
    }

    /// Puts batches on the wire until it is full or nothing more can go
    /// now; each is claimed beside the one already there.
    pub(super) async fn fill(
        &mut self,
        wire: &mut VecDeque<OnWire>,
        summary: &mut UploadSummary,
    ) -> Result<Filled, UploadError> {
        while wire.len() < self.width() {
            let held = wire.back().map(|on| on.batch.id);
            let prepared = match self.prepare(held).await? {
                Ahead::Batch(prepared) => prepared,
                Ahead::DeadLettered(moved) => {
                    summary.dead_lettered += moved;
                    continue;
                }
                Ahead::Hold(why) => return Ok(Filled::Hold(why)),
                Ahead::Empty => break,
            };
            if let Some(on) = self.launch(prepared, summary).await? {
                wire.push_back(on);
            }
        }
        Ok(Filled::Done)
    }

    /// Sends `prepared`: registered in `InFlight` first, then the last
    /// look at the consent (see `InFlight`), then its body kept
    /// (`Uploader::body`). `None` when it does not go: consent changed
    /// since the claim (it is claimed again, under the decisions in force
    /// now, before anything of it can leave), or its batch was released or
    /// dead-lettered meanwhile.
    async fn launch(
        &mut self,
        prepared: Prepared,
        summary: &mut UploadSummary,
    ) -> Result<Option<OnWire>, UploadError> {
        let purposes: Vec<String> = prepared.batch.purposes().into_keys().collect();
        let registration = self.in_flight.start(purposes.clone());
        if purposes.iter().any(|p| !self.gate.is_allowed(p)) {
            return Ok(None);
        }
        let Some(body) = self.body(&prepared, summary).await? else {
            return Ok(None);
        };
        if registration.token().is_cancelled() {
            // Withdrawn while its body was being kept: it does not leave.
            tracing::info!(batch = %prepared.batch.id, "upload stopped: consent withdrawn");
            summary.stopped = Some("stopped: consent withdrawn during the upload".into());
            return Ok(None);
        }
        let batch = prepared.batch;
        let numbers = Numbers::of(&batch, &body);
        let transport = self.transport.clone();
        let (id, bytes, compression) = (batch.id, body.bytes.clone(), body.compression);
        let launched = Instant::now();
        let withdrawn = registration.token().clone();
        let answer = AbortOnDropHandle::new(tokio::spawn(async move {
            let started = Instant::now();
            // A withdrawal before the task first runs sends nothing.
            tokio::select! {
                biased;
                _ = withdrawn.cancelled() => None,
                answer = transport.send(id, bytes, compression) => Some((answer, started.elapsed())),
            }
        }));
        Ok(Some(OnWire {
            batch,
            body,
            numbers,
            registration,
            answer,
            launched,
        }))
    }

    /// Waits for the answer to the oldest batch on the wire and applies
    /// it (`Uploader::answered`), unless a withdrawal stops one of the
    /// two first: that request is abandoned (the purge that follows
    /// removes its records) and the other goes on.
    ///
    /// With `claim`, a delivery claims the next batch to send in the job
    /// that removes it, when there is room on the wire.
    pub(super) async fn settle(
        &mut self,
        wire: &mut VecDeque<OnWire>,
        claim: bool,
        summary: &mut UploadSummary,
    ) -> Result<Next, UploadError> {
        let heard = {
            let mut on = wire.iter_mut();
            let first = on
                .next()
                .expect("settle is called with a batch on the wire");
            let second = on.next().map(|second| second.registration.token().clone());
            let second_stopped = async {
                match second {
                    Some(token) => token.cancelled_owned().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // An answer that has come is applied, even beside a
                // withdrawal: the batch was delivered.
                biased;
                joined = &mut first.answer => match joined {
                    Ok(Some((answer, latency))) => Heard::Answer(answer, latency),
                    Ok(None) => Heard::Stopped(0),
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    // The runtime is shutting down.
                    Err(_) => Heard::Abandoned,
                },
                _ = first.registration.token().cancelled() => Heard::Stopped(0),
                _ = second_stopped => Heard::Stopped(1),
            }
        };
        match heard {
            Heard::Stopped(place) => {
                let stopped = wire.remove(place).expect("a batch at that place");
                tracing::info!(batch = %stopped.batch.id, "upload stopped: consent withdrawn");
                summary.stopped = Some("stopped: consent withdrawn during the upload".into());
                Ok(Next::Go)
            }
            Heard::Abandoned => {
                let abandoned = wire.pop_front().expect("the batch abandoned");
                tracing::info!(batch = %abandoned.batch.id, "upload abandoned: shutting down");
                summary.stopped = Some("the upload was abandoned: shutting down".into());
                Ok(Next::Stop)
            }
            Heard::Answer(answer, latency) => {
                let OnWire {
                    batch,
                    body,
                    numbers,
                    registration,
                    answer: _,
                    launched,
                } = wire.pop_front().expect("the batch answered");
                let claim_next =
                    (claim && wire.len() < self.width()).then(|| wire.back().map(|on| on.batch.id));
                let next = self
                    .answered(
                        &batch,
                        body,
                        numbers,
                        (answer, latency, launched),
                        claim_next,
                        summary,
                    )
                    .await;
                // Let go of only once its answer is applied: a purge never
                // takes a delivered batch for one still queued.
                drop(registration);
                next
            }
        }
    }

    /// Applies the answers of the batches still on the wire, after an
    /// answer that stops sending or sends the same records again: each
    /// was sent, and what became of it is recorded. The reason sending
    /// stopped first, and the longest wait any answer asked for, stand.
    /// `Next::Stop` when any of them stops sending.
    pub(super) async fn settle_rest(
        &mut self,
        wire: &mut VecDeque<OnWire>,
        summary: &mut UploadSummary,
    ) -> Result<Next, UploadError> {
        let (stopped, retry_in) = (summary.stopped.clone(), summary.retry_in_seconds);
        let mut not_before = self.not_before;
        let mut next = Next::Go;
        while !wire.is_empty() {
            if self.settle(wire, false, summary).await? == Next::Stop {
                next = Next::Stop;
            }
            not_before = not_before.max(self.not_before);
        }
        self.not_before = not_before;
        summary.stopped = stopped.or(summary.stopped.take());
        summary.retry_in_seconds = retry_in.max(summary.retry_in_seconds);
        Ok(next)
    }
}
