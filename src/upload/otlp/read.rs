//! Reading OTLP back: a request body (the loopback receiver, the tests,
//! `history --show`), a receiver's answer (partial success), and the
//! mapping of `mod.rs` undone into the JSON envelope's shape, so that one
//! set of checks serves both protocols.

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{DELETION_SCOPE, DROPS_SCOPE, SCOPE, keys};
use crate::clock::rfc3339;
use crate::consent::receipt::{ClauseRef, DeletionRequest};
use crate::store::Drops;
use crate::upload::compression::decompress;
use crate::upload::protocol::{AgentInfo, Envelope, ProtocolError, SCHEMA, WireRecord};

/// Reads a request body (receivers, tests, `history --show`): zstd, gzip
/// or plain protobuf, told by its own bytes (a protobuf request opens with
/// field 1's tag, never with either magic number).
pub fn decode_request(body: &[u8]) -> Result<ExportLogsServiceRequest, ProtocolError> {
    let bytes = decompress(body).map_err(ProtocolError::Decompress)?;
    ExportLogsServiceRequest::decode(&bytes[..]).map_err(ProtocolError::Protobuf)
}

/// The request as OTLP/JSON (the specification's JSON mapping).
pub fn to_json(request: &ExportLogsServiceRequest) -> serde_json::Value {
    serde_json::to_value(request).expect("an OTLP request serializes")
}

/// What a 2xx answer said about the records it did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// `rejected_log_records`: how many of the batch's records.
    pub records: u64,
    /// `error_message`, as the receiver wrote it (may be empty).
    pub message: String,
}

/// Reads a 2xx answer's `ExportLogsServiceResponse`. An empty body, an
/// empty partial success, or one with only a message (a warning) reject
/// nothing. A body that is not a response is no reason to resend a batch
/// the receiver took: it rejects nothing, and `Err` says why for the log.
pub fn rejected(body: &[u8]) -> Result<Option<Rejected>, String> {
    if body.is_empty() {
        return Ok(None);
    }
    let response = ExportLogsServiceResponse::decode(body)
        .map_err(|err| format!("the receiver's answer is not an OTLP export response: {err}"))?;
    Ok(match response.partial_success {
        Some(ExportLogsPartialSuccess {
            rejected_log_records,
            error_message,
        }) if rejected_log_records > 0 => Some(Rejected {
            records: rejected_log_records as u64,
            message: error_message,
        }),
        _ => None,
    })
}

/// [`rejected`] for an answer in OTLP/JSON, where an int64 is written as
/// a decimal string (the specification's JSON mapping) or as a number.
pub fn rejected_json(body: &[u8]) -> Result<Option<Rejected>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let not_one =
        |why: String| format!("the receiver's answer is not an OTLP/JSON export response: {why}");
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| not_one(e.to_string()))?;
    let Some(partial) = answer.get("partialSuccess").filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    let records = match partial.get("rejectedLogRecords") {
        None | Some(serde_json::Value::Null) => 0,
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| not_one(format!("rejectedLogRecords {n}")))?,
        Some(serde_json::Value::String(s)) => s
            .parse()
            .map_err(|_| not_one(format!("rejectedLogRecords \"{s}\"")))?,
        Some(other) => return Err(not_one(format!("rejectedLogRecords {other}"))),
    };
    let message = partial
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned();
    Ok((records > 0).then_some(Rejected {
        records: records as u64,
        message,
    }))
}

/// A partial-success answer (receivers and tests).
pub fn partial_success(rejected: u64, message: &str) -> Vec<u8> {
    ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: rejected as i64,
            error_message: message.to_owned(),
        }),
    }
    .encode_to_vec()
}

/// An attribute's value as JSON (receivers and tests).
pub fn value_json(value: &AnyValue) -> serde_json::Value {
    use any_value::Value;
    match &value.value {
        None => serde_json::Value::Null,
        Some(Value::StringValue(s)) => s.clone().into(),
        Some(Value::BoolValue(b)) => (*b).into(),
        Some(Value::IntValue(i)) => (*i).into(),
        Some(Value::DoubleValue(d)) => (*d).into(),
        Some(Value::BytesValue(b)) => hex::encode(b).into(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(value_json).collect(),
        Some(Value::KvlistValue(list)) => attributes_json(&list.values).into(),
        // A dictionary index (profiles only): no value of its own.
        Some(Value::StringValueStrindex(_)) => serde_json::Value::Null,
    }
}

/// Attributes as a JSON object (receivers and tests).
pub fn attributes_json(attributes: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value
                    .as_ref()
                    .map_or(serde_json::Value::Null, value_json),
            )
        })
        .collect()
}

/// What an OTLP request carried, in the JSON envelope's shape: the
/// telemetry records (fields = their attributes but the `consentry.*`
/// ones), the batch id, the drop counts, or the deletion request it is.
#[derive(Debug, Clone)]
pub enum Carried {
    Batch(Envelope),
    Deletion(DeletionRequest),
}

/// Why an OTLP request is not one the agent sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("a log record in an unknown scope `{0}`")]
    UnknownScope(String),
    #[error("two batch ids in one request: {0} and {1}")]
    TwoBatchIds(String, String),
    #[error("a request without a single record")]
    Empty,
    #[error("batch id `{id}`: {why}")]
    BatchId { id: String, why: String },
    #[error("a record without its consent proof")]
    NoProof,
    #[error("clause version out of range")]
    VersionRange,
    #[error("`{value}` is not a uuid: {why}")]
    NotAUuid { value: String, why: String },
    #[error("a deletion request without its clause version")]
    NoClauseVersion,
}

