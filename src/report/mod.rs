//! The transparency report (`consentry report`): what this installation
//! actually sent over a period, day by day and purpose by purpose, under
//! which consent; the consent receipts on the same time axis; what did not
//! leave and why; the last batches byte for byte; and the region's
//! disclosure.
//!
//! One model, [`Report`] (serialized as `consentry.report/1` for
//! `--format json`), built by [`Report::build`] from what the store and the
//! daemon keep ([`Sources`]; [`read::stored`] reads the store's part), and
//! two renderers of it: [`html`] (one self-contained page: inline CSS and
//! SVG, no script, no URL) and [`markdown`]. The renderers only lay out
//! what the model holds: they compute nothing a reader of the JSON could
//! not.
//!
//! This module never decides consent (the verdicts are the registry's,
//! passed in) and never writes anything. Every number says over which
//! span it counts ([`Span`]): the period, the store's whole life, or the
//! running daemon's (events discarded or refused at the door are counted
//! only in the daemon's memory; without a daemon the report has none and
//! says so).

mod aggregate;
mod chart;
pub mod html;
pub mod markdown;
pub mod read;
mod words;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::catalogue::{Basis, Catalogue, Region};
use crate::consent::Decision;
use crate::consent::receipt::{Event, Receipt};
use crate::disclosure::Disclosure;
use crate::gate::RefusedValues;
use crate::store::AuditEntry;

/// The longest period a report covers: the audit trail keeps at most
/// `audit_retention`'s upper bound (3650 days), so a longer period would
/// only add empty days to every chart.
pub const MAX_DAYS: u64 = 3660;

/// How many batches a report shows unless told otherwise: enough to see
/// what a typical batch carries, few enough that their bodies keep the
/// page small.
pub const DEFAULT_BATCHES: usize = 10;

const DAY: u64 = 86_400;

/// A UTC calendar day, as the number of days since 1970-01-01; written
/// `2026-11-26`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u64);

impl Day {
    pub fn of(time: SystemTime) -> Day {
        Day(seconds(time) / DAY)
    }

    /// The day of an RFC 3339 time (`None`: not one).
    pub fn parse(rfc3339: &str) -> Option<Day> {
        humantime::parse_rfc3339_weak(rfc3339).ok().map(Day::of)
    }

    /// Its first second, since the epoch.
    pub fn start(self) -> u64 {
        self.0 * DAY
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = UNIX_EPOCH + Duration::from_secs(self.start());
        f.write_str(&crate::clock::rfc3339(time)[..10])
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Seconds since the epoch (0 before it).
pub fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch of an RFC 3339 time.
pub fn seconds_of(rfc3339: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(rfc3339).ok().map(seconds)
}

/// What a report is made from: the store's records ([`read::stored`]),
/// the registry's verdicts, the running daemon's counts (if one answered)
/// and the region's disclosure.
#[derive(Debug, Clone)]
pub struct Sources {
    pub now: SystemTime,
    /// The start of the period.
    pub since: SystemTime,
    /// The verdict of every purpose now.
    pub decisions: Vec<Decision>,
    pub stored: read::Stored,
    /// What only the running daemon counts; `None` when none answered.
    pub door: Option<Door>,
    pub disclosure: Disclosure,
}

/// Counts the running daemon keeps in memory since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Door {
    pub pid: u32,
    /// Events refused at the ingest socket because their purpose was not
    /// allowed: purpose → events.
    pub discarded: BTreeMap<String, u64>,
    /// Records refused for a value: purpose → code → records.
    pub refused: RefusedValues,
}

/// The report (`consentry.report/1`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub region: Region,
    pub period: Period,
    /// Everything delivered in the period, all purposes.
    pub sent: Sent,
    /// Upload attempts in the period the receiver did not take (they are
    /// retried with the same body; see `batches`).
    pub failed_attempts: u64,
    /// Every purpose of the catalogue, then any other that sent, lost or
    /// queued something.
    pub purposes: Vec<PurposeReport>,
    /// The consent receipts of the period, oldest first.
    pub receipts: Vec<ReceiptEvent>,
    /// Receipts recorded before the period (`consentry consent history`
    /// lists them).
    pub receipts_before: u64,
    /// The newest batches first sent in the period, newest first.
    pub batches: Vec<BatchReport>,
    /// The daemon that counted what was refused at the door; `None`: no
    /// daemon answered, so those counts are not in the report.
    pub daemon: Option<DaemonSeen>,
    pub disclosure: Disclosure,
}

