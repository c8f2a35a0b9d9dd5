//! Disclosures: the "what we send and why" document of one region, built
//! from the catalogue the agent enforces, so that what a person reads is
//! what the gate does.
//!
//! [`Disclosure::new`] turns a [`Catalogue`], a [`Region`] and the store's
//! global record age into a plain model (serializable for `--json`);
//! [`markdown`] and [`html`] render it. Every sentence that explains a
//! rule (a transform, a withdrawal, an opt-out signal) states what this
//! code base does, and nothing more: when the rule changes, the words here
//! change with it. Output is deterministic (no time stamps), so the
//! documents in `docs/disclosures/` are committed and checked for drift.
//!
//! This module never reads the consent file and never decides consent: it
//! describes what *could* be allowed in a region, not what is.

pub mod html;
pub mod markdown;
mod withdrawal;

use std::time::Duration;

use serde::Serialize;

use crate::catalogue::{
    ActivationMethod, Basis, Catalogue, Clause, ClauseKind, Contradiction, FieldType, Personal,
    Priority, Region,
};
use crate::privacy::Transform;

/// The disclosure of one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disclosure {
    pub region: Region,
    /// The clauses a person in the region can accept.
    pub clauses: Vec<ClauseDisclosure>,
    /// Every purpose a clause of the region can allow.
    pub purposes: Vec<PurposeDisclosure>,
    /// Purposes of the catalogue that nothing in this region can allow:
    /// they never send here.
    pub not_in_region: Vec<String>,
    /// Opt-out preference signals the agent honours in this region.
    pub opt_out_signals: Vec<OptOutSignal>,
    /// The store's `max_record_age`: no record waits longer, whatever its
    /// purpose.
    pub max_record_age: String,
}

/// A clause as the region has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClauseDisclosure {
    pub id: String,
    pub title: String,
    pub kind: ClauseKind,
    /// `true` for a voluntary clause: nothing it allows is sent until the
    /// person opts in.
    pub opt_in: bool,
    pub version: u32,
    pub text: String,
    pub text_sha256: String,
    /// The clauses that must also be accepted in this region.
    pub requires: Vec<String>,
    /// Whether withdrawing it sends one deletion request for what was
    /// sent under it.
    pub deletion_request: bool,
    /// What withdrawing it does to what was sent: the deletion request
    /// and the key it names, or why none is sent and what stays linkable.
    pub erasure: String,
    /// When the text says it carries no personal data while fields it
    /// allows are marked otherwise: the phrase and those fields, which the
    /// document names beside the text rather than repeat it silently.
    pub no_personal_data_claim: Option<Contradiction>,
}

/// One purpose, and everything it may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeDisclosure {
    pub id: String,
    pub title: String,
    pub basis: Basis,
    /// The clauses of this region that allow it (any one of them).
    pub clauses: Vec<String>,
    pub priority: Priority,
    /// Sale or sharing of personal information under California law.
    pub sale_or_sharing: bool,
    /// The longest a record waits in the queue before it is deleted unsent.
    pub retention: String,
    /// `purpose` when the catalogue sets a shorter limit than the store's,
    /// `store` when the store's `max_record_age` is the limit.
    pub retention_from: RetentionFrom,
    /// How to stop it, and what stopping it does.
    pub withdrawal: String,
    pub fields: Vec<FieldDisclosure>,
    /// For a purpose sent only after an activation by code: when it is
    /// sent, in words (`None`: activation does not matter).
    pub after_activation: Option<String>,
    /// For a purpose with randomised fields: its reports a day and ε a
    /// day, in words (`privacy::ldp::Budget::in_words`).
    pub privacy_budget: Option<String>,
}

/// Where a purpose's retention comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionFrom {
    Purpose,
    Store,
}

/// One field, with what happens to it before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDisclosure {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub description: String,
    pub transform: Option<Transform>,
    /// The transform, then the randomisation, in words ("sent as given"
    /// when there is neither).
    pub minimised: String,
    /// What the value is as personal data (the catalogue's mark).
    pub personal: Personal,
    /// Its local differential privacy: the mechanism and ε (`null` when
    /// the value is not randomised).
    pub ldp: Option<LdpDisclosure>,
}

/// A randomised field's mechanism and ε, for the JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LdpDisclosure {
    pub mechanism: crate::privacy::ldp::Mechanism,
    pub epsilon: crate::privacy::ldp::Epsilon,
    /// How many values its reports choose among (0 for a count).
    pub domain_size: usize,
}

/// An opt-out preference signal and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptOutSignal {
    pub name: String,
    /// How it is switched on.
    pub how: String,
    /// What it stops.
    pub effect: String,
}

