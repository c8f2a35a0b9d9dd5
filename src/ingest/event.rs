//! One ingest line → one typed event → what it means for the agent: a
//! record for the gate, a contribution to the KSN window, or an activation
//! (with its record when it was by code). Every way a line can be wrong is a [`LineError`]
//! with a stable code; nothing here touches the disk or decides consent.
//!
//! Lines are parsed with borrowed strings into one flat struct (no map, no
//! allocation for the common `scan_verdict`), then checked against the
//! fields of their kind, so a field that belongs to another kind is as much
//! an error as one that belongs to none. An `install_task`, the line most
//! products send most, is first read by a struct of its own fields
//! ([`InstallLine`]); any line that struct does not take is read the
//! general way, which takes the same install tasks to the same tasks.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::catalogue::{AGENT_FIELDS, Catalogue, FieldType, INSTALLATION_ID};
use crate::collect::activation::{self, Activation};
use crate::collect::installation_errors::{self, InstallTask};
use crate::collect::ksn::{self, KsnDelta, TrustReason, Verdict};
use crate::collect::{CollectContext, FieldValue, Record, UpdateTask, has_collector};
use crate::privacy::personal::{self, Kinds, Reading};

/// Why a line was rejected; `code` is stable, `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub code: &'static str,
    pub message: String,
}

impl LineError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What a valid line amounts to.
#[derive(Debug)]
pub enum Outcome<'l> {
    /// A record for the gate.
    Record(Record),
    /// An installer's task, its text borrowed from the line: the gate
    /// writes its record straight to its line (`InstallTask::draft`,
    /// `gate::Drafts`).
    Install(InstallTask<'l>),
    /// Folded into the caller's KSN delta already.
    Aggregated,
    /// The product was activated: the agent keeps how (purposes may wait
    /// for an activation by code), and sends `record` (none for a key file).
    Activated {
        method: activation::Method,
        record: Option<Record>,
    },
}

/// Every event kind and the fields its line may carry besides `kind`.
pub const KINDS: [(&str, &[&str]); 6] = [
    ("update_task", &["task_id"]),
    (
        "activation",
        &[
            "method",
            "code",
            "locale",
            "license_edition",
            "license_units_total",
            "license_units_used",
            "svm_id",
        ],
    ),
    (
        "install_task",
        &[
            "task",
            "status",
            "error_type",
            "error_code",
            "duration_ms",
            "campaign_id",
        ],
    ),
    ("scan_verdict", &["object", "verdict", "trust_reason"]),
    (
        "ksn_request",
        &["ok", "duration_ms", "bytes_sent", "bytes_received"],
    ),
    ("record", &["purpose", "fields"]),
];

/// Finds the kind's name in a line: made once, not for every line.
static INSTALL_TASK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"install_task\""));

/// Whether `text` may be an `install_task` line, worth reading as an
/// [`InstallLine`] first: only a hint (the kind is what that reads), told
/// at once when the line starts with its kind, as clients write them.
fn may_be_install_task(text: &[u8]) -> bool {
    match text.strip_prefix(b"{\"kind\":\"") {
        Some(rest) => rest.starts_with(b"install_task\""),
        None => INSTALL_TASK.find(text).is_some(),
    }
}

/// An `install_task` line: `kind` and the fields [`KINDS`] gives that
/// kind, no other. What it takes, [`Line`] takes to the same task; what it
/// refuses goes to [`Line`] for its error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallLine<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    task: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    error_type: Option<Cow<'a, str>>,
    error_code: Option<i64>,
    duration_ms: Option<i64>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    campaign_id: Option<Cow<'a, str>>,
}

/// The union of every kind's fields; which ones a kind may use is checked
/// after parsing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(default, borrow, deserialize_with = "text::optional")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    task_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    code: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    locale: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    license_edition: Option<Cow<'a, str>>,
    license_units_total: Option<i64>,
    license_units_used: Option<i64>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    svm_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    task: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    error_type: Option<Cow<'a, str>>,
    error_code: Option<i64>,
    duration_ms: Option<i64>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    campaign_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    object: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    verdict: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    trust_reason: Option<Cow<'a, str>>,
    ok: Option<bool>,
    bytes_sent: Option<i64>,
    bytes_received: Option<i64>,
    #[serde(default, borrow, deserialize_with = "text::optional")]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    fields: Option<&'a RawValue>,
}

