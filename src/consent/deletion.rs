//! The deletion request a withdrawal makes, for a clause that declares
//! `deletion_request`: pure, made from the withdrawal's receipt in the
//! transaction that records it (`store::receipts`), with the keys its
//! records carried before the withdrawal replaces them
//! (`docs/protocol.md`, "Deletion requests").

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::receipt::{ClauseRef, Event, Receipt};
use crate::catalogue::{Catalogue, ERASURE_KEY};

/// What a withdrawal asks the receiver to erase, for a clause that
/// declares `deletion_request`: the key its records carried under it (the
/// pseudonymous installation id, or the clause's erasure key: each only
/// when the clause's purposes carry it, so the request links nothing the
/// records did not), and the purposes withdrawn. Nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRequest {
    pub request_id: Uuid,
    pub requested_at: String,
    pub clause: ClauseRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure_key: Option<Uuid>,
    pub purposes: Vec<String>,
}

/// The keys in use when a withdrawal is recorded, before it replaces them.
#[derive(Debug, Clone, Copy)]
pub struct RecordKeys {
    pub installation_id: Uuid,
    /// The withdrawn clause's erasure key, when its purposes carry one.
    pub erasure_key: Option<Uuid>,
}

impl DeletionRequest {
    /// The request a withdrawal `receipt` makes, if its clause declares
    /// one, naming the keys of `keys` its records carry.
    pub fn for_withdrawal(
        receipt: &Receipt,
        catalogue: &Catalogue,
        keys: RecordKeys,
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
            installation_id: catalogue
                .clause_carries_installation_id(&clause.id)
                .then_some(keys.installation_id),
            erasure_key: keys
                .erasure_key
                .filter(|_| catalogue.clause_carries(&clause.id, ERASURE_KEY)),
            purposes: receipt.purposes.iter().map(|p| p.purpose.clone()).collect(),
        })
    }

    /// What the request names, for a log line: `installation id` and/or
    /// `erasure key`.
    pub fn names(&self) -> String {
        let mut names = Vec::new();
        if self.installation_id.is_some() {
            names.push("the installation id");
        }
        if self.erasure_key.is_some() {
            names.push("the clause's erasure key");
        }
        names.join(" and ")
    }
}