/// The span of the report: from `since` to `until` (the time it was made),
/// drawn as the whole UTC days `first_day` to `last_day`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    pub since: String,
    pub until: String,
    pub first_day: Day,
    pub last_day: Day,
    pub days: u64,
}

impl Period {
    /// Every day of the period, in order.
    pub fn each_day(&self) -> impl Iterator<Item = Day> + use<> {
        (self.first_day.0..=self.last_day.0).map(Day)
    }
}

/// What was delivered (acknowledged with a 2xx).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub records: u64,
    /// Bytes of the bodies before compression; a batch's bytes are divided among
    /// its purposes by their records (exact for a batch of one purpose).
    pub bytes: u64,
    pub batches: u64,
}

/// One purpose over the period.
#[derive(Debug, Clone, Serialize)]
pub struct PurposeReport {
    pub id: String,
    /// `None`: the catalogue in use no longer has it.
    pub title: Option<String>,
    pub basis: Option<Basis>,
    /// The clauses that can allow it (any one of them).
    pub clauses: Vec<String>,
    /// Whether it may send now, and why (as `status` says).
    pub verdict: Option<Decision>,
    pub sent: Sent,
    /// The days on which it sent, in order (days without are left out).
    pub days: Vec<DaySent>,
    /// Records of it waiting in the queue now.
    pub queued: u64,
    /// What of it did not leave, and why.
    pub losses: Vec<Loss>,
}

/// What one purpose sent on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DaySent {
    pub day: Day,
    pub records: u64,
    pub bytes: u64,
}

/// Records or events of a purpose that did not leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loss {
    pub kind: LossKind,
    pub reason: String,
    pub count: u64,
    pub unit: Unit,
    /// Over which span `count` counts.
    pub span: Span,
}

/// How something did not leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Deleted unsent to keep the store's bounds (size, age).
    Dropped,
    /// Refused by the receiver, or unreadable: kept aside, never sent.
    DeadLettered,
    /// Deleted because consent for it was withdrawn.
    Purged,
    /// An event refused at the ingest socket: its purpose was not allowed.
    Discarded,
    /// A record refused for a value its field does not allow.
    Refused,
}

/// What a count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Records,
    /// Incoming events (at the door; a KSN window counts scan events).
    Events,
}

/// Over which span a count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Span {
    /// The report's period.
    Period,
    /// Since the store was created (the store keeps only the totals).
    Store,
    /// Since the running daemon started (kept in its memory only).
    Daemon,
}

/// One consent receipt, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptEvent {
    pub receipt_id: uuid::Uuid,
    pub at: String,
    pub event: Event,
    pub clause: Option<String>,
    pub version: Option<u32>,
    pub purposes: Vec<String>,
    pub previous_state: String,
    pub new_state: String,
    /// installer, cli, file, policy, config.
    pub method: String,
    /// A command declared it (else it was observed).
    pub declared: bool,
    pub jurisdiction: String,
}

impl ReceiptEvent {
    fn of(receipt: &Receipt) -> Self {
        Self {
            receipt_id: receipt.receipt_id,
            at: receipt.timestamp.clone(),
            event: receipt.event,
            clause: receipt.clause.as_ref().map(|c| c.id.clone()),
            version: receipt.clause.as_ref().map(|c| c.version),
            purposes: receipt.purposes.iter().map(|p| p.purpose.clone()).collect(),
            previous_state: receipt.previous_state.clone(),
            new_state: receipt.new_state.clone(),
            method: receipt.collection_method.clone(),
            declared: receipt.is_declared(),
            jurisdiction: receipt.jurisdiction.clone(),
        }
    }

