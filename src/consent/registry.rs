//! The consent registry: catalogue + consents + region → a [`Decision`] per
//! purpose, with a reason a person can read.
//!
//! This is the one place that decides. A purpose is allowed only when one of
//! its clauses applies in the region, is accepted at exactly the catalogue's
//! version with exactly the catalogue's text, and every clause it requires is
//! accepted the same way. Everything else is blocked, and says why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::file::Consents;
use super::policy::Policy;
use crate::catalogue::{ActivationMethod, Basis, Catalogue, Clause, Purpose, Region};

mod activation;
mod in_effect;

use in_effect::{clause_in_effect, covers};

/// Whether one purpose may send now, and why. An allowed decision cannot
/// lack its clause, version, digest or basis; a blocked one carries no
/// clause at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        purpose: String,
        /// The clause that allows it.
        clause: String,
        version: u32,
        /// SHA-256 of the accepted clause text: the proof that travels
        /// with every record.
        digest: String,
        basis: Basis,
        /// When and how the clause was accepted, for people.
        reason: String,
    },
    Blocked {
        purpose: String,
        reason: String,
        /// `None` for a purpose the catalogue does not have.
        basis: Option<Basis>,
        /// What becomes of what it queued.
        cause: Cause,
    },
}

/// Why a purpose is blocked, as far as its queued data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Held: something is due or unusable (a renewal, an acceptance this
    /// catalogue does not recognise, an unusable consent file); what it
    /// queued is kept until that is fixed.
    Held,
    /// No clause that could allow it is accepted, and none ever was as
    /// far as the receipts know.
    NotAccepted,
    /// Consent for it was withdrawn: a clause revoked, an opt-out signal,
    /// the administrator's policy.
    Withdrawn,
}

impl Decision {
    pub fn purpose(&self) -> &str {
        match self {
            Decision::Allowed { purpose, .. } | Decision::Blocked { purpose, .. } => purpose,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allowed { reason, .. } | Decision::Blocked { reason, .. } => reason,
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    pub fn basis(&self) -> Option<Basis> {
        match self {
            Decision::Allowed { basis, .. } => Some(*basis),
            Decision::Blocked { basis, .. } => *basis,
        }
    }

    /// Whether queued data of this purpose may be deleted: no clause that
    /// could allow it is accepted (see [`Cause`]); every other block holds.
    pub fn is_deletable(&self) -> bool {
        matches!(
            self,
            Decision::Blocked {
                cause: Cause::NotAccepted | Cause::Withdrawn,
                ..
            }
        )
    }

    /// Whether consent for it was withdrawn (not merely never given).
    pub fn is_withdrawn(&self) -> bool {
        matches!(
            self,
            Decision::Blocked {
                cause: Cause::Withdrawn,
                ..
            }
        )
    }

    /// The clause that allows it, when allowed.
    pub fn clause(&self) -> Option<&str> {
        match self {
            Decision::Allowed { clause, .. } => Some(clause),
            Decision::Blocked { .. } => None,
        }
    }

    fn with_basis(mut self, purpose_basis: Basis) -> Self {
        if let Decision::Blocked { basis, .. } = &mut self {
            *basis = Some(purpose_basis);
        }
        self
    }
}

/// The flat form `status --json` and the control protocol carry.
#[derive(Serialize, Deserialize)]
struct FlatDecision {
    purpose: String,
    allowed: bool,
    #[serde(default)]
    clause: Option<String>,
    #[serde(default)]
    clause_version: Option<u32>,
    #[serde(default)]
    clause_sha256: Option<String>,
    reason: String,
    /// Consent for it was withdrawn (its queued data deleted).
    #[serde(default)]
    withdrawn: bool,
    /// Blocked, but what it queued is kept until the block is lifted.
    #[serde(default)]
    held: bool,
    #[serde(default)]
    basis: Option<Basis>,
}

impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let flat = match self.clone() {
            Decision::Allowed {
                purpose,
                clause,
                version,
                digest,
                basis,
                reason,
            } => FlatDecision {
                purpose,
                allowed: true,
                clause: Some(clause),
                clause_version: Some(version),
                clause_sha256: Some(digest),
                reason,
                withdrawn: false,
                held: false,
                basis: Some(basis),
            },
            Decision::Blocked {
                purpose,
                reason,
                basis,
                cause,
            } => FlatDecision {
                purpose,
                allowed: false,
                clause: None,
                clause_version: None,
                clause_sha256: None,
                reason,
                withdrawn: cause == Cause::Withdrawn,
                held: cause == Cause::Held,
                basis,
            },
        };
        flat.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Decision {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let flat = FlatDecision::deserialize(deserializer)?;
        Ok(match flat {
            FlatDecision {
                purpose,
                allowed: true,
                clause: Some(clause),
                clause_version: Some(version),
                clause_sha256: Some(digest),
                reason,
                basis: Some(basis),
                ..
            } => Decision::Allowed {
                purpose,
                clause,
                version,
                digest,
                basis,
                reason,
            },
            // An "allowed" that lacks its proof is not allowed.
            flat => Decision::Blocked {
                purpose: flat.purpose,
                reason: flat.reason,
                basis: flat.basis,
                cause: match (flat.withdrawn, flat.held) {
                    (true, _) => Cause::Withdrawn,
                    (false, true) => Cause::Held,
                    (false, false) => Cause::NotAccepted,
                },
            },
        })
    }
}

/// Opt-out preference signals the agent honours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOut {
    /// `DO_NOT_TRACK=1` in the service's environment.
    pub do_not_track: bool,
    /// `global_privacy_control = true` in the agent config.
    pub global_privacy_control: bool,
}

