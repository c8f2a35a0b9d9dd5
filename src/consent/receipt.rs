//! Consent receipts: one record per consent event (a grant, a withdrawal,
//! a renewal, a decline, a policy change, a region change), in the shape of
//! the Kantara Consent Receipt 1.1 / ISO/IEC TS 27560
//! (`docs/consent-receipts.md`).
//!
//! A receipt is either declared or observed. A `consent grant|revoke`
//! declares its act (`act::Act`): its receipt carries the act's own time,
//! means and id. A `consent decline` declares a refusal, which changes
//! nothing: its receipt ([`declined`]) is made from the act alone, never by
//! comparison, and is the only way a decline is recorded (nothing can
//! observe one). Anything nobody declared (an edit of the consent file by
//! hand, an installer writing it, a policy or region change) is observed: a
//! [`Snapshot`] of what is in force (the usable acceptances, the region,
//! the purposes the administrator policy switches off) is compared with the
//! last one recorded, and each difference becomes a receipt that says it
//! was observed (`collection_method` `file`, `policy` or `config`), when,
//! and when the file was last modified. An acceptance the catalogue cannot
//! use (an unknown or older version, another text) is held: it grants,
//! renews and withdraws nothing. This module is pure; the store keeps the
//! log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::act::{Act, ActKind};
use super::{Consents, Jurisdiction};
use crate::catalogue::Catalogue;
use crate::clock::rfc3339;

pub use super::deletion::{DeletionRequest, RecordKeys};

/// The receipt format this agent writes.
pub const RECEIPT_VERSION: &str = "KI-CR-v1.1.0";

/// What is in force, as far as receipts are concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub region: String,
    /// Accepted clauses: id → (version, text SHA-256, method).
    pub accepted: BTreeMap<String, (u32, String, String)>,
    /// Purposes the administrator policy switches off.
    pub switched_off: BTreeSet<String>,
    /// Clauses whose last event was a withdrawal (`status` says
    /// "withdrawn" for them, not "never accepted").
    #[serde(default)]
    pub withdrawn: BTreeSet<String>,
}

impl Snapshot {
    /// What a valid consent file puts in force in `jurisdiction`, starting
    /// from `previous`: each usable acceptance as it is; a clause whose
    /// acceptance the catalogue cannot use keeps what `previous` had for it
    /// (held: no grant, no renewal, no withdrawal).
    pub fn observed(
        consents: &Consents,
        jurisdiction: &Jurisdiction,
        catalogue: &Catalogue,
        previous: &Snapshot,
    ) -> Self {
        let mut accepted = BTreeMap::new();
        for clause in catalogue.clauses() {
            let entry = match consents.get(&clause.id) {
                Some(a) if a.is_current(catalogue) => Some((
                    a.version,
                    a.text_sha256.clone(),
                    a.method.as_str().to_owned(),
                )),
                Some(_) => previous.accepted.get(&clause.id).cloned(),
                None => None,
            };
            if let Some(entry) = entry {
                accepted.insert(clause.id.clone(), entry);
            }
        }
        Self {
            region: jurisdiction.region.to_string(),
            accepted,
            switched_off: catalogue
                .purposes()
                .filter(|p| {
                    p.clauses
                        .iter()
                        .all(|c| jurisdiction.policy.switches_off(&p.id, c).is_some())
                })
                .map(|p| p.id.clone())
                .collect(),
            withdrawn: previous.withdrawn.clone(),
        }
    }

    /// The same snapshot with `withdrawn` moved on by `receipts`.
    fn after(mut self, receipts: &[Receipt]) -> Self {
        for receipt in receipts {
            let Some(clause) = &receipt.clause else {
                continue;
            };
            match receipt.event {
                Event::Revoke => self.withdrawn.insert(clause.id.clone()),
                Event::Grant | Event::Renewal => self.withdrawn.remove(&clause.id),
                _ => false,
            };
        }
        self
    }
}

