//! The store under faults: concurrent first starts, records that cannot
//! be read back, databases that fail their check, and the bounds.

use crate::support::{PATIENCE, World, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_and_a_flush_starting_together_on_a_new_state_dir_both_work() {
    for attempt in 0..50 {
        let world = World::new().await;
        let daemon = tokio::process::Command::new(crate::support::BIN)
            .args(["daemon", "--config"])
            .arg(&world.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let flush = world.run(&["flush"]).await;
        assert!(
            flush.status.success(),
            "attempt {attempt}: flush failed ({}): {}{}",
            flush.status,
            String::from_utf8_lossy(&flush.stderr),
            String::from_utf8_lossy(&flush.stdout)
        );
        let mut daemon = daemon;
        // Answering, or gone (with its exit status).
        let exited = eventually("answered as a daemon", PATIENCE, async || {
            if world.status().await["daemon"].is_object() {
                Ok(None)
            } else if let Ok(Some(exit)) = daemon.try_wait() {
                Ok(Some(exit))
            } else {
                Err(format!("attempt {attempt}: no answer yet"))
            }
        })
        .await;
        if let Some(exit) = exited {
            let output = daemon.wait_with_output().await.unwrap();
            panic!(
                "attempt {attempt}: daemon exited {exit}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let pid = daemon.id().unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let output = daemon.wait_with_output().await.unwrap();
        assert!(
            output.status.success(),
            "attempt {attempt}: daemon failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_or_segment_is_dead_lettered_and_its_neighbours_arrive() {
    let world = World::with_eula_answering(503).await;
    let upload_extra = "batch_max_records = 500";
    let text = world.config_text(upload_extra);
    world.write_config(&text);
    let daemon = world.spawn_daemon().await;
    // The batch in flight, whose body is kept for its retries, is the
    // start-up collection's, claimed before the load arrives.
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);
    let lines =
        "{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\"}\n".repeat(499);
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world
        .status_until("queued them all", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(500)
        })
        .await;
    let total = world.status().await["daemon"]["records_queued"]
        .as_u64()
        .unwrap();
    daemon.terminate().await;

    let db = rusqlite::Connection::open(world.path("state/consentry.sqlite3")).unwrap();
    let segments: Vec<(i64, i64)> = db
        .prepare(
            "SELECT id, records FROM queue WHERE purpose = 'installation_errors' AND records > 1
             ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(segments.len() >= 2, "{segments:?}");
    // The first line of a segment in the middle loses its end (written
    // back as text, which keeps its other lines readable) ...
    let (broken, _) = segments[segments.len() / 2];
    let lines = crate::support::segment_text(&db, broken);
    let (_, rest) = lines.split_once('\n').unwrap();
    db.execute(
        "UPDATE queue SET lines = ?2 WHERE id = ?1",
        rusqlite::params![broken, format!("{{\"broken\n{rest}")],
    )
    .unwrap();
    // ... and a packed segment gets one byte wrong: its frame's checksum
    // fails, so all of its records are dead-lettered, none sent as other
    // text.
    let (damaged, damaged_records) = segments[0];
    let mut frame: Vec<u8> = db
        .query_row("SELECT lines FROM queue WHERE id = ?1", [damaged], |r| {
            r.get(0)
        })
        .unwrap();
    let middle = frame.len() / 2;
    frame[middle] ^= 0x55;
    db.execute(
        "UPDATE queue SET lines = ?2 WHERE id = ?1",
        rusqlite::params![damaged, frame],
    )
    .unwrap();
    drop(db);

    world.receiver.set_status(200);
    let daemon = world.spawn_daemon().await;
    world.ok(&["flush"]).await;
    world
        .status_until("emptied the queue", |s| s["daemon"]["records_queued"] == 0)
        .await;
    assert!(total >= 500);
    let delivered = world.delivered("installation_errors").len() as i64;
    assert_eq!(
        delivered,
        498 - damaged_records,
        "neighbours of the corrupt records were lost"
    );
    let history = world.ok(&["history"]).await;
    let dead = format!("dead-lettered {:>5} record(s)", damaged_records + 1);
    assert!(history.contains(&dead), "{dead}: {history}");
    daemon.terminate().await;
}

/// Queues `n` install-task records through a daemon answered with 503 (so
/// nothing leaves), then stops it.
async fn queued(world: &World, n: usize) -> u64 {
    let daemon = world.spawn_daemon().await;
    let lines =
        "{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\"}\n".repeat(n);
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world
        .status_until("queued them all", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(n as u64)
        })
        .await;
    let total = world.status().await["daemon"]["records_queued"]
        .as_u64()
        .unwrap();
    daemon.terminate().await;
    total
}

fn quarantine_dir(world: &World) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(world.path("state/quarantine"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    !p.to_string_lossy().ends_with("-wal") && !p.to_string_lossy().ends_with("-shm")
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_database_is_quarantined_and_status_says_so() {
    let world = World::with_eula_answering(503).await;
    queued(&world, 1000).await;
    let db = world.path("state/consentry.sqlite3");
    let _ = std::fs::remove_file(world.path("state/consentry.sqlite3-wal"));
    std::fs::File::create(&db).unwrap().set_len(0).unwrap();

    let daemon = world.spawn_daemon().await;
    let status = world.status().await;
    let quarantine = &status["daemon"]["store"]["quarantine"];
    assert!(
        quarantine["reason"].as_str().unwrap().contains("empty"),
        "{status}"
    );
    let moved = quarantine["moved_to"].as_str().unwrap();
    assert!(std::path::Path::new(moved).exists(), "{moved}");
    assert_eq!(quarantine_dir(&world).len(), 1);
    let text = String::from_utf8(world.run(&["status"]).await.stdout).unwrap();
    assert!(text.contains("quarantined"), "{text}");
    // The daemon runs on, with a fresh queue.
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    assert!(log.contains("failed its check"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scribbled_database_is_quarantined_and_its_readable_records_queued_again() {
    let world = World::with_eula_answering(503).await;
    let total = queued(&world, 2000).await;
    let db = world.path("state/consentry.sqlite3");
    let mut bytes = std::fs::read(&db).unwrap();
    // A page in the middle of the queue's packed segments.
    let middle = crate::support::page_among_packed_segments(&bytes, 20)
        .expect("the queue's segments are in the file") as usize;
    bytes[middle..middle + 4096].fill(0xa5);
    std::fs::write(&db, bytes).unwrap();

    let daemon = world.spawn_daemon().await;
    let status = world.status().await;
    let store = &status["daemon"]["store"];
    assert!(
        store["quarantine"]["reason"]
            .as_str()
            .unwrap()
            .contains("damaged"),
        "{status}"
    );
    // The damaged file is kept, not deleted; what it held is reported
    // when it can still be counted.
    assert_eq!(quarantine_dir(&world).len(), 1);
    if let Some(records) = store["quarantine"]["records"].as_u64() {
        assert!(records <= total);
    }
    // A fresh queue holding every record still readable in the damaged
    // file (and at most the start-up collection besides).
    let recovered = store["quarantine"]["recovered"]
        .as_u64()
        .expect("recovered");
    assert!(
        recovered > total / 2 && recovered < total,
        "{recovered} of {total}"
    );
    let queued = status["daemon"]["records_queued"].as_u64().unwrap();
    assert!((recovered..=recovered + 1).contains(&queued), "{status}");
    let text = String::from_utf8(world.run(&["status"]).await.stdout).unwrap();
    assert!(text.contains("are queued again"), "{text}");
    // `check` says so too, with the path and what was recovered, and
    // still passes: the daemon runs on a fresh store.
    let check = world.ok(&["check", "--json"]).await;
    let check: serde_json::Value = serde_json::from_str(&check).unwrap();
    let shown = &check["state_dir"]["quarantine"];
    assert_eq!(shown, &store["quarantine"], "{check}");
    let text = world.ok(&["check"]).await;
    let moved = store["quarantine"]["moved_to"].as_str().unwrap();
    assert!(
        text.contains("was quarantined") && text.contains(moved),
        "{text}"
    );
    assert!(
        text.contains(&format!("{recovered} were readable and are queued again")),
        "{text}"
    );
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_of_the_lowest_priority_and_counts_them() {
    let world = World::with_eula_answering(503).await;
    // Promotions: the low priority, fed by `record` events.
    world.ok(&["consent", "grant", "marketing"]).await;
    const MAX: u64 = 1 << 20;
    let text = format!(
        "{}\n[store]\nmax_queue_bytes = {MAX}\n",
        world.config_text("")
    );
    world.write_config(&text);
    let daemon = world.spawn_daemon().await;
    // The batch in flight (never evicted) is the start-up collection's,
    // claimed and refused before the load arrives.
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);
    // Low priority first (older), then normal priority: together well over
    // the bound.
    let promotions: String = (0..4000)
        .map(|i| {
            format!(
                "{{\"kind\":\"record\",\"purpose\":\"promotions\",\"fields\":{{\"settings_id\":\"page-{i:05}\",\"os_bitness\":64,\"services_connected\":true}}}}\n"
            )
        })
        .collect();
    let out = world.emit(&["-"], promotions.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    let installs =
        "{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\"}\n".repeat(3000);
    let out = world.emit(&["-"], installs.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");

    world
        .status_until("kept the bound", |s| {
            let store = &s["daemon"]["store"];
            store["queue_bytes"].as_u64() <= Some(MAX)
                && store["dropped"]["promotions"]["queue_full"].as_u64() > Some(0)
        })
        .await;
    let status = world.status().await;
    let store = &status["daemon"]["store"];
    assert_eq!(store["max_queue_bytes"], MAX);
    let dropped_promotions = store["dropped"]["promotions"]["queue_full"]
        .as_u64()
        .unwrap();
    // The lower priority went first: installation errors lose nothing
    // while promotions remain.
    let dropped_installs = store["dropped"]["installation_errors"]["queue_full"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        dropped_installs == 0 || dropped_promotions == 4000,
        "{store}"
    );
    let text = String::from_utf8(world.run(&["status"]).await.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("dropped "))
        .unwrap_or("");
    assert!(
        line.contains(&format!("promotions: {dropped_promotions} queue full")),
        "{text}"
    );

    // Deliver: the oldest promotions are the ones gone, and the drop count
    // goes out once, in the first batch delivered.
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    world
        .status_until("emptied the queue", |s| s["daemon"]["records_queued"] == 0)
        .await;
    let mut pages: Vec<String> = world
        .delivered("promotions")
        .iter()
        .map(|r| r.fields["settings_id"].as_str().unwrap().to_owned())
        .collect();
    pages.sort();
    assert_eq!(pages.len() as u64, 4000 - dropped_promotions);
    if let Some(first) = pages.first() {
        assert_eq!(
            first,
            &format!("page-{dropped_promotions:05}"),
            "not the oldest went"
        );
    }
    let reports: Vec<serde_json::Value> = world
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.envelope.ok())
        .filter(|e| !e.dropped.is_empty())
        .map(|e| serde_json::to_value(&e.dropped).unwrap())
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["promotions"]["queue_full"], dropped_promotions);
    daemon.terminate().await;
}
