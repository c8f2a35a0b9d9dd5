//! Property tests of the registry over random catalogues, consent files,
//! regions, opt-out signals and policies:
//! - a purpose is allowed only when a current acceptance covering it exists
//!   for that region and policy;
//! - revoking never widens anything;
//! - a consent file that fails to parse allows nothing and lets nothing be
//!   purged.

use proptest::prelude::*;

use super::*;
use crate::catalogue::{Catalogue, ClauseKind, Region};
use crate::document::{Document, Origin};

/// One clause as generated.
#[derive(Debug, Clone)]
struct GenClause {
    voluntary: bool,
    regions: Vec<Region>,
    /// Index of an eula-kind clause this one requires, if any.
    requires: Option<usize>,
}

#[derive(Debug, Clone)]
struct GenPurpose {
    clauses: Vec<usize>,
    consent_basis: bool,
    sale_or_sharing: bool,
    fields: usize,
}

/// How a clause appears in the consent file.
#[derive(Debug, Clone, Copy)]
enum Acceptance {
    Absent,
    Current,
    Older,
    Newer,
    WrongText,
    NarrowScope,
    NoScope,
}

fn region() -> impl Strategy<Value = Region> {
    prop::sample::select(Region::ALL.to_vec())
}

fn acceptance() -> impl Strategy<Value = Acceptance> {
    prop::sample::select(vec![
        Acceptance::Absent,
        Acceptance::Absent,
        Acceptance::Absent,
        Acceptance::Current,
        Acceptance::Current,
        Acceptance::Current,
        Acceptance::Older,
        Acceptance::Newer,
        Acceptance::WrongText,
        Acceptance::NarrowScope,
        Acceptance::NoScope,
    ])
}

fn world() -> impl Strategy<Value = (Vec<GenClause>, Vec<GenPurpose>)> {
    let clause = (
        any::<bool>(),
        prop::collection::vec(region(), 0..3),
        prop::option::weighted(0.8, 0usize..4),
    )
        .prop_map(|(voluntary, regions, requires)| GenClause {
            voluntary,
            regions,
            requires,
        });
    let purpose = (
        prop::collection::vec(0usize..4, 1..3),
        any::<bool>(),
        any::<bool>(),
        1usize..4,
    )
        .prop_map(
            |(clauses, consent_basis, sale_or_sharing, fields)| GenPurpose {
                clauses,
                consent_basis,
                sale_or_sharing,
                fields,
            },
        );
    (
        prop::collection::vec(clause, 1..5),
        prop::collection::vec(purpose, 1..6),
    )
}

/// Catalogue TOML for the generated world (fixed up so the loader's rules
/// hold: requirements one level deep, on eula-kind clauses; no consent
/// purpose on an eula-kind clause).
fn catalogue_text(clauses: &[GenClause], purposes: &[GenPurpose]) -> String {
    let mut text = String::from("schema = 1\n");
    let n = clauses.len();
    for (i, clause) in clauses.iter().enumerate() {
        let kind = if clause.voluntary {
            "voluntary"
        } else {
            "eula"
        };
        let regions: Vec<String> = clause
            .regions
            .iter()
            .map(|r| format!("\"{}\"", r.as_str()))
            .collect();
        let requires = clause
            .requires
            .map(|r| r % n)
            .filter(|&r| r != i && clause.voluntary && !clauses[r].voluntary)
            .map(|r| format!("requires = [\"c{r}\"]\n"))
            .unwrap_or_default();
        text.push_str(&format!(
            "[[clause]]\nid = \"c{i}\"\ntitle = \"t\"\nkind = \"{kind}\"\nversion = 2\nregions = [{}]\n{requires}text = \"text of c{i}\"\n",
            regions.join(", ")
        ));
    }
    for (i, purpose) in purposes.iter().enumerate() {
        let mut ids: Vec<usize> = purpose.clauses.iter().map(|c| c % n).collect();
        ids.sort();
        ids.dedup();
        let consent = purpose.consent_basis && ids.iter().all(|&c| clauses[c].voluntary);
        let basis = if consent { "consent" } else { "contract" };
        let names: Vec<String> = ids.iter().map(|c| format!("\"c{c}\"")).collect();
        text.push_str(&format!(
            "[[purpose]]\nid = \"p{i}\"\ntitle = \"t\"\nbasis = \"{basis}\"\nsale_or_sharing = {}\nclauses = [{}]\n",
            purpose.sale_or_sharing,
            names.join(", ")
        ));
        for f in 0..purpose.fields {
            text.push_str(&format!(
                "[[purpose.field]]\nname = \"f{f}\"\ntype = \"string\"\nformat = \"text\"\nmax_len = 64\ndescription = \"d\"\npersonal = \"none\"\n"
            ));
        }
    }
    text
}

