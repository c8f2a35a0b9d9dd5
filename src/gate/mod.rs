//! The gate: the one place a record becomes something the store accepts.
//!
//! [`Gate::admit`] checks a collector's or a component's record against the
//! catalogue (unknown purposes, undeclared fields and wrong types are
//! refused), applies the fields' transforms, refuses a value that does not
//! fit its field's declaration or looks like personal data the declaration
//! does not allow (counted per purpose, never kept, never logged: the
//! refusal names the field and the kind, not the value), asks the current
//! consent snapshot whether its purpose may send,
//! randomises the fields that declare local differential privacy
//! (`privacy::ldp`: the true value is gone before the record is built, so
//! it never reaches the store), spends the purpose's privacy budget for
//! the day (a report past it is not sent),
//! and only then builds a [`GatedRecord`], tagged with the clause, version
//! and text digest that allowed it. `GatedRecord` has private fields and no
//! public constructor, so no other path can queue an ungated record.
//!
//! Consent is a value here, not a file read: the registry is evaluated once
//! per change ([`Gate::publish`]) and published as an immutable snapshot
//! that hot paths load without a lock (`arc-swap`). The gate never reads the
//! consent file itself beyond asking `consent` to evaluate it.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use std::path::Path;

use crate::catalogue::{Catalogue, CheckError, ERASURE_KEY, Purpose};
use crate::clock::rfc3339;
use crate::consent::{Decision, Jurisdiction, Registry};
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::privacy::{self, HashKey};
use crate::record::{FieldValue, Record};

mod direct;
mod ldp;

pub use direct::{Drafts, GatedLine};

use ldp::Randomised;
pub use ldp::{PRIVACY_BUDGET, Spent};

/// A record that passed the catalogue check and an allowed decision, with
/// its fields already in wire form. Only [`Gate::admit`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedRecord {
    purpose: String,
    clause: String,
    clause_version: u32,
    clause_sha256: String,
    collected_at: String,
    fields_json: String,
}

impl GatedRecord {
    pub fn purpose(&self) -> &str {
        &self.purpose
    }
    pub fn clause(&self) -> &str {
        &self.clause
    }
    pub fn clause_version(&self) -> u32 {
        self.clause_version
    }
    pub fn clause_sha256(&self) -> &str {
        &self.clause_sha256
    }
    pub fn collected_at(&self) -> &str {
        &self.collected_at
    }
    /// The record's `fields` object, serialized JSON.
    pub fn fields_json(&self) -> &str {
        &self.fields_json
    }
    /// Bytes this record counts for in the queue's bounds
    /// ([`crate::record::line::size`] of the line it is stored as).
    pub fn size(&self) -> usize {
        use crate::record::line;
        line::size(
            &self.purpose,
            &self.clause,
            line::len(&self.collected_at, &self.fields_json),
        ) as usize
    }
}

/// A gated record made up for unit tests of the store.
#[cfg(test)]
pub(crate) fn test_record(purpose: &str, n: i64) -> GatedRecord {
    GatedRecord {
        purpose: purpose.into(),
        clause: "eula".into(),
        clause_version: 1,
        clause_sha256: "0".repeat(64),
        collected_at: "2026-01-01T00:00:00Z".into(),
        fields_json: format!("{{\"n\":{n}}}"),
    }
}

#[cfg(test)]
impl GatedRecord {
    /// This record with `fields_json` as its fields instead.
    pub(crate) fn with_fields(mut self, fields_json: String) -> Self {
        self.fields_json = fields_json;
        self
    }
}

/// Why a record did not pass the gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The record is malformed for the catalogue: a bug in the sender.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The purpose may not send now; the record is discarded, not queued.
    #[error("purpose `{purpose}` is not allowed: {reason}")]
    NotAllowed { purpose: String, reason: String },
}

/// Records refused for a value (`personal_data`, `out_of_shape`), or
/// past their purpose's privacy budget (`privacy_budget`), per purpose
/// and code: counts only, never what was refused.
pub type RefusedValues = BTreeMap<String, BTreeMap<String, u64>>;

