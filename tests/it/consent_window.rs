//! Issue 19: what a consent change does to the open KSN window and to the
//! queue, and what it says it did. Only an explicit withdrawal of `ksn`
//! discards the window; a `ksn` merely blocked (its required EULA revoked,
//! the consent file unreadable) keeps it for its report. `withdrawn` means
//! a withdrawal, never "not accepted". A revoke answers with what it
//! deleted, as the audit trail records it. A command racing a starting
//! daemon declares its act once.
//!
//! Every test waits on an event (an answer, a `status --json` condition, a
//! request at the receiver) and says beside it how the old code failed it.

use std::time::Duration;

use consentry::collect::ksn::{DISCARD_REASON, STANDARD_ERROR};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{Daemon, PATIENCE, Received, World, eventually};

/// Scan verdicts put in the window before a consent change.
const N: u64 = 40;

/// A world with `eula` and `ksn` granted through the CLI, a receiver that
/// answers 200, a KSN window of a day (no scheduled close lands inside a
/// test: only a `flush` closes it), and its daemon running, once its
/// start-up collection has been delivered (so that anything the receiver
/// gets afterwards is the test's).
async fn ksn_world() -> (World, Daemon) {
    let world = World::with_eula_answering(200).await;
    let text = world.config_text("").replace(
        "interval = \"1h\"",
        "interval = \"1h\"\nksn_window = \"1d\"",
    );
    world.write_config(&text);
    world.ok(&["consent", "grant", "ksn"]).await;
    let daemon = world.spawn_daemon().await;
    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "the start-up collection was never sent"
    );
    world
        .status_until("delivered the start-up collection", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    (world, daemon)
}

/// Sends `n` `scan_verdict` lines of `verdict`, one per object (objects
/// `salt`, `salt + 1`, …), and checks every line was acknowledged: counted
/// in the window and committed.
async fn scan(world: &World, n: u64, verdict: &str, salt: u64) {
    let lines: String = (salt..salt + n)
        .map(|i| {
            let object = hex::encode(Sha256::digest(i.to_le_bytes()));
            format!(
                "{{\"kind\":\"scan_verdict\",\"object\":\"{object}\",\"verdict\":\"{verdict}\"}}\n"
            )
        })
        .collect();
    let summary = consentry::ingest::client::send(&world.ingest_socket(), lines.as_bytes())
        .await
        .unwrap();
    assert_eq!((summary.accepted, summary.rejected), (n, 0), "{summary:?}");
}

/// The open window's report as committed (`preview`): `Null` when the
/// window is empty.
async fn window(world: &World) -> Value {
    let preview: Value = serde_json::from_str(
        &world
            .ok(&["preview", "ksn_scan_aggregates", "--json"])
            .await,
    )
    .unwrap();
    preview["previews"][0]["fields"].clone()
}

/// `consentry consent VERB CLAUSE --json`, which must succeed and be
/// applied by the running daemon.
async fn change(world: &World, verb: &str, clause: &str) -> Value {
    let answer: Value =
        serde_json::from_str(&world.ok(&["consent", verb, clause, "--json"]).await).unwrap();
    assert_eq!(answer["schema"], "consentry.consent.change/1", "{answer}");
    assert_eq!(answer["changed"], true, "{answer}");
    assert_eq!(answer["daemon"]["outcome"], "applied", "{answer}");
    answer
}

/// Every line of the audit trail of `kind`.
async fn trail(world: &World, kind: &str) -> Vec<Value> {
    let history: Value = serde_json::from_str(
        &world
            .ok(&["history", "--kind", kind, "--limit", "100000", "--json"])
            .await,
    )
    .unwrap();
    history["entries"].as_array().unwrap().clone()
}

/// The audit lines that say the open KSN window was discarded.
async fn window_discards(world: &World) -> Vec<Value> {
    let mut purged = trail(world, "purged").await;
    purged.retain(|e| e["detail"] == DISCARD_REASON);
    purged
}

/// Flushes until the receiver has accepted a `ksn_scan_aggregates` report;
/// every such report delivered.
async fn flush_until_ksn_report(world: &World) -> Vec<Received> {
    eventually("got a KSN report", PATIENCE, async || {
        world.run(&["flush"]).await;
        let reports = world.delivered("ksn_scan_aggregates");
        if reports.is_empty() {
            Err("no report")
        } else {
            Ok(reports)
        }
    })
    .await
}

