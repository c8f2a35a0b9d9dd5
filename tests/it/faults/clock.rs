//! Wall-clock jumps under a running daemon, through libfaketime
//! (`LD_PRELOAD`): the daemon's wall clock reads a file the test rewrites
//! (`FAKETIME_TIMESTAMP_FILE`, re-read on every call with
//! `FAKETIME_NO_CACHE=1`), and its monotonic clock is left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as when an administrator or NTP
//! steps the clock. Without libfaketime the tests say `SKIPPED: …`.
//!
//! The daemon's timers run on the monotonic clock (tokio), so a jump
//! must neither stall uploads nor hurry them; records, receipts and the
//! consent file are dated by the wall clock, and a jump must not make
//! any of them unusable. `max_record_age` is measured by the wall clock
//! that dates the records: a jump forward past it drops them at the next
//! housekeeping, counted and reported (`docs/reliability.md`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ledger::{Ledger, assert_conserved};
use super::mount::skip;
use crate::support::{Daemon, World, within};

/// Where distributions put libfaketime (or `CONSENTRY_LIBFAKETIME`): its
/// multi-threaded build, as the daemon reads the clock from several
/// threads while the file that sets it is re-read.
const LIBFAKETIME: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

fn libfaketime() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CONSENTRY_LIBFAKETIME") {
        return Some(PathBuf::from(path));
    }
    LIBFAKETIME
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// A daemon whose wall clock is real time shifted by what `clock` says
/// (`+0`, `+40d`, `-3d`).
async fn daemon_on_a_clock(world: &World, library: &Path, clock: &Path) -> Daemon {
    let library = library.display().to_string();
    let clock = clock.display().to_string();
    world
        .spawn_daemon_with(&[
            ("LD_PRELOAD", &library),
            ("FAKETIME_TIMESTAMP_FILE", &clock),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ])
        .await
}

/// Sets the daemon's clock: `offset` from real time.
fn set_clock(clock: &Path, offset: &str) {
    std::fs::write(clock, format!("{offset}\n")).unwrap();
}

/// A world whose receiver answers 503, libfaketime, and the clock file
/// set to now; `None` (the test says `SKIPPED`) without libfaketime.
async fn faked(test: &str) -> Option<(World, std::path::PathBuf, std::path::PathBuf)> {
    let Some(library) = libfaketime() else {
        skip(test, "libfaketime not found (apt-get install faketime)");
        return None;
    };
    let world = World::with_eula_answering(503).await;
    let clock = world.path("clock");
    set_clock(&clock, "+0");
    Some((world, library, clock))
}

