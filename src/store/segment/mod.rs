//! Segments: how records sit in the queue. One `queue` row holds the
//! records of one purpose and clause that arrived together (an ingest
//! chunk, a collector's round), each as one line of JSON,
//! `{"collected_at":"…","fields":{…}}`, the lines joined by `\n`. A
//! record's wire form is its segment's clause prefix followed by its line
//! from the second byte on (`upload::protocol`), so a batch body is built
//! by concatenation, and SQLite does one row's work for a whole chunk.
//!
//! The lines are stored packed when that is smaller ([`at_rest`]).
//!
//! The row keeps its records' count (`records`), their sizes added up
//! (`size`) and the oldest `collected_at` (what age expiry looks at
//! first). An operation on some records of a segment (a claim that takes
//! its first lines, expiry by age, dead-lettering one unreadable record)
//! rewrites the row without them: its rowid, and so its place in the
//! queue, stays.

use std::borrow::Cow;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::StoreError;
use crate::gate::GatedRecord;

mod at_rest;
mod rows;
pub(super) use at_rest::{Checked, Stored};
pub use rows::{Filling, Segments};

/// A segment takes no more records once its lines reach this size: a
/// row of at most a few pages, so that a damaged page (`store::recover`)
/// costs tens of records, not a whole chunk, while SQLite still does one
/// row's work for fifty install-task records or so.
pub(super) const MAX_SEGMENT_BYTES: usize = 16 * 1024;

#[cfg(test)]
use crate::record::line::len as line_len;
pub use crate::record::line::{push as push_line, size as record_size};

/// One record's line, read back: borrowed from the segment's text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line<'a> {
    #[serde(borrow)]
    pub collected_at: Cow<'a, str>,
    #[serde(borrow)]
    pub fields: &'a RawValue,
}

impl<'a> Line<'a> {
    /// Reads one line; an error says why it cannot be sent. A line must be
    /// a JSON object from its first byte (the wire form cuts that byte).
    pub fn parse(line: &'a str) -> Result<Self, String> {
        if !line.starts_with('{') {
            return Err("stored record is not a JSON object".to_owned());
        }
        serde_json::from_str(line).map_err(|err| format!("stored record is not JSON: {err}"))
    }
}

/// Appends `records` as segments (see [`Segments::of`]) inside the
/// caller's transaction. Returns the bytes they count for.
pub(super) fn insert(connection: &Connection, records: &[GatedRecord]) -> Result<u64, StoreError> {
    Segments::of(records).insert(connection)
}

/// What of a claimed batch cannot be read back: a whole row (`line`
/// `None`: a column of the wrong type) or one line of it, and why.
#[derive(Debug)]
pub(super) struct Unreadable {
    pub rowid: i64,
    pub line: Option<usize>,
    pub reason: String,
}

/// A line taken out of a segment, as it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Removed {
    pub purpose: String,
    pub clause: String,
    pub line: String,
}

impl Removed {
    /// Its `collected_at` and fields as the dead-letter table keeps them
    /// (the raw line as the fields when it cannot be read).
    pub(super) fn dead_letter_columns(&self) -> (Option<String>, String) {
        match Line::parse(&self.line) {
            Ok(line) => (
                Some(line.collected_at.into_owned()),
                line.fields.get().to_owned(),
            ),
            Err(_) => (None, self.line.clone()),
        }
    }
}

