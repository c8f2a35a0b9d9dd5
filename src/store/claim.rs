//! The batch in flight: which queued records it holds, kept as ranges of
//! rowids in the `claim` table, never by writing to the records.
//!
//! A claim takes the oldest sendable records (within the batch limits) and
//! stores the runs of them that no other record sits between: usually one
//! range. Rowids only grow (`AUTOINCREMENT`), so a range never gains a
//! record after it is made; it loses the ones removed from the queue. At
//! most one batch is claimed at a time. Claiming, reading, removing and
//! dead-lettering a batch are rowid range scans; claiming writes one row per
//! range instead of rewriting every record (and an index entry) as a
//! `batch_id` column did.

use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::trail::{dead_letter, insert_audit, insert_audit_with};
use super::{Batch, BatchLimits, QueuedRecord, StoreError};
use crate::clock::rfc3339;

/// SQL: the `queue` row is not part of the batch in flight.
pub(super) const UNCLAIMED: &str =
    "NOT EXISTS (SELECT 1 FROM claim WHERE queue.id BETWEEN claim.first AND claim.last)";

/// Rows that cannot be read back: their rowid, and why.
type Unreadable = Vec<(i64, String)>;

/// The batch to send next, of records whose purpose `sendable` accepts:
/// the one already claimed (a retry keeps its id) when all of it is still
/// sendable, or else the oldest sendable records within `limits` (at
/// least one record, however large). Records of other purposes stay
/// queued, untouched, and do not hold up the ones behind them.
pub fn claim_batch(
    connection: &Connection,
    limits: BatchLimits,
    sendable: &[&str],
) -> Result<Option<Batch>, StoreError> {
    Ok(claim_batch_counting(connection, limits, sendable)?.0)
}

/// [`claim_batch`], and how many unreadable records it moved to the
/// dead-letter table on the way (each on its own: its neighbours go on).
pub fn claim_batch_counting(
    connection: &Connection,
    limits: BatchLimits,
    sendable: &[&str],
) -> Result<(Option<Batch>, u64), StoreError> {
    let mut dead = 0;
    loop {
        let Some((batch, unreadable)) = claim_once(connection, limits, sendable)? else {
            return Ok((None, dead));
        };
        dead += dead_letter(connection, &unreadable)?;
        if !batch.records.is_empty() || unreadable.is_empty() {
            return Ok((Some(batch), dead));
        }
    }
}

/// Numbered placeholders `?first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first + 1..=first + count)
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn texts<'a>(purposes: &'a [&str]) -> impl Iterator<Item = Value> + 'a {
    purposes.iter().map(|p| Value::Text((*p).to_owned()))
}

/// One claim: the batch, and the rows of it that cannot be read back.
fn claim_once(
    connection: &Connection,
    limits: BatchLimits,
    sendable: &[&str],
) -> Result<Option<(Batch, Unreadable)>, StoreError> {
    if sendable.is_empty() {
        return Ok(None);
    }
    if let Some(id) = claimed(connection)? {
        let stranger: Option<String> = connection
            .prepare_cached(&format!(
                "SELECT q.purpose FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
                 WHERE c.batch_id = ?1 AND q.purpose NOT IN ({}) LIMIT 1",
                placeholders(1, sendable.len())
            ))?
            .query_row(
                rusqlite::params_from_iter(
                    std::iter::once(Value::Text(id.to_string())).chain(texts(sendable)),
                ),
                |row| row.get(0),
            )
            .optional()?;
        if stranger.is_none() {
            let (records, unreadable) = read_batch(connection, id)?;
            if !records.is_empty() || !unreadable.is_empty() {
                return Ok(Some((Batch { id, records }, unreadable)));
            }
        }
    }
    // Release a batch that is malformed, emptied, or no longer all
    // sendable: its records are claimed afresh below.
    connection.execute("DELETE FROM claim", [])?;
    // The oldest records up to the record limit, cut where their sizes add
    // up past the byte limit (keeping the first).
    let ids: Vec<i64> = connection
        .prepare_cached(&format!(
            "SELECT id FROM
               (SELECT id, SUM(size) OVER (ORDER BY id) AS running,
                       ROW_NUMBER() OVER (ORDER BY id) AS n
                FROM (SELECT id, size FROM queue NOT INDEXED WHERE purpose IN ({})
                      ORDER BY id LIMIT ?1))
             WHERE running <= ?2 OR n = 1
             ORDER BY id",
            placeholders(2, sendable.len())
        ))?
        .query_map(
            rusqlite::params_from_iter(
                [
                    Value::Integer(limits.records as i64),
                    Value::Integer(limits.bytes.min(i64::MAX as u64) as i64),
                ]
                .into_iter()
                .chain(texts(sendable)),
            ),
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(None);
    }
    let id = Uuid::new_v4();
    let mut insert = connection
        .prepare_cached("INSERT INTO claim (batch_id, first, last) VALUES (?1, ?2, ?3)")?;
    for (first, last) in runs(connection, &ids)? {
        insert.execute(params![id.to_string(), first, last])?;
    }
    let (records, unreadable) = read_batch(connection, id)?;
    Ok(Some((Batch { id, records }, unreadable)))
}

