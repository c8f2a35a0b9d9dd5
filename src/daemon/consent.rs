//! The consent owner: the one reader of the consent file and the one
//! publisher of what it allows.
//!
//! Everything that can change consent comes here (and a command's decline,
//! which changes nothing and is only recorded: see [`ConsentOwner::apply`]):
//! a command's declared act
//! (over the control socket, or in process when no daemon runs), the file
//! watch, SIGHUP, a reload. Each read becomes, in this order: the decisions
//! published as the next generation (`Gate::publish` never lets an older
//! one replace a newer), a batch in flight that they no longer allow
//! stopped, and one store transaction that appends the receipts of that
//! same read (the act's own, declared; every other difference, observed),
//! deletes what was withdrawn and replaces the installation id when its
//! clause was withdrawn. Nobody else reads the file: the uploader, the
//! collectors and the ingest path only load the published snapshot.
//!
//! What deletes (docs/consent.md, "Withdrawal"):
//! - a command's revoke, at once;
//! - a valid consent file from which an acceptance was removed, once the
//!   file has stayed the same for [`CONFIRM`] (a file being rewritten in
//!   place can be caught valid but cut short; the narrower decisions apply
//!   at once, the deletion waits for the confirming read);
//! - an opt-out signal or the administrator's policy, likewise.
//!
//! A missing, empty, truncated or broken file holds: nothing is sent,
//! nothing deleted, nothing recorded (`consent::Reading`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Agent;
use crate::catalogue::Catalogue;
use crate::collect::ksn;
use crate::consent::receipt::{Event, Provenance, Receipt, Snapshot};
use crate::consent::{Act, ActKind, ConsentLock, Consents, Reading, Registry};
use crate::control::ConsentApplied;
use crate::store::{StoreError, queue, receipts};
use crate::upload::InFlight;

mod activation;
pub use activation::ActivationApplied;

/// Why queued records are deleted when their consent is withdrawn.
pub const PURGE_REASON: &str = "consent for these purposes was withdrawn";

/// How long a consent file that withdraws something must stay the same
/// before what it withdrew is deleted: longer than any in-place rewrite
/// takes (seen: 0.3 to 1.2 s), short beside the "within two seconds" a
/// hand edit takes to narrow what is sent (that part is at once).
pub const CONFIRM: Duration = Duration::from_secs(3);

/// How soon a look is tried again while a command holds the consent lock
/// (its own notice normally makes that look unnecessary).
const LOCKED_RETRY: Duration = Duration::from_millis(200);

/// What the owner remembers between reads.
#[derive(Debug, Default)]
pub struct ConsentOwner {
    /// The last generation published.
    generation: u64,
    /// What the store last recorded (read at the first application).
    recorded: Option<Snapshot>,
    /// A withdrawal read from a file not yet seen to stay the same.
    pending: Option<Pending>,
    /// A look deferred while a command held the lock.
    retry_at: Option<Instant>,
    /// How the product was last activated (read with `recorded`, then
    /// told by the ingest path: `activation`).
    activation: Option<crate::catalogue::ActivationMethod>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    digest: [u8; 32],
    first_seen: Instant,
}

/// What one application of the consent did.
#[derive(Debug, Default)]
pub struct Applied {
    pub generation: u64,
    pub receipts: Vec<Receipt>,
    pub purged: u64,
    pub ksn_window_discarded: bool,
    /// Why nothing was recorded or deleted (an unusable file), if so.
    pub holding: Option<String>,
    /// A withdrawal waits for the file to stay the same.
    pub awaiting_confirmation: bool,
    /// The installation id that replaced the old one, if it was replaced.
    pub new_installation_id: Option<uuid::Uuid>,
    /// What the store records as in force now.
    pub snapshot: Option<Snapshot>,
}

