//! Records grouped into the rows they are stored as, built (and packed)
//! by whoever hands them to the store, on its own thread: the writer
//! thread then only inserts a few rows, and the records' many small
//! strings are freed where they were made, not on the writer.

use rusqlite::{Connection, params};

use super::at_rest::{self, Packed};
use super::{MAX_SEGMENT_BYTES, crc32, push_line};
use crate::gate::{GatedLine, GatedRecord};
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

/// Gated records being grouped into segments, one by one: one per
/// purpose and clause (in the order each first appears; a purpose's
/// records keep their order) and [`MAX_SEGMENT_BYTES`] of lines.
#[derive(Debug, Default)]
pub struct Filling {
    open: Vec<Open>,
    /// The segment the last record went to (most often the next's).
    last: usize,
    records: u64,
}

/// The records of one purpose and clause that go into one row, while it
/// is being filled.
#[derive(Debug)]
struct Open {
    purpose: String,
    clause: String,
    clause_version: u32,
    clause_sha256: String,
    lines: String,
    records: i64,
    size: u64,
    oldest: String,
    /// Full: the purpose's next records start a new segment.
    closed: bool,
}

impl Open {
    fn holds(&self, line: &GatedLine<'_>) -> bool {
        !self.closed
            && self.purpose == line.purpose()
            && self.clause == line.clause()
            && self.clause_version == line.clause_version()
            && self.clause_sha256 == line.clause_sha256()
    }
}

impl Filling {
    /// Adds one record after those added before.
    pub fn push(&mut self, line: GatedLine<'_>) {
        let found = match self.open.get(self.last) {
            Some(open) if open.holds(&line) => Some(self.last),
            _ => self.open.iter().position(|open| open.holds(&line)),
        };
        if let Some(full) = found.filter(|&i| self.open[i].lines.len() >= MAX_SEGMENT_BYTES) {
            self.open[full].closed = true;
        }
        let index = match found.filter(|&i| !self.open[i].closed) {
            Some(index) => index,
            None => {
                self.open.push(Open {
                    purpose: line.purpose().to_owned(),
                    clause: line.clause().to_owned(),
                    clause_version: line.clause_version(),
                    clause_sha256: line.clause_sha256().to_owned(),
                    // Room for a full segment's lines and the one more
                    // that most often ends it: grown, it would be copied
                    // two or three times, and end twice that size.
                    lines: String::with_capacity(MAX_SEGMENT_BYTES + 1024),
                    records: 0,
                    size: 0,
                    oldest: line.collected_at().to_owned(),
                    closed: false,
                });
                self.open.len() - 1
            }
        };
        self.last = index;
        let segment = &mut self.open[index];
        push_line(&mut segment.lines, line.collected_at(), line.fields_json());
        segment.records += 1;
        segment.size += line.size();
        if line.collected_at() < segment.oldest.as_str() {
            line.collected_at().clone_into(&mut segment.oldest);
        }
        self.records += 1;
    }

    /// How many records were added.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The purposes of the records added, once each or more.
    pub fn purposes(&self) -> impl Iterator<Item = &str> {
        self.open.iter().map(|open| open.purpose.as_str())
    }

    /// The segments, each packed (`at_rest`).
    pub fn finish(self) -> Segments {
        let rows = self
            .open
            .into_iter()
            .map(|segment| {
                let crc = crc32(&segment.lines);
                Row {
                    crc: i64::from(crc),
                    lines: at_rest::packed(segment.lines, crc),
                    purpose: segment.purpose,
                    clause: segment.clause,
                    clause_version: segment.clause_version,
                    clause_sha256: segment.clause_sha256,
                    oldest: segment.oldest,
                    records: segment.records,
                    size: segment.size,
                }
            })
            .collect();
        Segments { rows }
    }
}

impl Segments {
    /// `records` as segments (see [`Filling`]), each packed (`at_rest`).
    pub fn of(records: &[GatedRecord]) -> Self {
        let mut filling = Filling::default();
        for record in records {
            filling.push(record.line());
        }
        filling.finish()
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
