//! Faults injected one at a time and together: a receiver that fails in
//! each way a network can (every accepted record stays queued while it
//! fails and is delivered once it recovers), then, in the submodules, a
//! long mixed outage, a full disk, a read-only or deleted state
//! directory, a database damaged under a running daemon and wall-clock
//! jumps. `docs/reliability.md` has the table of what each found.

mod clock;
mod database;
mod disk;
pub(crate) mod ledger;
mod mount;
pub(crate) mod outage;
mod state_dir;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{PATIENCE, World, eventually};

/// How the receiver fails.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Status500,
    TooManyRequests { retry_after_secs: u64 },
    Reset,
    Hang,
}

const RECORDS: i64 = 200;

/// Queues `RECORDS` install tasks while the receiver fails with `fault`,
/// checks that they all stay queued, lets it recover, and checks that every
/// one of them arrives. Returns the requests' arrival times per batch key.
async fn survives(fault: Fault) -> World {
    let world = World::with_eula_answering(200).await;
    match fault {
        Fault::Status500 => world.receiver.set_status(500),
        Fault::TooManyRequests { retry_after_secs } => {
            world.receiver.set_status(429);
            world
                .receiver
                .set_retry_after(Some(&retry_after_secs.to_string()));
        }
        Fault::Reset => world.receiver.set_reset(true),
        Fault::Hang => world.receiver.set_hang(true),
    }
    let daemon = world.spawn_daemon().await;
    let lines: String = (0..RECORDS)
        .map(|code| {
            format!(
                "{{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\",\"error_code\":{code}}}\n"
            )
        })
        .collect();
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{fault:?}: {out:?}");
    let tried = world.receiver.attempts().len();
    // Attempts fail meanwhile (the receiver counts each, a reset one too):
    // two begun after the records were queued, or for a hanging receiver
    // one (the one before it hangs until the upload timeout); nothing is
    // lost or delivered.
    let failures = if matches!(fault, Fault::Hang) { 1 } else { 2 };
    eventually(
        "failed attempts after the records were queued",
        PATIENCE,
        async || {
            let attempts = world.receiver.attempts().len() - tried;
            if attempts >= failures {
                Ok(())
            } else {
                Err(format!("{fault:?}: {attempts} attempt(s)"))
            }
        },
    )
    .await;
    let queued = world.status().await["daemon"]["records_queued"]
        .as_u64()
        .unwrap();
    assert!(queued >= RECORDS as u64, "{fault:?}: only {queued} queued");
    if !matches!(fault, Fault::Hang) {
        assert!(
            world.delivered("installation_errors").is_empty(),
            "{fault:?}: delivered while failing"
        );
    }

    world.receiver.set_status(200);
    world.receiver.set_reset(false);
    world.receiver.set_hang(false);
    world
        .status_until("delivered everything after recovery", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    let codes: BTreeSet<i64> = world
        .delivered("installation_errors")
        .iter()
        .map(|r| r.fields["error_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, (0..RECORDS).collect(), "{fault:?}: records lost");
    daemon.terminate().await;
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_loses_nothing() {
    survives(Fault::Status500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_loses_nothing() {
    survives(Fault::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_loses_nothing() {
    survives(Fault::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let world = survives(Fault::TooManyRequests {
        retry_after_secs: 1,
    })
    .await;
    // Between two attempts of one batch, at least the second asked for
    // (the configured backoff alone is 200 ms).
    let requests = world.receiver.requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status == 429).collect();
    assert!(!refused.is_empty());
    for pair in requests.windows(2) {
        if pair[0].status == 429 {
            let gap = pair[1].received_at - pair[0].received_at;
            assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
        }
    }
}