impl Line<'_> {
    /// The names of the fields present, besides `kind`.
    fn present(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("task_id", self.task_id.is_some()),
            ("method", self.method.is_some()),
            ("code", self.code.is_some()),
            ("locale", self.locale.is_some()),
            ("license_edition", self.license_edition.is_some()),
            ("license_units_total", self.license_units_total.is_some()),
            ("license_units_used", self.license_units_used.is_some()),
            ("svm_id", self.svm_id.is_some()),
            ("task", self.task.is_some()),
            ("status", self.status.is_some()),
            ("error_type", self.error_type.is_some()),
            ("error_code", self.error_code.is_some()),
            ("duration_ms", self.duration_ms.is_some()),
            ("campaign_id", self.campaign_id.is_some()),
            ("object", self.object.is_some()),
            ("verdict", self.verdict.is_some()),
            ("trust_reason", self.trust_reason.is_some()),
            ("ok", self.ok.is_some()),
            ("bytes_sent", self.bytes_sent.is_some()),
            ("bytes_received", self.bytes_received.is_some()),
            ("purpose", self.purpose.is_some()),
            ("fields", self.fields.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
    }
}

/// Everything parsing needs besides the line.
pub struct Parser<'c> {
    pub catalogue: &'c Catalogue,
    pub context: &'c CollectContext,
}