/// Segment `rowid`'s purpose, clause and lines (unpacked); `None` when
/// there is no such row or it cannot be read.
pub(super) fn read(
    connection: &Connection,
    rowid: i64,
) -> Result<Option<(String, String, String)>, StoreError> {
    let row: Option<(String, String, Stored)> = connection
        .prepare_cached("SELECT purpose, clause, lines FROM queue WHERE id = ?1")?
        .query_row(params![rowid], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
        .or_else(unreadable_as_none)?;
    Ok(row.map(|(purpose, clause, Stored(lines))| (purpose, clause, lines)))
}

/// Rewrites segment `rowid` keeping only the lines `keep` accepts (by
/// position, text and the bytes the record counts for), or deletes it when none is kept; returns the lines
/// taken out, in order, and the bytes they counted for. A row that
/// cannot be read is left as it is (the claim dead-letters it).
pub(super) fn trim(
    connection: &Connection,
    rowid: i64,
    mut keep: impl FnMut(usize, &str, u64) -> bool,
) -> Result<(Vec<Removed>, u64), StoreError> {
    let Some((purpose, clause, lines)) = read(connection, rowid)? else {
        return Ok((Vec::new(), 0));
    };
    let mut kept = String::with_capacity(lines.len());
    let (mut records, mut size, mut freed) = (0i64, 0u64, 0u64);
    let mut oldest: Option<String> = None;
    let mut removed = Vec::new();
    for (index, line) in self::lines(&lines).enumerate() {
        let line_size = record_size(&purpose, &clause, line.len());
        if keep(index, line, line_size) {
            if !kept.is_empty() {
                kept.push('\n');
            }
            kept.push_str(line);
            records += 1;
            size += line_size;
            if let Ok(parsed) = Line::parse(line)
                && oldest.as_deref().is_none_or(|o| *parsed.collected_at < *o)
            {
                oldest = Some(parsed.collected_at.into_owned());
            }
        } else {
            freed += line_size;
            removed.push(Removed {
                purpose: purpose.clone(),
                clause: clause.clone(),
                line: line.to_owned(),
            });
        }
    }
    if removed.is_empty() {
        return Ok((removed, 0));
    }
    if records == 0 {
        connection
            .prepare_cached("DELETE FROM queue WHERE id = ?1")?
            .execute(params![rowid])?;
    } else {
        let kept_crc = crc32(&kept);
        connection
            .prepare_cached(
                "UPDATE queue SET lines = ?2, records = ?3, size = ?4,
                   collected_at = COALESCE(?5, collected_at), crc = ?6 WHERE id = ?1",
            )?
            .execute(params![
                rowid,
                at_rest::pack(&kept, kept_crc),
                records,
                size as i64,
                oldest,
                i64::from(kept_crc)
            ])?;
    }
    Ok((removed, freed))
}

/// The checksum a segment's `lines` are stored with (`crc`): lines that
/// still match it are the bytes this store wrote, each a record's JSON
/// line, and need no reading again when claimed. A row without one, or
/// whose lines no longer match it, has each line read.
pub(super) fn crc(lines: &str) -> i64 {
    i64::from(crc32(lines))
}

/// [`crc`] as it is computed, for a caller that also packs the lines
/// (`at_rest` heads a packed segment with the same CRC-32).
pub(super) fn crc32(lines: &str) -> u32 {
    crc32fast::hash(lines.as_bytes())
}

/// A row whose columns cannot be read as their types, as `None` (other
/// errors stay errors).
pub(super) fn unreadable_as_none<T>(err: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match err {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            Ok(None)
        }
        err => Err(err),
    }
}

