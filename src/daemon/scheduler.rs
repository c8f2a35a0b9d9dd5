//! The scheduler task: runs the periodic collectors (`geo_distribution`,
//! and `update_identity` as a fallback) at start and every `[collect]
//! interval`, and closes the KSN window every `[collect] ksn_window`,
//! turning it into one report. Records go through the gate, then to the
//! store writer; the uploader takes them at its next slot (a fleet that
//! restarts together must not upload together). It also runs the store's
//! housekeeping (records past `max_record_age`, audit past
//! `audit_retention`) at start and every [`HOUSEKEEPING`].
//!
//! Every period runs on this installation's own slots
//! (`upload::schedule::Jitter`): the same moments whenever the daemon
//! started, spread evenly across a fleet.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{Agent, Shared};
use crate::collect::{self, ksn};
use crate::control::{Blocked, CollectSummary};
use crate::gate::Refusal;
use crate::upload::schedule::salt;

/// How often the store's housekeeping runs.
pub const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_secs(3600);

pub(super) async fn run(
    agent: Arc<Agent>,
    shared: Arc<Shared>,
    collect_now: Arc<Notify>,
    shutdown: CancellationToken,
) {
    // `[collect]` changes need a restart: read once.
    let config = agent.config();
    let interval = config.collect.interval.0;
    let window = config.collect.ksn_window.0;
    let mut next_collect = Instant::now();
    let mut next_close = first_close(&agent, window).await;
    let mut next_housekeeping = Instant::now();
    // The next slot of `period` for schedule `salt`, from now.
    let slot = |period, salt| Instant::now() + until_next_slot(&agent, period, salt);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep_until(next_housekeeping) => {
                next_housekeeping = slot(HOUSEKEEPING, salt::HOUSEKEEPING);
                if let Err(err) = agent.writer.housekeep().await {
                    tracing::error!(error = %err, "store housekeeping failed; it runs again in an hour");
                }
            }
            _ = collect_now.notified() => {
                let summary = collect_periodic(&agent).await;
                report(&shared, summary);
            }
            _ = sleep_until(next_collect) => {
                next_collect = slot(interval, salt::COLLECT);
                let summary = collect_periodic(&agent).await;
                report(&shared, summary);
            }
            _ = sleep_until(next_close) => {
                next_close = slot(window, salt::KSN_WINDOW);
                let mut summary = CollectSummary::default();
                close_ksn_window(&agent, &mut summary).await;
                report(&shared, summary);
            }
        }
    }
}

/// How long until this installation's next slot of `period` for `salt`.
fn until_next_slot(agent: &Agent, period: std::time::Duration, salt: u64) -> std::time::Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    agent.identity().jitter().until_next_slot(now, period, salt)
}

/// When the window persisted by a previous run is due: at once if it is
/// already older than a window, else at the installation's next slot (so
/// the first window after a start may be shorter than the others).
async fn first_close(agent: &Agent, window: std::time::Duration) -> Instant {
    let started = agent
        .writer
        .call(|_, aggregate| Ok(aggregate.started_at()))
        .await
        .ok()
        .flatten();
    let age = started.and_then(|t| SystemTime::now().duration_since(t).ok());
    match age {
        Some(age) if age >= window => Instant::now(),
        _ => Instant::now() + until_next_slot(agent, window, salt::KSN_WINDOW),
    }
}

fn report(shared: &Shared, summary: CollectSummary) {
    if summary.queued > 0 {
        tracing::info!(records = summary.queued, "collected and queued");
    }
    for error in &summary.errors {
        tracing::error!(%error, "collection problem");
    }
    shared.set_collect(summary);
}

/// Runs every periodic collector once, under the consent snapshot in
/// force; blocked purposes are not even collected.
pub(super) async fn collect_periodic(agent: &Agent) -> CollectSummary {
    let registry = agent.gate.registry();
    let mut summary = CollectSummary::default();
    let mut gated = Vec::new();
    for collector in collect::periodic(&agent.config().collect) {
        let purpose = collector.purpose();
        if agent.gate.catalogue().purpose(purpose).is_none() {
            // This product's catalogue does not name it: nothing to do.
            continue;
        }
        let decision = registry.decide(purpose);
        if !decision.is_allowed() {
            summary.blocked.push(Blocked {
                purpose: purpose.to_owned(),
                reason: decision.reason().to_owned(),
            });
            continue;
        }
        let records = match collector.collect(&agent.context) {
            Ok(records) => records,
            Err(err) => {
                summary.errors.push(err.to_string());
                continue;
            }
        };
        for record in records {
            match agent.gate.admit_with(&record, &decision) {
                Ok(record) => gated.push(record),
                // Allowed, but past its privacy budget for the day.
                Err(Refusal::NotAllowed { purpose, reason }) => {
                    summary.blocked.push(Blocked { purpose, reason })
                }
                Err(err) => summary.errors.push(format!("{purpose}: {err}")),
            }
        }
    }
    let count = gated.len() as u64;
    match agent
        .writer
        .enqueue_counted(gated, agent.gate.spent())
        .await
    {
        Ok(()) => summary.queued = count,
        Err(err) => summary.errors.push(format!("cannot queue: {err}")),
    }
    summary
}

/// Turns the open KSN window into one record (if anything arrived in it and
/// its purpose is still allowed) and empties it, in one transaction. A
/// window whose purpose is blocked follows the queue's rule: discarded
/// only when consent for it was withdrawn, else kept open (its report
/// then covers the longer period) until it is allowed again.
pub(super) async fn close_ksn_window(agent: &Agent, summary: &mut CollectSummary) {
    let gate = Arc::clone(&agent.gate);
    let extra = ksn_extra(&agent.context.product);
    let tally = agent.writer.tally();
    let closed = agent
        .writer
        .call(move |connection, aggregate| {
            let Some(report) = aggregate.report(SystemTime::now(), &extra) else {
                return Ok(Ok(0));
            };
            match gate.admit(&report) {
                Ok(record) => {
                    tally.enqueue(connection, &[record])?;
                    crate::store::ldp_budget::save(connection, &gate.spent())?;
                    ksn::audit_capped(aggregate, connection)?;
                    aggregate.reset();
                    Ok(Ok(1))
                }
                Err(refusal) => {
                    // Withdrawn: discarded, and the audit says so. Held:
                    // kept for when it is allowed again.
                    let withdrawn = gate.registry().may_purge(ksn::PURPOSE);
                    if withdrawn || matches!(refusal, Refusal::Check(_)) {
                        ksn::discard_window(aggregate, connection)?;
                    }
                    Ok(Err(refusal))
                }
            }
        })
        .await;
    match closed {
        Ok(Ok(queued)) => summary.queued += queued,
        Ok(Err(Refusal::NotAllowed { purpose, reason })) => {
            summary.blocked.push(Blocked { purpose, reason })
        }
        Ok(Err(Refusal::Check(err))) => summary.errors.push(err.to_string()),
        Err(err) => summary
            .errors
            .push(format!("cannot close the KSN window: {err}")),
    }
}

/// The product's own database facts a KSN report carries, when configured.
pub fn ksn_extra(product: &collect::ProductConfig) -> Vec<(&'static str, String)> {
    [
        ("private_db_version", &product.private_db_version),
        ("db_settings_id", &product.db_settings_id),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
    .collect()
}