/// `purpose`'s decision in `status --json`: the command's own (`decisions`)
/// and the running daemon's (`daemon.decisions`).
fn decisions_of<'a>(status: &'a Value, purpose: &str) -> [&'a Value; 2] {
    let find = |list: &'a Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["purpose"] == purpose)
            .unwrap_or_else(|| panic!("no decision for {purpose}: {status}"))
    };
    [
        find(&status["decisions"]),
        find(&status["daemon"]["decisions"]),
    ]
}

/// Defect 6a. Revoking the EULA leaves `ksn` accepted but no longer allowed
/// (it requires the EULA): a block, not a withdrawal. The open window is
/// kept through the revoke and through a window close (`flush`) while
/// blocked, and its report, with every verdict counted before the revoke,
/// goes out once the EULA is granted again.
///
/// Before 5f8b5b0 this failed at the first assertion on the answer: the
/// revoke discarded the window whenever `ksn_scan_aggregates` was not
/// allowed (`ksn_window_discarded: true`, a `purged` line with the
/// discard reason), and so did `close_ksn_window` on any refusal; the
/// report after the new grant never came (nothing was left in the window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ksn_window_blocked_by_a_revoked_eula_is_kept_and_reported_after_the_new_grant() {
    let (world, daemon) = ksn_world().await;
    scan(&world, N, "untrusted", 0).await;
    assert_eq!(window(&world).await["untrusted_statuses"], N);

    let revoked = change(&world, "revoke", "eula").await;
    assert_eq!(
        revoked["daemon"]["ksn_window_discarded"], false,
        "{revoked}"
    );
    let status = world.status().await;
    for decision in decisions_of(&status, "ksn_scan_aggregates") {
        assert_eq!(decision["allowed"], false, "{decision}");
        assert_eq!(decision["withdrawn"], false, "{decision}");
        assert_eq!(decision["held"], true, "{decision}");
    }

    // A window close while blocked sends nothing of ksn and keeps the
    // window (the flush answers once its collection and upload are done).
    let flushed = world.run(&["flush", "--json"]).await;
    let flushed: Value = serde_json::from_slice(&flushed.stdout).unwrap();
    assert!(
        flushed["collect"]["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["purpose"] == "ksn_scan_aggregates"),
        "{flushed}"
    );
    assert!(world.delivered("ksn_scan_aggregates").is_empty());
    assert_eq!(window(&world).await["untrusted_statuses"], N);
    assert_eq!(window_discards(&world).await, Vec::<Value>::new());

    change(&world, "grant", "eula").await;
    let reports = flush_until_ksn_report(&world).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].fields["untrusted_statuses"], N, "{reports:?}");
    // The sketch survived too: its estimate, within three standard errors.
    let unique = reports[0].fields["unique_untrusted_objects"]
        .as_f64()
        .unwrap();
    assert!(
        (unique - N as f64).abs() <= (3.0 * STANDARD_ERROR * N as f64).max(1.0),
        "{unique} unique of {N}"
    );
    assert_eq!(window_discards(&world).await, Vec::<Value>::new());
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
}

