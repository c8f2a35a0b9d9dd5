//! How a request body is compressed on the wire: zstd (the default:
//! smaller and cheaper than gzip; `Content-Encoding: zstd`, which the
//! OpenTelemetry Collector's HTTP receiver takes) or gzip, for receivers
//! that answer 415 to zstd (`[upload] compression`, and the fallback the
//! uploader remembers per endpoint).
//!
//! A body read back (the kept body of a batch, `history --show`, the
//! loopback receiver) says which it is by its own first bytes: both
//! formats open with a magic number, so nothing else needs storing.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// The gzip level: 1, the fastest, which on telemetry JSON gives most of
/// level 6's size at a fraction of its CPU (BENCHMARKS.md, wire bench).
pub const GZIP_LEVEL: u32 = 1;

/// The zstd level (BENCHMARKS.md, wire bench: levels 1 to 3 measured on
/// a mixed batch and on install tasks; level 1 is the cheapest and as
/// small as level 3 on the first, 9 % smaller on the second).
pub const ZSTD_LEVEL: i32 = 1;

/// The compression of request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The `Content-Encoding` header value.
    pub fn content_encoding(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }

    /// The compression named by a `Content-Encoding` value, if known.
    pub fn from_content_encoding(value: &str) -> Option<Self> {
        match value.trim() {
            "zstd" => Some(Compression::Zstd),
            "gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }

    /// Which compression `body` is in, by its magic number.
    pub fn of(body: &[u8]) -> Option<Self> {
        if body.starts_with(&ZSTD_MAGIC) {
            Some(Compression::Zstd)
        } else if body.starts_with(&GZIP_MAGIC) {
            Some(Compression::Gzip)
        } else {
            None
        }
    }

    /// `document`, compressed: zstd in one call with a context this
    /// thread keeps (making one per body cost a sixth of a 500-record
    /// body's encoding), gzip streamed through its encoder.
    pub fn compress(self, document: &[u8]) -> Vec<u8> {
        match self {
            Compression::Zstd => zstd_whole(document),
            Compression::Gzip => {
                let mut gzip = flate2::write::GzEncoder::new(
                    Vec::with_capacity(document.len() / 8 + 64),
                    flate2::Compression::new(GZIP_LEVEL),
                );
                gzip.write_all(document)
                    .expect("writing to a Vec cannot fail");
                gzip.finish().expect("writing to a Vec cannot fail")
            }
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.content_encoding())
    }
}

thread_local! {
    /// zstd's context, kept per thread (the uploader's and a CLI's).
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `document` as one zstd frame, made with this thread's context.
fn zstd_whole(document: &[u8]) -> Vec<u8> {
    ZSTD.with_borrow_mut(|context| {
        let context = context.get_or_insert_with(|| {
            zstd::bulk::Compressor::new(ZSTD_LEVEL)
                .expect("a zstd level in range always makes a compressor")
        });
        context
            .compress(document)
            .expect("compressing into memory cannot fail")
    })
}

/// The largest document a zstd body is decompressed into at once, in one
/// allocation of the size its frame declares; a larger one (or a body of
/// several frames) is streamed.
const WHOLE_AT_ONCE: u64 = 64 << 20;

/// The document inside `body`, whichever of the two compressions it is in
/// (or `body` itself when it is neither: a receiver may be sent plain).
pub fn decompress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    if Compression::of(body) == Some(Compression::Zstd)
        && let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(body)
        && size <= WHOLE_AT_ONCE
        && let Ok(document) = zstd::bulk::decompress(body, size as usize)
    {
        // A body made by `compress`: one frame that says its size.
        return Ok(document);
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    match Compression::of(body) {
        Some(Compression::Gzip) => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
        }
        Some(Compression::Zstd) => {
            zstd::stream::read::Decoder::new(body)?.read_to_end(&mut out)?;
        }
        None => out.extend_from_slice(body),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zstd_body_of_two_frames_or_a_cut_one_is_read_whole_or_refused() {
        let json = br#"{"records":[{"purpose":"update_identity"}]}"#.repeat(50);
        let mut two = Compression::Zstd.compress(&json[..700]);
        two.extend(Compression::Zstd.compress(&json[700..]));
        assert_eq!(decompress(&two).unwrap(), json, "both frames");
        let mut cut = Compression::Zstd.compress(&json);
        cut.truncate(cut.len() - 4);
        assert!(decompress(&cut).is_err());
    }

    #[test]
    fn each_compression_round_trips_and_says_what_it_is() {
        let json = br#"{"records":[{"purpose":"update_identity"}]}"#.repeat(50);
        for compression in [Compression::Zstd, Compression::Gzip] {
            let body = compression.compress(&json);
            assert_eq!(Compression::of(&body), Some(compression));
            assert!(body.len() < json.len() / 4, "{compression}: {}", body.len());
            assert_eq!(decompress(&body).unwrap(), json);
        }
        assert_eq!(decompress(b"{}").unwrap(), b"{}");
        assert!(
            decompress(&[0x1f, 0x8b, 0]).is_err(),
            "a broken gzip stream"
        );
    }

    #[test]
    fn bodies_compressed_one_after_another_on_one_context_each_hold_only_themselves() {
        let documents = [
            br#"{"records":[{"purpose":"update_identity"}]}"#.repeat(400),
            b"{}".to_vec(),
            br#"{"records":[{"purpose":"installation_errors","fields":{"task_type":"upgrade"}}]}"#
                .repeat(3000),
            Vec::new(),
        ];
        for _ in 0..2 {
            for document in &documents {
                let body = Compression::Zstd.compress(document);
                assert_eq!(Compression::of(&body), Some(Compression::Zstd));
                assert_eq!(&decompress(&body).unwrap(), document);
            }
        }
    }

    #[test]
    fn content_encodings_are_named_both_ways() {
        for compression in [Compression::Zstd, Compression::Gzip] {
            let name = compression.content_encoding();
            assert_eq!(Compression::from_content_encoding(name), Some(compression));
        }
        assert_eq!(Compression::from_content_encoding("br"), None);
    }
}
