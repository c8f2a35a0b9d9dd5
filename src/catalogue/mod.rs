//! The catalogue: clauses → purposes → fields.
//!
//! A *clause* is a text the user accepts (the EULA, the voluntary Security
//! Network statement, later regional editions), with a version and the
//! SHA-256 of its text. A *purpose* is one reason to send data, allowed by
//! any one of its clauses that applies in the configured region. A *field*
//! is one value a purpose may carry, with its type and a one-line
//! description.
//!
//! The catalogue is the only description of what may leave the machine:
//! [`Catalogue::check`] refuses any record that names an unknown purpose, an
//! undeclared field or a value of the wrong type. This module never reads
//! the consent file and never decides consent; that is `consent::registry`.

mod activation;
mod builtin;
mod check;
mod load;
mod personal;
mod shape;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::clock::HumanDuration;
use crate::document::{Document, ReadError};
pub use crate::privacy::Transform;
pub use crate::privacy::ldp::{Budget, Ldp};
use crate::privacy::personal::Kind;
use crate::record::{FieldValue, Record, draft};
pub use personal::{Contradiction, MarkedField, NO_PERSONAL_DATA_CLAIMS, Personal};
pub use shape::{Admitted, Format, LOCALE_MAX_BYTES, Misfit, Shape, Unfit};

pub use activation::ActivationMethod;
pub use builtin::BuiltIn;

/// The field that carries the installation id, filled by the agent (the
/// collect context), never by a component.
pub const INSTALLATION_ID: &str = "installation_id";

/// The field that carries a clause's erasure key, which the clause's
/// deletion request names: filled by the gate, never by a component
/// (`privacy::erasure_key`).
pub const ERASURE_KEY: &str = "erasure_key";

/// Fields only the agent fills: a component may not send them, so what a
/// deletion request names is what the records carry.
pub const AGENT_FIELDS: [&str; 2] = [INSTALLATION_ID, ERASURE_KEY];

/// The default built-in catalogue's text (`kis`).
pub const EMBEDDED: &str = builtin::KIS;

/// The territory whose edition of the clauses applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Region {
    Global,
    Eu,
    Uk,
    Br,
    UsCa,
}

impl Region {
    pub const ALL: [Region; 5] = [
        Region::Global,
        Region::Eu,
        Region::Uk,
        Region::Br,
        Region::UsCa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Region::Global => "global",
            Region::Eu => "eu",
            Region::Uk => "uk",
            Region::Br => "br",
            Region::UsCa => "us-ca",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a clause is a condition of use or an opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClauseKind {
    /// Part of the licence agreement: accepted to use the product at all.
    Eula,
    /// Opt-in, switched on and off at any time.
    Voluntary,
}

/// One text the user accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clause {
    pub id: String,
    pub title: String,
    pub kind: ClauseKind,
    /// Raised whenever the text changes; an older acceptance must be renewed.
    pub version: u32,
    pub text: String,
    /// Lower-case hex SHA-256 of `text`, exactly as stored in the catalogue.
    pub text_sha256: String,
    /// Clauses that must also be accepted for this one to take effect (the
    /// Security Network statement rides on the EULA).
    pub requires: Vec<String>,
    /// Regions where this clause applies; empty means every region.
    pub regions: Vec<Region>,
    /// Whether withdrawing it asks the receiver to erase what was sent
    /// under it (one deletion request; see `consent::receipt`).
    pub deletion_request: bool,
}

impl Clause {
    pub fn applies_in(&self, region: Region) -> bool {
        self.regions.is_empty() || self.regions.contains(&region)
    }
}

/// The type a field's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Boolean,
    Uuid,
    Timestamp,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Uuid => "uuid",
            FieldType::Timestamp => "timestamp",
        };
        f.write_str(name)
    }
}

