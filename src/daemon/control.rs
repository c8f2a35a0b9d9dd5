//! The control handler: one `match` over [`Request`], one function per
//! request. It answers from values (the gate's snapshot, the writer's
//! counters, the other tasks' last summaries) and from the store writer,
//! never from the network, so `status` and `consent revoke` answer at once
//! whatever the uploader and the receiver are doing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use super::uploader::FlushRequest;
use super::{Agent, Shared};
use crate::clock::rfc3339;
use crate::collect::ksn;
use crate::control::{ConsentApplied, DaemonStatus, FlushSummary, Request, Response};
use crate::store::{Fault, StoreHealth, queue};
use crate::upload::{InFlight, purge_disallowed_via};

/// Longest a consent change waits for the uploader to let go of a batch it
/// stopped (it lets go at once unless the writer is stuck on the disk).
const STOP_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Handler {
    pub(super) agent: Arc<Agent>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) shared: Arc<Shared>,
    pub(super) collect_now: Arc<Notify>,
    pub(super) upload_now: Arc<Notify>,
    pub(super) flushes: mpsc::Sender<FlushRequest>,
}

impl Handler {
    pub(crate) async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(Box::new(self.status().await)),
            Request::ConsentChanged { revoked } => self.apply_consent(revoked).await,
            Request::Flush => self.flush().await,
        }
    }

    async fn status(&self) -> DaemonStatus {
        let reader = Arc::clone(&self.agent.reader);
        let mut store = match tokio::task::spawn_blocking(move || reader.health()).await {
            Ok(Ok(health)) => health,
            Ok(Err(err)) => StoreHealth {
                fault: Some(Fault {
                    at: crate::clock::rfc3339(std::time::SystemTime::now()),
                    message: err.to_string(),
                }),
                ..StoreHealth::default()
            },
            Err(_) => StoreHealth::default(),
        };
        if let Some(fault) = self.agent.writer.fault() {
            store.fault = Some(fault);
        }
        store.max_queue_bytes = Some(self.agent.config().store.max_queue_bytes);
        DaemonStatus {
            store,
            pid: std::process::id(),
            records_queued: self.agent.writer.depth(),
            discarded: self.shared.discards.snapshot(),
            decisions: self.agent.gate.registry().decisions().cloned().collect(),
            last_collect: self.shared.collect(),
            last_upload_at: self.shared.upload_at().map(|(at, _)| rfc3339(at)),
            next_upload_at: self.shared.next_upload().map(rfc3339),
            last_upload: self.shared.upload(),
            reload: self.shared.reload(),
        }
    }

    /// Publishes the new decisions, stops a batch in flight that carries a
    /// purpose they no longer allow, then purges what was withdrawn (the
    /// queue, and an open KSN window), all before answering: once the CLI
    /// has its answer, nothing the change disallows leaves the machine.
    /// Collecting and uploading what is newly allowed happens afterwards.
    pub(super) async fn apply_consent(&self, revoked: Option<String>) -> Response {
        self.agent.refresh_consent();
        self.agent
            .record_consent(revoked.is_some().then_some("cli"))
            .await;
        let registry = self.agent.gate.registry();
        let stop = self
            .in_flight
            .stop_unless(|purpose| registry.is_allowed(purpose));
        match tokio::time::timeout(STOP_WAIT, stop).await {
            Ok(true) => tracing::info!("stopped an upload in flight: its consent changed"),
            Ok(false) => {}
            Err(_) => {
                return Response::Error {
                    message: format!(
                        "the change is in effect, but the upload in flight did not stop within {STOP_WAIT:?}"
                    ),
                };
            }
        }
        let purged = match purge_disallowed_via(&self.agent.writer, Arc::clone(&registry)).await {
            Ok(purged) => purged,
            Err(err) => {
                return Response::Error {
                    message: format!(
                        "the change is in effect, but the queue could not be purged yet: {err}"
                    ),
                };
            }
        };
        let mut ksn_window_discarded = false;
        if registry.unreadable().is_none() && !registry.is_allowed(ksn::PURPOSE) {
            let discarded = self
                .agent
                .writer
                .call(|connection, aggregate| Ok(ksn::discard_window(aggregate, connection)? > 0))
                .await;
            ksn_window_discarded = discarded.unwrap_or(false);
        }
        let installation_id_rotated = match revoked {
            Some(clause)
                if self
                    .agent
                    .gate
                    .catalogue()
                    .clause_carries_installation_id(&clause) =>
            {
                let why = format!("installation id replaced: consent for {clause} withdrawn");
                match self
                    .agent
                    .writer
                    .call(move |c, _| queue::rotate_installation_id(c, &why))
                    .await
                {
                    Ok(id) => {
                        self.agent.context.set_installation_id(id);
                        true
                    }
                    Err(err) => {
                        return Response::Error {
                            message: format!(
                                "the change is in effect, but the installation id could not be replaced: {err}"
                            ),
                        };
                    }
                }
            }
            _ => false,
        };
        self.collect_now.notify_one();
        self.upload_now.notify_one();
        Response::ConsentApplied(ConsentApplied {
            purged,
            ksn_window_discarded,
            queued: self.agent.writer.depth(),
            installation_id_rotated,
        })
    }

    /// Collects now (periodic collectors and the KSN window), then has the
    /// uploader send now and waits for its answer.
    async fn flush(&self) -> Response {
        let collect = self.agent.collect_now().await;
        self.shared.set_collect(collect.clone());
        let (reply, answer) = oneshot::channel();
        if self.flushes.send(reply).await.is_err() {
            return shutting_down();
        }
        match answer.await {
            Ok(Ok(upload)) => Response::Flushed(FlushSummary { collect, upload }),
            Ok(Err(message)) => Response::Error { message },
            Err(_) => shutting_down(),
        }
    }
}

fn shutting_down() -> Response {
    Response::Error {
        message: "the daemon is shutting down".into(),
    }
}