/// The catalogue and the current consent decisions.
pub struct Gate {
    catalogue: Catalogue,
    decisions: ArcSwap<Registry>,
    /// The per-installation key of `keyed_hash` fields; until it is set,
    /// such fields are dropped.
    hash_key: std::sync::OnceLock<HashKey>,
    /// Each clause's erasure key now (`privacy::erasure_key`), put in the
    /// `erasure_key` field of its records; replaced at each withdrawal.
    /// Until a clause's is set, its purposes that carry one send nothing.
    erasure_keys: ArcSwap<BTreeMap<String, uuid::Uuid>>,
    /// Since this gate was made (the daemon's start). Locked only on the
    /// refusal path.
    refused: Mutex<RefusedValues>,
    /// Reports sent today (UTC) per purpose with a privacy budget.
    spent: Mutex<BTreeMap<String, Spent>>,
}

impl Gate {
    /// A gate over `catalogue` publishing `registry`.
    pub fn with_registry(catalogue: Catalogue, registry: Registry) -> Self {
        Self {
            catalogue,
            decisions: ArcSwap::from_pointee(registry),
            hash_key: std::sync::OnceLock::new(),
            erasure_keys: ArcSwap::default(),
            refused: Mutex::default(),
            spent: Mutex::default(),
        }
    }

    /// Sets the installation's key for `keyed_hash` fields (once).
    pub fn set_hash_key(&self, key: HashKey) {
        let _ = self.hash_key.set(key);
    }

    /// Puts `key` in use as `clause`'s erasure key: the records it allows
    /// from now on carry it (at start, and after each withdrawal).
    pub fn set_erasure_key(&self, clause: &str, key: uuid::Uuid) {
        self.erasure_keys.rcu(|keys| {
            let mut keys = BTreeMap::clone(keys);
            keys.insert(clause.to_owned(), key);
            keys
        });
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The decisions as of the last refresh. Lock-free; hold the `Arc` for
    /// as long as one consistent view is needed.
    pub fn registry(&self) -> Arc<Registry> {
        self.decisions.load_full()
    }

    /// Whether `purpose` may send now (lock-free, no allocation).
    pub fn is_allowed(&self, purpose: &str) -> bool {
        self.decisions.load().is_allowed(purpose)
    }

    /// Publishes `registry` (already evaluated by the caller), unless a
    /// newer generation is in force already: a publication never replaces
    /// a newer one. Returns whether it was published.
    pub fn publish(&self, registry: Registry) -> bool {
        let new = Arc::new(registry);
        let previous = self.decisions.rcu(|current| {
            if current.generation() > new.generation() {
                Arc::clone(current)
            } else {
                Arc::clone(&new)
            }
        });
        previous.generation() <= new.generation()
    }

    /// Checks `record` against the catalogue (its fields' types, then each
    /// value as it would be stored against its field's declaration), then
    /// against the consent snapshot. A catalogue problem is reported before
    /// consent: a sender's bug shows even while its purpose is blocked.
    pub fn admit(&self, record: &Record) -> Result<GatedRecord, Refusal> {
        let purpose = self.purpose_of(record)?;
        let record = purpose.admissible(record)?;
        let fields = self.screened(purpose, &record)?;
        let registry = self.decisions.load();
        let decision = registry.decision(&record.purpose);
        self.admit_checked(purpose, &record, &fields, decision)
    }

    /// As [`Gate::admit`] under a decision the caller already holds (one
    /// snapshot for a whole collection run).
    pub fn admit_with(&self, record: &Record, decision: &Decision) -> Result<GatedRecord, Refusal> {
        let purpose = self.purpose_of(record)?;
        let record = purpose.admissible(record)?;
        let fields = self.screened(purpose, &record)?;
        self.admit_checked(purpose, &record, &fields, Some(decision))
    }

    /// As [`Gate::admit`] under `registry` instead of the published
    /// snapshot: the rest of an ingest chunk after a line that reported an
    /// activation is gated under the snapshot with that activation
    /// (`Registry::with_activation`), which the consent owner publishes
    /// once the chunk is committed.
    pub fn admit_under(
        &self,
        record: &Record,
        registry: &Registry,
    ) -> Result<GatedRecord, Refusal> {
        let purpose = self.purpose_of(record)?;
        let record = purpose.admissible(record)?;
        let fields = self.screened(purpose, &record)?;
        self.admit_checked(
            purpose,
            &record,
            &fields,
            registry.decision(&record.purpose),
        )
    }

    /// The catalogue's declaration of `record`'s purpose, looked up once
    /// for every check of the record.
    fn purpose_of(&self, record: &Record) -> Result<&Purpose, Refusal> {
        self.catalogue
            .purpose(&record.purpose)
            .ok_or_else(|| CheckError::UnknownPurpose(record.purpose.clone()).into())
    }

    /// Records refused for a value since this gate was made, per purpose
    /// and code (`status` shows them).
    pub fn refused(&self) -> RefusedValues {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count_refusal(&self, purpose: &str, code: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *refused
            .entry(purpose.to_owned())
            .or_default()
            .entry(code.to_owned())
            .or_default() += 1;
    }

    /// The fields of a record [`Purpose::admissible`] passed (declared,
    /// of their declared types) as they may be stored: minimised, each
    /// fitting its field's declaration, and randomised
    /// where the field declares local differential privacy. A value that
    /// does not fit is counted by kind and never kept.
    fn screened<'r>(
        &self,
        purpose: &Purpose,
        record: &'r Record,
    ) -> Result<Cow<'r, crate::record::Fields>, Refusal> {
        let fields = self.minimised(purpose, record);
        let judged = purpose
            .judge(&fields)
            .map_err(Randomised::from)
            .and_then(|()| self.randomised(purpose, fields));
        judged.map_err(|err| match err {
            Randomised::Unfit(err) => {
                self.count_refusal(&record.purpose, err.code());
                err.into()
            }
            Randomised::NoRandomness(err) => Refusal::NotAllowed {
                purpose: record.purpose.clone(),
                reason: err.to_string(),
            },
        })
    }

