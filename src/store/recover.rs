//! Recovering what a quarantined database still holds: its queued records
//! that SQLite can still read are copied into the fresh store under their
//! own rowids, with the claim of a batch in flight and the body kept for
//! it, so that batch goes again under its own id and bytes (a receiver
//! that got it before drops it by its `Idempotency-Key`). Only the records
//! on damaged pages are lost. The quarantined file is read, never changed;
//! what is not copied (audit trail, dead letters, receipts) stays in it.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params, params_from_iter};

use super::schema;

/// Rows read per query; a query that fails is split in halves down to the
/// single row, so one damaged page costs only the rows on it.
const CHUNK: i64 = 1024;

const QUEUE_COLUMNS: &str =
    "id, purpose, clause, clause_version, clause_sha256, collected_at, lines, size, records, crc";

/// A claim row: batch, first and last rowid; head and its bytes.
type Claim = ((String, i64, i64), (Option<i64>, Option<i64>));

/// What was copied into the fresh store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recovered {
    pub records: u64,
    /// Batches in flight whose claim and kept body came too.
    pub batches: u64,
}

/// Why nothing of a quarantined database could be recovered.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecoverError {
    #[error("cannot open it: {0}")]
    Open(#[source] rusqlite::Error),
    #[error("cannot read its schema version: {0}")]
    Version(#[source] rusqlite::Error),
    #[error(
        "its schema version is {found}, not this build's {}",
        schema::SUPPORTED
    )]
    OtherSchema { found: i64 },
    #[error("neither its queue's ids nor its sequence can be read")]
    NoIds,
    #[error("cannot write the fresh store: {0}")]
    Write(#[source] rusqlite::Error),
}

/// Copies the readable queue of the database at `from` (quarantined) into
/// `into` (fresh, empty), in one transaction. `Err`: why nothing could be
/// recovered.
pub(super) fn recover(from: &Path, into: &Connection) -> Result<Recovered, RecoverError> {
    let old = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(RecoverError::Open)?;
    let version: i64 = old
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(RecoverError::Version)?;
    if version != schema::SUPPORTED {
        return Err(RecoverError::OtherSchema { found: version });
    }
    let (first, last) = id_span(&old).ok_or(RecoverError::NoIds)?;
    let mut rows = Vec::new();
    let mut start = first;
    while start <= last {
        let end = start.saturating_add(CHUNK - 1).min(last);
        read_or_split(&old, start, end, &mut rows);
        start = end + 1;
    }
    let claims: Vec<Claim> = old
        .prepare("SELECT batch_id, first, last, head, head_bytes FROM claim")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?)))
            })?
            .collect()
        })
        .unwrap_or_default();
    let bodies: Vec<Vec<Value>> = claims
        .iter()
        .map(|((batch, _, _), _)| batch)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|batch| {
            old.query_row(
                "SELECT batch_id, at, records, sha256, body, drops FROM sent_body WHERE batch_id = ?1",
                params![batch],
                |r| (0..6).map(|i| r.get::<_, Value>(i)).collect(),
            )
            .ok()
        })
        .collect();
    write(into, &rows, &claims, &bodies).map_err(RecoverError::Write)?;
    let records = rows
        .iter()
        .map(|row| match row.get(8) {
            Some(Value::Integer(n)) => (*n).max(1) as u64,
            _ => 1,
        })
        .sum();
    Ok(Recovered {
        records,
        batches: bodies.len() as u64,
    })
}

/// The first and last queue ids to look at: from the table, or (its index
/// damaged) from the sequence that numbered them.
fn id_span(old: &Connection) -> Option<(i64, i64)> {
    let span = old.query_row("SELECT MIN(id), MAX(id) FROM queue", [], |r| {
        Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
    });
    match span {
        Ok((Some(first), Some(last))) => Some((first, last)),
        Ok(_) => Some((1, 0)),
        Err(_) => old
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'queue'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .ok()
            .map(|last| (1, last)),
    }
}

/// Reads rows `first..=last`; a range SQLite cannot read is split in halves
/// until what fails is one row, which is left behind.
fn read_or_split(old: &Connection, first: i64, last: i64, out: &mut Vec<Vec<Value>>) {
    let read = old
        .prepare_cached(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queue WHERE id BETWEEN ?1 AND ?2 ORDER BY id"
        ))
        .and_then(|mut s| {
            s.query_map(params![first, last], |r| {
                (0..10).map(|i| r.get::<_, Value>(i)).collect()
            })?
            .collect::<Result<Vec<Vec<Value>>, _>>()
        });
    match read {
        Ok(rows) => out.extend(rows),
        Err(_) if first < last => {
            let middle = first + (last - first) / 2;
            read_or_split(old, first, middle, out);
            read_or_split(old, middle + 1, last, out);
        }
        Err(_) => {}
    }
}

fn write(
    into: &Connection,
    rows: &[Vec<Value>],
    claims: &[Claim],
    bodies: &[Vec<Value>],
) -> rusqlite::Result<()> {
    into.execute_batch("BEGIN IMMEDIATE")?;
    let written = (|| {
        let mut insert = into.prepare(&format!(
            "INSERT INTO queue ({QUEUE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        for row in rows {
            insert.execute(params_from_iter(row))?;
        }
        for ((batch, first, last), (head, head_bytes)) in claims {
            into.execute(
                "INSERT INTO claim (batch_id, first, last, head, head_bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![batch, first, last, head, head_bytes],
            )?;
        }
        for body in bodies {
            into.execute(
                "INSERT OR IGNORE INTO sent_body (batch_id, at, records, sha256, body, drops)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params_from_iter(body),
            )?;
        }
        Ok(())
    })();
    into.execute_batch(if written.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    })?;
    written
}