fn consent_text(catalogue: &Catalogue, acceptances: &[Acceptance]) -> String {
    let mut text = String::new();
    for (clause, how) in catalogue.clauses().zip(acceptances.iter().cycle()) {
        let (version, sha, scope) = match how {
            Acceptance::Absent => continue,
            Acceptance::Current => (
                clause.version,
                clause.text_sha256.clone(),
                Some(catalogue.scope_of(&clause.id)),
            ),
            Acceptance::Older => (
                clause.version - 1,
                clause.text_sha256.clone(),
                Some(catalogue.scope_of(&clause.id)),
            ),
            Acceptance::Newer => (
                clause.version + 1,
                clause.text_sha256.clone(),
                Some(catalogue.scope_of(&clause.id)),
            ),
            Acceptance::WrongText => (
                clause.version,
                "ab".repeat(32),
                Some(catalogue.scope_of(&clause.id)),
            ),
            Acceptance::NarrowScope => {
                let mut scope = catalogue.scope_of(&clause.id);
                scope.pop();
                (clause.version, clause.text_sha256.clone(), Some(scope))
            }
            Acceptance::NoScope => (clause.version, clause.text_sha256.clone(), None),
        };
        text.push_str(&format!(
            "[[accepted]]\nclause = \"{}\"\nversion = {version}\ntext_sha256 = \"{sha}\"\naccepted_at = 2026-01-01T00:00:00Z\nmethod = \"cli\"\n",
            clause.id
        ));
        if let Some(scope) = scope {
            let items: Vec<String> = scope.iter().map(|s| format!("\"{s}\"")).collect();
            text.push_str(&format!("scope = [{}]\n", items.join(", ")));
        }
    }
    text
}

fn document(text: String) -> Document {
    Document {
        origin: Origin::Embedded("proptest"),
        text,
    }
}

/// Whether `clause` is accepted exactly as the catalogue has it now and
/// covers `purpose`.
fn accepted_and_covers(
    consents: &Consents,
    catalogue: &Catalogue,
    clause: &str,
    purpose: Option<&str>,
) -> bool {
    let (Some(acceptance), Some(known)) = (consents.get(clause), catalogue.clause(clause)) else {
        return false;
    };
    let current =
        acceptance.version == known.version && acceptance.text_sha256 == known.text_sha256;
    let covers = match (purpose, &acceptance.scope) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(purpose), Some(scope)) => catalogue
            .purpose(purpose)
            .expect("a generated purpose")
            .fields
            .iter()
            .all(|f| scope.contains(&format!("{purpose}.{}", f.name))),
    };
    current && covers
}

fn jurisdiction(region: Region, signal: bool, policy: Policy) -> Jurisdiction {
    Jurisdiction {
        region,
        opt_out: OptOut {
            do_not_track: signal,
            global_privacy_control: false,
        },
        policy,
    }
}

