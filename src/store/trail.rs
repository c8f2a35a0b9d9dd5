//! Appending to the audit trail and the dead-letter table: the two records
//! of what happened to queued data, written in the transaction that did
//! it. Below `queue` and `claim`, which both write them.

use std::time::SystemTime;

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::StoreError;
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

/// Copies the queue's rows `?1..=?2` into the dead-letter table, as they
/// are stored, at `?3` with status `?4` and reason `?5` (a batch's ranges,
/// `claim::copy_to_dead_letter`).
pub(super) const DEAD_LETTER_RANGE: &str =
    "INSERT INTO dead_letter (at, purpose, clause, collected_at, fields, status, reason)
     SELECT ?3, purpose, clause, collected_at, fields, ?4, ?5 FROM queue WHERE id BETWEEN ?1 AND ?2";

/// Moves each of `rows` from the queue to the dead-letter table, as it is
/// stored, with why; one audit line for them all. Returns how many moved.
pub fn dead_letter(connection: &Connection, rows: &[(i64, String)]) -> Result<u64, StoreError> {
    let at = rfc3339(SystemTime::now());
    let mut moved = 0u64;
    for (rowid, reason) in rows {
        connection.execute(
            "INSERT INTO dead_letter (at, purpose, clause, collected_at, fields, status, reason)
             SELECT ?1, purpose, clause, collected_at, fields, NULL, ?2 FROM queue WHERE id = ?3",
            params![at, reason, rowid],
        )?;
        moved += connection.execute("DELETE FROM queue WHERE id = ?1", params![rowid])? as u64;
    }
    if moved > 0 {
        let why = rows
            .first()
            .map(|(_, why)| why.as_str())
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
