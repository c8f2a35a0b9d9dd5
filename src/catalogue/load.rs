//! Parsing and validation of catalogue TOML into a [`Catalogue`].
//!
//! Every problem is collected and reported with its line and column, so a
//! catalogue author fixes them all in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::shape::Declared;
use super::{
    ActivationMethod, Basis, Catalogue, Clause, ClauseKind, Field, FieldType, Format, Personal,
    Priority, Purpose, Region, Transform,
};
use crate::clock::HumanDuration;
use crate::document::{Document, Problems};
use crate::privacy::personal::Kind;

mod erasure;
mod ldp;

use erasure::{deletion_requests_can_be_matched, erasure_key_serves_a_request};

/// The only catalogue schema this build understands.
const SCHEMA: u32 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    schema: Spanned<u32>,
    #[serde(default, rename = "clause")]
    clauses: Vec<RawClause>,
    #[serde(default, rename = "purpose")]
    purposes: Vec<RawPurpose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClause {
    id: Spanned<String>,
    title: String,
    kind: ClauseKind,
    version: Spanned<u32>,
    text: Spanned<String>,
    #[serde(default)]
    requires: Vec<Spanned<String>>,
    #[serde(default)]
    regions: Vec<Region>,
    #[serde(default)]
    deletion_request: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: Spanned<String>,
    title: String,
    basis: Basis,
    #[serde(default)]
    sale_or_sharing: bool,
    #[serde(default)]
    priority: Priority,
    clauses: Spanned<Vec<Spanned<String>>>,
    /// The longest a record of this purpose waits in the queue.
    #[serde(default)]
    retention: Option<HumanDuration>,
    #[serde(default, rename = "field")]
    fields: Vec<RawField>,
    /// Sent only after the product is activated this way (`code`).
    #[serde(default)]
    after_activation: Option<Spanned<ActivationMethod>>,
    /// ε a day and reports a day, for a purpose whose fields declare
    /// local differential privacy (`ldp`).
    #[serde(default)]
    privacy_budget: Option<Spanned<ldp::RawBudget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: FieldType,
    description: Spanned<String>,
    #[serde(default)]
    transform: Option<Spanned<Transform>>,
    /// What a string field may hold (`shape`).
    #[serde(default)]
    format: Option<Spanned<Format>>,
    #[serde(default)]
    values: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    max_len: Option<Spanned<usize>>,
    #[serde(default)]
    allows: Option<Spanned<Vec<Kind>>>,
    /// What the field is as personal data: required (`personal`); an
    /// `Option` only so that a missing one is reported at the field.
    #[serde(default)]
    personal: Option<Spanned<Personal>>,
    /// Local differential privacy (`[purpose.field.ldp]`).
    #[serde(default)]
    ldp: Option<Spanned<ldp::RawLdp>>,
}

/// An identifier people type on the command line: `[a-z0-9_-]+`.
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Where a problem is reported: its span in the document, and what.
type At<'a> = dyn FnMut(Range<usize>, String) + 'a;

pub(super) fn from_document(document: &Document) -> Result<Catalogue, Problems> {
    let raw: RawCatalogue = document.parse()?;
    let mut problems = Vec::new();
    let mut at = |span: Range<usize>, message: String| {
        problems.push(document.problem(Some(span), message));
    };

    if *raw.schema.get_ref() != SCHEMA {
        at(
            raw.schema.span(),
            format!(
                "catalogue schema {} is not supported by this build (expected {SCHEMA})",
                raw.schema.get_ref()
            ),
        );
    }
    let clauses = clauses(&raw.clauses, &mut at);
    let mut purposes = BTreeMap::new();
    for raw_purpose in &raw.purposes {
        let id = raw_purpose.id.get_ref();
        let purpose = purpose(raw_purpose, &clauses, &mut at);
        if purposes.insert(id.clone(), purpose).is_some() {
            at(
                raw_purpose.id.span(),
                format!("purpose `{id}` is defined twice"),
            );
        }
    }

    deletion_requests_can_be_matched(&raw.clauses, &purposes, &mut at);

    if problems.is_empty() {
        Ok(Catalogue { clauses, purposes })
    } else {
        Err(Problems(problems))
    }
}