/// Defect 6b. A consent file that cannot be read holds everything: a
/// window closed meanwhile (`flush`) sends nothing and is kept, and its
/// report goes out once the file is whole again.
///
/// Before 5f8b5b0 the close discarded the window (any refusal did), with
/// a `purged` line, and the report after the repair never came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ksn_window_closed_while_the_consent_file_is_broken_is_kept_for_its_report() {
    let (world, daemon) = ksn_world().await;
    scan(&world, N, "untrusted", 0).await;
    assert_eq!(window(&world).await["untrusted_statuses"], N);

    let consent_file = world.path("consent.toml");
    let whole = std::fs::read_to_string(&consent_file).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&consent_file)
        .unwrap();
    std::io::Write::write_all(&mut file, b"\n[[accepted]\n").unwrap();
    drop(file);
    world
        .status_until("held on the broken file", |s| {
            s["daemon"]["consent"]["holding"].is_string()
        })
        .await;

    let sent_before = world.receiver.requests().len();
    let flushed = world.run(&["flush", "--json"]).await;
    let flushed: Value = serde_json::from_slice(&flushed.stdout).unwrap();
    let stopped = flushed["upload"]["stopped"].as_str().unwrap_or_default();
    assert!(stopped.starts_with("holding the queue"), "{flushed}");
    assert_eq!(
        world.receiver.requests().len(),
        sent_before,
        "something was sent while the consent file was broken"
    );
    assert_eq!(window(&world).await["untrusted_statuses"], N);
    assert_eq!(window_discards(&world).await, Vec::<Value>::new());

    // Put back whole, in one rename (as an editor saves).
    let repaired = world.path("consent.toml.repaired");
    std::fs::write(&repaired, &whole).unwrap();
    std::fs::rename(&repaired, &consent_file).unwrap();
    world
        .status_until("read the repaired file", |s| {
            s["daemon"]["consent"]["holding"].is_null()
                && s["daemon"]["decisions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["purpose"] == "ksn_scan_aggregates" && d["allowed"] == true)
        })
        .await;
    let reports = flush_until_ksn_report(&world).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].fields["untrusted_statuses"], N, "{reports:?}");
    assert_eq!(window_discards(&world).await, Vec::<Value>::new());
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
}

/// Defect 6c, the other side of 6a: an explicit withdrawal of `ksn` still
/// discards the open window, says so in the answer and the audit trail,
/// and nothing counted before it is ever reported, even after a new
/// grant.
///
/// This kept working before 5f8b5b0; it fails if the fix for 6a keeps
/// windows too eagerly (say, deciding on "allowed" without asking whether
/// the block is a withdrawal): `ksn_window_discarded` would be false and
/// the next report would carry the N untrusted verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_ksn_discards_the_open_window_and_nothing_of_it_is_reported() {
    let (world, daemon) = ksn_world().await;
    scan(&world, N, "untrusted", 0).await;
    assert_eq!(window(&world).await["untrusted_statuses"], N);

    let revoked = change(&world, "revoke", "ksn").await;
    assert_eq!(revoked["daemon"]["ksn_window_discarded"], true, "{revoked}");
    let discards = window_discards(&world).await;
    assert_eq!(discards.len(), 1, "{discards:?}");
    assert_eq!(discards[0]["records"], N, "{discards:?}");
    assert!(window(&world).await.is_null());

    // A new grant, and a few verdicts of another kind: the next report
    // holds those only.
    change(&world, "grant", "ksn").await;
    const AFTER: u64 = 3;
    scan(&world, AFTER, "trusted", 1000).await;
    let reports = flush_until_ksn_report(&world).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].fields["untrusted_statuses"], 0, "{reports:?}");
    assert_eq!(reports[0].fields["trusted_statuses"], AFTER, "{reports:?}");
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
}

/// Defect 7a. `withdrawn` means a withdrawal: a purpose never accepted is
/// neither withdrawn nor held; after a grant and a revoke it is withdrawn.
/// Checked in both the command's own decisions and the daemon's.
///
/// Before 5f8b5b0 every purpose blocked for want of an accepted clause was
/// `withdrawn: true` (the flag meant "may be purged"), so the first loop
/// failed; `held` did not exist. After it, the command's
/// own `decisions[]` (evaluated from the consent file alone, where a
/// revoked clause is simply absent) still said `withdrawn: false` after
/// the revoke, daemon or none: the second loop failed until `status` read
/// the recorded withdrawals (`store::receipts::peek_withdrawn`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_is_true_only_after_a_withdrawal() {
    let world = World::with_eula_answering(200).await;
    let daemon = world.spawn_daemon().await;
    let catalogue = consentry::catalogue::Catalogue::embedded();
    let ksn_purposes: Vec<String> = catalogue
        .purposes()
        .filter(|p| p.clauses.iter().all(|c| c == "ksn"))
        .map(|p| p.id.clone())
        .collect();
    assert!(ksn_purposes.len() >= 2, "{ksn_purposes:?}");

    let status = world.status().await;
    for purpose in &ksn_purposes {
        for decision in decisions_of(&status, purpose) {
            assert_eq!(decision["allowed"], false, "{decision}");
            assert_eq!(decision["withdrawn"], false, "never accepted: {decision}");
            assert_eq!(decision["held"], false, "{decision}");
        }
    }

    change(&world, "grant", "ksn").await;
    change(&world, "revoke", "ksn").await;
    let status = world.status().await;
    for purpose in &ksn_purposes {
        for decision in decisions_of(&status, purpose) {
            assert_eq!(decision["allowed"], false, "{decision}");
            assert_eq!(decision["withdrawn"], true, "revoked: {decision}");
            assert_eq!(decision["held"], false, "{decision}");
        }
    }
    // A clause never accepted stays so beside it.
    for decision in decisions_of(&status, "promotions") {
        assert_eq!(decision["withdrawn"], false, "{decision}");
    }
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");

    // With no daemon, `status` still tells the withdrawal from the store.
    let status = world.status().await;
    assert!(status["daemon"].is_null(), "{status}");
    for decision in status["decisions"].as_array().unwrap() {
        let withdrawn = ksn_purposes
            .iter()
            .any(|p| decision["purpose"] == p.as_str());
        assert_eq!(decision["withdrawn"], withdrawn, "{decision}");
    }
}

