//! `update_identity`: identifies the software when databases and modules are
//! updated (product id, full version, licence id, installation id, and a
//! fresh id for each start of the update task).
//!
//! Sends nothing about the user or the machine beyond these identifiers.

use uuid::Uuid;

use super::{CollectContext, CollectError, Collector, FieldValue, Record};

/// Emits one record per run: one run is one start of the update task.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpdateIdentity;

impl Collector for UpdateIdentity {
    fn purpose(&self) -> &'static str {
        "update_identity"
    }

    fn collect(&self, context: &CollectContext) -> Result<Vec<Record>, CollectError> {
        let mut record = Record::new(self.purpose());
        record
            .set("product_id", FieldValue::String(context.product.id.clone()))
            .set(
                "product_version",
                FieldValue::String(context.product.version.clone()),
            )
            .set("installation_id", FieldValue::Uuid(context.installation_id))
            .set("update_task_id", FieldValue::Uuid(Uuid::new_v4()));
        if let Some(license_id) = &context.product.license_id {
            record.set("license_id", FieldValue::String(license_id.clone()));
        }
        Ok(vec![record])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::collect::ProductConfig;

    fn context(license_id: Option<&str>) -> CollectContext {
        CollectContext {
            product: ProductConfig {
                id: "ksec".into(),
                version: "12.1.0.505".into(),
                license_id: license_id.map(str::to_owned),
            },
            installation_id: Uuid::new_v4(),
        }
    }

    #[test]
    fn records_pass_the_catalogue_check() {
        let catalogue = Catalogue::embedded();
        for license in [None, Some("LIC-1")] {
            let records = UpdateIdentity.collect(&context(license)).unwrap();
            assert_eq!(records.len(), 1);
            catalogue.check(&records[0]).unwrap();
        }
    }

    #[test]
    fn each_run_is_a_new_update_task_of_the_same_installation() {
        let context = context(None);
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
}
