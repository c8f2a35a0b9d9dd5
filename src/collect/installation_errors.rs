//! `installation_errors`: timely detection and correction of errors in
//! installing, removing, updating and upgrading the product, and a count of
//! users. The installer reports each task; the agent adds the product and
//! the operating system (type, version, edition). Nothing about the user.

use super::{CollectContext, FieldValue, Record};

/// The catalogue purpose.
pub const PURPOSE: &str = "installation_errors";

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
    /// The record for this task.
    pub fn record(&self, context: &CollectContext) -> Record {
        let mut record = Record::new(PURPOSE);
        context.product_fields(&mut record);
        record
            .set("task_type", FieldValue::String(self.task.clone()))
            .set("task_status", FieldValue::String(self.status.clone()))
            .set("os_type", FieldValue::String(context.os.os_type.clone()))
            .set(
                "os_version",
                FieldValue::String(context.os.os_version.clone()),
            );
        if let Some(edition) = &context.os.os_edition {
            record.set("os_edition", FieldValue::String(edition.clone()));
        }
        if let Some(error_type) = &self.error_type {
            record.set("error_type", FieldValue::String(error_type.clone()));
        }
        if let Some(campaign) = &self.campaign_id {
            record.set("upgrade_campaign_id", FieldValue::String(campaign.clone()));
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
        let record = task.record(&test_context(None));
        Catalogue::embedded().check(&record).unwrap();
        assert_eq!(
            record.fields["os_edition"],
            FieldValue::String("Debian GNU/Linux".into())
        );
        assert_eq!(record.fields["error_code"], FieldValue::Integer(1603));
        assert_eq!(record.fields.len(), 11);
    }
}