/// How a set of differences came about: the act a command declared, if
/// any, and when the rest was noticed.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    /// The declared act: the difference it explains gets its receipt.
    pub act: Option<&'a Act>,
    /// When the consent file was read.
    pub observed_at: SystemTime,
    /// The consent file's last modification, as read.
    pub file_modified_at: Option<SystemTime>,
    /// The file's own words about each acceptance (`accepted_at`,
    /// `method`), quoted by an observed grant or renewal.
    pub stated: Option<&'a Consents>,
}

impl Provenance<'_> {
    /// Changes nobody declared, noticed now.
    pub fn observed_now() -> Self {
        Provenance {
            act: None,
            observed_at: SystemTime::now(),
            file_modified_at: None,
            stated: None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Grant,
    Revoke,
    Renewal,
    /// A clause offered and refused: no state changed (declared only).
    Decline,
    PolicyChange,
    RegionChange,
}

impl Event {
    /// As the receipt's JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Grant => "grant",
            Event::Revoke => "revoke",
            Event::Renewal => "renewal",
            Event::Decline => "decline",
            Event::PolicyChange => "policy_change",
            Event::RegionChange => "region_change",
        }
    }
}

/// A clause as the receipt names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClauseRef {
    pub id: String,
    pub version: u32,
    pub text_sha256: String,
}

/// A purpose the event concerns, with its legal basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurposeRef {
    pub purpose: String,
    pub basis: String,
    /// Local differential privacy, as the catalogue declared it when the
    /// receipt was made: each randomised field and what its ε means, then
    /// the purpose's budget. Empty when no field of it is randomised (and
    /// in receipts made before it was recorded).
    #[serde(default)]
    pub local_dp: Vec<String>,
}

/// What [`PurposeRef::local_dp`] says of `purpose`.
fn local_dp(purpose: &crate::catalogue::Purpose) -> Vec<String> {
    let mut said: Vec<String> = purpose
        .fields
        .iter()
        .filter_map(|f| {
            f.ldp
                .as_ref()
                .map(|ldp| format!("{}: {}", f.name, ldp.in_words()))
        })
        .collect();
    if let Some(budget) = &purpose.privacy_budget {
        said.push(format!(
            "budget: at most {} report(s) a day, ε ≤ {} a day (ε {} a report)",
            budget.reports_per_day,
            budget.epsilon_per_day,
            purpose.epsilon_per_report()
        ));
    }
    said
}

/// One consent receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub version: String,
    pub receipt_id: Uuid,
    pub timestamp: String,
    /// The region in force after the event.
    pub jurisdiction: String,
    /// installer, cli, file (an edit of the consent file), policy, config.
    pub collection_method: String,
    pub event: Event,
    /// The clause, for grants, withdrawals and renewals.
    pub clause: Option<ClauseRef>,
    pub purposes: Vec<PurposeRef>,
    pub previous_state: String,
    pub new_state: String,
    /// A declared receipt: the id of the act it records (`None`: observed).
    #[serde(default)]
    pub act_id: Option<Uuid>,
    /// An observed receipt: what was seen, and when the file changed
    /// (`None`: declared).
    #[serde(default)]
    pub observed: Option<Observation>,
}

/// What an observed receipt saw: the change was noticed at the receipt's
/// `timestamp`; nobody declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The consent file's last modification when the change was read
    /// (`null` for a policy or region change).
    pub file_modified_at: Option<String>,
    /// What the file itself says of the acceptance (`accepted_at`,
    /// `method`): a claim of whoever wrote it, quoted, not vouched for.
    pub stated_accepted_at: Option<String>,
    pub stated_method: Option<String>,
}

impl Receipt {
    /// Whether a command declared this act (else it was observed).
    pub fn is_declared(&self) -> bool {
        self.act_id.is_some()
    }

