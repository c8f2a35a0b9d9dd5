//! A request body read back: consentry's JSON envelope, or an OTLP logs
//! export request read into the same shape, or the deletion request it
//! is instead, with the size of the document inside.

use hyper::body::Bytes;

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
