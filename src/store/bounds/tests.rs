//! Tests of the store's bounds: eviction by priority, age and per-purpose
//! retention, drop counts, batch limits.
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

/// `expire_in_flight` at `now`, beside batch `held`.
fn expire(store: &Store, bounds: &Bounds, now: SystemTime, held: Option<uuid::Uuid>) -> u64 {
    store
        .write(|c| expire_in_flight(c, bounds, now, held))
        .unwrap()
}

fn count(store: &Store, purpose: &str) -> i64 {
    store
        .read(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(records), 0) FROM queue WHERE purpose = ?1",
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
    let crate::store::segment::Stored(oldest_left) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT lines FROM queue WHERE purpose = 'normal' ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let first = crate::store::segment::Line::parse(oldest_left.split('\n').next().unwrap())
        .unwrap()
        .fields
        .get()
        .to_owned();
    assert_eq!(first, format!("{{\"n\":{}}}", 100 - normal));

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
fn a_purpose_retention_shorter_than_the_store_s_expires_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let purposes = [
        ("brief", Priority::Normal),
        ("long", Priority::Normal),
        ("plain", Priority::Normal),
    ];
    let (store, mut bounds) = store(dir.path(), &purposes, 2);
    // Collected at 2026-01-01; ten days later.
    let now = humantime::parse_rfc3339("2026-01-11T00:00:00Z").unwrap();
    let day = Duration::from_secs(86_400);
    bounds.max_record_age = 20 * day;
    bounds.retention = [("brief".to_owned(), 7 * day), ("long".to_owned(), 90 * day)].into();
    assert_eq!(store.write(|c| housekeep(c, &bounds, now)).unwrap(), 2);
    assert_eq!(count(&store, "brief"), 0);
    assert_eq!(count(&store, "long"), 2);
    assert_eq!(count(&store, "plain"), 2);
    let audit = store.recent_audit(5).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.detail == "older than brief's retention (7days)"),
        "{audit:?}"
    );

    // The store's limit is the smaller for `long`: it goes with the rest.
    bounds.max_record_age = 9 * day;
    assert_eq!(store.write(|c| housekeep(c, &bounds, now)).unwrap(), 4);
    let drops = store.read(|c| drops(c, false, |_| true)).unwrap();
    for purpose in ["brief", "long", "plain"] {
        assert_eq!(drops[purpose][TOO_OLD], 2, "{purpose}");
    }
}

#[test]
fn bounds_take_each_purpose_retention_from_the_catalogue() {
    let text = crate::catalogue::EMBEDDED.replace(
        "id = \"activation\"",
        "id = \"activation\"\nretention = \"3d\"",
    );
    let document = crate::document::Document {
        origin: crate::document::Origin::Embedded("edited catalogue"),
        text,
    };
    let catalogue = Catalogue::from_document(&document).unwrap();
    let bounds = Bounds::new(&StoreConfig::default(), &catalogue);
    assert_eq!(
        bounds.retention["activation"],
        Duration::from_secs(3 * 86_400)
    );
    assert!(!bounds.retention.contains_key("update_identity"));
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
    assert_eq!(batch.len(), 3);
    store.complete_batch(batch.id, "uploaded", "t").unwrap();
    let tiny = BatchLimits {
        records: 100,
        bytes: 1,
    };
    let batch = store
        .write(|c| queue::claim_batch(c, tiny, &["a"]))
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1);
}

#[test]
fn a_batch_in_flight_past_its_records_age_is_released_and_they_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut bounds) = store(dir.path(), &[("a", Priority::Normal)], 3);
    let batch = store.claim_batch(3, &["a"]).unwrap().unwrap();
    // test_record is collected at 2026-01-01.
    let now = humantime::parse_rfc3339("2026-01-31T00:00:00Z").unwrap();
    bounds.max_record_age = Duration::from_secs(40 * 86_400);
    assert_eq!(store.write(|c| housekeep(c, &bounds, now)).unwrap(), 0);
    assert_eq!(expire(&store, &bounds, now, None), 0);
    assert_eq!(
        store.claim_batch(3, &["a"]).unwrap().unwrap().id,
        batch.id,
        "within the age: the retry keeps its id"
    );
    // Past it, nothing happens before housekeeping has looked ...
    bounds.max_record_age = Duration::from_secs(20 * 86_400);
    assert_eq!(expire(&store, &bounds, now, None), 0);
    assert_eq!(count(&store, "a"), 3);
    // ... which leaves the batch in flight alone but marks it ...
    assert_eq!(store.write(|c| housekeep(c, &bounds, now)).unwrap(), 0);
    assert_eq!(count(&store, "a"), 3);
    // ... and before the next claim it is released and dropped.
    assert_eq!(expire(&store, &bounds, now, None), 3);
    assert_eq!(count(&store, "a"), 0);
    assert!(store.claim_batch(3, &["a"]).unwrap().is_none());
    let drops = store.read(|c| drops(c, false, |_| true)).unwrap();
    assert_eq!(drops["a"][TOO_OLD], 3);
}

#[test]
fn a_batch_on_the_wire_past_its_age_is_released_only_once_it_is_no_longer_held() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut bounds) = store(dir.path(), &[("a", Priority::Normal)], 3);
    store
        .enqueue(&(3..6).map(|i| test_record("a", i)).collect::<Vec<_>>())
        .unwrap();
    let now = humantime::parse_rfc3339("2026-01-31T00:00:00Z").unwrap();
    bounds.max_record_age = Duration::from_secs(20 * 86_400);
    let held = store.claim_batch(3, &["a"]).unwrap().unwrap();
    let (ahead, _) = store
        .write(|c| queue::claim_batch_counting(c, BatchLimits::records(3), &["a"], Some(held.id)))
        .unwrap();
    let ahead = ahead.unwrap();
    // Housekeeping marks both; the claim beside `held` releases the other
    // one only, and `held` stays marked.
    assert_eq!(store.write(|c| housekeep(c, &bounds, now)).unwrap(), 0);
    assert_eq!(
        expire(&store, &bounds, now, Some(held.id)),
        3,
        "the batch beside it is released and its records dropped"
    );
    assert!(
        !store
            .read(|c| queue::claimed_now(c, &ahead.id.to_string()))
            .unwrap()
    );
    assert!(
        store
            .read(|c| queue::claimed_now(c, &held.id.to_string()))
            .unwrap()
    );
    assert_eq!(count(&store, "a"), 3);
    // Once it is no longer on the wire, it goes too.
    assert_eq!(expire(&store, &bounds, now, None), 3);
    assert_eq!(count(&store, "a"), 0);
}
