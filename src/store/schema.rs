//! The database schema and its migrations, keyed by `PRAGMA user_version`.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Each entry migrates from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: queue, meta, audit.
    "CREATE TABLE meta (
         key   TEXT PRIMARY KEY,
         value TEXT NOT NULL
     );
     CREATE TABLE queue (
         id             INTEGER PRIMARY KEY AUTOINCREMENT,
         purpose        TEXT NOT NULL,
         clause         TEXT NOT NULL,
         clause_version INTEGER NOT NULL,
         clause_sha256  TEXT NOT NULL,
         collected_at   TEXT NOT NULL,
         fields         TEXT NOT NULL,
         batch_id       TEXT
     );
     -- Partial: only claimed rows are indexed, so claiming the oldest
     -- unclaimed rows walks the rowid order instead of sorting a backlog.
     CREATE INDEX queue_claimed ON queue (batch_id) WHERE batch_id IS NOT NULL;
     CREATE INDEX queue_purpose ON queue (purpose);
     CREATE TABLE audit (
         id       INTEGER PRIMARY KEY AUTOINCREMENT,
         at       TEXT NOT NULL,
         event    TEXT NOT NULL,
         batch_id TEXT,
         records  INTEGER NOT NULL,
         detail   TEXT NOT NULL
     );",
    // 1 → 2: the open KSN window's sketch registers (only those that are
    // not zero; its counters live in `meta`).
    "CREATE TABLE ksn_register (
         sketch INTEGER NOT NULL,
         idx    INTEGER NOT NULL,
         value  INTEGER NOT NULL,
         PRIMARY KEY (sketch, idx)
     ) WITHOUT ROWID;",
    // 2 → 3: records that cannot be sent, each kept as it was stored, with
    // why (no constraints: a corrupt row must still fit).
    "CREATE TABLE dead_letter (
         id           INTEGER PRIMARY KEY AUTOINCREMENT,
         at           TEXT,
         purpose      TEXT,
         clause       TEXT,
         collected_at TEXT,
         fields,
         status       INTEGER,
         reason       TEXT
     );",
    // 3 → 4: each batch's body as first sent (a retry sends the same
    // bytes; `history --show` prints them), kept for the audit retention.
    "CREATE TABLE sent_body (
         batch_id TEXT PRIMARY KEY,
         at       TEXT NOT NULL,
         records  INTEGER NOT NULL,
         sha256   TEXT NOT NULL,
         body     BLOB NOT NULL
     ) WITHOUT ROWID;",
    // 4 → 5: the bounds. Each queued record's size (what `max_queue_bytes`
    // and `batch_max_bytes` count; rows from before are counted as they
    // are), records dropped to keep the bounds (per purpose and reason;
    // `unreported` goes out in the next batch's envelope), and which drops
    // a kept body reported.
    "ALTER TABLE queue ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
     UPDATE queue SET size = length(CAST(fields AS BLOB)) + length(purpose) + length(clause) + 100;
     CREATE TABLE dropped (
         purpose    TEXT NOT NULL,
         reason     TEXT NOT NULL,
         total      INTEGER NOT NULL,
         unreported INTEGER NOT NULL,
         PRIMARY KEY (purpose, reason)
     ) WITHOUT ROWID;
     ALTER TABLE sent_body ADD COLUMN drops TEXT;",
    // 5 → 6: the consent receipt log (append-only; `seq` keeps the order).
    "CREATE TABLE consent_receipt (
         seq    INTEGER PRIMARY KEY AUTOINCREMENT,
         id     TEXT NOT NULL UNIQUE,
         at     TEXT NOT NULL,
         event  TEXT,
         clause TEXT,
         body   TEXT NOT NULL
     );",
    // 6 → 7: typed facts beside an audit line's words (an upload's
    // purposes and bytes, a purge's purposes), for `history` filters.
    "ALTER TABLE audit ADD COLUMN facts TEXT;",
    // 7 → 8: deletion requests made by withdrawals, kept until a receiver
    // acknowledges them (never evicted, never purged).
    "CREATE TABLE deletion_request (
         id      TEXT PRIMARY KEY,
         at      TEXT NOT NULL,
         body    TEXT NOT NULL,
         sent_at TEXT
     ) WITHOUT ROWID;",
    // 8 → 9: the batch in flight as ranges of rowids (`claim`), instead of
    // a `batch_id` written into every record it holds (and indexed).
    "CREATE TABLE claim (
         batch_id TEXT NOT NULL,
         first    INTEGER NOT NULL,
         last     INTEGER NOT NULL,
         PRIMARY KEY (batch_id, first)
     ) WITHOUT ROWID;
     INSERT INTO claim (batch_id, first, last)
       SELECT batch_id, MIN(id), MAX(id) FROM
         (SELECT id, batch_id, id - ROW_NUMBER() OVER (PARTITION BY batch_id ORDER BY id) AS run
          FROM queue WHERE batch_id IS NOT NULL)
       GROUP BY batch_id, run;
     DROP INDEX queue_claimed;
     ALTER TABLE queue DROP COLUMN batch_id;",
    // 9 → 10: segments (`segment`): a queue row holds the records of one
    // purpose and clause that arrived together, one JSON line each
    // (`{"collected_at":…,"fields":…}`), with their count; `collected_at`
    // is the oldest of them. A row from before becomes a segment of one
    // (its fields copied as they are: unreadable ones stay unreadable and
    // are dead-lettered at the claim). A claim may hold the first `head`
    // records of its last segment (`head_bytes`: their sizes added up).
    "ALTER TABLE queue ADD COLUMN records INTEGER NOT NULL DEFAULT 1;
     UPDATE queue SET fields = '{\"collected_at\":' || json_quote(collected_at) || ',\"fields\":' || fields || '}';
     ALTER TABLE queue RENAME COLUMN fields TO lines;
     ALTER TABLE claim ADD COLUMN head INTEGER;
     ALTER TABLE claim ADD COLUMN head_bytes INTEGER;",
    // 10 → 11: a segment's CRC-32 of its lines, as written (absent: read
    // every line, as for the rows from before segments).
    "ALTER TABLE queue ADD COLUMN crc INTEGER;",
];

