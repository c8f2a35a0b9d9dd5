//! A kept body (`store::SentBody`) as a person reads it: the JSON
//! envelope byte for byte as it was sent, or an OTLP request (protobuf)
//! in the specification's JSON mapping. `history --show` prints it and
//! the transparency report (`report`) embeds it, so both show the same
//! bytes. Its digest (of the bytes sent, compressed) is checked against
//! the one recorded at send time before anything is shown: a damaged store
//! never shows a body that was not the one sent.

use sha2::{Digest, Sha256};

use super::otlp;
use super::protocol::{Body, ProtocolError};
use crate::store::SentBody;

/// A kept body, readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// What `history --show` prints: the JSON envelope as sent, or the
    /// OTLP request as OTLP/JSON (pretty).
    pub document: Vec<u8>,
    /// The body was an OTLP request: `document` is its JSON rendering,
    /// and the digest is of the protobuf bytes sent.
    pub otlp: bool,
    /// The size of the document sent, before compression (the JSON envelope, or
    /// the protobuf bytes).
    pub sent_bytes: usize,
}

/// Why a kept body cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(
        "the kept body of batch {batch_id} does not match the SHA-256 recorded when it was sent ({actual} != {recorded}); the state database is damaged"
    )]
    Digest {
        batch_id: String,
        actual: String,
        recorded: String,
    },
    #[error("the OTLP body of batch {batch_id} cannot be rendered as JSON: {source}")]
    OtlpJson {
        batch_id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// `kept`, decompressed, checked against its recorded digest, and made
/// readable.
pub fn readable(kept: &SentBody) -> Result<Shown, ShowError> {
    let body = Body::kept(kept.bytes.clone(), kept.sha256.clone());
    let actual = hex::encode(Sha256::digest(&kept.bytes));
    let document = body.json()?;
    // Bodies kept before 2026-12-05 recorded the digest of the document
    // inside instead: either proves the bytes are the ones sent.
    if actual != kept.sha256 && hex::encode(Sha256::digest(&document)) != kept.sha256 {
        return Err(ShowError::Digest {
            batch_id: kept.batch_id.clone(),
            actual,
            recorded: kept.sha256.clone(),
        });
    }
    let sent_bytes = document.len();
    // A JSON envelope starts with `{`; a protobuf request never does (its
    // first byte is field 1's tag, 0x0a).
    if document.first() == Some(&b'{') {
        return Ok(Shown {
            document,
            otlp: false,
            sent_bytes,
        });
    }
    let request = otlp::decode_request(&document)?;
    let document = serde_json::to_vec_pretty(&otlp::to_json(&request)).map_err(|source| {
        ShowError::OtlpJson {
            batch_id: kept.batch_id.clone(),
            source,
        }
    })?;
    Ok(Shown {
        document,
        otlp: true,
        sent_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::protocol::Envelope;

    fn kept(body: &Body) -> SentBody {
        SentBody {
            batch_id: "b".into(),
            at: "2026-11-26T09:28:36Z".into(),
            records: 0,
            sha256: body.sha256.clone(),
            bytes: body.bytes.clone(),
            drops: Default::default(),
        }
    }

    #[test]
    fn a_json_body_is_shown_as_sent_and_a_damaged_one_is_refused() {
        let batch = crate::store::Batch::of_records(uuid::Uuid::new_v4(), &Vec::new());
        let body = Envelope::from_batch(&batch)
            .unwrap()
            .encode_body(crate::upload::compression::Compression::Zstd);
        let shown = readable(&kept(&body)).unwrap();
        assert!(!shown.otlp);
        assert_eq!(shown.document, body.json().unwrap());
        assert_eq!(Some(shown.sent_bytes), body.json_len);

        let mut damaged = kept(&body);
        damaged.sha256 = "00".repeat(32);
        let err = readable(&damaged).unwrap_err().to_string();
        assert!(err.contains("the state database is damaged"), "{err}");

        // A body kept before the digest was of the bytes sent.
        let mut older = kept(&body);
        older.sha256 = hex::encode(Sha256::digest(body.json().unwrap()));
        assert_eq!(readable(&older).unwrap(), shown);
        // The same document, compressed otherwise, is not the body sent.
        let mut other = kept(&body);
        other.bytes = crate::upload::compression::Compression::Gzip.compress(&body.json().unwrap());
        let err = readable(&other).unwrap_err().to_string();
        assert!(err.contains("the state database is damaged"), "{err}");
    }
}