/// The clauses, each checked, and their requirements resolved.
fn clauses(raw: &[RawClause], at: &mut At) -> BTreeMap<String, Clause> {
    let mut clauses = BTreeMap::new();
    for raw_clause in raw {
        let id = raw_clause.id.get_ref();
        if !is_valid_id(id) {
            at(
                raw_clause.id.span(),
                format!("clause id `{id}` must match [a-z0-9_-]+"),
            );
        }
        if *raw_clause.version.get_ref() == 0 {
            at(
                raw_clause.version.span(),
                "clause version starts at 1".into(),
            );
        }
        if raw_clause.text.get_ref().trim().is_empty() {
            at(
                raw_clause.text.span(),
                format!("clause `{id}` has an empty text"),
            );
        }
        let clause = Clause {
            id: id.clone(),
            title: raw_clause.title.clone(),
            kind: raw_clause.kind,
            version: *raw_clause.version.get_ref(),
            text: raw_clause.text.get_ref().clone(),
            text_sha256: hex::encode(Sha256::digest(raw_clause.text.get_ref().as_bytes())),
            requires: raw_clause
                .requires
                .iter()
                .map(|r| r.get_ref().clone())
                .collect(),
            regions: raw_clause.regions.clone(),
            deletion_request: raw_clause
                .deletion_request
                .as_ref()
                .is_some_and(|d| *d.get_ref()),
        };
        if clauses.insert(id.clone(), clause).is_some() {
            at(
                raw_clause.id.span(),
                format!("clause `{id}` is defined twice"),
            );
        }
    }
    requirements(raw, &clauses, at);
    clauses
}

/// Each required clause exists, requires nothing itself, and is another.
fn requirements(raw: &[RawClause], clauses: &BTreeMap<String, Clause>, at: &mut At) {
    for raw_clause in raw {
        for required in &raw_clause.requires {
            let name = required.get_ref();
            match clauses.get(name) {
                None => at(
                    required.span(),
                    format!("required clause `{name}` is not defined"),
                ),
                Some(other) if !other.requires.is_empty() => at(
                    required.span(),
                    format!(
                        "clause `{name}` itself requires other clauses; requirements are one level deep"
                    ),
                ),
                Some(_) if name == raw_clause.id.get_ref() => at(
                    required.span(),
                    format!("clause `{name}` cannot require itself"),
                ),
                Some(_) => {}
            }
        }
    }
}

/// One purpose, checked against the clauses.
fn purpose(raw: &RawPurpose, clauses: &BTreeMap<String, Clause>, at: &mut At) -> Purpose {
    let id = raw.id.get_ref();
    if !is_valid_id(id) {
        at(
            raw.id.span(),
            format!("purpose id `{id}` must match [a-z0-9_-]+"),
        );
    }
    if raw.clauses.get_ref().is_empty() {
        at(
            raw.clauses.span(),
            format!("purpose `{id}` names no clause, so nothing could ever allow it"),
        );
    }
    for clause in raw.clauses.get_ref() {
        match clauses.get(clause.get_ref()) {
            None => at(
                clause.span(),
                format!(
                    "purpose `{id}` names clause `{}`, which is not defined",
                    clause.get_ref()
                ),
            ),
            // Accepting a licence is not consent: a consent purpose
            // bundled with it could never be freely given.
            Some(known) if raw.basis == Basis::Consent && known.kind == ClauseKind::Eula => at(
                clause.span(),
                format!(
                    "purpose `{id}` rests on consent, so it cannot be allowed by `{}`, a licence agreement (no bundling); name a voluntary clause",
                    clause.get_ref()
                ),
            ),
            Some(_) => {}
        }
    }
    if raw.fields.is_empty() {
        at(raw.id.span(), format!("purpose `{id}` declares no field"));
    }
    erasure_key_serves_a_request(raw, clauses, at);
    let fields = fields(id, &raw.fields, at);
    let randomised: Vec<_> = raw
        .fields
        .iter()
        .zip(&fields)
        .filter_map(|(raw, field)| {
            Some((
                raw.ldp.as_ref()?.get_ref().epsilon_span(),
                field.ldp.as_ref()?,
            ))
        })
        .collect();
    let privacy_budget = ldp::budget(id, raw.privacy_budget.as_ref(), &randomised, at);
    Purpose {
        id: id.clone(),
        title: raw.title.clone(),
        basis: raw.basis,
        sale_or_sharing: raw.sale_or_sharing,
        priority: raw.priority,
        retention: raw.retention,
        clauses: raw
            .clauses
            .get_ref()
            .iter()
            .map(|c| c.get_ref().clone())
            .collect(),
        after_activation: after_activation(id, raw.after_activation.as_ref(), at),
        privacy_budget,
        fields,
    }
}

