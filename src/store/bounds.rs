//! The store's bounds: how big the queue may grow, how old a record may
//! get, how long the audit trail is kept, and the count of every record
//! dropped to keep them.
//!
//! When the queue is over `max_queue_bytes`, the oldest records of the
//! lowest-priority purposes go first (records claimed by a batch being sent
//! are left alone), down to nine tenths of the bound so that one more
//! record does not mean one more eviction. A record older than
//! `max_record_age` goes at the next housekeeping. Every drop is counted
//! per purpose and reason (`dropped`): the total is shown in `status`, and
//! the count not yet reported goes out in the next batch's envelope.
//! Audit lines, kept bodies and dead letters older than `audit_retention`
//! are deleted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;

use super::StoreError;
use super::queue::insert_audit;
use crate::catalogue::{Catalogue, Priority};
use crate::clock::{HumanDuration, rfc3339};

/// Why records were dropped.
pub const QUEUE_FULL: &str = "queue_full";
pub const TOO_OLD: &str = "too_old";

/// Counts of dropped records: purpose → reason → records.
pub type Drops = BTreeMap<String, BTreeMap<String, u64>>;

/// `[store]` in the agent config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Most bytes of records the queue holds (their sizes added up).
    #[serde(default = "defaults::max_queue_bytes")]
    pub max_queue_bytes: u64,
    /// A queued record older than this is dropped, sent or not.
    #[serde(default = "defaults::max_record_age")]
    pub max_record_age: HumanDuration,
    /// How long audit lines, kept bodies and dead letters are kept.
    #[serde(default = "defaults::audit_retention")]
    pub audit_retention: HumanDuration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_queue_bytes: defaults::max_queue_bytes(),
            max_record_age: defaults::max_record_age(),
            audit_retention: defaults::audit_retention(),
        }
    }
}

/// The least `max_queue_bytes` may be: room for a few batches.
pub const MIN_QUEUE_BYTES: u64 = 1 << 20;

mod defaults {
    use super::{Duration, HumanDuration};
    pub fn max_queue_bytes() -> u64 {
        64 << 20
    }
    pub fn max_record_age() -> HumanDuration {
        HumanDuration(Duration::from_secs(30 * 86_400))
    }
    pub fn audit_retention() -> HumanDuration {
        HumanDuration(Duration::from_secs(90 * 86_400))
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_queue_bytes < MIN_QUEUE_BYTES {
            return Err(format!(
                "[store] max_queue_bytes must be at least {MIN_QUEUE_BYTES} (1 MiB), not {}",
                self.max_queue_bytes
            ));
        }
        Ok(())
    }
}

/// The bounds as the store applies them.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub max_queue_bytes: u64,
    pub max_record_age: Duration,
    pub audit_retention: Duration,
    /// Each purpose's priority; a purpose the catalogue does not know is
    /// dropped first.
    pub priorities: HashMap<String, Priority>,
}

impl Bounds {
    pub fn new(config: &StoreConfig, catalogue: &Catalogue) -> Self {
        Self {
            max_queue_bytes: config.max_queue_bytes,
            max_record_age: config.max_record_age.0,
            audit_retention: config.audit_retention.0,
            priorities: catalogue
                .purposes()
                .map(|p| (p.id.clone(), p.priority))
                .collect(),
        }
    }

    /// No bounds at all (tests, and the CLI's short-lived stores).
    pub fn unbounded() -> Self {
        Self {
            max_queue_bytes: u64::MAX,
            max_record_age: Duration::MAX,
            audit_retention: Duration::MAX,
            priorities: HashMap::new(),
        }
    }

    fn priority(&self, purpose: &str) -> Option<Priority> {
        self.priorities.get(purpose).copied()
    }
}

/// The queue's size in bytes (a full count: call it when the estimate
/// says the bound may be reached).
pub fn queue_bytes(connection: &Connection) -> Result<u64, StoreError> {
    let bytes: i64 =
        connection.query_row("SELECT COALESCE(SUM(size), 0) FROM queue", [], |row| {
            row.get(0)
        })?;
    Ok(bytes as u64)
}