/// How long the slow receiver of the drain below waits before answering.
const SLOW: Duration = Duration::from_millis(1000);

/// Defect 7b. A revoke during a slow drain says what it purged: the
/// answer's `purged` is the queue depth before it less the depth after,
/// is exactly what the audit trail's `purged` lines record, and nothing
/// of the revoked clause reaches the receiver once the command returned.
///
/// Before 5f8b5b0 whoever read the rewritten consent file first purged:
/// the daemon's file watch, or the uploader at the top of its round. The
/// command's notice, arriving after, found nothing left, so `consent
/// revoke` printed `purged 0` while the trail recorded every record (17702
/// in the issue): `purged == before - after` failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_during_a_slow_drain_answers_with_what_the_trail_records_as_purged() {
    let world = World::with_eula_answering(503).await;
    // A hanging request is not given up on during the test.
    // Batches of 500, so that the drain takes several.
    let text = world
        .config_text("batch_max_records = 500")
        .replace("timeout = \"5s\"", "timeout = \"2m\"");
    world.write_config(&text);
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    const QUEUED: u64 = 3000;
    let lines = "{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\",\"error_code\":77}\n"
        .repeat(QUEUED as usize);
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world
        .status_until("queued them all", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(QUEUED)
        })
        .await;

    // The drain: 500 records a batch, a second a batch.
    world.receiver.set_delay(SLOW);
    world.receiver.set_status(200);
    let accepted = |world: &World| {
        world
            .receiver
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .count()
    };
    // Started: batches accepted, and at least one of them answered and
    // removed (two may be on the wire at once, so a third request can
    // come before either of the two before it was answered).
    eventually("started the drain", PATIENCE, async || {
        let accepted = accepted(&world);
        let queued = world.records_queued().await;
        if accepted >= 3 && queued < QUEUED {
            Ok(())
        } else {
            Err(format!("{accepted} accepted, {queued} queued"))
        }
    })
    .await;
    // From now on nothing is answered: the batch in flight (the last one
    // if its answer was still due, else the next) stays in flight, so the
    // depth stays put until the revoke.
    world.receiver.set_hang(true);
    let hung_at = std::time::Instant::now();
    let requests = world.receiver.requests();
    if requests.last().unwrap().received_at + SLOW <= hung_at {
        assert!(
            world
                .receiver
                .wait_for_requests(requests.len() + 1, PATIENCE)
                .await,
            "no batch after the hang"
        );
    }
    let before = world.records_queued().await;
    assert!(before > 0 && before < QUEUED, "{before} queued");
    assert_eq!(trail(&world, "purged").await, Vec::<Value>::new());

    let revoked = change(&world, "revoke", "eula").await;
    let returned = std::time::Instant::now();
    let purged = revoked["daemon"]["purged"].as_u64().unwrap();
    let after = revoked["daemon"]["queued"].as_u64().unwrap();
    assert!(purged > 0, "{revoked}");
    assert_eq!(purged, before - after, "{revoked}: {before} queued before");
    let lines = trail(&world, "purged").await;
    let recorded: u64 = lines.iter().map(|e| e["records"].as_u64().unwrap()).sum();
    assert_eq!(
        recorded, purged,
        "the trail: {lines:?}; the answer: {revoked}"
    );
    assert!(
        lines
            .iter()
            .all(|e| e["detail"].as_str().unwrap().contains("eula")),
        "{lines:?}"
    );
    // Answer again, grant again: once the agent sends again, nothing of
    // the old queue has arrived since the command returned.
    world.receiver.set_hang(false);
    world.receiver.set_delay(Duration::ZERO);
    change(&world, "grant", "eula").await;
    eventually("sent anything after the new grant", PATIENCE, async || {
        world.run(&["flush"]).await;
        let late: Vec<_> = world
            .receiver
            .requests()
            .into_iter()
            .filter(|r| r.received_at > returned)
            .filter_map(|r| r.envelope.ok())
            .flat_map(|e| e.records)
            .collect();
        assert!(
            late.iter().all(|r| r.purpose != "installation_errors"),
            "queued records of the revoked eula arrived after the revoke returned"
        );
        let purposes: Vec<_> = late.iter().map(|r| r.purpose.clone()).collect();
        if purposes.iter().any(|p| p == "update_identity") {
            Ok(())
        } else {
            Err(format!("late records of {purposes:?}"))
        }
    })
    .await;
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    // The batch in flight was stopped by the revoke, not left to finish.
    assert!(log.contains("upload stopped: consent withdrawn"), "{log}");
}

