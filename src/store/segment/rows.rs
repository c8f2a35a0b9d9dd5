//! Records grouped into the rows they are stored as, built (and packed)
//! by whoever hands them to the store, on its own thread: the writer
//! thread then only inserts a few rows, and the records' many small
//! strings are freed where they were made, not on the writer.

use rusqlite::{Connection, params};

use super::at_rest::{self, Packed};
use super::{MAX_SEGMENT_BYTES, crc, push_line};
use crate::gate::GatedRecord;
use crate::store::StoreError;

/// One segment, ready to be inserted.
#[derive(Debug)]
struct Row {
    purpose: String,
    clause: String,
    clause_version: u32,
    clause_sha256: String,
    oldest: String,
    lines: Packed,
    crc: i64,
    records: i64,
    size: u64,
}

/// Gated records as the segments they will be stored as.
#[derive(Debug, Default)]
pub struct Segments {
    rows: Vec<Row>,
}

/// The records of one purpose and clause that go into one row, while it
/// is being filled.
struct Open<'r> {
    first: &'r GatedRecord,
    lines: String,
    records: i64,
    size: u64,
    oldest: &'r str,
    /// Full: the purpose's next records start a new segment.
    closed: bool,
}

impl Segments {
    /// `records` as segments, one per purpose and clause (in the order
    /// each first appears; a purpose's records keep their order) and
    /// [`MAX_SEGMENT_BYTES`] of lines, each packed (`at_rest`).
    pub fn of(records: &[GatedRecord]) -> Self {
        let mut open: Vec<Open<'_>> = Vec::new();
        for record in records {
            let same = |p: &Open<'_>| {
                p.first.purpose() == record.purpose()
                    && p.first.clause() == record.clause()
                    && p.first.clause_version() == record.clause_version()
                    && p.first.clause_sha256() == record.clause_sha256()
            };
            let mut filling = open.iter_mut().find(|p| !p.closed && same(p));
            if let Some(full) = filling.take_if(|p| p.lines.len() >= MAX_SEGMENT_BYTES) {
                full.closed = true;
            }
            let segment = match filling {
                Some(segment) => segment,
                None => {
                    open.push(Open {
                        first: record,
                        lines: String::with_capacity(
                            (records.len() * 64).min(MAX_SEGMENT_BYTES + 1024),
                        ),
                        records: 0,
                        size: 0,
                        oldest: record.collected_at(),
                        closed: false,
                    });
                    open.last_mut().expect("just pushed")
                }
            };
            push_line(
                &mut segment.lines,
                record.collected_at(),
                record.fields_json(),
            );
            segment.records += 1;
            segment.size += record.size() as u64;
            segment.oldest = segment.oldest.min(record.collected_at());
        }
        let rows = open
            .into_iter()
            .map(|segment| Row {
                purpose: segment.first.purpose().to_owned(),
                clause: segment.first.clause().to_owned(),
                clause_version: segment.first.clause_version(),
                clause_sha256: segment.first.clause_sha256().to_owned(),
                oldest: segment.oldest.to_owned(),
                crc: crc(&segment.lines),
                lines: at_rest::packed(segment.lines),
                records: segment.records,
                size: segment.size,
            })
            .collect();
        Self { rows }
    }

    /// How many records they hold.
    pub fn records(&self) -> u64 {
        self.rows.iter().map(|row| row.records as u64).sum()
    }

    /// Inserts them, inside the caller's transaction. Returns the bytes
    /// they count for.
    pub(in crate::store) fn insert(&self, connection: &Connection) -> Result<u64, StoreError> {
        let mut insert = connection.prepare_cached(
            "INSERT INTO queue (purpose, clause, clause_version, clause_sha256, collected_at, lines, records, size, crc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut bytes = 0;
        for row in &self.rows {
            insert.execute(params![
                row.purpose,
                row.clause,
                row.clause_version,
                row.clause_sha256,
                row.oldest,
                row.lines,
                row.records,
                row.size as i64,
                row.crc,
            ])?;
            bytes += row.size;
        }
        Ok(bytes)
    }
}
