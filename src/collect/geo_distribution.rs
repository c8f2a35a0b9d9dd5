//! `geo_distribution`: the global distribution of the software. Reports the
//! product, its localization and the country the computer is in, derived
//! locally from the time-zone and locale settings (`system::country_code`).
//!
//! Never IP geolocation, never finer than a country; when the country cannot
//! be told (a UTC clock and a C locale), nothing is sent.

use super::{CollectContext, CollectError, Collector, FieldValue, Record, country};

/// The catalogue purpose.
pub const PURPOSE: &str = "geo_distribution";

/// The periodic collector.
#[derive(Debug, Default, Clone, Copy)]
pub struct GeoDistribution;

impl GeoDistribution {
    /// The record for `country`, if there is one.
    pub fn record(context: &CollectContext, country: Option<String>) -> Option<Record> {
        let country = country?;
        let mut record = Record::collected(PURPOSE);
        context.product_fields(&mut record);
        record.set("country_code", FieldValue::String(country.into()));
        if let Some(locale) = &context.product.locale {
            record.set("product_locale", FieldValue::String(locale.clone().into()));
        }
        Some(record)
    }
}

impl Collector for GeoDistribution {
    fn purpose(&self) -> &'static str {
        PURPOSE
    }

    /// Reads the settings afresh on every run: a moved laptop reports its
    /// new country at the next run.
    fn collect(&self, context: &CollectContext) -> Result<Vec<Record>, CollectError> {
        Ok(Self::record(context, country::country_code())
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::collect::test_context;

    #[test]
    fn a_known_country_is_reported_and_an_unknown_one_sends_nothing() {
        let context = test_context(None);
        let record = GeoDistribution::record(&context, Some("DE".into())).unwrap();
        for builtin in crate::catalogue::BuiltIn::ALL {
            let catalogue = Catalogue::builtin(builtin);
            if catalogue.purpose(super::PURPOSE).is_some() {
                catalogue.check(&catalogue.declared(&record)).unwrap();
            }
        }
        assert_eq!(
            record.fields["country_code"],
            FieldValue::String("DE".into())
        );
        assert!(GeoDistribution::record(&context, None).is_none());
    }
}