impl Disclosure {
    /// The disclosure of `region` for `catalogue`, with the store's global
    /// `max_record_age`.
    pub fn new(catalogue: &Catalogue, region: Region, max_record_age: Duration) -> Self {
        let claims = catalogue.contradicted_claims();
        let clauses: Vec<ClauseDisclosure> = catalogue
            .clauses()
            .filter(|clause| in_effect_possible(catalogue, clause, region))
            .map(|clause| ClauseDisclosure {
                id: clause.id.clone(),
                title: clause.title.clone(),
                kind: clause.kind,
                opt_in: clause.kind == ClauseKind::Voluntary,
                version: clause.version,
                text: clause.text.clone(),
                text_sha256: clause.text_sha256.clone(),
                requires: applicable_requirements(catalogue, clause, region),
                deletion_request: clause.deletion_request,
                erasure: withdrawal::erasure(catalogue, clause),
                no_personal_data_claim: claims.iter().find(|c| c.clause == clause.id).cloned(),
            })
            .collect();
        let mut purposes = Vec::new();
        let mut not_in_region = Vec::new();
        for purpose in catalogue.purposes() {
            let allowing: Vec<&ClauseDisclosure> = clauses
                .iter()
                .filter(|c| purpose.clauses.contains(&c.id))
                .collect();
            if allowing.is_empty() {
                not_in_region.push(purpose.id.clone());
                continue;
            }
            let (retention, retention_from) = match purpose.retention {
                Some(own) if own.0 < max_record_age => (own.0, RetentionFrom::Purpose),
                _ => (max_record_age, RetentionFrom::Store),
            };
            purposes.push(PurposeDisclosure {
                id: purpose.id.clone(),
                title: purpose.title.clone(),
                basis: purpose.basis,
                clauses: allowing.iter().map(|c| c.id.clone()).collect(),
                priority: purpose.priority,
                sale_or_sharing: purpose.sale_or_sharing,
                retention: duration_in_words(retention),
                retention_from,
                withdrawal: withdrawal::of_purpose(purpose, &allowing, region),
                fields: purpose
                    .fields
                    .iter()
                    .map(|field| FieldDisclosure {
                        name: field.name.clone(),
                        ty: field.ty,
                        description: field.description.clone(),
                        transform: field.transform,
                        minimised: before_stored(field),
                        personal: field.personal,
                        ldp: field.ldp.as_ref().map(|ldp| LdpDisclosure {
                            mechanism: ldp.mechanism,
                            epsilon: ldp.epsilon,
                            domain_size: ldp.domain.len(),
                        }),
                    })
                    .collect(),
                after_activation: (purpose.after_activation == Some(ActivationMethod::Code))
                    .then(|| AFTER_ACTIVATION_BY_CODE.to_owned()),
                privacy_budget: purpose
                    .privacy_budget
                    .map(|budget| budget.in_words(purpose.epsilon_per_report())),
            });
        }
        Self {
            region,
            clauses,
            purposes,
            not_in_region,
            opt_out_signals: opt_out_signals(region),
            max_record_age: duration_in_words(max_record_age),
        }
    }
}

/// The registry's rule (`consent::registry`): a clause that requires
/// others is in effect only when at least one of them applies here.
fn in_effect_possible(catalogue: &Catalogue, clause: &Clause, region: Region) -> bool {
    clause.applies_in(region)
        && (clause.requires.is_empty()
            || !applicable_requirements(catalogue, clause, region).is_empty())
}

fn applicable_requirements(catalogue: &Catalogue, clause: &Clause, region: Region) -> Vec<String> {
    clause
        .requires
        .iter()
        .filter(|id| catalogue.clause(id).is_some_and(|c| c.applies_in(region)))
        .cloned()
        .collect()
}

