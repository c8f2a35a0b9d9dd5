//! Collectors: one per purpose, each producing typed [`Record`]s.
//!
//! A collector turns a component's event (`update_task`, `activation`,
//! `install_task`, `scan_verdict`, `ksn_request`, `record`) or a periodic
//! look at the system into records whose fields it believes the catalogue
//! declares, adding the facts only the agent knows (installation id, OS,
//! virtual environment, country). It never decides consent and never writes
//! to the queue: the gate (`gate::Gate::admit`) checks every record against
//! the catalogue and the consent snapshot before anything is stored.
//!
//! - `update_identity`: per `update_task` event, and periodically as a
//!   fallback ([`UpdateIdentity`]);
//! - `activation`: per `activation` event, nothing for a key file;
//! - `installation_errors`: per `install_task` event;
//! - `ksn_scan_aggregates`: `scan_verdict` and `ksn_request` events folded
//!   into one report per window (`ksn`);
//! - `geo_distribution`: periodically, the country from local settings;
//! - any other catalogue purpose (`link_following`): the generic `record`
//!   event, checked field by field by the ingest path.

pub mod activation;
pub mod country;
pub mod geo_distribution;
pub mod installation_errors;
pub mod ksn;
pub mod system;
mod update_identity;

use serde::Deserialize;
use uuid::Uuid;

pub use geo_distribution::GeoDistribution;
pub use system::OsFacts;
pub use update_identity::{UpdateIdentity, UpdateTask};

use crate::catalogue::Region;
use crate::clock::HumanDuration;
use crate::ranges;
pub use crate::record::{FieldValue, Record, Text};

/// The product this agent reports for, from the agent config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    pub id: String,
    pub version: String,
    #[serde(default)]
    pub license_id: Option<String>,
    /// Localization of the installed product (`en-US`), when known.
    #[serde(default)]
    pub locale: Option<String>,
    /// Identifier of the product's database settings (KSN reports).
    #[serde(default)]
    pub db_settings_id: Option<String>,
    /// Version of the private Security Network database (KSN reports).
    #[serde(default)]
    pub private_db_version: Option<String>,
}

/// The longest `[product]` value, in bytes. `id` and `version` go into
/// every record of several purposes, so a 100 KB id makes every record
/// 100 KB; 128 bytes hold any real product id, version, licence id or
/// database id with room to spare.
pub const PRODUCT_VALUE_MAX_BYTES: usize = 128;

/// The longest `[product] locale`, in bytes: a BCP 47 language tag
/// (`en-US`, `sr-Latn-RS`), as the catalogue's `locale` format bounds it.
pub const LOCALE_MAX_BYTES: usize = crate::catalogue::LOCALE_MAX_BYTES;

impl ProductConfig {
    /// Each value present, within its length and free of control
    /// characters; `id` and `version` not empty. Each problem names its key.
    pub(crate) fn validate_keyed(&self) -> Result<(), Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        for (key, value) in [("id", &self.id), ("version", &self.version)] {
            if value.trim().is_empty() {
                problems.push((key, format!("[product] {key} must not be empty")));
            }
        }
        let values = [
            ("id", Some(&self.id), PRODUCT_VALUE_MAX_BYTES),
            ("version", Some(&self.version), PRODUCT_VALUE_MAX_BYTES),
            (
                "license_id",
                self.license_id.as_ref(),
                PRODUCT_VALUE_MAX_BYTES,
            ),
            ("locale", self.locale.as_ref(), LOCALE_MAX_BYTES),
            (
                "db_settings_id",
                self.db_settings_id.as_ref(),
                PRODUCT_VALUE_MAX_BYTES,
            ),
            (
                "private_db_version",
                self.private_db_version.as_ref(),
                PRODUCT_VALUE_MAX_BYTES,
            ),
        ];
        for (key, value, max) in values {
            let Some(value) = value else { continue };
            if value.len() > max {
                problems.push((
                    key,
                    format!(
                        "[product] {key} is {} bytes long, more than the {max} it may have; give the product's own {key}, not another text",
                        value.len()
                    ),
                ));
            } else if value.chars().any(char::is_control) {
                problems.push((
                    key,
                    format!("[product] {key} must not contain control characters"),
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// `[collect]` in the agent config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// How often the periodic collectors run (`geo_distribution`, and
    /// `update_identity` when its fallback is on); the first run is at
    /// start-up.
    #[serde(default = "CollectConfig::default_interval")]
    pub interval: HumanDuration,
    /// Whether `update_identity` also reports on the periodic schedule, for
    /// products whose updater does not send `update_task` events.
    #[serde(default = "CollectConfig::default_true")]
    pub update_identity_fallback: bool,
    /// Length of one `ksn_scan_aggregates` window: one report per window.
    #[serde(default = "CollectConfig::default_ksn_window")]
    pub ksn_window: HumanDuration,
}

impl CollectConfig {
    /// Each duration within its range (`crate::ranges`), with the key at
    /// fault.
    pub(crate) fn validate_keyed(&self) -> Result<(), Vec<(&'static str, String)>> {
        let problems: Vec<_> = [
            (ranges::COLLECT_INTERVAL, self.interval),
            (ranges::KSN_WINDOW, self.ksn_window),
        ]
        .into_iter()
        .filter_map(|(range, value)| range.check(value).err())
        .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn default_interval() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(6 * 3600))
    }
    fn default_true() -> bool {
        true
    }
    fn default_ksn_window() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(3600))
    }
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            interval: Self::default_interval(),
            update_identity_fallback: true,
            ksn_window: Self::default_ksn_window(),
        }
    }
}