/// What keeping the size bound did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    pub records: u64,
    /// The queue's exact size afterwards.
    pub queue_bytes: u64,
}

/// Brings the queue under `max_queue_bytes` (to nine tenths of it) when it
/// is over, dropping the oldest unclaimed records of the lowest priority
/// first, with their counts and one audit line. `known` is the queue's
/// size when the caller knows it exactly (else it is counted: a full scan).
pub fn enforce_size(
    connection: &Connection,
    bounds: &Bounds,
    known: Option<u64>,
) -> Result<Evicted, StoreError> {
    let mut bytes = match known {
        Some(bytes) => bytes,
        None => queue_bytes(connection)?,
    };
    if bytes <= bounds.max_queue_bytes {
        return Ok(Evicted {
            records: 0,
            queue_bytes: bytes,
        });
    }
    let target = bounds.max_queue_bytes / 10 * 9;
    let mut by_priority: BTreeMap<Option<Priority>, Vec<String>> = BTreeMap::new();
    for purpose in super::queue::queued_purposes(connection)? {
        by_priority
            .entry(bounds.priority(&purpose))
            .or_default()
            .push(purpose);
    }
    let mut evicted = 0;
    // `None` (unknown to the catalogue) sorts before `Low`.
    for purposes in by_priority.values() {
        while bytes > target {
            let (records, freed) = drop_oldest(connection, purposes, bytes - target)?;
            if records == 0 {
                break;
            }
            evicted += records;
            bytes = bytes.saturating_sub(freed);
        }
        if bytes <= target {
            break;
        }
    }
    if evicted > 0 {
        insert_audit(
            connection,
            "dropped",
            None,
            evicted,
            &format!(
                "the queue was over max_queue_bytes ({} bytes): the oldest records of the lowest priority went first",
                bounds.max_queue_bytes
            ),
        )?;
        tracing::warn!(
            records = evicted,
            max_queue_bytes = bounds.max_queue_bytes,
            "queue full: dropped the oldest records of the lowest priority"
        );
    }
    // Exact: what was dropped was counted as it went.
    Ok(Evicted {
        records: evicted,
        queue_bytes: bytes,
    })
}

/// Drops the oldest unclaimed records of `purposes`, about `excess` bytes'
/// worth (at most 10,000 per call), counting them. Returns (records,
/// bytes) dropped.
fn drop_oldest(
    connection: &Connection,
    purposes: &[String],
    excess: u64,
) -> Result<(u64, u64), StoreError> {
    let list = (2..purposes.len() + 2)
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The last row of the oldest run whose sizes add up to `excess`.
    let last: Option<i64> = connection
        .prepare_cached(&format!(
            "SELECT MIN(id) FROM
               (SELECT id, SUM(size) OVER (ORDER BY id) AS running FROM
                  (SELECT id, size FROM queue WHERE batch_id IS NULL AND purpose IN ({list})
                   ORDER BY id LIMIT 10000))
             WHERE running >= ?1"
        ))?
        .query_row(
            rusqlite::params_from_iter(
                std::iter::once(rusqlite::types::Value::Integer(
                    excess.min(i64::MAX as u64) as i64
                ))
                .chain(purposes.iter().map(|p| p.clone().into())),
            ),
            |row| row.get(0),
        )?;
    // Not enough in the first 10,000: take all of those.
    let last = match last {
        Some(last) => last,
        None => connection
            .prepare_cached(&format!(
                "SELECT MAX(id) FROM
                   (SELECT id FROM queue WHERE batch_id IS NULL AND purpose IN ({list})
                    ORDER BY id LIMIT 10000)"
            ))?
            .query_row(
                rusqlite::params_from_iter(
                    std::iter::once(rusqlite::types::Value::Integer(0))
                        .chain(purposes.iter().map(|p| p.clone().into())),
                ),
                |row| row.get::<_, Option<i64>>(0),
            )?
            .unwrap_or(-1),
    };
    if last < 0 {
        return Ok((0, 0));
    }
    let filter = format!("batch_id IS NULL AND id <= ?1 AND purpose IN ({list})");
    let args = || {
        rusqlite::params_from_iter(
            std::iter::once(rusqlite::types::Value::Integer(last))
                .chain(purposes.iter().map(|p| p.clone().into())),
        )
    };
    let mut records = 0;
    let mut bytes = 0;
    {
        let mut counts = connection.prepare_cached(&format!(
            "SELECT purpose, COUNT(*), SUM(size) FROM queue WHERE {filter} GROUP BY purpose"
        ))?;
        let mut rows = counts.query(args())?;
        while let Some(row) = rows.next()? {
            let purpose: String = row.get(0)?;
            let count = row.get::<_, i64>(1)? as u64;
            count_drop(connection, &purpose, QUEUE_FULL, count)?;
            records += count;
            bytes += row.get::<_, i64>(2)? as u64;
        }
    }
    connection
        .prepare_cached(&format!("DELETE FROM queue WHERE {filter}"))?
        .execute(args())?;
    Ok((records, bytes))
}

