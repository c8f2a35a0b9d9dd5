//! The uploader task: owns the [`Uploader`] (and so the HTTP client), sends
//! when a full batch has queued up, at the latest `batch_max_delay` after
//! the last attempt, when nudged after a collection, and when a `flush`
//! asks. Only this task waits on the network; a receiver that hangs delays
//! nothing else.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{Agent, Shared, next_upload_at};
use crate::collect::ksn::KsnAggregate;
use crate::upload::{UploadError, UploadSummary, Uploader};

/// A `flush`: upload now, ignoring any backoff, and answer with the result.
pub(super) type FlushRequest = oneshot::Sender<Result<UploadSummary, String>>;

pub(super) async fn run(
    agent: Arc<Agent>,
    mut uploader: Uploader<KsnAggregate>,
    shared: Arc<Shared>,
    upload_now: Arc<Notify>,
    mut flushes: mpsc::Receiver<FlushRequest>,
    shutdown: CancellationToken,
) {
    let mut transport = agent.transport();
    let mut interval = agent.config().upload.batch_max_delay.0;
    let mut next = Instant::now() + interval;
    shared.set_next_upload(std::time::SystemTime::now() + interval);
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
                // In a backoff, the attempt at its end takes the batch.
                if uploader.not_before().is_some_and(|t| Instant::now() < t) {
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
            interval = config.upload.batch_max_delay.0;
        }
        // Hand edits of the consent file count from the next upload on.
        agent.refresh_consent();
        // Shutdown abandons an upload in flight: the batch stays claimed and
        // goes again, under the same id, after the restart.
        let result = tokio::select! {
            result = uploader.upload_pending(force) => result,
            _ = shutdown.cancelled() => return,
        };
        agent
            .writer
            .arm_batch_ready(agent.writer.depth() + full_batch());
        next = match &result {
            Ok(_) => next_upload_at(Instant::now(), uploader.not_before(), interval),
            // A store error (disk full, say) is retried at the next
            // interval; the queue on disk is still the source of truth.
            Err(_) => Instant::now() + interval,
        };
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
) -> Result<UploadSummary, String> {
    match result {
        Ok(summary) => {
            shared.set_upload(summary.clone());
            Ok(summary)
        }
        Err(err) => {
            tracing::error!(error = %err, "upload failed; retrying at the next interval");
            Err(err.to_string())
        }
    }
}
