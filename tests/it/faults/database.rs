//! The database damaged under a running daemon: a page in the middle of
//! the queue's segments overwritten while the daemon has it open (a disk or a program
//! writing where it must not). SQLite notices when it reads the page;
//! the daemon must run on, say so in `status`, and at the next start
//! move the file aside (quarantine, `store::open`) with what it held
//! counted, instead of working on a damaged file.
//!
//! The records on a damaged page are lost with it; every other queued
//! record of the moved file is recovered into the fresh store (under its
//! own rowid, a batch in flight under its own id) and delivered.

use std::io::{Seek, SeekFrom, Write};

use super::ledger::Ledger;
use crate::support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_damaged_under_the_daemon_is_reported_then_quarantined() {
    // Batches of 1,000, as this test counts them below.
    let world = World::with_upload_extra("batch_max_records = 1000").await;
    world.receiver.set_status(503);
    world.ok(&["consent", "grant", "eula"]).await;
    let daemon = world.spawn_daemon().await;
    let socket = world.ingest_socket();
    let mut ledger = Ledger::default();
    // Three batches' worth: the page damaged below, among the middle
    // frames, holds records of the second, which is claimed afresh after
    // the 503s (the first goes again from its kept body, unread; with two
    // batches' worth the middle sat on their edge, and the damage could
    // miss everything read after it).
    for _ in 0..15 {
        assert!(ledger.send(&socket, 200).await);
    }
    // Everything into the main file (another connection may checkpoint),
    // then a page in its middle overwritten.
    let db = world.path("state/consentry.sqlite3");
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(reader);
    // A page in the middle of the queue's packed segments.
    let middle = crate::support::page_among_packed_segments(&std::fs::read(&db).unwrap(), 20)
        .expect("the queue's segments are in the file");
    let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.seek(SeekFrom::Start(middle)).unwrap();
    file.write_all(&[0xa5; 4096]).unwrap();
    file.sync_all().unwrap();
    drop(file);

    // The uploader reads the queue: it meets the damage. The daemon runs
    // on and says so.
    world.receiver.set_status(200);
    let flush = world.run(&["flush"]).await;
    let status = world.status().await;
    let fault = status["daemon"]["store"]["fault"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let said = String::from_utf8_lossy(&flush.stderr).into_owned() + &fault;
    assert!(
        said.contains("malformed") || said.contains("corrupt"),
        "the damage went unreported: flush {flush:?}; status {status}"
    );
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // The next start moves it aside and counts what it held.
    let daemon = world.spawn_daemon().await;
    let status = world.status().await;
    let quarantine = &status["daemon"]["store"]["quarantine"];
    assert!(
        quarantine["reason"]
            .as_str()
            .unwrap_or("")
            .contains("damaged"),
        "{status}"
    );
    let before = super::ledger::delivered_keys(&world).len();
    let requests_before = world.receiver.requests().len();
    let recovered = quarantine["recovered"].as_u64().expect("records recovered");
    assert!(recovered > 0, "{status}");
    world.ok(&["flush"]).await;
    world
        .status_until("delivered what was recovered", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    let delivered = super::ledger::delivered_keys(&world);
    let lost = ledger
        .acked
        .iter()
        .filter(|code| !delivered.contains_key(code))
        .count() as u64;
    // Only what was on the damaged page may be missing: what the file held
    // and could not be read back (a segment whose overflow chain runs
    // through the page is lost whole), and any record the claim found
    // unreadable, dead-lettered with why. What the file held: counted in
    // it, or, when that count has to read the damaged page (a segment's
    // `records` column sits after its lines), the acknowledged install
    // tasks and the daemon's own records (its collectors') that were
    // recovered and sent since.
    let own_recovered = world.receiver.requests()[requests_before..]
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter_map(|r| r.envelope.as_ref().ok())
        .flat_map(|e| &e.records)
        .filter(|record| record.purpose != "installation_errors")
        .count() as u64;
    let held = quarantine["records"]
        .as_u64()
        .unwrap_or(ledger.acked.len() as u64 + own_recovered);
    let db = rusqlite::Connection::open(world.path("state/consentry.sqlite3")).unwrap();
    let (unreadable, dead): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*) FILTER (WHERE reason LIKE 'stored record%'),
                    COUNT(*) FROM dead_letter",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        unreadable, dead,
        "only unreadable records are dead-lettered"
    );
    let unreadable = unreadable as u64;
    assert!(
        lost <= held - recovered + unreadable,
        "{lost} lost; {held} held, {recovered} recovered, {unreadable} dead-lettered as unreadable"
    );
    assert!(
        delivered.values().all(|keys| keys.len() == 1),
        "a record delivered under two batch ids"
    );
    eprintln!(
        "faults: database damaged while running: {} acknowledged, {before} delivered before the restart, {held} counted in the quarantined file, {recovered} recovered, {unreadable} of them dead-lettered as unreadable, {lost} lost (on the damaged page); flush said: {}",
        ledger.acked.len(),
        fault
    );
    daemon.terminate().await;
}
