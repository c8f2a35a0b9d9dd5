//! The batch in flight: which queued records it holds, kept as ranges of
//! rowids in the `claim` table, never by writing to the records.
//!
//! A claim takes the oldest sendable segments (`segment`) whole while they
//! fit the batch limits, and the first records of the next one that fit
//! (its `head`: a bisected batch, a segment larger than a batch). It
//! stores the runs of whole segments that no other row sits between
//! (usually one range) and the head's segment with its count. Rowids only
//! grow (`AUTOINCREMENT`), so a range never gains a row after it is made;
//! it loses the ones removed from the queue. Delivering a batch deletes
//! its whole segments and cuts the head off the last one, which keeps its
//! place in the queue.
//!
//! Two batches may be claimed at once: the one on the wire (`held`) and
//! the next, claimed and encoded while the first is sent (the pipelined
//! uploader). A new claim takes no segment any claim touches, so a
//! segment whose head is held waits, whole, for the next claim after it.
//! Claims are retried oldest first (by their first rowid).
use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::segment::Unreadable;
use super::trail::{dead_letter, insert_audit, insert_audit_with};
use super::{Batch, BatchLimits, Segment, StoreError, segment};
use crate::clock::rfc3339;

/// SQL: the `queue` row is not part of the batch in flight.
pub(super) const UNCLAIMED: &str =
    "NOT EXISTS (SELECT 1 FROM claim WHERE queue.id BETWEEN claim.first AND claim.last)";

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
    Ok(claim_batch_counting(connection, limits, sendable, None)?.0)
}

