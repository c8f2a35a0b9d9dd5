//! The control handler: one `match` over [`Request`], one function per
//! request. It answers from values (the gate's snapshot, the writer's
//! counters, the other tasks' last summaries) and from the store writer,
//! never from the network, so `status` and `consent revoke` answer at once
//! whatever the uploader and the receiver are doing.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use super::consent::Cause;
use super::uploader::FlushRequest;
use super::{Agent, Shared};
use crate::clock::rfc3339;
use crate::consent::Act;
use crate::control::{ConsentState, DaemonStatus, FlushSummary, Request, Response};
use crate::store::{Fault, StoreHealth};
use crate::upload::InFlight;

/// What the consent task is asked: a command's change (answered once
/// applied).
pub(crate) enum Notice {
    Changed {
        act: Option<Act>,
        reply: oneshot::Sender<Response>,
    },
}

pub(crate) struct Handler {
    pub(super) agent: Arc<Agent>,
    /// The consent task's inbox.
    pub(super) consent: mpsc::Sender<Notice>,
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
            Request::ConsentChanged { act } => self.consent_changed(act).await,
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
            refused: self.agent.gate.refused(),
            privacy_budget: crate::control::BudgetStatus::of(
                self.agent.gate.catalogue(),
                &self.agent.gate.spent_today(),
            ),
            decisions: self.agent.gate.registry().decisions().cloned().collect(),
            last_collect: self.shared.collect(),
            last_upload_at: self.shared.upload_at().map(|(at, _)| rfc3339(at)),
            next_upload_at: self.shared.next_upload().map(rfc3339),
            last_upload: self.shared.upload(),
            reload: self.shared.reload(),
            consent: {
                let registry = self.agent.gate.registry();
                ConsentState {
                    generation: registry.generation(),
                    holding: registry.unreadable().map(str::to_owned),
                    deletion_waits: registry.purges_held(),
                }
            },
        }
    }

    /// A command's consent change: handed to the consent task (the one
    /// reader of the consent file), answered once it is applied: the new
    /// decisions published, a batch in flight they no longer allow
    /// stopped, the receipts recorded and what was withdrawn deleted.
    async fn consent_changed(&self, act: Option<Act>) -> Response {
        let (reply, answer) = oneshot::channel();
        if self
            .consent
            .send(Notice::Changed { act, reply })
            .await
            .is_err()
        {
            return shutting_down();
        }
        answer.await.unwrap_or_else(|_| shutting_down())
    }

    /// Applies the consent file for the consent task (`reload`), which is
    /// the only caller: see [`Agent::apply_consent`]. Collecting and
    /// uploading what is newly allowed follows, never in the way.
    pub(super) async fn apply_consent(&self, act: Option<&Act>) -> Response {
        let cause = match act {
            Some(act) => Cause::Act(act),
            None => Cause::Look,
        };
        let applied = self.agent.apply_consent(cause, Some(&self.in_flight)).await;
        self.collect_now.notify_one();
        self.upload_now.notify_one();
        match applied {
            Ok(applied) => Response::ConsentApplied(applied.answer(self.agent.writer.depth())),
            Err(err) => Response::Error {
                message: err.to_string(),
            },
        }
    }

    /// Puts an activation the ingest path recorded in force, for the
    /// consent task (`reload`), the only caller. The decisions that know
    /// it are published first; a failure after that (a batch in flight
    /// that would not stop, a deletion the store refused) is logged, and
    /// the next application of the consent file deletes what a key file
    /// withdrew (`Registry::may_purge`).
    pub(super) async fn activated(&self, method: crate::catalogue::ActivationMethod) {
        let applied = self.agent.activated(method, Some(&self.in_flight)).await;
        if let Err(err) = applied {
            tracing::error!(error = %err, method = method.as_str(), "cannot put the activation in force");
        }
    }

    /// Has the consent task look at the consent file (a flush goes by the
    /// file as it is now), collects now (periodic collectors and the KSN
    /// window), then has the uploader send now and waits for its answer.
    async fn flush(&self) -> Response {
        if let Response::Error { message } = self.consent_changed(None).await {
            tracing::warn!(error = %message, "flush: the consent file could not be applied");
        }
        let collect = self.agent.collect_now().await;
        self.shared.set_collect(collect.clone());
        let (reply, answer) = oneshot::channel();
        if self.flushes.send(reply).await.is_err() {
            return shutting_down();
        }
        match answer.await {
            Ok(Ok(upload)) => Response::Flushed(FlushSummary { collect, upload }),
            Ok(Err(err)) => Response::Error {
                message: err.to_string(),
            },
            Err(_) => shutting_down(),
        }
    }
}

fn shutting_down() -> Response {
    Response::Error {
        message: "the daemon is shutting down".into(),
    }
}