/// Attempts the receiver saw in the next `window`.
async fn attempts_during(world: &World, window: Duration) -> usize {
    let before = world.receiver.attempts().len();
    tokio::time::sleep(window).await;
    world.receiver.attempts().len() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_neither_stall_uploads_nor_lose_records() {
    let Some((world, library, clock)) = faked("faults::clock::wall_clock_jumps").await else {
        return;
    };
    let daemon = daemon_on_a_clock(&world, &library, &clock).await;
    let socket = world.ingest_socket();
    let mut ledger = Ledger::default();
    assert!(ledger.send(&socket, 100).await);

    // Uploads go on being tried at the backoff's pace (at most 1 s apart
    // here, never closer than 100 ms) whichever way the clock jumps.
    let window = Duration::from_secs(3);
    let mut tried = Vec::new();
    for offset in ["+40d", "-3d", "+0"] {
        set_clock(&clock, offset);
        assert!(
            ledger.send(&socket, 100).await,
            "ingest refused after a jump to {offset}: {:?}",
            ledger.first_refusal
        );
        let attempts = attempts_during(&world, window).await;
        assert!(
            (2..=30).contains(&attempts),
            "{attempts} attempts in {window:?} after a jump to {offset}"
        );
        tried.push((offset, attempts));
        let status = world.status().await;
        let decisions = status["daemon"]["decisions"].to_string();
        assert!(
            !decisions.contains("future"),
            "a jump to {offset} blocked a purpose: {decisions}"
        );
    }
    // Then the receiver recovers: all of it arrives, on the daemon's own
    // schedule (no flush).
    world.receiver.set_status(200);
    world
        .status_until("delivered after the jumps", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    let conservation = assert_conserved(&world, &ledger, "clock jumps");
    eprintln!(
        "faults: clock jumps {tried:?} (offset, attempts in {window:?}); {} acknowledged, {} lost",
        conservation.acked, conservation.lost
    );
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_forward_past_max_record_age_drops_old_records_counted_never_silently() {
    let Some((world, library, clock)) =
        faked("faults::clock::a_jump_forward_past_max_record_age").await
    else {
        return;
    };
    let daemon = daemon_on_a_clock(&world, &library, &clock).await;
    // Hold the send lock as another sender would, so that the daemon
    // queues the records but claims none of them for a batch: a batch in
    // flight is never dropped (`store::bounds`), and whether the uploader
    // claimed one before the stop below would be a race.
    let sender = std::fs::OpenOptions::new()
        .write(true)
        .open(world.path("state/send.lock"))
        .unwrap();
    sender.lock().unwrap();
    let mut ledger = Ledger::default();
    assert!(ledger.send(&world.ingest_socket(), 100).await);
    daemon.terminate().await;
    drop(sender);

    // Started again 40 days later by its clock (the housekeeping runs at
    // start): the 30-day bound drops what was queued, and says so.
    set_clock(&clock, "+40d");
    let daemon = daemon_on_a_clock(&world, &library, &clock).await;
    let counted = within(crate::support::PATIENCE, async || {
        let status = world.status().await;
        let dropped = &status["daemon"]["store"]["dropped"]["installation_errors"]["too_old"];
        if dropped.as_u64() >= Some(100) {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;
    if let Err(status) = counted {
        let (_, log) = daemon.terminate().await;
        panic!("never counted the old records as dropped: {status}\n{log}");
    }
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    // The drop count goes out with the next batch.
    let reported: u64 = world
        .receiver
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.envelope.as_ref().ok())
        .filter_map(|e| e.dropped.get("installation_errors"))
        .filter_map(|d| d.get("too_old"))
        .sum();
    assert!(reported >= 100, "the drops were not reported: {reported}");
    daemon.terminate().await;
}

/// A batch the receiver keeps refusing does not keep its records past
/// `max_record_age`: claimed and retried, it is released before the next
/// claim once its records are too old, and they are dropped, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_past_max_record_age_is_dropped_too() {
    let Some((world, library, clock)) =
        faked("faults::clock::a_batch_in_flight_past_max_record_age").await
    else {
        return;
    };
    // The start-up collection is delivered first, so that the batch the
    // receiver then keeps refusing is the one holding the records below.
    world.receiver.set_status(200);
    let mut daemon = daemon_on_a_clock(&world, &library, &clock).await;
    daemon.drain_log();
    assert!(
        world
            .receiver
            .wait_for_requests(1, crate::support::PATIENCE)
            .await,
        "the start-up batch"
    );
    world.receiver.set_status(503);
    let mut ledger = Ledger::default();
    assert!(ledger.send(&world.ingest_socket(), 100).await);
    // The receiver (503) has seen the installation records: they are in
    // the batch in flight.
    crate::support::eventually(
        "the records' batch at the receiver",
        crate::support::PATIENCE,
        async || {
            let seen = world
                .receiver
                .requests()
                .iter()
                .filter_map(|r| r.envelope.as_ref().ok())
                .any(|e| e.records.iter().any(|r| r.purpose == "installation_errors"));
            if seen { Ok(()) } else { Err("not yet") }
        },
    )
    .await;
    daemon.terminate().await;

    set_clock(&clock, "+40d");
    let mut daemon = daemon_on_a_clock(&world, &library, &clock).await;
    daemon.drain_log();
    let status = world
        .status_until("the batch in flight dropped as too old", |s| {
            s["daemon"]["store"]["dropped"]["installation_errors"]["too_old"].as_u64() >= Some(100)
        })
        .await;
    assert_eq!(
        status["daemon"]["store"]["queued"]["installation_errors"].as_u64(),
        None,
        "nothing of it is left: {status}"
    );
    daemon.terminate().await;
}