/// [`claim_batch`] beside batch `held` (on the wire, left as it is): the
/// oldest other claimed batch that may still go, or else records no claim
/// touches. Returns how many unreadable records it moved to the
/// dead-letter table on the way (each on its own: its neighbours go on,
/// in a batch claimed afresh).
pub fn claim_batch_counting(
    connection: &Connection,
    limits: BatchLimits,
    sendable: &[&str],
    held: Option<Uuid>,
) -> Result<(Option<Batch>, u64), StoreError> {
    let mut dead = 0;
    loop {
        let Some(id) = claim_once(connection, limits, sendable, held)? else {
            return Ok((None, dead));
        };
        let (batch, unreadable) = read_batch(connection, id)?;
        if unreadable.is_empty() {
            return Ok((Some(batch), dead));
        }
        dead += dead_letter(connection, &unreadable)?;
        release_batch(connection, id)?;
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

/// One claim beside `held`: the oldest batch already claimed that may
/// still go, else a new one; `None` when nothing sendable is queued.
fn claim_once(
    connection: &Connection,
    limits: BatchLimits,
    sendable: &[&str],
    held: Option<Uuid>,
) -> Result<Option<Uuid>, StoreError> {
    if sendable.is_empty() {
        return Ok(None);
    }
    for id in claims(connection)? {
        if Some(id) == held {
            continue;
        }
        if still_sendable(connection, id, sendable)? {
            return Ok(Some(id));
        }
        // Release a batch that is emptied or no longer all sendable: its
        // records are claimed afresh below.
        release_batch(connection, id)?;
    }
    let Some(taken) = choose(connection, limits, sendable)? else {
        return Ok(None);
    };
    let id = Uuid::new_v4();
    let mut insert = connection.prepare_cached(
        "INSERT INTO claim (batch_id, first, last, head, head_bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (first, last) in runs(connection, &taken.whole)? {
        insert.execute(params![
            id.to_string(),
            first,
            last,
            None::<i64>,
            None::<i64>
        ])?;
    }
    if let Some((rowid, head, bytes)) = taken.head {
        insert.execute(params![
            id.to_string(),
            rowid,
            rowid,
            head as i64,
            bytes as i64
        ])?;
    }
    Ok(Some(id))
}

/// Whether claimed batch `id` still holds records and all of them may be
/// sent.
fn still_sendable(
    connection: &Connection,
    id: Uuid,
    sendable: &[&str],
) -> Result<bool, StoreError> {
    let (held, strangers): (i64, i64) = connection
        .prepare_cached(&format!(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE q.purpose NOT IN ({}))
             FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
             WHERE c.batch_id = ?1",
            placeholders(1, sendable.len())
        ))?
        .query_row(
            rusqlite::params_from_iter(
                std::iter::once(Value::Text(id.to_string())).chain(texts(sendable)),
            ),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    Ok(held > 0 && strangers == 0)
}

/// The segments a new claim takes: whole ones, oldest first, while they
/// fit the limits, then the first records of the next one that fit
/// (`head`: rowid, records, bytes). At least one record, however large.
struct Taken {
    whole: Vec<i64>,
    head: Option<(i64, usize, u64)>,
}

fn choose(
    connection: &Connection,
    limits: BatchLimits,
    sendable: &[&str],
) -> Result<Option<Taken>, StoreError> {
    let mut query = connection.prepare_cached(&format!(
        "SELECT id, records, size FROM queue NOT INDEXED WHERE purpose IN ({}) AND {UNCLAIMED}
         ORDER BY id",
        placeholders(0, sendable.len())
    ))?;
    let mut rows = query.query(rusqlite::params_from_iter(texts(sendable)))?;
    let mut taken = Taken {
        whole: Vec::new(),
        head: None,
    };
    let (mut records, mut bytes) = (0usize, 0u64);
    while records < limits.records {
        let Some(row) = rows.next()? else { break };
        let (rowid, count, size): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let (count, size) = (count.max(0) as usize, size.max(0) as u64);
        if records + count <= limits.records && bytes.saturating_add(size) <= limits.bytes {
            taken.whole.push(rowid);
            records += count;
            bytes += size;
            continue;
        }
        taken.head = head_that_fits(
            connection,
            rowid,
            limits.records - records,
            limits.bytes - bytes,
            records == 0,
        )?;
        break;
    }
    Ok((!taken.whole.is_empty() || taken.head.is_some()).then_some(taken))
}

/// How many of segment `rowid`'s first records fit in `records` and
/// `bytes` (at least one when `first`), and their bytes.
fn head_that_fits(
    connection: &Connection,
    rowid: i64,
    records: usize,
    bytes: u64,
    first: bool,
) -> Result<Option<(i64, usize, u64)>, StoreError> {
    let Some((purpose, clause, lines)) = segment::read(connection, rowid)? else {
        // Unreadable: claimed whole, to be dead-lettered by the read.
        return Ok(first.then_some((rowid, 1, 0)));
    };
    let (mut count, mut used) = (0usize, 0u64);
    for line in segment::lines(&lines) {
        let size = segment::record_size(&purpose, &clause, line.len());
        if count == records || (used + size > bytes && !(first && count == 0)) {
            break;
        }
        count += 1;
        used += size;
    }
    Ok((count > 0).then_some((rowid, count, used)))
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

/// The claimed batches, oldest (lowest first rowid) first. A claim whose
/// id is not a UUID (never written by this code) is released.
pub(super) fn claims(connection: &Connection) -> Result<Vec<Uuid>, StoreError> {
    let ids: Vec<String> = connection
        .prepare_cached("SELECT batch_id FROM claim GROUP BY batch_id ORDER BY MIN(first)")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut claims = Vec::with_capacity(ids.len());
    for id in ids {
        match Uuid::parse_str(&id) {
            Ok(uuid) => claims.push(uuid),
            Err(_) => {
                connection
                    .prepare_cached("DELETE FROM claim WHERE batch_id = ?1")?
                    .execute(params![id])?;
            }
        }
    }
    Ok(claims)
}

/// Whether batch `id` is claimed (never released, delivered or purged
/// since its claim).
pub fn claimed_now(connection: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM claim WHERE batch_id = ?1)")?
        .query_row(params![id], |row| row.get(0))?)
}

/// `ids` (ascending) as ranges that hold no other queued row: two
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

/// Batch `id`'s rowid ranges (a head's segment among them).
fn ranges(connection: &Connection, id: Uuid) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT first, last FROM claim WHERE batch_id = ?1 ORDER BY first")?
        .query_map(params![id.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?)
}

/// The records of batch `id`, as segments (a head cut to its records), and
/// what of them cannot be read back.
fn read_batch(connection: &Connection, id: Uuid) -> Result<(Batch, Vec<Unreadable>), StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT q.id, q.purpose, q.clause, q.clause_version, q.clause_sha256, q.lines, c.head, q.crc
         FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
         WHERE c.batch_id = ?1 ORDER BY q.id",
    )?;
    let mut rows = query.query(params![id.to_string()])?;
    let (mut segments, mut unreadable) = (Vec::new(), Vec::new());
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let mut intact = false;
        let read = (|| {
            let head: Option<i64> = row.get(6)?;
            let segment::Checked { lines, crc } = row.get(5)?;
            // Checked against its head's CRC-32 when unpacked already.
            let crc = crc.map_or_else(|| segment::crc(&lines), i64::from);
            intact = row.get::<_, Option<i64>>(7)? == Some(crc);
            Ok::<_, rusqlite::Error>(Segment {
                purpose: row.get(1)?,
                clause: row.get(2)?,
                clause_version: row.get(3)?,
                clause_sha256: row.get(4)?,
                records: 0,
                lines: match head {
                    Some(head) => cut(lines, head.max(0) as usize),
                    None => lines,
                },
            })
        })();
        let mut segment = match read {
            Ok(segment) => segment,
            Err(err) => {
                unreadable.push(Unreadable {
                    rowid,
                    line: None,
                    reason: format!("stored record unreadable: {err}"),
                });
                continue;
            }
        };
        for (index, line) in segment::lines(&segment.lines).enumerate() {
            segment.records += 1;
            if intact {
                continue;
            }
            if let Err(reason) = segment::Line::parse(line) {
                unreadable.push(Unreadable {
                    rowid,
                    line: Some(index),
                    reason,
                });
            }
        }
        segments.push(segment);
    }
    Ok((Batch { id, segments }, unreadable))
}

