//! The durable store in `state_dir`: the upload queue, the installation id
//! and the audit trail, in one SQLite database (WAL, full sync).
//!
//! The store is the single source of truth for what is waiting to be sent.
//! A record enters only after the catalogue check and the consent gate; it
//! leaves only when the receiver acknowledged its batch with a 2xx, or when
//! the consent that allowed it is gone (purge). The store never decides
//! consent: callers tell it which purposes are still allowed.

pub mod activation;
pub mod bounds;
mod claim;
mod gauges;
pub mod ksn_window;
pub mod ldp_budget;
mod open;
pub mod queue;
pub mod receipts;
mod recover;
mod schema;
pub(crate) mod segment;
pub use segment::{Filling, Segments};
mod trail;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::gate::GatedRecord;
pub use bounds::{Bounds, Drops, StoreConfig};
pub use gauges::Tally;
pub use open::{QUARANTINE_DIR, Quarantine, last_quarantine};
pub use queue::{meta_get, meta_set};
pub use segment::record_size;
pub use writer::{CommitError, Durable, NextBatch, Rekept, Writer, WriterError};

/// File name of the database inside `state_dir`.
pub const DATABASE_FILE: &str = "consentry.sqlite3";

/// How long a writer waits for another process (the CLI's `flush`, say)
/// holding the database before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A gated record as read back from the queue, fields already in wire form.
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

/// Records of one purpose and clause in a batch, as the queue keeps them
/// (`segment`): one JSON line each, `{"collected_at":…,"fields":…}`,
/// joined by `\n`, every line checked when the batch was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub purpose: String,
    pub clause: String,
    pub clause_version: u32,
    pub clause_sha256: String,
    /// How many lines `lines` holds.
    pub records: usize,
    pub lines: String,
}

impl Segment {
    /// Its lines, one per record (as many as `records`: a batch holds no
    /// empty segment).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        segment::lines(&self.lines)
    }
}

/// Records claimed for one upload attempt. The id is the `Idempotency-Key`:
/// a retry of the same batch carries the same id.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: Uuid,
    pub segments: Vec<Segment>,
}

impl Batch {
    /// A batch of `records` (tests and benches), in segments of the
    /// records next to each other that share a purpose and clause.
    pub fn of_records(id: Uuid, records: &[QueuedRecord]) -> Self {
        let mut segments: Vec<Segment> = Vec::new();
        for record in records {
            let joins = segments.last().is_some_and(|s| {
                s.purpose == record.purpose
                    && s.clause == record.clause
                    && s.clause_version == record.clause_version
                    && s.clause_sha256 == record.clause_sha256
            });
            if !joins {
                segments.push(Segment {
                    purpose: record.purpose.clone(),
                    clause: record.clause.clone(),
                    clause_version: record.clause_version,
                    clause_sha256: record.clause_sha256.clone(),
                    records: 0,
                    lines: String::new(),
                });
            }
            let segment = segments.last_mut().expect("one was pushed");
            segment::push_line(
                &mut segment.lines,
                &record.collected_at,
                &record.fields_json,
            );
            segment.records += 1;
        }
        Self { id, segments }
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.records).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its records one by one, each read from its line (the OTLP encoder
    /// and tests; the JSON body is built from the lines as they are).
    pub fn records(&self) -> impl Iterator<Item = Result<QueuedRecord, String>> + '_ {
        self.segments.iter().flat_map(|segment| {
            segment.lines().map(move |line| {
                let line = segment::Line::parse(line)
                    .map_err(|why| format!("a queued record of `{}`: {why}", segment.purpose))?;
                Ok(QueuedRecord {
                    purpose: segment.purpose.clone(),
                    clause: segment.clause.clone(),
                    clause_version: segment.clause_version,
                    clause_sha256: segment.clause_sha256.clone(),
                    collected_at: line.collected_at.into_owned(),
                    fields_json: line.fields.get().to_owned(),
                })
            })
        })
    }

    /// Its records, each read (tests: a line that cannot be read panics).
    #[cfg(test)]
    pub(crate) fn record_vec(&self) -> Vec<QueuedRecord> {
        self.records().map(|r| r.unwrap()).collect()
    }

    /// Records per purpose.
    pub fn purposes(&self) -> std::collections::BTreeMap<String, u64> {
        let mut purposes = std::collections::BTreeMap::new();
        for segment in &self.segments {
            *purposes.entry(segment.purpose.clone()).or_default() += segment.records as u64;
        }
        purposes
    }
}

/// A batch's request body as first sent, kept for `history --show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentBody {
    pub batch_id: String,
    pub at: String,
    pub records: u64,
    /// SHA-256 (hex) of `bytes` (of the document inside them for bodies
    /// kept before 2026-12-05).
    pub sha256: String,
    /// The bytes sent, compressed (the compression told by their magic
    /// number: `upload::compression`).
    pub bytes: Vec<u8>,
    /// The drop counts its envelope reports (marked reported on a 2xx).
    pub drops: Drops,
}

/// How much one batch may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub records: usize,
    /// Sum of the records' sizes (uncompressed, roughly as on the wire).
    pub bytes: u64,
}

