//! The aggregation behind the report: days, purposes, empty periods, a
//! period with a revoke in it, what did not leave, and both renderings.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::read::Stored;
use super::*;
use crate::catalogue::{Catalogue, Region};
use crate::consent::Registry;
use crate::consent::receipt::{ClauseRef, PurposeRef};
use crate::store::SentBody;
use crate::store::queue::DeadLetterCount;

fn at(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap()
}

fn line(
    at: &str,
    event: &str,
    batch: Option<&str>,
    detail: &str,
    facts: serde_json::Value,
) -> AuditEntry {
    let records = facts["purposes"]
        .as_object()
        .map_or(0, |p| p.values().filter_map(|n| n.as_u64()).sum());
    AuditEntry {
        at: at.into(),
        event: event.into(),
        batch_id: batch.map(Into::into),
        records,
        detail: detail.into(),
        facts: Some(facts),
    }
}

fn uploaded(at: &str, batch: &str, purposes: &[(&str, u64)], json_bytes: u64) -> AuditEntry {
    let purposes: serde_json::Map<_, _> = purposes
        .iter()
        .map(|(p, n)| ((*p).to_owned(), json!(n)))
        .collect();
    let facts = json!({"purposes": purposes, "status": 200, "json_bytes": json_bytes});
    line(at, "uploaded", Some(batch), "accepted with 200", facts)
}

fn receipt(at: &str, event: Event, clause: &str, purposes: &[&str]) -> Receipt {
    Receipt {
        version: "1".into(),
        receipt_id: uuid::Uuid::new_v4(),
        timestamp: at.into(),
        jurisdiction: "global".into(),
        collection_method: "cli".into(),
        event,
        clause: Some(ClauseRef {
            id: clause.into(),
            version: 2,
            text_sha256: "00".repeat(32),
        }),
        purposes: purposes
            .iter()
            .map(|p| PurposeRef {
                purpose: (*p).into(),
                basis: "contract".into(),
                local_dp: Vec::new(),
            })
            .collect(),
        previous_state: "accepted".into(),
        new_state: "withdrawn".into(),
        act_id: Some(uuid::Uuid::new_v4()),
        observed: None,
    }
}

fn report(since: &str, now: &str, stored: Stored, door: Option<Door>) -> Report {
    let catalogue = Catalogue::embedded();
    let sources = Sources {
        now: at(now),
        since: at(since),
        decisions: Registry::closed(&catalogue, "eula not accepted")
            .decisions()
            .cloned()
            .collect(),
        stored,
        door,
        disclosure: Disclosure::new(&catalogue, Region::Global, Duration::from_secs(30 * 86_400)),
    };
    Report::build(&catalogue, sources)
}

fn purpose<'a>(report: &'a Report, id: &str) -> &'a PurposeReport {
    report.purposes.iter().find(|p| p.id == id).unwrap()
}

fn day(text: &str) -> Day {
    Day::parse(&format!("{text}T00:00:00Z")).unwrap()
}

#[test]
fn a_delivery_counts_on_its_utc_day_and_a_shared_batch_is_divided_by_records() {
    let stored = Stored {
        trail: vec![
            uploaded("2026-11-01T23:59:59Z", "a", &[("update_identity", 2)], 100),
            line(
                "2026-11-02T00:00:00Z",
                "failed",
                Some("b"),
                "receiver answered 503",
                json!({}),
            ),
            uploaded(
                "2026-11-02T00:00:01Z",
                "b",
                &[("update_identity", 1), ("installation_errors", 3)],
                401,
            ),
        ],
        ..Stored::default()
    };
    let report = report("2026-10-31T12:00:00Z", "2026-11-03T12:00:00Z", stored, None);
    assert_eq!(
        (
            report.period.first_day,
            report.period.last_day,
            report.period.days
        ),
        (day("2026-10-31"), day("2026-11-03"), 4)
    );
    let identity = purpose(&report, "update_identity");
    assert_eq!(
        identity.days,
        [
            DaySent {
                day: day("2026-11-01"),
                records: 2,
                bytes: 100
            },
            DaySent {
                day: day("2026-11-02"),
                records: 1,
                bytes: 100
            },
        ]
    );
    assert_eq!(
        identity.sent,
        Sent {
            records: 3,
            bytes: 200,
            batches: 2
        }
    );
    let errors = purpose(&report, "installation_errors");
    assert_eq!(
        errors.sent,
        Sent {
            records: 3,
            bytes: 301,
            batches: 1
        }
    );
    assert_eq!(
        report.sent,
        Sent {
            records: 6,
            bytes: 501,
            batches: 2
        }
    );
    assert_eq!(report.failed_attempts, 1);
    let senders: Vec<&str> = report.senders().map(|p| p.id.as_str()).collect();
    // In the catalogue's order.
    assert_eq!(senders, ["installation_errors", "update_identity"]);
}

