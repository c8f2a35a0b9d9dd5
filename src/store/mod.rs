//! The durable store in `state_dir`: the upload queue, the installation id
//! and the audit trail, in one SQLite database (WAL, full sync).
//!
//! The store is the single source of truth for what is waiting to be sent.
//! A record enters only after the catalogue check and the consent gate; it
//! leaves only when the receiver acknowledged its batch with a 2xx, or when
//! the consent that allowed it is gone (purge). The store never decides
//! consent: callers tell it which purposes are still allowed.

mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

use crate::clock::rfc3339;

/// File name of the database inside `state_dir`.
pub const DATABASE_FILE: &str = "consentry.sqlite3";

/// How long a writer waits for another process (the CLI's `flush`, say)
/// holding the database before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A gated record as it waits in the queue, fields already in wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    pub purpose: String,
    pub clause: String,
    pub clause_version: u32,
    pub clause_sha256: String,
    pub collected_at: String,
    /// The record's `fields` object, serialized JSON.
    pub fields_json: String,
}

/// Records claimed for one upload attempt. The id is the `Idempotency-Key`:
/// a retry of the same batch carries the same id.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: Uuid,
    pub records: Vec<QueuedRecord>,
}

/// One line of the audit trail the user can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: String,
    pub event: String,
    pub batch_id: Option<String>,
    pub records: u64,
    pub detail: String,
}

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "state database {path} has schema version {found}, newer than this build understands ({supported}); upgrade consentry"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