    fn admit_checked(
        &self,
        declared: &Purpose,
        record: &Record,
        fields: &crate::record::Fields,
        decision: Option<&Decision>,
    ) -> Result<GatedRecord, Refusal> {
        let not_allowed = |reason: &str| Refusal::NotAllowed {
            purpose: record.purpose.clone(),
            reason: reason.to_owned(),
        };
        let (clause, version, sha) = allowed(declared, decision)?;
        if !self.spend(declared) {
            return Err(not_allowed(
                "its privacy budget for today (UTC) is spent: the catalogue's reports_per_day were sent",
            ));
        }
        let fields = self
            .with_erasure_key(declared, clause, fields)
            .ok_or_else(|| not_allowed("its clause's erasure key is not known yet"))?;
        Ok(GatedRecord {
            purpose: record.purpose.clone(),
            clause: clause.to_owned(),
            clause_version: version,
            clause_sha256: sha.to_owned(),
            collected_at: rfc3339(record.collected_at),
            fields_json: serde_json::to_string(&*fields).expect("fields always serialize"),
        })
    }

    /// `fields` with the allowing clause's erasure key, for a purpose that
    /// carries one (whatever the record held there: the key is the
    /// gate's); `None` when that key is not known, so that no record
    /// leaves without what its deletion request will name.
    fn with_erasure_key<'f>(
        &self,
        purpose: &Purpose,
        clause: &str,
        fields: &'f crate::record::Fields,
    ) -> Option<Cow<'f, crate::record::Fields>> {
        if purpose.field(ERASURE_KEY).is_none() {
            return Some(Cow::Borrowed(fields));
        }
        let key = *self.erasure_keys.load().get(clause)?;
        let mut fields = fields.clone();
        fields.insert(ERASURE_KEY.into(), FieldValue::Uuid(key));
        Some(Cow::Owned(fields))
    }

    /// The record's fields after every transform the catalogue declares:
    /// what may be stored. A value a transform cannot make safe is left out.
    fn minimised<'r>(
        &self,
        purpose: &Purpose,
        record: &'r Record,
    ) -> Cow<'r, crate::record::Fields> {
        let transform = |name: &str| purpose.field(name).and_then(|f| f.transform);
        if !purpose.transforms() || record.fields.keys().all(|name| transform(name).is_none()) {
            return Cow::Borrowed(&record.fields);
        }
        let key = self.hash_key.get();
        // A copy of the tree (no sort, no rebuild), each transformed value
        // replaced in place or, when its transform keeps nothing, removed.
        let mut fields = record.fields.clone();
        fields.retain(|name, value| match transform(name) {
            None => true,
            Some(transform) => match privacy::apply(transform, value, key) {
                Some(kept) => {
                    *value = kept;
                    true
                }
                None => false,
            },
        });
        Cow::Owned(fields)
    }
}

