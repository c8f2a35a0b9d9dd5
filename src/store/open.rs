//! Opening the database safely: one opener at a time, a health check, and
//! quarantine instead of silent loss.
//!
//! Every process that uses a `state_dir` holds a lock on its `store.lock`
//! for as long as its connection is open: shared while it works, exclusive
//! while it opens. Only an opener that gets the lock exclusively (nobody
//! else has the database open) checks the database, and moves it aside to
//! `quarantine/` when it fails the check:
//!
//! - the file is empty (or gone) where a store existed before (the
//!   `store.created` marker says so);
//! - SQLite calls it malformed or not a database (`PRAGMA quick_check`);
//! - its schema is newer than this build understands.
//!
//! A quarantined file is never deleted. The fresh store that replaces it
//! keeps the installation id, hash key and last activation when the old
//! file still yields them, takes back every queued record SQLite can still read from it
//! (`recover`), and records what happened (in `meta` and the audit trail) so that
//! `status` and the log can say so, with how many records the file held.
//!
//! Two processes opening a new `state_dir` at once are serialised by the
//! same lock, so the schema is created once.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::{DATABASE_FILE, StoreError, queue, recover, schema};
use crate::clock::rfc3339;

/// The lock file every user of a `state_dir` holds.
const LOCK_FILE: &str = "store.lock";
/// Written once a store has been created here: an empty or missing
/// database afterwards is a loss to report, not a first start.
const CREATED_MARKER: &str = "store.created";
/// Where failed databases are moved.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The `meta` key holding the last [`Quarantine`] as JSON.
pub const QUARANTINE_KEY: &str = "last_quarantine";

/// A database that failed its check at open, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub at: String,
    /// What was wrong, in words.
    pub reason: String,
    /// Where the failed file now is (`None`: there was no file to move).
    pub moved_to: Option<PathBuf>,
    /// Queued records the failed file still held, when it could be read.
    pub records: Option<u64>,
    /// Of those, how many were readable and copied into the fresh store,
    /// to be sent as if nothing had happened (`recover`).
    #[serde(default)]
    pub recovered: Option<u64>,
}

impl std::fmt::Display for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", self.at, self.reason)?;
        match &self.moved_to {
            Some(path) => write!(f, "; moved to {}", path.display())?,
            None => write!(f, "; there was no file to keep")?,
        }
        match self.records {
            Some(n) => write!(f, "; it held {n} queued records")?,
            None => write!(f, "; its queued records could not be counted")?,
        }
        match self.recovered {
            Some(n) => write!(f, "; {n} were readable and are queued again"),
            None => Ok(()),
        }
    }
}

/// An open database and the lock that keeps it from being moved aside
/// while in use. Drop them together.
pub(super) struct Opened {
    pub connection: Connection,
    pub lock: File,
    /// Set when this open quarantined a failed database.
    pub quarantine: Option<Quarantine>,
}

/// Opens the database in `state_dir` (which must exist), checking and
/// quarantining it first when no other process has it open.
pub(super) fn open(state_dir: &Path) -> Result<Opened, StoreError> {
    let path = state_dir.join(DATABASE_FILE);
    let lock_error = |source| StoreError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    };
    let lock = lock_file(state_dir).map_err(lock_error)?;
    let alone = match lock.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => {
            // Someone has it open: wait while another opener finishes,
            // then use it as it is.
            lock.lock_shared().map_err(lock_error)?;
            false
        }
        Err(std::fs::TryLockError::Error(err)) => return Err(lock_error(err)),
    };
    let moved = if alone {
        inspect(state_dir, &path)?
    } else {
        None
    };
    let moved = moved
        .map(|reason| move_aside(state_dir, &path, reason))
        .transpose()?;
    let connection = migrated(&path)?;
    // The database and its companions are this user's alone, whatever the
    // umask made of them.
    for suffix in ["", "-wal", "-shm"] {
        let file = state_dir.join(format!("{DATABASE_FILE}{suffix}"));
        crate::perms::restrict_file(&file, 0o600).map_err(|source| StoreError::StateDir {
            path: file.clone(),
            source,
        })?;
    }
    let quarantine = match moved {
        Some((mut event, salvage)) => {
            if let Some(moved_to) = &event.moved_to {
                match recover::recover(moved_to, &connection) {
                    Ok(recovered) => event.recovered = Some(recovered.records),
                    Err(why) => {
                        tracing::error!(file = %moved_to.display(), "no queued record of the quarantined database could be recovered: {why}")
                    }
                }
            }
            record(&connection, &event, salvage)?;
            tracing::error!(quarantine = %event, "the state database failed its check; a fresh one was started");
            Some(event)
        }
        None => None,
    };
    if alone {
        mark_created(state_dir);
        // Let others in while this process works. (Unlocking first: how a
        // lock converts in place is not portable. Whoever slips in between
        // finds a healthy database and leaves it be.)
        lock.unlock().map_err(lock_error)?;
        lock.lock_shared().map_err(lock_error)?;
    }
    Ok(Opened {
        connection,
        lock,
        quarantine,
    })
}