/// `after_activation`: only `code` means anything. A key file is how a
/// person activates without agreeing to send (seed 004), so no purpose
/// can wait for one.
fn after_activation(
    id: &str,
    raw: Option<&Spanned<ActivationMethod>>,
    at: &mut At,
) -> Option<ActivationMethod> {
    let raw = raw?;
    if *raw.get_ref() == ActivationMethod::KeyFile {
        at(
            raw.span(),
            format!(
                "purpose `{id}` cannot wait for an activation with a key file: a key file is how a person activates without agreeing to send; write after_activation = \"code\", or leave it out"
            ),
        );
        return None;
    }
    Some(*raw.get_ref())
}

/// A purpose's fields: names, types, transforms and declarations.
fn fields(id: &str, raw: &[RawField], at: &mut At) -> Vec<Field> {
    let mut names = BTreeSet::new();
    let mut fields = Vec::new();
    for field in raw {
        let name = field.name.get_ref();
        if !is_valid_id(name) {
            at(
                field.name.span(),
                format!("field name `{name}` must match [a-z0-9_-]+"),
            );
        }
        if !names.insert(name.clone()) {
            at(
                field.name.span(),
                format!("field `{id}.{name}` is declared twice"),
            );
        }
        if let Some(transform) = &field.transform
            && field.ty != FieldType::String
        {
            at(
                transform.span(),
                format!(
                    "field `{id}.{name}` is a {}; transforms apply to strings only",
                    field.ty
                ),
            );
        }
        if field.description.get_ref().trim().is_empty() {
            at(
                field.description.span(),
                format!("field `{id}.{name}` needs a description"),
            );
        }
        let declared = Declared {
            name: format!("{id}.{name}"),
            name_span: field.name.span(),
            ty: field.ty,
            transform: field.transform.as_ref(),
            format: field.format.as_ref(),
            values: field.values.as_ref(),
            max_len: field.max_len.as_ref(),
            allows: field.allows.as_ref(),
        };
        let mut loaded = Field {
            name: name.clone(),
            ty: field.ty,
            description: field.description.get_ref().clone(),
            transform: field.transform.as_ref().map(|t| *t.get_ref()),
            personal: personal(&declared, field.personal.as_ref(), at),
            shape: declared.shape(at),
            ldp: None,
            admitted: Default::default(),
        };
        if let Some(raw) = &field.ldp {
            loaded.ldp = ldp::field_ldp(&declared.name, &loaded, raw, at);
        }
        fields.push(loaded);
    }
    fields
}

