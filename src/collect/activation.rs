//! `activation`: verification of activation by code. When the product is
//! activated with a code, the licensing component reports it (with the
//! security virtual machine's id, where there is one) and the agent adds
//! the installation id, the time, the operating system (type, version,
//! word size) and the name of the virtual environment, detected locally.
//!
//! Activation with a key file sends nothing at all: the seed text offers it
//! precisely as the way to activate without sending this data.

use std::time::SystemTime;

use super::{CollectContext, FieldValue, Record};

/// The catalogue purpose.
pub const PURPOSE: &str = "activation";

/// How the product was activated (the catalogue's vocabulary: a purpose
/// may wait for an activation by code).
pub use crate::catalogue::ActivationMethod as Method;

/// An activation, as the licensing component reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub method: Method,
    pub code: Option<String>,
    /// Localization of the product (`en-US`).
    pub locale: Option<String>,
    pub license_edition: Option<String>,
    /// Licensing units the key may be used for.
    pub license_units_total: Option<i64>,
    /// Licensing units already in use.
    pub license_units_used: Option<i64>,
    /// The security virtual machine's own identifier (the product for
    /// virtual environments, seed 004: "SVM ID").
    pub svm_id: Option<uuid::Uuid>,
}

impl Activation {
    /// The record to send, or `None` for a key-file activation.
    pub fn record(&self, context: &CollectContext, at: SystemTime) -> Option<Record> {
        if self.method == Method::KeyFile {
            return None;
        }
        let mut record = Record::collected(PURPOSE);
        context.product_fields(&mut record);
        record
            .set(
                "installation_id",
                FieldValue::Uuid(context.installation_id()),
            )
            .set("activated_at", FieldValue::Timestamp(at))
            .set(
                "os_type",
                FieldValue::String(context.os.os_type.clone().into()),
            )
            .set(
                "os_version",
                FieldValue::String(context.os.os_version.clone().into()),
            )
            .set("os_bitness", FieldValue::Integer(context.os.os_bitness))
            .set(
                "virtual_environment",
                FieldValue::String(context.virtual_environment.clone().into()),
            );
        let locale = self.locale.as_ref().or(context.product.locale.as_ref());
        let strings = [
            ("activation_code", self.code.as_ref()),
            ("product_locale", locale),
            ("license_edition", self.license_edition.as_ref()),
        ];
        for (name, value) in strings {
            if let Some(value) = value {
                record.set(name, FieldValue::String(value.clone().into()));
            }
        }
        for (name, value) in [
            ("license_units_total", self.license_units_total),
            ("license_units_used", self.license_units_used),
        ] {
            if let Some(value) = value {
                record.set(name, FieldValue::Integer(value));
            }
        }
        if let Some(svm_id) = self.svm_id {
            record.set("svm_id", FieldValue::Uuid(svm_id));
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::collect::test_context;

    fn activation(method: Method) -> Activation {
        Activation {
            method,
            code: Some("AAAAA-BBBBB-CCCCC-DDDDD".into()),
            locale: None,
            license_edition: Some("standard".into()),
            license_units_total: Some(5),
            license_units_used: Some(2),
            svm_id: Some(uuid::Uuid::from_u128(0x5e_c0de)),
        }
    }

    #[test]
    fn a_code_activation_carries_the_agent_facts_and_passes_the_catalogue() {
        let context = test_context(None);
        let record = activation(Method::Code)
            .record(&context, SystemTime::now())
            .unwrap();
        for builtin in crate::catalogue::BuiltIn::ALL {
            let catalogue = Catalogue::builtin(builtin);
            catalogue.check(&catalogue.declared(&record)).unwrap();
        }
        assert_eq!(record.fields["os_bitness"], FieldValue::Integer(64));
        assert_eq!(
            record.fields["virtual_environment"],
            FieldValue::String("kvm".into())
        );
        assert_eq!(
            record.fields["product_locale"],
            FieldValue::String("en-US".into()),
            "the product's configured locale fills in"
        );
        assert_eq!(record.fields["license_units_used"], FieldValue::Integer(2));
    }

    #[test]
    fn the_svm_id_goes_where_the_product_declares_it() {
        let record = activation(Method::Code)
            .record(&test_context(None), SystemTime::now())
            .unwrap();
        let svm = FieldValue::Uuid(uuid::Uuid::from_u128(0x5e_c0de));
        let ksv = Catalogue::builtin(crate::catalogue::BuiltIn::Ksv);
        assert_eq!(ksv.declared(&record).fields.get("svm_id"), Some(&svm));
        let kis = Catalogue::builtin(crate::catalogue::BuiltIn::Kis);
        assert_eq!(kis.declared(&record).fields.get("svm_id"), None);
    }

    #[test]
    fn a_key_file_activation_sends_nothing() {
        assert!(
            activation(Method::KeyFile)
                .record(&test_context(None), SystemTime::now())
                .is_none()
        );
    }
}
