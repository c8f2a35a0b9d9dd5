//! Checking one record against its purpose's declaration: which of its
//! fields are declared, of what type, and whether each string value, as
//! it would be stored, fits. The gate finds a record's purpose once and
//! asks these; `Catalogue::{declared, check, judge}` find it and ask the
//! same.

use std::borrow::Cow;

use super::{CheckError, ERASURE_KEY, Field, FieldType, Misfit, Purpose};
use crate::record::draft::Value;
use crate::record::{FieldValue, Fields, Record, Text};

/// The checks of one record, for a caller that found its purpose once
/// (the gate, for every record).
impl Purpose {
    /// `record` with only the fields this purpose declares, when a
    /// built-in collector made it (`Record::collected`): a product's
    /// catalogue names what its seed names, and the collector's other facts
    /// stay here. Any other record is returned as it is, for
    /// [`Purpose::check`] to hold to exactly what it declares.
    pub fn declared<'r>(&self, record: &'r Record) -> Cow<'r, Record> {
        if !record.collected || record.fields.keys().all(|f| self.field(f).is_some()) {
            return Cow::Borrowed(record);
        }
        let mut kept = record.clone();
        kept.fields.retain(|name, _| self.field(name).is_some());
        Cow::Owned(kept)
    }

    /// Refuses a record that carries anything this purpose does not
    /// declare, or a value of another type than its field's.
    pub fn check(&self, record: &Record) -> Result<(), CheckError> {
        for (name, value) in &record.fields {
            let field = self.field(name).ok_or_else(|| self.undeclared(name))?;
            self.typed(name, value, field)?;
        }
        Ok(())
    }

    /// [`Purpose::declared`], then [`Purpose::check`], each field looked
    /// up once: the same answer, the same first error.
    pub fn admissible<'r>(&self, record: &'r Record) -> Result<Cow<'r, Record>, CheckError> {
        let mut undeclared = false;
        for (name, value) in &record.fields {
            match self.field(name) {
                Some(field) => self.typed(name, value, field)?,
                None if record.collected => undeclared = true,
                None => return Err(self.undeclared(name)),
            }
        }
        Ok(if undeclared {
            self.declared(record)
        } else {
            Cow::Borrowed(record)
        })
    }

    fn undeclared(&self, name: &str) -> CheckError {
        CheckError::UndeclaredField {
            purpose: self.id.clone(),
            field: name.to_owned(),
        }
    }

    /// Refuses `value` of another type than `field`'s.
    fn typed(&self, name: &str, value: &FieldValue, field: &Field) -> Result<(), CheckError> {
        let found = value.field_type();
        if found != field.ty {
            return Err(self.wrong_type(name, field, found));
        }
        Ok(())
    }

    fn wrong_type(&self, name: &str, field: &Field, found: FieldType) -> CheckError {
        CheckError::WrongType {
            purpose: self.id.clone(),
            field: name.to_owned(),
            expected: field.ty,
            found,
        }
    }

    /// Whether any field declares a transform (most purposes: none, and
    /// then a record's values are stored as they are).
    pub fn transforms(&self) -> bool {
        self.fields.iter().any(|field| field.transform.is_some())
    }

    /// Refuses fields whose string value, as it would be stored (after
    /// its field's transform), does not fit its field's declaration or
    /// looks like personal data the declaration does not allow.
    pub fn judge(&self, fields: &Fields) -> Result<(), CheckError> {
        for (name, value) in fields {
            let (FieldValue::String(text), Some(field)) = (value, self.field(name)) else {
                continue;
            };
            self.judge_text(name, field, text, Some(text))?;
        }
        Ok(())
    }

    /// Whether this purpose's records are stored as their fields are: no
    /// field transformed or randomised, no privacy budget to spend, no
    /// erasure key to add. The gate writes such a purpose's drafts
    /// straight to their lines (`gate::Drafts`).
    pub fn plain(&self) -> bool {
        self.privacy_budget.is_none()
            && self
                .fields
                .iter()
                .all(|f| f.transform.is_none() && f.ldp.is_none() && f.name != ERASURE_KEY)
    }

    /// [`Purpose::check`] of one value of a built-in collector's draft,
    /// `field` being its declaration: refuses a value of another type.
    pub fn typed_draft_value(
        &self,
        name: &str,
        field: &Field,
        value: &Value<'_>,
    ) -> Result<(), CheckError> {
        let found = value.field_type();
        if found != field.ty {
            return Err(self.wrong_type(name, field, found));
        }
        Ok(())
    }

    /// [`Purpose::judge`] of one value of a draft, `field` being its
    /// declaration (an integer has nothing to judge).
    pub fn judge_draft_value(
        &self,
        name: &str,
        field: &Field,
        value: &Value<'_>,
    ) -> Result<(), CheckError> {
        match value {
            Value::Shared(text) => self.judge_text(name, field, text, Some(text)),
            Value::Text(text) => self.judge_text(name, field, text, None),
            Value::Integer(_) => Ok(()),
        }
    }

    /// Refuses `text`, field `name`'s value, when it does not fit `field`
    /// or looks like personal data it does not allow. A `shared` fact is
    /// read once (`Admitted`).
    fn judge_text(
        &self,
        name: &str,
        field: &Field,
        text: &str,
        shared: Option<&Text>,
    ) -> Result<(), CheckError> {
        if shared.is_some_and(|shared| field.admitted.holds(shared)) {
            return Ok(());
        }
        field.admits(text).map_err(|misfit| {
            let (purpose, field) = (self.id.clone(), name.to_owned());
            match misfit {
                Misfit::Personal(kind) => CheckError::PersonalData {
                    purpose,
                    field,
                    kind,
                },
                Misfit::Unfit(why) => CheckError::OutOfShape {
                    purpose,
                    field,
                    why,
                },
            }
        })?;
        if let Some(shared) = shared {
            field.admitted.remember(shared);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    /// What the gate asked before [`Purpose::admissible`]: the declared
    /// fields, then the check of them.
    fn reference<'r>(purpose: &Purpose, record: &'r Record) -> Result<Cow<'r, Record>, CheckError> {
        let declared = purpose.declared(record);
        purpose.check(&declared)?;
        Ok(declared)
    }

    #[test]
    fn admissible_answers_as_declared_then_check_did() {
        let catalogue = Catalogue::embedded();
        let purpose = catalogue.purpose("installation_errors").unwrap();
        let text = |t: &str| FieldValue::String(t.into());
        let cases: Vec<(bool, Vec<(&'static str, FieldValue)>)> = vec![
            // All declared.
            (
                true,
                vec![
                    ("task_type", text("install")),
                    ("error_code", FieldValue::Integer(7)),
                ],
            ),
            // A collector's undeclared fact is dropped; a component's is refused.
            (
                true,
                vec![("a_fact", text("x")), ("task_type", text("install"))],
            ),
            (
                false,
                vec![("a_fact", text("x")), ("task_type", text("install"))],
            ),
            // A wrong type among declared fields, before and after an
            // undeclared one: the first error in field order.
            (true, vec![("a_fact", text("x")), ("error_code", text("7"))]),
            (
                false,
                vec![("a_fact", text("x")), ("error_code", text("7"))],
            ),
            (
                false,
                vec![("error_code", text("7")), ("zz_fact", text("x"))],
            ),
            (false, vec![]),
        ];
        for (collected, fields) in cases {
            let mut record = if collected {
                Record::collected("installation_errors")
            } else {
                Record::new("installation_errors")
            };
            for (name, value) in fields {
                record.set(name, value);
            }
            let expected = reference(purpose, &record);
            assert_eq!(purpose.admissible(&record), expected, "{record:?}");
        }
    }
}
