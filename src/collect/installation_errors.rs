//! `installation_errors`: timely detection and correction of errors in
//! installing, removing, updating and upgrading the product, and a count of
//! users. The installer reports each task; the agent adds the product and
//! the operating system (type, version, edition). Nothing about the user.
//!
//! In the regional editions (EU, UK, Brazil, California) the same task is
//! reported under `installation_quality`, the regional EULA's narrower
//! list: the task's own fields and the country, without product or OS.

use std::borrow::Cow;
use std::time::SystemTime;

use super::{CollectContext, Record};
use crate::catalogue::Region;
use crate::record::draft::{Draft, Value};

/// The catalogue purpose.
pub const PURPOSE: &str = "installation_errors";

/// The purpose in the regional editions.
pub const REGIONAL_PURPOSE: &str = "installation_quality";

/// Task types the installer reports.
pub const TASKS: [&str; 4] = ["install", "uninstall", "update", "upgrade"];

/// Task outcomes the installer reports.
pub const STATUSES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// The country a task's record carries in `context`'s edition: a
/// regional edition names it (when known), the global one does not.
pub fn country(context: &CollectContext) -> Option<String> {
    match context.region {
        Region::Global => None,
        _ => context.country_code(),
    }
}

/// One installer task, as the installer reports it (already validated:
/// `task` is one of [`TASKS`], `status` one of [`STATUSES`]), its text
/// borrowed from the event line where it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallTask<'a> {
    pub task: Cow<'a, str>,
    pub status: Cow<'a, str>,
    pub error_type: Option<Cow<'a, str>>,
    pub error_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub campaign_id: Option<Cow<'a, str>>,
}

impl<'a> InstallTask<'a> {
    /// The task's record under the purpose of the region's edition, as a
    /// draft (fields in name order): in the global edition the product's
    /// and the OS's facts; in a regional one `country`, when known.
    pub fn draft(&'a self, context: &'a CollectContext, country: Option<&'a str>) -> Draft<'a> {
        let text = |value: &'a Option<Cow<'a, str>>| value.as_deref().map(Value::Text);
        let integer = |value: Option<i64>| value.map(Value::Integer);
        let global = context.region == Region::Global;
        let mut draft = Draft::new(if global { PURPOSE } else { REGIONAL_PURPOSE });
        if !global {
            draft.push_some("country_code", country.map(Value::Text));
        }
        draft
            .push_some("error_code", integer(self.error_code))
            .push_some("error_type", text(&self.error_type));
        if global {
            let facts = context.shared();
            draft
                .push_some("os_edition", facts.os_edition.as_ref().map(Value::Shared))
                .push("os_type", Value::Shared(&facts.os_type))
                .push("os_version", Value::Shared(&facts.os_version))
                .push("product_id", Value::Shared(&facts.product_id))
                .push("product_version", Value::Shared(&facts.product_version));
        }
        draft
            .push_some("task_duration_ms", integer(self.duration_ms))
            .push("task_status", Value::Text(&self.status))
            .push("task_type", Value::Text(&self.task))
            .push_some("upgrade_campaign_id", text(&self.campaign_id));
        draft
    }

    /// The record for this task, under the purpose of the region's
    /// edition, made now.
    pub fn record(&self, context: &CollectContext) -> Record {
        self.draft(context, country(context).as_deref())
            .record(SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::collect::test_context;
    use crate::record::FieldValue;

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
