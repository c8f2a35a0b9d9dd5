//! How a segment's lines sit in their column: one zstd frame of the text,
//! a BLOB, when that is smaller, else the text itself. Install tasks of
//! one product differ in a few values, so a 16 KiB segment packs into
//! about a kilobyte: SQLite writes, checksums, checkpoints and frees a
//! tenth of the pages per record (the WAL, the database file and the
//! page cache all see the packed bytes). A text column (every row from
//! before this, and a segment that does not shrink) reads as it always
//! did.
//!
//! What is counted and sent is the text: a record's `size`, the queue's
//! bounds, the segment's CRC-32 and the wire form all stay those of its
//! line. Each frame carries zstd's checksum of its text, so damage to it
//! is found when it is unpacked, never sent as other text. A frame that
//! cannot be unpacked, fails its checksum, claims a size past
//! [`MAX_TEXT`], or unpacks to something other than UTF-8 makes the row
//! unreadable, like any column of the wrong type: the claim dead-letters
//! it whole (a damaged text row loses only its damaged lines, but no
//! segment written now is text unless packing would not shrink it).

use std::cell::RefCell;

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Value, ValueRef};

/// zstd's fastest level: at rest, the bytes SQLite handles are what cost,
/// and level 1 already takes a segment of install tasks to a tenth or
/// less (its wire body is compressed again, whole, by the uploader).
const LEVEL: i32 = 1;

/// The most text one stored frame may unpack to. A segment holds
/// [`super::MAX_SEGMENT_BYTES`] and one record more, and a record is
/// bounded by the ingest line limit; a frame that claims more is damage.
pub(in crate::store) const MAX_TEXT: u64 = 64 << 20;

thread_local! {
    /// A context kept per thread (the writer thread packs and unpacks
    /// every segment): making one costs more than packing a segment.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// `lines` as they are stored: a zstd frame when that is smaller, else the
/// text (also when zstd fails, which only a lack of memory makes it do).
pub(in crate::store) fn pack(lines: &str) -> ToSqlOutput<'_> {
    match frame(lines) {
        Some(frame) => ToSqlOutput::Owned(Value::Blob(frame)),
        None => ToSqlOutput::Borrowed(ValueRef::Text(lines.as_bytes())),
    }
}

/// [`pack`], keeping what it makes (a segment built before its insert).
pub(in crate::store) fn packed(lines: String) -> Packed {
    match frame(&lines) {
        Some(frame) => Packed::Frame(frame),
        None => Packed::Text(lines),
    }
}

/// Lines as they will be stored.
#[derive(Debug)]
pub(in crate::store) enum Packed {
    Text(String),
    Frame(Vec<u8>),
}

impl ToSql for Packed {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Packed::Text(text) => ValueRef::Text(text.as_bytes()),
            Packed::Frame(frame) => ValueRef::Blob(frame),
        }))
    }
}

/// `lines` as one zstd frame, when that is smaller.
fn frame(lines: &str) -> Option<Vec<u8>> {
    COMPRESSOR
        .with_borrow_mut(|compressor| {
            let compressor = match compressor {
                Some(compressor) => compressor,
                None => {
                    let mut made = zstd::bulk::Compressor::new(LEVEL).ok()?;
                    made.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                        .ok()?;
                    compressor.insert(made)
                }
            };
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(lines.len()));
            compressor
                .compress_to_buffer(lines.as_bytes(), &mut out)
                .ok()?;
            Some(out)
        })
        .filter(|frame| frame.len() < lines.len())
}

/// A segment's lines read from their column, whichever way they were
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::store) struct Stored(pub String);

impl FromSql for Stored {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(text) => std::str::from_utf8(text)
                .map(|text| Stored(text.to_owned()))
                .map_err(|err| FromSqlError::Other(Box::new(err))),
            ValueRef::Blob(frame) => unpack(frame)
                .map(Stored)
                .map_err(|why| FromSqlError::Other(why.into())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// The text a stored frame holds, or why it cannot be read.
fn unpack(frame: &[u8]) -> Result<String, String> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_TEXT => size as usize,
        Ok(Some(size)) => return Err(format!("stored segment claims {size} bytes of text")),
        Ok(None) | Err(_) => return Err("stored segment is not a zstd frame of known size".into()),
    };
    let text = DECOMPRESSOR.with_borrow_mut(|decompressor| {
        let decompressor = match decompressor {
            Some(decompressor) => decompressor,
            None => decompressor
                .insert(zstd::bulk::Decompressor::new().map_err(|err| format!("zstd: {err}"))?),
        };
        let mut out = Vec::with_capacity(size);
        decompressor
            .decompress_to_buffer(frame, &mut out)
            .map_err(|err| format!("stored segment does not unpack: {err}"))?;
        Ok::<_, String>(out)
    })?;
    if text.len() != size {
        return Err(format!(
            "stored segment unpacks to {} bytes, not the {size} it claims",
            text.len()
        ));
    }
    String::from_utf8(text).map_err(|err| format!("stored segment is not UTF-8: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn round_trip(lines: &str) -> (String, Stored) {
        let c = Connection::open_in_memory().unwrap();
        c.execute("CREATE TABLE t (lines)", []).unwrap();
        c.execute("INSERT INTO t VALUES (?1)", [pack(lines)])
            .unwrap();
        c.query_row("SELECT typeof(lines), lines FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    #[test]
    fn repeated_lines_are_stored_packed_and_read_back_as_they_were() {
        let line = r#"{"collected_at":"2026-01-01T00:00:00Z","fields":{"task":"install","status":"failed"}}"#;
        let lines = vec![line; 200].join("\n");
        let (kind, read) = round_trip(&lines);
        assert_eq!(kind, "blob");
        assert_eq!(read.0, lines);
        let c = Connection::open_in_memory().unwrap();
        let stored: i64 = c
            .query_row("SELECT length(?1)", [pack(&lines)], |r| r.get(0))
            .unwrap();
        assert!(
            stored as usize * 10 < lines.len(),
            "{stored} of {}",
            lines.len()
        );
    }

    #[test]
    fn text_that_does_not_shrink_stays_text() {
        let (kind, read) = round_trip("{}");
        assert_eq!(kind, "text");
        assert_eq!(read.0, "{}");
    }

    #[test]
    fn a_frame_that_is_damaged_or_lies_about_its_size_is_refused() {
        let lines = vec!["{\"collected_at\":\"t\",\"fields\":{}}"; 100].join("\n");
        let ToSqlOutput::Owned(Value::Blob(frame)) = pack(&lines) else {
            panic!("not packed");
        };
        let mut cut = frame.clone();
        cut.truncate(frame.len() - 3);
        let mut flipped = frame.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let not_utf8 = zstd::bulk::compress(&[0xff, 0xfe, 0xfd], 1).unwrap();
        let bad = [
            cut,
            flipped,
            vec![0x28, 0xb5, 0x2f, 0xfd],
            b"junk".to_vec(),
            not_utf8,
        ];
        for bad in bad {
            let read = Stored::column_result(ValueRef::Blob(&bad));
            assert!(read.is_err(), "{bad:?}");
        }
        // A frame of more text than any segment holds is not unpacked.
        let huge = zstd::bulk::compress(&vec![b' '; MAX_TEXT as usize + 1], 1).unwrap();
        let refused = Stored::column_result(ValueRef::Blob(&huge)).unwrap_err();
        assert!(refused.to_string().contains("claims"), "{refused}");
        assert!(matches!(
            Stored::column_result(ValueRef::Integer(7)),
            Err(FromSqlError::InvalidType)
        ));
    }
}
