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
