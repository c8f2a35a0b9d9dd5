//! From the store's lines and counts to the report's numbers: deliveries
//! per purpose and day, what did not leave per purpose, and each kept
//! batch with its answers. Pure functions over what [`super::read`] and
//! the daemon gave; no clock but the one passed in.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::words;
use super::{
    Answer, BatchReport, BodyText, Day, DaySent, Door, Loss, LossKind, Period, PurposeReport, Sent,
    Sources, Span, Unit, read::Stored,
};
use crate::catalogue::Catalogue;
use crate::store::{AuditEntry, SentBody};
use crate::upload::shown;

/// What one purpose delivered: in all, and per day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Sends {
    pub sent: Sent,
    pub days: BTreeMap<Day, (u64, u64)>,
}

/// The period from `since` to `now`, stretched to a trail line dated
/// later than `now` (a clock set back), never longer than
/// [`super::MAX_DAYS`]: a longer one keeps its newest days.
pub(super) fn period(since: SystemTime, now: SystemTime, trail: &[AuditEntry]) -> Period {
    let requested = Day::of(since.min(now));
    let latest = trail
        .iter()
        .filter_map(|e| Day::parse(&e.at))
        .max()
        .unwrap_or(requested);
    let last = Day::of(now).max(latest).max(requested);
    let first = Day(requested
        .0
        .max((last.0 + 1).saturating_sub(super::MAX_DAYS)));
    Period {
        since: crate::clock::rfc3339(since),
        until: crate::clock::rfc3339(now),
        first_day: first,
        last_day: last,
        days: last.0 - first.0 + 1,
    }
}

/// Every delivery (`uploaded` line) of the trail, per purpose: records as
/// the line's facts name them, and the body's bytes (before compression) divided
/// among its purposes by their records.
pub(super) fn sends(trail: &[AuditEntry]) -> BTreeMap<String, Sends> {
    let mut sends: BTreeMap<String, Sends> = BTreeMap::new();
    for entry in trail.iter().filter(|e| e.event == "uploaded") {
        let Some(day) = Day::parse(&entry.at) else {
            continue;
        };
        let counts = purpose_counts(entry);
        let bytes = fact_u64(entry, "json_bytes").unwrap_or(0);
        let weights: Vec<u64> = counts.values().copied().collect();
        for ((purpose, records), bytes) in counts.iter().zip(shares(bytes, &weights)) {
            let purpose = sends.entry(purpose.clone()).or_default();
            purpose.sent.records += records;
            purpose.sent.bytes += bytes;
            purpose.sent.batches += 1;
            let on_day = purpose.days.entry(day).or_default();
            on_day.0 += records;
            on_day.1 += bytes;
        }
    }
    sends
}

/// `total` divided in proportion to `weights`, in whole units that add up
/// to `total` (largest remainder first; ties to the earlier weight). All
/// zero weights share nothing.
pub(super) fn shares(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    // Each remainder is below `sum`, so it fits in u128; a share is at
    // most `total`, so it fits in u64.
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|w| {
            let product = u128::from(total) * u128::from(*w);
            ((product / sum) as u64, product % sum)
        })
        .collect();
    let mut shares: Vec<u64> = exact.iter().map(|(whole, _)| *whole).collect();
    let left = total - shares.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| exact[*b].1.cmp(&exact[*a].1).then(a.cmp(b)));
    for index in order.into_iter().take(left as usize) {
        shares[index] += 1;
    }
    shares
}