impl Applied {
    /// The control protocol's answer to a command.
    pub fn answer(&self, queued: u64) -> ConsentApplied {
        ConsentApplied {
            purged: self.purged,
            ksn_window_discarded: self.ksn_window_discarded,
            queued,
            installation_id_rotated: self.new_installation_id.is_some(),
            receipts: self.receipts.iter().map(|r| r.receipt_id).collect(),
            holding: self.holding.clone(),
        }
    }
}

/// Why an application failed: the decisions are in force, but the store
/// could not record or delete; or a command's decline was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A decline was not recorded (refused, or the store failed): nothing
    /// changed.
    #[error("the decline was not recorded: {0}")]
    NotDeclined(String),
    #[error("the change is in effect, but the upload in flight did not stop within {0:?}")]
    InFlight(Duration),
    #[error("the change is in effect, but could not be recorded: {0}")]
    Store(String),
}

/// What a read is for.
#[derive(Clone, Copy)]
pub enum Cause<'a> {
    /// A command declared this act and wrote the file.
    Act(&'a Act),
    /// A look: the file watch, SIGHUP, a reload, a confirming read, start.
    Look,
}

impl ConsentOwner {
    /// When a look is due on its own (a confirming read, a deferred look).
    pub fn next_look(&self) -> Option<Instant> {
        let confirm = self.pending.map(|p| p.first_seen + CONFIRM);
        match (confirm, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reads the consent file once and applies it (see the module). A
    /// command's decline reads nothing: it is recorded ([`Self::decline`]).
    pub async fn apply(
        &mut self,
        agent: &Agent,
        cause: Cause<'_>,
        in_flight: Option<&InFlight>,
    ) -> Result<Applied, ApplyError> {
        if let Cause::Act(act) = cause
            && act.kind == ActKind::Decline
        {
            return self.decline(agent, act).await;
        }
        self.retry_at = None;
        let config = agent.config();
        let catalogue = agent.gate.catalogue();
        let recorded = self.recorded(agent, &config.region.to_string()).await?;
        // A command at work: its notice records its change; until then the
        // file may be read (to narrow at once) but nothing is recorded.
        let locked_out = match cause {
            Cause::Act(_) => false,
            Cause::Look => ConsentLock::try_shared(&config.consent_file).is_none(),
        };
        let reading = Reading::of(&config.consent_file, catalogue);
        let jurisdiction = config.jurisdiction(catalogue);
        let registry = reading
            .evaluate(catalogue, jurisdiction.clone())
            .knowing_withdrawals(catalogue, &recorded.withdrawn)
            .with_activation(self.activation);
        let observed_at = SystemTime::now();
        let Reading::Valid {
            consents,
            digest,
            modified,
        } = reading
        else {
            let Reading::Held { why } = reading else {
                unreachable!("a reading is valid or held")
            };
            self.pending = None;
            return self.hold(agent, cause, registry, why.to_string()).await;
        };
        let observed = Snapshot::observed(&consents, &jurisdiction, catalogue, &recorded);
        let settled = match cause {
            // The command wrote the whole file itself, atomically.
            Cause::Act(_) => true,
            Cause::Look if locked_out => {
                tracing::debug!("consent: a command holds the consent lock; looking again soon");
                self.retry_at = Some(Instant::now() + LOCKED_RETRY);
                false
            }
            Cause::Look => self.settled(withdraws(&recorded, &observed), digest, modified),
        };
        if !settled {
            let generation = self.publish(agent, registry.holding_purges());
            stop_unless_allowed(agent, in_flight).await?;
            return Ok(Applied {
                generation,
                awaiting_confirmation: self.pending.is_some(),
                ..Applied::default()
            });
        }
        self.pending = None;
        self.publish(agent, registry.clone());
        stop_unless_allowed(agent, in_flight).await?;
        let how = Provenance {
            act: match cause {
                Cause::Act(act) => Some(act),
                Cause::Look => None,
            },
            observed_at,
            file_modified_at: modified,
            stated: Some(&consents),
        };
        let mut applied = commit(agent, &consents, &jurisdiction, registry, &how).await?;
        self.committed(agent, &mut applied);
        Ok(applied)
    }

    /// A command's decline: its declared receipt appended, and nothing else.
    /// The file is not read and nothing is published, stopped or deleted,
    /// since a decline changes nothing; a look the owner owes (a deferred
    /// one, a confirming read) stays due. Refused when what the store last
    /// recorded has the clause accepted: the command found no record of it
    /// in the file, so a withdrawal by hand is still being confirmed, and
    /// the receipt would contradict the log.
    async fn decline(&mut self, agent: &Agent, act: &Act) -> Result<Applied, ApplyError> {
        let gate = Arc::clone(&agent.gate);
        let region = agent.config().region.to_string();
        let declared = act.clone();
        let receipt = agent
            .writer
            .call(move |connection, _| {
                receipts::decline(connection, gate.catalogue(), &region, &declared)
            })
            .await
            .map_err(|err| ApplyError::NotDeclined(err.to_string()))?;
        let Some(receipt) = receipt else {
            return Err(ApplyError::NotDeclined(format!(
                "{} is still recorded as accepted (a withdrawal by hand not yet confirmed); try again in a few seconds",
                act.clause
            )));
        };
        let applied = Applied {
            generation: self.generation,
            receipts: vec![receipt],
            ..Applied::default()
        };
        after_commit(&applied);
        Ok(applied)
    }

    /// The snapshot the store last recorded, read once (with how the
    /// product was last activated).
    async fn recorded(&mut self, agent: &Agent, region: &str) -> Result<Snapshot, ApplyError> {
        if let Some(snapshot) = &self.recorded {
            return Ok(snapshot.clone());
        }
        let region = region.to_owned();
        let (snapshot, activation) = agent
            .writer
            .call(move |connection, _| {
                let snapshot = receipts::last_snapshot(connection, &region)?;
                Ok((snapshot, crate::store::activation::last(connection)?))
            })
            .await
            .map_err(|err| ApplyError::Store(err.to_string()))?;
        self.recorded = Some(snapshot.clone());
        self.activation = activation;
        Ok(snapshot)
    }

    /// After a commit: the snapshot remembered, the new installation id
    /// put in use, and the decisions published again knowing which blocks
    /// are withdrawals.
    fn committed(&mut self, agent: &Agent, applied: &mut Applied) {
        if let Some(id) = applied.new_installation_id {
            agent.context.set_installation_id(id);
        }
        if let Some(snapshot) = &applied.snapshot {
            let current = (*agent.gate.registry()).clone();
            let knowing = current.knowing_withdrawals(agent.gate.catalogue(), &snapshot.withdrawn);
            self.recorded = Some(snapshot.clone());
            applied.generation = self.publish(agent, knowing);
        }
        after_commit(applied);
    }

    /// A read that holds: nothing is allowed, deleted or recorded, but a
    /// command's revoke is its own explicit withdrawal, and is carried out
    /// on what the store last recorded.
    async fn hold(
        &mut self,
        agent: &Agent,
        cause: Cause<'_>,
        registry: Registry,
        why: String,
    ) -> Result<Applied, ApplyError> {
        let generation = self.publish(agent, registry);
        let act = match cause {
            Cause::Act(act) if act.kind == ActKind::Revoke => act,
            _ => {
                return Ok(Applied {
                    generation,
                    holding: Some(why),
                    ..Applied::default()
                });
            }
        };
        let mut applied = revoke_on_record(agent, act).await?;
        applied.generation = generation;
        applied.holding = Some(why);
        if let Some(snapshot) = applied.snapshot.take() {
            self.recorded = Some(snapshot);
        }
        if let Some(id) = applied.new_installation_id {
            agent.context.set_installation_id(id);
        }
        after_commit(&applied);
        Ok(applied)
    }

    /// Whether a look may be acted on in full: it withdraws nothing, or
    /// the file has stayed the same for [`CONFIRM`] (by its modification
    /// time, or across reads).
    fn settled(&mut self, withdraws: bool, digest: [u8; 32], modified: Option<SystemTime>) -> bool {
        if !withdraws {
            return true;
        }
        let unchanged_for = modified
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .unwrap_or_default();
        let seen_for = match self.pending {
            Some(pending) if pending.digest == digest => pending.first_seen.elapsed(),
            _ => {
                self.pending = Some(Pending {
                    digest,
                    first_seen: Instant::now(),
                });
                Duration::ZERO
            }
        };
        unchanged_for >= CONFIRM || seen_for >= CONFIRM
    }

    /// Publishes `registry` as the next generation.
    fn publish(&mut self, agent: &Agent, registry: Registry) -> u64 {
        self.generation += 1;
        agent
            .gate
            .publish(registry.with_generation(self.generation));
        self.generation
    }
}

/// Whether going from `recorded` to `observed` withdraws anything: a
/// clause no longer accepted, a purpose the policy now switches off.
fn withdraws(recorded: &Snapshot, observed: &Snapshot) -> bool {
    recorded
        .accepted
        .keys()
        .any(|clause| !observed.accepted.contains_key(clause))
        || !observed.switched_off.is_subset(&recorded.switched_off)
}

/// Stops a batch in flight that carries a purpose the published decisions
/// no longer allow (the daemon only: the CLI sends nothing meanwhile).
async fn stop_unless_allowed(
    agent: &Agent,
    in_flight: Option<&InFlight>,
) -> Result<(), ApplyError> {
    /// Longest the uploader may take to let go of a batch it stopped (it
    /// lets go at once unless the writer is stuck on the disk).
    const STOP_WAIT: Duration = Duration::from_secs(10);
    let Some(in_flight) = in_flight else {
        return Ok(());
    };
    let registry = agent.gate.registry();
    let stop = in_flight.stop_unless(|purpose| registry.is_allowed(purpose));
    match tokio::time::timeout(STOP_WAIT, stop).await {
        Ok(true) => {
            tracing::info!("stopped an upload in flight: its consent changed");
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(_) => Err(ApplyError::InFlight(STOP_WAIT)),
    }
}

/// One transaction: the receipts of this read, the deletion of what was
/// withdrawn (the queue, the open KSN window) and, for a withdrawn clause
/// that carries it, a new installation id.
async fn commit(
    agent: &Agent,
    consents: &Consents,
    jurisdiction: &crate::consent::Jurisdiction,
    registry: Registry,
    how: &Provenance<'_>,
) -> Result<Applied, ApplyError> {
    let gate = Arc::clone(&agent.gate);
    let tally = agent.writer.tally();
    let region = jurisdiction.region.to_string();
    let (consents, jurisdiction) = (consents.clone(), jurisdiction.clone());
    let act = how.act.cloned();
    let (observed_at, file_modified_at) = (how.observed_at, how.file_modified_at);
    let done = agent
        .writer
        .call(move |connection, window| {
            let catalogue = gate.catalogue();
            let how = Provenance {
                act: act.as_ref(),
                observed_at,
                file_modified_at,
                stated: Some(&consents),
            };
            let observe =
                |before: &Snapshot| Snapshot::observed(&consents, &jurisdiction, catalogue, before);
            let recorded = receipts::record(connection, catalogue, &region, observe, &how)?;
            let mut applied = Applied {
                receipts: recorded.receipts,
                snapshot: Some(recorded.snapshot),
                ..Applied::default()
            };
            let why = purge_reason(&registry);
            applied.purged =
                tally.purge_blocked(connection, |purpose| !registry.may_purge(purpose), &why)?;
            if registry.may_purge(ksn::PURPOSE) {
                applied.ksn_window_discarded = ksn::discard_window(window, connection)? > 0;
            }
            rotate_if_withdrawn(connection, catalogue, &mut applied)?;
            Ok(applied)
        })
        .await
        .map_err(|err| ApplyError::Store(err.to_string()))?;
    Ok(done)
}

/// A command's revoke while the file cannot be read: recorded on the
/// snapshot the store holds, and what only that clause allowed deleted.
async fn revoke_on_record(agent: &Agent, act: &Act) -> Result<Applied, ApplyError> {
    let gate = Arc::clone(&agent.gate);
    let tally = agent.writer.tally();
    let region = agent.config().region;
    let act = act.clone();
    let done = agent
        .writer
        .call(move |connection, window| {
            let catalogue = gate.catalogue();
            let clause = act.clause.clone();
            let observe = |before: &Snapshot| {
                let mut now = before.clone();
                now.accepted.remove(&clause);
                now
            };
            let how = Provenance {
                act: Some(&act),
                ..Provenance::observed_now()
            };
            let region_name = region.to_string();
            let recorded = receipts::record(connection, catalogue, &region_name, observe, &how)?;
            let remaining: BTreeSet<&str> = recorded
                .snapshot
                .accepted
                .keys()
                .map(String::as_str)
                .collect();
            let gone = |purpose: &str| {
                catalogue.purpose(purpose).is_some_and(|p| {
                    p.clauses.contains(&clause)
                        && !p.clauses.iter().any(|c| {
                            remaining.contains(c.as_str())
                                && catalogue.clause(c).is_some_and(|c| c.applies_in(region))
                        })
                })
            };
            let mut applied = Applied {
                receipts: recorded.receipts,
                snapshot: Some(recorded.snapshot.clone()),
                ..Applied::default()
            };
            let why = format!("{PURGE_REASON} ({clause} revoked)");
            applied.purged = tally.purge_blocked(connection, |purpose| !gone(purpose), &why)?;
            if gone(ksn::PURPOSE) {
                applied.ksn_window_discarded = ksn::discard_window(window, connection)? > 0;
            }
            rotate_if_withdrawn(connection, catalogue, &mut applied)?;
            Ok(applied)
        })
        .await
        .map_err(|err| ApplyError::Store(err.to_string()))?;
    Ok(done)
}

/// A new installation id when a withdrawal receipt names a clause whose
/// purposes carry it, so what is sent afterwards cannot be linked to what
/// was sent before.
fn rotate_if_withdrawn(
    connection: &rusqlite::Connection,
    catalogue: &Catalogue,
    applied: &mut Applied,
) -> Result<(), StoreError> {
    let withdrawn = applied
        .receipts
        .iter()
        .filter(|r| r.event == Event::Revoke)
        .filter_map(|r| r.clause.as_ref())
        .find(|c| catalogue.clause_carries_installation_id(&c.id));
    if let Some(clause) = withdrawn {
        let why = format!(
            "installation id replaced: consent for {} withdrawn",
            clause.id
        );
        applied.new_installation_id = Some(queue::rotate_installation_id(connection, &why)?);
    }
    Ok(())
}

/// The log lines of a committed application.
fn after_commit(applied: &Applied) {
    for receipt in &applied.receipts {
        tracing::info!(
            receipt = %receipt.receipt_id,
            event = receipt.event.as_str(),
            subject = %receipt.subject(),
            method = %receipt.collection_method,
            declared = receipt.is_declared(),
            "consent receipt"
        );
    }
    if applied.purged > 0 {
        tracing::info!(
            records = applied.purged,
            "purged queued records whose consent was withdrawn"
        );
    }
}

/// [`PURGE_REASON`] with the registry's words for each withdrawal, so the
/// audit trail names the clause.
fn purge_reason(registry: &Registry) -> String {
    let mut reasons: Vec<&str> = registry
        .decisions()
        .filter(|d| registry.may_purge(d.purpose()))
        .map(|d| d.reason())
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    if reasons.is_empty() {
        PURGE_REASON.to_owned()
    } else {
        format!("{PURGE_REASON} ({})", reasons.join("; "))
    }
}
