//! The store's operations, as functions over one open connection (or a
//! transaction, or a savepoint: all deref to `Connection`). [`Store`]
//! wraps each in its own transaction for the CLI; the daemon's
//! [`writer`](super::writer) runs many of them in one group commit.
//!
//! [`Store`]: super::Store

use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{AuditEntry, Batch, BatchLimits, QueuedRecord, SentBody, StoreError};
use crate::clock::rfc3339;
use crate::gate::GatedRecord;

/// The installation id, created on first use and never changed.
pub fn installation_id(connection: &Connection) -> Result<Uuid, StoreError> {
    if let Some(id) = meta_get(connection, "installation_id")?
        .as_deref()
        .and_then(|text| Uuid::parse_str(text).ok())
    {
        return Ok(id);
    }
    let id = Uuid::new_v4();
    meta_set(connection, "installation_id", &id.to_string())?;
    Ok(id)
}

/// The installation's key for `keyed_hash` fields: 32 random bytes made on
/// first use (from two version-4 UUIDs: 244 bits from the OS's random
/// source), kept here and never sent.
pub fn hash_key(connection: &Connection) -> Result<[u8; 32], StoreError> {
    if let Some(key) = meta_get(connection, "hash_key")? {
        let mut bytes = [0u8; 32];
        if hex::decode_to_slice(&key, &mut bytes).is_ok() {
            return Ok(bytes);
        }
    }
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    meta_set(connection, "hash_key", &hex::encode(bytes))?;
    Ok(bytes)
}

/// Replaces the installation id with a new random one, with an audit line
/// saying why (never the ids themselves). Returns the new id.
pub fn rotate_installation_id(connection: &Connection, why: &str) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    meta_set(connection, "installation_id", &id.to_string())?;
    insert_audit(connection, "rotated", None, 0, why)?;
    Ok(id)
}

/// One value of the `meta` table.
pub fn meta_get(connection: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row(params![key], |row| row.get(0))
        .optional()?)
}