/// The schema version this build writes.
pub(super) const SUPPORTED: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    // WAL keeps readers (the CLI) from blocking the daemon; FULL sync makes
    // a committed record survive power loss, not only a killed process.
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(open_error)?;
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(open_error)?;
    // Two processes opening a new state directory at once (a daemon and a
    // `flush`) must not both create the schema: the migration runs under
    // the write lock, and the version is read again once it is held.
    connection
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(open_error)?;
    let migrated = apply(connection, path);
    let end = if migrated.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = connection.execute_batch(end).map_err(open_error);
    migrated.and(ended)
}

/// The migrations this database still needs, inside the caller's
/// transaction.
fn apply(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_error)?;
    let supported = SUPPORTED;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        connection
            .execute_batch(&format!(
                "{migration}; PRAGMA user_version = {};",
                index + 1
            ))
            .map_err(open_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_claimed_before_version_9_stays_claimed_as_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let connection = Connection::open(&path).unwrap();
        for migration in &MIGRATIONS[..8] {
            connection.execute_batch(migration).unwrap();
        }
        connection.execute_batch("PRAGMA user_version = 8").unwrap();
        // Rows 1, 2 and 4 in flight as batch X; 3 and 5 waiting.
        for (n, batch) in [
            (1, Some("X")),
            (2, Some("X")),
            (3, None),
            (4, Some("X")),
            (5, None),
        ] {
            connection
                .execute(
                    "INSERT INTO queue (id, purpose, clause, clause_version, clause_sha256, collected_at, fields, batch_id, size)
                     VALUES (?1, 'p', 'eula', 1, '', '', '{}', ?2, 2)",
                    rusqlite::params![n, batch],
                )
                .unwrap();
        }
        migrate(&connection, &path).unwrap();
        let ranges: Vec<(String, i64, i64)> = connection
            .prepare("SELECT batch_id, first, last FROM claim ORDER BY first")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ranges, [("X".into(), 1, 2), ("X".into(), 4, 4)]);
        let columns: Vec<String> = connection
            .prepare("SELECT name FROM pragma_table_info('queue')")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!columns.contains(&"batch_id".to_owned()), "{columns:?}");
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SUPPORTED);
    }

    #[test]
    fn rows_from_before_segments_become_segments_of_one_and_stay_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let connection = Connection::open(&path).unwrap();
        for migration in &MIGRATIONS[..9] {
            connection.execute_batch(migration).unwrap();
        }
        connection.execute_batch("PRAGMA user_version = 9").unwrap();
        for (n, fields) in [(1, r#"{"n":1}"#), (2, r#"{"n":2"#), (3, r#"{"n":3}"#)] {
            connection
                .execute(
                    "INSERT INTO queue (id, purpose, clause, clause_version, clause_sha256, collected_at, fields, size)
                     VALUES (?1, 'p', 'eula', 1, '', '2026-01-01T00:00:00Z', ?2, 2)",
                    rusqlite::params![n, fields],
                )
                .unwrap();
        }
        connection
            .execute(
                "INSERT INTO claim (batch_id, first, last) VALUES ('X', 1, 1)",
                [],
            )
            .unwrap();
        migrate(&connection, &path).unwrap();
        let lines: Vec<(String, i64)> = connection
            .prepare("SELECT lines, records FROM queue ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let line = super::super::segment::Line::parse(&lines[0].0).unwrap();
        assert_eq!(
            (&*line.collected_at, line.fields.get(), lines[0].1),
            ("2026-01-01T00:00:00Z", r#"{"n":1}"#, 1)
        );
        assert!(
            super::super::segment::Line::parse(&lines[1].0).is_err(),
            "still unreadable"
        );
        let head: Option<i64> = connection
            .query_row("SELECT head FROM claim WHERE batch_id = 'X'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(head, None, "still claimed whole");
    }
}
