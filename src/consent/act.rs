//! A consent act: what a person did through `consentry consent grant`,
//! `revoke` or `decline`, declared by the command that did it, with its own
//! time and means. An act is a fact about a person's decision; a difference
//! noticed in the consent file later is only an observation (`receipt`).
//!
//! A decline is the one act that changes nothing: a clause was offered (by
//! an installer's question, say) and refused, so it stays not accepted.
//! Its receipt is the only trace that the question was asked and answered;
//! the consent file, the snapshot and the decisions are untouched.
//!
//! The command that rewrites the consent file makes the act and hands it to
//! whoever records receipts (the daemon over the control socket, or, with
//! no daemon running, the command itself under the daemon's lock), so the
//! receipt carries the act's time, not the time it was noticed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Acceptance, Method};
use crate::catalogue::Clause;

/// Which act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActKind {
    Grant,
    Revoke,
    /// Offered and refused: not accepted before, not accepted after.
    Decline,
}

/// One declared act on one clause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    pub id: Uuid,
    pub kind: ActKind,
    pub clause: String,
    /// The version and text accepted (a grant), withdrawn (a revoke;
    /// `None` when the withdrawn record could not be read) or refused (a
    /// decline: the catalogue's, as offered).
    pub version: Option<u32>,
    pub text_sha256: Option<String>,
    /// When the act was made, RFC 3339 UTC.
    pub at: String,
    /// How: `cli`, or `installer` for an installer that asked the question
    /// and calls the CLI with the answer (`--method installer`).
    pub method: String,
}

impl Act {
    /// The act of accepting `acceptance` (just written to the file).
    pub fn grant(acceptance: &Acceptance) -> Self {
        Self {
            id: Uuid::new_v4(),
            kind: ActKind::Grant,
            clause: acceptance.clause.clone(),
            version: Some(acceptance.version),
            text_sha256: Some(acceptance.text_sha256.clone()),
            at: acceptance.accepted_at.clone(),
            method: acceptance.method.as_str().to_owned(),
        }
    }

    /// The act of withdrawing `clause`, whose record was `removed` (when it
    /// could be read), made now by `method`.
    pub fn revoke(clause: &str, removed: Option<&Acceptance>, method: &str) -> Self {
        Self {
            id: Uuid::new_v4(),
            kind: ActKind::Revoke,
            clause: clause.to_owned(),
            version: removed.map(|a| a.version),
            text_sha256: removed.map(|a| a.text_sha256.clone()),
            at: crate::clock::rfc3339(std::time::SystemTime::now()),
            method: method.to_owned(),
        }
    }

    /// The act of refusing `clause` as the catalogue offers it now, made
    /// now by `method`.
    pub fn decline(clause: &Clause, method: Method) -> Self {
        Self {
            id: Uuid::new_v4(),
            kind: ActKind::Decline,
            clause: clause.id.clone(),
            version: Some(clause.version),
            text_sha256: Some(clause.text_sha256.clone()),
            at: crate::clock::rfc3339(std::time::SystemTime::now()),
            method: method.as_str().to_owned(),
        }
    }
}
