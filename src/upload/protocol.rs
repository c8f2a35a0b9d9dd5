//! The wire format of one batch: a compressed JSON envelope (zstd, or
//! gzip for a receiver that refuses zstd: `compression`).
//!
//! ```json
//! { "schema": 1, "batch_id": "…", "agent": {"name": "consentry", "version": "0.1.0"},
//!   "sent_at": "2026-11-25T14:00:00Z",
//!   "records": [ { "purpose": "update_identity", "clause": "eula", "clause_version": 3,
//!                  "clause_sha256": "…", "collected_at": "…", "fields": { … } } ] }
//! ```
//!
//! Every record names the purpose it serves and the clause (id, version and
//! SHA-256 of the accepted text) that allowed it. The batch id is also the
//! request's `Idempotency-Key`. `docs/protocol.md` is the long form.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::rfc3339;
use crate::consent::receipt::DeletionRequest;
use crate::store::{Batch, Drops, Segment};
use crate::upload::compression::{Compression, decompress};

/// Version of the envelope; a receiver refuses what it does not know.
pub const SCHEMA: u32 = 1;

/// Who sent the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: String,
    pub version: String,
}

/// One record on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRecord {
    pub purpose: String,
    pub clause: String,
    pub clause_version: u32,
    pub clause_sha256: String,
    pub collected_at: String,
    pub fields: Box<RawValue>,
}

/// One batch on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub schema: u32,
    pub batch_id: Uuid,
    pub agent: AgentInfo,
    pub sent_at: String,
    pub records: Vec<WireRecord>,
    /// Records dropped on this machine to keep the queue's bounds and not
    /// reported before: purpose → reason (`queue_full`, `too_old`) →
    /// count. Only purposes that may send now; absent when there are none.
    #[serde(default, skip_serializing_if = "Drops::is_empty")]
    pub dropped: Drops,
}

/// A deletion request on the wire: the same endpoint, gzip JSON, with
/// `kind` telling it apart from a batch and `Idempotency-Key` equal to
/// `request.request_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionEnvelope {
    pub schema: u32,
    /// Always `deletion_request`.
    pub kind: String,
    pub agent: AgentInfo,
    pub sent_at: String,
    pub request: DeletionRequest,
}

impl DeletionEnvelope {
    pub const KIND: &'static str = "deletion_request";

    pub fn new(request: DeletionRequest) -> Self {
        Self {
            schema: SCHEMA,
            kind: Self::KIND.into(),
            agent: AgentInfo {
                name: env!("CARGO_PKG_NAME").into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            sent_at: rfc3339(SystemTime::now()),
            request,
        }
    }

    /// The request body: JSON, compressed with `compression`.
    pub fn encode(&self, compression: Compression) -> Vec<u8> {
        compression.compress(&serde_json::to_vec(self).expect("a deletion request serializes"))
    }

    /// Reads a request body (receivers and tests), compressed or plain;
    /// `None` when it is not a deletion request.
    pub fn decode(body: &[u8]) -> Option<Self> {
        let json = decompress(body).ok()?;
        serde_json::from_slice::<Self>(&json)
            .ok()
            .filter(|d| d.kind == Self::KIND)
    }
}

/// One request body as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The bytes on the wire.
    pub bytes: Vec<u8>,
    /// How they are compressed (`Content-Encoding`).
    pub compression: Compression,
    /// SHA-256 (hex) of `bytes`: the body exactly as it goes on the wire,
    /// compressed, which is what a receiver gets (and can hash without
    /// decompressing). Hashing the wire bytes instead of the document
    /// inside costs a hundredth as much (about 6 bytes a record instead of
    /// 370); `history` records it, and `history --show --wire` prints the
    /// bytes it is the digest of.
    pub sha256: String,
    /// The document's size, when known without decompressing (a body just
    /// encoded; not one read back from the store).
    pub json_len: Option<usize>,
}

impl Body {
    /// The body holding `document` (a JSON envelope, an OTLP request's
    /// protobuf bytes) compressed with `compression`, with its SHA-256.
    pub fn of_document(document: &[u8], compression: Compression) -> Self {
        let bytes = compression.compress(document);
        Self {
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
            compression,
            json_len: Some(document.len()),
        }
    }

    /// A kept body read back: its compression told by its own bytes.
    pub fn kept(bytes: Vec<u8>, sha256: String) -> Self {
        Self {
            compression: Compression::of(&bytes).unwrap_or_default(),
            bytes,
            sha256,
            json_len: None,
        }
    }

    /// The document inside, byte for byte.
    pub fn json(&self) -> Result<Vec<u8>, ProtocolError> {
        decompress(&self.bytes).map_err(ProtocolError::Decompress)
    }
}

