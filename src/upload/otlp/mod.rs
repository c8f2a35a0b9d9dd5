//! The OTLP/HTTP wire format (`[upload] protocol = "otlp-http"`): one batch
//! as an OpenTelemetry `ExportLogsServiceRequest` (protobuf, gzip), built
//! from the OpenTelemetry project's generated types (`opentelemetry-proto`),
//! so any OpenTelemetry Collector with an `otlphttp` receiver can take it.
//!
//! The mapping (`docs/fleet.md` is the long form):
//!
//! - one log record per queued record; its fields are attributes under
//!   their catalogue names, its `collected_at` is the record's time, its
//!   `event_name` is `consentry.<purpose>`;
//! - the consent proof travels on every record: `consentry.purpose`,
//!   `consentry.clause`, `consentry.clause_version`,
//!   `consentry.clause_sha256` (the digest of the accepted text), and
//!   `consentry.batch_id` and `consentry.record` (its place in the batch),
//!   together the dedup key (the batch id is also the `Idempotency-Key`);
//! - the resource is the agent's identity: `service.name`, `service.version`
//!   and `consentry.region` always, and `consentry.installation_id`,
//!   `consentry.product_id`, `consentry.product_version` only for records
//!   whose purpose carries those fields: records are grouped into one
//!   `ResourceLogs` per identity, so the resource never adds a field a
//!   purpose did not declare (a KSN aggregate stays unlinked to the
//!   installation id);
//! - the unreported drop counts go in their own scope, `consentry.drops`,
//!   one log record per purpose and reason, never mixed with the records.

mod read;
mod values;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

pub use read::{
    Carried, ReadError, Rejected, attributes_json, decode_request, partial_success, rejected,
    rejected_json, to_envelope, to_json, value_json,
};

use super::compression::Compression;
use super::protocol::{Body, ProtocolError};
use crate::catalogue::Region;
use crate::consent::receipt::DeletionRequest;
use crate::store::{Batch, Drops, QueuedRecord};

/// `Content-Type` of a request and of the answer we can read.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// The scope of every telemetry record.
pub const SCOPE: &str = "consentry";
/// The scope of the drop counts.
pub const DROPS_SCOPE: &str = "consentry.drops";
/// The scope of a deletion request.
pub const DELETION_SCOPE: &str = "consentry.deletion";

/// Attribute keys, one vocabulary with the JSON envelope's names.
pub mod keys {
    pub const PURPOSE: &str = "consentry.purpose";
    pub const CLAUSE: &str = "consentry.clause";
    pub const CLAUSE_VERSION: &str = "consentry.clause_version";
    pub const CLAUSE_SHA256: &str = "consentry.clause_sha256";
    pub const BATCH_ID: &str = "consentry.batch_id";
    /// The record's place in its batch: with the batch id, an exact dedup
    /// key (a resent batch is the same bytes, so the same places).
    pub const RECORD: &str = "consentry.record";
    pub const REGION: &str = "consentry.region";
    pub const INSTALLATION_ID: &str = "consentry.installation_id";
    pub const PRODUCT_ID: &str = "consentry.product_id";
    pub const PRODUCT_VERSION: &str = "consentry.product_version";
    pub const DROP_REASON: &str = "consentry.drop_reason";
    pub const DROPPED: &str = "consentry.dropped";
    pub const PURPOSES: &str = "consentry.purposes";
    pub const DELETION_REQUEST: &str = "consentry.deletion_request";
    /// The erasure key a deletion request names (its records carry it as
    /// their `erasure_key` attribute).
    pub const ERASURE_KEY: &str = "consentry.erasure_key";
    pub const SERVICE_NAME: &str = "service.name";
    pub const SERVICE_VERSION: &str = "service.version";
}

/// The record fields lifted into the resource when a record carries them:
/// (field name, resource attribute).
const IDENTITY_FIELDS: [(&str, &str); 3] = [
    ("installation_id", keys::INSTALLATION_ID),
    ("product_id", keys::PRODUCT_ID),
    ("product_version", keys::PRODUCT_VERSION),
];

/// Builds the request for `batch`: records grouped by the identity they
/// carry, the drop counts in their own scope.
pub fn request(
    batch: &Batch,
    region: Region,
    drops: &Drops,
) -> Result<ExportLogsServiceRequest, ProtocolError> {
    let batch_id = batch.id.to_string();
    // Identity (the lifted fields' values) → its records, in queue order.
    let mut groups: BTreeMap<Identity, Vec<LogRecord>> = BTreeMap::new();
    for (index, record) in batch.records().enumerate() {
        let record = record.map_err(ProtocolError::Unreadable)?;
        let (identity, log) = log_record(&record, &batch_id, index)?;
        groups.entry(identity).or_default().push(log);
    }
    if !drops.is_empty() {
        // Drop counts carry no identity: the bare resource.
        groups.entry(Vec::new()).or_default();
    }
    let resource_logs = groups
        .into_iter()
        .map(|(identity, log_records)| {
            let mut scope_logs = Vec::new();
            if !log_records.is_empty() {
                scope_logs.push(scope_logs_of(SCOPE, log_records));
            }
            if identity.is_empty() && !drops.is_empty() {
                scope_logs.push(scope_logs_of(DROPS_SCOPE, drop_records(drops, &batch_id)));
            }
            ResourceLogs {
                resource: Some(resource(region, &identity)),
                scope_logs,
                ..Default::default()
            }
        })
        .collect();
    Ok(ExportLogsServiceRequest { resource_logs })
}