/// One value a purpose may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub description: String,
    /// What happens to the value before it is stored, for a field that
    /// could identify a person (`privacy`). Serialized as `null` when
    /// there is none, so `consent show --json` has one shape.
    pub transform: Option<Transform>,
    /// What the value is as personal data (`none`, `pseudonymous`,
    /// `identifying`): the catalogue author's decision, required.
    pub personal: Personal,
    /// What a string value may be (`format`, `values`, `max_len`,
    /// `allows`); the gate refuses a record whose value does not fit.
    #[serde(skip)]
    pub shape: Shape,
    /// Local differential privacy: how the gate randomises the value
    /// before anything of it is stored (`privacy::ldp`). `null` when none.
    pub ldp: Option<Ldp>,
    /// The shared value this field last admitted (see [`Admitted`]).
    #[serde(skip)]
    pub admitted: Admitted,
}

/// Which records go first when the queue is full: the oldest of the
/// lowest priority.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

/// The legal basis a purpose rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Needed to perform the licence contract (identify the software for
    /// updates, verify activation).
    Contract,
    /// The vendor's legitimate interest, disclosed in the licence terms
    /// (error statistics, distribution counts).
    LegitimateInterest,
    /// Only with a freely given, specific opt-in: never bundled with the
    /// licence agreement.
    Consent,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Contract => "contract",
            Basis::LegitimateInterest => "legitimate_interest",
            Basis::Consent => "consent",
        }
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason to send data, and everything it may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purpose {
    pub id: String,
    pub title: String,
    pub basis: Basis,
    /// Sale or sharing of personal information in the sense of California
    /// law (marketing, third-party analytics): an opt-out preference signal
    /// blocks it in `us-ca`.
    pub sale_or_sharing: bool,
    /// Which records a full queue keeps longest.
    pub priority: Priority,
    /// The longest a record of this purpose waits in the queue, sent or
    /// not (`retention = "7d"`); `None`: only the store's `max_record_age`
    /// applies. The store keeps the smaller of the two.
    pub retention: Option<HumanDuration>,
    /// Any one of these clauses (that applies in the region) allows it.
    pub clauses: Vec<String>,
    pub fields: Vec<Field>,
    /// Sent only once the product was last activated this way
    /// (`after_activation = "code"`; see `activation`): before any
    /// activation it sends nothing, and after an activation with a key
    /// file it is withdrawn. `None`: activation does not matter.
    pub after_activation: Option<ActivationMethod>,
    /// ε a day and reports a day, for a purpose with randomised fields
    /// (the loader requires it then, and refuses it otherwise).
    pub privacy_budget: Option<Budget>,
}

impl Purpose {
    pub fn field(&self, name: &str) -> Option<&Field> {
        // Called for every field of every record, three times: the length
        // and the last byte tell most names apart without a `memcmp`.
        let last = name.as_bytes().last();
        self.fields.iter().find(|field| {
            field.name.len() == name.len()
                && field.name.as_bytes().last() == last
                && field.name == name
        })
    }

    /// The ε one report spends: the sum of its randomised fields' ε
    /// (sequential composition); 0 when none is randomised.
    pub fn epsilon_per_report(&self) -> f64 {
        self.fields
            .iter()
            .filter_map(|f| f.ldp.as_ref())
            .map(|l| l.epsilon.get())
            .sum()
    }
}

/// Why a record was refused by the catalogue before it could be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("purpose `{0}` is not in the catalogue")]
    UnknownPurpose(String),
    #[error("purpose `{purpose}` does not declare field `{field}`")]
    UndeclaredField { purpose: String, field: String },
    #[error("field `{purpose}.{field}` must be a {expected}, not a {found}")]
    WrongType {
        purpose: String,
        field: String,
        expected: FieldType,
        found: FieldType,
    },
    /// A value that looks like personal data its field does not allow.
    /// Names the kind, never the value.
    #[error(
        "field `{purpose}.{field}` holds what looks like {}, which the catalogue does not allow it to carry; nothing of the record was kept",
        kind.in_words()
    )]
    PersonalData {
        purpose: String,
        field: String,
        kind: Kind,
    },
    /// A value outside its field's declaration. Never shows the value.
    #[error("field `{purpose}.{field}` is {why}; nothing of the record was kept")]
    OutOfShape {
        purpose: String,
        field: String,
        why: Unfit,
    },
}

