//! `ksn_scan_aggregates`: the Security Network's scan statistics, folded
//! from `scan_verdict` and `ksn_request` events into one report per window.
//!
//! No verdict is ever sent one by one, and no object hash leaves the
//! machine: an object only feeds a HyperLogLog sketch (the maintained
//! `hyperloglockless` crate, 2^14 one-byte registers: 16 KiB per sketch,
//! three sketches, a relative standard error of 0.81 % on the unique
//! counts, whatever the volume). Totals are plain counters, each stopping
//! at [`COUNTER_MAX`] (the largest integer a report carries); an addition
//! past it is counted, logged once per counter and window, and recorded in
//! the audit trail when the report is queued, so a capped total is never
//! sent without a trace (`counters`).
//!
//! Ingest connections fold their lines into a [`KsnDelta`] (no lock per
//! event); the store writer folds each delta into the one [`KsnAggregate`]
//! it owns and, in the same group commit that acknowledges the lines, writes
//! what changed (the counters and only the sketch registers that moved), so
//! a restart loses no acknowledged count. Closing a window turns the
//! aggregate into one record and resets it, in one transaction.

use std::time::{Duration, SystemTime};

use hyperloglockless::{DefaultHasher, HyperLogLog};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{FieldValue, Record};
use crate::store::{Durable, StoreError, ksn_window};

mod counters;
pub use counters::{COUNTER_MAX, Counters};

/// The catalogue purpose this module reports for.
pub const PURPOSE: &str = "ksn_scan_aggregates";

/// Sketch precision: 2^14 registers, 16 KiB per sketch.
pub const PRECISION: u8 = 14;

/// Relative standard error of the unique counts at [`PRECISION`]
/// (1.04 / sqrt(2^14)); 99.7 % of estimates fall within three times this.
pub const STANDARD_ERROR: f64 = 0.0081;

/// The status a scan gave an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unknown = 0,
    Trusted = 1,
    Untrusted = 2,
}

impl Verdict {
    pub const NAMES: &'static str = "unknown, trusted, untrusted";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "unknown" => Some(Self::Unknown),
            "trusted" => Some(Self::Trusted),
            "untrusted" => Some(Self::Untrusted),
            _ => None,
        }
    }
}

/// Why an object is trusted (or `None` when no trust decision was made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustReason {
    Certificate,
    WebAddress,
    ProcessTrust,
    User,
    None,
}

impl TrustReason {
    pub const NAMES: &'static str = "certificate, web_address, process_trust, user, none";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "certificate" => Some(Self::Certificate),
            "web_address" => Some(Self::WebAddress),
            "process_trust" => Some(Self::ProcessTrust),
            "user" => Some(Self::User),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// What one chunk of ingest lines adds to the window: counters, and the
/// hashed objects per verdict (bounded by the chunk, not by the volume).
#[derive(Debug, Clone, Default)]
pub struct KsnDelta {
    counters: Counters,
    /// Additions the counters could not take in full, per counter.
    capped: Counters,
    objects: [Vec<u64>; 3],
    events: u64,
}

impl KsnDelta {
    /// One `scan_verdict`.
    pub fn verdict(&mut self, object: u64, verdict: Verdict, reason: TrustReason) {
        let mut event = Counters::default();
        match verdict {
            Verdict::Unknown => {
                event.unknown_statuses = 1;
                event.unknown_undecided = u64::from(reason == TrustReason::None);
            }
            Verdict::Trusted => {
                event.trusted_statuses = 1;
                match reason {
                    TrustReason::Certificate => event.trusted_by_certificate = 1,
                    TrustReason::WebAddress => event.trusted_by_web_address = 1,
                    TrustReason::ProcessTrust => event.trusted_by_process_trust = 1,
                    TrustReason::User => event.user_trusted = 1,
                    TrustReason::None => {}
                }
            }
            Verdict::Untrusted => event.untrusted_statuses = 1,
        }
        self.counters.add(&event, &mut self.capped);
        self.objects[verdict as usize].push(object);
        self.events += 1;
    }

