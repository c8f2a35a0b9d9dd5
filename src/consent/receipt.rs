//! Consent receipts: one record per consent event (a grant, a withdrawal,
//! a renewal, a policy change, a region change), in the shape of the
//! Kantara Consent Receipt 1.1 / ISO/IEC TS 27560 (`docs/consent-receipts.md`).
//!
//! Receipts are derived, not declared: a [`Snapshot`] of what is in force
//! (the accepted clauses, the region, the purposes the administrator
//! policy switches off) is compared with the last one recorded, and each
//! difference becomes a [`Receipt`]. So an edit of the consent file by
//! hand, a policy file or a region change gets its receipt as surely as a
//! `consent grant`. This module is pure; the store keeps the log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Acceptance, Jurisdiction};
use crate::catalogue::Catalogue;
use crate::clock::rfc3339;

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
}

impl Snapshot {
    /// What `acceptances` put in force in `jurisdiction`. (An unusable
    /// consent file is no event: the caller records nothing then.)
    pub fn of<'a>(
        acceptances: impl IntoIterator<Item = &'a Acceptance>,
        jurisdiction: &Jurisdiction,
        catalogue: &Catalogue,
    ) -> Self {
        Self {
            region: jurisdiction.region.to_string(),
            accepted: acceptances
                .into_iter()
                .map(|a| {
                    (
                        a.clause.clone(),
                        (
                            a.version,
                            a.text_sha256.clone(),
                            a.method.as_str().to_owned(),
                        ),
                    )
                })
                .collect(),
            switched_off: catalogue
                .purposes()
                .filter(|p| {
                    p.clauses
                        .iter()
                        .all(|c| jurisdiction.policy.switches_off(&p.id, c).is_some())
                })
                .map(|p| p.id.clone())
                .collect(),
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
}

impl Receipt {
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

/// The receipts that turn `old` into `new`. `revoked_by` names how a
/// withdrawal was made when the caller knows (`cli`); else `file`.
pub fn diff(
    old: &Snapshot,
    new: &Snapshot,
    catalogue: &Catalogue,
    revoked_by: Option<&str>,
) -> Vec<Receipt> {
    let now = rfc3339(SystemTime::now());
    let receipt =
        |event, clause, purposes, method: &str, previous: String, new_state: String| Receipt {
            version: RECEIPT_VERSION.into(),
            receipt_id: Uuid::new_v4(),
            timestamp: now.clone(),
            jurisdiction: new.region.clone(),
            collection_method: method.to_owned(),
            event,
            clause,
            purposes,
            previous_state: previous,
            new_state,
        };
    let purposes_of = |clause: &str| -> Vec<PurposeRef> {
        catalogue
            .purposes()
            .filter(|p| p.clauses.iter().any(|c| c == clause))
            .map(|p| PurposeRef {
                purpose: p.id.clone(),
                basis: p.basis.as_str().to_owned(),
            })
            .collect()
    };
    let state = |accepted: Option<&(u32, String, String)>| match accepted {
        Some((version, _, _)) => format!("accepted v{version}"),
        None => "not accepted".to_owned(),
    };
    let mut receipts = Vec::new();
    if old.region != new.region {
        receipts.push(receipt(
            Event::RegionChange,
            None,
            Vec::new(),
            "config",
            old.region.clone(),
            new.region.clone(),
        ));
    }
    let clauses: BTreeSet<&String> = old.accepted.keys().chain(new.accepted.keys()).collect();
    for clause in clauses {
        let (before, after) = (old.accepted.get(clause), new.accepted.get(clause));
        let (event, method, named) = match (before, after) {
            (None, Some(now)) => (Event::Grant, now.2.as_str(), now),
            (Some(was), None) => (Event::Revoke, revoked_by.unwrap_or("file"), was),
            (Some(was), Some(now)) if was.0 != now.0 || was.1 != now.1 => {
                (Event::Renewal, now.2.as_str(), now)
            }
            _ => continue,
        };
        receipts.push(receipt(
            event,
            Some(ClauseRef {
                id: clause.clone(),
                version: named.0,
                text_sha256: named.1.clone(),
            }),
            purposes_of(clause),
            method,
            state(before),
            state(after),
        ));
    }
    let purpose_ref = |purpose: &String| PurposeRef {
        purpose: purpose.clone(),
        basis: catalogue
            .purpose(purpose)
            .map_or("unknown", |p| p.basis.as_str())
            .to_owned(),
    };
    let off: Vec<PurposeRef> = new
        .switched_off
        .difference(&old.switched_off)
        .map(purpose_ref)
        .collect();
    let on: Vec<PurposeRef> = old
        .switched_off
        .difference(&new.switched_off)
        .map(purpose_ref)
        .collect();
    if !off.is_empty() {
        receipts.push(receipt(
            Event::PolicyChange,
            None,
            off,
            "policy",
            "allowed by the policy".into(),
            "switched off by the policy".into(),
        ));
    }
    if !on.is_empty() {
        receipts.push(receipt(
            Event::PolicyChange,
            None,
            on,
            "policy",
            "switched off by the policy".into(),
            "allowed by the policy".into(),
        ));
    }
    receipts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(region: &str, accepted: &[(&str, u32)], off: &[&str]) -> Snapshot {
        Snapshot {
            region: region.into(),
            accepted: accepted
                .iter()
                .map(|(c, v)| ((*c).to_owned(), (*v, "ab".repeat(32), "cli".to_owned())))
                .collect(),
            switched_off: off.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn each_change_is_one_receipt_with_every_field() {
        let catalogue = Catalogue::embedded();
        let none = snapshot("global", &[], &[]);
        let granted = snapshot("global", &[("eula", 3)], &[]);
        let receipts = diff(&none, &granted, &catalogue, None);
        assert_eq!(receipts.len(), 1);
        let grant = &receipts[0];
        assert_eq!(grant.event, Event::Grant);
        assert_eq!(grant.version, RECEIPT_VERSION);
        assert_eq!(grant.jurisdiction, "global");
        assert_eq!(grant.collection_method, "cli");
        assert_eq!(grant.clause.as_ref().unwrap().id, "eula");
        assert_eq!(grant.clause.as_ref().unwrap().version, 3);
        assert_eq!(grant.previous_state, "not accepted");
        assert_eq!(grant.new_state, "accepted v3");
        assert!(
            grant
                .purposes
                .iter()
                .any(|p| p.purpose == "update_identity" && p.basis == "contract")
        );

        assert!(diff(&granted, &granted, &catalogue, None).is_empty());
        let renewed = snapshot("global", &[("eula", 4)], &[]);
        assert_eq!(
            diff(&granted, &renewed, &catalogue, None)[0].event,
            Event::Renewal
        );
        let revoked = diff(&granted, &none, &catalogue, Some("cli"));
        assert_eq!(revoked[0].event, Event::Revoke);
        assert_eq!(revoked[0].collection_method, "cli");
        assert_eq!(
            diff(&granted, &none, &catalogue, None)[0].collection_method,
            "file"
        );

        let moved = snapshot("eu", &[("eula", 3)], &[]);
        let region = diff(&granted, &moved, &catalogue, None);
        assert_eq!(region.len(), 1);
        assert_eq!(region[0].event, Event::RegionChange);
        assert_eq!(
            (
                region[0].previous_state.as_str(),
                region[0].new_state.as_str()
            ),
            ("global", "eu")
        );

        let off = snapshot("global", &[("eula", 3)], &["geo_distribution"]);
        let policy = diff(&granted, &off, &catalogue, None);
        assert_eq!(policy.len(), 1);
        assert_eq!(policy[0].event, Event::PolicyChange);
        assert_eq!(policy[0].purposes[0].purpose, "geo_distribution");
        assert_ne!(policy[0].receipt_id, region[0].receipt_id);
    }
}

/// What a withdrawal asks the receiver to erase, for a clause that
/// declares `deletion_request`: the pseudonymous installation id the
/// records carried under it, and the purposes withdrawn. Nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRequest {
    pub request_id: Uuid,
    pub requested_at: String,
    pub clause: ClauseRef,
    pub installation_id: Uuid,
    pub purposes: Vec<String>,
}

impl DeletionRequest {
    /// The request a withdrawal `receipt` makes, if its clause declares
    /// one.
    pub fn for_withdrawal(
        receipt: &Receipt,
        catalogue: &Catalogue,
        installation_id: Uuid,
    ) -> Option<Self> {
        if receipt.event != Event::Revoke {
            return None;
        }
        let clause = receipt.clause.as_ref()?;
        if !catalogue.clause(&clause.id)?.deletion_request {
            return None;
        }
        Some(Self {
            request_id: Uuid::new_v4(),
            requested_at: receipt.timestamp.clone(),
            clause: clause.clone(),
            installation_id,
            purposes: receipt.purposes.iter().map(|p| p.purpose.clone()).collect(),
        })
    }
}
