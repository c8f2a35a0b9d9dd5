//! The installer's question (seed 002: "The decision to participate is made
//! when you install"): `consentry consent grant|revoke --method installer`
//! records who asked, in the consent file and in the act's declared
//! receipt, with or without a daemon; nothing voluntary is accepted without
//! that explicit verb.

use crate::support::World;

async fn receipts(world: &World) -> Vec<serde_json::Value> {
    let history: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "history", "--json"]).await).unwrap();
    history["receipts"].as_array().unwrap().clone()
}

/// The consent file's records of `clause`, as TOML tables.
fn records_of(world: &World, clause: &str) -> Vec<toml::Table> {
    let Ok(text) = std::fs::read_to_string(world.path("consent.toml")) else {
        return Vec::new();
    };
    let file: toml::Table = text.parse().unwrap();
    file.get("accepted")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_table())
        .filter(|r| r.get("clause").and_then(|c| c.as_str()) == Some(clause))
        .cloned()
        .collect()
}

/// The receipt whose act the command's JSON answer names.
fn receipt_of(all: &[serde_json::Value], change: &serde_json::Value) -> serde_json::Value {
    let id = change["daemon"]["receipts"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt in {change}"));
    all.iter()
        .find(|r| r["receipt_id"] == id)
        .unwrap_or_else(|| panic!("receipt {id} not in the history: {all:#?}"))
        .clone()
}

fn assert_declared_by_installer(receipt: &serde_json::Value, event: &str, clause: &str) {
    assert_eq!(receipt["event"], event, "{receipt:#}");
    assert_eq!(receipt["clause"]["id"], clause, "{receipt:#}");
    assert_eq!(receipt["collection_method"], "installer", "{receipt:#}");
    assert!(receipt["act_id"].is_string(), "not declared: {receipt:#}");
    assert!(receipt["observed"].is_null(), "not declared: {receipt:#}");
}

/// Whether `status --json` says the KSN aggregates may be sent.
fn ksn_allowed(status: &serde_json::Value) -> Option<bool> {
    status["decisions"]
        .as_array()?
        .iter()
        .find(|d| d["purpose"] == "ksn_scan_aggregates")?["allowed"]
        .as_bool()
}

async fn change(world: &World, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&world.ok(&all).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installer_grant_is_written_and_declared_as_installer_with_and_without_a_daemon() {
    let world = World::new().await;

    // No daemon: the command records its own act.
    let eula = change(
        &world,
        &["consent", "grant", "eula", "--method", "installer"],
    )
    .await;
    assert_eq!(eula["daemon"]["outcome"], "not_running", "{eula}");
    assert_eq!(eula["acceptance"]["method"], "installer");
    let ksn = change(
        &world,
        &["consent", "grant", "ksn", "--method", "installer"],
    )
    .await;
    assert_eq!(ksn["daemon"]["outcome"], "not_running", "{ksn}");
    for clause in ["eula", "ksn"] {
        let records = records_of(&world, clause);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["method"].as_str(), Some("installer"));
    }
    let all = receipts(&world).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_declared_by_installer(&receipt_of(&all, &eula), "grant", "eula");
    assert_declared_by_installer(&receipt_of(&all, &ksn), "grant", "ksn");

    // With a daemon: it records the act before answering, the same way.
    let daemon = world.spawn_daemon().await;
    let revoked = change(
        &world,
        &["consent", "revoke", "ksn", "--method", "installer"],
    )
    .await;
    assert_eq!(revoked["daemon"]["outcome"], "applied", "{revoked}");
    let granted = change(
        &world,
        &["consent", "grant", "ksn", "--method", "installer"],
    )
    .await;
    assert_eq!(granted["daemon"]["outcome"], "applied", "{granted}");
    assert_eq!(
        records_of(&world, "ksn")[0]["method"].as_str(),
        Some("installer")
    );
    let all = receipts(&world).await;
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_declared_by_installer(&receipt_of(&all, &revoked), "revoke", "ksn");
    assert_declared_by_installer(&receipt_of(&all, &granted), "grant", "ksn");

    // The default is the command line; a grant of what is accepted as it
    // is now changes nothing, not even who accepted it.
    let again = change(&world, &["consent", "grant", "ksn"]).await;
    assert_eq!(again["changed"], false);
    assert_eq!(again["acceptance"]["method"], "installer");
    change(&world, &["consent", "revoke", "ksn"]).await;
    let by_hand = change(&world, &["consent", "grant", "ksn"]).await;
    assert_eq!(by_hand["acceptance"]["method"], "cli");
    let all = receipts(&world).await;
    assert_eq!(receipt_of(&all, &by_hand)["collection_method"], "cli");
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_that_is_not_installer_or_cli_is_a_usage_error_and_changes_nothing() {
    let world = World::new().await;
    for verb in ["grant", "revoke"] {
        for method in ["Installer", "file", ""] {
            let output = world
                .run(&["consent", verb, "eula", "--method", method])
                .await;
            assert_eq!(output.status.code(), Some(2), "{verb} --method {method:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("installer, cli"), "{stderr}");
        }
    }
    assert!(!world.path("consent.toml").exists());
    assert!(
        !world.path("state").exists(),
        "a usage error touched the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_voluntary_is_accepted_without_its_own_grant() {
    let world = World::new().await;
    // The installer's licence acceptance, a daemon start, a flush: none of
    // them is a yes to the Security Network.
    world
        .ok(&["consent", "grant", "eula", "--method", "installer"])
        .await;
    let daemon = world.spawn_daemon().await;
    world.ok(&["flush"]).await;
    assert_eq!(ksn_allowed(&world.status().await), Some(false));
    assert!(records_of(&world, "ksn").is_empty());
    let all = receipts(&world).await;
    assert!(
        all.iter().all(|r| r["clause"]["id"] != "ksn"),
        "a ksn receipt nobody asked for: {all:#?}"
    );
    // Only the verb accepts it.
    world
        .ok(&["consent", "grant", "ksn", "--method", "installer"])
        .await;
    // The daemon applied it before the command returned.
    assert_eq!(ksn_allowed(&world.status().await), Some(true));
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_is_one_declared_receipt_and_changes_nothing_with_or_without_a_daemon() {
    let world = World::new().await;
    world
        .ok(&["consent", "grant", "eula", "--method", "installer"])
        .await;
    let file_before = std::fs::read_to_string(world.path("consent.toml")).unwrap();

    // No daemon: the command records it under the daemon's lock.
    let declined = change(
        &world,
        &["consent", "decline", "ksn", "--method", "installer"],
    )
    .await;
    assert_eq!(declined["act"], "decline");
    assert_eq!(declined["changed"], false);
    assert!(declined["acceptance"].is_null());
    assert_eq!(declined["daemon"]["outcome"], "not_running", "{declined}");
    let all = receipts(&world).await;
    let receipt = receipt_of(&all, &declined);
    assert_declared_by_installer(&receipt, "decline", "ksn");
    assert_eq!(receipt["previous_state"], "not accepted");
    assert_eq!(receipt["new_state"], "not accepted");
    assert_eq!(receipt["clause"]["version"], 4);

    // With a daemon: recorded before it answers; nothing else moves.
    let daemon = world.spawn_daemon().await;
    let before = world.status().await;
    let again = change(&world, &["consent", "decline", "ksn"]).await;
    assert_eq!(again["daemon"]["outcome"], "applied", "{again}");
    assert_eq!(again["daemon"]["purged"], 0);
    let all = receipts(&world).await;
    let receipt = receipt_of(&all, &again);
    assert_eq!(receipt["event"], "decline");
    assert_eq!(receipt["collection_method"], "cli");
    assert_eq!(
        std::fs::read_to_string(world.path("consent.toml")).unwrap(),
        file_before,
        "a decline wrote the consent file"
    );
    let after = world.status().await;
    assert_eq!(ksn_allowed(&after), Some(false));
    assert_eq!(after["decisions"], before["decisions"]);
    let generation = |s: &serde_json::Value| s["daemon"]["consent"]["generation"].clone();
    assert_eq!(
        generation(&after),
        generation(&before),
        "a decline published"
    );
    let history = world.ok(&["consent", "history"]).await;
    assert!(
        history.contains(
            "decline       ksn v4               not accepted -> not accepted  (cli, global)"
        ),
        "{history}"
    );

    // Accepted: a decline is refused (exit 1), records nothing and never
    // withdraws; the revoke does that.
    world.ok(&["consent", "grant", "ksn"]).await;
    let count = receipts(&world).await.len();
    let refused = world.run(&["consent", "decline", "ksn"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("consentry consent revoke ksn"), "{stderr}");
    assert_eq!(receipts(&world).await.len(), count);
    assert_eq!(ksn_allowed(&world.status().await), Some(true));
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installer_can_ask_first_and_name_the_text_it_showed() {
    let world = World::new().await;
    let show: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "show", "ksn", "--json"]).await).unwrap();
    let shown = show["clause"]["text_sha256"].as_str().unwrap().to_owned();

    // --check: would a yes be recorded now? Not without the EULA; a no can.
    let refused = world.run(&["consent", "grant", "ksn", "--check"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("grant eula first"));
    world.ok(&["consent", "decline", "ksn", "--check"]).await;
    // Asking leaves no trace: no consent file, no lock file, no store.
    for left in ["consent.toml", ".consent.toml.lock", "state"] {
        assert!(!world.path(left).exists(), "--check left {left}");
    }
    world.ok(&["consent", "grant", "eula"]).await;
    let checked = change(&world, &["consent", "grant", "ksn", "--check"]).await;
    assert_eq!(checked["daemon"]["outcome"], "checked");
    assert_eq!(checked["changed"], true, "a grant would change it");
    assert!(checked["daemon"]["receipts"].as_array().unwrap().is_empty());
    assert!(records_of(&world, "ksn").is_empty(), "--check wrote");
    assert_eq!(receipts(&world).await.len(), 1, "--check recorded");

    // A text other than the one shown: nothing recorded.
    let other = "0".repeat(64);
    for verb in ["grant", "decline"] {
        let output = world
            .run(&["consent", verb, "ksn", "--text-sha256", &other])
            .await;
        assert_eq!(output.status.code(), Some(1), "{verb}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is not the one shown"), "{stderr}");
    }
    assert!(records_of(&world, "ksn").is_empty());
    assert_eq!(receipts(&world).await.len(), 1);

    // The text shown: recorded, against that text.
    let granted = change(
        &world,
        &[
            "consent",
            "grant",
            "ksn",
            "--method",
            "installer",
            "--text-sha256",
            &shown,
        ],
    )
    .await;
    assert_eq!(granted["acceptance"]["text_sha256"], shown.as_str());
    let all = receipts(&world).await;
    assert_eq!(
        receipt_of(&all, &granted)["clause"]["text_sha256"],
        shown.as_str()
    );
    let again = change(&world, &["consent", "grant", "ksn", "--check"]).await;
    assert_eq!(again["changed"], false, "already accepted");
    assert_eq!(again["acceptance"]["method"], "installer");
    let output = world.run(&["consent", "decline", "ksn", "--check"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "an accepted clause cannot be declined"
    );
}
