//! How a segment's lines sit in their column: a packed BLOB of the text
//! when that is smaller, else the text itself. Install tasks of one
//! product differ in a few values, so a 16 KiB segment packs into about
//! a tenth: SQLite writes, checksums, checkpoints and frees a tenth of the
//! pages per record (the WAL, the database file and the page cache all
//! see the packed bytes). A text column (every row from before packing,
//! and a segment that does not shrink) reads as it always did.
//!
//! Segments are packed as one LZ4 block (`lz4_flex`) behind a 12-byte
//! head: the tag `cLz4`, the text's length and its CRC-32 (both
//! little-endian u32). LZ4 packs a segment of install tasks in about a
//! third of the time zstd level 1 took, and unpacks it in about a third,
//! to about twice zstd's bytes (still a tenth of the text): every record
//! is packed once at ingest and unpacked once at its claim, and the body
//! that leaves is compressed again, whole, by the uploader (BENCHMARKS.md).
//! Rows packed before as zstd frames (level 1, with zstd's checksum) are
//! read as they always were.
//!
//! What is counted and sent is the text: a record's `size`, the queue's
//! bounds, the segment's CRC-32 and the wire form all stay those of its
//! line. Each packed row carries a checksum of its text (the head's
//! CRC-32, or zstd's), so damage to it is found when it is unpacked, never
//! sent as other text. A row that cannot be unpacked, fails its checksum,
//! claims a size past [`MAX_TEXT`], or unpacks to something other than
//! UTF-8 is unreadable, like any column of the wrong type: the claim
//! dead-letters it whole (a damaged text row loses only its damaged lines,
//! but no segment written now is text unless packing would not shrink
//! it).

use std::cell::RefCell;

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Value, ValueRef};

/// The first bytes of a segment packed as an LZ4 block.
const LZ4_TAG: &[u8; 4] = b"cLz4";

/// The tag, the text's length and its CRC-32.
const LZ4_HEAD: usize = 12;

/// The first bytes of every zstd frame (rows packed before LZ4).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The most text one stored frame may unpack to. A segment holds
/// [`super::MAX_SEGMENT_BYTES`] and one record more, and a record is
/// bounded by the ingest line limit; a frame that claims more is damage.
pub(in crate::store) const MAX_TEXT: u64 = 64 << 20;

thread_local! {
    /// A context kept per thread for rows packed as zstd frames (before
    /// LZ4): making one costs more than unpacking a segment.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// `lines`, whose CRC-32 is `crc` (`segment::crc`, computed once for the
/// row and its head), as they are stored: packed when that is smaller,
/// else the text.
pub(in crate::store) fn pack(lines: &str, crc: u32) -> ToSqlOutput<'_> {
    match frame(lines, crc) {
        Some(frame) => ToSqlOutput::Owned(Value::Blob(frame)),
        None => ToSqlOutput::Borrowed(ValueRef::Text(lines.as_bytes())),
    }
}

/// [`pack`], keeping what it makes (a segment built before its insert).
pub(in crate::store) fn packed(lines: String, crc: u32) -> Packed {
    match frame(&lines, crc) {
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

/// `lines` packed (the head, then one LZ4 block), when that is smaller.
fn frame(lines: &str, crc: u32) -> Option<Vec<u8>> {
    let text = lines.as_bytes();
    let length = u32::try_from(text.len()).ok()?;
    let mut out = vec![0; LZ4_HEAD + lz4_flex::block::get_maximum_output_size(text.len())];
    out[..4].copy_from_slice(LZ4_TAG);
    out[4..8].copy_from_slice(&length.to_le_bytes());
    debug_assert_eq!(crc, crc32fast::hash(text), "the CRC-32 of the lines");
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    let packed = lz4_flex::block::compress_into(text, &mut out[LZ4_HEAD..]).ok()?;
    out.truncate(LZ4_HEAD + packed);
    (out.len() < text.len()).then_some(out)
}

/// A segment's lines read from their column, whichever way they were
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::store) struct Stored(pub String);

impl FromSql for Stored {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Checked::column_result(value).map(|checked| Stored(checked.lines))
    }
}

/// A segment's lines read from their column, with the CRC-32 they were
/// checked against when they were packed with one (an LZ4 block's head):
/// the claim compares it with the row's `crc` rather than reading the
/// lines for it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::store) struct Checked {
    pub lines: String,
    pub crc: Option<u32>,
}