/// The oldest `collected_at` of each purpose in batch `id`.
pub(super) fn oldest_per_purpose(
    connection: &Connection,
    id: Uuid,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT purpose, MIN(collected_at) FROM queue WHERE id BETWEEN ?1 AND ?2 GROUP BY purpose",
    )?;
    let mut oldest = Vec::new();
    for (first, last) in ranges(connection, id)? {
        let rows = query.query_map(params![first, last], |row| Ok((row.get(0)?, row.get(1)?)))?;
        for row in rows {
            oldest.push(row?);
        }
    }
    Ok(oldest)
}

/// The claimed batch, if any.
pub(super) fn claimed(connection: &Connection) -> Result<Option<Uuid>, StoreError> {
    let id: Option<String> = connection
        .prepare_cached("SELECT batch_id FROM claim LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(id.and_then(|id| Uuid::parse_str(&id).ok()))
}

/// `ids` (ascending) as ranges that hold no other queued record: two
/// neighbours join when no row lies between them.
fn runs(connection: &Connection, ids: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut between = connection
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM queue WHERE id > ?1 AND id < ?2)")?;
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some((_, last))
                if id == *last + 1
                    || !between.query_row(params![*last, id], |row| row.get::<_, bool>(0))? =>
            {
                *last = id
            }
            _ => runs.push((id, id)),
        }
    }
    Ok(runs)
}

/// Batch `id`'s rowid ranges.
fn ranges(connection: &Connection, id: Uuid) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT first, last FROM claim WHERE batch_id = ?1 ORDER BY first")?
        .query_map(params![id.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?)
}

/// Runs `sql` once per range of batch `id` (`?1`, `?2`: the range's ends,
/// then `extra`); returns the rows it changed, added up.
fn each_range(
    connection: &Connection,
    id: Uuid,
    sql: &str,
    extra: &[&dyn rusqlite::ToSql],
) -> Result<u64, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut changed = 0;
    for (first, last) in ranges(connection, id)? {
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&first, &last];
        args.extend_from_slice(extra);
        changed += statement.execute(&args[..])? as u64;
    }
    Ok(changed)
}

