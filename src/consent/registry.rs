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

/// Why a clause does not allow a purpose now: the reason its decision
/// shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotInEffect {
    #[error("{clause} not accepted")]
    NotAccepted { clause: String },
    #[error(
        "{clause} accepted at version {accepted} but catalogue is at version {current}: renewal needed"
    )]
    Outdated {
        clause: String,
        accepted: u32,
        current: u32,
    },
    #[error(
        "{clause} accepted at version {accepted}, newer than the catalogue's version {current} (a newer catalogue, or a mistyped version): queued data is held, nothing is sent"
    )]
    Newer {
        clause: String,
        accepted: u32,
        current: u32,
    },
    #[error(
        "{clause} version {current} was accepted with a text_sha256 this catalogue does not have (a different text, or a mistyped digest): queued data is held until it is renewed"
    )]
    OtherText { clause: String, current: u32 },
    #[error("{clause} requires {required}, which is not in the catalogue")]
    UnknownRequirement { clause: String, required: String },
    #[error("{clause} requires {required}: {why}")]
    Requirement {
        clause: String,
        required: String,
        why: Box<NotInEffect>,
    },
    #[error("{clause} requires {requires}, none of which applies in region {region}")]
    NoRequirementApplies {
        clause: String,
        requires: String,
        region: Region,
    },
    #[error(
        "{clause} was accepted before consentry recorded what an acceptance covers: renewal needed"
    )]
    ScopeUnknown { clause: String },
    #[error(
        "{clause} now also covers {added}, added since it was accepted: renewal needed (the data is held)"
    )]
    Widened { clause: String, added: String },
}

/// Ok(reason) when `clause` and everything it requires are accepted as the
/// catalogue has them now.
fn clause_in_effect(
    catalogue: &Catalogue,
    consents: &Consents,
    clause: &Clause,
    region: Region,
) -> Result<String, NotInEffect> {
    let own = acceptance_matches(consents, clause)?;
    let mut applicable = false;
    for required in &clause.requires {
        let Some(required_clause) = catalogue.clause(required) else {
            return Err(NotInEffect::UnknownRequirement {
                clause: clause.id.clone(),
                required: required.clone(),
            });
        };
        // Requirements name each region's edition (eula, eula_regional):
        // the ones that apply in this region must be accepted.
        if !required_clause.applies_in(region) {
            continue;
        }
        applicable = true;
        acceptance_matches(consents, required_clause).map_err(|why| NotInEffect::Requirement {
            clause: clause.id.clone(),
            required: required.clone(),
            why: Box::new(why),
        })?;
    }
    if !clause.requires.is_empty() && !applicable {
        return Err(NotInEffect::NoRequirementApplies {
            clause: clause.id.clone(),
            requires: clause.requires.join(" or "),
            region,
        });
    }
    Ok(own)
}

/// Whether the acceptance of `clause` covered every field `purpose` carries
/// now: a catalogue that widened the clause since sends nothing new until
/// it is accepted again. A purpose that only narrowed needs nothing.
fn covers(consents: &Consents, clause: &Clause, purpose: &Purpose) -> Result<(), NotInEffect> {
    let id = &clause.id;
    let Some(scope) = consents.get(id).and_then(|a| a.scope.as_ref()) else {
        return Err(NotInEffect::ScopeUnknown { clause: id.clone() });
    };
    let added: Vec<String> = purpose
        .fields
        .iter()
        .map(|f| format!("{}.{}", purpose.id, f.name))
        .filter(|item| !scope.contains(item))
        .collect();
    if added.is_empty() {
        Ok(())
    } else {
        Err(NotInEffect::Widened {
            clause: id.clone(),
            added: added.join(", "),
        })
    }
}