impl FromSql for Checked {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(text) => std::str::from_utf8(text)
                .map(|text| Checked {
                    lines: text.to_owned(),
                    crc: None,
                })
                .map_err(|err| FromSqlError::Other(Box::new(err))),
            ValueRef::Blob(frame) => unpack(frame).map_err(|why| FromSqlError::Other(why.into())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// The text a stored frame holds, or why it cannot be read.
fn unpack(frame: &[u8]) -> Result<Checked, String> {
    let (text, crc) = match frame.get(..4) {
        Some(tag) if tag == LZ4_TAG => unpack_lz4(frame).map(|(text, crc)| (text, Some(crc)))?,
        Some(magic) if magic == ZSTD_MAGIC => (unpack_zstd(frame)?, None),
        _ => return Err("stored segment is neither an LZ4 block nor a zstd frame".into()),
    };
    let lines =
        String::from_utf8(text).map_err(|err| format!("stored segment is not UTF-8: {err}"))?;
    Ok(Checked { lines, crc })
}

/// The text of a segment packed as an LZ4 block, checked against the
/// length and CRC-32 its head gives, and that CRC-32.
fn unpack_lz4(frame: &[u8]) -> Result<(Vec<u8>, u32), String> {
    let head = |at: usize| {
        frame
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
            .ok_or_else(|| "stored segment is cut short".to_owned())
    };
    let (size, crc) = (head(4)?, head(8)?);
    if u64::from(size) > MAX_TEXT {
        return Err(format!("stored segment claims {size} bytes of text"));
    }
    let mut text = vec![0; size as usize];
    let unpacked = lz4_flex::block::decompress_into(&frame[LZ4_HEAD..], &mut text)
        .map_err(|err| format!("stored segment does not unpack: {err}"))?;
    if unpacked != text.len() {
        return Err(format!(
            "stored segment unpacks to {unpacked} bytes, not the {size} it claims"
        ));
    }
    if crc32fast::hash(&text) != crc {
        return Err("stored segment fails its checksum".into());
    }
    Ok((text, crc))
}

/// The text of a segment packed as a zstd frame (before LZ4), checked by
/// zstd's own checksum.
fn unpack_zstd(frame: &[u8]) -> Result<Vec<u8>, String> {
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
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn round_trip(lines: &str) -> (String, Stored) {
        let c = Connection::open_in_memory().unwrap();
        c.execute("CREATE TABLE t (lines)", []).unwrap();
        c.execute(
            "INSERT INTO t VALUES (?1)",
            [pack(lines, crc32fast::hash(lines.as_bytes()))],
        )
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
            .query_row(
                "SELECT length(?1)",
                [pack(&lines, crc32fast::hash(lines.as_bytes()))],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            stored as usize * 10 < lines.len(),
            "{stored} of {}",
            lines.len()
        );
    }

    /// `bytes` packed as a segment is, whatever they are.
    fn frame_of(bytes: &[u8]) -> Vec<u8> {
        let mut out = LZ4_TAG.to_vec();
        out.extend((bytes.len() as u32).to_le_bytes());
        out.extend(crc32fast::hash(bytes).to_le_bytes());
        out.extend(lz4_flex::block::compress(bytes));
        out
    }

    #[test]
    fn a_segment_packed_as_a_zstd_frame_before_reads_as_it_was() {
        let line = r#"{"collected_at":"2026-01-01T00:00:00Z","fields":{"task":"install"}}"#;
        let lines = vec![line; 100].join("\n");
        let mut compressor = zstd::bulk::Compressor::new(1).unwrap();
        compressor.include_checksum(true).unwrap();
        let old = compressor.compress(lines.as_bytes()).unwrap();
        let read = Stored::column_result(ValueRef::Blob(&old)).unwrap();
        assert_eq!(read.0, lines);
        let ToSqlOutput::Owned(Value::Blob(new)) = pack(&lines, crc32fast::hash(lines.as_bytes()))
        else {
            panic!("not packed");
        };
        assert_eq!(&new[..4], LZ4_TAG, "new segments are LZ4 blocks");
        assert_eq!(frame_of(lines.as_bytes()), new);
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
        let ToSqlOutput::Owned(Value::Blob(frame)) =
            pack(&lines, crc32fast::hash(lines.as_bytes()))
        else {
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
        let mut lying = frame.clone();
        lying[4] ^= 0x01;
        let mut wrong_sum = frame.clone();
        wrong_sum[8] ^= 0x01;
        let not_utf8 = frame_of(&[0xff; 64]);
        for bad in bad
            .into_iter()
            .chain([lying, wrong_sum, not_utf8, LZ4_TAG.to_vec()])
        {
            let read = Stored::column_result(ValueRef::Blob(&bad));
            assert!(read.is_err(), "{bad:?}");
        }
        // A frame of more text than any segment holds is not unpacked.
        let huge = zstd::bulk::compress(&vec![b' '; MAX_TEXT as usize + 1], 1).unwrap();
        let refused = Stored::column_result(ValueRef::Blob(&huge)).unwrap_err();
        assert!(refused.to_string().contains("claims"), "{refused}");
        let mut huge = frame.clone();
        huge[4..8].copy_from_slice(&(MAX_TEXT as u32 + 1).to_le_bytes());
        let refused = Stored::column_result(ValueRef::Blob(&huge)).unwrap_err();
        assert!(refused.to_string().contains("claims"), "{refused}");
        assert!(matches!(
            Stored::column_result(ValueRef::Integer(7)),
            Err(FromSqlError::InvalidType)
        ));
    }
}