impl CheckError {
    /// The stable code an ingest error line carries (`docs/ingest.md`).
    pub fn code(&self) -> &'static str {
        match self {
            CheckError::UnknownPurpose(_) => "unknown_purpose",
            CheckError::UndeclaredField { .. } => "undeclared_field",
            CheckError::WrongType { .. } => "wrong_type",
            CheckError::PersonalData { .. } => "personal_data",
            CheckError::OutOfShape { .. } => "out_of_shape",
        }
    }
}

/// Clauses and purposes, validated: every reference resolves, ids are unique.
#[derive(Debug, Clone)]
pub struct Catalogue {
    clauses: BTreeMap<String, Clause>,
    purposes: BTreeMap<String, Purpose>,
}

impl Catalogue {
    /// The default catalogue compiled into the binary (`kis`).
    pub fn embedded() -> Self {
        Self::builtin(BuiltIn::default())
    }

    /// A catalogue compiled into the binary.
    pub fn builtin(builtin: BuiltIn) -> Self {
        let document = Document::embedded(builtin.id(), builtin.text());
        load::from_document(&document)
            .expect("the built-in catalogues are validated by their tests")
    }

    /// Reads and validates a catalogue file.
    pub fn from_file(path: &Path) -> Result<Self, ReadError> {
        let document = Document::read(path)?;
        Ok(load::from_document(&document)?)
    }

    /// Parses and validates catalogue text (used by tests and benches).
    pub fn from_document(document: &Document) -> Result<Self, crate::document::Problems> {
        load::from_document(document)
    }

    pub fn clause(&self, id: &str) -> Option<&Clause> {
        self.clauses.get(id)
    }

    pub fn clauses(&self) -> impl Iterator<Item = &Clause> {
        self.clauses.values()
    }

    /// `eula, ksn`: the clause ids, for error messages that say what would
    /// have been accepted.
    pub fn clause_ids(&self) -> String {
        comma_separated(self.clauses.keys())
    }

    /// The purpose ids, comma-separated, for error messages.
    pub fn purpose_ids(&self) -> String {
        comma_separated(self.purposes.keys())
    }

    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.get(id)
    }

    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes.values()
    }

    /// What accepting `clause` covers, as `consent show` displays it: every
    /// `purpose.field` of every purpose the clause allows. An acceptance
    /// records this, so that a catalogue that later widens the clause sends
    /// nothing new until the clause is accepted again.
    pub fn scope_of(&self, clause: &str) -> Vec<String> {
        self.purposes()
            .filter(|p| p.clauses.iter().any(|c| c == clause))
            .flat_map(|p| p.fields.iter().map(move |f| format!("{}.{}", p.id, f.name)))
            .collect()
    }

    /// Whether a purpose `clause` allows carries the installation id: then
    /// withdrawing the clause replaces the id.
    pub fn clause_carries_installation_id(&self, clause: &str) -> bool {
        self.clause_carries(clause, INSTALLATION_ID)
    }

    /// The clauses some purpose of which declares `field`.
    pub fn clauses_carrying(&self, field: &str) -> Vec<String> {
        self.clauses()
            .filter(|c| self.clause_carries(&c.id, field))
            .map(|c| c.id.clone())
            .collect()
    }

    /// Whether a purpose `clause` allows declares `field` (the installation
    /// id, the erasure key).
    pub fn clause_carries(&self, clause: &str, field: &str) -> bool {
        self.purposes()
            .filter(|p| p.clauses.iter().any(|c| c == clause))
            .any(|p| p.field(field).is_some())
    }

    /// `record` with only the fields its purpose declares (see
    /// [`Purpose::declared`]); any record of a purpose not here as it is.
    pub fn declared<'r>(&self, record: &'r Record) -> std::borrow::Cow<'r, Record> {
        match self.purpose(&record.purpose) {
            Some(purpose) => purpose.declared(record),
            None => std::borrow::Cow::Borrowed(record),
        }
    }

    /// Refuses a record that carries anything the catalogue does not declare.
    pub fn check(&self, record: &Record) -> Result<(), CheckError> {
        self.purpose(&record.purpose)
            .ok_or_else(|| CheckError::UnknownPurpose(record.purpose.clone()))?
            .check(record)
    }

    /// See [`Purpose::judge`].
    pub fn judge(&self, purpose: &str, fields: &crate::record::Fields) -> Result<(), CheckError> {
        self.purpose(purpose)
            .ok_or_else(|| CheckError::UnknownPurpose(purpose.to_owned()))?
            .judge(fields)
    }
}