/// What happens to a field before it is stored: its transform, then its
/// randomisation, in words.
pub fn before_stored(field: &crate::catalogue::Field) -> String {
    match (&field.ldp, field.transform) {
        (None, transform) => minimised(transform).to_owned(),
        (Some(ldp), None) => capitalised(&ldp.in_words()),
        (Some(ldp), Some(transform)) => {
            format!("{}; then {}", minimised(Some(transform)), ldp.in_words())
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A transform in words, as `privacy` applies it.
pub fn minimised(transform: Option<Transform>) -> &'static str {
    match transform {
        None => "sent as given",
        Some(Transform::Drop) => "not sent: dropped before anything is stored",
        Some(Transform::TruncateIp) => {
            "IP address truncated: an IPv4 address to its /24, an IPv6 address to its /48; a value that is not an address is not sent"
        }
        Some(Transform::CountryOnly) => {
            "country only: a locale or region code keeps its two-letter country (de-DE becomes DE); anything else is not sent"
        }
        Some(Transform::ScrubPath) => {
            "home directory removed, and the file's own name: /home/alice/Downloads/a.exe becomes ~/Downloads, so neither the user name nor the file name is sent; a network path keeps neither its server nor its share"
        }
        Some(Transform::KeyedHash) => {
            "keyed hash: HMAC-SHA-256 with a random key made once for this installation and never sent; the value itself never leaves the computer"
        }
    }
}

/// When a purpose sent only after activation by code is sent, as
/// `consent::Registry::with_activation` decides it (the catalogue's loader
/// lets a purpose wait for `code` only).
const AFTER_ACTIVATION_BY_CODE: &str = "Only after the product is activated with an activation code: nothing of it is sent before, and activating with a key file (the way to activate without sending it) stops it at once and deletes its records still queued.";

/// What `consent::registry` honours: in us-ca only, and only for
/// `sale_or_sharing` purposes.
fn opt_out_signals(region: Region) -> Vec<OptOutSignal> {
    if region != Region::UsCa {
        return Vec::new();
    }
    let effect = "every purpose marked sale or sharing is treated as withdrawn: it sends nothing and its queued records are deleted";
    vec![
        OptOutSignal {
            name: "Global Privacy Control".into(),
            how: "`global_privacy_control = true` in the agent config".into(),
            effect: effect.into(),
        },
        OptOutSignal {
            name: "Do Not Track".into(),
            how: "`DO_NOT_TRACK=1` in the agent service's environment".into(),
            effect: effect.into(),
        },
    ]
}

/// The opening paragraph: what the document is and what it promises.
fn intro(region: Region) -> String {
    format!(
        "This document is generated from the catalogue the agent enforces (`consentry disclosure --region {region}`). The agent sends nothing but the purposes below, each only while a clause that allows it is accepted, and only the fields listed, minimised as described before anything is stored."
    )
}

/// The region at a glance, one sentence a line (with `code` in
/// backticks, which each renderer marks up its own way).
fn summary(disclosure: &Disclosure) -> Vec<String> {
    let mut lines = vec![format!(
        "Clauses you can accept here: {}.",
        disclosure
            .clauses
            .iter()
            .map(|c| format!("`{}` ({})", c.id, kind_words(c)))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let opt_in: Vec<String> = disclosure
        .clauses
        .iter()
        .filter(|c| c.opt_in)
        .map(|c| format!("`{}`", c.id))
        .collect();
    if !opt_in.is_empty() {
        lines.push(format!(
            "Opt-in clauses: {}. Nothing they allow is sent until you accept them, and you can withdraw at any time.",
            opt_in.join(", ")
        ));
    }
    lines.push(format!(
        "Each field says what it is as personal data: {}.",
        [
            Personal::None,
            Personal::Pseudonymous,
            Personal::Identifying
        ]
        .map(|p| format!("{} ({})", p.as_str(), p.in_words()))
        .join("; ")
    ));
    if disclosure.opt_out_signals.is_empty() {
        lines.push("No opt-out preference signal changes what is sent in this region: the agent honours Global Privacy Control and Do Not Track in `us-ca` only, for purposes that are sale or sharing.".into());
    } else {
        lines.push(format!(
            "Opt-out preference signals honoured: {}, for every purpose that is sale or sharing under California law (see Opt-out signals).",
            disclosure
                .opt_out_signals
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    lines.push(format!(
        "A record waits at most {} in the queue, then it is deleted unsent; some purposes set a shorter limit (below).",
        disclosure.max_record_age
    ));
    if !disclosure.not_in_region.is_empty() {
        lines.push(format!(
            "Never sent in this region (no clause here allows them): {}.",
            disclosure
                .not_in_region
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    lines
}

/// The note beside a clause text that says it carries no personal data
/// while fields it allows are marked otherwise (`code` in backticks).
fn claim_note(claim: &Contradiction) -> String {
    let fields = claim
        .fields
        .iter()
        .map(|f| format!("`{}` ({})", f.field, f.personal))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "This text says \"{}\", but the agent marks these fields it allows otherwise: {fields}. The text is the vendor's; the purposes below show what each field is.",
        claim.phrase
    )
}

/// `7 days`, `36 hours`: the units a person reads, exact.
pub fn duration_in_words(duration: Duration) -> String {
    let secs = duration.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0 => humantime::format_duration(duration).to_string(),
        s if s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s % 3_600 == 0 => plural(s / 3_600, "hour"),
        s if s % 60 == 0 => plural(s / 60, "minute"),
        _ => humantime::format_duration(duration).to_string(),
    }
}

/// A basis in words.
pub fn basis_in_words(basis: Basis) -> &'static str {
    match basis {
        Basis::Contract => "contract: needed to perform the licence",
        Basis::LegitimateInterest => {
            "legitimate interest: the vendor's interest, disclosed in the licence terms"
        }
        Basis::Consent => "consent: only with your opt-in",
    }
}

/// A region as a heading names it.
pub fn region_name(region: Region) -> &'static str {
    match region {
        Region::Global => "Global edition",
        Region::Eu => "European Union",
        Region::Uk => "United Kingdom",
        Region::Br => "Brazil",
        Region::UsCa => "California (United States)",
    }
}

fn priority_word(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
    }
}

fn kind_words(clause: &ClauseDisclosure) -> &'static str {
    match clause.kind {
        ClauseKind::Eula => "licence agreement",
        ClauseKind::Voluntary => "voluntary, opt-in",
    }
}

#[cfg(test)]
mod tests;