/// The clause, version and digest of `decision` when it allows `purpose`;
/// otherwise why the record is not allowed (`Gate::admit` and
/// `Drafts::admit` alike).
fn allowed<'d>(
    purpose: &Purpose,
    decision: Option<&'d Decision>,
) -> Result<(&'d str, u32, &'d str), Refusal> {
    let not_allowed = |reason: &str| Refusal::NotAllowed {
        purpose: purpose.id.clone(),
        reason: reason.to_owned(),
    };
    match decision {
        None => Err(not_allowed("purpose is not in the catalogue")),
        Some(Decision::Allowed {
            purpose: allowed,
            clause,
            version,
            digest,
            ..
        }) if *allowed == purpose.id => Ok((clause, *version, digest)),
        Some(Decision::Allowed { .. }) => Err(not_allowed("the decision is for another purpose")),
        Some(blocked) => Err(not_allowed(blocked.reason())),
    }
}

/// Reads `consent_file` and evaluates it for `jurisdiction`. An unusable
/// file allows nothing (and the registry says why, so the queue is held).
pub fn evaluate(
    consent_file: &Path,
    jurisdiction: Jurisdiction,
    catalogue: &Catalogue,
) -> Registry {
    crate::consent::Reading::of(consent_file, catalogue).evaluate(catalogue, jurisdiction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Region;
    use crate::consent::Consents;
    use crate::privacy::personal::Kind;

    fn gate(accept_eula: bool) -> Gate {
        let catalogue = Catalogue::embedded();
        let mut consents = Consents::default();
        if accept_eula {
            consents.accept_for_tests(&catalogue, "eula");
        }
        let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
        Gate::with_registry(catalogue, registry)
    }

    #[test]
    fn an_allowed_record_carries_its_clause() {
        let gate = gate(true);
        let mut record = Record::new("update_identity");
        record.set("product_id", FieldValue::String("p".into()));
        let gated = gate.admit(&record).unwrap();
        assert_eq!(gated.clause(), "eula");
        assert_eq!(gated.fields_json(), r#"{"product_id":"p"}"#);
        assert_eq!(
            gated.clause_sha256(),
            gate.catalogue().clause("eula").unwrap().text_sha256
        );
    }

    #[test]
    fn a_blocked_purpose_is_refused_and_an_undeclared_field_first() {
        let gate = gate(false);
        let mut record = Record::new("update_identity");
        record.set("product_id", FieldValue::String("p".into()));
        assert!(matches!(
            gate.admit(&record),
            Err(Refusal::NotAllowed { .. })
        ));
        record.set("hostname", FieldValue::String("h".into()));
        assert!(matches!(gate.admit(&record), Err(Refusal::Check(_))));
    }

    fn install_task(error_type: &str) -> Record {
        let mut record = Record::new("installation_errors");
        let string = |s: &str| FieldValue::String(s.into());
        record
            .set("task_type", string("install"))
            .set("task_status", string("failed"))
            .set("error_type", string(error_type));
        record
    }

    #[test]
    fn a_value_its_field_does_not_allow_is_refused_counted_and_never_shown() {
        let gate = gate(true);
        assert!(gate.admit(&install_task("disk_full")).is_ok());
        let refusal = gate.admit(&install_task("alice@example.com")).unwrap_err();
        assert!(
            matches!(
                &refusal,
                Refusal::Check(CheckError::PersonalData {
                    kind: Kind::EmailAddress,
                    ..
                })
            ),
            "{refusal:?}"
        );
        let message = refusal.to_string();
        assert!(
            message.contains("installation_errors.error_type"),
            "{message}"
        );
        assert!(message.contains("an e-mail address"), "{message}");
        assert!(!message.contains("alice"), "{message}");
        let refusal = gate.admit(&install_task("two words")).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::Check(CheckError::OutOfShape { .. })
        ));
        // Before consent: refused for the value while the purpose is blocked.
        let blocked = self::gate(false);
        let mut record = install_task("00:1a:2b:3c:4d:5e");
        let decision = blocked.registry().decide("installation_errors");
        assert!(matches!(
            blocked.admit_with(&record, &decision),
            Err(Refusal::Check(CheckError::PersonalData { .. }))
        ));
        record.set("error_type", FieldValue::String("io".into()));
        assert!(matches!(
            blocked.admit(&record),
            Err(Refusal::NotAllowed { .. })
        ));
        let counts = gate.refused();
        assert_eq!(counts.len(), 1);
        let codes = &counts["installation_errors"];
        assert_eq!((codes["personal_data"], codes["out_of_shape"]), (1, 1));
        assert_eq!(blocked.refused()["installation_errors"]["personal_data"], 1);
    }

    #[test]
    fn a_clause_s_records_carry_its_erasure_key_and_none_leaves_without_it() {
        let catalogue = Catalogue::embedded();
        let mut consents = Consents::default();
        consents.accept_for_tests(&catalogue, "eula");
        consents.accept_for_tests(&catalogue, "marketing");
        let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
        let gate = Gate::with_registry(catalogue, registry);
        let mut record = Record::new("promotions");
        record.set("settings_id", FieldValue::String("s-1".into()));
        // No key known yet: nothing leaves that its request could not name.
        assert!(matches!(
            gate.admit(&record),
            Err(Refusal::NotAllowed { reason, .. }) if reason.contains("erasure key")
        ));
        let key = uuid::Uuid::new_v4();
        gate.set_erasure_key("marketing", key);
        let gated = gate.admit(&record).unwrap();
        let fields: serde_json::Value = serde_json::from_str(gated.fields_json()).unwrap();
        assert_eq!(fields["erasure_key"], key.to_string());
        // Whatever the record held there, the key is the gate's.
        record.set("erasure_key", FieldValue::Uuid(uuid::Uuid::new_v4()));
        let fields: serde_json::Value =
            serde_json::from_str(gate.admit(&record).unwrap().fields_json()).unwrap();
        assert_eq!(fields["erasure_key"], key.to_string());
        // A purpose without the field gets none.
        let mut update = Record::new("update_identity");
        update.set("product_id", FieldValue::String("p".into()));
        assert!(
            !gate
                .admit(&update)
                .unwrap()
                .fields_json()
                .contains("erasure_key")
        );
    }

    #[test]
    fn a_scrubbed_path_is_looked_at_after_scrubbing() {
        let gate = gate(true);
        let mut record = Record::new("ksn_threat_reports");
        let path = |p: &str| FieldValue::String(p.into());
        record.set("file_path", path("/home/alice/Downloads/a.exe"));
        let purpose = gate.purpose_of(&record).unwrap();
        let stored = gate.screened(purpose, &record).unwrap();
        assert_eq!(stored["file_path"], path("~/Downloads"));
        record.set("file_path", path("/var/mail/alice@example.com/a.eml"));
        assert!(matches!(
            gate.screened(purpose, &record),
            Err(Refusal::Check(CheckError::PersonalData {
                kind: Kind::EmailAddress,
                ..
            }))
        ));
    }

    #[test]
    fn a_decision_for_another_purpose_never_admits() {
        let gate = gate(true);
        let decision = gate.registry().decide("update_identity");
        let record = Record::new("geo_distribution");
        assert!(gate.admit_with(&record, &decision).is_err());
    }
}