/// The records of batch `id`, and the rows that cannot be read back (a
/// column of the wrong type, fields that are not JSON) with why.
fn read_batch(
    connection: &Connection,
    id: Uuid,
) -> Result<(Vec<QueuedRecord>, Unreadable), StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT q.id, q.purpose, q.clause, q.clause_version, q.clause_sha256, q.collected_at, q.fields
         FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
         WHERE c.batch_id = ?1 ORDER BY q.id",
    )?;
    let mut rows = query.query(params![id.to_string()])?;
    let (mut records, mut unreadable) = (Vec::new(), Vec::new());
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let record = (|| {
            Ok::<_, rusqlite::Error>(QueuedRecord {
                purpose: row.get(1)?,
                clause: row.get(2)?,
                clause_version: row.get(3)?,
                clause_sha256: row.get(4)?,
                collected_at: row.get(5)?,
                fields_json: row.get(6)?,
            })
        })();
        match record {
            Ok(record) => {
                match serde_json::from_str::<&serde_json::value::RawValue>(&record.fields_json) {
                    Ok(_) => records.push(record),
                    Err(err) => {
                        unreadable.push((rowid, format!("stored fields are not JSON: {err}")))
                    }
                }
            }
            Err(err) => unreadable.push((rowid, format!("stored record unreadable: {err}"))),
        }
    }
    Ok((records, unreadable))
}

/// Releases the batch in flight when it holds records of `purpose` (before
/// they are purged: what remains is claimed afresh, under a new id).
pub(super) fn release_holding(connection: &Connection, purpose: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "DELETE FROM claim WHERE batch_id IN
               (SELECT c.batch_id FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
                WHERE q.purpose = ?1)",
        )?
        .execute(params![purpose])?;
    Ok(())
}

/// Moves every record of batch `id` to the dead-letter table with the
/// receiver's `status` and why; one audit line. Returns how many moved.
pub fn dead_letter_batch(
    connection: &Connection,
    id: Uuid,
    status: Option<u16>,
    reason: &str,
) -> Result<u64, StoreError> {
    copy_to_dead_letter(connection, id, status, reason)?;
    let moved = remove_batch(connection, id)?;
    if moved > 0 {
        insert_audit(connection, "dead-lettered", Some(id), moved, reason)?;
    }
    Ok(moved)
}

/// Copies every record of batch `id` into the dead-letter table (the batch
/// stays as it is); returns how many.
pub fn copy_to_dead_letter(
    connection: &Connection,
    id: Uuid,
    status: Option<u16>,
    reason: &str,
) -> Result<u64, StoreError> {
    let at = rfc3339(SystemTime::now());
    each_range(
        connection,
        id,
        super::trail::DEAD_LETTER_RANGE,
        &[&at, &status, &reason],
    )
}

/// Deletes batch `id`'s records and its claim; returns how many went.
fn remove_batch(connection: &Connection, id: Uuid) -> Result<u64, StoreError> {
    let removed = each_range(
        connection,
        id,
        "DELETE FROM queue WHERE id BETWEEN ?1 AND ?2",
        &[],
    )?;
    release_batch(connection, id)?;
    Ok(removed)
}

/// Lets go of batch `id`: its records are claimed afresh (under a new id)
/// by the next attempt, in smaller batches when it was refused whole.
pub fn release_batch(connection: &Connection, id: Uuid) -> Result<(), StoreError> {
    connection
        .prepare_cached("DELETE FROM claim WHERE batch_id = ?1")?
        .execute(params![id.to_string()])?;
    Ok(())
}

/// The batch is done with (delivered, or dropped as unsendable): its
/// records leave the queue and the audit trail says why.
pub fn complete_batch(
    connection: &Connection,
    id: Uuid,
    event: &str,
    detail: &str,
) -> Result<u64, StoreError> {
    complete_batch_with(connection, id, event, detail, None)
}

/// [`complete_batch`], with the audit line's typed `facts`.
pub fn complete_batch_with(
    connection: &Connection,
    id: Uuid,
    event: &str,
    detail: &str,
    facts: Option<&serde_json::Value>,
) -> Result<u64, StoreError> {
    let deleted = remove_batch(connection, id)?;
    insert_audit_with(connection, event, Some(id), deleted, detail, facts)?;
    Ok(deleted)
}

