//! The disk fails under the state directory: it fills up while the daemon
//! runs, or it is read-only when the daemon starts. Both need a mount of
//! their own (a 2 MiB tmpfs, a read-only bind mount), so root; elsewhere
//! the tests say `SKIPPED: …` and pass.
//!
//! A file system cannot be remounted read-only under a daemon that holds
//! its database open for writing (the kernel answers "busy"); what a
//! running daemon meets when writes start failing is what the full disk
//! shows.

use std::time::Duration;

use super::ledger::{Ledger, assert_conserved};
use super::mount::{Mount, is_root, skip};
use crate::support::{World, eventually};

/// Install tasks per ingest connection while filling the disk.
const CHUNK: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_what_it_cannot_store_and_delivers_everything_acknowledged() {
    const TEST: &str = "faults::disk::a_full_disk";
    if !is_root() {
        skip(TEST, "mounting a small tmpfs needs root");
        return;
    }
    let world = World::with_eula_answering(503).await;
    let mount = match Mount::tmpfs(&world.path("state"), "2m") {
        Ok(mount) => mount,
        Err(why) => {
            skip(TEST, &why);
            return;
        }
    };
    let mut daemon = world.spawn_daemon().await;
    let socket = world.ingest_socket();
    let mut ledger = Ledger::default();
    let mut rounds = 0;
    while ledger.send(&socket, CHUNK).await {
        rounds += 1;
        assert!(rounds < 500, "2 MiB never filled");
    }
    let refusal = ledger.first_refusal.clone().unwrap();
    assert!(
        refusal.starts_with("not_stored") && refusal.contains("full"),
        "{refusal}"
    );
    // Still full: refused again, and the daemon runs on. `status` shows
    // the store fault until a commit goes through, and a small one (the
    // uploader's bookkeeping) can, in the room SQLite frees: so it is
    // looked for right after a refusal, and the log is what must say why.
    let mut shown = None;
    for _ in 0..3 {
        assert!(!ledger.send(&socket, CHUNK).await);
        let status = world.status().await;
        if let Some(fault) = status["daemon"]["store"]["fault"]["message"].as_str() {
            shown = Some(fault.to_owned());
        }
    }
    assert!(daemon.is_running(), "the daemon died on a full disk");
    if let Some(fault) = &shown {
        assert!(fault.contains("full"), "{fault}");
    }
    let refused = ledger.refused;

    // Space comes back: ingest is stored again, and everything that was
    // acknowledged goes out once the receiver answers.
    mount.remount("size=64m").unwrap();
    eventually(
        "stored ingest again after space came back",
        Duration::from_secs(10),
        async || {
            if ledger.send(&socket, CHUNK).await {
                Ok(())
            } else {
                Err(format!("{:?}", ledger.first_refusal))
            }
        },
    )
    .await;
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    world
        .status_until("delivered everything", |s| {
            s["daemon"]["records_queued"] == 0 && s["daemon"]["store"]["fault"].is_null()
        })
        .await;
    let conservation = assert_conserved(&world, &ledger, "full disk");
    eprintln!(
        "faults: full disk (2 MiB tmpfs): {} records acknowledged before it filled and after, {refused} refused with not_stored, {} lost, {} under two batch ids; status showed: {shown:?}",
        conservation.acked, conservation.lost, conservation.duplicated_across_batches
    );
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    assert!(log.contains("not stored"), "{log}");
    assert!(log.contains("database or disk is full"), "{log}");
    drop(mount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_dir_stops_the_daemon_at_start_with_a_clear_error() {
    const TEST: &str = "faults::disk::a_read_only_state_dir";
    let world = World::with_eula_answering(503).await;
    // A store with something queued, left by a daemon that stopped.
    let daemon = world.spawn_daemon().await;
    let mut ledger = Ledger::default();
    assert!(ledger.send(&world.ingest_socket(), 100).await);
    daemon.terminate().await;

    let state = world.path("state");
    let _mount = if is_root() {
        // Root writes through any mode: only a read-only mount stops it.
        let mount = match Mount::bind(&state) {
            Ok(mount) => mount,
            Err(why) => {
                skip(TEST, &why);
                return;
            }
        };
        if let Err(why) = mount.remount("bind,ro") {
            skip(TEST, &why);
            return;
        }
        Some(mount)
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o500)).unwrap();
        None
    };
    let started = world.start_daemon(&[]);
    let (exit, log) = tokio::time::timeout(Duration::from_secs(20), started.wait())
        .await
        .expect("the daemon neither started nor stopped");
    // 1, or 4 (permission denied) where a mode is what refuses.
    assert!(matches!(exit.code(), Some(1 | 4)), "{exit}: {log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains(&state.display().to_string()),
        "the error does not name the state directory: {log}"
    );
    let words = log.to_lowercase();
    assert!(
        ["read-only", "permission denied", "writable"]
            .iter()
            .any(|w| words.contains(w)),
        "{log}"
    );
    let error = log.lines().find(|l| l.starts_with("error")).unwrap_or("");
    eprintln!("faults: read-only state dir: {exit}: {error}");

    // Writable again: the daemon starts and everything queued goes.
    drop(_mount);
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    world.receiver.set_status(200);
    let daemon = world.spawn_daemon().await;
    world.ok(&["flush"]).await;
    world
        .status_until("delivered what was queued", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    assert_conserved(&world, &ledger, "read-only state dir");
    daemon.terminate().await;
}
