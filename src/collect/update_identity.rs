//! `update_identity`: identifies the software when databases and modules are
//! updated (product id, full version, licence id, installation id, and an id
//! for each start of the update task).
//!
//! Fed by the updater's `update_task` events; the periodic run is a
//! configurable fallback for products whose updater sends none. Sends
//! nothing about the user or the machine beyond these identifiers.

use uuid::Uuid;

use super::{CollectContext, CollectError, Collector, FieldValue, Record};

/// The catalogue purpose.
pub const PURPOSE: &str = "update_identity";

/// One start of the update task, as the updater reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateTask {
    /// The updater's own id for this start; a fresh one when absent.
    pub task_id: Option<Uuid>,
}

impl UpdateTask {
    /// The record for this update-task start.
    pub fn record(&self, context: &CollectContext) -> Record {
        let mut record = Record::collected(PURPOSE);
        context.product_fields(&mut record);
        record
            .set(
                "installation_id",
                FieldValue::Uuid(context.installation_id()),
            )
            .set(
                "update_task_id",
                FieldValue::Uuid(self.task_id.unwrap_or_else(Uuid::new_v4)),
            );
        if let Some(license_id) = &context.product.license_id {
            record.set("license_id", FieldValue::String(license_id.clone().into()));
        }
        record
    }
}

/// The periodic fallback: one record per run, as if the update task started.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpdateIdentity;

impl Collector for UpdateIdentity {
    fn purpose(&self) -> &'static str {
        PURPOSE
    }

    fn collect(&self, context: &CollectContext) -> Result<Vec<Record>, CollectError> {
        Ok(vec![UpdateTask::default().record(context)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::collect::test_context;

    #[test]
    fn records_pass_the_catalogue_check() {
        let catalogue = Catalogue::embedded();
        for license in [None, Some("LIC-1")] {
            let records = UpdateIdentity.collect(&test_context(license)).unwrap();
            assert_eq!(records.len(), 1);
            catalogue.check(&records[0]).unwrap();
        }
    }

    #[test]
    fn each_run_is_a_new_update_task_of_the_same_installation() {
        let context = test_context(None);
        let first = UpdateIdentity.collect(&context).unwrap().remove(0);
        let second = UpdateIdentity.collect(&context).unwrap().remove(0);
        assert_ne!(
            first.fields["update_task_id"],
            second.fields["update_task_id"]
        );
        assert_eq!(
            first.fields["installation_id"],
            second.fields["installation_id"]
        );
        assert!(!first.fields.contains_key("license_id"));
    }

    #[test]
    fn an_updater_task_id_is_kept() {
        let id = Uuid::new_v4();
        let record = UpdateTask { task_id: Some(id) }.record(&test_context(None));
        assert_eq!(record.fields["update_task_id"], FieldValue::Uuid(id));
    }
}
