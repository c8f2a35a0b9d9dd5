//! A request body read back: consentry's JSON envelope, or an OTLP logs
//! export request read into the same shape, or the deletion request it
//! is instead, with the size of the document inside.

use hyper::body::Bytes;
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};

use super::{OtlpUnreadable, Undecodable};
use crate::upload::otlp;
use crate::upload::protocol::{DeletionEnvelope, Envelope};

/// A request body read back: the batch it holds (or why it holds none),
/// the bytes as they arrived, the size of the document inside, and the
/// deletion request it is instead, if so.
pub(super) struct Decoded {
    pub(super) envelope: Result<Envelope, Undecodable>,
    pub(super) body: Bytes,
    pub(super) json_bytes: usize,
    pub(super) deletion: Option<DeletionEnvelope>,
}

impl Decoded {
    pub(super) fn of<E: std::fmt::Display>(body: Result<Bytes, E>, otlp: bool) -> Self {
        let (envelope, body, json_bytes, otlp_deletion) = match body {
            Ok(bytes) if otlp => match otlp_decode(&bytes) {
                Ok((envelope, deletion, size)) => (envelope, bytes, size, deletion),
                Err(err) => (Err(Undecodable::Otlp(err)), bytes, 0, None),
            },
            Ok(bytes) => match Envelope::decode_sized(&bytes) {
                Ok((envelope, json_bytes)) => (Ok(envelope), bytes, json_bytes, None),
                Err(err) => (Err(Undecodable::Envelope(err.to_string())), bytes, 0, None),
            },
            Err(err) => (
                Err(Undecodable::Unreadable(err.to_string())),
                Bytes::new(),
                0,
                None,
            ),
        };
        let deletion = match &envelope {
            Err(_) if otlp => otlp_deletion,
            Err(_) => DeletionEnvelope::decode(&body),
            Ok(_) => None,
        };
        let envelope = match (&deletion, envelope) {
            (Some(_), Err(_)) => Err(Undecodable::DeletionRequest),
            (_, envelope) => envelope,
        };
        Self {
            envelope,
            body,
            json_bytes,
            deletion,
        }
    }
}

/// An OTLP body read back into the envelope's shape (or the deletion
/// request it is), and the size of its protobuf bytes.
#[allow(clippy::type_complexity)]
fn otlp_decode(
    bytes: &[u8],
) -> Result<
    (
        Result<Envelope, Undecodable>,
        Option<DeletionEnvelope>,
        usize,
    ),
    OtlpUnreadable,
> {
    let request = otlp::decode_request(bytes).map_err(|e| OtlpUnreadable::Decode(e.to_string()))?;
    let size = prost::Message::encoded_len(&request);
    Ok(match otlp::to_envelope(&request)? {
        otlp::Carried::Batch(envelope) => (Ok(envelope), None, size),
        otlp::Carried::Deletion(request) => (
            Err(Undecodable::DeletionRequest),
            Some(DeletionEnvelope::new(request)),
            size,
        ),
    })
}

/// A consentry envelope counted, not kept: how many records it holds and
/// the size of its JSON; `None` when the body is not one. The whole
/// document is still read as JSON (a malformed one is not counted), but no
/// record is made: a load run's receiver shares the machine with the
/// agent it measures. (Glean's peer, `--compare-glean`, reads each ping
/// whole into a `serde_json::Value` in its own process, on its own CPU
/// time: more work per event than this, counted against Glean.)
pub(super) fn tally(body: &[u8]) -> Option<(u64, usize)> {
    #[derive(Deserialize)]
    struct Counted {
        #[allow(dead_code)]
        schema: u32,
        #[allow(dead_code)]
        batch_id: uuid::Uuid,
        #[serde(deserialize_with = "count")]
        records: u64,
    }
    fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(n)
            }
        }
        deserializer.deserialize_seq(Count)
    }
    let json = crate::upload::compression::decompress(body).ok()?;
    let counted: Counted = serde_json::from_slice(&json).ok()?;
    Some((counted.records, json.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, QueuedRecord};
    use crate::upload::compression::Compression;
    use crate::upload::protocol;

    #[test]
    fn a_tally_counts_what_a_full_decode_reads() {
        let records: Vec<QueuedRecord> = (0..3)
            .map(|n| QueuedRecord {
                purpose: "update_identity".into(),
                clause: "eula".into(),
                clause_version: 1,
                clause_sha256: "ab".repeat(32),
                collected_at: "2026-01-01T00:00:00Z".into(),
                fields_json: format!(r#"{{"product_id":"p{n}"}}"#),
            })
            .collect();
        let batch = Batch::of_records(uuid::Uuid::new_v4(), &records);
        let body = protocol::encode_batch(&batch, &Default::default(), Compression::Zstd);
        let (envelope, json_bytes) = Envelope::decode_sized(&body.bytes).unwrap();
        assert_eq!(
            tally(&body.bytes),
            Some((envelope.records.len() as u64, json_bytes))
        );
        assert_eq!(envelope.records.len(), 3);
        let mut json = body.json().unwrap();
        json.truncate(json.len() - 3);
        assert_eq!(
            tally(&Compression::Zstd.compress(&json)),
            None,
            "a cut document is not counted"
        );
        assert_eq!(tally(b"not a body"), None);
    }
}
