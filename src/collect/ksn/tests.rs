use super::*;
use crate::store::Writer;

fn object(n: u64) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(n.to_le_bytes()))
}

#[test]
fn object_hashes_need_64_hex_digits_in_either_case() {
    let hex = object(7);
    assert_eq!(object_hash(&hex), object_hash(&hex.to_uppercase()));
    assert!(object_hash(&hex[..63]).is_none());
    assert!(object_hash(&format!("{}g", &hex[..63])).is_none());
    assert_ne!(object_hash(&object(1)), object_hash(&object(2)));
}

#[test]
fn unique_counts_stay_within_the_stated_error_in_fixed_memory() {
    let mut aggregate = KsnAggregate::new();
    let distinct = 200_000u64;
    let mut delta = KsnDelta::default();
    for n in 0..1_000_000u64 {
        let id = n % distinct;
        let verdict = [Verdict::Unknown, Verdict::Trusted, Verdict::Untrusted][(id % 3) as usize];
        delta.verdict(
            object_hash(&object(id)).unwrap(),
            verdict,
            TrustReason::None,
        );
        if delta.events() == 4096 {
            aggregate.fold(&delta, SystemTime::now());
            delta = KsnDelta::default();
        }
    }
    aggregate.fold(&delta, SystemTime::now());
    for (verdict, expected) in [
        (Verdict::Unknown, 66_667f64),
        (Verdict::Trusted, 66_667f64),
        (Verdict::Untrusted, 66_666f64),
    ] {
        let got = aggregate.unique(verdict) as f64;
        let error = (got - expected).abs() / expected;
        assert!(
            error < 3.0 * STANDARD_ERROR,
            "{verdict:?}: {got} vs {expected}"
        );
    }
    assert_eq!(aggregate.counters().unknown_statuses, 333_335);
    assert_eq!(aggregate.counters().unknown_undecided, 333_335);
    assert_eq!(aggregate.sketch_bytes(), 6 * 16 * 1024);
}

#[test]
fn reasons_and_requests_land_in_their_counters() {
    let mut delta = KsnDelta::default();
    let h = object_hash(&object(1)).unwrap();
    delta.verdict(h, Verdict::Trusted, TrustReason::Certificate);
    delta.verdict(h, Verdict::Trusted, TrustReason::WebAddress);
    delta.verdict(h, Verdict::Trusted, TrustReason::ProcessTrust);
    delta.verdict(h, Verdict::Trusted, TrustReason::User);
    delta.verdict(h, Verdict::Unknown, TrustReason::Certificate);
    delta.request(true, 30, 100, 2000);
    delta.request(false, 5, 10, 0);
    let mut aggregate = KsnAggregate::new();
    assert!(
        aggregate.report(SystemTime::now(), &[]).is_none(),
        "empty window"
    );
    aggregate.fold(&delta, SystemTime::now());
    let c = aggregate.counters();
    assert_eq!(
        (
            c.trusted_statuses,
            c.trusted_by_certificate,
            c.trusted_by_web_address
        ),
        (4, 1, 1)
    );
    assert_eq!((c.trusted_by_process_trust, c.user_trusted), (1, 1));
    assert_eq!((c.unknown_statuses, c.unknown_undecided), (1, 0));
    assert_eq!((c.requests_succeeded, c.requests_failed), (1, 1));
    assert_eq!(
        (c.session_duration_ms, c.bytes_sent, c.bytes_received),
        (35, 110, 2000)
    );
    let report = aggregate.report(SystemTime::now(), &[]).unwrap();
    crate::catalogue::Catalogue::embedded()
        .check(&report)
        .unwrap();
    assert_eq!(
        report.fields["unique_trusted_objects"],
        FieldValue::Integer(1)
    );
}

#[tokio::test]
async fn a_committed_window_survives_a_restart_exactly_and_a_reset_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = Writer::spawn(dir.path(), KsnAggregate::new()).unwrap();
    for chunk in 0..10u64 {
        let mut delta = KsnDelta::default();
        for n in 0..1000 {
            let h = object_hash(&object(chunk * 1000 + n)).unwrap();
            delta.verdict(h, Verdict::Untrusted, TrustReason::None);
        }
        writer
            .call(move |_, agg: &mut KsnAggregate| {
                agg.fold(&delta, SystemTime::now());
                Ok(())
            })
            .await
            .unwrap();
    }
    let before = writer
        .call(|_, agg| Ok(agg.unique(Verdict::Untrusted)))
        .await
        .unwrap();
    drop(writer);
    thread.join().unwrap();

    let (writer, thread) = Writer::spawn(dir.path(), KsnAggregate::new()).unwrap();
    let (after, statuses) = writer
        .call(|_, agg| {
            Ok((
                agg.unique(Verdict::Untrusted),
                agg.counters().untrusted_statuses,
            ))
        })
        .await
        .unwrap();
    assert_eq!(after, before, "the sketch came back register for register");
    assert_eq!(statuses, 10_000);
    writer
        .call(|_, agg| {
            agg.reset();
            Ok(())
        })
        .await
        .unwrap();
    drop(writer);
    thread.join().unwrap();

    let (writer, thread) = Writer::spawn(dir.path(), KsnAggregate::new()).unwrap();
    let (unique, started) = writer
        .call(|_, agg| Ok((agg.unique(Verdict::Untrusted), agg.started_at())))
        .await
        .unwrap();
    assert_eq!((unique, started), (0, None));
    drop(writer);
    thread.join().unwrap();
}

/// A delta of one `ksn_request` that sent `bytes`.
fn sent(bytes: u64) -> KsnDelta {
    let mut delta = KsnDelta::default();
    delta.request(true, 0, bytes, 0);
    delta
}