/// The sizes of batch `id`'s records added up.
pub fn batch_bytes(connection: &Connection, id: Uuid) -> Result<u64, StoreError> {
    let bytes: i64 = connection
        .prepare_cached(
            "SELECT COALESCE(SUM(q.size), 0) FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
             WHERE c.batch_id = ?1",
        )?
        .query_row(params![id.to_string()], |row| row.get(0))?;
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::test_record;
    use crate::store::queue::enqueue;

    fn store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let opened = crate::store::open_connection(dir.path()).unwrap();
        (dir, opened.connection)
    }

    fn limits(records: usize) -> BatchLimits {
        BatchLimits {
            records,
            bytes: u64::MAX,
        }
    }

    #[test]
    fn a_claim_is_ranges_that_hold_its_records_and_nothing_else() {
        let (_dir, c) = store();
        // a b a a b a: claiming `a` makes three ranges, [1], [3, 4], [6].
        for purpose in ["a", "b", "a", "a", "b", "a"] {
            enqueue(&c, &[test_record(purpose, 1)]).unwrap();
        }
        let batch = claim_batch(&c, limits(10), &["a"]).unwrap().unwrap();
        assert_eq!(batch.records.len(), 4);
        assert_eq!(ranges(&c, batch.id).unwrap(), vec![(1, 1), (3, 4), (6, 6)]);
        // A record that arrives later is never part of it.
        enqueue(&c, &[test_record("a", 2)]).unwrap();
        assert_eq!(
            batch_bytes(&c, batch.id).unwrap(),
            4 * test_record("a", 1).size() as u64
        );
        assert_eq!(complete_batch(&c, batch.id, "uploaded", "ok").unwrap(), 4);
        let left: Vec<String> = c
            .prepare("SELECT purpose FROM queue ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["b", "b", "a"]);
        assert_eq!(claimed(&c).unwrap(), None);
    }

    #[test]
    fn a_gap_left_by_a_removed_record_does_not_split_a_range() {
        let (_dir, c) = store();
        for n in 0..5 {
            enqueue(&c, &[test_record("a", n)]).unwrap();
        }
        c.execute("DELETE FROM queue WHERE id = 3", []).unwrap();
        let batch = claim_batch(&c, limits(10), &["a"]).unwrap().unwrap();
        assert_eq!(ranges(&c, batch.id).unwrap(), vec![(1, 5)]);
        assert_eq!(batch.records.len(), 4);
    }

    #[test]
    fn a_retry_keeps_its_id_until_its_records_are_gone_or_not_sendable() {
        let (_dir, c) = store();
        for purpose in ["a", "b", "a"] {
            enqueue(&c, &[test_record(purpose, 1)]).unwrap();
        }
        let first = claim_batch(&c, limits(10), &["a", "b"]).unwrap().unwrap();
        let again = claim_batch(&c, limits(10), &["a", "b"]).unwrap().unwrap();
        assert_eq!(first.id, again.id);
        // `b` may no longer be sent: the batch is claimed afresh without it.
        let narrower = claim_batch(&c, limits(10), &["a"]).unwrap().unwrap();
        assert_ne!(narrower.id, first.id);
        assert_eq!(narrower.records.len(), 2);
        // Its records purged from under it: nothing is left to claim.
        release_holding(&c, "a").unwrap();
        c.execute("DELETE FROM queue WHERE purpose = 'a'", [])
            .unwrap();
        assert!(claim_batch(&c, limits(10), &["a"]).unwrap().is_none());
    }

    #[test]
    fn the_batch_in_flight_is_never_evicted_and_dead_letters_as_a_whole() {
        let (_dir, c) = store();
        for n in 0..4 {
            enqueue(&c, &[test_record("a", n)]).unwrap();
        }
        let batch = claim_batch(&c, limits(2), &["a"]).unwrap().unwrap();
        let unclaimed: i64 = c
            .query_row(
                &format!("SELECT COUNT(*) FROM queue WHERE {UNCLAIMED}"),
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(unclaimed, 2);
        assert_eq!(
            dead_letter_batch(&c, batch.id, Some(422), "refused").unwrap(),
            2
        );
        let dead: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM dead_letter WHERE status = 422",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(dead, 2);
        assert_eq!(claimed(&c).unwrap(), None);
    }
}