/// The field's mark as personal data, which every field must give: a
/// default would hide the decision. A keyed hash is a stable pseudonym of
/// what it hashes, never `none`.
fn personal(declared: &Declared, personal: Option<&Spanned<Personal>>, at: &mut At) -> Personal {
    let name = &declared.name;
    let Some(personal) = personal else {
        at(
            declared.name_span.clone(),
            format!(
                "field `{name}` does not say what it is as personal data: add `personal`, one of {} (docs/consent.md, \"Personal data\")",
                Personal::NAMES
            ),
        );
        return Personal::Identifying;
    };
    let transform = declared.transform.map(|t| *t.get_ref());
    if transform == Some(Transform::KeyedHash) && *personal.get_ref() == Personal::None {
        at(
            personal.span(),
            format!(
                "field `{name}` is a keyed hash, the same for the same value on this installation: a pseudonym, so at least `personal = \"pseudonymous\"`"
            ),
        );
    }
    *personal.get_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Origin;

    /// `text` loaded as the catalogue file `cat.toml` (its errors located
    /// there); the loader's submodules' tests use it too.
    pub(super) fn load(text: &str) -> Result<Catalogue, String> {
        let document = Document {
            origin: Origin::File("cat.toml".into()),
            text: text.into(),
        };
        from_document(&document).map_err(|e| e.to_string())
    }

    const CLAUSE: &str = "schema = 1\n[[clause]]\nid = \"eula\"\ntitle = \"t\"\nkind = \"eula\"\nversion = 1\ntext = \"x\"\n";

    #[test]
    fn purpose_naming_an_undefined_clause_is_located() {
        let text = format!(
            "{CLAUSE}[[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"nope\"]\n[[purpose.field]]\nname = \"a\"\ntype = \"integer\"\ndescription = \"d\"\npersonal = \"none\"\n"
        );
        let err = load(&text).unwrap_err();
        assert!(err.starts_with("cat.toml:12:"), "{err}");
        assert!(err.contains("clause `nope`, which is not defined"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = format!(
            "{CLAUSE}[[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = []\n[[purpose]]\nid = \"Bad Id\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"eula\"]\n[[purpose.field]]\nname = \"a\"\ntype = \"integer\"\ndescription = \"d\"\npersonal = \"none\"\n"
        );
        let err = load(&text).unwrap_err();
        assert!(err.contains("names no clause"), "{err}");
        assert!(err.contains("declares no field"), "{err}");
        assert!(err.contains("must match [a-z0-9_-]+"), "{err}");
    }

    #[test]
    fn a_consent_purpose_bundled_with_the_eula_is_refused_at_its_clause() {
        let text = format!(
            "{CLAUSE}[[purpose]]\nid = \"ads\"\ntitle = \"t\"\nbasis = \"consent\"\nclauses = [\"eula\"]\n[[purpose.field]]\nname = \"a\"\ntype = \"integer\"\ndescription = \"d\"\npersonal = \"none\"\n"
        );
        let err = load(&text).unwrap_err();
        assert!(err.starts_with("cat.toml:12:12:"), "{err}");
        assert!(err.contains("cannot be allowed by `eula`"), "{err}");
        assert!(err.contains("no bundling"), "{err}");
        let contract = text.replace("basis = \"consent\"", "basis = \"contract\"");
        assert!(load(&contract).is_ok());
        let missing = text.replace("basis = \"consent\"\n", "");
        assert!(load(&missing).unwrap_err().contains("basis"));
    }

    #[test]
    fn retention_is_optional_and_a_bad_one_is_located() {
        let purpose = format!(
            "{CLAUSE}[[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"eula\"]\n[[purpose.field]]\nname = \"a\"\ntype = \"integer\"\ndescription = \"d\"\npersonal = \"none\"\n"
        );
        let none = load(&purpose).unwrap();
        assert_eq!(none.purpose("p").unwrap().retention, None);
        let week = load(&purpose.replace("basis", "retention = \"7d\"\nbasis")).unwrap();
        assert_eq!(
            week.purpose("p").unwrap().retention,
            Some(HumanDuration(std::time::Duration::from_secs(7 * 86_400)))
        );
        let err = load(&purpose.replace("basis", "retention = \"soon\"\nbasis")).unwrap_err();
        assert!(err.starts_with("cat.toml:11:13:"), "{err}");
        assert!(err.contains("`soon` is not a duration"), "{err}");
    }

    #[test]
    fn after_activation_is_code_or_nothing_and_a_key_file_is_located() {
        let purpose = format!(
            "{CLAUSE}[[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"eula\"]\n[[purpose.field]]\nname = \"a\"\ntype = \"integer\"\ndescription = \"d\"\npersonal = \"none\"\n"
        );
        let with =
            |value: &str| purpose.replace("basis", &format!("after_activation = {value}\nbasis"));
        assert_eq!(
            load(&purpose)
                .unwrap()
                .purpose("p")
                .unwrap()
                .after_activation,
            None
        );
        let code = load(&with("\"code\"")).unwrap();
        assert_eq!(
            code.purpose("p").unwrap().after_activation,
            Some(ActivationMethod::Code)
        );
        let err = load(&with("\"key_file\"")).unwrap_err();
        assert!(err.starts_with("cat.toml:11:20:"), "{err}");
        assert!(
            err.contains("purpose `p` cannot wait for an activation with a key file"),
            "{err}"
        );
        let err = load(&with("\"coupon\"")).unwrap_err();
        assert!(err.starts_with("cat.toml:11:"), "{err}");
        assert!(err.contains("coupon"), "{err}");
    }

    #[test]
    fn every_field_says_what_it_is_as_personal_data_or_is_refused_at_its_name() {
        let purpose = format!(
            "{CLAUSE}[[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"eula\"]\n[[purpose.field]]\nname = \"a\"\ntype = \"integer\"\ndescription = \"d\"\npersonal = \"none\"\n"
        );
        let marked = load(&purpose).unwrap();
        assert_eq!(
            marked.purpose("p").unwrap().fields[0].personal,
            Personal::None
        );
        let pseudonymous = purpose.replace("\"none\"", "\"pseudonymous\"");
        assert_eq!(
            load(&pseudonymous).unwrap().purpose("p").unwrap().fields[0].personal,
            Personal::Pseudonymous
        );

        // No default hides the decision: each missing mark is one problem,
        // at its field's name.
        let unmarked = purpose.replace("personal = \"none\"\n", "");
        let two = format!(
            "{unmarked}[[purpose.field]]\nname = \"b\"\ntype = \"integer\"\ndescription = \"d\"\n"
        );
        let err = load(&two).unwrap_err();
        assert!(
            err.contains("cat.toml:14:8: field `p.a` does not say what it is as personal data"),
            "{err}"
        );
        assert!(err.contains("cat.toml:18:8: field `p.b`"), "{err}");
        assert!(
            err.contains("\"none\", \"pseudonymous\" or \"identifying\""),
            "{err}"
        );

        let unknown = purpose.replace("\"none\"", "\"somewhat\"");
        let err = load(&unknown).unwrap_err();
        assert!(err.starts_with("cat.toml:17:"), "{err}");

        // A keyed hash is a pseudonym of what it hashes.
        let hashed = purpose.replace("\"integer\"", "\"string\"\ntransform = \"keyed_hash\"");
        let err = load(&hashed).unwrap_err();
        assert!(err.starts_with("cat.toml:18:12:"), "{err}");
        assert!(err.contains("keyed hash"), "{err}");
        assert!(load(&hashed.replace("\"none\"", "\"pseudonymous\"")).is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load(&CLAUSE.replace("text = \"x\"", "text = \"x\"\ntxet = 1")).unwrap_err();
        assert!(err.contains("txet"), "{err}");
    }

    #[test]
    fn clause_text_hash_is_sha256_of_the_text() {
        let catalogue = load(CLAUSE).unwrap();
        assert_eq!(
            catalogue.clause("eula").unwrap().text_sha256,
            // sha256("x")
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }
}
