//! The store's operations, as functions over one open connection (or a
//! transaction, or a savepoint: all deref to `Connection`). [`Store`]
//! wraps each in its own transaction for the CLI; the daemon's
//! [`writer`](super::writer) runs many of them in one group commit.
//!
//! [`Store`]: super::Store

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

pub use super::claim::{
    batch_bytes, claim_batch, claim_batch_counting, claimed_now, complete_batch,
    complete_batch_with, copy_to_dead_letter, dead_letter_batch, release_batch,
};
pub use super::trail::{DeadLetterCount, dead_letter_counts, insert_audit, insert_audit_with};
use super::{AuditEntry, SentBody, StoreError, claim};
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

/// The `meta` keys of the clauses' erasure generations: this prefix and
/// the clause id.
pub(super) const ERASURE_GENERATION: &str = "erasure_generation.";

/// `clause`'s erasure generation: how many times it was withdrawn since
/// the store began (absent: 0).
fn erasure_generation(connection: &Connection, clause: &str) -> Result<u64, StoreError> {
    Ok(
        meta_get(connection, &format!("{ERASURE_GENERATION}{clause}"))?
            .and_then(|text| text.parse().ok())
            .unwrap_or(0),
    )
}

/// The erasure key `clause`'s records carry now: derived from the hash
/// key and the clause's generation (`privacy::erasure_key`).
pub fn erasure_key(connection: &Connection, clause: &str) -> Result<Uuid, StoreError> {
    let generation = erasure_generation(connection, clause)?;
    Ok(crate::privacy::erasure_key(
        &hash_key(connection)?,
        clause,
        generation,
    ))
}

/// Moves `clause` to its next erasure generation, with an audit line
/// saying why (never a key). Returns the new key: what the clause's
/// records carry from now on, which nothing can link to the last one
/// without the hash key.
pub fn rotate_erasure_key(
    connection: &Connection,
    clause: &str,
    why: &str,
) -> Result<Uuid, StoreError> {
    let next = erasure_generation(connection, clause)? + 1;
    meta_set(
        connection,
        &format!("{ERASURE_GENERATION}{clause}"),
        &next.to_string(),
    )?;
    insert_audit(connection, "rotated", None, 0, why)?;
    erasure_key(connection, clause)
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

/// Appends records (inside the caller's transaction), as segments: one
/// row per purpose and clause among them (`segment`). Returns the bytes
/// they count for.
pub fn enqueue(connection: &Connection, records: &[GatedRecord]) -> Result<u64, StoreError> {
    super::segment::insert(connection, records)
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
    let queued = queued_purposes(connection)?;
    if !queued.is_empty() && queued.iter().all(|p| !keep(p)) {
        // Everything goes (the EULA withdrawn, say): count by purpose, then
        // one DELETE without a WHERE, which SQLite carries out by dropping
        // the table's pages wholesale instead of row by row (about 4x
        // quicker for 100,000 records: `cargo bench --bench pipeline --
        // revoke`). Rowids go on growing: the claim ranges stay sound.
        let mut counts = connection
            .prepare_cached("SELECT purpose, SUM(records) FROM queue GROUP BY purpose")?;
        let mut rows = counts.query([])?;
        while let Some(row) = rows.next()? {
            let count = row.get::<_, i64>(1)? as u64;
            by_purpose.insert(row.get(0)?, count.into());
            purged += count;
        }
        connection.execute("DELETE FROM claim", [])?;
        connection.execute("DELETE FROM queue", [])?;
    } else {
        for purpose in queued {
            if keep(&purpose) {
                continue;
            }
            claim::release_holding(connection, &purpose)?;
            let gone: i64 = connection
                .prepare_cached("SELECT COALESCE(SUM(records), 0) FROM queue WHERE purpose = ?1")?
                .query_row(params![purpose], |row| row.get(0))?;
            connection.execute("DELETE FROM queue WHERE purpose = ?1", params![purpose])?;
            let gone = gone.max(0) as u64;
            by_purpose.insert(purpose, gone.into());
            purged += gone;
        }
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

/// Records waiting, all purposes (a full count: call it rarely).
pub fn depth(connection: &Connection) -> Result<u64, StoreError> {
    let count: i64 =
        connection.query_row("SELECT COALESCE(SUM(records), 0) FROM queue", [], |row| {
            row.get(0)
        })?;
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
            body.bytes,
            (!body.drops.is_empty())
                .then(|| serde_json::to_string(&body.drops).expect("counts serialize")),
        ])?;
    Ok(())
}

/// Replaces the kept body of batch `id` by the same document in other
/// bytes (recompressed for a receiver that refused the first compression):
/// what is kept is always what was last sent.
pub fn rekeep_body(
    connection: &Connection,
    id: &str,
    bytes: &[u8],
    sha256: &str,
) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE sent_body SET body = ?2, sha256 = ?3 WHERE batch_id = ?1")?
        .execute(params![id, bytes, sha256])?;
    Ok(())
}

/// A kept body from a row of `batch_id, at, records, sha256, body`.
fn sent_body_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SentBody> {
    Ok(SentBody {
        batch_id: row.get(0)?,
        at: row.get(1)?,
        records: row.get::<_, i64>(2)? as u64,
        sha256: row.get(3)?,
        bytes: row.get(4)?,
        drops: Default::default(),
    })
}

/// The kept body of the batch whose id is `id`, or starts with it when
/// exactly one does (people type prefixes).
pub fn sent_body(connection: &Connection, id: &str) -> Result<Vec<SentBody>, StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT batch_id, at, records, sha256, body FROM sent_body
         WHERE batch_id >= ?1 AND batch_id < ?1 || x'7f' ORDER BY batch_id LIMIT 2",
    )?;
    let bodies = query
        .query_map(params![id], sent_body_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies)
}

/// The kept bodies of the newest `limit` batches first sent at or after
/// `since` (RFC 3339), newest first: the transparency report's last
/// batches.
pub fn sent_bodies_since(
    connection: &Connection,
    since: &str,
    limit: usize,
) -> Result<Vec<SentBody>, StoreError> {
    let mut query = connection.prepare_cached(
        "SELECT batch_id, at, records, sha256, body FROM sent_body
         WHERE at >= ?1 ORDER BY at DESC, batch_id LIMIT ?2",
    )?;
    let bodies = query
        .query_map(
            params![since, limit.min(i64::MAX as usize) as i64],
            sent_body_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies)
}
