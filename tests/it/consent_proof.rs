//! Consent you can prove (issue 19): every act made through the CLI has its
//! own receipt with its own time, whether or not a daemon runs; a change
//! nobody declared is recorded as observed and never credited to the CLI;
//! an acceptance the catalogue cannot use records nothing; a consent file
//! caught empty or cut short deletes nothing; and one owner publishes the
//! snapshot, so after every command the snapshot in force is the file's.

use std::time::Duration;

use crate::support::{PATIENCE, World};

const INSTALL: &str = "{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\"}\n";

async fn receipts(world: &World) -> Vec<serde_json::Value> {
    let history: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "history", "--json"]).await).unwrap();
    history["receipts"].as_array().unwrap().clone()
}

/// The consent generation in force, once the daemon has published one
/// newer than `after` (a read of the consent file by its owner).
async fn generation_after(world: &World, after: u64) -> serde_json::Value {
    world
        .status_until("the consent owner read the file again", |s| {
            s["daemon"]["consent"]["generation"].as_u64() > Some(after)
        })
        .await
}

fn generation(status: &serde_json::Value) -> u64 {
    status["daemon"]["consent"]["generation"].as_u64().unwrap()
}

/// The installer's normal path: acts on a new machine before any daemon
/// ran. Each gets its own receipt, with its own time, made by the command
/// itself (before: one grant, dated when the daemon started).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acts_before_the_first_daemon_start_each_leave_their_own_receipt() {
    let world = World::new().await;
    assert!(!world.path("state").exists(), "a new machine");
    let mut acted_at = Vec::new();
    for verb in ["grant", "revoke", "grant"] {
        let said = world.ok(&["consent", verb, "eula", "--json"]).await;
        let said: serde_json::Value = serde_json::from_str(&said).unwrap();
        assert_eq!(said["daemon"]["outcome"], "not_running", "{said}");
        assert_eq!(said["daemon"]["receipts"].as_array().unwrap().len(), 1);
        acted_at.push(consentry::clock::rfc3339(std::time::SystemTime::now()));
        // Acts a second apart, so each time is its own.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let daemon = world.spawn_daemon().await;
    let all = receipts(&world).await;
    daemon.terminate().await;
    let events: Vec<&str> = all.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["grant", "revoke", "grant"], "{all:#?}");
    for (receipt, acted) in all.iter().zip(&acted_at) {
        assert_eq!(receipt["collection_method"], "cli", "{receipt}");
        assert!(receipt["act_id"].is_string(), "declared: {receipt}");
        assert!(receipt["observed"].is_null(), "{receipt}");
        let at = receipt["timestamp"].as_str().unwrap();
        assert!(at <= acted.as_str(), "dated {at}, after the act ({acted})");
    }
    let times: Vec<&str> = all
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(times[0] < times[1] && times[1] < times[2], "{times:?}");
}

/// Hand edits the catalogue cannot use (an unknown version, an older one)
/// and a changed date record nothing (before: "renewal eula v99 (cli)"); a
/// hand edit that does change what is accepted is recorded as observed,
/// never credited to the CLI, and quotes what the file states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edits_are_observed_and_unusable_ones_record_nothing() {
    let world = World::with_eula_answering(200).await;
    let daemon = world.spawn_daemon().await;
    let granted = receipts(&world).await;
    assert_eq!(granted.len(), 1, "{granted:#?}");
    let good = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let edits = [
        good.replace("version = 4", "version = 99"),
        good.replace("version = 4", "version = 2"),
        good.replacen("accepted_at = 20", "accepted_at = 19", 1),
        good.clone(),
    ];
    for (n, edit) in edits.into_iter().enumerate() {
        assert!(n == 3 || edit != good, "edit {n} changed nothing");
        let before = generation(&world.status().await);
        std::fs::write(world.path("consent.toml"), &edit).unwrap();
        generation_after(&world, before).await;
        let now = receipts(&world).await;
        assert_eq!(now.len(), 1, "an edit recorded an act: {now:#?}");
    }

    // ksn granted and revoked by the CLI, then its record put back by hand.
    world.ok(&["consent", "grant", "ksn"]).await;
    let with_ksn = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    world.ok(&["consent", "revoke", "ksn"]).await;
    let before = generation(&world.status().await);
    std::fs::write(world.path("consent.toml"), &with_ksn).unwrap();
    generation_after(&world, before).await;
    let all = receipts(&world).await;
    daemon.terminate().await;
    assert_eq!(all.len(), 4, "{all:#?}");
    let by_hand = &all[3];
    assert_eq!(by_hand["event"], "grant", "{by_hand}");
    assert_eq!(by_hand["clause"]["id"], "ksn");
    assert_eq!(by_hand["collection_method"], "file", "{by_hand}");
    assert!(by_hand["act_id"].is_null(), "{by_hand}");
    assert_eq!(by_hand["observed"]["stated_method"], "cli", "{by_hand}");
    assert!(by_hand["observed"]["file_modified_at"].is_string());
    for declared in &all[1..3] {
        assert_eq!(declared["collection_method"], "cli", "{declared}");
        assert!(declared["act_id"].is_string(), "{declared}");
    }
}

