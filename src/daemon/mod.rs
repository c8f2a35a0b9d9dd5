//! The daemon: one loop that owns the [`Pipeline`] and runs collection and
//! upload on their schedules, answers control requests, and stops when the
//! shutdown token is cancelled.
//!
//! The library never binds a path or installs a signal handler by itself:
//! the caller hands in the bound control socket and a
//! [`CancellationToken`] (mini-redis's test seam), so tests run the real
//! loop in a temporary directory.

pub mod listener;

use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::control::{DaemonStatus, Request, Response};
use crate::pipeline::{CollectSummary, Pipeline, PipelineError};
use crate::upload::UploadSummary;

pub use listener::{BindError, bind_control_socket};

/// How long in-flight work gets after shutdown is asked before the daemon
/// stops waiting for it ("terminating now").
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Control requests waiting for the loop; more than this and a client waits.
const CONTROL_QUEUE: usize = 16;

/// A control request and where its answer goes.
pub(crate) type Envelope = (Request, oneshot::Sender<Response>);

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

struct Daemon {
    pipeline: Pipeline,
    last_collect: Option<CollectSummary>,
    last_upload: Option<UploadSummary>,
    next_collect: Instant,
    next_upload: Instant,
}

/// Runs until `shutdown` is cancelled. Collection runs at start-up and then
/// every `[collect] interval`; upload follows each collection, runs every
/// `[upload] interval`, and waits out the backoff after a failure. Failures
/// inside are logged and retried, never fatal: start-up errors surface
/// earlier, from `Pipeline::open` and `bind_control_socket`.
pub async fn run(pipeline: Pipeline, listener: UnixListener, shutdown: CancellationToken) {
    let (requests, mut inbox) = mpsc::channel::<Envelope>(CONTROL_QUEUE);
    let server = tokio::spawn(listener::serve(listener, requests, shutdown.clone()));
    let now = Instant::now();
    let mut daemon = Daemon {
        next_upload: now + pipeline.config().upload.interval.0,
        pipeline,
        last_collect: None,
        last_upload: None,
        next_collect: now,
    };
    tracing::info!(
        endpoint = %daemon.pipeline.config().upload.endpoint,
        region = %daemon.pipeline.config().region,
        "daemon started"
    );
    daemon.serve(&mut inbox, &shutdown).await;
    shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("control connections still open after the grace period; terminating now");
    }
    tracing::info!("daemon stopped");
}

impl Daemon {
    async fn serve(&mut self, inbox: &mut mpsc::Receiver<Envelope>, shutdown: &CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                Some((request, reply)) = inbox.recv() => {
                    let response = tokio::select! {
                        response = self.handle(request) => response,
                        _ = shutdown.cancelled() => return,
                    };
                    let _ = reply.send(response);
                }
                _ = sleep_until(self.next_collect) => {
                    self.next_collect = Instant::now() + self.pipeline.config().collect.interval.0;
                    self.collect();
                    tokio::select! {
                        _ = self.scheduled_upload() => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                _ = sleep_until(self.next_upload) => {
                    tokio::select! {
                        _ = self.scheduled_upload() => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(self.status()),
            Request::Flush | Request::ConsentChanged => {
                let collect = self.collect();
                match self.upload(matches!(request, Request::Flush)).await {
                    Ok(upload) => {
                        Response::Flushed(crate::pipeline::FlushSummary { collect, upload })
                    }
                    Err(err) => Response::Error {
                        message: err.to_string(),
                    },
                }
            }
        }
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus {
            pid: std::process::id(),
            records_queued: self.pipeline.store().depth().unwrap_or_default(),
            decisions: self.pipeline.registry().decisions().cloned().collect(),
            last_collect: self.last_collect.clone(),
            last_upload: self.last_upload.clone(),
        }
    }

    /// A failed collection is logged and reported, never fatal: the next
    /// run may succeed, and the queue is untouched.
    fn collect(&mut self) -> CollectSummary {
        let summary = self.pipeline.collect_once().unwrap_or_else(|err| {
            tracing::error!(error = %err, "collection failed");
            CollectSummary {
                errors: vec![err.to_string()],
                ..CollectSummary::default()
            }
        });
        if summary.queued > 0 {
            tracing::info!(records = summary.queued, "collected and queued");
        }
        for blocked in &summary.blocked {
            tracing::debug!(%blocked, "not collected");
        }
        self.last_collect = Some(summary.clone());
        summary
    }

    /// An upload on the schedule. A store error (disk full, say) is logged
    /// and retried at the next interval rather than ending the daemon: the
    /// queue on disk is still the source of truth.
    async fn scheduled_upload(&mut self) {
        if let Err(err) = self.upload(false).await {
            tracing::error!(error = %err, "upload failed; retrying at the next interval");
            self.next_upload = Instant::now() + self.pipeline.config().upload.interval.0;
        }
    }

    async fn upload(&mut self, force: bool) -> Result<UploadSummary, DaemonError> {
        let summary = self.pipeline.upload_once(force).await?;
        self.next_upload = next_upload_at(
            Instant::now(),
            self.pipeline.uploader().not_before(),
            self.pipeline.config().upload.interval.0,
        );
        self.last_upload = Some(summary.clone());
        Ok(summary)
    }
}

/// When to upload next: at the end of a pending backoff, else one interval
/// from now. A backoff deadline already past must not schedule an upload
/// "now" again, or a queue that cannot be sent (consent file unusable, say)
/// would spin the loop.
fn next_upload_at(now: Instant, not_before: Option<Instant>, interval: Duration) -> Instant {
    match not_before {
        Some(deadline) if deadline > now => deadline,
        _ => now + interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_past_backoff_deadline_does_not_schedule_an_immediate_upload() {
        let now = Instant::now();
        let interval = Duration::from_secs(60);
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(next_upload_at(now, Some(past), interval), now + interval);
        assert_eq!(next_upload_at(now, None, interval), now + interval);
        let soon = now + Duration::from_secs(5);
        assert_eq!(next_upload_at(now, Some(soon), interval), soon);
    }
}
