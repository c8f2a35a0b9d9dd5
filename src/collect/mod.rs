//! Collectors: one per purpose, each producing typed [`Record`]s.
//!
//! A collector reads the system or the product's own facts and returns
//! records whose fields it believes the catalogue declares. It never decides
//! consent and never writes to the queue: the pipeline checks every record
//! against the catalogue (`Catalogue::check`) and asks the consent registry
//! before anything is stored.

mod update_identity;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

pub use update_identity::UpdateIdentity;

use crate::clock::{HumanDuration, rfc3339};

/// The product this agent reports for, from the agent config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    pub id: String,
    pub version: String,
    #[serde(default)]
    pub license_id: Option<String>,
}

impl ProductConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("[product] id must not be empty".into());
        }
        if self.version.trim().is_empty() {
            return Err("[product] version must not be empty".into());
        }
        Ok(())
    }
}

/// `[collect]` in the agent config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// How often every collector runs; the first run is at start-up.
    #[serde(default = "CollectConfig::default_interval")]
    pub interval: HumanDuration,
}

impl CollectConfig {
    fn default_interval() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(6 * 3600))
    }
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            interval: Self::default_interval(),
        }
    }
}

/// One typed value of a record's field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    String(String),
    Integer(i64),
    Boolean(bool),
    Uuid(Uuid),
    Timestamp(SystemTime),
}

impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::String(s) => serializer.serialize_str(s),
            FieldValue::Integer(i) => serializer.serialize_i64(*i),
            FieldValue::Boolean(b) => serializer.serialize_bool(*b),
            FieldValue::Uuid(u) => serializer.collect_str(&u.hyphenated()),
            FieldValue::Timestamp(t) => serializer.collect_str(&rfc3339(*t)),
        }
    }
}

/// What one collector produced for one purpose at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub purpose: String,
    #[serde(serialize_with = "serialize_time")]
    pub collected_at: SystemTime,
    pub fields: BTreeMap<String, FieldValue>,
}

fn serialize_time<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&rfc3339(*time))
}

impl Record {
    pub fn new(purpose: &str) -> Self {
        Self {
            purpose: purpose.to_owned(),
            collected_at: SystemTime::now(),
            fields: BTreeMap::new(),
        }
    }

    pub fn set(&mut self, name: &str, value: FieldValue) -> &mut Self {
        self.fields.insert(name.to_owned(), value);
        self
    }
}

/// Facts a collector may need that it must not look up itself.
#[derive(Debug, Clone)]
pub struct CollectContext {
    pub product: ProductConfig,
    /// Random, created once per installation, kept in the state directory.
    pub installation_id: Uuid,
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

/// Every collector this build has, in a fixed order.
pub fn all() -> Vec<Box<dyn Collector>> {
    vec![Box::new(UpdateIdentity)]
}

/// Whether this build has a collector for `purpose` (a purpose can be
/// allowed by consent and still send nothing, for want of a collector).
pub fn has_collector(purpose: &str) -> bool {
    all().iter().any(|collector| collector.purpose() == purpose)
}
