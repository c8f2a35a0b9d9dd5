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
//! Each caller has its own [`Drafts`], which keeps what one draft repeats
//! of the last (the declarations of its purpose and fields, and each
//! field's last admitted text), so that a run of installer tasks is not
//! looked up and judged again, text by text.
//!
//! What comes out is a [`GatedLine`]: like a `GatedRecord`, only the gate
//! makes one, so the store is handed nothing ungated.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Gate, GatedRecord, Refusal, allowed};
use crate::catalogue::{CheckError, Field, Purpose};
use crate::clock::push_rfc3339;
use crate::record::Text;
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

/// The longest text a [`Drafts`] keeps as admitted in a field: a longer
/// one is judged each time (each kept text costs its length, per
/// connection and field).
const KEPT_TEXT_MAX: usize = 128;

/// One caller's way to the gate for built-in collectors' drafts (each
/// ingest connection has one, for its installer tasks): the answers
/// [`Gate::admit`] gives for the records the drafts make, the same lines,
/// the same refusals and refusal counts, with what one draft repeats of
/// the last not found again:
///
/// - the purpose, and each field's declaration, while the drafts have the
///   same purpose and field names (a collector's fixed list: names are
///   told apart by address, and another address only means looking
///   again);
/// - per field, the last text admitted and its JSON: the same text in the
///   same field is admitted again without being judged (what a field
///   admits depends on the field and the text alone) and written as it
///   was. A refused text is never kept.
///
/// The consent snapshot is read for every draft, as `Gate::admit` reads
/// it.
pub struct Drafts<'g> {
    gate: &'g Gate,
    plan: Option<Plan<'g>>,
    /// Per field of the plan, in draft order.
    kept: [Kept; MAX_FIELDS],
    /// The line being written (kept, so that its allocation is made once).
    line: String,
}

/// What a draft's purpose and field names come to under the catalogue.
struct Plan<'g> {
    purpose_name: &'static str,
    names: [&'static str; MAX_FIELDS],
    len: usize,
    purpose: &'g Purpose,
    plain: bool,
    declared: [Option<&'g Field>; MAX_FIELDS],
}

/// The last text one field admitted, and its `"name":value` JSON.
#[derive(Default)]
struct Kept {
    held: bool,
    text: String,
    /// The text's shared value, when it was one: the same value again is
    /// told by its address (held here, so that no other text can take it).
    shared: Option<Arc<str>>,
    json: String,
}

impl Gate {
    /// A way to this gate for one caller's drafts.
    pub fn drafts(&self) -> Drafts<'_> {
        Drafts {
            gate: self,
            plan: None,
            kept: Default::default(),
            line: String::new(),
        }
    }
}

impl<'g> Drafts<'g> {
    /// Admits `draft`, made at `collected_at`, under the published
    /// consent snapshot, and hands its line to `sink`: the same answer
    /// [`Gate::admit`] gives for `draft.record(collected_at)`, the same
    /// line, the same refusal (and refusal count).
    pub fn admit<T>(
        &mut self,
        draft: &Draft<'_>,
        collected_at: SystemTime,
        sink: impl FnOnce(GatedLine<'_>) -> T,
    ) -> Result<T, Refusal> {
        let gate = self.gate;
        let (purpose, plain, declared) = self.plan(draft)?;
        if !plain {
            let gated = gate.admit(&draft.record(collected_at))?;
            return Ok(sink(gated.line()));
        }
        let fields = draft.fields();
        for ((name, value), field) in fields.iter().zip(&declared) {
            if let Some(field) = field {
                purpose.typed_draft_value(name, field, value)?;
            }
        }
        // The fields whose kept JSON is this draft's value.
        let mut as_kept = [false; MAX_FIELDS];
        let judged = fields.iter().zip(&declared).zip(&mut self.kept);
        for ((((name, value), field), kept), as_kept) in judged.zip(&mut as_kept) {
            let Some(field) = field else { continue };
            if matches!(value, Value::Integer(_)) {
                continue;
            }
            if !kept.holds(value) {
                purpose
                    .judge_draft_value(name, field, value)
                    .map_err(|err| {
                        gate.count_refusal(&purpose.id, err.code());
                        Refusal::from(err)
                    })?;
                kept.keep(name, value);
            }
            *as_kept = kept.held;
        }
        let registry = gate.decisions.load();
        let (clause, clause_version, clause_sha256) =
            allowed(purpose, registry.decision(&purpose.id))?;
        let line = &mut self.line;
        line.clear();
        push_rfc3339(line, collected_at);
        let stamp = line.len();
        write_fields(line, fields, &declared, &self.kept, &as_kept);
        Ok(sink(GatedLine {
            purpose: &purpose.id,
            clause,
            clause_version,
            clause_sha256,
            collected_at: &line[..stamp],
            fields_json: &line[stamp..],
        }))
    }

    /// `draft`'s purpose, whether it is plain, and its fields'
    /// declarations: the last plan's, or a new plan's (and nothing kept
    /// from the last).
    #[allow(clippy::type_complexity)]
    fn plan(
        &mut self,
        draft: &Draft<'_>,
    ) -> Result<(&'g Purpose, bool, [Option<&'g Field>; MAX_FIELDS]), Refusal> {
        if !self.plan.as_ref().is_some_and(|plan| plan.fits(draft)) {
            self.plan = None;
            self.kept.iter_mut().for_each(|kept| kept.held = false);
            let purpose = self
                .gate
                .catalogue
                .purpose(draft.purpose())
                .ok_or_else(|| CheckError::UnknownPurpose(draft.purpose().to_owned()))?;
            self.plan = Some(Plan::new(purpose, draft));
        }
        let plan = self.plan.as_ref().expect("planned");
        Ok((plan.purpose, plan.plain, plan.declared))
    }
}

