//! A record: what a collector produced for one purpose at one time, as
//! typed field values. The type every stage shares (collectors make it, the
//! catalogue checks it, the gate admits it), kept in a leaf module so none
//! of them has to import another for it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::clock::rfc3339;

pub mod draft;

/// A string value: owned, or shared by many records (the product's and
/// the OS's facts, set on every record an installer task makes: cloning
/// one is a reference count, not an allocation and a copy). Read it as a
/// `&str`; two are equal when their text is.
#[derive(Debug, Clone)]
pub enum Text {
    Owned(String),
    Shared(std::sync::Arc<str>),
}

impl Text {
    /// The text as an owned `String` (a copy when shared).
    pub fn into_string(self) -> String {
        match self {
            Text::Owned(text) => text,
            Text::Shared(text) => text.to_string(),
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Owned(text) => text,
            Text::Shared(text) => text,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::Owned(text)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text::Owned(text.to_owned())
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// One typed value of a record's field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    String(Text),
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

/// A field's name: the collectors' are static, a component's are its own.
pub type FieldName = std::borrow::Cow<'static, str>;

/// A record's fields by name.
pub type Fields = BTreeMap<FieldName, FieldValue>;

/// What one collector produced for one purpose at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub purpose: String,
    #[serde(serialize_with = "serialize_time")]
    pub collected_at: SystemTime,
    pub fields: Fields,
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

    pub fn set(&mut self, name: impl Into<FieldName>, value: FieldValue) -> &mut Self {
        self.fields.insert(name.into(), value);
        self
    }
}

/// A gated record as the queue keeps it and the wire carries it: one line
/// of JSON, `{"collected_at":"…","fields":{…}}`, beside its purpose and
/// clause (`store::segment` keeps the lines, `upload::protocol` sends them
/// after the clause's prefix), and the bytes it counts for in the queue's
/// bounds.
pub mod line {
    /// The bytes a line adds around its record's `collected_at` and
    /// fields: `{"collected_at":"` `","fields":` `}`.
    const FRAME: usize = 29;

    /// The length of the line a record with this `collected_at` and
    /// `fields_json` is stored as (when its time needs no escaping).
    pub fn len(collected_at: &str, fields_json: &str) -> usize {
        collected_at.len() + fields_json.len() + FRAME
    }

    /// Bytes one record counts for in the queue's bounds
    /// (`max_queue_bytes`, `batch_max_bytes`): its line, its purpose and
    /// clause, and a fixed allowance for the rest of its wire form.
    pub fn size(purpose: &str, clause: &str, line_len: usize) -> u64 {
        (line_len + purpose.len() + clause.len() + 51) as u64
    }

    /// Appends `text` as a JSON string, escaped as serde_json escapes it
    /// (most text needs nothing escaped, and is copied as it is).
    pub fn push_json_string(out: &mut String, text: &str) {
        // Every byte looked at (no early exit): the loop vectorises.
        let escaped = text.bytes().fold(false, |escaped, b| {
            escaped | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if escaped {
            out.push_str(&serde_json::to_string(text).expect("a string serializes"));
        } else {
            out.push('"');
            out.push_str(text);
            out.push('"');
        }
    }

    /// Appends one record's line to `lines` (after a `\n` when not the
    /// first).
    pub fn push(lines: &mut String, collected_at: &str, fields_json: &str) {
        if !lines.is_empty() {
            lines.push('\n');
        }
        lines.push_str("{\"collected_at\":");
        push_json_string(lines, collected_at);
        lines.push_str(",\"fields\":");
        lines.push_str(fields_json);
        lines.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_string_is_the_same_value_as_an_owned_one_and_is_written_the_same() {
        let owned = FieldValue::String(Text::from("Debian GNU/Linux"));
        let shared = FieldValue::String(Text::Shared(std::sync::Arc::from("Debian GNU/Linux")));
        assert_eq!(owned, shared);
        assert_ne!(owned, FieldValue::String(Text::from("Debian")));
        assert_eq!(
            serde_json::to_string(&owned).unwrap(),
            serde_json::to_string(&shared).unwrap()
        );
        let FieldValue::String(text) = shared.clone() else {
            unreachable!()
        };
        assert_eq!(text.into_string(), "Debian GNU/Linux");
    }
}