    /// Whether it concerns `purpose` (a region change concerns every one).
    pub fn concerns(&self, purpose: &str) -> bool {
        self.event == Event::RegionChange || self.purposes.iter().any(|p| p == purpose)
    }
}

/// One batch: when it was first sent, what answered, and its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub batch_id: String,
    pub sent_at: String,
    pub records: u64,
    /// purpose → records, as the trail recorded them.
    pub purposes: BTreeMap<String, u64>,
    /// SHA-256 of the body as sent (compressed), as recorded.
    pub sha256: String,
    /// The body's size on the wire, compressed.
    pub compressed_bytes: u64,
    /// The document's size before compression; `None` when it cannot be
    /// read.
    pub sent_bytes: Option<u64>,
    /// The last answer (`pending` when the trail has none yet).
    pub answer: Answer,
    /// Every attempt the trail recorded in the period, oldest first.
    pub attempts: Vec<Answer>,
    pub body: BodyText,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub at: Option<String>,
    /// uploaded, failed, refused, dead-lettered, or pending.
    pub event: String,
    /// The receiver's HTTP status, when there was one.
    pub status: Option<u16>,
    pub detail: String,
}

/// A batch's body as `history --show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BodyText {
    /// The exact text (`None`: it cannot be shown; see `reason`).
    pub text: Option<String>,
    /// An OTLP request, shown as OTLP/JSON.
    pub otlp: bool,
    pub reason: Option<String>,
}

/// The daemon whose counts the report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DaemonSeen {
    pub pid: u32,
}

impl Report {
    /// Everything that did not leave, each with its purpose, purpose by
    /// purpose (the one table both renderers draw).
    pub fn losses(&self) -> Vec<(&str, &Loss)> {
        self.purposes
            .iter()
            .flat_map(|p| p.losses.iter().map(move |l| (p.id.as_str(), l)))
            .collect()
    }

    /// The report of `sources` for `catalogue`.
    pub fn build(catalogue: &Catalogue, sources: Sources) -> Report {
        let period = aggregate::period(sources.since, sources.now, &sources.stored.trail);
        let sends = aggregate::sends(&sources.stored.trail);
        let mut losses = aggregate::losses(&sources.stored, sources.door.as_ref());
        let purposes = aggregate::purposes(catalogue, &sources, sends, &mut losses);
        let since = seconds(sources.since);
        let (receipts, before): (Vec<&Receipt>, Vec<&Receipt>) = sources
            .stored
            .receipts
            .iter()
            .partition(|r| seconds_of(&r.timestamp).is_none_or(|at| at >= since));
        Report {
            generated_at: crate::clock::rfc3339(sources.now),
            region: sources.disclosure.region,
            sent: purposes.iter().fold(Sent::default(), |total, p| Sent {
                records: total.records + p.sent.records,
                bytes: total.bytes + p.sent.bytes,
                batches: 0,
            }),
            failed_attempts: aggregate::failed_attempts(&sources.stored.trail),
            period,
            purposes,
            receipts: receipts.into_iter().map(ReceiptEvent::of).collect(),
            receipts_before: before.len() as u64,
            batches: sources
                .stored
                .bodies
                .iter()
                .map(|body| aggregate::batch(body, &sources.stored.trail))
                .collect(),
            daemon: sources
                .door
                .as_ref()
                .map(|door| DaemonSeen { pid: door.pid }),
            disclosure: sources.disclosure,
        }
        .with_batch_count(&sources.stored.trail)
    }

    /// `sent.batches`: the deliveries in the period.
    fn with_batch_count(mut self, trail: &[AuditEntry]) -> Self {
        self.sent.batches = trail.iter().filter(|e| e.event == "uploaded").count() as u64;
        self
    }

    /// The purposes that delivered something in the period.
    pub fn senders(&self) -> impl Iterator<Item = &PurposeReport> {
        self.purposes.iter().filter(|p| p.sent.records > 0)
    }
}

#[cfg(test)]
mod tests;