fn policy_of(catalogue: &Catalogue, agent_off: bool, off: &[bool]) -> Policy {
    let mut bits = off.iter().cycle();
    Policy::Active {
        path: "policy.toml".into(),
        agent_off,
        clauses: catalogue
            .clauses()
            .filter(|_| *bits.next().unwrap_or(&false))
            .map(|c| c.id.clone())
            .collect(),
        purposes: catalogue
            .purposes()
            .filter(|_| *bits.next().unwrap_or(&false))
            .map(|p| p.id.clone())
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn allowed_only_with_a_current_covering_acceptance_in_region_and_policy(
        (clauses, purposes) in world(),
        acceptances in prop::collection::vec(acceptance(), 1..5),
        region in region(),
        signal in any::<bool>(),
        agent_off in prop::bool::weighted(0.1),
        off in prop::collection::vec(prop::bool::weighted(0.2), 1..8),
    ) {
        let catalogue = Catalogue::from_document(&document(catalogue_text(&clauses, &purposes)));
        prop_assume!(catalogue.is_ok());
        let catalogue = catalogue.unwrap();
        let consents = Consents::from_document(&document(consent_text(&catalogue, &acceptances)), &catalogue).unwrap();
        let policy = policy_of(&catalogue, agent_off, &off);
        let registry = Registry::evaluate(&catalogue, &consents, jurisdiction(region, signal, policy.clone()));
        for decision in registry.decisions() {
            if !decision.is_allowed() {
                continue;
            }
            let purpose = catalogue.purpose(decision.purpose()).unwrap();
            let clause_id = decision.clause().unwrap();
            let clause = catalogue.clause(clause_id).unwrap();
            prop_assert!(purpose.clauses.iter().any(|c| c == clause_id));
            prop_assert!(clause.applies_in(region));
            prop_assert!(accepted_and_covers(&consents, &catalogue, clause_id, Some(&purpose.id)));
            for required in &clause.requires {
                let required_clause = catalogue.clause(required).unwrap();
                if required_clause.applies_in(region) {
                    prop_assert!(accepted_and_covers(&consents, &catalogue, required, None));
                }
            }
            prop_assert!(policy.switches_off(&purpose.id, clause_id).is_none());
            prop_assert!(!(region == Region::UsCa && purpose.sale_or_sharing && signal));
            prop_assert!(purpose.basis != crate::catalogue::Basis::Consent || clause.kind == ClauseKind::Voluntary);
        }
    }

    #[test]
    fn revoking_never_widens(
        (clauses, purposes) in world(),
        acceptances in prop::collection::vec(acceptance(), 1..5),
        region in region(),
        revoked in 0usize..4,
    ) {
        let catalogue = Catalogue::from_document(&document(catalogue_text(&clauses, &purposes)));
        prop_assume!(catalogue.is_ok());
        let catalogue = catalogue.unwrap();
        let text = consent_text(&catalogue, &acceptances);
        let before = Consents::from_document(&document(text.clone()), &catalogue).unwrap();
        let clause = catalogue.clauses().nth(revoked % catalogue.clauses().count()).unwrap().id.clone();
        // Revoke by removing the clause's record, as `consent revoke` does.
        let kept: Vec<&str> = text
            .split("[[accepted]]\n")
            .filter(|record| !record.starts_with(&format!("clause = \"{clause}\"\n")))
            .collect();
        let after_text = kept.join("[[accepted]]\n");
        let after = Consents::from_document(&document(after_text), &catalogue).unwrap();
        prop_assert!(after.get(&clause).is_none());
        let was = Registry::evaluate(&catalogue, &before, region);
        let now = Registry::evaluate(&catalogue, &after, region);
        for decision in now.decisions() {
            if decision.is_allowed() {
                prop_assert!(was.is_allowed(decision.purpose()), "{} widened", decision.purpose());
            }
        }
    }

    #[test]
    fn a_parse_failure_allows_nothing_and_deletes_nothing(
        (clauses, purposes) in world(),
        garbage in "\\PC{0,40}",
    ) {
        let catalogue = Catalogue::from_document(&document(catalogue_text(&clauses, &purposes)));
        prop_assume!(catalogue.is_ok());
        let catalogue = catalogue.unwrap();
        let text = format!("[[accepted]\n{garbage}");
        let parsed = Consents::from_document(&document(text), &catalogue);
        prop_assert!(parsed.is_err());
        let registry = Registry::closed(&catalogue, &parsed.unwrap_err().to_string());
        for purpose in catalogue.purposes() {
            prop_assert!(!registry.is_allowed(&purpose.id));
            prop_assert!(!registry.may_purge(&purpose.id));
        }
    }
}
