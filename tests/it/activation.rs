//! Data sent only after activation by code (issue 20, item 2; seed 004:
//! "If an activation code is being applied … If you do not agree to send
//! this information, you must use a key file"), through the real daemon
//! with the built-in catalogue `ksv`: before any activation the purposes
//! that wait for it are discarded at the door; after an activation by code
//! they go; a later activation with a key file deletes what they queued
//! (the audit trail says why) and stops them, across a restart; `status`
//! says why, with or without a daemon.

use consentry::ingest::client::{self, EmitSummary};

use crate::support::World;

/// The purposes of seed 004's activation section that components report.
const WAITING: [&str; 2] = ["virtual_infrastructure", "license_units"];

const INFRASTRUCTURE: &str = r#"{"kind":"record","purpose":"virtual_infrastructure","fields":{"product_type":"ksv","platform_type":"kvm","platform_version":"8.2","protected_os_type":"windows","protected_vm_count":40}}"#;
const LICENSING: &str = r#"{"kind":"record","purpose":"license_units","fields":{"license_edition":"standard","licensing_scheme":"per_machine","license_order_number":"4500123456","license_units_total":50,"license_units_used":40}}"#;
const BY_CODE: &str = r#"{"kind":"activation","method":"code","code":"ABCDE-12345","license_edition":"standard","svm_id":"6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f"}"#;
const KEY_FILE: &str = r#"{"kind":"activation","method":"key_file"}"#;

/// A world with the `ksv` catalogue and its EULA accepted, whose receiver
/// answers `status`.
async fn ksv_world(status: u16) -> World {
    let world = World::new().await;
    let text = world
        .config_text("")
        .replace("consent_file", "catalogue = \"ksv\"\nconsent_file");
    world.write_config(&text);
    world.receiver.set_status(status);
    world.ok(&["consent", "grant", "eula"]).await;
    world
}

async fn send(world: &World, lines: &[&str]) -> EmitSummary {
    let text = lines.join("\n") + "\n";
    client::send(&world.ingest_socket(), text.as_bytes())
        .await
        .unwrap()
}

/// The reason of `purpose`'s decision: the daemon's, or the command's own
/// when no daemon answers.
fn reason<'s>(status: &'s serde_json::Value, purpose: &str) -> &'s str {
    let decisions = match status["daemon"]["decisions"].as_array() {
        Some(daemon) => daemon,
        None => status["decisions"].as_array().unwrap(),
    };
    let decision = decisions
        .iter()
        .find(|d| d["purpose"] == purpose)
        .unwrap_or_else(|| panic!("no decision for {purpose}: {status}"));
    decision["reason"].as_str().unwrap()
}

/// The audit trail's lines of `kind`, oldest first.
async fn history(world: &World, kind: &str) -> Vec<serde_json::Value> {
    let text = world.ok(&["history", "--kind", kind, "--json"]).await;
    let history: serde_json::Value = serde_json::from_str(&text).unwrap();
    history["entries"].as_array().unwrap().clone()
}