fn acceptance_matches(consents: &Consents, clause: &Clause) -> Result<String, NotInEffect> {
    let id = &clause.id;
    let Some(acceptance) = consents.get(id) else {
        return Err(NotInEffect::NotAccepted { clause: id.clone() });
    };
    let (accepted, current) = (acceptance.version, clause.version);
    let clause_id = || id.clone();
    if accepted < current {
        return Err(NotInEffect::Outdated {
            clause: clause_id(),
            accepted,
            current,
        });
    }
    if accepted > current {
        return Err(NotInEffect::Newer {
            clause: clause_id(),
            accepted,
            current,
        });
    }
    if acceptance.text_sha256 != clause.text_sha256 {
        return Err(NotInEffect::OtherText {
            clause: clause_id(),
            current,
        });
    }
    Ok(format!(
        "{id} accepted at version {accepted} ({}, {})",
        acceptance.accepted_at,
        acceptance.method.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Method, grant};
    use crate::document::{Document, Origin};

    struct World {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        catalogue: Catalogue,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("consent.toml");
            Self {
                _dir: dir,
                path,
                catalogue: Catalogue::embedded(),
            }
        }
        fn grant(&self, clause: &str) {
            grant(
                &self.path,
                &self.catalogue,
                Region::Global,
                clause,
                Method::Cli,
            )
            .unwrap();
        }
        /// The `update_identity` decision for this consent file under the
        /// embedded catalogue with its first `from` replaced by `to`.
        fn decide_under_edited_catalogue(&self, from: &str, to: &str) -> Decision {
            let catalogue = Catalogue::from_document(&Document {
                origin: Origin::Embedded("test"),
                text: crate::catalogue::EMBEDDED.replacen(from, to, 1),
            })
            .unwrap();
            let consents = Consents::load(&self.path, &catalogue).unwrap();
            Registry::evaluate(&catalogue, &consents, Region::Global).decide("update_identity")
        }
        fn registry(&self, region: Region) -> Registry {
            let consents = Consents::load(&self.path, &self.catalogue).unwrap();
            Registry::evaluate(&self.catalogue, &consents, region)
        }
    }

    #[test]
    fn nothing_accepted_blocks_everything() {
        let world = World::new();
        let registry = world.registry(Region::Global);
        assert!(registry.decisions().all(|d| !d.is_allowed()));
        assert_eq!(
            registry.decide("update_identity").reason(),
            "eula not accepted"
        );
    }

    #[test]
    fn eula_allows_its_purposes_but_not_ksn() {
        let world = World::new();
        world.grant("eula");
        let registry = world.registry(Region::Global);
        let decision = registry.decide("update_identity");
        assert!(decision.is_allowed(), "{decision:?}");
        assert_eq!(decision.clause(), Some("eula"));
        let ksn = registry.decide("ksn_scan_aggregates");
        assert!(!ksn.is_allowed());
        assert_eq!(ksn.reason(), "ksn not accepted");
    }

    #[test]
    fn ksn_without_eula_is_blocked_by_its_requirement() {
        let world = World::new();
        world.grant("eula");
        world.grant("ksn");
        assert!(
            world
                .registry(Region::Global)
                .is_allowed("ksn_scan_aggregates")
        );
        crate::consent::revoke(&world.path, &world.catalogue, "eula").unwrap();
        let decision = world.registry(Region::Global).decide("ksn_scan_aggregates");
        assert!(!decision.is_allowed());
        assert_eq!(decision.reason(), "ksn requires eula: eula not accepted");
    }

    #[test]
    fn older_version_needs_renewal() {
        let world = World::new();
        world.grant("eula");
        let decision = world.decide_under_edited_catalogue("version = 4", "version = 5");
        assert!(!decision.is_allowed());
        assert_eq!(
            decision.reason(),
            "eula accepted at version 4 but catalogue is at version 5: renewal needed"
        );
    }

    #[test]
    fn changed_text_at_same_version_is_not_consent() {
        let world = World::new();
        world.grant("eula");
        let decision =
            world.decide_under_edited_catalogue("real-time protection", "REAL-TIME protection");
        assert!(!decision.is_allowed());
        assert!(
            decision.reason().contains("different text"),
            "{}",
            decision.reason()
        );
    }

    #[test]
    fn only_a_withdrawal_lets_queued_data_be_purged() {
        let world = World::new();
        assert!(world.registry(Region::Global).may_purge("update_identity"));
        world.grant("eula");
        let registry = world.registry(Region::Global);
        assert!(!registry.may_purge("update_identity"), "allowed");
        assert!(
            registry.may_purge("ksn_scan_aggregates"),
            "ksn never accepted"
        );
        // A renewal that is due, or an acceptance of another text, holds.
        for (from, to) in [
            ("version = 4", "version = 5"),
            ("real-time protection", "REAL-TIME protection"),
        ] {
            let catalogue = Catalogue::from_document(&Document {
                origin: Origin::Embedded("test"),
                text: crate::catalogue::EMBEDDED.replacen(from, to, 1),
            })
            .unwrap();
            let consents = Consents::load(&world.path, &catalogue).unwrap();
            let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
            assert!(!registry.is_allowed("update_identity"));
            assert!(!registry.may_purge("update_identity"), "{from}");
        }
        // Unknown purposes and an unreadable file hold too.
        assert!(!world.registry(Region::Global).may_purge("no_such_purpose"));
        assert!(!Registry::closed(&Catalogue::embedded(), "bad").may_purge("update_identity"));
    }

    #[test]
    fn decisions_travel_flat_and_an_allowed_one_without_its_proof_is_blocked() {
        let world = World::new();
        world.grant("eula");
        let allowed = world.registry(Region::Global).decide("update_identity");
        let json = serde_json::to_value(&allowed).unwrap();
        assert_eq!(json["allowed"], true);
        assert_eq!(json["clause"], "eula");
        assert_eq!(json["basis"], "contract");
        let back: Decision = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, allowed);
        let mut forged = json;
        forged["clause_sha256"] = serde_json::Value::Null;
        let forged: Decision = serde_json::from_value(forged).unwrap();
        assert!(!forged.is_allowed(), "{forged:?}");
    }

    #[test]
    fn closed_registry_allows_nothing_and_says_why() {
        let registry = Registry::closed(&Catalogue::embedded(), "bad toml");
        assert!(registry.decisions().all(|d| !d.is_allowed()));
        assert_eq!(
            registry.unreadable(),
            Some("consent file unusable: bad toml")
        );
        assert!(!registry.decide("nope").is_allowed());
    }
}