/// Facts a collector may need that it must not look up itself, read once
/// at start-up.
#[derive(Debug, Clone)]
pub struct CollectContext {
    pub product: ProductConfig,
    /// Random, kept in the state directory; replaced when consent for the
    /// clause whose purposes carry it is withdrawn, so what is sent after a
    /// revoke and a new grant cannot be linked to what was sent before.
    installation_id: std::sync::Arc<arc_swap::ArcSwap<Uuid>>,
    pub os: OsFacts,
    /// systemd-detect-virt style name, `none` on bare metal.
    pub virtual_environment: String,
    /// The region whose edition of the clauses applies: a regional edition
    /// reports some events under its own, narrower purposes.
    pub region: Region,
    /// The country from the settings, read at most once a minute.
    country: std::sync::Arc<country::CountryCache>,
    /// `product` and `os` as the shared strings every record carries
    /// (made once with the context, which nothing changes after).
    shared: SharedFacts,
}

/// The product's and the OS's facts as shared strings: a record gets a
/// reference count, not a copy.
#[derive(Debug, Clone)]
pub struct SharedFacts {
    pub product_id: Text,
    pub product_version: Text,
    pub os_type: Text,
    pub os_version: Text,
    pub os_edition: Option<Text>,
}

impl SharedFacts {
    fn of(product: &ProductConfig, os: &OsFacts) -> Self {
        let shared = |text: &str| Text::Shared(std::sync::Arc::from(text));
        Self {
            product_id: shared(&product.id),
            product_version: shared(&product.version),
            os_type: shared(&os.os_type),
            os_version: shared(&os.os_version),
            os_edition: os.os_edition.as_deref().map(shared),
        }
    }
}

impl CollectContext {
    /// The country this computer is in (`country::country_code`), read
    /// from its settings at most once a minute.
    pub fn country_code(&self) -> Option<String> {
        self.country.get()
    }

    /// Reads the system facts now.
    pub fn new(product: ProductConfig, installation_id: Uuid, region: Region) -> Self {
        let os = system::os_facts();
        Self {
            shared: SharedFacts::of(&product, &os),
            product,
            installation_id: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(installation_id)),
            os,
            virtual_environment: system::virtual_environment(),
            region,
            country: Default::default(),
        }
    }

    /// The product's and the OS's facts as shared strings.
    pub fn shared(&self) -> &SharedFacts {
        &self.shared
    }

    /// The installation id records carry now.
    pub fn installation_id(&self) -> Uuid {
        **self.installation_id.load()
    }

    /// The shared cell the installation id lives in: whoever holds it sees
    /// a replacement at once (the uploader's schedules).
    pub fn installation_id_cell(&self) -> std::sync::Arc<arc_swap::ArcSwap<Uuid>> {
        std::sync::Arc::clone(&self.installation_id)
    }

    /// Replaces the installation id (after the store has made it durable);
    /// every clone of this context sees the new one.
    pub fn set_installation_id(&self, id: Uuid) {
        self.installation_id.store(std::sync::Arc::new(id));
    }

    /// Sets `product_id` and `product_version` on `record` (shared, not
    /// copied).
    pub fn product_fields(&self, record: &mut Record) {
        record
            .set(
                "product_id",
                FieldValue::String(self.shared.product_id.clone()),
            )
            .set(
                "product_version",
                FieldValue::String(self.shared.product_version.clone()),
            );
    }
}

/// Why a collector produced nothing this time.
#[derive(Debug, thiserror::Error)]
#[error("collector `{purpose}` failed: {message}")]
pub struct CollectError {
    pub purpose: &'static str,
    pub message: String,
}