/// A withdrawal's deletion request as a request of its own: one log record
/// (`event_name` `consentry.deletion_request`, scope
/// `consentry.deletion`) under a resource with the installation id it is
/// about (when it names one), the erasure key it names as
/// `consentry.erasure_key` (when it names one), and the request id as
/// `consentry.batch_id` (its dedup key, as for a batch).
pub fn deletion_request(request: &DeletionRequest, region: Region) -> ExportLogsServiceRequest {
    let time = unix_nanos(&request.requested_at);
    let purposes = AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: request
                .purposes
                .iter()
                .map(|p| AnyValue {
                    value: Some(any_value::Value::StringValue(p.clone())),
                })
                .collect(),
        })),
    };
    let mut attributes = vec![
        string(keys::BATCH_ID, &request.request_id.to_string()),
        string(keys::CLAUSE, &request.clause.id),
        int(keys::CLAUSE_VERSION, i64::from(request.clause.version)),
        string(keys::CLAUSE_SHA256, &request.clause.text_sha256),
        kv(keys::PURPOSES.to_owned(), purposes),
    ];
    if let Some(key) = request.erasure_key {
        attributes.push(string(keys::ERASURE_KEY, &key.to_string()));
    }
    let record = LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        event_name: keys::DELETION_REQUEST.to_owned(),
        attributes,
        ..Default::default()
    };
    let identity: Identity = request
        .installation_id
        .map(|id| (keys::INSTALLATION_ID, id.to_string()))
        .into_iter()
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(region, &identity)),
            scope_logs: vec![scope_logs_of(DELETION_SCOPE, vec![record])],
            ..Default::default()
        }],
    }
}

/// The request body: protobuf, compressed with `compression`; the digest
/// and size are those of the protobuf bytes.
pub fn encode(request: &ExportLogsServiceRequest, compression: Compression) -> Body {
    Body::of_document(&request.encode_to_vec(), compression)
}

fn scope_logs_of(name: &str, log_records: Vec<LogRecord>) -> ScopeLogs {
    ScopeLogs {
        scope: Some(InstrumentationScope {
            name: name.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        }),
        log_records,
        ..Default::default()
    }
}

fn resource(region: Region, identity: &[(&'static str, String)]) -> Resource {
    let mut attributes = vec![
        string(keys::SERVICE_NAME, env!("CARGO_PKG_NAME")),
        string(keys::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        string(keys::REGION, region.as_str()),
    ];
    attributes.extend(identity.iter().map(|(key, value)| string(key, value)));
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The identity fields a record carries: (resource attribute, value).
type Identity = Vec<(&'static str, String)>;

/// One queued record as a log record, and the identity it carries.
fn log_record(
    record: &QueuedRecord,
    batch_id: &str,
    index: usize,
) -> Result<(Identity, LogRecord), ProtocolError> {
    let corrupt = |source| ProtocolError::CorruptRecord {
        purpose: record.purpose.clone(),
        source,
    };
    let mut attributes = values::attributes(&record.fields_json).map_err(corrupt)?;
    let identity = IDENTITY_FIELDS
        .iter()
        .filter_map(|(field, key)| {
            attributes
                .iter()
                .find(|kv| kv.key == *field)
                .and_then(
                    |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(value)) => Some((*key, value.clone())),
                        _ => None,
                    },
                )
        })
        .collect();
    attributes.reserve(6);
    attributes.extend([
        string(keys::PURPOSE, &record.purpose),
        string(keys::CLAUSE, &record.clause),
        int(keys::CLAUSE_VERSION, i64::from(record.clause_version)),
        string(keys::CLAUSE_SHA256, &record.clause_sha256),
        string(keys::BATCH_ID, batch_id),
        int(keys::RECORD, index as i64),
    ]);
    let time = unix_nanos(&record.collected_at);
    Ok((
        identity,
        LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            event_name: format!("consentry.{}", record.purpose),
            attributes,
            ..Default::default()
        },
    ))
}

fn drop_records(drops: &Drops, batch_id: &str) -> Vec<LogRecord> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    drops
        .iter()
        .flat_map(|(purpose, reasons)| {
            reasons.iter().map(move |(reason, count)| LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                event_name: keys::DROPPED.to_owned(),
                attributes: vec![
                    string(keys::PURPOSE, purpose),
                    string(keys::DROP_REASON, reason),
                    int(keys::DROPPED, i64::try_from(*count).unwrap_or(i64::MAX)),
                    string(keys::BATCH_ID, batch_id),
                ],
                ..Default::default()
            })
        })
        .collect()
}