/// Undoes the mapping of [`super::request`] and [`super::deletion_request`].
pub fn to_envelope(request: &ExportLogsServiceRequest) -> Result<Carried, ReadError> {
    let mut batch_id = None;
    let mut agent = None;
    let mut records = Vec::new();
    let mut dropped = Drops::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|r| attributes_json(&r.attributes))
            .unwrap_or_default();
        agent.get_or_insert_with(|| AgentInfo {
            name: text(&resource, keys::SERVICE_NAME),
            version: text(&resource, keys::SERVICE_VERSION),
        });
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().map_or("", |s| s.name.as_str());
            for log in &scope_logs.log_records {
                let mut attributes = attributes_json(&log.attributes);
                let id = text(&attributes, keys::BATCH_ID);
                match scope {
                    SCOPE => records.push(record(&mut attributes, log.time_unix_nano)?),
                    DROPS_SCOPE => {
                        *dropped
                            .entry(text(&attributes, keys::PURPOSE))
                            .or_default()
                            .entry(text(&attributes, keys::DROP_REASON))
                            .or_default() += attributes[keys::DROPPED].as_u64().unwrap_or(0);
                    }
                    DELETION_SCOPE => {
                        return deletion(&resource, &attributes, log.time_unix_nano);
                    }
                    other => return Err(ReadError::UnknownScope(other.to_owned())),
                }
                match &batch_id {
                    None => batch_id = Some(id),
                    Some(first) if *first != id => {
                        return Err(ReadError::TwoBatchIds(first.clone(), id));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    let batch_id = batch_id.ok_or(ReadError::Empty)?;
    Ok(Carried::Batch(Envelope {
        schema: SCHEMA,
        batch_id: batch_id
            .parse()
            .map_err(|err: uuid::Error| ReadError::BatchId {
                id: batch_id.clone(),
                why: err.to_string(),
            })?,
        agent: agent.unwrap_or(AgentInfo {
            name: String::new(),
            version: String::new(),
        }),
        sent_at: String::new(),
        records,
        dropped,
    }))
}

type Attributes = serde_json::Map<String, serde_json::Value>;

fn text(attributes: &Attributes, key: &str) -> String {
    attributes
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn rfc3339_of(nanos: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// One telemetry record: the proof taken out, the rest is its fields.
fn record(attributes: &mut Attributes, nanos: u64) -> Result<WireRecord, ReadError> {
    let mut take = |key: &str| attributes.remove(key).unwrap_or_default();
    let purpose = take(keys::PURPOSE);
    let clause = take(keys::CLAUSE);
    let version = take(keys::CLAUSE_VERSION);
    let sha256 = take(keys::CLAUSE_SHA256);
    take(keys::BATCH_ID);
    take(keys::RECORD);
    let (Some(purpose), Some(clause), Some(version), Some(sha256)) = (
        purpose.as_str(),
        clause.as_str(),
        version.as_u64(),
        sha256.as_str(),
    ) else {
        return Err(ReadError::NoProof);
    };
    let fields = serde_json::to_string(&*attributes).expect("a JSON map serializes");
    Ok(WireRecord {
        purpose: purpose.to_owned(),
        clause: clause.to_owned(),
        clause_version: u32::try_from(version).map_err(|_| ReadError::VersionRange)?,
        clause_sha256: sha256.to_owned(),
        collected_at: rfc3339_of(nanos),
        fields: RawValue::from_string(fields).expect("serialized JSON is JSON"),
    })
}

fn deletion(
    resource: &Attributes,
    attributes: &Attributes,
    nanos: u64,
) -> Result<Carried, ReadError> {
    let uuid = |value: String| {
        value.parse::<Uuid>().map_err(|err| ReadError::NotAUuid {
            why: err.to_string(),
            value,
        })
    };
    let optional = |attributes: &Attributes, key: &str| match attributes.get(key) {
        None => Ok(None),
        Some(_) => uuid(text(attributes, key)).map(Some),
    };
    Ok(Carried::Deletion(DeletionRequest {
        request_id: uuid(text(attributes, keys::BATCH_ID))?,
        requested_at: rfc3339_of(nanos),
        clause: ClauseRef {
            id: text(attributes, keys::CLAUSE),
            version: attributes[keys::CLAUSE_VERSION]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(ReadError::NoClauseVersion)?,
            text_sha256: text(attributes, keys::CLAUSE_SHA256),
        },
        installation_id: optional(resource, keys::INSTALLATION_ID)?,
        erasure_key: optional(attributes, keys::ERASURE_KEY)?,
        purposes: attributes[keys::PURPOSES]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_answer_is_read_whether_int64_is_a_string_or_a_number() {
        for body in [
            r#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"too big"}}"#,
            r#"{"partialSuccess":{"rejectedLogRecords":3,"errorMessage":"too big"}}"#,
        ] {
            assert_eq!(
                rejected_json(body.as_bytes()).unwrap(),
                Some(Rejected {
                    records: 3,
                    message: "too big".into()
                }),
                "{body}"
            );
        }
        assert_eq!(rejected_json(b"{}").unwrap(), None);
        assert_eq!(rejected_json(b"  ").unwrap(), None);
    }
}
