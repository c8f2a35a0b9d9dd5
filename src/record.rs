//! A record: what a collector produced for one purpose at one time, as
//! typed field values. The type every stage shares (collectors make it, the
//! catalogue checks it, the gate admits it), kept in a leaf module so none
//! of them has to import another for it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::clock::rfc3339;

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
    /// Made by a built-in collector, which knows more facts than a
    /// product's catalogue may declare for the purpose: the gate keeps the
    /// declared fields only (`Catalogue::declared`). A component's record
    /// (the generic `record` event) is held to exactly what it declares.
    #[serde(skip)]
    pub collected: bool,
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
            collected: false,
        }
    }

    /// A record of a built-in collector (see [`Record::collected`]).
    pub fn collected(purpose: &str) -> Self {
        Self {
            collected: true,
            ..Self::new(purpose)
        }
    }

    pub fn set(&mut self, name: &str, value: FieldValue) -> &mut Self {
        self.fields.insert(name.to_owned(), value);
        self
    }
}