/// The first `head` lines of `lines`.
fn cut(mut lines: String, head: usize) -> String {
    if let Some(end) = memchr::memchr_iter(b'\n', lines.as_bytes()).nth(head.saturating_sub(1)) {
        lines.truncate(end);
    }
    lines
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

/// Copies every record of batch `id` into the dead-letter table, one row
/// each (the batch stays as it is); returns how many.
pub fn copy_to_dead_letter(
    connection: &Connection,
    id: Uuid,
    status: Option<u16>,
    reason: &str,
) -> Result<u64, StoreError> {
    let (batch, _) = read_batch(connection, id)?;
    let at = rfc3339(SystemTime::now());
    let mut copied = 0;
    for segment in &batch.segments {
        for line in segment::lines(&segment.lines) {
            let removed = segment::Removed {
                purpose: segment.purpose.clone(),
                clause: segment.clause.clone(),
                line: line.to_owned(),
            };
            super::trail::insert_dead_letter(connection, &at, &removed, status, reason)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Deletes batch `id`'s records (whole segments, and the head of the last
/// one) and its claim; returns how many records went.
fn remove_batch(connection: &Connection, id: Uuid) -> Result<u64, StoreError> {
    let parts: Vec<(i64, i64, Option<i64>)> = connection
        .prepare_cached("SELECT first, last, head FROM claim WHERE batch_id = ?1")?
        .query_map(params![id.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut removed = 0;
    for (first, last, head) in parts {
        match head {
            Some(head) => {
                let head = head.max(0) as usize;
                removed += segment::trim(connection, first, |index, _, _| index >= head)?
                    .0
                    .len() as u64;
            }
            None => {
                let records: i64 = connection
                    .prepare_cached(
                        "SELECT COALESCE(SUM(records), 0) FROM queue WHERE id BETWEEN ?1 AND ?2",
                    )?
                    .query_row(params![first, last], |row| row.get(0))?;
                connection
                    .prepare_cached("DELETE FROM queue WHERE id BETWEEN ?1 AND ?2")?
                    .execute(params![first, last])?;
                removed += records.max(0) as u64;
            }
        }
    }
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
            "SELECT COALESCE(SUM(CASE WHEN c.head IS NULL THEN q.size ELSE c.head_bytes END), 0)
             FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
             WHERE c.batch_id = ?1",
        )?
        .query_row(params![id.to_string()], |row| row.get(0))?;
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests;