    /// One `ksn_request`.
    pub fn request(&mut self, ok: bool, duration_ms: u64, bytes_sent: u64, bytes_received: u64) {
        let event = Counters {
            requests_succeeded: u64::from(ok),
            requests_failed: u64::from(!ok),
            session_duration_ms: duration_ms,
            bytes_sent,
            bytes_received,
            ..Counters::default()
        };
        self.counters.add(&event, &mut self.capped);
        self.events += 1;
    }

    /// Events folded in.
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }
}

/// The 64-bit hash of an object named by its SHA-256 in hex (either case),
/// or `None` when `hex` is not 64 hex digits. The digest is already uniform;
/// the mix only guards against made-up inputs that differ in few bits.
pub fn object_hash(hex: &str) -> Option<u64> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex, &mut bytes).ok()?;
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let folded =
        word(0) ^ word(1).rotate_left(17) ^ word(2).rotate_left(31) ^ word(3).rotate_left(47);
    Some(fmix64(folded))
}

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The open window's start and counters, as `store::ksn_window` keeps them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedWindow {
    /// Seconds since the Unix epoch; absent while the window is empty.
    started_at: Option<u64>,
    counters: Counters,
    /// Written only once a counter was capped, so a window without a cap
    /// is saved as the builds before this key read it.
    #[serde(default, skip_serializing_if = "Counters::is_zero")]
    capped: Counters,
}

/// The open window: counters and one sketch per verdict.
pub struct KsnAggregate {
    started_at: Option<SystemTime>,
    counters: Counters,
    /// Additions the counters could not take in full, per counter.
    capped: Counters,
    sketches: [HyperLogLog; 3],
    /// The registers as last written, to write only what moved.
    saved: [Box<[u8]>; 3],
    window_dirty: bool,
    /// The window was reset: the stored registers are to be cleared.
    cleared: bool,
}

impl Default for KsnAggregate {
    fn default() -> Self {
        Self::new()
    }
}

impl KsnAggregate {
    pub fn new() -> Self {
        let registers = 1usize << PRECISION;
        Self {
            started_at: None,
            counters: Counters::default(),
            capped: Counters::default(),
            sketches: std::array::from_fn(|_| empty_sketch()),
            saved: std::array::from_fn(|_| vec![0u8; registers].into_boxed_slice()),
            window_dirty: false,
            cleared: false,
        }
    }

    /// Adds a chunk's events; the window opens at the first one.
    pub fn fold(&mut self, delta: &KsnDelta, now: SystemTime) {
        if delta.is_empty() {
            return;
        }
        self.started_at.get_or_insert(now);
        for counter in self.add_counts(delta) {
            tracing::warn!(
                counter,
                max = COUNTER_MAX,
                "{PURPOSE}: `{counter}` reached its maximum in this window; what is added past it is not counted, so the window's report will say less than happened (the audit trail says so when the report is queued)"
            );
        }
        for (sketch, objects) in self.sketches.iter_mut().zip(&delta.objects) {
            for &hash in objects {
                sketch.insert_hash(hash);
            }
        }
        self.window_dirty = true;
    }

