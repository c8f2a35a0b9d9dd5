//! Tests of the claim: ranges, heads, retries, dead-lettering.
use super::*;
use crate::gate::test_record;
use crate::store::queue::enqueue;

fn store() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let opened = crate::store::open_connection(dir.path()).unwrap();
    (dir, opened.connection)
}

fn limits(records: usize) -> BatchLimits {
    BatchLimits {
        records,
        bytes: u64::MAX,
    }
}

#[test]
fn a_claim_is_ranges_that_hold_its_records_and_nothing_else() {
    let (_dir, c) = store();
    // a b a a b a: claiming `a` makes three ranges, [1], [3, 4], [6].
    for purpose in ["a", "b", "a", "a", "b", "a"] {
        enqueue(&c, &[test_record(purpose, 1)]).unwrap();
    }
    let batch = claim_batch(&c, limits(10), &["a"]).unwrap().unwrap();
    assert_eq!(batch.len(), 4);
    assert_eq!(ranges(&c, batch.id).unwrap(), vec![(1, 1), (3, 4), (6, 6)]);
    // A record that arrives later is never part of it.
    enqueue(&c, &[test_record("a", 2)]).unwrap();
    assert_eq!(
        batch_bytes(&c, batch.id).unwrap(),
        4 * test_record("a", 1).size() as u64
    );
    assert_eq!(complete_batch(&c, batch.id, "uploaded", "ok").unwrap(), 4);
    let left: Vec<String> = c
        .prepare("SELECT purpose FROM queue ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, ["b", "b", "a"]);
    assert!(claims(&c).unwrap().is_empty());
}

#[test]
fn a_gap_left_by_a_removed_record_does_not_split_a_range() {
    let (_dir, c) = store();
    for n in 0..5 {
        enqueue(&c, &[test_record("a", n)]).unwrap();
    }
    c.execute("DELETE FROM queue WHERE id = 3", []).unwrap();
    let batch = claim_batch(&c, limits(10), &["a"]).unwrap().unwrap();
    assert_eq!(ranges(&c, batch.id).unwrap(), vec![(1, 5)]);
    assert_eq!(batch.len(), 4);
}

#[test]
fn a_retry_keeps_its_id_until_its_records_are_gone_or_not_sendable() {
    let (_dir, c) = store();
    for purpose in ["a", "b", "a"] {
        enqueue(&c, &[test_record(purpose, 1)]).unwrap();
    }
    let first = claim_batch(&c, limits(10), &["a", "b"]).unwrap().unwrap();
    let again = claim_batch(&c, limits(10), &["a", "b"]).unwrap().unwrap();
    assert_eq!(first.id, again.id);
    // `b` may no longer be sent: the batch is claimed afresh without it.
    let narrower = claim_batch(&c, limits(10), &["a"]).unwrap().unwrap();
    assert_ne!(narrower.id, first.id);
    assert_eq!(narrower.len(), 2);
    // Its records purged from under it: nothing is left to claim.
    release_holding(&c, "a").unwrap();
    c.execute("DELETE FROM queue WHERE purpose = 'a'", [])
        .unwrap();
    assert!(claim_batch(&c, limits(10), &["a"]).unwrap().is_none());
}

#[test]
fn the_batch_in_flight_is_never_evicted_and_dead_letters_as_a_whole() {
    let (_dir, c) = store();
    for n in 0..4 {
        enqueue(&c, &[test_record("a", n)]).unwrap();
    }
    let batch = claim_batch(&c, limits(2), &["a"]).unwrap().unwrap();
    let unclaimed: i64 = c
        .query_row(
            &format!("SELECT COUNT(*) FROM queue WHERE {UNCLAIMED}"),
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(unclaimed, 2);
    assert_eq!(
        dead_letter_batch(&c, batch.id, Some(422), "refused").unwrap(),
        2
    );
    let dead: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM dead_letter WHERE status = 422",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(dead, 2);
    assert!(claims(&c).unwrap().is_empty());
}

#[test]
fn a_segment_larger_than_a_batch_goes_in_heads_and_keeps_its_place() {
    let (_dir, c) = store();
    enqueue(
        &c,
        &(0..10).map(|n| test_record("a", n)).collect::<Vec<_>>(),
    )
    .unwrap();
    enqueue(&c, &[test_record("a", 10)]).unwrap();
    let numbers = |batch: &Batch| -> Vec<i64> {
        batch
            .record_vec()
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.fields_json).unwrap()["n"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    let first = claim_batch(&c, limits(4), &["a"]).unwrap().unwrap();
    assert_eq!(numbers(&first), [0, 1, 2, 3]);
    assert_eq!(
        batch_bytes(&c, first.id).unwrap(),
        4 * test_record("a", 1).size() as u64
    );
    // A retry is the same four.
    let again = claim_batch(&c, limits(4), &["a"]).unwrap().unwrap();
    assert_eq!((again.id, numbers(&again)), (first.id, vec![0, 1, 2, 3]));
    assert_eq!(complete_batch(&c, first.id, "uploaded", "ok").unwrap(), 4);
    // The rest of the segment is still first in line, in its row.
    let next = claim_batch(&c, limits(7), &["a"]).unwrap().unwrap();
    assert_eq!(numbers(&next), [4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(ranges(&c, next.id).unwrap(), vec![(1, 2)]);
    // Bytes limit: at least one record, however large.
    release_batch(&c, next.id).unwrap();
    let tiny = BatchLimits {
        records: 100,
        bytes: 1,
    };
    let one = claim_batch(&c, tiny, &["a"]).unwrap().unwrap();
    assert_eq!(numbers(&one), [4]);
    assert_eq!(
        dead_letter_batch(&c, one.id, Some(400), "refused").unwrap(),
        1
    );
    let rest = claim_batch(&c, limits(100), &["a"]).unwrap().unwrap();
    assert_eq!(numbers(&rest), [5, 6, 7, 8, 9, 10]);
}

#[test]
fn a_claim_beside_a_held_one_takes_no_segment_it_touches_and_retries_go_oldest_first() {
    let (_dir, c) = store();
    // Three segments of three records each.
    for chunk in 0..3 {
        let records: Vec<_> = (0..3).map(|n| test_record("a", 3 * chunk + n)).collect();
        enqueue(&c, &records).unwrap();
    }
    // The batch on the wire: the first segment whole and the head of the
    // second.
    let held = claim_batch(&c, limits(5), &["a"]).unwrap().unwrap();
    assert_eq!(held.len(), 5);
    // Beside it: not the rest of the second segment (its head is held),
    // the third.
    let (ahead, _) = claim_batch_counting(&c, limits(5), &["a"], Some(held.id)).unwrap();
    let ahead = ahead.unwrap();
    assert_eq!(ahead.len(), 3);
    assert_eq!(claims(&c).unwrap(), vec![held.id, ahead.id]);
    // Beside the held one again: the same batch, as a retry.
    let (again, _) = claim_batch_counting(&c, limits(5), &["a"], Some(held.id)).unwrap();
    assert_eq!(again.unwrap().id, ahead.id);
    // On its own (after a restart): the oldest claim first, then the next.
    assert_eq!(
        claim_batch(&c, limits(5), &["a"]).unwrap().unwrap().id,
        held.id
    );
    complete_batch(&c, held.id, "uploaded", "ok").unwrap();
    assert_eq!(
        claim_batch(&c, limits(5), &["a"]).unwrap().unwrap().id,
        ahead.id
    );
    complete_batch(&c, ahead.id, "uploaded", "ok").unwrap();
    // What the held head left of its segment goes last.
    let rest = claim_batch(&c, limits(5), &["a"]).unwrap().unwrap();
    assert_eq!(rest.len(), 1);
    assert!(claimed_now(&c, &rest.id.to_string()).unwrap());
    // A purge releases a claim: a body built for it must not be kept.
    crate::store::queue::purge_blocked(&c, |_| false, "test").unwrap();
    assert!(!claimed_now(&c, &rest.id.to_string()).unwrap());
}

#[test]
fn the_claims_statements_are_compiled_once_whatever_batch_they_are_bound_to() {
    let (_dir, c) = store();
    for n in 0..20 {
        enqueue(&c, &[test_record("a", n)]).unwrap();
    }
    // One of the joins of `claim` to `queue` on a batch id.
    const BYTES: &str =
        "SELECT COALESCE(SUM(CASE WHEN c.head IS NULL THEN q.size ELSE c.head_bytes END), 0)
             FROM claim c JOIN queue q ON q.id BETWEEN c.first AND c.last
             WHERE c.batch_id = ?1";
    for _ in 0..4 {
        let batch = claim_batch(&c, limits(5), &["a"]).unwrap().unwrap();
        batch_bytes(&c, batch.id).unwrap();
        batch_bytes(&c, uuid::Uuid::new_v4()).unwrap();
        complete_batch(&c, batch.id, "uploaded", "ok").unwrap();
    }
    let compiled_again = c
        .prepare_cached(BYTES)
        .unwrap()
        .get_status(rusqlite::StatementStatus::RePrepare);
    assert_eq!(compiled_again, 0);
}