#[test]
fn shares_add_up_to_the_whole_and_follow_the_weights() {
    assert_eq!(aggregate::shares(401, &[1, 3]), [100, 301]);
    assert_eq!(aggregate::shares(10, &[1, 2]), [3, 7]);
    assert_eq!(aggregate::shares(2, &[1, 1, 1]), [1, 1, 0]);
    assert_eq!(aggregate::shares(5, &[0, 0]), [0, 0]);
    assert_eq!(aggregate::shares(0, &[4]), [0]);
    assert_eq!(
        aggregate::shares(u64::MAX, &[u64::MAX, 1])
            .iter()
            .sum::<u64>(),
        u64::MAX
    );
}

#[test]
fn every_catalogue_purpose_comes_first_in_order_then_any_other_that_did_something() {
    let mut queued = BTreeMap::new();
    queued.insert("promotions".to_owned(), 4);
    queued.insert("retired_purpose".to_owned(), 2);
    let stored = Stored {
        trail: vec![uploaded(
            "2026-11-02T10:00:00Z",
            "a",
            &[("another_gone", 1)],
            10,
        )],
        queued,
        ..Stored::default()
    };
    let report = report("2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z", stored, None);
    let catalogue = Catalogue::embedded();
    let ids: Vec<&str> = report.purposes.iter().map(|p| p.id.as_str()).collect();
    let known: Vec<&str> = catalogue.purposes().map(|p| p.id.as_str()).collect();
    assert_eq!(ids[..known.len()], known[..]);
    assert_eq!(ids[known.len()..], ["another_gone", "retired_purpose"]);
    assert_eq!(purpose(&report, "promotions").queued, 4);
    let gone = purpose(&report, "retired_purpose");
    assert_eq!(
        (gone.title.as_ref(), gone.verdict.as_ref(), gone.queued),
        (None, None, 2)
    );
    let identity = purpose(&report, "update_identity");
    assert_eq!(identity.basis, Some(crate::catalogue::Basis::Contract));
    assert!(!identity.verdict.as_ref().unwrap().is_allowed());
}

#[test]
fn an_empty_period_has_all_its_days_and_says_nothing_was_sent() {
    let report = report(
        "2026-10-31T12:00:00Z",
        "2026-11-30T12:00:00Z",
        Stored::default(),
        None,
    );
    assert_eq!(report.period.days, 31);
    assert_eq!(report.period.each_day().count(), 31);
    assert_eq!(report.sent, Sent::default());
    assert_eq!(report.senders().count(), 0);
    assert!(
        report
            .purposes
            .iter()
            .all(|p| p.days.is_empty() && p.losses.is_empty())
    );
    assert!(report.receipts.is_empty() && report.batches.is_empty() && report.daemon.is_none());

    let html = html::render(&report);
    assert!(
        html.contains("No consent event from 2026-10-31 to 2026-11-30"),
        "{html}"
    );
    assert!(html.contains("Nothing was dropped, dead-lettered, purged or refused."));
    assert!(html.contains("No daemon answered"));
    // No chart of bars when nothing was sent; the timeline is always there.
    assert_eq!(html.matches("<svg").count(), 1);
    let md = markdown::render(&report);
    assert!(md.contains("Sent: 0 records in 0 batch(es)"), "{md}");
}

