//! A draft: a built-in collector's record as borrowed values in field-name
//! order, for the gate to write straight to its stored line
//! (`gate::Drafts`) with no map of owned names and values. The same
//! draft becomes a [`Record`] ([`Draft::record`]) for a purpose the
//! general path must take (a transform, randomisation, a budget, an
//! erasure key), so both paths start from the same fields.

use std::time::SystemTime;

use super::{FieldValue, Record, Text};

/// The most fields a draft holds (an installer task has eleven).
pub const MAX_FIELDS: usize = 16;

/// One value of a draft, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Text read from an event line.
    Text(&'a str),
    /// One of the facts every record of a run shares (the product's, the
    /// OS's): the catalogue judges the very same value once
    /// (`catalogue::Admitted`).
    Shared(&'a Text),
    Integer(i64),
}

impl Value<'_> {
    fn owned(&self) -> FieldValue {
        match self {
            Value::Text(text) => FieldValue::String((*text).into()),
            Value::Shared(text) => FieldValue::String((*text).clone()),
            Value::Integer(n) => FieldValue::Integer(*n),
        }
    }
}

/// A collector's record for one purpose: names in ascending byte order
/// (the order a record's map keeps and its line is written in), each once.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    purpose: &'static str,
    fields: [(&'static str, Value<'a>); MAX_FIELDS],
    len: usize,
}

impl<'a> Draft<'a> {
    pub fn new(purpose: &'static str) -> Self {
        Self {
            purpose,
            fields: [("", Value::Integer(0)); MAX_FIELDS],
            len: 0,
        }
    }

    /// Adds a field after the ones already set. Names are plain
    /// identifiers (written into the line as they are), come in ascending
    /// order, each once, and at most [`MAX_FIELDS`] of them: a collector's
    /// fixed list, so a mistake is a bug that panics in tests.
    pub fn push(&mut self, name: &'static str, value: Value<'a>) -> &mut Self {
        debug_assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "draft field name `{name}` is not a plain identifier"
        );
        debug_assert!(
            self.len == 0 || self.fields[self.len - 1].0 < name,
            "draft fields out of order: `{name}` after `{}`",
            self.fields[self.len - 1].0
        );
        self.fields[self.len] = (name, value);
        self.len += 1;
        self
    }

    /// Adds a field when there is a value.
    pub fn push_some(&mut self, name: &'static str, value: Option<Value<'a>>) -> &mut Self {
        if let Some(value) = value {
            self.push(name, value);
        }
        self
    }

    pub fn purpose(&self) -> &'static str {
        self.purpose
    }

    /// The fields, in name order.
    pub fn fields(&self) -> &[(&'static str, Value<'a>)] {
        &self.fields[..self.len]
    }

    /// The same fields as a collector's [`Record`] made at `collected_at`.
    pub fn record(&self, collected_at: SystemTime) -> Record {
        let mut record = Record::collected(self.purpose);
        record.collected_at = collected_at;
        for (name, value) in self.fields() {
            record.set(*name, value.owned());
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_becomes_the_record_of_the_same_fields() {
        let shared = Text::Shared(std::sync::Arc::from("Debian GNU/Linux"));
        let mut draft = Draft::new("installation_errors");
        draft
            .push("error_code", Value::Integer(1603))
            .push_some("error_type", None)
            .push("os_edition", Value::Shared(&shared))
            .push("task_type", Value::Text("install"));
        assert_eq!(draft.fields().len(), 3);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7);
        let record = draft.record(at);
        assert!(record.collected);
        assert_eq!(record.purpose, "installation_errors");
        assert_eq!(record.collected_at, at);
        assert_eq!(record.fields.len(), 3);
        assert_eq!(record.fields["error_code"], FieldValue::Integer(1603));
        assert_eq!(record.fields["os_edition"], FieldValue::String(shared));
        assert_eq!(
            record.fields["task_type"],
            FieldValue::String("install".into())
        );
    }

    #[test]
    #[should_panic(expected = "not a plain identifier")]
    #[cfg(debug_assertions)]
    fn a_name_that_needs_escaping_is_a_bug() {
        Draft::new("p").push("say \"hi\"", Value::Integer(1));
    }

    #[test]
    #[should_panic(expected = "out of order")]
    #[cfg(debug_assertions)]
    fn fields_out_of_order_are_a_bug() {
        Draft::new("p")
            .push("task_type", Value::Integer(1))
            .push("error_code", Value::Integer(2));
    }
}