fn comma_separated<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    ids.map(String::as_str).collect::<Vec<_>>().join(", ")
}

impl FieldValue {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::String(_) => FieldType::String,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::Uuid(_) => FieldType::Uuid,
            FieldValue::Timestamp(_) => FieldType::Timestamp,
        }
    }
}

impl draft::Value<'_> {
    pub fn field_type(&self) -> FieldType {
        match self {
            draft::Value::Text(_) | draft::Value::Shared(_) => FieldType::String,
            draft::Value::Integer(_) => FieldType::Integer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogue_is_valid_and_complete() {
        let document = Document::embedded("catalogue", EMBEDDED);
        let catalogue = load::from_document(&document).unwrap();
        for id in [
            "update_identity",
            "activation",
            "ksn_scan_aggregates",
            "installation_errors",
            "geo_distribution",
        ] {
            assert!(catalogue.purpose(id).is_some(), "missing purpose {id}");
        }
        assert_eq!(catalogue.clause("eula").unwrap().kind, ClauseKind::Eula);
        assert_eq!(catalogue.clause("ksn").unwrap().kind, ClauseKind::Voluntary);
        assert_eq!(
            catalogue.clause("ksn").unwrap().requires,
            vec!["eula", "eula_regional"]
        );
    }

    /// Each field tied to a sentence of its product's seed
    /// (docs/catalogue.md): seed 000's "global distribution of the
    /// Software" covers its version through the definition of "the
    /// Software"; seed 002's "territorial distribution of software" names
    /// no version.
    #[test]
    fn geo_distribution_sends_only_what_its_seed_names() {
        let names = |builtin| {
            let catalogue = Catalogue::builtin(builtin);
            let purpose = catalogue.purpose("geo_distribution").cloned();
            purpose.map(|p| p.fields.into_iter().map(|f| f.name).collect::<Vec<_>>())
        };
        assert_eq!(
            names(BuiltIn::Kis).unwrap(),
            ["product_id", "product_version", "country_code"]
        );
        assert_eq!(names(BuiltIn::Kes).unwrap(), ["product_id", "country_code"]);
        assert_eq!(names(BuiltIn::Ksv), None, "seed 004 has no such purpose");
    }

    #[test]
    fn check_refuses_undeclared_field_and_wrong_type() {
        let catalogue = Catalogue::embedded();
        let mut record = Record::new("update_identity");
        record.set("product_id", FieldValue::String("p".into()));
        assert_eq!(catalogue.check(&record), Ok(()));

        record.set("hostname", FieldValue::String("my-laptop".into()));
        assert!(matches!(
            catalogue.check(&record),
            Err(CheckError::UndeclaredField { .. })
        ));

        let mut record = Record::new("update_identity");
        record.set("installation_id", FieldValue::String("not-a-uuid".into()));
        assert!(matches!(
            catalogue.check(&record),
            Err(CheckError::WrongType { .. })
        ));

        let record = Record::new("no_such_purpose");
        assert_eq!(
            catalogue.check(&record),
            Err(CheckError::UnknownPurpose("no_such_purpose".into()))
        );
    }
}