impl Parser<'_> {
    /// Parses one line (without its newline). A `scan_verdict` or
    /// `ksn_request` is folded into `ksn` and reported as `Aggregated`.
    pub fn parse<'l>(&self, text: &'l [u8], ksn: &mut KsnDelta) -> Result<Outcome<'l>, LineError> {
        // Checked as UTF-8 once, whole (fast on ASCII), rather than string
        // by string while parsing.
        let text = std::str::from_utf8(checked_object(text)?).map_err(|err| {
            LineError::new(
                "not_json",
                format!(
                    "not a JSON object: byte {} is not UTF-8",
                    err.valid_up_to() + 1
                ),
            )
        })?;
        if may_be_install_task(text.as_bytes())
            && let Ok(line) = serde_json::from_str::<InstallLine>(text)
            && line.kind == "install_task"
        {
            return Self::install_task(line);
        }
        self.parse_general(text, ksn)
    }

    /// [`Parser::parse`] of a line checked as UTF-8, read as [`Line`].
    fn parse_general<'l>(
        &self,
        text: &'l str,
        ksn: &mut KsnDelta,
    ) -> Result<Outcome<'l>, LineError> {
        let line: Line = serde_json::from_str(text).map_err(json_error)?;
        let kind = kind_of(&line)?;
        match kind {
            "update_task" => {
                let task_id = uuid(&line.task_id, "task_id")?;
                Ok(Outcome::Record(UpdateTask { task_id }.record(self.context)))
            }
            "activation" => self.activation(&line),
            "install_task" => Self::install_task(InstallLine {
                kind: Cow::Borrowed("install_task"),
                task: line.task,
                status: line.status,
                error_type: line.error_type,
                error_code: line.error_code,
                duration_ms: line.duration_ms,
                campaign_id: line.campaign_id,
            }),
            "scan_verdict" => Self::scan_verdict(&line, ksn),
            "ksn_request" => Self::ksn_request(&line, ksn),
            _ => self.generic(&line).map(Outcome::Record),
        }
    }

    /// An `activation`: how the product was activated, and its record
    /// when by code.
    fn activation(&self, line: &Line) -> Result<Outcome<'static>, LineError> {
        let method = required(&line.method, "method")?;
        let method = activation::Method::parse(method)
            .ok_or_else(|| invalid("method", method, activation::Method::NAMES))?;
        let activation = Activation {
            method,
            code: owned(&line.code),
            locale: owned(&line.locale),
            license_edition: owned(&line.license_edition),
            license_units_total: count(line.license_units_total, "license_units_total")?,
            license_units_used: count(line.license_units_used, "license_units_used")?,
            svm_id: uuid(&line.svm_id, "svm_id")?,
        };
        if method == activation::Method::Code && activation.code.is_none() {
            return Err(LineError::new(
                "missing_field",
                "an activation by `code` needs its `code`",
            ));
        }
        Ok(Outcome::Activated {
            method,
            record: activation.record(self.context, SystemTime::now()),
        })
    }

    /// An `install_task`: one installation, uninstallation or update.
    /// Whichever way its line was read (`InstallLine`, or `Line` checked
    /// by `kind_of`).
    fn install_task(line: InstallLine<'_>) -> Result<Outcome<'_>, LineError> {
        one_of(&line.task, "task", &installation_errors::TASKS)?;
        one_of(&line.status, "status", &installation_errors::STATUSES)?;
        Ok(Outcome::Install(InstallTask {
            duration_ms: count(line.duration_ms, "duration_ms")?,
            task: line.task.expect("checked"),
            status: line.status.expect("checked"),
            error_type: line.error_type,
            error_code: line.error_code,
            campaign_id: line.campaign_id,
        }))
    }

    /// A `scan_verdict`, folded into the KSN window's delta.
    fn scan_verdict(line: &Line, ksn: &mut KsnDelta) -> Result<Outcome<'static>, LineError> {
        let object = required(&line.object, "object")?;
        let hash = ksn::object_hash(object)
            .ok_or_else(|| invalid("object", object, "a SHA-256 in hex (64 hex digits)"))?;
        let verdict = required(&line.verdict, "verdict")?;
        let verdict =
            Verdict::parse(verdict).ok_or_else(|| invalid("verdict", verdict, Verdict::NAMES))?;
        let reason = match line.trust_reason.as_deref() {
            None => TrustReason::None,
            Some(reason) => TrustReason::parse(reason)
                .ok_or_else(|| invalid("trust_reason", reason, TrustReason::NAMES))?,
        };
        if verdict != Verdict::Trusted && reason != TrustReason::None {
            return Err(LineError::new(
                "invalid_value",
                "only a `trusted` verdict has a trust_reason other than `none`",
            ));
        }
        ksn.verdict(hash, verdict, reason);
        Ok(Outcome::Aggregated)
    }

    /// A `ksn_request`, folded into the KSN window's delta.
    fn ksn_request(line: &Line, ksn: &mut KsnDelta) -> Result<Outcome<'static>, LineError> {
        let ok = line
            .ok
            .ok_or_else(|| LineError::new("missing_field", "`ksn_request` needs `ok`"))?;
        let number =
            |value: Option<i64>, name| count(value, name).map(|v| v.unwrap_or(0).unsigned_abs());
        ksn.request(
            ok,
            number(line.duration_ms, "duration_ms")?,
            number(line.bytes_sent, "bytes_sent")?,
            number(line.bytes_received, "bytes_received")?,
        );
        Ok(Outcome::Aggregated)
    }

    /// The `record` kind: a purpose without a collector of its own, its
    /// fields checked one by one against the catalogue.
    fn generic(&self, line: &Line) -> Result<Record, LineError> {
        let purpose = required(&line.purpose, "purpose")?;
        let Some(declared) = self.catalogue.purpose(purpose) else {
            return Err(LineError::new(
                "unknown_purpose",
                format!(
                    "purpose `{purpose}` is not in the catalogue (it has: {})",
                    self.catalogue.purpose_ids()
                ),
            ));
        };
        if has_collector(purpose) {
            return Err(LineError::new(
                "built_in_purpose",
                format!(
                    "purpose `{purpose}` has a collector of its own; send its own event kind (see docs/ingest.md)"
                ),
            ));
        }
        let fields = line
            .fields
            .ok_or_else(|| LineError::new("missing_field", "`record` needs `fields`"))?;
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(fields.get())
            .map_err(|_| LineError::new("invalid_value", "`fields` must be a JSON object"))?;
        let mut record = Record::new(purpose);
        for (name, value) in fields {
            let Some(field) = declared.field(&name) else {
                return Err(LineError::new(
                    "undeclared_field",
                    format!("purpose `{purpose}` does not declare field `{name}`"),
                ));
            };
            if AGENT_FIELDS.contains(&name.as_str()) {
                return Err(LineError::new(
                    "agent_field",
                    format!("field `{purpose}.{name}` is filled by the agent: leave it out"),
                ));
            }
            let typed = typed(field.ty, &value).ok_or_else(|| {
                LineError::new(
                    "wrong_type",
                    format!(
                        "field `{purpose}.{name}` must be a {}, not {}",
                        field.ty,
                        personal::shown(&value.to_string(), 80)
                    ),
                )
            })?;
            record.set(name.to_string(), typed);
        }
        // The id a withdrawal's deletion request names and replaces: this
        // installation's, whatever the component knows.
        if declared.field(INSTALLATION_ID).is_some() {
            record.set(
                INSTALLATION_ID,
                FieldValue::Uuid(self.context.installation_id()),
            );
        }
        Ok(record)
    }
}

/// `text`, if it is a JSON object (serde would also read a struct from an
/// array; an event is an object).
fn checked_object(text: &[u8]) -> Result<&[u8], LineError> {
    if text.trim_ascii_start().first() != Some(&b'{') {
        return Err(LineError::new(
            "not_json",
            "an event is one JSON object per line",
        ));
    }
    Ok(text)
}