fn queued(status: &serde_json::Value, purpose: &str) -> u64 {
    status["daemon"]["store"]["queued"][purpose]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_any_activation_nothing_of_it_is_kept_and_a_code_lets_it_go_after_a_restart() {
    let world = ksv_world(503).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();

    let status = world.status().await;
    for purpose in WAITING.into_iter().chain(["activation"]) {
        assert!(
            reason(&status, purpose).starts_with("not activated yet"),
            "{status}"
        );
    }
    let summary = send(&world, &[INFRASTRUCTURE, LICENSING]).await;
    assert_eq!((summary.accepted, summary.discarded), (0, 2), "{summary:?}");
    let status = world.status().await;
    for purpose in WAITING {
        assert_eq!(status["daemon"]["discarded"][purpose], 1, "{status}");
        assert_eq!(queued(&status, purpose), 0, "{status}");
    }

    // The lines after an activation by code go, on its connection at once
    // and on any other once it is acknowledged.
    let summary = send(&world, &[BY_CODE, INFRASTRUCTURE]).await;
    assert_eq!((summary.accepted, summary.discarded), (2, 0), "{summary:?}");
    let summary = send(&world, &[LICENSING]).await;
    assert_eq!((summary.accepted, summary.discarded), (1, 0), "{summary:?}");
    let status = world.status().await;
    for purpose in WAITING.into_iter().chain(["activation"]) {
        assert!(
            reason(&status, purpose).starts_with("eula accepted"),
            "{status}"
        );
        assert_eq!(queued(&status, purpose), 1, "{status}");
    }

    // The activation is the store's: a restart keeps it.
    daemon.terminate().await;
    let without = world.status().await;
    assert!(reason(&without, "license_units").starts_with("eula accepted"));
    let _daemon = world.spawn_daemon().await;
    let summary = send(&world, &[INFRASTRUCTURE]).await;
    assert_eq!((summary.accepted, summary.discarded), (1, 0), "{summary:?}");
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    assert_eq!(world.delivered("virtual_infrastructure").len(), 2);
    let licensing = world.delivered("license_units");
    assert_eq!(licensing.len(), 1);
    // Seed 004: "License edition, license order number, and licensing
    // scheme type"; sent as given, like the activation code.
    assert_eq!(licensing[0].fields["license_order_number"], "4500123456");
    let activation = world.delivered("activation");
    assert_eq!(activation[0].fields["activation_code"], "ABCDE-12345");
    // Seed 004: "SVM ID and unique ID of the … installation".
    assert_eq!(
        activation[0].fields["svm_id"],
        "6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_after_a_code_deletes_what_waited_and_stops_it_across_a_restart() {
    let world = ksv_world(503).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    let summary = send(
        &world,
        &[BY_CODE, INFRASTRUCTURE, LICENSING, INFRASTRUCTURE],
    )
    .await;
    assert_eq!(summary.accepted, 4, "{summary:?}");
    let status = world.status().await;
    assert_eq!(queued(&status, "virtual_infrastructure"), 2, "{status}");

    // Acknowledged only once in force: deleted and stopped by then.
    let summary = send(&world, &[KEY_FILE]).await;
    assert_eq!(summary.accepted, 1, "{summary:?}");
    let status = world.status().await;
    for purpose in WAITING.into_iter().chain(["activation"]) {
        assert!(
            reason(&status, purpose).starts_with("activated with a key file"),
            "{status}"
        );
        assert_eq!(queued(&status, purpose), 0, "{status}");
    }
    assert!(reason(&status, "update_identity").starts_with("eula accepted"));
    let purged = history(&world, "purged").await;
    assert_eq!(purged.len(), 1, "{purged:?}");
    let detail = purged[0]["detail"].as_str().unwrap();
    assert!(detail.contains("activated with a key file"), "{detail}");
    assert_eq!(purged[0]["records"], 4, "{purged:?}");
    assert_eq!(purged[0]["facts"]["purposes"]["virtual_infrastructure"], 2);
    let activated: Vec<serde_json::Value> = history(&world, "activated").await;
    let activated: Vec<&str> = activated
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        activated,
        [
            "the product was activated by code",
            "the product was activated with a key file"
        ]
    );
    let summary = send(&world, &[INFRASTRUCTURE, LICENSING]).await;
    assert_eq!((summary.accepted, summary.discarded), (0, 2), "{summary:?}");

    // Across a restart, and in `status` without a daemon.
    daemon.terminate().await;
    let without = world.status().await;
    let text = world.ok(&["status", "license_units"]).await;
    assert!(text.contains("activated with a key file"), "{text}");
    assert!(reason(&without, "virtual_infrastructure").starts_with("activated with a key file"));
    let _daemon = world.spawn_daemon().await;
    let status = world.status().await;
    assert!(reason(&status, "license_units").starts_with("activated with a key file"));
    let summary = send(&world, &[INFRASTRUCTURE]).await;
    assert_eq!((summary.accepted, summary.discarded), (0, 1), "{summary:?}");
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    for purpose in WAITING.into_iter().chain(["activation"]) {
        assert!(world.delivered(purpose).is_empty(), "{purpose} was sent");
    }
    assert!(!world.delivered("update_identity").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_activation_in_one_stream_takes_effect_in_its_place() {
    let world = ksv_world(503).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    // Each activation is in force before the next line is read: the key
    // file deletes what the first code let in, the second code lets in
    // what follows it.
    let lines = [
        BY_CODE,
        INFRASTRUCTURE,
        KEY_FILE,
        INFRASTRUCTURE,
        BY_CODE,
        LICENSING,
    ];
    let summary = send(&world, &lines).await;
    assert_eq!((summary.accepted, summary.discarded), (5, 1), "{summary:?}");
    let status = world.status().await;
    assert_eq!(queued(&status, "activation"), 1, "{status}");
    assert_eq!(queued(&status, "virtual_infrastructure"), 0, "{status}");
    assert_eq!(queued(&status, "license_units"), 1, "{status}");
    assert!(reason(&status, "virtual_infrastructure").starts_with("eula accepted"));
    let purged = history(&world, "purged").await;
    assert_eq!(purged.len(), 1, "{purged:?}");
    assert_eq!(purged[0]["records"], 2, "{purged:?}");
    assert_eq!(history(&world, "activated").await.len(), 3);
    daemon.terminate().await;
}