pub fn meta_set(connection: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// Appends records (inside the caller's transaction).
pub fn enqueue(connection: &Connection, records: &[GatedRecord]) -> Result<(), StoreError> {
    let mut insert = connection.prepare_cached(
        "INSERT INTO queue (purpose, clause, clause_version, clause_sha256, collected_at, fields, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for record in records {
        insert.execute(params![
            record.purpose(),
            record.clause(),
            record.clause_version(),
            record.clause_sha256(),
            record.collected_at(),
            record.fields_json(),
            record.size() as i64,
        ])?;
    }
    Ok(())
}

/// Deletes queued records of every purpose `keep` refuses, returning how
/// many went, with an audit line. A batch that loses records is released,
/// so the next attempt gets a fresh id for what remains.
pub fn purge_blocked(
    connection: &Connection,
    keep: impl Fn(&str) -> bool,
    why: &str,
) -> Result<u64, StoreError> {
    let mut purged = 0u64;
    let mut by_purpose = serde_json::Map::new();
    for purpose in queued_purposes(connection)? {
        if keep(&purpose) {
            continue;
        }
        connection.execute(
            "UPDATE queue SET batch_id = NULL WHERE batch_id IN
               (SELECT DISTINCT batch_id FROM queue WHERE purpose = ?1 AND batch_id IS NOT NULL)",
            params![purpose],
        )?;
        let gone =
            connection.execute("DELETE FROM queue WHERE purpose = ?1", params![purpose])? as u64;
        by_purpose.insert(purpose, gone.into());
        purged += gone;
    }
    if purged > 0 {
        let named: Vec<String> = by_purpose.iter().map(|(p, n)| format!("{p} {n}")).collect();
        insert_audit_with(
            connection,
            "purged",
            None,
            purged,
            &format!("{why}: {}", named.join(", ")),
            Some(&serde_json::json!({ "purposes": by_purpose })),
        )?;
    }
    Ok(purged)
}

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

/// Rows that cannot be read back: their rowid, and why.
type Unreadable = Vec<(i64, String)>;

/// One claim: the batch, and the rows of it that cannot be read back.
fn claim_once(
    connection: &Connection,
    limits: BatchLimits,
    sendable: &[&str],
) -> Result<Option<(Batch, Unreadable)>, StoreError> {
    if sendable.is_empty() {
        return Ok(None);
    }
    let claimed: Option<String> = connection
        .query_row(
            // At most one batch is claimed at a time; the partial index
            // finds it without touching the backlog.
            "SELECT batch_id FROM queue INDEXED BY queue_claimed WHERE batch_id IS NOT NULL LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    // Numbered placeholders for the purposes, after the `first` ones.
    let list = |first: usize| {
        (first + 1..=first + sendable.len())
            .map(|n| format!("?{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let claimed = match claimed.as_deref().map(Uuid::parse_str) {
        Some(Ok(id)) => {
            let stranger: Option<String> = connection
                .prepare_cached(&format!(
                    "SELECT purpose FROM queue WHERE batch_id = ?1 AND purpose NOT IN ({}) LIMIT 1",
                    list(1)
                ))?
                .query_row(
                    rusqlite::params_from_iter(
                        std::iter::once(Value::Text(id.to_string())).chain(texts(sendable)),
                    ),
                    |row| row.get(0),
                )
                .optional()?;
            stranger.is_none().then_some(id)
        }
        _ => None,
    };
    let id = match claimed {
        Some(id) => id,
        None => {
            // Release a batch that is malformed or no longer all sendable.
            connection.execute(
                "UPDATE queue SET batch_id = NULL WHERE batch_id IS NOT NULL",
                [],
            )?;
            let id = Uuid::new_v4();
            // The oldest records up to the record limit, cut where their
            // sizes add up past the byte limit (keeping the first).
            let claimed = connection
                .prepare_cached(&format!(
                    "UPDATE queue SET batch_id = ?1 WHERE id IN
                       (SELECT id FROM
                          (SELECT id, SUM(size) OVER (ORDER BY id) AS running,
                                  ROW_NUMBER() OVER (ORDER BY id) AS n
                           FROM (SELECT id, size FROM queue NOT INDEXED WHERE batch_id IS NULL
                                   AND purpose IN ({}) ORDER BY id LIMIT ?2))
                        WHERE running <= ?3 OR n = 1)",
                    list(3)
                ))?
                .execute(rusqlite::params_from_iter(
                    [
                        Value::Text(id.to_string()),
                        Value::Integer(limits.records as i64),
                        Value::Integer(limits.bytes.min(i64::MAX as u64) as i64),
                    ]
                    .into_iter()
                    .chain(texts(sendable)),
                ))?;
            if claimed == 0 {
                return Ok(None);
            }
            id
        }
    };
    let (records, unreadable) = read_batch(connection, id)?;
    Ok(Some((Batch { id, records }, unreadable)))
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

/// The records of batch `id`, and the rows that cannot be read back (a
/// column of the wrong type, fields that are not JSON) with why.
fn read_batch(
    connection: &Connection,
    id: Uuid,
) -> Result<(Vec<QueuedRecord>, Unreadable), StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT id, purpose, clause, clause_version, clause_sha256, collected_at, fields
         FROM queue WHERE batch_id = ?1 ORDER BY id",
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

fn texts<'a>(purposes: &'a [&str]) -> impl Iterator<Item = Value> + 'a {
    purposes.iter().map(|p| Value::Text((*p).to_owned()))
}

/// Moves every record of batch `id` to the dead-letter table with the
/// receiver's `status` and why; one audit line. Returns how many moved.
pub fn dead_letter_batch(
    connection: &Connection,
    id: Uuid,
    status: Option<u16>,
    reason: &str,
) -> Result<u64, StoreError> {
    connection.execute(
        "INSERT INTO dead_letter (at, purpose, clause, collected_at, fields, status, reason)
         SELECT ?1, purpose, clause, collected_at, fields, ?2, ?3 FROM queue WHERE batch_id = ?4",
        params![rfc3339(SystemTime::now()), status, reason, id.to_string()],
    )?;
    let moved = connection.execute(
        "DELETE FROM queue WHERE batch_id = ?1",
        params![id.to_string()],
    )? as u64;
    if moved > 0 {
        insert_audit(connection, "dead-lettered", Some(id), moved, reason)?;
    }
    Ok(moved)
}

/// Lets go of batch `id`: its records are claimed afresh (under a new id)
/// by the next attempt, in smaller batches when it was refused whole.
pub fn release_batch(connection: &Connection, id: Uuid) -> Result<(), StoreError> {
    connection.execute(
        "UPDATE queue SET batch_id = NULL WHERE batch_id = ?1",
        params![id.to_string()],
    )?;
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
    let deleted = connection.execute(
        "DELETE FROM queue WHERE batch_id = ?1",
        params![id.to_string()],
    )? as u64;
    insert_audit_with(connection, event, Some(id), deleted, detail, facts)?;
    Ok(deleted)
}

/// The sizes of batch `id`'s records added up.
pub fn batch_bytes(connection: &Connection, id: Uuid) -> Result<u64, StoreError> {
    let bytes: i64 = connection
        .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM queue WHERE batch_id = ?1")?
        .query_row(params![id.to_string()], |row| row.get(0))?;
    Ok(bytes as u64)
}

/// Records waiting, all purposes (a full count: call it rarely).
pub fn depth(connection: &Connection) -> Result<u64, StoreError> {
    let count: i64 = connection.query_row("SELECT COUNT(*) FROM queue", [], |row| row.get(0))?;
    Ok(count as u64)
}

/// The newest `limit` audit lines, oldest first.
pub fn recent_audit(connection: &Connection, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    audit_where(connection, limit, &AuditFilter::default())
}

/// Which audit lines `history` shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this event (`uploaded`, `failed`, `purged`, `dropped`,
    /// `dead-lettered`, `consent`, …).
    pub kind: Option<String>,
    /// Only lines at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only lines whose facts name this purpose.
    pub purpose: Option<String>,
}

/// The newest `limit` audit lines that `filter` accepts, oldest first.
pub fn audit_where(
    connection: &Connection,
    limit: usize,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut query = connection.prepare(
        "SELECT at, event, batch_id, records, detail, facts FROM
           (SELECT * FROM audit
            WHERE (?2 IS NULL OR event = ?2)
              AND (?3 IS NULL OR at >= ?3)
              AND (?4 IS NULL OR json_type(facts, '$.purposes.' || ?4) IS NOT NULL)
            ORDER BY id DESC LIMIT ?1)
         ORDER BY id",
    )?;
    let entries = query
        .query_map(
            params![limit as i64, filter.kind, filter.since, filter.purpose],
            |row| {
                Ok(AuditEntry {
                    at: row.get(0)?,
                    event: row.get(1)?,
                    batch_id: row.get(2)?,
                    records: row.get::<_, i64>(3)? as u64,
                    detail: row.get(4)?,
                    facts: row
                        .get::<_, Option<String>>(5)?
                        .and_then(|json| serde_json::from_str(&json).ok()),
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(entries)
}

/// The distinct purposes in the queue, by hopping along the purpose index
/// (one lookup per purpose, not a walk over every queued record).
pub(super) fn queued_purposes(connection: &Connection) -> Result<Vec<String>, StoreError> {
    let mut purposes = Vec::new();
    let mut next =
        connection.prepare_cached("SELECT MIN(purpose) FROM queue WHERE purpose > ?1")?;
    let mut after = String::new();
    while let Some(purpose) =
        next.query_row(params![after], |row| row.get::<_, Option<String>>(0))?
    {
        purposes.push(purpose.clone());
        after = purpose;
    }
    Ok(purposes)
}

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

/// Keeps batch `id`'s body as first sent (a retry finds it and sends the
/// same bytes).
pub fn keep_body(connection: &Connection, body: &SentBody) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT OR IGNORE INTO sent_body (batch_id, at, records, sha256, body, drops)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            body.batch_id,
            body.at,
            body.records as i64,
            body.sha256,
            body.gzip,
            (!body.drops.is_empty())
                .then(|| serde_json::to_string(&body.drops).expect("counts serialize")),
        ])?;
    Ok(())
}

/// The kept body of the batch whose id is `id`, or starts with it when
/// exactly one does (people type prefixes).
pub fn sent_body(connection: &Connection, id: &str) -> Result<Vec<SentBody>, StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT batch_id, at, records, sha256, body FROM sent_body
         WHERE batch_id >= ?1 AND batch_id < ?1 || x'7f' ORDER BY batch_id LIMIT 2",
    )?;
    let bodies = query
        .query_map(params![id], |row| {
            Ok(SentBody {
                batch_id: row.get(0)?,
                at: row.get(1)?,
                records: row.get::<_, i64>(2)? as u64,
                sha256: row.get(3)?,
                gzip: row.get(4)?,
                drops: Default::default(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies)
}
