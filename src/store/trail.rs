//! Appending to the audit trail and the dead-letter table: the two records
//! of what happened to queued data, written in the transaction that did
//! it. Below `queue` and `claim`, which both write them.

use std::time::SystemTime;

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::StoreError;
use super::segment::{Removed, Unreadable};
use crate::clock::rfc3339;

/// Appends one line to the audit trail.
pub fn insert_audit(
    connection: &Connection,
    event: &str,
    batch_id: Option<Uuid>,
    records: u64,
    detail: &str,
) -> Result<(), StoreError> {
    insert_audit_with(connection, event, batch_id, records, detail, None)
}

/// [`insert_audit`] with typed `facts` (JSON) beside the words.
pub fn insert_audit_with(
    connection: &Connection,
    event: &str,
    batch_id: Option<Uuid>,
    records: u64,
    detail: &str,
    facts: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO audit (at, event, batch_id, records, detail, facts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            rfc3339(SystemTime::now()),
            event,
            batch_id.map(|id| id.to_string()),
            records as i64,
            detail,
            facts.map(|f| f.to_string())
        ])?;
    Ok(())
}

/// Inserts one record taken out of the queue into the dead-letter table,
/// as it was stored, at `at` with the receiver's `status` and why.
pub(super) fn insert_dead_letter(
    connection: &Connection,
    at: &str,
    removed: &Removed,
    status: Option<u16>,
    reason: &str,
) -> Result<(), StoreError> {
    let (collected_at, fields) = removed.dead_letter_columns();
    connection
        .prepare_cached(
            "INSERT INTO dead_letter (at, purpose, clause, collected_at, fields, status, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            at,
            removed.purpose,
            removed.clause,
            collected_at,
            fields,
            status,
            reason
        ])?;
    Ok(())
}

/// Moves what of the queue cannot be read back to the dead-letter table,
/// each record on its own (its segment keeps the others), or a whole row
/// as it is stored when its columns cannot be read; one audit line for
/// them all. Returns how many records moved.
pub(super) fn dead_letter(
    connection: &Connection,
    unreadable: &[Unreadable],
) -> Result<u64, StoreError> {
    let at = rfc3339(SystemTime::now());
    let mut moved = 0u64;
    for rowid in unreadable.iter().map(|u| u.rowid).collect::<BTreeSet<_>>() {
        let of_row: Vec<&Unreadable> = unreadable.iter().filter(|u| u.rowid == rowid).collect();
        if let Some(whole) = of_row.iter().find(|u| u.line.is_none()) {
            connection.execute(
                "INSERT INTO dead_letter (at, purpose, clause, collected_at, fields, status, reason)
                 SELECT ?1, purpose, clause, collected_at, lines, NULL, ?2 FROM queue WHERE id = ?3",
                params![at, whole.reason, rowid],
            )?;
            let records: Option<i64> = connection
                .query_row(
                    "SELECT records FROM queue WHERE id = ?1",
                    params![rowid],
                    |r| r.get(0),
                )
                .optional()
                .or_else(super::segment::unreadable_as_none)?;
            moved += connection.execute("DELETE FROM queue WHERE id = ?1", params![rowid])? as u64
                * records.unwrap_or(1).max(1) as u64;
            continue;
        }
        let lines: BTreeMap<usize, &str> = of_row
            .iter()
            .filter_map(|u| Some((u.line?, u.reason.as_str())))
            .collect();
        let (removed, _) =
            super::segment::trim(connection, rowid, |index, _, _| !lines.contains_key(&index))?;
        for (record, reason) in removed.iter().zip(lines.values()) {
            insert_dead_letter(connection, &at, record, None, reason)?;
            moved += 1;
        }
    }
    if moved > 0 {
        let why = unreadable
            .first()
            .map(|u| u.reason.as_str())
            .unwrap_or_default();
        insert_audit(connection, "dead-lettered", None, moved, why)?;
    }
    Ok(moved)
}

/// Dead letters of one purpose for one reason, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterCount {
    /// `None` for a row whose purpose could not be read.
    pub purpose: Option<String>,
    pub reason: Option<String>,
    pub records: u64,
    /// The newest of them.
    pub last_at: Option<String>,
}

/// The dead letters moved at or after `since` (RFC 3339), counted per
/// purpose and reason. Rows are kept for `audit_retention`, as the trail.
pub fn dead_letter_counts(
    connection: &Connection,
    since: &str,
) -> Result<Vec<DeadLetterCount>, StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT purpose, reason, COUNT(*), MAX(at) FROM dead_letter
         WHERE at >= ?1 GROUP BY purpose, reason ORDER BY purpose, reason",
    )?;
    let counts = query
        .query_map(params![since], |row| {
            Ok(DeadLetterCount {
                purpose: row.get(0)?,
                reason: row.get(1)?,
                records: row.get::<_, i64>(2)? as u64,
                last_at: row.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(counts)
}