    /// What the event is about, in a few words: the clause and version, or
    /// the purposes a policy switched.
    pub fn subject(&self) -> String {
        match &self.clause {
            Some(clause) => format!("{} v{}", clause.id, clause.version),
            None => self
                .purposes
                .iter()
                .map(|p| p.purpose.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The receipts that turn `old` into `new`, and the snapshot to record
/// after them (`new` with its withdrawals moved on). A clause difference
/// the declared act explains gets the act's receipt; every other
/// difference is observed.
pub fn diff(
    old: &Snapshot,
    new: &Snapshot,
    catalogue: &Catalogue,
    how: &Provenance<'_>,
) -> (Vec<Receipt>, Snapshot) {
    let maker = Maker {
        catalogue,
        how,
        region: &new.region,
        now: rfc3339(how.observed_at),
    };
    let mut receipts = Vec::new();
    if old.region != new.region {
        receipts.push(maker.observed(
            Event::RegionChange,
            None,
            Vec::new(),
            "config",
            (old.region.clone(), new.region.clone()),
        ));
    }
    receipts.extend(clause_receipts(old, new, &maker));
    receipts.extend(policy_receipts(old, new, &maker));
    let after = new.clone().after(&receipts);
    (receipts, after)
}

/// The declared receipt of a decline in `region`: the clause as it was
/// offered (the act's version and text), its purposes, "not accepted"
/// before and after, the act's own time, method and id. `None` for any
/// other act: those are recorded by comparison ([`diff`]).
pub fn declined(act: &Act, catalogue: &Catalogue, region: &str) -> Option<Receipt> {
    if act.kind != ActKind::Decline {
        return None;
    }
    let how = Provenance {
        act: Some(act),
        ..Provenance::observed_now()
    };
    let maker = Maker {
        catalogue,
        how: &how,
        region,
        now: act.at.clone(),
    };
    let clause = ClauseRef {
        id: act.clause.clone(),
        version: act.version?,
        text_sha256: act.text_sha256.clone()?,
    };
    let not_accepted = || "not accepted".to_owned();
    Some(Receipt {
        act_id: Some(act.id),
        ..maker.receipt(
            Event::Decline,
            Some(clause),
            maker.purposes_of(&act.clause),
            &act.method,
            (not_accepted(), not_accepted()),
        )
    })
}

/// What every receipt of one comparison shares.
struct Maker<'a> {
    catalogue: &'a Catalogue,
    how: &'a Provenance<'a>,
    region: &'a str,
    /// `how.observed_at`, formatted.
    now: String,
}

impl Maker<'_> {
    fn receipt(
        &self,
        event: Event,
        clause: Option<ClauseRef>,
        purposes: Vec<PurposeRef>,
        method: &str,
        (previous, new_state): (String, String),
    ) -> Receipt {
        Receipt {
            version: RECEIPT_VERSION.into(),
            receipt_id: Uuid::new_v4(),
            timestamp: self.now.clone(),
            jurisdiction: self.region.to_owned(),
            collection_method: method.to_owned(),
            event,
            clause,
            purposes,
            previous_state: previous,
            new_state,
            act_id: None,
            observed: None,
        }
    }

    /// A receipt for a change nobody declared.
    fn observed(
        &self,
        event: Event,
        clause: Option<ClauseRef>,
        purposes: Vec<PurposeRef>,
        method: &str,
        states: (String, String),
    ) -> Receipt {
        let stated = clause
            .as_ref()
            .and_then(|c| self.how.stated.and_then(|consents| consents.get(&c.id)))
            .filter(|_| event != Event::Revoke);
        Receipt {
            observed: Some(Observation {
                file_modified_at: (method == "file")
                    .then_some(self.how.file_modified_at)
                    .flatten()
                    .map(rfc3339),
                stated_accepted_at: stated.map(|a| a.accepted_at.clone()),
                stated_method: stated.map(|a| a.method.as_str().to_owned()),
            }),
            ..self.receipt(event, clause, purposes, method, states)
        }
    }

    /// The purposes `clause` allows, with their bases.
    fn purposes_of(&self, clause: &str) -> Vec<PurposeRef> {
        self.catalogue
            .purposes()
            .filter(|p| p.clauses.iter().any(|c| c == clause))
            .map(|p| PurposeRef {
                purpose: p.id.clone(),
                basis: p.basis.as_str().to_owned(),
                local_dp: local_dp(p),
            })
            .collect()
    }

    fn purpose_ref(&self, purpose: &str) -> PurposeRef {
        let declared = self.catalogue.purpose(purpose);
        PurposeRef {
            purpose: purpose.to_owned(),
            basis: declared.map_or("unknown", |p| p.basis.as_str()).to_owned(),
            local_dp: declared.map(local_dp).unwrap_or_default(),
        }
    }
}

/// One receipt per clause granted, withdrawn or renewed.
fn clause_receipts(old: &Snapshot, new: &Snapshot, maker: &Maker<'_>) -> Vec<Receipt> {
    let state = |accepted: Option<&(u32, String, String)>| match accepted {
        Some((version, _, _)) => format!("accepted v{version}"),
        None => "not accepted".to_owned(),
    };
    let clauses: BTreeSet<&String> = old.accepted.keys().chain(new.accepted.keys()).collect();
    let mut receipts = Vec::new();
    for clause in clauses {
        let (before, after) = (old.accepted.get(clause), new.accepted.get(clause));
        let (event, named) = match (before, after) {
            (None, Some(now)) => (Event::Grant, now),
            (Some(was), None) => (Event::Revoke, was),
            (Some(was), Some(now)) if was.0 != now.0 || was.1 != now.1 => (Event::Renewal, now),
            _ => continue,
        };
        let clause_ref = ClauseRef {
            id: clause.clone(),
            version: named.0,
            text_sha256: named.1.clone(),
        };
        let states = (state(before), state(after));
        let purposes = maker.purposes_of(clause);
        receipts.push(
            match maker.how.act.filter(|act| act.explains(clause, event)) {
                Some(act) => Receipt {
                    timestamp: act.at.clone(),
                    act_id: Some(act.id),
                    ..maker.receipt(event, Some(clause_ref), purposes, &act.method, states)
                },
                None => maker.observed(event, Some(clause_ref), purposes, "file", states),
            },
        );
    }
    receipts
}

/// One receipt for the purposes a policy switched off, one for those it
/// switched on again.
fn policy_receipts(old: &Snapshot, new: &Snapshot, maker: &Maker<'_>) -> Vec<Receipt> {
    let on_the_policy = "allowed by the policy".to_owned();
    let off_by_policy = "switched off by the policy".to_owned();
    let off: Vec<PurposeRef> = new
        .switched_off
        .difference(&old.switched_off)
        .map(|p| maker.purpose_ref(p))
        .collect();
    let on: Vec<PurposeRef> = old
        .switched_off
        .difference(&new.switched_off)
        .map(|p| maker.purpose_ref(p))
        .collect();
    let mut receipts = Vec::new();
    if !off.is_empty() {
        let states = (on_the_policy.clone(), off_by_policy.clone());
        receipts.push(maker.observed(Event::PolicyChange, None, off, "policy", states));
    }
    if !on.is_empty() {
        let states = (off_by_policy, on_the_policy);
        receipts.push(maker.observed(Event::PolicyChange, None, on, "policy", states));
    }
    receipts
}

impl Act {
    /// Whether this act is what made `clause` undergo `event`.
    fn explains(&self, clause: &str, event: Event) -> bool {
        self.clause == clause
            && matches!(
                (self.kind, event),
                (ActKind::Grant, Event::Grant | Event::Renewal) | (ActKind::Revoke, Event::Revoke)
            )
    }
}

#[cfg(test)]
mod tests;