impl<'g> Plan<'g> {
    fn new(purpose: &'g Purpose, draft: &Draft<'_>) -> Self {
        let mut plan = Plan {
            purpose_name: draft.purpose(),
            names: [""; MAX_FIELDS],
            len: draft.fields().len(),
            purpose,
            plain: purpose.plain(),
            declared: [None; MAX_FIELDS],
        };
        for (i, (name, _)) in draft.fields().iter().enumerate() {
            plan.names[i] = name;
            plan.declared[i] = purpose.field(name);
        }
        plan
    }

    /// Whether `draft` has this plan's purpose and names, told apart by
    /// address (the same address and length: the same text).
    fn fits(&self, draft: &Draft<'_>) -> bool {
        let same = |a: &str, b: &str| a.len() == b.len() && std::ptr::eq(a.as_ptr(), b.as_ptr());
        let fields = draft.fields();
        same(self.purpose_name, draft.purpose())
            && fields.len() == self.len
            && fields
                .iter()
                .zip(&self.names)
                .all(|((name, _), planned)| same(name, planned))
    }
}

impl Kept {
    /// Whether `value` is the text kept.
    fn holds(&self, value: &Value<'_>) -> bool {
        self.held
            && match value {
                Value::Shared(Text::Shared(shared))
                    if self.shared.as_ref().is_some_and(|s| Arc::ptr_eq(s, shared)) =>
                {
                    true
                }
                _ => text_of(value).is_some_and(|text| self.text == text),
            }
    }

    /// Keeps `value`, just admitted as field `name`'s, and its JSON
    /// (unless it is too long to keep).
    fn keep(&mut self, name: &str, value: &Value<'_>) {
        let text = text_of(value).unwrap_or_default();
        self.held = text.len() <= KEPT_TEXT_MAX;
        self.shared = None;
        if self.held {
            text.clone_into(&mut self.text);
            if let Value::Shared(Text::Shared(shared)) = value {
                self.shared = Some(Arc::clone(shared));
            }
            self.json.clear();
            push_member(&mut self.json, name);
            push_json_string(&mut self.json, text);
        }
    }
}

/// A draft value's text, if it is one.
fn text_of<'v>(value: &'v Value<'_>) -> Option<&'v str> {
    match value {
        Value::Text(text) => Some(text),
        Value::Shared(text) => Some(text),
        Value::Integer(_) => None,
    }
}

/// `"name":`. A draft's names are plain identifiers (`Draft::push`),
/// written as they are.
fn push_member(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

/// The declared `fields` as a JSON object, as serde writes the record's
/// map of them: in name order, no spaces. The value of a field marked
/// `as_kept` is the one its `kept` holds, written as it was.
fn write_fields(
    out: &mut String,
    fields: &[(&str, Value<'_>)],
    declared: &[Option<&Field>],
    kept: &[Kept],
    as_kept: &[bool],
) {
    out.push('{');
    let mut first = true;
    for (((name, value), _), (kept, as_kept)) in fields
        .iter()
        .zip(declared)
        .zip(kept.iter().zip(as_kept))
        .filter(|((_, field), _)| field.is_some())
    {
        if !first {
            out.push(',');
        }
        first = false;
        if *as_kept {
            out.push_str(&kept.json);
            continue;
        }
        push_member(out, name);
        match value {
            Value::Integer(n) => out.push_str(itoa::Buffer::new().format(*n)),
            Value::Text(text) => push_json_string(out, text),
            Value::Shared(text) => push_json_string(out, text),
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests;