/// RFC 3339 → nanoseconds since the epoch; 0 ("unknown", as OTLP says)
/// when it cannot be read.
fn unix_nanos(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339_weak(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kv(key: String, value: AnyValue) -> KeyValue {
    KeyValue {
        key,
        value: Some(value),
        ..Default::default()
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    kv(
        key.to_owned(),
        AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        },
    )
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(
        key.to_owned(),
        AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use uuid::Uuid;

    fn record(purpose: &str, fields: &str) -> QueuedRecord {
        QueuedRecord {
            purpose: purpose.into(),
            clause: "eula".into(),
            clause_version: 3,
            clause_sha256: "ab".repeat(32),
            collected_at: "2026-11-26T10:00:00Z".into(),
            fields_json: fields.into(),
        }
    }

    #[test]
    fn records_become_log_records_grouped_by_the_identity_they_carry() {
        let id = Uuid::new_v4();
        let batch = Batch::of_records(
            id,
            &[
                record(
                    "update_identity",
                    r#"{"product_id":"p","product_version":"1.0","installation_id":"i-1","update_task_id":"t"}"#,
                ),
                record(
                    "ksn_scan_aggregates",
                    r#"{"unknown_statuses":7,"nested":{"a":[1,true,null]}}"#,
                ),
                record(
                    "update_identity",
                    r#"{"product_id":"p","product_version":"1.0","installation_id":"i-1","update_task_id":"u"}"#,
                ),
            ],
        );
        let mut drops = Drops::new();
        drops
            .entry("installation_errors".into())
            .or_default()
            .insert("queue_full".into(), 4);
        let body = encode(
            &request(&batch, Region::Eu, &drops).unwrap(),
            Compression::Zstd,
        );
        assert_eq!(Compression::of(&body.bytes), Some(Compression::Zstd));
        let decoded = decode_request(&body.bytes).unwrap();
        assert_eq!(body.sha256, hex::encode(Sha256::digest(&body.bytes)));

        assert_eq!(decoded.resource_logs.len(), 2, "{decoded:#?}");
        // No identity: the KSN aggregate and the drop counts.
        let bare = &decoded.resource_logs[0];
        let resource = attributes_json(&bare.resource.as_ref().unwrap().attributes);
        assert_eq!(resource[keys::REGION], "eu");
        assert_eq!(resource[keys::SERVICE_NAME], "consentry");
        assert!(
            !resource.contains_key(keys::INSTALLATION_ID),
            "{resource:?}"
        );
        assert_eq!(bare.scope_logs.len(), 2);
        let ksn = &bare.scope_logs[0].log_records[0];
        let attributes = attributes_json(&ksn.attributes);
        assert_eq!(attributes["unknown_statuses"], 7);
        assert_eq!(attributes["nested"], serde_json::json!({"a": [1, true]}));
        assert_eq!(attributes[keys::PURPOSE], "ksn_scan_aggregates");
        assert_eq!(attributes[keys::CLAUSE_VERSION], 3);
        assert_eq!(attributes[keys::BATCH_ID], id.to_string());
        assert_eq!(attributes[keys::RECORD], 1, "its place in the batch");
        assert_eq!(ksn.event_name, "consentry.ksn_scan_aggregates");
        assert_eq!(ksn.time_unix_nano, 1_795_687_200_000_000_000);
        let dropped = &bare.scope_logs[1];
        assert_eq!(dropped.scope.as_ref().unwrap().name, DROPS_SCOPE);
        let dropped = attributes_json(&dropped.log_records[0].attributes);
        assert_eq!(dropped[keys::DROPPED], 4);
        assert_eq!(dropped[keys::DROP_REASON], "queue_full");

        // The identity its records carry, both records in order.
        let identified = &decoded.resource_logs[1];
        let resource = attributes_json(&identified.resource.as_ref().unwrap().attributes);
        assert_eq!(resource[keys::INSTALLATION_ID], "i-1");
        assert_eq!(resource[keys::PRODUCT_VERSION], "1.0");
        let tasks: Vec<_> = identified.scope_logs[0]
            .log_records
            .iter()
            .map(|r| attributes_json(&r.attributes)["update_task_id"].clone())
            .collect();
        assert_eq!(tasks, ["t", "u"]);
    }

    #[test]
    fn corrupt_fields_are_an_error_and_answers_are_read() {
        let batch = Batch::of_records(Uuid::new_v4(), &[record("p", "{not json")]);
        assert!(matches!(
            request(&batch, Region::Global, &Drops::new()),
            Err(ProtocolError::Unreadable(_))
        ));
        assert_eq!(rejected(b"").unwrap(), None);
        assert_eq!(
            rejected(&partial_success(0, "just a warning")).unwrap(),
            None
        );
        assert_eq!(
            rejected(&partial_success(2, "bad attribute")).unwrap(),
            Some(Rejected {
                records: 2,
                message: "bad attribute".into()
            })
        );
        assert!(rejected(b"\xff\xff not protobuf").is_err());
    }
}
