//! The state directory deleted under a running daemon (`rm -rf`, a
//! cleanup script gone wrong). The daemon still holds the deleted
//! database open, and SQLite would go on committing into it: every ack
//! after the deletion would be a promise no one can keep. So the store
//! writer checks, before it answers a commit, that its database is still
//! the file at its path; when it is not, it answers "not stored" and the
//! daemon stops with an error, for the service manager to start it again
//! on a fresh state directory.
//!
//! What was acknowledged before the deletion went with the directory:
//! nothing can keep it, and this test checks that the daemon says so
//! rather than pretend.

use std::time::Duration;

use super::ledger::{Ledger, assert_conserved, delivered_keys};
use crate::support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_deleted_under_the_daemon_stops_it_and_nothing_after_is_acknowledged() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    let socket = world.ingest_socket();
    let mut before = Ledger::default();
    assert!(before.send(&socket, 100).await);

    std::fs::remove_dir_all(world.path("state")).unwrap();
    let mut after = Ledger::starting_at(1_000_000);
    assert!(
        !after.send(&socket, 100).await,
        "acknowledged into a deleted database"
    );
    let refusal = after.first_refusal.clone().unwrap_or_default();
    // The daemon stops with an error that says what happened.
    let (exit, log) = tokio::time::timeout(Duration::from_secs(20), daemon.wait())
        .await
        .expect("the daemon ran on with its state directory deleted");
    assert_eq!(exit.code(), Some(1), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let error = log.lines().find(|l| l.starts_with("error")).unwrap_or("");
    assert!(error.contains("deleted or replaced"), "{log}");
    eprintln!(
        "faults: state dir deleted: ingest refused ({refusal}); daemon exit 1: {}",
        log.lines().find(|l| l.starts_with("error")).unwrap_or("")
    );

    // Started again (as the service manager would): a fresh store in a
    // new directory, and what is acknowledged now is delivered.
    world.receiver.set_status(200);
    let daemon = world.spawn_daemon().await;
    assert!(after.send(&socket, 100).await, "{:?}", after.first_refusal);
    world.ok(&["flush"]).await;
    world
        .status_until("delivered", |s| s["daemon"]["records_queued"] == 0)
        .await;
    assert_conserved(&world, &after, "after the restart");
    let delivered = delivered_keys(&world);
    assert!(
        before
            .acked
            .iter()
            .all(|code| !delivered.contains_key(code)),
        "records of the deleted directory came back"
    );
    daemon.terminate().await;
}
