//! What reaches the receiver, and what never does.

use std::collections::BTreeSet;
use std::time::Duration;

use consentry::catalogue::Catalogue;

use crate::support::{PATIENCE, World, eventually};

fn update_identity_fields() -> BTreeSet<String> {
    let catalogue = Catalogue::embedded();
    catalogue
        .purpose("update_identity")
        .unwrap()
        .fields
        .iter()
        .map(|f| f.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_eula_update_identity_arrives_with_catalogue_fields_only() {
    let world = World::with_eula_answering(200).await;
    let daemon = world.spawn_daemon().await;

    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "no batch arrived"
    );
    let request = world.receiver.requests().remove(0);
    assert_eq!(request.status, 200);
    assert_eq!(request.method, "POST");
    assert_eq!(request.content_encoding.as_deref(), Some("zstd"));
    let envelope = request.envelope.expect("a decodable batch");
    assert_eq!(
        request.idempotency_key.as_deref(),
        Some(envelope.batch_id.to_string().as_str()),
        "the Idempotency-Key is the batch id"
    );
    assert!(!envelope.records.is_empty());

    let catalogue = Catalogue::embedded();
    let eula = catalogue.clause("eula").unwrap();
    let declared = update_identity_fields();
    for record in &envelope.records {
        assert_eq!(record.purpose, "update_identity");
        assert_eq!(record.clause, "eula");
        assert_eq!(record.clause_version, eula.version);
        assert_eq!(record.clause_sha256, eula.text_sha256);
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(record.fields.get()).unwrap();
        let sent: BTreeSet<String> = fields.keys().cloned().collect();
        assert!(sent.is_subset(&declared), "undeclared fields in {sent:?}");
        assert_eq!(fields["product_id"], "it-product");
        assert_eq!(fields["product_version"], "9.8.7.6");
        assert!(uuid::Uuid::parse_str(fields["installation_id"].as_str().unwrap()).is_ok());
        assert!(uuid::Uuid::parse_str(fields["update_task_id"].as_str().unwrap()).is_ok());
    }

    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "daemon exit {status:?}: {log}");
    assert!(
        !world.path("run/control.sock").exists(),
        "socket left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_accepted_the_receiver_gets_no_request_at_all() {
    let world = World::new().await;
    let daemon = world.spawn_daemon().await;
    // The daemon's collection at start and one of its upload rounds, then
    // an explicit flush through the daemon.
    world
        .status_until("collected and ran an upload round", |s| {
            s["daemon"]["last_collect"].is_object() && s["daemon"]["last_upload_at"].is_string()
        })
        .await;
    let flushed = world.run(&["flush", "--json"]).await;
    let summary: serde_json::Value = serde_json::from_slice(&flushed.stdout).unwrap();
    assert_eq!(summary["collect"]["queued"], 0);
    let blocked = &summary["collect"]["blocked"][0];
    assert_eq!(blocked["purpose"], "update_identity", "{summary}");
    assert_eq!(blocked["reason"], "eula not accepted", "{summary}");
    // And a scheduled round after the flush.
    world.next_upload_round().await;
    assert!(
        world.receiver.requests().is_empty(),
        "something was sent without consent"
    );
    daemon.terminate().await;

    // And without a daemon, the in-process flush sends nothing either.
    world.run(&["flush"]).await;
    assert!(world.receiver.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_revoke_nothing_more_arrives_and_the_queue_is_purged() {
    let world = World::with_eula_answering(200).await;
    let daemon = world.spawn_daemon().await;
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);

    // Queue a batch the receiver refuses, so there is something to purge.
    world.receiver.set_status(503);
    let flushed = world.run(&["flush", "--json"]).await;
    assert!(
        !flushed.status.success(),
        "a failed upload makes flush fail"
    );
    let queued = world.status().await["daemon"]["records_queued"]
        .as_u64()
        .unwrap();
    assert!(queued >= 1, "the refused batch stays queued");

    let revoked = world.ok(&["consent", "revoke", "eula", "--json"]).await;
    let revoked: serde_json::Value = serde_json::from_str(&revoked).unwrap();
    assert_eq!(revoked["daemon"]["outcome"], "applied", "{revoked}");
    assert_eq!(
        world.status().await["daemon"]["records_queued"],
        0,
        "revoke purges the queue"
    );

    world.receiver.set_status(200);
    let seen = world.receiver.requests().len();
    world.run(&["flush"]).await;
    // The flush's round, and a scheduled one after it.
    world.next_upload_round().await;
    assert_eq!(
        world.receiver.requests().len(),
        seen,
        "something arrived after the revoke"
    );
    let decision = &world.status().await["decisions"];
    let update = decision
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["purpose"] == "update_identity")
        .unwrap();
    assert_eq!(update["allowed"], false);
    assert_eq!(update["reason"], "eula not accepted");
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_keeps_the_batch_queued_and_it_arrives_after_recovery() {
    let world = World::with_eula_answering(500).await;
    let daemon = world.spawn_daemon().await;

    // At least two refused attempts: the batch is retried, not lost.
    assert!(world.receiver.wait_for_requests(2, PATIENCE).await);
    world.receiver.set_status(200);
    let delivered = eventually("delivered after recovery", PATIENCE, async || {
        let requests = world.receiver.requests();
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        requests
            .into_iter()
            .find(|r| r.status == 200)
            .ok_or(format!("statuses {statuses:?}"))
    })
    .await;
    let refused = world.receiver.requests().remove(0);
    assert_eq!(refused.status, 500);
    assert_eq!(
        refused.idempotency_key, delivered.idempotency_key,
        "the retry is the same batch"
    );
    let task_id = |r: &consentry::receiver::ReceivedRequest| {
        let envelope = r.envelope.as_ref().unwrap();
        let fields: serde_json::Value =
            serde_json::from_str(envelope.records[0].fields.get()).unwrap();
        fields["update_task_id"].clone()
    };
    assert_eq!(task_id(&refused), task_id(&delivered));
    world
        .status_until("emptied the queue", |s| s["daemon"]["records_queued"] == 0)
        .await;
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_reaches_a_running_daemon_without_restart() {
    let world = World::new().await;
    let daemon = world.spawn_daemon().await;
    world
        .status_until("collected and ran an upload round", |s| {
            s["daemon"]["last_collect"].is_object() && s["daemon"]["last_upload_at"].is_string()
        })
        .await;
    assert!(world.receiver.requests().is_empty());

    let granted = world.ok(&["consent", "grant", "eula"]).await;
    assert!(granted.contains("daemon: applied"), "{granted}");
    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "grant did not take effect"
    );
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_records_survive_a_daemon_restart() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);
    daemon.terminate().await;

    let first_key = world.receiver.requests()[0].idempotency_key.clone();
    world.receiver.set_status(200);
    let daemon = world.spawn_daemon().await;
    // Two batches may be on the wire at once, the one queued before the
    // restart among them: it is delivered, under its key, whichever
    // arrives first.
    eventually(
        "the batch queued before the restart was delivered after it",
        PATIENCE,
        async || {
            let delivered = world
                .receiver
                .requests()
                .iter()
                .any(|r| r.status == 200 && r.idempotency_key == first_key);
            if delivered { Ok(()) } else { Err("not yet") }
        },
    )
    .await;
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_consent_file_sends_nothing_and_loses_nothing() {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);

    // A person breaks the file by hand while a batch is queued.
    let good = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    std::fs::write(world.path("consent.toml"), format!("{good}\n[[accepted]\n")).unwrap();
    world.receiver.set_status(200);
    let seen = world.receiver.requests().len();
    let flushed = world.run(&["flush"]).await;
    assert!(
        !flushed.status.success(),
        "a held queue is not a successful flush"
    );
    // The flush's round, and a scheduled one after it.
    world.next_upload_round().await;
    assert_eq!(
        world.receiver.requests().len(),
        seen,
        "sent with an unreadable consent file"
    );
    let status = world.status().await;
    assert!(
        status["daemon"]["records_queued"].as_u64().unwrap() >= 1,
        "queue held, not purged"
    );
    assert!(
        status["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("consent file unusable"),
        "{status}"
    );

    // Once the file is repaired, the held batch goes out.
    std::fs::write(world.path("consent.toml"), good).unwrap();
    world.ok(&["flush"]).await;
    assert!(
        world.receiver.requests()[seen..]
            .iter()
            .any(|r| r.status == 200)
    );
    // The daemon also notices the repaired file by itself, and collects
    // and sends once more: the queue empties.
    world
        .status_until("emptied the queue", |s| s["daemon"]["records_queued"] == 0)
        .await;
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_purges_the_queue_even_with_no_daemon_running() {
    let world = World::with_eula_answering(503).await;
    assert!(!world.run(&["flush"]).await.status.success());
    let refused = world.receiver.requests()[0].idempotency_key.clone();

    let revoked = world.ok(&["consent", "revoke", "eula"]).await;
    assert!(
        revoked.contains("not running; recorded and applied here (purged 1,"),
        "{revoked}"
    );

    // Accepting again must not resurrect what was collected before.
    world.receiver.set_status(200);
    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["flush"]).await;
    let delivered: Vec<_> = world
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_ne!(delivered[0].idempotency_key, refused);
    assert_eq!(delivered[0].envelope.as_ref().unwrap().records.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_daemon_cleanly_too() {
    let world = World::new().await;
    let daemon = world.spawn_daemon().await;
    let (status, log) = daemon.stop_with(rustix::process::Signal::INT).await;
    assert!(status.success(), "daemon exit {status:?}: {log}");
    assert!(log.contains("SIGINT: shutting down"), "{log}");
    assert!(log.contains("daemon stopped"), "{log}");
    assert!(!world.path("run/control.sock").exists());
}

/// A consent file edited into something this catalogue does not recognise
/// holds the queue: nothing is sent, nothing is purged, `check` fails.
async fn an_unrecognised_acceptance_holds_the_queue(edit: impl Fn(&str) -> String, expect: &str) {
    let world = World::with_eula_answering(503).await;
    let daemon = world.spawn_daemon().await;
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);
    let queued = world.status().await["daemon"]["records_queued"]
        .as_u64()
        .unwrap();
    assert!(queued >= 1);

    let good = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    std::fs::write(world.path("consent.toml"), edit(&good)).unwrap();
    world.receiver.set_status(200);
    let seen = world.receiver.requests().len();
    world.run(&["flush"]).await;
    // The flush's round, and a scheduled one after it.
    world.next_upload_round().await;
    assert_eq!(world.receiver.requests().len(), seen, "sent while held");
    let status = world.status().await;
    assert_eq!(
        status["daemon"]["records_queued"], queued,
        "purged: {status}"
    );
    let history = world.ok(&["history", "--json"]).await;
    assert!(!history.contains("\"purged\""), "{history}");
    let update = status["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["purpose"] == "update_identity")
        .unwrap();
    assert!(
        update["reason"].as_str().unwrap().contains("held"),
        "{update}"
    );

    let check = world.run(&["check"]).await;
    assert_eq!(check.status.code(), Some(1));
    let line = crate::support::stderr_line(&check);
    assert!(
        line.contains("consent.toml:") && line.contains(expect),
        "{line}"
    );

    // Put right, the held batch goes out.
    std::fs::write(world.path("consent.toml"), good).unwrap();
    world.ok(&["flush"]).await;
    world
        .status_until("delivered the held batch", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_version_in_the_consent_file_holds_the_queue_and_fails_check() {
    let catalogue = consentry::catalogue::Catalogue::embedded();
    let version = catalogue.clause("eula").unwrap().version;
    an_unrecognised_acceptance_holds_the_queue(
        |text| text.replace(&format!("version = {version}"), "version = 99"),
        "newer catalogue",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_digest_in_the_consent_file_holds_the_queue_and_fails_check() {
    let catalogue = consentry::catalogue::Catalogue::embedded();
    let sha = catalogue.clause("eula").unwrap().text_sha256.clone();
    an_unrecognised_acceptance_holds_the_queue(
        move |text| text.replace(&sha, &"ab".repeat(32)),
        "text_sha256 this catalogue does not have",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_mid_drain_stops_every_record_of_the_clause_before_it_returns() {
    revoke_mid_drain("").await;
}

/// The same over OTLP: consent at the last moment does not depend on the
/// wire format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_mid_drain_stops_every_record_of_the_clause_over_otlp_too() {
    revoke_mid_drain("protocol = \"otlp-http\"").await;
}

/// 50,000 ksn records draining to a slow receiver, `ksn` revoked after
/// five batches: nothing of ksn arrives after the CLI returns, and what
/// was not sent was purged. `upload_extra`: lines for `[upload]`.
async fn revoke_mid_drain(upload_extra: &str) {
    let world = World::with_upload_extra(upload_extra).await;
    world.receiver.set_status(503);
    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["consent", "grant", "ksn"]).await;
    let daemon = world.spawn_daemon().await;
    let mut lines = String::new();
    for n in 0..50_000 {
        lines.push_str(&format!(
            "{{\"kind\":\"record\",\"purpose\":\"ksn_threat_reports\",\"fields\":{{\"threat_name\":\"EICAR-Test-File\",\"object_size\":{n}}}}}\n"
        ));
    }
    let summary = consentry::ingest::client::send(&world.ingest_socket(), lines.as_bytes())
        .await
        .unwrap();
    assert_eq!(summary.accepted, 50_000);

    // A slow receiver: 500 records a batch, 40 ms a batch.
    world.receiver.set_delay(Duration::from_millis(40));
    world.receiver.set_status(200);
    let ksn_batches = |world: &World| {
        world
            .receiver
            .requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .filter(|r| {
                r.envelope
                    .as_ref()
                    .is_ok_and(|e| e.records.iter().any(|x| x.purpose == "ksn_threat_reports"))
            })
            .collect::<Vec<_>>()
    };
    eventually("started the drain", PATIENCE, async || {
        let batches = ksn_batches(&world).len();
        if batches >= 5 {
            Ok(())
        } else {
            Err(format!("{batches} ksn batch(es)"))
        }
    })
    .await;
    world.ok(&["consent", "revoke", "ksn"]).await;
    let returned = std::time::Instant::now();
    let delivered_before = ksn_batches(&world).len();
    assert!(
        delivered_before < 100,
        "the drain finished before the revoke"
    );

    // Two upload rounds that ended after the revoke returned (in later
    // seconds than the last one before): the second started after the
    // first ended, so after the revoke. What the round in flight at the
    // revoke and the next one would have sent has arrived by now.
    world.next_upload_round().await;
    world.next_upload_round().await;
    let late: Vec<_> = world
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.received_at > returned)
        .filter(|r| {
            r.envelope
                .as_ref()
                .is_ok_and(|e| e.records.iter().any(|x| x.purpose == "ksn_threat_reports"))
        })
        .collect();
    assert!(
        late.is_empty(),
        "{} ksn batch(es) arrived after the revoke",
        late.len()
    );
    let history: serde_json::Value =
        serde_json::from_str(&world.ok(&["history", "--json", "--limit", "500"]).await).unwrap();
    let purged: u64 = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "purged")
        .map(|e| e["records"].as_u64().unwrap())
        .sum();
    let sent: usize = ksn_batches(&world)
        .iter()
        .map(|r| r.envelope.as_ref().unwrap().records.len())
        .sum();
    assert!(purged > 0, "nothing purged");
    assert!(
        purged as usize + sent >= 50_000,
        "purged {purged} + sent {sent} do not account for every record"
    );
    daemon.terminate().await;
}

/// The installation ids the receiver got for `update_identity`, in order.
fn installation_ids(world: &World) -> Vec<String> {
    world
        .received_records()
        .into_iter()
        .filter(|r| r.purpose == "update_identity")
        .map(|r| r.fields["installation_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_eula_replaces_the_installation_id_and_revoking_ksn_does_not() {
    let world = World::with_eula_answering(200).await;
    world.ok(&["consent", "grant", "ksn"]).await;
    let daemon = world.spawn_daemon().await;
    world.ok(&["flush"]).await;
    let first = installation_ids(&world).last().cloned().unwrap();

    world.ok(&["consent", "revoke", "ksn"]).await;
    world.ok(&["flush"]).await;
    assert_eq!(installation_ids(&world).last().unwrap(), &first);

    let revoked = world.ok(&["consent", "revoke", "eula"]).await;
    assert!(revoked.contains("installation id replaced"), "{revoked}");
    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["flush"]).await;
    let second = installation_ids(&world).last().cloned().unwrap();
    assert_ne!(second, first, "data after a new grant links to data before");
    daemon.terminate().await;

    // With no daemon running, the CLI replaces it itself.
    world.ok(&["consent", "revoke", "eula"]).await;
    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["flush"]).await;
    let third = installation_ids(&world).last().cloned().unwrap();
    assert!(third != second && third != first);
    let history = world.ok(&["history"]).await;
    assert_eq!(
        history.matches("installation id replaced").count(),
        2,
        "{history}"
    );
    assert!(!history.contains(&first) && !history.contains(&second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_receiver_refuses_is_dead_lettered_alone_and_a_wrong_endpoint_loses_nothing() {
    let world = World::with_eula_answering(200).await;
    world.receiver.refuse_containing("POISON", 400);
    let daemon = world.spawn_daemon().await;
    let mut lines = String::new();
    for n in 0..300 {
        let error_type = if n == 137 { "POISON" } else { "io" };
        lines.push_str(&format!(
            "{{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\",\"error_type\":\"{error_type}\",\"error_code\":{n}}}\n"
        ));
    }
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world.ok(&["flush"]).await;
    world
        .status_until("emptied the queue", |s| s["daemon"]["records_queued"] == 0)
        .await;
    let codes: BTreeSet<i64> = world
        .delivered("installation_errors")
        .into_iter()
        .map(|r| r.fields["error_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes.len(), 299, "every neighbour arrived");
    assert!(!codes.contains(&137));
    let history = world.ok(&["history", "--limit", "500"]).await;
    assert!(
        history.contains("dead-lettered     1 record(s)"),
        "{history}"
    );
    daemon.terminate().await;
    let db = rusqlite::Connection::open(world.path("state/consentry.sqlite3")).unwrap();
    let (status, fields): (i64, String) = db
        .query_row("SELECT status, fields FROM dead_letter", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, 400);
    assert!(fields.contains("POISON"));

    // A 404 is the endpoint's fault, not the records': nothing is dead-lettered.
    world.receiver.set_status(404);
    let daemon = world.spawn_daemon().await;
    world.run(&["flush"]).await;
    let queued = world.status().await["daemon"]["records_queued"]
        .as_u64()
        .unwrap();
    assert!(queued >= 1, "the 404'd records stay queued");
    let dead: i64 = db
        .query_row("SELECT COUNT(*) FROM dead_letter", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dead, 1);
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_sent_at_once_without_waiting_for_the_delay() {
    let world = World::with_eula_answering(200).await;
    let text = world.config_text("").replace(
        "batch_max_delay = \"300ms\"",
        "batch_max_delay = \"1h\"\nbatch_max_records = 50",
    );
    world.write_config(&text);
    let daemon = world.spawn_daemon().await;
    let lines: String = (0..120)
        .map(|code| {
            format!(
                "{{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\",\"error_code\":{code}}}\n"
            )
        })
        .collect();
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    // No flush, and an hour's delay: only a full batch wakes the uploader.
    eventually(
        "sent the full batches without waiting",
        PATIENCE,
        async || {
            let delivered = world.delivered("installation_errors").len();
            if delivered >= 100 {
                Ok(())
            } else {
                Err(format!("{delivered} delivered"))
            }
        },
    )
    .await;
    daemon.terminate().await;
}