#[test]
fn two_requests_of_the_largest_count_cap_bytes_sent_and_say_so() {
    let largest = i64::MAX as u64;
    let mut aggregate = KsnAggregate::new();
    aggregate.fold(&sent(largest), SystemTime::now());
    assert!(aggregate.capped().is_zero(), "exactly full is not capped");
    aggregate.fold(&sent(largest), SystemTime::now());
    let report = aggregate.report(SystemTime::now(), &[]).unwrap();
    assert_eq!(report.fields["bytes_sent"], FieldValue::Integer(i64::MAX));
    assert_eq!(aggregate.counters().requests_succeeded, 2);
    assert_eq!(
        aggregate.capped().nonzero().collect::<Vec<_>>(),
        [("bytes_sent", 1)]
    );
    assert_eq!(
        aggregate.capped_summary().as_deref(),
        Some("bytes_sent (1 addition)")
    );
}

#[test]
fn caps_within_one_chunk_reach_the_window() {
    let mut delta = KsnDelta::default();
    for _ in 0..3 {
        delta.request(false, u64::MAX, 1, 0);
    }
    let mut aggregate = KsnAggregate::new();
    aggregate.fold(&delta, SystemTime::now());
    let c = aggregate.counters();
    assert_eq!((c.session_duration_ms, c.bytes_sent), (COUNTER_MAX, 3));
    assert_eq!(
        aggregate.capped().nonzero().collect::<Vec<_>>(),
        [("session_duration_ms", 3)]
    );
}

#[test]
fn a_verdict_count_at_the_maximum_is_capped_too() {
    let mut delta = KsnDelta {
        counters: Counters {
            trusted_statuses: COUNTER_MAX,
            ..Counters::default()
        },
        ..KsnDelta::default()
    };
    let h = object_hash(&object(1)).unwrap();
    delta.verdict(h, Verdict::Trusted, TrustReason::User);
    assert_eq!(delta.counters.trusted_statuses, COUNTER_MAX);
    assert_eq!(delta.counters.user_trusted, 1);
    assert_eq!(
        delta.capped.nonzero().collect::<Vec<_>>(),
        [("trusted_statuses", 1)]
    );
}

#[test]
fn a_counter_is_announced_capped_once_per_window() {
    let largest = i64::MAX as u64;
    let mut aggregate = KsnAggregate::new();
    assert!(aggregate.add_counts(&sent(largest)).is_empty());
    assert_eq!(aggregate.add_counts(&sent(largest)), ["bytes_sent"]);
    assert!(aggregate.add_counts(&sent(largest)).is_empty(), "once");
    assert_eq!(aggregate.capped().bytes_sent, 2);
    aggregate.reset();
    assert!(aggregate.capped().is_zero());
    aggregate.add_counts(&sent(largest));
    assert_eq!(
        aggregate.add_counts(&sent(largest)),
        ["bytes_sent"],
        "a new window"
    );
}

#[test]
fn caps_are_saved_with_the_window_and_a_window_without_one_saves_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let mut aggregate = KsnAggregate::new();
    aggregate.fold(&sent(1), SystemTime::now());
    store.write(|c| aggregate.checkpoint(c)).unwrap();
    let saved = store
        .read(crate::store::ksn_window::summary)
        .unwrap()
        .unwrap();
    assert!(!saved.contains("capped"), "{saved}");

    aggregate.fold(&sent(COUNTER_MAX), SystemTime::now());
    store.write(|c| aggregate.checkpoint(c)).unwrap();
    let mut again = KsnAggregate::new();
    store.read(|c| again.reload(c)).unwrap();
    assert_eq!(again.counters().bytes_sent, COUNTER_MAX);
    assert_eq!(again.capped().bytes_sent, 1);
}

#[test]
fn a_window_saved_past_the_maximum_is_stopped_there_and_counted_capped() {
    // As the build before the cap saved it: u64 counters, no `capped`.
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let old = serde_json::json!({
        "started_at": 1_700_000_000u64,
        "counters": Counters { bytes_sent: u64::MAX - 1, ..Counters::default() },
    });
    store
        .write(|c| crate::store::ksn_window::set_summary(c, &old.to_string()))
        .unwrap();
    let mut aggregate = KsnAggregate::new();
    store.read(|c| aggregate.reload(c)).unwrap();
    assert_eq!(aggregate.counters().bytes_sent, COUNTER_MAX);
    assert_eq!(aggregate.capped().bytes_sent, 1);
}

#[test]
fn a_capped_report_leaves_an_audit_line_and_an_uncapped_one_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let mut aggregate = KsnAggregate::new();
    aggregate.fold(&sent(1), SystemTime::now());
    store.write(|c| audit_capped(&aggregate, c)).unwrap();
    assert!(store.recent_audit(10).unwrap().is_empty());

    aggregate.fold(&sent(COUNTER_MAX), SystemTime::now());
    aggregate.fold(&sent(COUNTER_MAX), SystemTime::now());
    store.write(|c| audit_capped(&aggregate, c)).unwrap();
    let trail = store.recent_audit(10).unwrap();
    let [line] = trail.as_slice() else {
        panic!("{trail:?}");
    };
    assert_eq!((line.event.as_str(), line.records), (CAPPED_EVENT, 1));
    assert!(line.detail.contains("bytes_sent (2 additions)"), "{line:?}");
    assert_eq!(
        line.facts,
        Some(serde_json::json!({
            "purposes": { PURPOSE: 1 },
            "capped": { "bytes_sent": 2 },
            "max": COUNTER_MAX,
        }))
    );
}