/// Queues `n` install tasks against a failing receiver.
async fn queue_failing(world: &World, n: usize) -> u64 {
    let out = world.emit(&["-"], INSTALL.repeat(n).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    let status = world
        .status_until("queued them", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(n as u64)
        })
        .await;
    status["daemon"]["records_queued"].as_u64().unwrap()
}

/// What a consent file rewritten in place looks like for a moment: empty,
/// then (a second case) valid but without the EULA's record. Neither
/// deletes anything, replaces the installation id or records a receipt
/// (before: 2,001 purged, the id rotated, "revoke (file)").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_file_empty_or_cut_short_for_a_moment_deletes_nothing() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    let queued = queue_failing(&world, 2000).await;
    let good = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let cut_short = "# consentry consent file\n";
    for (moment, seen) in [("", "holding"), (cut_short, "deletion_waits")] {
        std::fs::write(world.path("consent.toml"), moment).unwrap();
        let status = world
            .status_until("the owner read the moment", |s| {
                let consent = &s["daemon"]["consent"];
                !consent[seen].is_null() && consent[seen] != false
            })
            .await;
        // Nothing of the EULA is sent meanwhile: blocked at once.
        let update = status["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["purpose"] == "installation_errors")
            .unwrap()
            .clone();
        assert_eq!(update["allowed"], false, "{update}");
        let before = generation(&status);
        std::fs::write(world.path("consent.toml"), &good).unwrap();
        let status = world
            .status_until("the file is whole and settled again", |s| {
                s["daemon"]["consent"]["generation"].as_u64() > Some(before)
                    && s["daemon"]["consent"]["holding"].is_null()
                    && s["daemon"]["consent"]["deletion_waits"] == false
            })
            .await;
        // Never fewer: a collection may have added one.
        let now = status["daemon"]["records_queued"].as_u64().unwrap();
        assert!(now >= queued, "{now} of {queued} left: {status}");
    }
    // Past the confirmation time of the second moment: still nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = world.status().await;
    let now = status["daemon"]["records_queued"].as_u64().unwrap();
    assert!(now >= queued, "{now} of {queued} left: {status}");
    let history = world.ok(&["history", "--limit", "100"]).await;
    assert!(!history.contains("purged"), "{history}");
    assert!(!history.contains("rotated"), "{history}");
    assert_eq!(receipts(&world).await.len(), 1);
    daemon.terminate().await;
}

/// A valid file without the EULA's record that stays so is a withdrawal:
/// once it has stayed the same for the confirmation time, what it queued
/// is deleted, the id replaced, and the receipt says it was observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_by_hand_that_stays_deletes_and_is_recorded_as_observed() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    queue_failing(&world, 100).await;
    std::fs::write(world.path("consent.toml"), "# nothing accepted\n").unwrap();
    let written = std::time::Instant::now();
    world
        .status_until("deleted once confirmed", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    let waited = written.elapsed();
    assert!(
        waited >= consentry::daemon::consent::CONFIRM,
        "deleted after {waited:?}, before the confirmation time"
    );
    let all = receipts(&world).await;
    daemon.terminate().await;
    let revoke = all.last().unwrap();
    assert_eq!(revoke["event"], "revoke", "{all:#?}");
    assert_eq!(revoke["collection_method"], "file");
    assert!(revoke["act_id"].is_null());
    let history = world.ok(&["history", "--kind", "rotated"]).await;
    assert!(history.contains("installation id replaced"), "{history}");
}