#[test]
fn a_revoke_in_the_period_is_marked_on_the_purposes_it_concerns_and_its_purge_is_a_loss() {
    let eula = ["update_identity", "installation_errors"];
    let stored = Stored {
        trail: vec![
            uploaded("2026-11-01T09:00:00Z", "a", &[("update_identity", 2)], 200),
            line(
                "2026-11-02T10:00:01Z",
                "purged",
                None,
                "consent withdrawn: installation_errors 1, update_identity 2",
                json!({"purposes": {"installation_errors": 1, "update_identity": 2}}),
            ),
        ],
        receipts: vec![
            receipt("2026-10-01T00:00:00Z", Event::Grant, "eula", &eula),
            receipt("2026-11-02T10:00:00Z", Event::Revoke, "eula", &eula),
            receipt(
                "2026-11-02T11:00:00Z",
                Event::Grant,
                "ksn",
                &["ksn_scan_aggregates"],
            ),
        ],
        ..Stored::default()
    };
    let report = report("2026-10-30T00:00:00Z", "2026-11-03T00:00:00Z", stored, None);
    assert_eq!(report.receipts_before, 1);
    let events: Vec<Event> = report.receipts.iter().map(|r| r.event).collect();
    assert_eq!(events, [Event::Revoke, Event::Grant]);

    let identity = purpose(&report, "update_identity");
    assert_eq!(
        identity.sent.records, 2,
        "what was sent before the revoke stays counted"
    );
    assert_eq!(
        identity.losses,
        [Loss {
            kind: LossKind::Purged,
            reason: "consent withdrawn".into(),
            count: 2,
            unit: Unit::Records,
            span: Span::Period,
        }]
    );
    let chart = chart::purpose_chart(&report, identity);
    assert_eq!(
        chart.matches("class=\"mark ev-revoke\"").count(),
        1,
        "{chart}"
    );
    assert!(
        !chart.contains("ev-grant"),
        "the ksn grant does not concern it: {chart}"
    );
    assert!(
        chart.contains("<title id=\"chart-update_identity-t\">"),
        "{chart}"
    );
    assert!(chart.contains("Consent events marked: 2026-11-02T10:00:00Z withdrawn: eula v2"));

    let timeline = chart::timeline(&report);
    assert_eq!(timeline.matches("<g class=\"mark").count(), 2, "{timeline}");
    let html = html::render(&report);
    assert!(
        html.contains("<td class=\"ev-revoke\">withdrawn</td>"),
        "{html}"
    );
}

#[test]
fn drops_dead_letters_ksn_discards_and_the_door_each_say_what_they_count() {
    let mut dropped = crate::store::Drops::new();
    dropped
        .entry("promotions".into())
        .or_default()
        .insert(crate::store::bounds::QUEUE_FULL.into(), 7);
    let mut door = Door {
        pid: 42,
        ..Door::default()
    };
    door.discarded.insert("ksn_threat_reports".into(), 3);
    door.refused
        .entry("installation_errors".into())
        .or_default()
        .insert("personal_data".into(), 1);
    // A discarded KSN window counts the scan events it had counted.
    let mut window = line(
        "2026-11-02T00:00:00Z",
        "purged",
        None,
        crate::collect::ksn::DISCARD_REASON,
        serde_json::Value::Null,
    );
    window.records = 250;
    let stored = Stored {
        trail: vec![window],
        dead_letters: vec![DeadLetterCount {
            purpose: None,
            reason: Some("receiver answered 422".into()),
            records: 2,
            last_at: None,
        }],
        dropped,
        ..Stored::default()
    };
    let report = report(
        "2026-11-01T00:00:00Z",
        "2026-11-03T00:00:00Z",
        stored,
        Some(door),
    );
    let loss = |id: &str| purpose(&report, id).losses.clone();
    assert_eq!(
        (
            loss("promotions")[0].kind,
            loss("promotions")[0].count,
            loss("promotions")[0].span
        ),
        (LossKind::Dropped, 7, Span::Store)
    );
    let ksn = &loss(crate::collect::ksn::PURPOSE)[0];
    assert_eq!(
        (ksn.kind, ksn.count, ksn.unit),
        (LossKind::Purged, 250, Unit::Events)
    );
    let dead = &loss(words::UNREADABLE_PURPOSE)[0];
    assert_eq!(
        (dead.kind, dead.count, dead.span),
        (LossKind::DeadLettered, 2, Span::Period)
    );
    let discarded = &loss("ksn_threat_reports")[0];
    assert_eq!(
        (
            discarded.kind,
            discarded.count,
            discarded.unit,
            discarded.span
        ),
        (LossKind::Discarded, 3, Unit::Events, Span::Daemon)
    );
    assert_eq!(loss("installation_errors")[0].kind, LossKind::Refused);
    assert_eq!(report.daemon, Some(DaemonSeen { pid: 42 }));
    let md = markdown::render(&report);
    assert!(
        md.contains("| `promotions` | dropped | 7 records | since the store was created |"),
        "{md}"
    );
}