/// One source of records for one purpose.
pub trait Collector: Send + Sync {
    /// The catalogue purpose every record of this collector names.
    fn purpose(&self) -> &'static str;

    /// Produces this run's records.
    fn collect(&self, context: &CollectContext) -> Result<Vec<Record>, CollectError>;
}

/// The periodic collectors `config` switches on, in a fixed order.
pub fn periodic(config: &CollectConfig) -> Vec<Box<dyn Collector>> {
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    if config.update_identity_fallback {
        collectors.push(Box::new(UpdateIdentity));
    }
    collectors.push(Box::new(GeoDistribution));
    collectors
}

/// Purposes this build collects itself; every other catalogue purpose can
/// only be fed by the generic `record` event.
pub const BUILT_IN: [&str; 6] = [
    "update_identity",
    "activation",
    "installation_errors",
    installation_errors::REGIONAL_PURPOSE,
    ksn::PURPOSE,
    "geo_distribution",
];

/// Whether this build has a collector of its own for `purpose`.
pub fn has_collector(purpose: &str) -> bool {
    BUILT_IN.contains(&purpose)
}

/// A context with fixed facts, for unit tests.
#[cfg(test)]
pub(crate) fn test_context(license_id: Option<&str>) -> CollectContext {
    let product = ProductConfig {
        id: "ksec".into(),
        version: "12.1.0.505".into(),
        license_id: license_id.map(str::to_owned),
        locale: Some("en-US".into()),
        db_settings_id: None,
        private_db_version: None,
    };
    let os = OsFacts {
        os_type: "linux".into(),
        os_version: "12".into(),
        os_edition: Some("Debian GNU/Linux".into()),
        os_bitness: 64,
    };
    CollectContext {
        shared: SharedFacts::of(&product, &os),
        product,
        installation_id: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(Uuid::new_v4())),
        os,
        virtual_environment: "kvm".into(),
        region: Region::Global,
        country: Default::default(),
    }
}

#[cfg(test)]
impl CollectContext {
    /// This context on another edition of the OS (its shared facts made
    /// again).
    pub(crate) fn with_os_edition(mut self, edition: &str) -> Self {
        self.os.os_edition = Some(edition.into());
        self.shared = SharedFacts::of(&self.product, &self.os);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[product]` with every key set to a short value but `key`, set to
    /// `value`.
    fn product(key: &str, value: &str) -> ProductConfig {
        let lines: Vec<String> = BOUNDS
            .iter()
            .map(|(k, _)| {
                let v = if *k == key { value } else { "x" };
                format!("{k} = \"{v}\"")
            })
            .collect();
        toml::from_str(&lines.join("\n")).unwrap()
    }

    const BOUNDS: [(&str, usize); 6] = [
        ("id", PRODUCT_VALUE_MAX_BYTES),
        ("version", PRODUCT_VALUE_MAX_BYTES),
        ("license_id", PRODUCT_VALUE_MAX_BYTES),
        ("locale", LOCALE_MAX_BYTES),
        ("db_settings_id", PRODUCT_VALUE_MAX_BYTES),
        ("private_db_version", PRODUCT_VALUE_MAX_BYTES),
    ];

    #[test]
    fn every_product_value_has_a_length_bound_naming_its_key() {
        for (key, max) in BOUNDS {
            assert!(
                product(key, &"x".repeat(max)).validate_keyed().is_ok(),
                "{key}"
            );
            let problems = product(key, &"x".repeat(max + 1))
                .validate_keyed()
                .unwrap_err();
            let expected = format!(
                "[product] {key} is {} bytes long, more than the {max} it may have",
                max + 1
            );
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].0, key);
            assert!(problems[0].1.contains(&expected), "{problems:?}");
        }
    }

    #[test]
    fn the_shipped_config_states_the_bounds() {
        let stated =
            format!("at most {PRODUCT_VALUE_MAX_BYTES} bytes long (locale: {LOCALE_MAX_BYTES},");
        assert!(
            crate::config::EMBEDDED_EXAMPLE.contains(&stated),
            "{stated}"
        );
    }

    #[test]
    fn control_characters_and_empty_ids_are_refused_by_key() {
        let problems = product("locale", "en\\u0007US")
            .validate_keyed()
            .unwrap_err();
        assert_eq!(problems[0].0, "locale");
        assert!(problems[0].1.contains("control characters"), "{problems:?}");
        let problems = product("version", " ").validate_keyed().unwrap_err();
        assert_eq!(
            problems[0],
            ("version", "[product] version must not be empty".into())
        );
    }
}