impl OptOut {
    /// The signal that is on, by name, if any.
    fn signal(self) -> Option<&'static str> {
        if self.global_privacy_control {
            Some("Global Privacy Control")
        } else if self.do_not_track {
            Some("DO_NOT_TRACK")
        } else {
            None
        }
    }
}

/// Where the agent runs, as far as consent is concerned: the region whose
/// edition of the clauses applies, the opt-out signals that are on, and the
/// administrator's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jurisdiction {
    pub region: Region,
    pub opt_out: OptOut,
    pub policy: Policy,
}

impl From<Region> for Jurisdiction {
    fn from(region: Region) -> Self {
        Self {
            region,
            opt_out: OptOut::default(),
            policy: Policy::None,
        }
    }
}

/// Decisions for every purpose of a catalogue, evaluated once.
#[derive(Debug, Clone)]
pub struct Registry {
    decisions: BTreeMap<String, Decision>,
    /// Set when the consent file could not be read: nothing is allowed, and
    /// queued data is held (not purged) until a person fixes the file.
    unreadable: Option<String>,
    /// Set when the file was read while it may still be being written:
    /// the decisions apply (they can only narrow what is sent), but nothing
    /// is purged on their word ([`Registry::holding_purges`]).
    purges_held: bool,
    /// Set by the one publisher (`daemon::consent`); a publication never
    /// replaces a newer one (`Gate::publish`).
    generation: u64,
    /// The purposes sent only after activation by code
    /// (`Purpose::after_activation`), each with its decision by consent
    /// alone, from which [`Registry::with_activation`] decides.
    by_consent: BTreeMap<String, Decision>,
    /// How the product was last activated, as far as these decisions know.
    activation: Option<ActivationMethod>,
}

impl Registry {
    /// Decisions for every purpose in `jurisdiction` (a region, or a region
    /// with opt-out signals).
    pub fn evaluate(
        catalogue: &Catalogue,
        consents: &Consents,
        jurisdiction: impl Into<Jurisdiction>,
    ) -> Self {
        let jurisdiction = jurisdiction.into();
        if let Some(why) = jurisdiction.policy.unusable() {
            // Fail closed, and hold: an administrator's broken file is no
            // one's withdrawal.
            return Self::closed_because(
                catalogue,
                &format!("administrator policy unusable: {why}"),
            );
        }
        let decisions = catalogue
            .purposes()
            .map(|purpose| {
                let mut decision = decide_purpose(catalogue, consents, jurisdiction.region, purpose);
                if let (true, Region::UsCa, true, Some(signal)) = (
                    decision.is_allowed(),
                    jurisdiction.region,
                    purpose.sale_or_sharing,
                    jurisdiction.opt_out.signal(),
                ) {
                    // An opt-out of sale and sharing is the person's own
                    // choice: treated as a withdrawal.
                    decision = withdrawn(
                        &purpose.id,
                        format!("{signal} is on: {} is sale or sharing of personal information, opted out in us-ca", purpose.id),
                    );
                }
                if let Some(why) = decision
                    .clause()
                    .and_then(|clause| jurisdiction.policy.switches_off(&purpose.id, clause))
                {
                    // The administrator's word on the machine: treated as a
                    // withdrawal for everyone.
                    decision = withdrawn(&purpose.id, why);
                }
                (purpose.id.clone(), decision.with_basis(purpose.basis))
            })
            .collect();
        let registry = Self {
            by_consent: activation::by_consent(catalogue, &decisions),
            decisions,
            unreadable: None,
            purges_held: false,
            generation: 0,
            activation: None,
        };
        // Until someone says otherwise, the product was never activated.
        registry.with_activation(None)
    }

    /// Every purpose blocked because the consent file could not be used.
    pub fn closed(catalogue: &Catalogue, why: &str) -> Self {
        Self::closed_because(catalogue, &format!("consent file unusable: {why}"))
    }

    /// Every purpose blocked and the queue held, for `why`.
    fn closed_because(catalogue: &Catalogue, why: &str) -> Self {
        let decisions = catalogue
            .purposes()
            .map(|purpose| {
                let decision = blocked(&purpose.id, why.to_owned()).with_basis(purpose.basis);
                (purpose.id.clone(), decision)
            })
            .collect();
        Self {
            decisions,
            unreadable: Some(why.to_owned()),
            purges_held: false,
            generation: 0,
            by_consent: BTreeMap::new(),
            activation: None,
        }
    }

