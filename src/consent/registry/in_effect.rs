//! Whether one clause allows one purpose now: accepted at the catalogue's
//! version and text, with every clause it requires that applies in the
//! region, and with an acceptance that covered every field the purpose
//! carries. The reason a clause does not, as a decision shows it, is a
//! [`NotInEffect`].

use super::super::file::Consents;
use crate::catalogue::{Catalogue, Clause, Purpose, Region};

/// Why a clause does not allow a purpose now: the reason its decision
/// shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum NotInEffect {
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
pub(super) fn clause_in_effect(
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
pub(super) fn covers(
    consents: &Consents,
    clause: &Clause,
    purpose: &Purpose,
) -> Result<(), NotInEffect> {
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