/// The queue and its companions. Cheap to share behind an `Arc`.
pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database in `state_dir`. The directory
    /// is created private to this user when missing.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        prepare_state_dir(state_dir)?;
        let path = state_dir.join(DATABASE_FILE);
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let connection = Connection::open(&path).map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        schema::migrate(&connection, &path)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The installation id, created on first use and never changed.
    pub fn installation_id(&self) -> Result<Uuid, StoreError> {
        let connection = self.lock();
        let existing: Option<String> = connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'installation_id'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing.and_then(|text| Uuid::parse_str(&text).ok()) {
            return Ok(id);
        }
        let id = Uuid::new_v4();
        connection.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('installation_id', ?1)",
            params![id.to_string()],
        )?;
        Ok(id)
    }

    /// Appends records in one transaction: all are durable, or none.
    pub fn enqueue(&self, records: &[QueuedRecord]) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO queue (purpose, clause, clause_version, clause_sha256, collected_at, fields)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for record in records {
                insert.execute(params![
                    record.purpose,
                    record.clause,
                    record.clause_version,
                    record.clause_sha256,
                    record.collected_at,
                    record.fields_json,
                ])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// Deletes queued records whose purpose `is_allowed` refuses, returning
    /// how many went, and records the purge in the audit trail in the same
    /// transaction. A batch that loses records is released, so the next
    /// attempt gets a fresh id for what remains.
    pub fn purge_blocked(
        &self,
        is_allowed: impl Fn(&str) -> bool,
        why: &str,
    ) -> Result<u64, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let mut purged = 0u64;
        for purpose in queued_purposes(&transaction)? {
            if is_allowed(&purpose) {
                continue;
            }
            transaction.execute(
                "UPDATE queue SET batch_id = NULL WHERE batch_id IN
                   (SELECT DISTINCT batch_id FROM queue WHERE purpose = ?1 AND batch_id IS NOT NULL)",
                params![purpose],
            )?;
            purged += transaction
                .execute("DELETE FROM queue WHERE purpose = ?1", params![purpose])?
                as u64;
        }
        if purged > 0 {
            insert_audit(&transaction, "purged", None, purged, why)?;
        }
        transaction.commit()?;
        Ok(purged)
    }

    /// The batch to send next: the one already claimed (a retry keeps its
    /// id), or up to `max_records` of the oldest unclaimed records.
    pub fn claim_batch(&self, max_records: usize) -> Result<Option<Batch>, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let claimed: Option<String> = transaction
            .query_row(
                // At most one batch is claimed at a time; the partial index
                // finds it without touching the backlog.
                "SELECT batch_id FROM queue INDEXED BY queue_claimed WHERE batch_id IS NOT NULL LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let id = match claimed.as_deref().map(Uuid::parse_str) {
            Some(Ok(id)) => id,
            _ => {
                let id = Uuid::new_v4();
                if claimed.is_some() {
                    // A malformed id (never written by us): release and replace.
                    transaction.execute(
                        "UPDATE queue SET batch_id = NULL WHERE batch_id IS NOT NULL",
                        [],
                    )?;
                }
                let claimed = transaction.execute(
                    "UPDATE queue SET batch_id = ?1 WHERE id IN
                       (SELECT id FROM queue NOT INDEXED WHERE batch_id IS NULL ORDER BY id LIMIT ?2)",
                    params![id.to_string(), max_records as i64],
                )?;
                if claimed == 0 {
                    return Ok(None);
                }
                id
            }
        };
        let records = {
            let mut query = transaction.prepare_cached(
                "SELECT purpose, clause, clause_version, clause_sha256, collected_at, fields
                 FROM queue WHERE batch_id = ?1 ORDER BY id",
            )?;
            query
                .query_map(params![id.to_string()], |row| {
                    Ok(QueuedRecord {
                        purpose: row.get(0)?,
                        clause: row.get(1)?,
                        clause_version: row.get(2)?,
                        clause_sha256: row.get(3)?,
                        collected_at: row.get(4)?,
                        fields_json: row.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?
        };
        transaction.commit()?;
        Ok(Some(Batch { id, records }))
    }

    /// The batch is done with (delivered, or dropped as unsendable): its
    /// records leave the queue and the audit trail says why, atomically.
    pub fn complete_batch(&self, id: Uuid, event: &str, detail: &str) -> Result<u64, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let deleted = transaction.execute(
            "DELETE FROM queue WHERE batch_id = ?1",
            params![id.to_string()],
        )? as u64;
        insert_audit(&transaction, event, Some(id), deleted, detail)?;
        transaction.commit()?;
        Ok(deleted)
    }

    /// Records waiting, all purposes.
    pub fn depth(&self) -> Result<u64, StoreError> {
        let connection = self.lock();
        let count: i64 =
            connection.query_row("SELECT COUNT(*) FROM queue", [], |row| row.get(0))?;
        Ok(count as u64)
    }

    /// Appends one line to the audit trail.
    pub fn audit(
        &self,
        event: &str,
        batch_id: Option<Uuid>,
        records: u64,
        detail: &str,
    ) -> Result<(), StoreError> {
        insert_audit(&self.lock(), event, batch_id, records, detail)
    }

    /// The newest `limit` audit lines, oldest first.
    pub fn recent_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let connection = self.lock();
        let mut query = connection.prepare(
            "SELECT at, event, batch_id, records, detail FROM
               (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
        )?;
        let entries = query
            .query_map(params![limit as i64], |row| {
                Ok(AuditEntry {
                    at: row.get(0)?,
                    event: row.get(1)?,
                    batch_id: row.get(2)?,
                    records: row.get::<_, i64>(3)? as u64,
                    detail: row.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(entries)
    }
}

/// The distinct purposes in the queue, by hopping along the purpose index
/// (one lookup per purpose, not a walk over every queued record).
fn queued_purposes(connection: &Connection) -> Result<Vec<String>, StoreError> {
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

fn insert_audit(
    connection: &Connection,
    event: &str,
    batch_id: Option<Uuid>,
    records: u64,
    detail: &str,
) -> Result<(), StoreError> {
    connection.execute(
        "INSERT INTO audit (at, event, batch_id, records, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            rfc3339(SystemTime::now()),
            event,
            batch_id.map(|id| id.to_string()),
            records as i64,
            detail
        ],
    )?;
    Ok(())
}

/// Creates `state_dir` (mode 0700) if missing, and proves it is usable.
fn prepare_state_dir(state_dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    let wrap = |source| StoreError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(wrap)?;
    // Listing proves we can read it; SQLite will prove we can write it.
    std::fs::read_dir(state_dir).map_err(wrap)?;
    Ok(())
}

#[cfg(test)]
mod tests;
