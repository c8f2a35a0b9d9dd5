//! Reading the agent's queue straight from its database, as a test that
//! checks what was stored (never what was sent) needs: each queued record
//! as its purpose and its fields, out of the segments (`store::segment`),
//! whether stored as text or packed (an LZ4 block behind a 12-byte head:
//! `cLz4`, the text's length, its CRC-32; or, before, one zstd frame).

use std::path::Path;

/// Every record queued in the database at `path` whose purpose `wanted`
/// accepts: (purpose, its fields as stored JSON), oldest first.
pub fn queued_records(path: &Path, wanted: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(path).unwrap();
    let segments: Vec<(String, String)> = db
        .prepare("SELECT purpose, lines FROM queue ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, text(row.get_ref(1)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    segments
        .into_iter()
        .filter(|(purpose, _)| wanted(purpose))
        .flat_map(|(purpose, lines)| {
            lines
                .split('\n')
                .map(|line| {
                    let line: serde_json::Value = serde_json::from_str(line).unwrap();
                    (purpose.clone(), line["fields"].to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Segment `id`'s lines, as text.
pub fn segment_text(db: &rusqlite::Connection, id: i64) -> String {
    db.query_row("SELECT lines FROM queue WHERE id = ?1", [id], |row| {
        Ok(text(row.get_ref(0)?))
    })
    .unwrap()
}

/// A segment's lines, as text whichever way they are stored.
fn text(stored: rusqlite::types::ValueRef<'_>) -> String {
    match stored {
        rusqlite::types::ValueRef::Text(text) => String::from_utf8(text.to_vec()).unwrap(),
        rusqlite::types::ValueRef::Blob(frame) if frame.starts_with(LZ4_TAG) => {
            let size = u32::from_le_bytes(frame[4..8].try_into().unwrap()) as usize;
            let text = lz4_flex::block::decompress(&frame[12..], size).unwrap();
            assert_eq!(
                crc32fast::hash(&text).to_le_bytes(),
                frame[8..12],
                "checksum"
            );
            String::from_utf8(text).unwrap()
        }
        rusqlite::types::ValueRef::Blob(frame) => {
            String::from_utf8(zstd::decode_all(frame).unwrap()).unwrap()
        }
        other => panic!("a segment's lines are {other:?}"),
    }
}

/// The first bytes of a segment packed as an LZ4 block.
const LZ4_TAG: &[u8; 4] = b"cLz4";

/// The offset of a 4 KiB page in the middle of the packed segments of the
/// database file `bytes` (each starts with its tag), for a test that
/// damages the queue; `None` when it holds fewer than `at_least` of them.
pub fn page_among_packed_segments(bytes: &[u8], at_least: usize) -> Option<u64> {
    let frames: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == LZ4_TAG)
        .map(|(at, _)| at)
        .collect();
    (frames.len() >= at_least).then(|| (frames[frames.len() / 2] / 4096 * 4096) as u64)
}