/// Splits a segment's text into its lines (as `split('\n')` does, with
/// `memchr`: every claim walks every line of its batch).
pub(super) fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len()));
    std::iter::from_fn(move || {
        let end = ends.next()?;
        let line = &text[start..end];
        start = end + 1;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::test_record;

    #[test]
    fn lines_split_as_split_does() {
        for text in ["", "a", "a\n", "\n", "a\nb", "a\n\nb\n", "é\nü\n{}"] {
            assert_eq!(
                lines(text).collect::<Vec<_>>(),
                text.split('\n').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }

    /// A new store's connection (and the directory that holds it).
    fn fresh() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let connection = crate::store::open_connection(dir.path())
            .unwrap()
            .connection;
        (dir, connection)
    }

    #[test]
    fn a_line_is_the_record_s_time_and_fields_and_reads_back() {
        let mut lines = String::new();
        push_line(&mut lines, "2026-01-01T00:00:00Z", r#"{"n":1}"#);
        push_line(&mut lines, "odd \"time\"", r#"{"n":2}"#);
        let read: Vec<Line<'_>> = super::lines(&lines)
            .map(|l| Line::parse(l).unwrap())
            .collect();
        assert_eq!(read[0].collected_at, "2026-01-01T00:00:00Z");
        assert_eq!(read[0].fields.get(), r#"{"n":1}"#);
        assert_eq!(read[1].collected_at, "odd \"time\"");
        let first = lines.split('\n').next().unwrap();
        assert_eq!(first.len(), line_len("2026-01-01T00:00:00Z", r#"{"n":1}"#));
        let record = test_record("a", 1);
        assert_eq!(
            record.size() as u64,
            record_size(
                "a",
                "eula",
                line_len(record.collected_at(), record.fields_json())
            )
        );
    }

    #[test]
    fn a_line_that_is_not_a_record_is_refused() {
        for bad in [
            "",
            "{\"n\":2",
            " {\"collected_at\":\"t\",\"fields\":{}}",
            "{\"collected_at\":\"t\"}",
            "{\"collected_at\":\"t\",\"fields\":{},\"x\":1}",
        ] {
            assert!(Line::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_become_one_row_per_purpose_and_a_trim_keeps_the_row_s_place() {
        let (_dir, c) = fresh();
        let records: Vec<_> = [("a", 1), ("b", 2), ("a", 3), ("a", 4)]
            .iter()
            .map(|(p, n)| test_record(p, *n))
            .collect();
        let bytes = insert(&c, &records).unwrap();
        assert_eq!(bytes, records.iter().map(|r| r.size() as u64).sum::<u64>());
        let rows: Vec<(i64, String, i64, Stored)> = c
            .prepare("SELECT id, purpose, records, lines FROM queue ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].1.as_str(), rows[0].2), ("a", 3));
        assert_eq!(rows[0].3.0.lines().count(), 3);
        let (removed, freed) = trim(&c, rows[0].0, |index, _, _| index != 1).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(removed[0].line.contains("\"n\":3"));
        assert_eq!(freed, records[2].size() as u64);
        let (count, Stored(lines)): (i64, Stored) = c
            .query_row(
                "SELECT records, lines FROM queue WHERE id = ?1",
                [rows[0].0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(count, 2);
        assert!(lines.contains("\"n\":1") && lines.contains("\"n\":4"));
        // Rewritten with the checksum of what it holds now.
        let stored: i64 = c
            .query_row("SELECT crc FROM queue WHERE id = ?1", [rows[0].0], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, crc(&lines));
        let (removed, _) = trim(&c, rows[0].0, |_, _, _| false).unwrap();
        assert_eq!(removed.len(), 2);
        let left: i64 = c
            .query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
    }

    #[test]
    fn a_segment_stops_taking_records_at_its_size_so_damage_costs_little() {
        let (_dir, c) = fresh();
        let records: Vec<_> = (0..2000).map(|n| test_record("a", n)).collect();
        insert(&c, &records).unwrap();
        let rows: Vec<(i64, usize)> = c
            .prepare("SELECT records, lines FROM queue ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, Stored>(1)?.0.len())))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(rows.len() > 1, "{rows:?}");
        assert_eq!(rows.iter().map(|r| r.0).sum::<i64>(), 2000);
        assert!(
            rows.iter().all(|r| r.1 < MAX_SEGMENT_BYTES + 100),
            "{rows:?}"
        );
        // In order: the first row holds the first records.
        let Stored(first) = c
            .query_row("SELECT lines FROM queue ORDER BY id LIMIT 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            first.starts_with("{\"collected_at\":\"2026-01-01T00:00:00Z\",\"fields\":{\"n\":0}}")
        );
    }
}