impl BatchLimits {
    /// At most `records`, of any size.
    pub fn records(records: usize) -> Self {
        Self {
            records,
            bytes: u64::MAX,
        }
    }
}

/// One line of the audit trail the user can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: String,
    pub event: String,
    pub batch_id: Option<String>,
    pub records: u64,
    pub detail: String,
    /// Typed facts beside the words (an upload's purposes and bytes, a
    /// purge's purposes), when the line has them.
    pub facts: Option<serde_json::Value>,
}

/// Trouble with the store itself (disk full, I/O error, damage), as
/// `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub at: String,
    pub message: String,
}

/// What `status` shows about the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// The last database that failed its check and was moved aside.
    pub quarantine: Option<Quarantine>,
    /// Records in the dead-letter table.
    pub dead_letters: u64,
    /// Why the newest of them is there.
    pub dead_letter_reason: Option<String>,
    /// The writer's trouble right now, if any (the daemon only).
    pub fault: Option<Fault>,
    /// The queue's size (its records' sizes added up).
    #[serde(default)]
    pub queue_bytes: u64,
    /// The bound on it, when known (the daemon's).
    #[serde(default)]
    pub max_queue_bytes: Option<u64>,
    /// Records dropped to keep the bounds, ever: purpose → reason → count.
    #[serde(default)]
    pub dropped: Drops,
    /// Records queued now, per purpose.
    #[serde(default)]
    pub queued: std::collections::BTreeMap<String, u64>,
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
    #[error(
        "cannot look for the state database {path}: {source}; run this as the agent's user (or root), or give this user access to `state_dir`"
    )]
    Lookup {
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
    #[error(
        "cannot open the state database {path}: {source}; check that the state directory and its files are writable by this user"
    )]
    Unusable {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Perms(#[from] crate::perms::PermsError),
    #[error("cannot start the store writer thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("state database: stored {what} is unreadable: {message}")]
    Corrupt { what: &'static str, message: String },
    #[error(
        "state database {path} has schema version {found}, newer than this build understands ({supported}); upgrade consentry"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

/// Whether the database exists in `state_dir`, for the verbs that read the
/// store but never create one (`history`, `preview`, `status`, …). Only
/// "not found" is `false`: `Path::exists` also says `false` when this user
/// may not enter the directory, and a verb would then print "nothing
/// recorded yet" where the truth is "permission denied". Any other error
/// names the path and keeps its `io::Error`, so the CLI exits 4 for a
/// refusal.
pub fn database_exists(state_dir: &Path) -> Result<bool, StoreError> {
    let path = state_dir.join(DATABASE_FILE);
    match std::fs::metadata(&path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StoreError::Lookup { path, source }),
    }
}

/// The queue and its companions. Cheap to share behind an `Arc`.
pub struct Store {
    connection: Mutex<Connection>,
    /// Held (shared) while the connection is open: see `open`.
    _lock: std::fs::File,
    quarantine: Option<Quarantine>,
}

impl Store {
    /// Opens (creating if needed) the database in `state_dir`. The directory
    /// is created private to this user when missing.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let opened = open_connection(state_dir)?;
        Ok(Self {
            connection: Mutex::new(opened.connection),
            _lock: opened.lock,
            quarantine: opened.quarantine,
        })
    }

    /// Opens the database in `state_dir` for reading only, once a writer
    /// (`Writer::spawn`) has opened, checked and migrated it: the daemon's
    /// reader, through which no write can go.
    pub fn open_reader(state_dir: &Path) -> Result<Self, StoreError> {
        let opened = open::read_only(state_dir)?;
        Ok(Self {
            connection: Mutex::new(opened.connection),
            _lock: opened.lock,
            quarantine: None,
        })
    }

    /// The quarantine this open performed, if the database failed its check.
    pub fn quarantined_now(&self) -> Option<&Quarantine> {
        self.quarantine.as_ref()
    }

    /// The last quarantine this store recorded (this open's or an earlier
    /// one's).
    pub fn last_quarantine(&self) -> Result<Option<Quarantine>, StoreError> {
        last_quarantine(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` in one transaction of its own: the store's own named
    /// operations ([`Store::enqueue`], [`Store::purge_blocked`], …) and
    /// tests. Not public: the CLI reads through [`Store::read`] and writes,
    /// when no daemon runs, through the writer's named operations.
    pub(crate) fn write<T>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = op(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    /// The installation id, created on first use and never changed.
    pub fn installation_id(&self) -> Result<Uuid, StoreError> {
        self.write(queue::installation_id)
    }

    /// Appends records in one transaction: all are durable, or none.
    pub fn enqueue(&self, records: &[GatedRecord]) -> Result<(), StoreError> {
        self.write(|c| queue::enqueue(c, records).map(drop))
    }

    /// Deletes queued records whose purpose `is_allowed` refuses, returning
    /// how many went, and records the purge in the audit trail in the same
    /// transaction.
    pub fn purge_blocked(&self, keep: impl Fn(&str) -> bool, why: &str) -> Result<u64, StoreError> {
        self.write(|c| queue::purge_blocked(c, keep, why))
    }

    /// See [`queue::claim_batch`].
    pub fn claim_batch(
        &self,
        max_records: usize,
        sendable: &[&str],
    ) -> Result<Option<Batch>, StoreError> {
        self.write(|c| queue::claim_batch(c, BatchLimits::records(max_records), sendable))
    }

    /// The batch is done with: its records leave the queue and the audit
    /// trail says why, atomically.
    pub fn complete_batch(&self, id: Uuid, event: &str, detail: &str) -> Result<u64, StoreError> {
        self.write(|c| queue::complete_batch(c, id, event, detail))
    }

    /// Records waiting, all purposes.
    pub fn depth(&self) -> Result<u64, StoreError> {
        queue::depth(&self.lock())
    }

    /// Appends one line to the audit trail.
    pub fn audit(
        &self,
        event: &str,
        batch_id: Option<Uuid>,
        records: u64,
        detail: &str,
    ) -> Result<(), StoreError> {
        queue::insert_audit(&self.lock(), event, batch_id, records, detail)
    }

    /// The newest `limit` audit lines, oldest first.
    pub fn recent_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        queue::recent_audit(&self.lock(), limit)
    }

    /// What `status` shows about the store in `state_dir` when no daemon
    /// runs: read only, never creating, checking or moving anything. A
    /// database that cannot be read is reported as the fault.
    pub fn peek_health(state_dir: &Path) -> StoreHealth {
        let path = state_dir.join(DATABASE_FILE);
        let read = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(StoreError::from)
            .and_then(|connection| health(&connection));
        read.unwrap_or_else(|err| StoreHealth {
            fault: Some(Fault {
                at: crate::clock::rfc3339(std::time::SystemTime::now()),
                message: format!(
                    "{}: {err} (the next start checks it, and moves it aside if it is damaged)",
                    path.display()
                ),
            }),
            ..StoreHealth::default()
        })
    }

    /// What `status` shows about this store.
    pub fn health(&self) -> Result<StoreHealth, StoreError> {
        health(&self.lock())
    }

    /// Runs `read` on this store's connection (in the daemon a read-only
    /// one, [`Store::open_reader`]: its writes go through the writer).
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        read(&self.lock())
    }
}

/// Opens the database in `state_dir`, creating the directory (0700),
/// checking the database (see `open`) and migrating the schema as needed.
fn open_connection(state_dir: &Path) -> Result<open::Opened, StoreError> {
    prepare_state_dir(state_dir)?;
    open::open(state_dir)
}

/// Whether SQLite's result `code` is trouble with the store itself (a full
/// disk, an I/O error, damage, a read-only or unopenable database).
pub(crate) fn is_fault_code(code: Option<rusqlite::ErrorCode>) -> bool {
    matches!(
        code,
        Some(
            rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DatabaseCorrupt
                | rusqlite::ErrorCode::NotADatabase
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::CannotOpen
        )
    )
}

impl StoreError {
    /// Whether this is trouble with the store itself rather than with one
    /// request: a full disk, an I/O error, a damaged or read-only database.
    pub fn is_fault(&self) -> bool {
        let source = match self {
            StoreError::Open { source, .. }
            | StoreError::Unusable { source, .. }
            | StoreError::Sql(source) => source,
            StoreError::StateDir { .. } | StoreError::Lookup { .. } | StoreError::Perms(_) => {
                return true;
            }
            _ => return false,
        };
        is_fault_code(source.sqlite_error_code())
    }

    /// Whether the database was busy (locked by another process).
    pub(super) fn is_busy(&self) -> bool {
        let source = match self {
            StoreError::Open { source, .. } | StoreError::Sql(source) => source,
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// Creates `state_dir` (mode 0700) if missing, and proves it is usable.
/// A `state_dir` owned by another user is refused, a loose one tightened
/// (`perms`): the queue and the installation id are nobody else's to read.
fn prepare_state_dir(state_dir: &Path) -> Result<(), StoreError> {
    crate::perms::ensure_dir_logged(state_dir, crate::perms::AgentDir::State)?;
    // Listing proves we can read it; SQLite will prove we can write it.
    std::fs::read_dir(state_dir).map_err(|source| StoreError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// What `status` shows about the store, as stored (the writer adds its
/// live fault).
fn health(connection: &Connection) -> Result<StoreHealth, StoreError> {
    let dead_letters: i64 =
        connection.query_row("SELECT COUNT(*) FROM dead_letter", [], |row| row.get(0))?;
    let dead_letter_reason = connection
        .query_row(
            "SELECT reason FROM dead_letter ORDER BY id DESC LIMIT 1",
            [],
            |row| row.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten();
    Ok(StoreHealth {
        quarantine: last_quarantine(connection)?,
        dead_letters: dead_letters as u64,
        dead_letter_reason,
        fault: None,
        queue_bytes: bounds::queue_bytes(connection)?,
        max_queue_bytes: None,
        dropped: bounds::drops(connection, false, |_| true)?,
        queued: connection
            .prepare("SELECT purpose, SUM(records) FROM queue GROUP BY purpose")?
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
