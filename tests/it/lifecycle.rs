//! The daemon's life as a service: SIGHUP reloads (and a bad file keeps
//! the last good state), a hand edit of the consent file applies within
//! seconds, SIGTERM drains within the grace period and loses nothing, and
//! one state directory has one daemon.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::support::{PATIENCE, World, eventually, run_with_config};

const INSTALL: &str = "{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_config_keeps_the_last_good_one() {
    let world = World::with_eula_answering(200).await;
    let mut daemon = world.spawn_daemon().await;

    // A good change: applied; a restart-only one is listed.
    let good = world
        .config_text("")
        .replace("interval = \"1h\"", "interval = \"2h\"");
    world.write_config(&good);
    daemon.signal(Signal::HUP);
    world
        .status_until("reported the reload", |s| {
            s["daemon"]["reload"]["applied"] == true
        })
        .await;
    let status = world.status().await;
    assert_eq!(
        status["daemon"]["reload"]["restart_needed"],
        serde_json::json!(["[collect]"]),
        "{status}"
    );

    // A broken one: rejected, with its place, and the daemon runs on. (The
    // CLI cannot read the broken file either: it asks with a good copy.)
    let copy = world.path("good.toml");
    std::fs::write(&copy, &good).unwrap();
    world.write_config(&good.replace("[upload]", "[upload]\nbatch_max_records = \"many\""));
    daemon.signal(Signal::HUP);
    let status = eventually("rejected the reload", PATIENCE, async || {
        let output = run_with_config(&copy, &["status", "--json"]).await;
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        if status["daemon"]["reload"]["applied"] == false {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .await;
    let error = status["daemon"]["reload"]["error"].as_str().unwrap();
    assert!(error.contains("consentry.toml:"), "{error}");
    assert!(error.contains("many"), "{error}");
    assert!(daemon.is_running(), "SIGHUP must not stop the daemon");
    let text = String::from_utf8(run_with_config(&copy, &["status"]).await.stdout).unwrap();
    assert!(text.contains("REJECTED"), "{text}");

    // Still working on the last good config.
    world.write_config(&good);
    let before = world.delivered("installation_errors").len();
    let out = world.emit(&["-"], INSTALL.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world.ok(&["flush"]).await;
    assert_eq!(world.delivered("installation_errors").len(), before + 1);

    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    assert!(!world.path("run/control.sock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_consent_file_sends_nothing_more_and_purges_nothing_until_fixed() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    let out = world.emit(&["-"], INSTALL.repeat(5).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world
        .status_until("queued them", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(5)
        })
        .await;
    let good = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    std::fs::write(world.path("consent.toml"), "[[accepted]\nbroken").unwrap();
    daemon.signal(Signal::HUP);
    // Noticed without any command: everything is held, nothing purged.
    world
        .status_until("held everything", |s| {
            s["daemon"]["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["allowed"] == false)
        })
        .await;
    let status = world.status().await;
    assert!(
        status["daemon"]["records_queued"].as_u64() >= Some(5),
        "{status}"
    );
    let reason = status["daemon"]["decisions"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("consent.toml"), "{reason}");

    world.receiver.set_status(200);
    std::fs::write(world.path("consent.toml"), good).unwrap();
    world
        .status_until("sent everything once fixed", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    let delivered = world.delivered("installation_errors").len();
    assert!(
        delivered >= 5,
        "{delivered} delivered:\n{}",
        world.ok(&["history", "--limit", "50"]).await
    );
    daemon.terminate().await;
}

/// A consent file rewritten in place is empty for a moment (truncated,
/// then written). An upload round or a collection that read it then would
/// see nothing accepted: a withdrawal of everything, and a purge. They
/// leave a file changed within the last second alone; the file watch
/// reads it once it has settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_file_caught_mid_rewrite_purges_nothing() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    let out = world.emit(&["-"], INSTALL.repeat(5).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    let good = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    // The moment between truncating and writing, made long: a flush (an
    // upload round and a collection, each reading the consent file) runs
    // inside it.
    std::fs::write(world.path("consent.toml"), "").unwrap();
    world.receiver.set_status(200);
    let flushed = world.run(&["flush"]).await;
    let said = String::from_utf8_lossy(&flushed.stdout).into_owned();
    assert!(
        !said.contains("purged") || said.contains("0 purged"),
        "{said}"
    );
    std::fs::write(world.path("consent.toml"), good).unwrap();
    world
        .status_until("sent everything", |s| s["daemon"]["records_queued"] == 0)
        .await;
    let history = world.ok(&["history", "--limit", "50"]).await;
    assert!(!history.contains("purged"), "{history}");
    assert!(
        world.delivered("installation_errors").len() >= 5,
        "{history}"
    );
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_withdrawing_consent_applies_within_seconds() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    let out = world.emit(&["-"], INSTALL.repeat(3).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world
        .status_until("queued them", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(3)
        })
        .await;
    // No command, no signal: an administrator empties the file.
    std::fs::write(world.path("consent.toml"), "# nothing accepted\n").unwrap();
    let started = Instant::now();
    world
        .status_until("purged what was withdrawn", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let history = world.ok(&["history", "--kind", "purged"]).await;
    // The purge names what was withdrawn, and the purposes it emptied.
    assert!(history.contains("eula"), "{history}");
    assert!(history.contains("installation_errors"), "{history}");
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_exits_0_within_the_grace_and_keeps_the_records() {
    let world = World::with_eula_answering(200).await;
    world.receiver.set_hang(true);
    let daemon = world.spawn_daemon().await;
    let out = world.emit(&["-"], INSTALL.repeat(20).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "no upload started"
    );
    let asked = Instant::now();
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "exit {exit:?}: {log}");
    assert!(
        asked.elapsed() < consentry::daemon::SHUTDOWN_GRACE + Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );

    world.receiver.set_hang(false);
    let daemon = world.spawn_daemon().await;
    world.ok(&["flush"]).await;
    world
        .status_until("delivered after the restart", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    assert!(world.delivered("installation_errors").len() >= 20);
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_state_dir_has_one_daemon() {
    let world = World::new().await;
    let daemon = world.spawn_daemon().await;
    // Same state directory, other sockets: refused by the daemon lock.
    let other = world.path("other.toml");
    std::fs::write(
        &other,
        world
            .config_text("")
            .replace("runtime_dir = \"run\"", "runtime_dir = \"run2\""),
    )
    .unwrap();
    let output = run_with_config(&other, &["daemon"]).await;
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!("another consentry daemon (pid {})", daemon.pid())),
        "{error}"
    );
    daemon.terminate().await;
}