/// The lock file of `state_dir`, opened (not locked).
fn lock_file(state_dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join(LOCK_FILE))
}

/// Opens the database in `state_dir` for reading only (SQLite refuses any
/// write through it), once another connection has checked and migrated
/// it; holds the shared lock as [`open`] does.
pub(super) fn read_only(state_dir: &Path) -> Result<Opened, StoreError> {
    let lock = lock_file(state_dir).and_then(|lock| lock.lock_shared().map(|()| lock));
    let lock = lock.map_err(|source| StoreError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let path = state_dir.join(DATABASE_FILE);
    let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.busy_timeout(super::BUSY_TIMEOUT).map(|()| c))
        .map_err(|source| StoreError::Open { path, source })?;
    Ok(Opened {
        connection,
        lock,
        quarantine: None,
    })
}

/// Opens and migrates the database at `path`.
fn migrated(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    // Switching a new database to WAL needs a moment alone with it, and
    // SQLite answers "busy" at once instead of waiting when another process
    // holds it: try again.
    let mut attempt = 0;
    loop {
        let connection = Connection::open(path).map_err(open_error)?;
        connection
            .busy_timeout(super::BUSY_TIMEOUT)
            .map_err(open_error)?;
        match schema::migrate(&connection, path) {
            Ok(()) => {
                keep_prepared(&connection).map_err(open_error)?;
                return Ok(connection);
            }
            Err(err) if err.is_busy() && attempt < OPEN_ATTEMPTS => {
                attempt += 1;
                drop(connection);
                std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Statements a store connection keeps prepared: more than the store's
/// `prepare_cached` statements (rusqlite's default keeps 16, and the
/// writer would compile the others again each time they come round).
pub(super) const STATEMENT_CACHE: usize = 64;

/// Keeps `connection`'s statements prepared once: a cache of
/// [`STATEMENT_CACHE`], and SQLite's query planner stability guarantee.
/// Without it, this SQLite (built with STAT4) compiles a statement again
/// each time one of its parameters is bound to a new value, in case the
/// value calls for another plan: the claim's and the removal's joins of
/// `claim` to `queue` were compiled again on every call (2 % of the
/// daemon's CPU under load). The store has no statistics for such plans
/// to use (it never runs ANALYZE), so none is lost.
pub(super) fn keep_prepared(connection: &Connection) -> rusqlite::Result<()> {
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    connection
        .set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map(|_| ())
}

/// Tries to open a database another process is setting up, before giving
/// up (about 2 s in all).
const OPEN_ATTEMPTS: u64 = 14;

/// What is wrong with the database at `path`, if anything. A database
/// that cannot be opened or read for a reason of this process's (the
/// directory not writable, no memory, no file descriptor left) is an
/// error, not damage: moving a healthy file aside would hide its records.
fn inspect(state_dir: &Path, path: &Path) -> Result<Option<String>, StoreError> {
    let existed = state_dir.join(CREATED_MARKER).exists();
    match std::fs::metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(existed.then(|| "the state database was missing".to_owned()));
        }
        Err(source) => {
            return Err(StoreError::StateDir {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(meta) if meta.len() == 0 => {
            return Ok(existed.then(|| "the state database was empty (0 bytes)".to_owned()));
        }
        Ok(_) => {}
    }
    // Damage, or this process's trouble (returned as the error).
    let damage = |what: &str, err: rusqlite::Error| {
        if is_damage(&err) {
            Ok(Some(format!("the state database {what}: {err}")))
        } else {
            Err(StoreError::Unusable {
                path: path.to_path_buf(),
                source: err,
            })
        }
    };
    let connection = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE) {
        Ok(connection) => connection,
        Err(err) => return damage("cannot be opened", err),
    };
    let version: i64 = match connection.query_row("PRAGMA user_version", [], |row| row.get(0)) {
        Ok(version) => version,
        Err(err) => return damage("is unreadable", err),
    };
    if version > schema::SUPPORTED {
        return Ok(Some(format!(
            "the state database has schema version {version}, newer than this build understands ({}); a newer consentry wrote it",
            schema::SUPPORTED
        )));
    }
    if version == 0 && existed {
        return Ok(Some("the state database had lost its tables".to_owned()));
    }
    let problems: Result<Vec<String>, _> =
        connection
            .prepare("PRAGMA quick_check(5)")
            .and_then(|mut check| {
                check
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect()
            });
    match problems {
        Ok(problems) if problems == ["ok"] => Ok(None),
        Ok(problems) => Ok(Some(format!(
            "the state database is damaged: {}",
            problems.join("; ")
        ))),
        Err(err) => damage("is damaged", err),
    }
}

/// Whether SQLite's `err` says something about the file (moving it aside
/// helps) rather than about this process (it would not).
fn is_damage(err: &rusqlite::Error) -> bool {
    !matches!(
        err.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::PermissionDenied
                | rusqlite::ErrorCode::OutOfMemory
                | rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
        )
    )
}

/// Moves the failed database (and its WAL and shared-memory files) into
/// `quarantine/`, and reads what it can from the moved copy.
fn move_aside(
    state_dir: &Path,
    path: &Path,
    reason: String,
) -> Result<(Quarantine, Salvage), StoreError> {
    let at = rfc3339(SystemTime::now());
    if !path.exists() {
        let event = Quarantine {
            at,
            reason,
            moved_to: None,
            records: None,
            recovered: None,
        };
        return Ok((event, Salvage::default()));
    }
    let dir = state_dir.join(QUARANTINE_DIR);
    let io_error = |source| StoreError::StateDir {
        path: dir.clone(),
        source,
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error)?;
    }
    let stamp = at.replace([':', '-'], "");
    let mut target = dir.join(format!("{DATABASE_FILE}.{stamp}"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = dir.join(format!("{DATABASE_FILE}.{stamp}.{n}"));
    }
    // The WAL goes first and beside its database under the matching name,
    // so that the moved copy still reads as one database.
    for suffix in ["-wal", "-shm"] {
        let side = path.with_file_name(format!("{DATABASE_FILE}{suffix}"));
        if side.exists() {
            let mut to = target.clone().into_os_string();
            to.push(suffix);
            std::fs::rename(&side, to).map_err(io_error)?;
        }
    }
    std::fs::rename(path, &target).map_err(io_error)?;
    let salvage = salvage(&target).unwrap_or_default();
    let event = Quarantine {
        at,
        reason,
        moved_to: Some(target),
        records: salvage.records,
        recovered: None,
    };
    Ok((event, salvage))
}

/// What a quarantined file still yields.
#[derive(Debug, Default)]
struct Salvage {
    records: Option<u64>,
    meta: Vec<(String, String)>,
}

/// Counts the queued records of a quarantined file and reads the identity
/// worth keeping (installation id, hash key, how the product was last
/// activated, and the erasure generations: with the hash key kept, a
/// generation lost would bring back a key a deletion request already
/// named), without changing the file.
fn salvage(path: &Path) -> Option<Salvage> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    // Segments count their records; a file from before them, its rows.
    let segments = connection
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('queue') WHERE name = 'records'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .is_ok_and(|n| n > 0);
    let count = if segments {
        "SELECT SUM(records) FROM queue"
    } else {
        "SELECT COUNT(*) FROM queue"
    };
    let records = connection
        .query_row(count, [], |row| row.get::<_, Option<i64>>(0))
        .ok()
        .map(|n| n.unwrap_or(0) as u64);
    let mut meta = Vec::new();
    for key in ["installation_id", "hash_key", super::activation::KEY] {
        if let Ok(Some(value)) = queue::meta_get(&connection, key) {
            meta.push((key.to_owned(), value));
        }
    }
    meta.extend(erasure_generations(&connection));
    Some(Salvage { records, meta })
}

/// Every `erasure_generation.CLAUSE` entry a file still yields.
fn erasure_generations(connection: &Connection) -> Vec<(String, String)> {
    let pattern = format!("{}%", queue::ERASURE_GENERATION);
    let Ok(mut query) = connection.prepare("SELECT key, value FROM meta WHERE key LIKE ?1") else {
        return Vec::new();
    };
    query
        .query_map([pattern], |row| Ok((row.get(0)?, row.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Writes the quarantine into the fresh store: the salvaged identity, the
/// `meta` entry `status` reads, and an audit line.
fn record(connection: &Connection, event: &Quarantine, salvage: Salvage) -> Result<(), StoreError> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let written = (|| {
        for (key, value) in salvage.meta {
            queue::meta_set(connection, &key, &value)?;
        }
        let json = serde_json::to_string(event).expect("a quarantine serializes");
        queue::meta_set(connection, QUARANTINE_KEY, &json)?;
        queue::insert_audit(connection, "quarantined", None, 0, &event.to_string())
    })();
    connection.execute_batch(if written.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    })?;
    written
}

/// The last quarantine this store recorded, if any.
pub fn last_quarantine(connection: &Connection) -> Result<Option<Quarantine>, StoreError> {
    Ok(queue::meta_get(connection, QUARANTINE_KEY)?
        .and_then(|json| serde_json::from_str(&json).ok()))
}

/// Notes that a store exists here (best effort: without the marker, an
/// emptied database is taken for a first start, as before).
fn mark_created(state_dir: &Path) {
    let marker = state_dir.join(CREATED_MARKER);
    if !marker.exists() {
        let _ = std::fs::write(&marker, format!("{}\n", rfc3339(SystemTime::now())));
    }
}

#[cfg(test)]
mod tests;
