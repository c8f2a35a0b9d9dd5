//! The report's sentences, shared by both renderers and the aggregation:
//! what each kind of loss, span and answer means, in the words of what
//! the code does. When a rule changes, its sentence here changes with it.

use super::{LossKind, Report, Span, Unit};
use crate::consent::receipt::Event;
use crate::store::bounds::{QUEUE_FULL, TOO_OLD};

/// The purpose a dead letter is listed under when its own could not be
/// read back.
pub const UNREADABLE_PURPOSE: &str = "(unreadable record)";

/// Why an event was discarded at the door (`ingest::Discards`).
pub const DISCARDED: &str = "its purpose was not allowed when the event arrived: refused at the ingest socket, never stored";

/// Why a KSN window's events were purged (`collect::ksn::discard_window`).
pub const KSN_WINDOW_DISCARDED: &str =
    "the open scan-statistics window was discarded: consent no longer allows it";

/// A batch whose trail holds no answer yet.
pub const PENDING: &str = "no answer recorded in the period: in flight, or waiting for its retry";

/// A drop's reason code (`store::bounds`) in words.
pub fn drop_reason(code: &str) -> String {
    match code {
        QUEUE_FULL => "the queue was over max_queue_bytes: the oldest records of the lowest priority went first".into(),
        TOO_OLD => "older than its purpose's retention or the store's max_record_age".into(),
        other => format!("dropped ({other})"),
    }
}

/// A refusal code (`gate::Refusal`) in words.
pub fn refusal_reason(code: &str) -> String {
    match code {
        "personal_data" => "a value looked like personal data its field does not allow: refused, the value never kept".into(),
        "out_of_shape" => "a value did not fit its field's declaration: refused, the value never kept".into(),
        other => format!("refused ({other}), the value never kept"),
    }
}

pub fn kind(kind: LossKind) -> &'static str {
    match kind {
        LossKind::Dropped => "dropped",
        LossKind::DeadLettered => "dead-lettered",
        LossKind::Purged => "purged",
        LossKind::Discarded => "discarded at the door",
        LossKind::Refused => "refused at the door",
    }
}

pub fn unit(unit: Unit, count: u64) -> String {
    let word = match (unit, count) {
        (Unit::Records, 1) => "record",
        (Unit::Records, _) => "records",
        (Unit::Events, 1) => "event",
        (Unit::Events, _) => "events",
    };
    format!("{count} {word}")
}

pub fn span(span: Span) -> &'static str {
    match span {
        Span::Period => "in this period",
        Span::Store => "since the store was created",
        Span::Daemon => "since the running daemon started",
    }
}

/// A receipt's event, as a person says it.
pub fn event(event: Event) -> &'static str {
    match event {
        Event::Grant => "granted",
        Event::Revoke => "withdrawn",
        Event::Renewal => "renewed",
        Event::Decline => "declined",
        Event::PolicyChange => "policy changed",
        Event::RegionChange => "region changed",
    }
}

/// The one-letter mark of a receipt on a chart (with its colour, so that
/// print and colour-blind readers tell them apart).
pub fn mark(event: Event) -> &'static str {
    match event {
        Event::Grant => "G",
        Event::Revoke => "W",
        Event::Renewal => "R",
        Event::Decline => "D",
        Event::PolicyChange => "P",
        Event::RegionChange => "C",
    }
}

/// Every event, in the legend's order.
pub const EVENTS: [Event; 6] = [
    Event::Grant,
    Event::Revoke,
    Event::Renewal,
    Event::Decline,
    Event::PolicyChange,
    Event::RegionChange,
];

/// Bytes as people read them: exact below 10 kB, else kB or MB with one
/// decimal.
pub fn bytes(bytes: u64) -> String {
    match bytes {
        b if b < 10_000 => format!("{b} bytes"),
        b if b < 10_000_000 => format!("{:.1} kB", b as f64 / 1000.0),
        b => format!("{:.1} MB", b as f64 / 1_000_000.0),
    }
}

/// The opening paragraph.
pub fn intro(report: &Report) -> String {
    format!(
        "What this computer's consentry agent sent from {} to {} (UTC), purpose by purpose, under which consent, what it did not send and why, and the last batches byte for byte. Generated from the agent's own records (`consentry report`); nothing here was fetched from anywhere.",
        report.period.since, report.period.until
    )
}

/// The at-a-glance lines.
pub fn summary(report: &Report) -> Vec<String> {
    let senders: Vec<String> = report.senders().map(|p| format!("`{}`", p.id)).collect();
    let mut lines = vec![format!(
        "Sent: {} in {} batch(es), {} before compression{}.",
        unit(Unit::Records, report.sent.records),
        report.sent.batches,
        bytes(report.sent.bytes),
        if senders.is_empty() {
            String::new()
        } else {
            format!(", for {}", senders.join(", "))
        }
    )];
    if report.failed_attempts > 0 {
        lines.push(format!(
            "{} upload attempt(s) were not taken by the receiver; each batch is sent again with the same body.",
            report.failed_attempts
        ));
    }
    lines.push(format!(
        "Consent events in this period: {} ({} earlier; `consentry consent history` lists them all).",
        report.receipts.len(),
        report.receipts_before
    ));
    lines.push(door(report));
    lines
}

/// What the report can say about the door, honestly.
pub fn door(report: &Report) -> String {
    match report.daemon {
        Some(daemon) => format!(
            "Events discarded or refused at the door are counted by the running daemon (pid {}) since it started, in memory only: earlier ones are not in this report.",
            daemon.pid
        ),
        None => "No daemon answered: events discarded or refused at the door are counted only in the running daemon's memory, so they are not in this report.".into(),
    }
}

/// How bytes per purpose are counted.
pub const BYTES_NOTE: &str = "Bytes are the bodies before compression; a batch that carried several purposes is divided among them by their records.";