/// Many grants and revokes of ksn while its records upload: after every
/// command returns, the snapshot in force is the file's (the owner
/// published it before answering), and nothing of ksn leaves between a
/// revoke's return and the next grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_and_revoke_cycles_while_uploading_keep_the_snapshot_equal_to_the_file() {
    let world = World::with_upload_extra("").await;
    world.ok(&["consent", "grant", "eula"]).await;
    world.receiver.set_status(200);
    world.receiver.set_delay(Duration::from_millis(20));
    let mut daemon = world.spawn_daemon().await;
    // A busy daemon logs a lot at debug: read it as it comes, so that a
    // full pipe never stalls it.
    daemon.drain_log();
    let socket = world.ingest_socket();
    let stop = tokio_util::sync::CancellationToken::new();
    let feeder = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let line = "{\"kind\":\"record\",\"purpose\":\"ksn_threat_reports\",\"fields\":{\"threat_name\":\"EICAR-Test-File\",\"object_size\":68}}\n";
            while !stop.is_cancelled() {
                let _ = consentry::ingest::client::send(&socket, line.repeat(50).as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let ksn_allowed = |status: &serde_json::Value| {
        status["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["purpose"] == "ksn_threat_reports")
            .unwrap()["allowed"]
            == true
    };
    let mut closed = Vec::new();
    let cycles = async {
        for _ in 0..15 {
            world.ok(&["consent", "grant", "ksn"]).await;
            assert!(ksn_allowed(&world.status().await), "granted, not in force");
            tokio::time::sleep(Duration::from_millis(150)).await;
            world.ok(&["consent", "revoke", "ksn"]).await;
            let returned = std::time::Instant::now();
            assert!(
                !ksn_allowed(&world.status().await),
                "revoked, still allowed"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
            closed.push((returned, std::time::Instant::now()));
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), cycles)
        .await
        .is_err()
    {
        let (_, log) = daemon.terminate().await;
        let log: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("DEBUG rustls") && !l.contains("DEBUG hyper"))
            .collect();
        panic!("hung: {}", log[log.len().saturating_sub(60)..].join("\n"));
    }
    stop.cancel();
    let _ = feeder.await;
    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "nothing was sent"
    );
    let leaked: Vec<_> = world
        .receiver
        .requests()
        .into_iter()
        .filter(|r| {
            closed
                .iter()
                .any(|(from, to)| r.received_at > *from && r.received_at < *to)
        })
        .filter(|r| {
            r.envelope
                .as_ref()
                .is_ok_and(|e| e.records.iter().any(|x| x.purpose == "ksn_threat_reports"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "{} ksn batch(es) left after a revoke",
        leaked.len()
    );
    assert!(
        !world.delivered("ksn_threat_reports").is_empty(),
        "ksn never sent while granted: the test shows nothing"
    );
    let all = receipts(&world).await;
    daemon.terminate().await;
    assert_eq!(all.len(), 31, "one receipt per act");
    assert!(
        all.iter().all(|r| r["collection_method"] == "cli"),
        "{all:#?}"
    );
}

/// The gate keeps the newest generation it was given: a publication that
/// arrives late (an older read) is refused and changes nothing.
#[test]
fn an_older_generation_never_replaces_a_newer_one() {
    use consentry::catalogue::{Catalogue, Region};
    use consentry::consent::{Consents, Registry};
    use consentry::gate::Gate;

    let catalogue = Catalogue::embedded();
    let registry = |generation| {
        Registry::evaluate(&catalogue, &Consents::default(), Region::Global)
            .with_generation(generation)
    };
    let gate = Gate::with_registry(catalogue.clone(), registry(1));
    assert!(gate.publish(registry(3)), "a newer generation is published");
    assert_eq!(gate.registry().generation(), 3);
    assert!(!gate.publish(registry(2)), "an older one is refused");
    assert_eq!(gate.registry().generation(), 3, "and changes nothing");
    assert!(gate.publish(registry(4)));
    assert_eq!(gate.registry().generation(), 4);
}
