//! Local differential privacy at the gate: the fields a catalogue
//! declares randomised are replaced by their reports (`privacy::ldp`)
//! before the record is built, so the true value never reaches the store;
//! and each purpose with a privacy budget sends at most its
//! `reports_per_day` in a UTC day (sequential composition: the loader has
//! checked that so many reports stay within its ε a day).
//!
//! The count of today's reports is the gate's; the daemon loads it from
//! the store at start (`Gate::restore_spent`) and writes it in the same
//! transaction as the reports it counted (`store::ldp_budget`), so a
//! restart or a crash loop never starts the day afresh. This module never
//! logs or keeps a true value.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::Gate;
use crate::catalogue::{CheckError, Purpose, Unfit};
use crate::privacy;

/// A purpose's reports on one UTC day (stored by `store::ldp_budget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spent {
    /// Days since the Unix epoch (UTC).
    pub day: u64,
    pub reports: u32,
}

/// The refusal code (`status`, `Gate::refused`) of a report past its
/// purpose's privacy budget for the day.
pub const PRIVACY_BUDGET: &str = "privacy_budget";

fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// Why a record's fields could not be randomised.
pub(super) enum Randomised {
    Unfit(CheckError),
    NoRandomness(privacy::ldp::OsRandomError),
}

impl From<CheckError> for Randomised {
    fn from(err: CheckError) -> Self {
        Randomised::Unfit(err)
    }
}

impl Gate {
    /// The count of reports per purpose and day, to be stored with the
    /// reports it counts.
    pub fn spent(&self) -> BTreeMap<String, Spent> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes up the count stored before (at start): a purpose's reports
    /// already sent today still count. The larger count wins where both
    /// know the day.
    pub fn restore_spent(&self, stored: BTreeMap<String, Spent>) {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        for (purpose, old) in stored {
            let entry = spent.entry(purpose).or_default();
            if old.day > entry.day || (old.day == entry.day && old.reports > entry.reports) {
                *entry = old;
            }
        }
    }

