//! `installation_errors`: timely detection and correction of errors in
//! installing, removing, updating and upgrading the product, and a count of
//! users. The installer reports each task; the agent adds the product and
//! the operating system (type, version, edition). Nothing about the user.
//!
//! In the regional editions (EU, UK, Brazil, California) the same task is
//! reported under `installation_quality`, the regional EULA's narrower
//! list: the task's own fields and the country, without product or OS.

use super::{CollectContext, FieldValue, Record};
use crate::catalogue::Region;

/// The catalogue purpose.
pub const PURPOSE: &str = "installation_errors";

/// The purpose in the regional editions.
pub const REGIONAL_PURPOSE: &str = "installation_quality";

/// Task types the installer reports.
pub const TASKS: [&str; 4] = ["install", "uninstall", "update", "upgrade"];

/// Task outcomes the installer reports.
pub const STATUSES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// One installer task, as the installer reports it (already validated:
/// `task` is one of [`TASKS`], `status` one of [`STATUSES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallTask {
    pub task: String,
    pub status: String,
    pub error_type: Option<String>,
    pub error_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub campaign_id: Option<String>,
}

impl InstallTask {
    /// The record for this task, under the purpose of the region's edition
    /// (its values moved into the record, not copied).
    pub fn record(self, context: &CollectContext) -> Record {
        let mut record = if context.region == Region::Global {
            let mut record = Record::collected(PURPOSE);
            context.product_fields(&mut record);
            let facts = context.shared();
            record
                .set("os_type", FieldValue::String(facts.os_type.clone()))
                .set("os_version", FieldValue::String(facts.os_version.clone()));
            if let Some(edition) = &facts.os_edition {
                record.set("os_edition", FieldValue::String(edition.clone()));
            }
            record
        } else {
            let mut record = Record::collected(REGIONAL_PURPOSE);
            if let Some(country) = context.country_code() {
                record.set("country_code", FieldValue::String(country.into()));
            }
            record
        };
        record
            .set("task_type", FieldValue::String(self.task.into()))
            .set("task_status", FieldValue::String(self.status.into()));
        if let Some(error_type) = self.error_type {
            record.set("error_type", FieldValue::String(error_type.into()));
        }
        if let Some(campaign) = self.campaign_id {
            record.set("upgrade_campaign_id", FieldValue::String(campaign.into()));
        }
        if let Some(code) = self.error_code {
            record.set("error_code", FieldValue::Integer(code));
        }
        if let Some(duration) = self.duration_ms {
            record.set("task_duration_ms", FieldValue::Integer(duration));
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::collect::test_context;

    #[test]
    fn a_failed_upgrade_passes_the_catalogue_with_os_facts() {
        let task = InstallTask {
            task: "upgrade".into(),
            status: "failed".into(),
            error_type: Some("disk_full".into()),
            error_code: Some(1603),
            duration_ms: Some(5400),
            campaign_id: Some("spring-2026".into()),
        };
        let record = task.clone().record(&test_context(None));
        Catalogue::embedded().check(&record).unwrap();
        assert_eq!(
            record.fields["os_edition"],
            FieldValue::String("Debian GNU/Linux".into())
        );
        assert_eq!(record.fields["error_code"], FieldValue::Integer(1603));
        assert_eq!(record.fields.len(), 11);

        let mut regional = test_context(None);
        regional.region = Region::Eu;
        let record = task.record(&regional);
        assert_eq!(record.purpose, REGIONAL_PURPOSE);
        Catalogue::embedded().check(&record).unwrap();
        assert!(!record.fields.contains_key("os_type"));
        assert_eq!(record.fields["task_duration_ms"], FieldValue::Integer(5400));
    }

    #[test]
    fn a_task_carries_exactly_its_own_fields_and_the_editions_facts() {
        let names = |record: &Record| {
            record
                .fields
                .keys()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
        };
        let bare = InstallTask {
            task: "install".into(),
            status: "succeeded".into(),
            error_type: None,
            error_code: None,
            duration_ms: None,
            campaign_id: None,
        };
        let record = bare.clone().record(&test_context(None));
        assert!(record.collected);
        assert_eq!(record.purpose, PURPOSE);
        assert_eq!(
            names(&record),
            [
                "os_edition",
                "os_type",
                "os_version",
                "product_id",
                "product_version",
                "task_status",
                "task_type"
            ]
        );
        assert_eq!(
            record.fields["task_type"],
            FieldValue::String("install".into())
        );
        assert_eq!(
            record.fields["task_status"],
            FieldValue::String("succeeded".into())
        );

        let mut regional = test_context(None);
        regional.region = Region::Br;
        let country = regional.country_code();
        let record = bare.record(&regional);
        assert!(record.collected);
        let mut expected = vec!["task_status", "task_type"];
        if country.is_some() {
            expected.insert(0, "country_code");
        }
        assert_eq!(names(&record), expected);
    }
}
