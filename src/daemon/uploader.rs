//! The uploader task: owns the [`Uploader`] (and so the HTTP client), sends
//! when a full batch has queued up, at this installation's next upload slot
//! (every `batch_max_delay`, or the receiver's interval, at the
//! installation's own phase: `upload::schedule`), when nudged after a
//! collection, and when a `flush` asks. While the receiver has set the
//! interval, or after a failure or a `Retry-After`, a full batch waits too.
//! Only this task waits on the network; a receiver that hangs delays
//! nothing else.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{Agent, Shared};
use crate::collect::ksn::KsnAggregate;
use crate::upload::{UploadError, UploadSummary, Uploader};

/// A `flush`: upload now, ignoring any backoff, and answer with the result
/// (the error shared: every flush waiting on one round hears it).
pub(super) type FlushRequest = oneshot::Sender<Result<UploadSummary, Arc<UploadError>>>;

pub(super) async fn run(
    agent: Arc<Agent>,
    mut uploader: Uploader<KsnAggregate>,
    shared: Arc<Shared>,
    upload_now: Arc<Notify>,
    mut flushes: mpsc::Receiver<FlushRequest>,
    shutdown: CancellationToken,
) {
    let mut transport = agent.transport();
    let mut next = uploader.next_attempt(true);
    shared.set_next_upload(
        std::time::SystemTime::now() + next.saturating_duration_since(Instant::now()),
    );
    // A full batch's worth queued after the last attempt (counting those
    // it could not send, held back by consent, say) is a reason to send
    // before `next`: the store's gauges say when, no polling.
    let full_batch = || agent.config().upload.batch_max_records as u64;
    agent
        .writer
        .arm_batch_ready(agent.writer.depth() + full_batch());
    let batch_ready = agent.writer.batch_ready();
    loop {
        let (force, reply) = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(reply) = flushes.recv() => (true, Some(reply)),
            _ = upload_now.notified() => (false, None),
            _ = sleep_until(next) => (false, None),
            _ = batch_ready.notified() => {
                // In a backoff, the attempt at its end takes the batch;
                // while the receiver slows the fleet, the next slot does.
                if uploader.not_before().is_some_and(|t| Instant::now() < t)
                    || !uploader.sends_full_batches_at_once()
                {
                    continue;
                }
                (false, None)
            }
        };
        // A reload may have brought new `[upload]` settings.
        if !Arc::ptr_eq(&transport, &agent.transport()) {
            transport = agent.transport();
            let config = agent.config();
            uploader.reconfigure((*transport).clone(), &config.upload);
        }
        // Shutdown abandons an upload in flight: the batch stays claimed and
        // goes again, under the same id, after the restart.
        let result = tokio::select! {
            result = uploader.upload_pending(force) => result,
            _ = shutdown.cancelled() => return,
        };
        agent
            .writer
            .arm_batch_ready(agent.writer.depth() + full_batch());
        // A store error (disk full, say) is retried at the next slot; the
        // queue on disk is still the source of truth.
        next = uploader.next_attempt(result.is_ok());
        shared.set_next_upload(
            std::time::SystemTime::now() + next.saturating_duration_since(Instant::now()),
        );
        let answer = record(&shared, result);
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }
}

fn record(
    shared: &Shared,
    result: Result<UploadSummary, UploadError>,
) -> Result<UploadSummary, Arc<UploadError>> {
    match result {
        Ok(summary) => {
            shared.set_upload(summary.clone());
            Ok(summary)
        }
        Err(err) => {
            tracing::error!(error = %err, "upload failed; retrying at the next interval");
            Err(Arc::new(err))
        }
    }
}
