//! The store's bounds: how big the queue may grow, how old a record may
//! get, how long the audit trail is kept, and the count of every record
//! dropped to keep them.
//!
//! When the queue is over `max_queue_bytes`, the oldest records of the
//! lowest-priority purposes go first (records claimed by a batch being sent
//! are left alone), down to nine tenths of the bound so that one more
//! record does not mean one more eviction. A record older than
//! `max_record_age`, or than its purpose's shorter `retention` (from the
//! catalogue), goes at the next housekeeping. Every drop is counted
//! per purpose and reason (`dropped`): the total is shown in `status`, and
//! the count not yet reported goes out in the next batch's envelope.
//! Audit lines, kept bodies and dead letters older than `audit_retention`
//! are deleted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;

use super::StoreError;
use super::claim::UNCLAIMED;
use super::queue::insert_audit;
use crate::catalogue::{Catalogue, Priority};
use crate::clock::{HumanDuration, rfc3339};
use crate::ranges;

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
    /// The queue's bound and each duration within its range
    /// (`crate::ranges`), with the key at fault.
    pub fn validate_keyed(&self) -> Result<(), Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        if self.max_queue_bytes < MIN_QUEUE_BYTES {
            problems.push((
                "max_queue_bytes",
                format!(
                    "[store] max_queue_bytes must be at least {MIN_QUEUE_BYTES} (1 MiB), not {}",
                    self.max_queue_bytes
                ),
            ));
        }
        problems.extend(
            [
                (ranges::MAX_RECORD_AGE, self.max_record_age),
                (ranges::AUDIT_RETENTION, self.audit_retention),
            ]
            .into_iter()
            .filter_map(|(range, value)| range.check(value).err()),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
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
    /// The purposes whose catalogue entry sets a `retention`; the limit
    /// applied is the smaller of it and `max_record_age`.
    pub retention: HashMap<String, Duration>,
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
            retention: catalogue
                .purposes()
                .filter_map(|p| Some((p.id.clone(), p.retention?.0)))
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
            retention: HashMap::new(),
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
/// worth (from at most 10,000 segments per call), counting them: whole
/// segments while they add up to less, then the first records of the next
/// (`segment::trim`). Returns (records, bytes) dropped.
fn drop_oldest(
    connection: &Connection,
    purposes: &[String],
    excess: u64,
) -> Result<(u64, u64), StoreError> {
    let list = (1..=purposes.len())
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut whole: Vec<(i64, String, u64)> = Vec::new();
    let mut head = None;
    let mut freed = 0u64;
    {
        let mut oldest = connection.prepare_cached(&format!(
            "SELECT id, purpose, records, size FROM queue WHERE {UNCLAIMED} AND purpose IN ({list})
             ORDER BY id LIMIT 10000"
        ))?;
        let mut rows = oldest.query(rusqlite::params_from_iter(purposes))?;
        while freed < excess {
            let Some(row) = rows.next()? else { break };
            let (id, purpose, records, size): (i64, String, i64, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            let size = size.max(0) as u64;
            if freed + size <= excess || records <= 1 {
                whole.push((id, purpose, records.max(0) as u64));
                freed += size;
            } else {
                head = Some(id);
                break;
            }
        }
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (id, purpose, records) in whole {
        connection
            .prepare_cached("DELETE FROM queue WHERE id = ?1")?
            .execute(params![id])?;
        *counts.entry(purpose).or_default() += records;
    }
    if let Some(id) = head {
        let mut wanted = excess - freed;
        let (removed, bytes) = super::segment::trim(connection, id, |_, _, size| {
            let keep = wanted == 0;
            wanted = wanted.saturating_sub(size);
            keep
        })?;
        for record in removed {
            *counts.entry(record.purpose).or_default() += 1;
        }
        freed += bytes;
    }
    let mut records = 0;
    for (purpose, count) in &counts {
        count_drop(connection, purpose, QUEUE_FULL, *count)?;
        records += count;
    }
    Ok((records, freed))
}

/// Housekeeping: drops queued records older than their purpose's
/// retention (one pass per purpose with a limit shorter than the store's)
/// or than `max_record_age` (one pass for the rest), counted, and audit
/// lines, kept bodies and dead letters older than `audit_retention`.
/// Returns the records dropped from the queue.
pub fn housekeep(
    connection: &Connection,
    bounds: &Bounds,
    now: SystemTime,
) -> Result<u64, StoreError> {
    let mut own: Vec<(&str, Duration)> = bounds
        .retention
        .iter()
        .filter(|(_, limit)| **limit < bounds.max_record_age)
        .map(|(purpose, limit)| (purpose.as_str(), *limit))
        .collect();
    own.sort_unstable();
    let over_age = over_age_claims(connection, bounds, now)?;
    if !over_age.is_empty() {
        let ids: Vec<String> = over_age.iter().map(uuid::Uuid::to_string).collect();
        super::queue::meta_set(connection, EXPIRE_CLAIM, &ids.join(" "))?;
    }
    let mut expired = 0;
    for (purpose, limit) in &own {
        let why = format!("{purpose}'s retention");
        expired += expire(connection, "purpose = ?2", &[purpose], now, *limit, &why)?;
    }
    let others: Vec<&str> = own.iter().map(|(purpose, _)| *purpose).collect();
    let filter = match others.len() {
        0 => "1".to_owned(),
        n => format!(
            "purpose NOT IN ({})",
            (2..n + 2)
                .map(|n| format!("?{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let max = bounds.max_record_age;
    expired += expire(connection, &filter, &others, now, max, "max_record_age")?;
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

/// The `meta` key naming the batches in flight (space-separated ids)
/// whose records housekeeping found past their age: the uploader releases
/// them before its next claim.
const EXPIRE_CLAIM: &str = "expire_claim";

/// The batches in flight holding a record past its age limit (its
/// purpose's `retention`, or `max_record_age`) at `now`.
fn over_age_claims(
    connection: &Connection,
    bounds: &Bounds,
    now: SystemTime,
) -> Result<Vec<uuid::Uuid>, StoreError> {
    let mut over = Vec::new();
    for id in super::claim::claims(connection)? {
        let over_age = super::claim::oldest_per_purpose(connection, id)?
            .iter()
            .any(|(purpose, oldest)| {
                let limit = bounds
                    .retention
                    .get(purpose)
                    .copied()
                    .filter(|limit| *limit < bounds.max_record_age)
                    .unwrap_or(bounds.max_record_age);
                now.checked_sub(limit)
                    .is_some_and(|cutoff| oldest.as_str() < rfc3339(cutoff).as_str())
            });
        if over_age {
            over.push(id);
        }
    }
    Ok(over)
}

/// Releases the batches in flight housekeeping marked as past their
/// records' age, except `held` (on the wire now: it stays marked, for the
/// next call), and drops what is too old, their records included: a batch
/// a receiver keeps refusing does not keep records past the age the
/// disclosures promise. Their kept bodies stay, as the history of what was
/// attempted; what is left of them goes again under new ids. The uploader
/// calls this before it claims, never on a batch on the wire; the age
/// itself is judged only when housekeeping runs (at start, hourly), like
/// the queue's, so a wall clock that jumps for a moment does not drop a
/// batch. Returns the records dropped.
pub fn expire_in_flight(
    connection: &Connection,
    bounds: &Bounds,
    now: SystemTime,
    held: Option<uuid::Uuid>,
) -> Result<u64, StoreError> {
    let Some(marked) = super::queue::meta_get(connection, EXPIRE_CLAIM)? else {
        return Ok(0);
    };
    let held = held.map(|id| id.to_string());
    let (wait, due): (Vec<&str>, Vec<&str>) = marked
        .split(' ')
        .partition(|id| held.as_deref() == Some(*id));
    if wait.is_empty() {
        connection.execute("DELETE FROM meta WHERE key = ?1", params![EXPIRE_CLAIM])?;
    } else {
        super::queue::meta_set(connection, EXPIRE_CLAIM, &wait.join(" "))?;
    }
    let claims = super::claim::claims(connection)?;
    let mut released = false;
    for id in claims
        .into_iter()
        .filter(|id| due.contains(&id.to_string().as_str()))
    {
        super::claim::release_batch(connection, id)?;
        released = true;
    }
    if !released {
        return Ok(0);
    }
    housekeep(connection, bounds, now)
}

/// Drops the unclaimed records matching `filter` (over `purposes`, from
/// `?2`) collected more than `limit` before `now`, counted as too old and
/// audited as older than `why`. A segment whose oldest record is past it
/// loses those records only (`segment::trim`), keeping its place.
fn expire(
    connection: &Connection,
    filter: &str,
    purposes: &[&str],
    now: SystemTime,
    limit: Duration,
    why: &str,
) -> Result<u64, StoreError> {
    let Some(cutoff) = now.checked_sub(limit) else {
        return Ok(0);
    };
    let cutoff = rfc3339(cutoff);
    let args = std::iter::once(cutoff.clone()).chain(purposes.iter().map(|p| (*p).to_owned()));
    let old: Vec<i64> = connection
        .prepare_cached(&format!(
            "SELECT id FROM queue WHERE {UNCLAIMED} AND collected_at < ?1 AND {filter} ORDER BY id"
        ))?
        .query_map(rusqlite::params_from_iter(args), |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for rowid in old {
        let (removed, _) = super::segment::trim(connection, rowid, |_, line, _| {
            // A line that cannot be read is the claim's to dead-letter.
            super::segment::Line::parse(line).map_or(true, |line| *line.collected_at >= *cutoff)
        })?;
        for record in removed {
            *counts.entry(record.purpose).or_default() += 1;
        }
    }
    let mut expired = 0;
    for (purpose, count) in &counts {
        count_drop(connection, purpose, TOO_OLD, *count)?;
        expired += count;
    }
    if expired > 0 {
        let age = humantime::format_duration(limit);
        insert_audit(
            connection,
            "dropped",
            None,
            expired,
            &format!("older than {why} ({age})"),
        )?;
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

/// The drops that batch `id`'s kept body reports (none when it has no
/// kept body).
fn reported_by(connection: &Connection, id: uuid::Uuid) -> Result<Option<Drops>, StoreError> {
    let drops: Option<Option<String>> = connection
        .prepare_cached("SELECT drops FROM sent_body WHERE batch_id = ?1")?
        .query_row(params![id.to_string()], |row| row.get(0))
        .optional()?;
    Ok(drops
        .flatten()
        .and_then(|json| serde_json::from_str::<Drops>(&json).ok()))
}

/// The drops that batch `id`'s kept body reported are reported now (its
/// delivery was acknowledged).
pub fn mark_reported_by(connection: &Connection, id: uuid::Uuid) -> Result<(), StoreError> {
    if let Some(reported) = reported_by(connection, id)? {
        mark_reported(connection, &reported)?;
    }
    Ok(())
}

/// The unreported drops of purposes `include` accepts, less what batch
/// `held`'s kept body already reports (it is on the wire: a body prepared
/// beside it must not report the same counts again).
pub fn drops_beside(
    connection: &Connection,
    include: impl Fn(&str) -> bool,
    held: Option<uuid::Uuid>,
) -> Result<Drops, StoreError> {
    let mut unreported = drops(connection, true, include)?;
    let Some(reported) = held
        .map(|id| reported_by(connection, id))
        .transpose()?
        .flatten()
    else {
        return Ok(unreported);
    };
    for (purpose, reasons) in &reported {
        if let Some(counts) = unreported.get_mut(purpose) {
            for (reason, count) in reasons {
                if let Some(left) = counts.get_mut(reason) {
                    *left = left.saturating_sub(*count);
                }
            }
            counts.retain(|_, count| *count > 0);
        }
    }
    unreported.retain(|_, counts| !counts.is_empty());
    Ok(unreported)
}

#[cfg(test)]
mod tests;