    /// Reports sent today per purpose with a privacy budget (`status`).
    pub fn spent_today(&self) -> BTreeMap<String, u32> {
        let today = today();
        self.spent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, spent)| spent.day == today)
            .map(|(purpose, spent)| (purpose.clone(), spent.reports))
            .collect()
    }

    /// `fields` with every value whose field declares local differential
    /// privacy replaced by its randomised report, drawn from the OS's
    /// cryptographic source. The true value is dropped with `fields`.
    pub(super) fn randomised<'f>(
        &self,
        declared: &Purpose,
        fields: Cow<'f, crate::record::Fields>,
    ) -> Result<Cow<'f, crate::record::Fields>, Randomised> {
        if declared.privacy_budget.is_none() {
            return Ok(fields);
        }
        let mut rng = privacy::ldp::os_rng().map_err(Randomised::NoRandomness)?;
        let mut fields = fields.into_owned();
        for (name, value) in fields.iter_mut() {
            let Some(ldp) = declared.field(name).and_then(|f| f.ldp.as_ref()) else {
                continue;
            };
            *value = ldp.randomise(value, &mut rng).ok_or_else(|| {
                Randomised::Unfit(CheckError::OutOfShape {
                    purpose: declared.id.clone(),
                    field: name.to_string(),
                    why: Unfit::OutsideDomain,
                })
            })?;
        }
        Ok(Cow::Owned(fields))
    }

    /// Takes one of today's reports of `purpose`, if it has a privacy
    /// budget; `false` when today's are all sent (counted as a refusal).
    pub(super) fn spend(&self, declared: &Purpose) -> bool {
        let Some(budget) = declared.privacy_budget else {
            return true;
        };
        let purpose = declared.id.as_str();
        let today = today();
        let allowed = {
            let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
            let entry = spent.entry(purpose.to_owned()).or_default();
            if entry.day != today {
                *entry = Spent {
                    day: today,
                    reports: 0,
                };
            }
            let allowed = entry.reports < budget.reports_per_day;
            entry.reports += u32::from(allowed);
            allowed
        };
        if !allowed {
            self.count_refusal(purpose, PRIVACY_BUDGET);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Catalogue, Region};
    use crate::consent::{Consents, Registry};
    use crate::document::{Document, Origin};
    use crate::gate::Refusal;
    use crate::privacy::ldp::Frequencies;
    use crate::record::FieldValue;
    use crate::record::Record;

    fn gate(reports_per_day: u32, other: bool, accept: bool) -> Gate {
        let text = format!(
            "schema = 1\n[[clause]]\nid = \"eula\"\ntitle = \"t\"\nkind = \"eula\"\nversion = 1\ntext = \"x\"\n\
[[purpose]]\nid = \"geo\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"eula\"]\n\
privacy_budget = {{ epsilon_per_day = 10, reports_per_day = {reports_per_day} }}\n\
[[purpose.field]]\nname = \"country\"\ntype = \"string\"\npersonal = \"none\"\nformat = \"country\"\ndescription = \"d\"\n\
[purpose.field.ldp]\nmechanism = \"hadamard\"\nepsilon = 0.005\ndomain = [\"DE\", \"FR\", \"ZZ\"]\n{}\
[[purpose.field]]\nname = \"scans\"\ntype = \"integer\"\npersonal = \"none\"\ndescription = \"d\"\n\
[purpose.field.ldp]\nmechanism = \"geometric\"\nepsilon = 0.005\n",
            if other { "other = \"ZZ\"\n" } else { "" }
        );
        let document = Document {
            origin: Origin::File("cat.toml".into()),
            text,
        };
        let catalogue = Catalogue::from_document(&document).unwrap();
        let mut consents = Consents::default();
        if accept {
            consents.accept_for_tests(&catalogue, "eula");
        }
        let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
        Gate::with_registry(catalogue, registry)
    }

    fn geo(country: &str) -> Record {
        let mut record = Record::new("geo");
        record
            .set("country", FieldValue::String(country.into()))
            .set("scans", FieldValue::Integer(40));
        record
    }

    #[test]
    fn a_randomised_field_leaves_the_gate_only_as_its_report() {
        let gate = gate(1000, false, true);
        let ldp = gate
            .catalogue()
            .purpose("geo")
            .unwrap()
            .field("country")
            .unwrap();
        let mut tally = Frequencies::new(ldp.ldp.as_ref().unwrap()).unwrap();
        let mut counts = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let gated = gate.admit(&geo("DE")).unwrap();
            let fields: serde_json::Value = serde_json::from_str(gated.fields_json()).unwrap();
            let report = fields["country"].as_str().unwrap();
            assert!(
                !gated.fields_json().contains("DE"),
                "{}",
                gated.fields_json()
            );
            tally.add(report).unwrap();
            counts.insert(fields["scans"].as_i64().unwrap());
        }
        // At ε = 0.005 the noise is wide: 300 draws of the count are not
        // all the true 40.
        assert!(counts.len() > 10, "{counts:?}");
        assert_eq!(gate.spent_today()["geo"], 300);
    }

    #[test]
    fn a_value_outside_the_domain_is_refused_unless_other_names_one() {
        let gate = gate(10, false, true);
        let refusal = gate.admit(&geo("XK")).unwrap_err();
        assert!(
            matches!(
                &refusal,
                Refusal::Check(CheckError::OutOfShape {
                    why: Unfit::OutsideDomain,
                    ..
                })
            ),
            "{refusal:?}"
        );
        assert!(!refusal.to_string().contains("XK"), "{refusal}");
        assert_eq!(gate.refused()["geo"]["out_of_shape"], 1);
        // A value of the wrong form is refused by its declaration first.
        assert!(gate.admit(&geo("germany")).is_err());
        assert!(gate.spent_today().is_empty(), "refusals spend nothing");

        let gate = self::gate(10, true, true);
        assert!(gate.admit(&geo("XK")).is_ok());
    }

    #[test]
    fn past_reports_per_day_nothing_is_sent_and_the_refusal_is_counted() {
        let gate = gate(2, false, true);
        assert!(gate.admit(&geo("DE")).is_ok());
        assert!(gate.admit(&geo("FR")).is_ok());
        let refusal = gate.admit(&geo("DE")).unwrap_err();
        let Refusal::NotAllowed { reason, .. } = &refusal else {
            panic!("{refusal:?}");
        };
        assert!(reason.contains("privacy budget for today"), "{reason}");
        assert_eq!(gate.refused()["geo"][PRIVACY_BUDGET], 1);
        assert_eq!(gate.spent_today()["geo"], 2);

        // A purpose that may not send spends nothing.
        let blocked = self::gate(2, false, false);
        assert!(blocked.admit(&geo("DE")).is_err());
        assert!(blocked.spent_today().is_empty());
    }
}