/// The line's kind, checked: known, and carrying only its own fields.
fn kind_of(line: &Line) -> Result<&'static str, LineError> {
    let kind = line
        .kind
        .as_deref()
        .ok_or_else(|| LineError::new("missing_kind", "the line has no \"kind\""))?;
    let Some((kind, allowed)) = KINDS.iter().find(|(name, _)| *name == kind) else {
        return Err(LineError::new(
            "unknown_kind",
            format!(
                "unknown kind `{kind}`; the kinds are {}",
                KINDS.map(|(k, _)| k).join(", ")
            ),
        ));
    };
    if let Some(stray) = line.present().find(|name| !allowed.contains(name)) {
        return Err(LineError::new(
            "undeclared_field",
            format!(
                "`{kind}` has no field `{stray}`; its fields are {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(kind)
}

/// A JSON value as the catalogue's type says it must be.
fn typed(ty: FieldType, value: &serde_json::Value) -> Option<FieldValue> {
    use serde_json::Value;
    match (ty, value) {
        (FieldType::String, Value::String(s)) => Some(FieldValue::String(s.clone().into())),
        (FieldType::Integer, Value::Number(n)) => n.as_i64().map(FieldValue::Integer),
        (FieldType::Boolean, Value::Bool(b)) => Some(FieldValue::Boolean(*b)),
        (FieldType::Uuid, Value::String(s)) => Uuid::parse_str(s).ok().map(FieldValue::Uuid),
        (FieldType::Timestamp, Value::String(s)) => {
            humantime::parse_rfc3339(s).ok().map(FieldValue::Timestamp)
        }
        _ => None,
    }
}

fn json_error(err: serde_json::Error) -> LineError {
    let text = err.to_string();
    if text.starts_with("unknown field") {
        // serde names the field and every field it knows; say it plainly.
        let name = personal::shown(text.split('`').nth(1).unwrap_or("?"), 80);
        return LineError::new(
            "undeclared_field",
            format!("field `{name}` belongs to no event kind"),
        );
    }
    // serde quotes the value it could not take: never one that looks like
    // personal data.
    let hidden = personal::find(&text, Kinds::NONE, Reading::Text)
        .map(|kind| format!("the value looks like {}, not shown", kind.in_words()));
    match err.classify() {
        serde_json::error::Category::Data if text.starts_with("invalid type") => LineError::new(
            "wrong_type",
            hidden.map_or(text, |h| format!("invalid type ({h})")),
        ),
        serde_json::error::Category::Data => LineError::new(
            "invalid_value",
            hidden.map_or(text, |h| format!("invalid value ({h})")),
        ),
        _ => LineError::new(
            "not_json",
            format!("not a JSON object: {}", hidden.unwrap_or(text)),
        ),
    }
}

fn required<'l>(value: &'l Option<Cow<'_, str>>, name: &str) -> Result<&'l str, LineError> {
    value
        .as_deref()
        .ok_or_else(|| LineError::new("missing_field", format!("missing field `{name}`")))
}

fn one_of<'l>(
    value: &'l Option<Cow<'_, str>>,
    name: &str,
    allowed: &[&str],
) -> Result<&'l str, LineError> {
    let value = required(value, name)?;
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(name, value, &allowed.join(", ")))
    }
}

fn count(value: Option<i64>, name: &str) -> Result<Option<i64>, LineError> {
    match value {
        Some(n) if n < 0 => Err(invalid(name, &n.to_string(), "a count of zero or more")),
        other => Ok(other),
    }
}

/// An optional field that must be a UUID.
fn uuid(value: &Option<Cow<'_, str>>, name: &str) -> Result<Option<Uuid>, LineError> {
    value
        .as_deref()
        .map(|id| Uuid::parse_str(id).map_err(|_| invalid(name, id, "a UUID")))
        .transpose()
}

fn owned(value: &Option<Cow<'_, str>>) -> Option<String> {
    value.as_deref().map(str::to_owned)
}

/// An error line never echoes a value that looks like personal data: it
/// goes back to the client, whose log may be collected.
fn invalid(name: &str, value: &str, expected: &str) -> LineError {
    LineError::new(
        "invalid_value",
        format!(
            "`{name}` is `{}`; expected {expected}",
            personal::shown(value, 80)
        ),
    )
}

mod text;

#[cfg(test)]
mod tests;