/// An audit line's `purposes` fact: purpose → records.
fn purpose_counts(entry: &AuditEntry) -> BTreeMap<String, u64> {
    entry
        .facts
        .as_ref()
        .and_then(|f| f.get("purposes"))
        .and_then(|p| p.as_object())
        .map(|map| {
            map.iter()
                .filter_map(|(purpose, n)| Some((purpose.clone(), n.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn fact_u64(entry: &AuditEntry, key: &str) -> Option<u64> {
    entry.facts.as_ref()?.get(key)?.as_u64()
}

/// Attempts in the trail that the receiver did not take.
pub(super) fn failed_attempts(trail: &[AuditEntry]) -> u64 {
    trail.iter().filter(|e| e.event == "failed").count() as u64
}

/// What did not leave, per purpose: drops (store totals), dead letters and
/// purges (the period), discards and refusals at the door (the daemon's).
pub(super) fn losses(stored: &Stored, door: Option<&Door>) -> BTreeMap<String, Vec<Loss>> {
    let mut losses: BTreeMap<String, Vec<Loss>> = BTreeMap::new();
    let mut add = |purpose: &str, kind, reason: String, count, unit, span| {
        losses.entry(purpose.to_owned()).or_default().push(Loss {
            kind,
            reason,
            count,
            unit,
            span,
        })
    };
    for (purpose, reasons) in &stored.dropped {
        for (code, count) in reasons {
            let reason = words::drop_reason(code);
            add(
                purpose,
                LossKind::Dropped,
                reason,
                *count,
                Unit::Records,
                Span::Store,
            );
        }
    }
    for dead in &stored.dead_letters {
        let purpose = dead.purpose.as_deref().unwrap_or(words::UNREADABLE_PURPOSE);
        let reason = dead
            .reason
            .clone()
            .unwrap_or_else(|| "no reason recorded".into());
        add(
            purpose,
            LossKind::DeadLettered,
            reason,
            dead.records,
            Unit::Records,
            Span::Period,
        );
    }
    for (purpose, why, count, unit) in purges(&stored.trail) {
        add(&purpose, LossKind::Purged, why, count, unit, Span::Period);
    }
    if let Some(door) = door {
        for (purpose, count) in &door.discarded {
            let reason = words::DISCARDED.to_owned();
            add(
                purpose,
                LossKind::Discarded,
                reason,
                *count,
                Unit::Events,
                Span::Daemon,
            );
        }
        for (purpose, codes) in &door.refused {
            for (code, count) in codes {
                let reason = words::refusal_reason(code);
                add(
                    purpose,
                    LossKind::Refused,
                    reason,
                    *count,
                    Unit::Records,
                    Span::Daemon,
                );
            }
        }
    }
    losses
}

/// Every purge of the period, added up per purpose and reason: (purpose,
/// why, count, unit). A discarded KSN window counts the scan events it
/// had counted, not records.
fn purges(trail: &[AuditEntry]) -> Vec<(String, String, u64, Unit)> {
    let mut sums: BTreeMap<(String, String, Unit), u64> = BTreeMap::new();
    for entry in trail.iter().filter(|e| e.event == "purged") {
        if entry.detail == crate::collect::ksn::DISCARD_REASON {
            let key = (
                crate::collect::ksn::PURPOSE.to_owned(),
                words::KSN_WINDOW_DISCARDED.to_owned(),
                Unit::Events,
            );
            *sums.entry(key).or_default() += entry.records;
            continue;
        }
        // `queue::purge_blocked` writes "WHY: purpose n, purpose n".
        let why = entry
            .detail
            .rsplit_once(": ")
            .map_or(entry.detail.as_str(), |(why, _)| why);
        for (purpose, count) in purpose_counts(entry) {
            *sums
                .entry((purpose, why.to_owned(), Unit::Records))
                .or_default() += count;
        }
    }
    sums.into_iter()
        .map(|((purpose, why, unit), count)| (purpose, why, count, unit))
        .collect()
}

/// Every purpose of the catalogue in its order, then any other that sent,
/// lost or queued something (sorted), each with its verdict and numbers.
pub(super) fn purposes(
    catalogue: &Catalogue,
    sources: &Sources,
    mut sends: BTreeMap<String, Sends>,
    losses: &mut BTreeMap<String, Vec<Loss>>,
) -> Vec<PurposeReport> {
    let mut ids: Vec<String> = catalogue.purposes().map(|p| p.id.clone()).collect();
    let mut others: Vec<&String> = sends
        .keys()
        .chain(losses.keys())
        .chain(sources.stored.queued.keys())
        .filter(|id| catalogue.purpose(id).is_none())
        .collect();
    others.sort();
    others.dedup();
    ids.extend(others.into_iter().cloned());
    ids.into_iter()
        .map(|id| {
            let purpose = catalogue.purpose(&id);
            let sends = sends.remove(&id).unwrap_or_default();
            PurposeReport {
                title: purpose.map(|p| p.title.clone()),
                basis: purpose.map(|p| p.basis),
                clauses: purpose.map(|p| p.clauses.clone()).unwrap_or_default(),
                verdict: sources
                    .decisions
                    .iter()
                    .find(|d| d.purpose() == id)
                    .cloned(),
                sent: sends.sent,
                days: sends
                    .days
                    .into_iter()
                    .map(|(day, (records, bytes))| DaySent {
                        day,
                        records,
                        bytes,
                    })
                    .collect(),
                queued: sources.stored.queued.get(&id).copied().unwrap_or(0),
                losses: losses.remove(&id).unwrap_or_default(),
                id,
            }
        })
        .collect()
}

/// One kept batch, with every answer the trail recorded for it and its
/// body as `history --show` prints it.
pub(super) fn batch(kept: &SentBody, trail: &[AuditEntry]) -> BatchReport {
    let lines: Vec<&AuditEntry> = trail
        .iter()
        .filter(|e| e.batch_id.as_deref() == Some(kept.batch_id.as_str()))
        .filter(|e| ["uploaded", "failed", "refused", "dead-lettered"].contains(&e.event.as_str()))
        .collect();
    let attempts: Vec<Answer> = lines
        .iter()
        .map(|e| Answer {
            at: Some(e.at.clone()),
            event: e.event.clone(),
            status: fact_u64(e, "status").and_then(|s| u16::try_from(s).ok()),
            detail: e.detail.clone(),
        })
        .collect();
    let purposes = lines
        .iter()
        .map(|e| purpose_counts(e))
        .find(|counts| !counts.is_empty())
        .unwrap_or_default();
    let (body, sent_bytes) = match shown::readable(kept) {
        Ok(shown) => (
            BodyText {
                text: Some(String::from_utf8_lossy(&shown.document).into_owned()),
                otlp: shown.otlp,
                reason: None,
            },
            Some(shown.sent_bytes as u64),
        ),
        Err(err) => (
            BodyText {
                text: None,
                otlp: false,
                reason: Some(err.to_string()),
            },
            None,
        ),
    };
    BatchReport {
        batch_id: kept.batch_id.clone(),
        sent_at: kept.at.clone(),
        records: kept.records,
        purposes,
        sha256: kept.sha256.clone(),
        compressed_bytes: kept.bytes.len() as u64,
        sent_bytes,
        answer: attempts.last().cloned().unwrap_or_else(|| Answer {
            at: None,
            event: "pending".into(),
            status: None,
            detail: words::PENDING.into(),
        }),
        attempts,
        body,
    }
}