    /// These decisions, with every purge held: for a consent file read
    /// while it may be half-written (changed within the last second). A
    /// file caught truncated reads as nothing accepted, which withdraws
    /// everything; what it blocks is blocked at once, but its queued data
    /// is deleted only once a settled read says the same.
    pub fn holding_purges(mut self) -> Self {
        self.purges_held = true;
        self
    }

    /// The decision for `purpose`; an unknown purpose is blocked.
    pub fn decide(&self, purpose: &str) -> Decision {
        self.decisions
            .get(purpose)
            .cloned()
            .unwrap_or_else(|| blocked(purpose, "purpose is not in the catalogue".into()))
    }

    /// The decision for `purpose`, borrowed (no allocation on hot paths).
    pub fn decision(&self, purpose: &str) -> Option<&Decision> {
        self.decisions.get(purpose)
    }

    pub fn is_allowed(&self, purpose: &str) -> bool {
        self.decisions
            .get(purpose)
            .is_some_and(Decision::is_allowed)
    }

    /// Whether what `purpose` has queued may be deleted: only when consent
    /// for it is withdrawn (or was never given). A purpose this catalogue
    /// does not know, or one held for any other reason, keeps its data.
    pub fn may_purge(&self, purpose: &str) -> bool {
        self.unreadable.is_none()
            && !self.purges_held
            && self
                .decisions
                .get(purpose)
                .is_some_and(Decision::is_deletable)
    }

    /// These decisions with what the receipts know: a purpose blocked for
    /// want of an accepted clause, one of whose clauses was `withdrawn`
    /// (its last event a revoke), is withdrawn, not merely never accepted.
    pub fn knowing_withdrawals(
        mut self,
        catalogue: &Catalogue,
        withdrawn: &std::collections::BTreeSet<String>,
    ) -> Self {
        // The decisions by consent of the purposes waiting for an
        // activation too, so that the activation never hides it.
        for (purpose, decision) in self.decisions.iter_mut().chain(&mut self.by_consent) {
            let Decision::Blocked { cause, .. } = decision else {
                continue;
            };
            let revoked = catalogue
                .purpose(purpose)
                .is_some_and(|p| p.clauses.iter().any(|c| withdrawn.contains(c)));
            if *cause == Cause::NotAccepted && revoked {
                *cause = Cause::Withdrawn;
            }
        }
        self
    }

    /// Whether deletion on these decisions' word waits
    /// ([`Registry::holding_purges`]).
    pub fn purges_held(&self) -> bool {
        self.purges_held
    }

    /// The generation this snapshot was published as (0: never).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// These decisions, to be published as generation `generation`.
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.values()
    }

    /// Why the consent file could not be read, if it could not.
    pub fn unreadable(&self) -> Option<&str> {
        self.unreadable.as_deref()
    }
}

/// Blocked, with the data held.
fn blocked(purpose: &str, reason: String) -> Decision {
    blocked_by(purpose, reason, Cause::Held)
}

/// Blocked by a withdrawal: what it had queued may be purged.
fn withdrawn(purpose: &str, reason: String) -> Decision {
    blocked_by(purpose, reason, Cause::Withdrawn)
}

fn blocked_by(purpose: &str, reason: String, cause: Cause) -> Decision {
    Decision::Blocked {
        purpose: purpose.to_owned(),
        reason,
        basis: None,
        cause,
    }
}

fn decide_purpose(
    catalogue: &Catalogue,
    consents: &Consents,
    region: Region,
    purpose: &Purpose,
) -> Decision {
    let purpose_def = purpose;
    let (purpose, clause_ids) = (purpose.id.as_str(), &purpose.clauses);
    let applicable: Vec<&Clause> = clause_ids
        .iter()
        .filter_map(|id| catalogue.clause(id))
        .filter(|clause| clause.applies_in(region))
        .collect();
    if applicable.is_empty() {
        return blocked(
            purpose,
            format!("no clause allowing it applies in region {region}"),
        );
    }
    let mut first_refusal = None;
    for clause in applicable.iter().copied() {
        let in_effect = clause_in_effect(catalogue, consents, clause, region)
            .and_then(|reason| covers(consents, clause, purpose_def).map(|()| reason));
        match in_effect {
            Ok(reason) => {
                return Decision::Allowed {
                    purpose: purpose.to_owned(),
                    clause: clause.id.clone(),
                    version: clause.version,
                    digest: clause.text_sha256.clone(),
                    basis: purpose_def.basis,
                    reason,
                };
            }
            Err(why) => {
                first_refusal.get_or_insert(why.to_string());
            }
        }
    }
    let reason = first_refusal.unwrap_or_default();
    if applicable
        .iter()
        .all(|clause| consents.get(&clause.id).is_none())
    {
        blocked_by(purpose, reason, Cause::NotAccepted)
    } else {
        blocked(purpose, reason)
    }
}

#[cfg(test)]
mod tests;