    /// Adds the delta's counters and its caps; returns the counters capped
    /// for the first time in this window.
    fn add_counts(&mut self, delta: &KsnDelta) -> Vec<&'static str> {
        let before = self.capped;
        self.counters.add(&delta.counters, &mut self.capped);
        // A cap count cannot reach the maximum itself (each cap takes an
        // event), so its own caps need no counting.
        self.capped.add(&delta.capped, &mut Counters::default());
        let firsts = before.fields().into_iter().zip(self.capped.fields());
        firsts
            .filter(|((_, was), (_, now))| *was == 0 && *now > 0)
            .map(|((name, _), _)| name)
            .collect()
    }

    /// When the window opened, if anything arrived in it.
    pub fn started_at(&self) -> Option<SystemTime> {
        self.started_at
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Per counter, the additions it could not take in full in this window
    /// (it stopped at [`COUNTER_MAX`]).
    pub fn capped(&self) -> &Counters {
        &self.capped
    }

    /// The capped counters in words ("bytes_sent (2 additions)"), or `None`
    /// when no counter was capped.
    pub fn capped_summary(&self) -> Option<String> {
        let parts: Vec<String> = self
            .capped
            .nonzero()
            .map(|(name, n)| format!("{name} ({n} addition{})", if n == 1 { "" } else { "s" }))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Estimated distinct objects with `verdict` in this window.
    pub fn unique(&self, verdict: Verdict) -> u64 {
        // `count` truncates (a single object reads 0.99…); round instead.
        self.sketches[verdict as usize].raw_count().round() as u64
    }

    /// The report this window would send if it closed at `stop`, or `None`
    /// when nothing arrived in it. `extra` carries the product's own
    /// database facts (version, settings id) when it has them.
    pub fn report(&self, stop: SystemTime, extra: &[(&str, String)]) -> Option<Record> {
        let started = self.started_at?;
        let mut record = Record::collected(PURPOSE);
        record.collected_at = stop;
        let unique = [
            ("unique_unknown_objects", Verdict::Unknown),
            ("unique_trusted_objects", Verdict::Trusted),
            ("unique_untrusted_objects", Verdict::Untrusted),
        ];
        for (name, verdict) in unique {
            record.set(
                name,
                FieldValue::Integer(saturating_i64(self.unique(verdict))),
            );
        }
        for (name, value) in self.counters.fields() {
            record.set(name, FieldValue::Integer(saturating_i64(value)));
        }
        for (name, value) in extra {
            record.set((*name).to_owned(), FieldValue::String(value.clone().into()));
        }
        record
            .set("collection_started_at", FieldValue::Timestamp(started))
            .set("collection_stopped_at", FieldValue::Timestamp(stop));
        Some(record)
    }

    /// Events counted in the open window.
    pub fn events(&self) -> u64 {
        let c = &self.counters;
        [
            c.unknown_statuses,
            c.trusted_statuses,
            c.untrusted_statuses,
            c.requests_succeeded,
            c.requests_failed,
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }

    /// Empties the window (after its report was queued, or discarded).
    pub fn reset(&mut self) {
        self.started_at = None;
        self.counters = Counters::default();
        self.capped = Counters::default();
        self.sketches = std::array::from_fn(|_| empty_sketch());
        self.window_dirty = true;
        self.cleared = true;
    }

    /// Bytes the sketches and their last-written copy hold, whatever the
    /// number of objects.
    pub fn sketch_bytes(&self) -> usize {
        self.sketches.iter().map(HyperLogLog::len).sum::<usize>() * 2
    }
}

/// The audit event that says a report was queued with capped counters.
pub const CAPPED_EVENT: &str = "capped";

/// Records, in the caller's transaction, that this window's report is
/// queued with capped counters (nothing when none was). The record cannot
/// say so itself: only the catalogue's fields leave the machine.
pub fn audit_capped(aggregate: &KsnAggregate, connection: &Connection) -> Result<(), StoreError> {
    let Some(summary) = aggregate.capped_summary() else {
        return Ok(());
    };
    let detail = format!(
        "{PURPOSE} report queued with capped counters: {summary} past {COUNTER_MAX}, the largest integer a report carries; the true totals are larger"
    );
    let capped: serde_json::Map<String, serde_json::Value> = aggregate
        .capped
        .nonzero()
        .map(|(name, n)| (name.to_owned(), n.into()))
        .collect();
    let facts = serde_json::json!({
        "purposes": { PURPOSE: 1 },
        "capped": capped,
        "max": COUNTER_MAX,
    });
    crate::store::queue::insert_audit_with(connection, CAPPED_EVENT, None, 1, &detail, Some(&facts))
}

/// Why an open window is discarded rather than sent.
pub const DISCARD_REASON: &str =
    "ksn_scan_aggregates window discarded: consent no longer allows it";

/// Discards the open window `aggregate` holds, with an audit line in the
/// caller's transaction; returns the events it had counted (0 when the
/// window was empty, and then nothing is written).
pub fn discard_window(
    aggregate: &mut KsnAggregate,
    connection: &Connection,
) -> Result<u64, StoreError> {
    if aggregate.started_at().is_none() {
        return Ok(0);
    }
    let events = aggregate.events();
    aggregate.reset();
    crate::store::queue::insert_audit(connection, "purged", None, events, DISCARD_REASON)?;
    Ok(events)
}

/// [`discard_window`] for the window stored in the database, for the CLI
/// when no daemon runs: loads it, empties it and writes the result.
pub fn discard_stored_window(connection: &Connection) -> Result<u64, StoreError> {
    let mut aggregate = KsnAggregate::new();
    aggregate.reload(connection)?;
    let events = discard_window(&mut aggregate, connection)?;
    aggregate.checkpoint(connection)?;
    Ok(events)
}

fn empty_sketch() -> HyperLogLog {
    // Only `insert_hash` is used, so the hasher's seed never matters.
    HyperLogLog::with_hasher(PRECISION, DefaultHasher::seeded(&[0; 16]))
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A sketch with exactly `registers`, with the running sums the crate keeps
/// recomputed from them.
fn sketch_from(registers: Box<[u8]>) -> HyperLogLog {
    let zeros = registers.iter().filter(|&&r| r == 0).count();
    let sum = registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
    HyperLogLog::from_parts(registers, DefaultHasher::seeded(&[0; 16]), zeros, sum)
}

impl Durable for KsnAggregate {
    fn reload(&mut self, connection: &Connection) -> Result<(), StoreError> {
        *self = Self::new();
        if let Some(text) = ksn_window::summary(connection)? {
            let saved: SavedWindow =
                serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
                    what: "KSN window",
                    message: err.to_string(),
                })?;
            self.started_at = saved
                .started_at
                .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
            self.counters = saved.counters;
            self.capped = saved.capped;
            self.counters.clamp(&mut self.capped);
        }
        ksn_window::registers(connection, |sketch, idx, value| {
            let slot = usize::try_from(sketch)
                .ok()
                .zip(usize::try_from(idx).ok())
                .and_then(|(sketch, idx)| self.saved.get_mut(sketch)?.get_mut(idx));
            if let Some(slot) = slot {
                *slot = value;
            }
        })?;
        for (sketch, saved) in self.sketches.iter_mut().zip(&self.saved) {
            *sketch = sketch_from(saved.clone());
        }
        Ok(())
    }

    fn checkpoint(&mut self, connection: &Connection) -> Result<(), StoreError> {
        if !self.window_dirty {
            return Ok(());
        }
        if self.cleared {
            ksn_window::clear_registers(connection)?;
            for saved in &mut self.saved {
                saved.fill(0);
            }
            self.cleared = false;
        }
        let mut upsert = ksn_window::RegisterWriter::new(connection)?;
        for (index, (sketch, saved)) in self.sketches.iter().zip(self.saved.iter_mut()).enumerate()
        {
            let (registers, ..) = sketch.parts();
            for (idx, (&now, was)) in registers.iter().zip(saved.iter_mut()).enumerate() {
                if now != *was {
                    upsert.set(index, idx, now)?;
                    *was = now;
                }
            }
        }
        let window = SavedWindow {
            started_at: self.started_at.map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            }),
            counters: self.counters,
            capped: self.capped,
        };
        let text = serde_json::to_string(&window).expect("a window always serializes");
        ksn_window::set_summary(connection, &text)?;
        self.window_dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