#[test]
fn the_period_keeps_its_newest_days_and_stretches_to_a_line_from_a_clock_set_back() {
    let long = report(
        "1970-01-02T00:00:00Z",
        "2026-11-03T00:00:00Z",
        Stored::default(),
        None,
    );
    assert_eq!(long.period.days, MAX_DAYS);
    assert_eq!(long.period.last_day, day("2026-11-03"));
    let stored = Stored {
        trail: vec![uploaded(
            "2026-11-05T00:00:00Z",
            "a",
            &[("update_identity", 1)],
            1,
        )],
        ..Stored::default()
    };
    let ahead = report("2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z", stored, None);
    assert_eq!(
        (ahead.period.last_day, ahead.period.days),
        (day("2026-11-05"), 5)
    );
}

#[test]
fn a_batch_carries_its_answers_and_a_body_that_cannot_be_read_says_why() {
    let kept = SentBody {
        batch_id: "b1".into(),
        at: "2026-11-02T00:00:00Z".into(),
        records: 3,
        sha256: "00".repeat(32),
        // A gzip stream cut short: its magic, then nothing readable.
        bytes: vec![0x1f, 0x8b, 0, 0, 0, 0, 0, 0],
        drops: Default::default(),
    };
    let trail = vec![
        line(
            "2026-11-02T00:00:00Z",
            "failed",
            Some("b1"),
            "receiver answered 503",
            json!({"status": 503}),
        ),
        uploaded("2026-11-02T00:01:00Z", "b1", &[("update_identity", 3)], 10),
        uploaded(
            "2026-11-02T00:02:00Z",
            "other",
            &[("update_identity", 1)],
            10,
        ),
    ];
    let batch = aggregate::batch(&kept, &trail);
    let answers: Vec<(&str, Option<u16>)> = batch
        .attempts
        .iter()
        .map(|a| (a.event.as_str(), a.status))
        .collect();
    assert_eq!(answers, [("failed", Some(503)), ("uploaded", Some(200))]);
    assert_eq!(batch.answer.event, "uploaded");
    assert_eq!(batch.purposes.get("update_identity"), Some(&3));
    assert_eq!((batch.compressed_bytes, batch.sent_bytes), (8, None));
    assert!(batch.body.text.is_none());
    assert!(
        batch
            .body
            .reason
            .as_deref()
            .unwrap()
            .contains("cannot be decompressed"),
        "{batch:?}"
    );

    let pending = aggregate::batch(&kept, &[]);
    assert_eq!(pending.answer.event, "pending");
    assert!(pending.purposes.is_empty());
}

#[test]
fn the_page_escapes_what_it_quotes_and_asks_for_nothing_outside_itself() {
    let stored = Stored {
        trail: vec![uploaded(
            "2026-11-02T00:00:00Z",
            "<b>",
            &[("<script>x</script>", 1)],
            5,
        )],
        receipts: vec![receipt(
            "2026-11-02T00:00:00Z",
            Event::Revoke,
            "eula\"><i>",
            &[],
        )],
        ..Stored::default()
    };
    let report = report("2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z", stored, None);
    let html = html::render(&report);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<i>"), "{html}");
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
    for outside in [
        "http:", "https:", "src=", "url(", "@import", "<link", "<img", "<iframe",
    ] {
        assert!(!html.contains(outside), "{outside} in the page");
    }
    for href in html.split("href=\"").skip(1) {
        assert!(href.starts_with('#'), "a link out of the page: {href}");
    }
    assert!(html.contains("default-src 'none'"));
    assert!(html.contains("prefers-color-scheme:dark"));
}