/// Why a batch could not be encoded or a body decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("queued record of `{purpose}` holds invalid JSON fields: {source}")]
    CorruptRecord {
        purpose: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Unreadable(String),
    #[error("body cannot be decompressed: {0}")]
    Decompress(#[source] std::io::Error),
    #[error("body is not a batch envelope: {0}")]
    Json(#[source] serde_json::Error),
    #[error("body is not an OTLP logs export request: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

/// The JSON body of `batch`, written straight from its segments: the
/// envelope's head, each record as its segment's clause prefix and its
/// stored line (`store::segment`), and the envelope's tail with the drop
/// counts. The bytes are those `serde_json` writes for the same
/// [`Envelope`] (a test keeps them so); no record is parsed or copied on
/// the way.
pub fn encode_batch(batch: &Batch, dropped: &Drops, compression: Compression) -> Body {
    let head = Envelope::empty(batch.id);
    // The document is made whole in memory, hashed and compressed in one
    // pass each (about 470 bytes a record: half a megabyte for 1,000).
    let mut document = Vec::with_capacity(document_len(batch));
    write_batch(&mut document, &head, batch, dropped).expect("writing to memory cannot fail");
    Body::of_document(&document, compression)
}

/// About how long `batch`'s JSON is: its lines, each record's clause
/// prefix, and the envelope's head and tail.
fn document_len(batch: &Batch) -> usize {
    let lines: usize = batch.segments.iter().map(|s| s.lines.len()).sum();
    lines + batch.len() * 160 + 512
}

/// Writes `head` (an envelope without records) with `batch`'s records and
/// the `dropped` counts into `out`.
fn write_batch(
    out: &mut Vec<u8>,
    head: &Envelope,
    batch: &Batch,
    dropped: &Drops,
) -> std::io::Result<()> {
    // `{"schema":1,…,"records":[]}` without its last two bytes.
    serde_json::to_writer(&mut *out, head)?;
    out.truncate(out.len() - 2);
    let mut first = true;
    for segment in &batch.segments {
        let prefix = record_prefix(segment);
        for line in segment.lines() {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&prefix);
            out.extend_from_slice(&line.as_bytes()[1..]);
        }
    }
    out.push(b']');
    if !dropped.is_empty() {
        out.extend_from_slice(b",\"dropped\":");
        serde_json::to_writer(&mut *out, dropped)?;
    }
    out.push(b'}');
    Ok(())
}

/// What every record of `segment` starts with on the wire:
/// `{"purpose":…,"clause":…,"clause_version":…,"clause_sha256":…,` (its
/// line, less its own `{`, follows).
fn record_prefix(segment: &Segment) -> Vec<u8> {
    let text = |value: &str| serde_json::to_string(value).expect("a string serializes");
    format!(
        "{{\"purpose\":{},\"clause\":{},\"clause_version\":{},\"clause_sha256\":{},",
        text(&segment.purpose),
        text(&segment.clause),
        segment.clause_version,
        text(&segment.clause_sha256),
    )
    .into_bytes()
}

impl Envelope {
    /// The envelope of `batch`, each record read from its line (tests and
    /// tools; the uploader writes bodies with [`encode_batch`]).
    pub fn from_batch(batch: &Batch) -> Result<Self, ProtocolError> {
        let records = batch
            .records()
            .map(|record| {
                let record = record.map_err(ProtocolError::Unreadable)?;
                let fields = RawValue::from_string(record.fields_json).map_err(|source| {
                    ProtocolError::CorruptRecord {
                        purpose: record.purpose.clone(),
                        source,
                    }
                })?;
                Ok(WireRecord {
                    purpose: record.purpose,
                    clause: record.clause,
                    clause_version: record.clause_version,
                    clause_sha256: record.clause_sha256,
                    collected_at: record.collected_at,
                    fields,
                })
            })
            .collect::<Result<_, ProtocolError>>()?;
        Ok(Self {
            records,
            ..Self::empty(batch.id)
        })
    }

    /// Batch `id`'s envelope with no records yet, sent now.
    fn empty(id: Uuid) -> Self {
        Self {
            schema: SCHEMA,
            batch_id: id,
            agent: AgentInfo {
                name: env!("CARGO_PKG_NAME").into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            sent_at: rfc3339(SystemTime::now()),
            records: Vec::new(),
            dropped: Drops::new(),
        }
    }

    /// The request body: JSON, compressed with `compression`.
    pub fn encode(&self, compression: Compression) -> Vec<u8> {
        self.encode_body(compression).bytes
    }

    /// The request body, with its SHA-256: what the audit trail records
    /// and `history --show` reproduces.
    pub fn encode_body(&self, compression: Compression) -> Body {
        let document = serde_json::to_vec(self).expect("an envelope always serializes into memory");
        Body::of_document(&document, compression)
    }

    /// Reads a request body (for receivers and tests): zstd, gzip or
    /// plain, told by its own bytes.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        Self::decode_sized(body).map(|(envelope, _)| envelope)
    }

    /// [`Envelope::decode`], with the size of the JSON it decoded (the
    /// body's size once decompressed).
    pub fn decode_sized(body: &[u8]) -> Result<(Self, usize), ProtocolError> {
        let json = decompress(body).map_err(ProtocolError::Decompress)?;
        let envelope = serde_json::from_slice(&json).map_err(ProtocolError::Json)?;
        Ok((envelope, json.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::QueuedRecord;

    #[test]
    fn envelope_round_trips_through_either_compression() {
        let batch = Batch::of_records(
            Uuid::new_v4(),
            &[QueuedRecord {
                purpose: "update_identity".into(),
                clause: "eula".into(),
                clause_version: 1,
                clause_sha256: "ab".repeat(32),
                collected_at: "2026-01-01T00:00:00Z".into(),
                fields_json: r#"{"product_id":"p"}"#.into(),
            }],
        );
        for compression in [Compression::Zstd, Compression::Gzip] {
            let body = Envelope::from_batch(&batch).unwrap().encode(compression);
            assert_eq!(Compression::of(&body), Some(compression));
            let decoded = Envelope::decode(&body).unwrap();
            assert_eq!(decoded.batch_id, batch.id);
            assert_eq!(decoded.records[0].fields.get(), r#"{"product_id":"p"}"#);
            assert_eq!(decoded.records[0].clause, "eula");
        }
    }

    #[test]
    fn a_body_records_the_digest_and_size_of_the_json_it_carries() {
        // Empty, and far larger than the serializer's 32 KiB buffer.
        for count in [0, 2000] {
            let record = QueuedRecord {
                purpose: "update_identity".into(),
                clause: "eula".into(),
                clause_version: 1,
                clause_sha256: "ab".repeat(32),
                collected_at: "2026-01-01T00:00:00Z".into(),
                fields_json: r#"{"product_id":"p"}"#.into(),
            };
            let batch = Batch::of_records(Uuid::new_v4(), &vec![record; count]);
            let body = Envelope::from_batch(&batch)
                .unwrap()
                .encode_body(Compression::Zstd);
            let json = body.json().unwrap();
            assert_eq!(body.sha256, hex::encode(Sha256::digest(&body.bytes)));
            assert_eq!(body.json_len, Some(json.len()));
            let decoded: Envelope = serde_json::from_slice(&json).unwrap();
            assert_eq!(decoded.batch_id, batch.id);
            assert_eq!(decoded.records.len(), count);
        }
    }

    #[test]
    fn corrupt_fields_are_an_error_not_a_panic() {
        let batch = Batch::of_records(
            Uuid::new_v4(),
            &[QueuedRecord {
                purpose: "p".into(),
                clause: "eula".into(),
                clause_version: 1,
                clause_sha256: String::new(),
                collected_at: String::new(),
                fields_json: "{not json".into(),
            }],
        );
        assert!(matches!(
            Envelope::from_batch(&batch),
            Err(ProtocolError::Unreadable(_))
        ));
    }

    #[test]
    fn a_body_built_from_lines_is_what_serde_writes_for_its_envelope() {
        let record = |purpose: &str, clause: &str, n: u32| QueuedRecord {
            purpose: purpose.into(),
            clause: clause.into(),
            clause_version: 3,
            clause_sha256: "ab".repeat(32),
            collected_at: format!("2026-01-01T00:00:0{n}Z"),
            fields_json: format!(r#"{{"n":{n},"s":"a\"b\u00e9"}}"#),
        };
        let batch = Batch::of_records(
            Uuid::new_v4(),
            &[
                record("a", "eula", 1),
                record("a", "eula", 2),
                record("b", "ksn", 3),
                record("a", "eula", 4),
            ],
        );
        assert_eq!(batch.segments.len(), 3);
        let mut drops = Drops::new();
        drops
            .entry("a".into())
            .or_default()
            .insert("queue_full".into(), 2);
        for dropped in [Drops::new(), drops] {
            let body = encode_batch(&batch, &dropped, Compression::Zstd);
            let json = body.json().unwrap();
            let decoded: Envelope = serde_json::from_slice(&json).unwrap();
            assert_eq!(decoded.records.len(), 4);
            assert_eq!(decoded.dropped, dropped);
            let expected = Envelope {
                sent_at: decoded.sent_at.clone(),
                dropped: dropped.clone(),
                ..Envelope::from_batch(&batch).unwrap()
            };
            assert_eq!(json, serde_json::to_vec(&expected).unwrap());
            assert_eq!(body.sha256, hex::encode(Sha256::digest(&body.bytes)));
            assert_eq!(body.json_len, Some(json.len()));
        }
        let empty = encode_batch(
            &Batch::of_records(Uuid::new_v4(), &[]),
            &Drops::new(),
            Compression::Gzip,
        );
        let decoded = Envelope::decode(&empty.bytes).unwrap();
        assert!(decoded.records.is_empty());
    }
}
