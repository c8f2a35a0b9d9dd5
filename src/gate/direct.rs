//! Drafts admitted straight to their stored lines: a built-in collector's
//! record ([`Draft`]: borrowed values in field-name order) is checked,
//! judged and decided on as [`Gate::admit`] would check, judge and decide
//! on the [`Record`](crate::record::Record) it makes, and its line is
//! written once into a buffer the caller keeps, with no map of owned
//! names, no owned copies of the decision's strings and no second
//! serialization. A purpose whose records are not stored as their fields
//! are (`Purpose::plain`: a transform, randomisation, a budget, an erasure
//! key) takes the general path.
//!
//! What comes out is a [`GatedLine`]: like a `GatedRecord`, only the gate
//! makes one, so the store is handed nothing ungated.

use std::time::SystemTime;

use super::{Gate, GatedRecord, Refusal, allowed};
use crate::catalogue::{CheckError, Field};
use crate::clock::push_rfc3339;
use crate::record::draft::{Draft, MAX_FIELDS, Value};
use crate::record::line::push_json_string;

/// A record the gate admitted, as the line it is stored as and the clause
/// that allowed it, borrowed. Only the gate makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatedLine<'a> {
    purpose: &'a str,
    clause: &'a str,
    clause_version: u32,
    clause_sha256: &'a str,
    collected_at: &'a str,
    fields_json: &'a str,
}

impl<'a> GatedLine<'a> {
    pub fn purpose(&self) -> &'a str {
        self.purpose
    }
    pub fn clause(&self) -> &'a str {
        self.clause
    }
    pub fn clause_version(&self) -> u32 {
        self.clause_version
    }
    pub fn clause_sha256(&self) -> &'a str {
        self.clause_sha256
    }
    pub fn collected_at(&self) -> &'a str {
        self.collected_at
    }
    /// The record's `fields` object, serialized JSON.
    pub fn fields_json(&self) -> &'a str {
        self.fields_json
    }
    /// Bytes this record counts for in the queue's bounds
    /// ([`crate::record::line::size`] of the line it is stored as).
    pub fn size(&self) -> u64 {
        use crate::record::line;
        line::size(
            self.purpose,
            self.clause,
            line::len(self.collected_at, self.fields_json),
        )
    }
}

impl GatedRecord {
    /// This record as a [`GatedLine`].
    pub fn line(&self) -> GatedLine<'_> {
        GatedLine {
            purpose: &self.purpose,
            clause: &self.clause,
            clause_version: self.clause_version,
            clause_sha256: &self.clause_sha256,
            collected_at: &self.collected_at,
            fields_json: &self.fields_json,
        }
    }
}

impl Gate {
    /// Admits `draft`, made at `collected_at`, under the published
    /// consent snapshot, and hands its line to `sink`: the same answer
    /// [`Gate::admit`] gives for `draft.record(collected_at)`, the same
    /// line, the same refusal (and refusal count). `scratch` holds the
    /// line's text while `sink` runs; keep it between calls.
    pub fn admit_draft<T>(
        &self,
        draft: &Draft<'_>,
        collected_at: SystemTime,
        scratch: &mut String,
        sink: impl FnOnce(GatedLine<'_>) -> T,
    ) -> Result<T, Refusal> {
        let purpose = self
            .catalogue
            .purpose(draft.purpose())
            .ok_or_else(|| CheckError::UnknownPurpose(draft.purpose().to_owned()))?;
        if !purpose.plain() {
            let gated = self.admit(&draft.record(collected_at))?;
            return Ok(sink(gated.line()));
        }
        let fields = draft.fields();
        let mut declared = [None; MAX_FIELDS];
        purpose.admissible_draft(fields, &mut declared)?;
        purpose.judge_draft(fields, &declared).map_err(|err| {
            self.count_refusal(&purpose.id, err.code());
            Refusal::from(err)
        })?;
        let registry = self.decisions.load();
        let (clause, clause_version, clause_sha256) =
            allowed(purpose, registry.decision(&purpose.id))?;
        scratch.clear();
        push_rfc3339(scratch, collected_at);
        let stamp = scratch.len();
        write_fields(scratch, fields, &declared);
        Ok(sink(GatedLine {
            purpose: &purpose.id,
            clause,
            clause_version,
            clause_sha256,
            collected_at: &scratch[..stamp],
            fields_json: &scratch[stamp..],
        }))
    }
}

/// The declared `fields` as a JSON object, as serde writes the record's
/// map of them: in name order, no spaces. A draft's names are plain
/// identifiers (`Draft::push`), written as they are.
fn write_fields(out: &mut String, fields: &[(&str, Value<'_>)], declared: &[Option<&Field>]) {
    out.push('{');
    let mut first = true;
    for ((name, value), _) in fields
        .iter()
        .zip(declared)
        .filter(|(_, field)| field.is_some())
    {
        out.push_str(if first { "\"" } else { ",\"" });
        first = false;
        out.push_str(name);
        out.push_str("\":");
        match value {
            Value::Text(text) => push_json_string(out, text),
            Value::Shared(text) => push_json_string(out, text),
            Value::Integer(n) => out.push_str(itoa::Buffer::new().format(*n)),
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests;