/// Defect 5. A consent command run while a daemon is starting (the
/// control socket not yet bound) records its act exactly once, as the
/// declared act it is: with the daemon if the daemon took the state
/// directory first, or itself under the daemon lock if it did, and never
/// also as a change the daemon observed in the file.
///
/// Before 5f8b5b0 a command declared no act (receipts had no `act_id`),
/// and one that found no control socket wrote the store itself, without
/// the daemon lock and without asking whether a daemon was starting, while
/// that daemon read the same change from the file: depending on the race
/// the grant was recorded by the command, or by the daemon as a change it
/// observed (`file`), or the command failed on the store the daemon was
/// opening. The `act_id` and `collection_method` assertions fail on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_racing_a_starting_daemon_is_declared_once() {
    for attempt in 0..20 {
        let world = World::with_eula_answering(200).await;
        let mut daemon = world.start_daemon(&[]);
        let granted = world.run(&["consent", "grant", "ksn", "--json"]).await;
        assert!(
            granted.status.success(),
            "attempt {attempt}: grant failed: {}",
            String::from_utf8_lossy(&granted.stderr)
        );
        let granted: Value = serde_json::from_slice(&granted.stdout).unwrap();
        let outcome = granted["daemon"]["outcome"].as_str().unwrap();
        assert!(
            ["applied", "not_running"].contains(&outcome),
            "attempt {attempt}: {granted}"
        );
        // Answering, or gone (its log is read below).
        let answered = eventually("answered as a daemon", PATIENCE, async || {
            if world.status().await["daemon"].is_object() {
                Ok(true)
            } else if !daemon.is_running() {
                Ok(false)
            } else {
                Err(format!("attempt {attempt}: no answer yet"))
            }
        })
        .await;
        if !answered {
            let (exit, log) = daemon.wait().await;
            panic!("attempt {attempt}: the daemon exited {exit}: {log}");
        }
        // The daemon has made its first look at the file; another look
        // (a flush asks for one) records nothing new either.
        world.run(&["flush"]).await;
        let history: Value =
            serde_json::from_str(&world.ok(&["consent", "history", "--json"]).await).unwrap();
        let ksn: Vec<&Value> = history["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["clause"]["id"] == "ksn")
            .collect();
        assert_eq!(ksn.len(), 1, "attempt {attempt} ({outcome}): {ksn:#?}");
        assert_eq!(ksn[0]["event"], "grant", "attempt {attempt}");
        assert_eq!(ksn[0]["collection_method"], "cli", "attempt {attempt}");
        assert!(
            ksn[0]["act_id"].is_string(),
            "attempt {attempt}: {}",
            ksn[0]
        );
        assert_eq!(
            granted["daemon"]["receipts"],
            serde_json::json!([ksn[0]["receipt_id"]]),
            "attempt {attempt}: the command's answer names its receipt"
        );
        let (exit, log) = daemon.terminate().await;
        assert!(exit.success(), "attempt {attempt}: {log}");
    }
}