/// Housekeeping: drops queued records older than `max_record_age`
/// (counted), and audit lines, kept bodies and dead letters older than
/// `audit_retention`. Returns the records dropped from the queue.
pub fn housekeep(
    connection: &Connection,
    bounds: &Bounds,
    now: SystemTime,
) -> Result<u64, StoreError> {
    let mut expired = 0;
    if let Some(cutoff) = now.checked_sub(bounds.max_record_age) {
        let cutoff = rfc3339(cutoff);
        let counts: Vec<(String, u64)> = connection
            .prepare_cached(
                "SELECT purpose, COUNT(*) FROM queue
                 WHERE batch_id IS NULL AND collected_at < ?1 GROUP BY purpose",
            )?
            .query_map(params![cutoff], |row| {
                Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        for (purpose, count) in &counts {
            count_drop(connection, purpose, TOO_OLD, *count)?;
            expired += count;
        }
        if expired > 0 {
            connection.execute(
                "DELETE FROM queue WHERE batch_id IS NULL AND collected_at < ?1",
                params![cutoff],
            )?;
            insert_audit(
                connection,
                "dropped",
                None,
                expired,
                &format!(
                    "older than max_record_age ({})",
                    humantime::format_duration(bounds.max_record_age)
                ),
            )?;
        }
    }
    if let Some(cutoff) = now.checked_sub(bounds.audit_retention) {
        let cutoff = rfc3339(cutoff);
        for table in ["audit", "sent_body", "dead_letter"] {
            connection.execute(
                &format!("DELETE FROM {table} WHERE at < ?1"),
                params![cutoff],
            )?;
        }
    }
    Ok(expired)
}

fn count_drop(
    connection: &Connection,
    purpose: &str,
    reason: &str,
    count: u64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO dropped (purpose, reason, total, unreported) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (purpose, reason) DO UPDATE
               SET total = total + excluded.total, unreported = unreported + excluded.unreported",
        )?
        .execute(params![purpose, reason, count as i64])?;
    Ok(())
}

/// Every drop so far (what `status` shows), or only the counts not yet
/// reported, of purposes `include` accepts (what the next envelope
/// carries: never a count about a purpose that may not send).
pub fn drops(
    connection: &Connection,
    unreported: bool,
    include: impl Fn(&str) -> bool,
) -> Result<Drops, StoreError> {
    let column = if unreported { "unreported" } else { "total" };
    let mut query = connection.prepare_cached(&format!(
        "SELECT purpose, reason, {column} FROM dropped WHERE {column} > 0"
    ))?;
    let mut rows = query.query([])?;
    let mut drops = Drops::new();
    while let Some(row) = rows.next()? {
        let purpose: String = row.get(0)?;
        if include(&purpose) {
            drops
                .entry(purpose)
                .or_default()
                .insert(row.get(1)?, row.get::<_, i64>(2)? as u64);
        }
    }
    Ok(drops)
}

/// The receiver has `reported`: they no longer go in envelopes.
pub fn mark_reported(connection: &Connection, reported: &Drops) -> Result<(), StoreError> {
    let mut update = connection.prepare_cached(
        "UPDATE dropped SET unreported = MAX(unreported - ?3, 0) WHERE purpose = ?1 AND reason = ?2",
    )?;
    for (purpose, reasons) in reported {
        for (reason, count) in reasons {
            update.execute(params![purpose, reason, *count as i64])?;
        }
    }
    Ok(())
}

/// The drops that batch `id`'s kept body reported are reported now (its
/// delivery was acknowledged).
pub fn mark_reported_by(connection: &Connection, id: uuid::Uuid) -> Result<(), StoreError> {
    let drops: Option<Option<String>> = connection
        .prepare_cached("SELECT drops FROM sent_body WHERE batch_id = ?1")?
        .query_row(params![id.to_string()], |row| row.get(0))
        .optional()?;
    if let Some(reported) = drops
        .flatten()
        .and_then(|json| serde_json::from_str::<Drops>(&json).ok())
    {
        mark_reported(connection, &reported)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::test_record;
    use crate::store::{BatchLimits, Store, queue};

    /// A store with `n` records of each purpose, oldest first in the order
    /// given, and bounds that rank them.
    fn store(dir: &std::path::Path, purposes: &[(&str, Priority)], n: i64) -> (Store, Bounds) {
        let store = Store::open(dir).unwrap();
        for (purpose, _) in purposes {
            let records: Vec<_> = (0..n).map(|i| test_record(purpose, i)).collect();
            store.enqueue(&records).unwrap();
        }
        let bounds = Bounds {
            priorities: purposes
                .iter()
                .map(|(p, priority)| ((*p).to_owned(), *priority))
                .collect(),
            ..Bounds::unbounded()
        };
        (store, bounds)
    }

    fn count(store: &Store, purpose: &str) -> i64 {
        store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM queue WHERE purpose = ?1",
                    [purpose],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_of_the_lowest_priority_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut bounds) = store(
            dir.path(),
            &[
                ("high", Priority::High),
                ("low", Priority::Low),
                ("normal", Priority::Normal),
            ],
            100,
        );
        let total = store.read(queue_bytes).unwrap();
        let per_purpose = total / 3;
        // Room for one purpose and a half (less a tenth, the margin): the
        // low one goes, then the oldest of the normal one.
        bounds.max_queue_bytes = per_purpose + per_purpose / 2;
        let evicted = store.write(|c| enforce_size(c, &bounds, None)).unwrap();
        assert!(evicted.queue_bytes <= bounds.max_queue_bytes / 10 * 9);
        assert_eq!(count(&store, "low"), 0);
        assert_eq!(count(&store, "high"), 100);
        let normal = count(&store, "normal");
        assert!(0 < normal && normal < 50, "{normal}");
        // The oldest of `normal` went: what is left is its newest.
        let oldest_left: String = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT fields FROM queue WHERE purpose = 'normal' ORDER BY id LIMIT 1",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(oldest_left, format!("{{\"n\":{}}}", 100 - normal));

        let drops = store.read(|c| drops(c, false, |_| true)).unwrap();
        assert_eq!(drops["low"][QUEUE_FULL], 100);
        assert_eq!(drops["normal"][QUEUE_FULL], (100 - normal) as u64);
        assert!(!drops.contains_key("high"));
        assert_eq!(evicted.records, 100 + (100 - normal) as u64);
        let audit = store.recent_audit(5).unwrap();
        assert!(audit.iter().any(|a| a.event == "dropped"), "{audit:?}");
    }

    #[test]
    fn records_being_sent_are_not_dropped_and_unknown_purposes_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut bounds) = store(
            dir.path(),
            &[("claimed", Priority::Low), ("kept", Priority::High)],
            50,
        );
        store.enqueue(&[test_record("retired", 1)]).unwrap();
        bounds.priorities.remove("retired");
        let batch = store.claim_batch(50, &["claimed"]).unwrap().unwrap();
        bounds.max_queue_bytes = store.read(queue_bytes).unwrap() - 1;
        store.write(|c| enforce_size(c, &bounds, None)).unwrap();
        assert_eq!(
            count(&store, "retired"),
            0,
            "unknown to the catalogue: first"
        );
        assert_eq!(count(&store, "claimed"), 50, "the batch in flight is kept");
        assert!(count(&store, "kept") < 50);
        assert_eq!(
            store.claim_batch(50, &["claimed"]).unwrap().unwrap().id,
            batch.id
        );
    }

    #[test]
    fn housekeeping_drops_old_records_and_old_audit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut bounds) = store(dir.path(), &[("a", Priority::Normal)], 3);
        // test_record is collected at 2026-01-01; audit lines are now.
        store.audit("note", None, 0, "old news").unwrap();
        let now = humantime::parse_rfc3339("2026-01-31T00:00:00Z").unwrap();
        bounds.max_record_age = Duration::from_secs(40 * 86_400);
        assert_eq!(store.write(|c| housekeep(c, &bounds, now)).unwrap(), 0);
        bounds.max_record_age = Duration::from_secs(20 * 86_400);
        assert_eq!(store.write(|c| housekeep(c, &bounds, now)).unwrap(), 3);
        let drops = store.read(|c| drops(c, false, |_| true)).unwrap();
        assert_eq!(drops["a"][TOO_OLD], 3);

        bounds.audit_retention = Duration::from_secs(1);
        let later = SystemTime::now() + Duration::from_secs(60);
        store.write(|c| housekeep(c, &bounds, later)).unwrap();
        assert!(store.recent_audit(10).unwrap().is_empty());
    }

    #[test]
    fn drops_are_reported_once_and_only_for_purposes_that_may_send() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(dir.path(), &[], 0);
        store
            .write(|c| {
                count_drop(c, "a", QUEUE_FULL, 5)?;
                count_drop(c, "b", TOO_OLD, 2)
            })
            .unwrap();
        let unreported = store.read(|c| drops(c, true, |p| p == "a")).unwrap();
        assert_eq!(unreported.len(), 1);
        assert_eq!(unreported["a"][QUEUE_FULL], 5);
        store.write(|c| count_drop(c, "a", QUEUE_FULL, 1)).unwrap();
        store.write(|c| mark_reported(c, &unreported)).unwrap();
        let left = store.read(|c| drops(c, true, |_| true)).unwrap();
        assert_eq!(left["a"][QUEUE_FULL], 1, "one more since the report");
        assert_eq!(left["b"][TOO_OLD], 2);
        let total = store.read(|c| drops(c, false, |_| true)).unwrap();
        assert_eq!(total["a"][QUEUE_FULL], 6);
    }

    #[test]
    fn a_batch_stops_at_its_byte_limit_but_takes_at_least_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(dir.path(), &[("a", Priority::Normal)], 10);
        let one = test_record("a", 0).size() as u64;
        let limits = BatchLimits {
            records: 100,
            bytes: one * 3 + one / 2,
        };
        let batch = store
            .write(|c| queue::claim_batch(c, limits, &["a"]))
            .unwrap()
            .unwrap();
        assert_eq!(batch.records.len(), 3);
        store.complete_batch(batch.id, "uploaded", "t").unwrap();
        let tiny = BatchLimits {
            records: 100,
            bytes: 1,
        };
        let batch = store
            .write(|c| queue::claim_batch(c, tiny, &["a"]))
            .unwrap()
            .unwrap();
        assert_eq!(batch.records.len(), 1);
    }
}
