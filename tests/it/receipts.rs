//! Consent receipts: one per consent event, with every field the receipt
//! format names, whoever made the change and however it was made.

use rustix::process::Signal;

use crate::support::World;

async fn receipts(world: &World) -> Vec<serde_json::Value> {
    let history: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "history", "--json"]).await).unwrap();
    history["receipts"].as_array().unwrap().clone()
}

async fn receipts_until(world: &World, count: usize) -> Vec<serde_json::Value> {
    let what = format!("had {count} receipts");
    crate::support::eventually(&what, crate::support::PATIENCE, async || {
        let all = receipts(world).await;
        if all.len() >= count {
            Ok(all)
        } else {
            Err(format!("only {} receipts: {all:?}", all.len()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_revoke_renewal_region_and_policy_each_leave_one_receipt() {
    let world = World::new().await;
    let catalogue = consentry::catalogue::EMBEDDED;
    std::fs::write(world.path("catalogue.toml"), catalogue).unwrap();
    let base = format!("catalogue = \"catalogue.toml\"\n{}", world.config_text(""));
    world.write_config(&base);
    let daemon = world.spawn_daemon().await;

    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["consent", "revoke", "eula"]).await;
    world.ok(&["consent", "grant", "eula"]).await;
    receipts_until(&world, 3).await;
    daemon.terminate().await;

    // A new version of the licence text: accepting it is a renewal.
    let newer = catalogue.replacen("version = 4", "version = 5", 1);
    assert_ne!(newer, catalogue, "the catalogue's eula is at version 4");
    std::fs::write(world.path("catalogue.toml"), newer).unwrap();
    let daemon = world.spawn_daemon().await;
    world.ok(&["consent", "grant", "eula"]).await;
    receipts_until(&world, 4).await;

    // A region change and a policy that switches a purpose off.
    std::fs::write(
        world.path("policy.toml"),
        "agent = true\ndisabled_purposes = [\"geo_distribution\"]\n",
    )
    .unwrap();
    world.write_config(
        &base
            .replace("region = \"global\"", "region = \"eu\"")
            .replace("[product]", "policy_file = \"policy.toml\"\n\n[product]"),
    );
    daemon.signal(Signal::HUP);
    let all = receipts_until(&world, 6).await;
    daemon.terminate().await;

    let events: Vec<&str> = all.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "grant",
            "revoke",
            "grant",
            "renewal",
            "region_change",
            "policy_change"
        ],
        "{all:#?}"
    );
    let fields = [
        "version",
        "receipt_id",
        "timestamp",
        "jurisdiction",
        "collection_method",
        "event",
        "clause",
        "purposes",
        "previous_state",
        "new_state",
    ];
    for receipt in &all {
        for field in fields {
            assert!(receipt.get(field).is_some(), "{field} missing in {receipt}");
        }
        assert_eq!(receipt["version"], "KI-CR-v1.1.0");
    }
    let grant = &all[0];
    assert_eq!(grant["collection_method"], "cli");
    assert_eq!(grant["jurisdiction"], "global");
    assert_eq!(grant["clause"]["id"], "eula");
    assert_eq!(grant["clause"]["version"], 4);
    assert_eq!(grant["clause"]["text_sha256"].as_str().unwrap().len(), 64);
    assert!(
        grant["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["purpose"] == "update_identity" && p["basis"] == "contract")
    );
    assert_eq!(
        (
            grant["previous_state"].as_str(),
            grant["new_state"].as_str()
        ),
        (Some("not accepted"), Some("accepted v4"))
    );
    assert_eq!(all[1]["collection_method"], "cli");
    assert_eq!(all[1]["new_state"], "not accepted");
    assert_eq!(all[3]["previous_state"], "accepted v4");
    assert_eq!(all[3]["new_state"], "accepted v5");
    assert_eq!(
        (
            all[4]["previous_state"].as_str(),
            all[4]["new_state"].as_str()
        ),
        (Some("global"), Some("eu"))
    );
    assert_eq!(all[5]["purposes"][0]["purpose"], "geo_distribution");
    assert_eq!(all[5]["jurisdiction"], "eu");

    // One receipt, by the start of its id; and every event in `history`.
    let id = all[1]["receipt_id"].as_str().unwrap();
    let one: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "receipt", &id[..8]]).await).unwrap();
    assert_eq!(one["receipt_id"], id);
    let history = world.ok(&["history", "--limit", "200"]).await;
    assert!(history.contains("revoke eula v4"), "{history}");
    assert!(history.contains("region_change"), "{history}");
}

fn deletions(world: &World) -> Vec<consentry::upload::protocol::DeletionEnvelope> {
    world
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.deletion)
        .collect()
}

/// `count` promotions records through the ingest socket, then a flush.
async fn promotions(world: &World, count: usize) {
    let lines: String = (0..count)
        .map(|i| {
            format!(
                "{{\"kind\":\"record\",\"purpose\":\"promotions\",\"fields\":{{\"settings_id\":\"s-{i}\",\"service_user_id\":\"user-42\"}}}}\n"
            )
        })
        .collect();
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.ok(&["flush"]).await;
}

/// The erasure key a delivered record carries.
fn erasure_key(record: &crate::support::Received) -> &str {
    record.fields["erasure_key"].as_str().unwrap()
}

/// Issue 20, item 4 D: a withdrawal's request names what the clause's
/// records carry. Every promotions record sent under one acceptance of
/// `marketing` carries the key its withdrawal's request names, and no
/// record sent after a new grant does; none carries the installation id,
/// and neither does the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_matches_every_record_of_a_withdrawn_clause_and_none_sent_after_a_new_grant() {
    let world = World::with_eula_answering(200).await;
    world.ok(&["consent", "grant", "marketing"]).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    promotions(&world, 3).await;
    let installation_id = world.delivered("update_identity")[0].fields["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = world.delivered("promotions");
    assert_eq!(before.len(), 3);
    assert!(deletions(&world).is_empty());

    // marketing declares a deletion request: exactly one arrives, once.
    world.ok(&["consent", "revoke", "marketing"]).await;
    world.ok(&["flush"]).await;
    world.ok(&["flush"]).await;
    let sent = deletions(&world);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let request = &sent[0].request;
    assert_eq!(sent[0].kind, "deletion_request");
    assert_eq!(request.clause.id, "marketing");
    assert_eq!(
        request.purposes,
        ["promotions"],
        "the withdrawn purposes, nothing else"
    );
    let named = request
        .erasure_key
        .expect("the key its records carry")
        .to_string();
    assert_eq!(request.installation_id, None, "its records do not carry it");
    // The receiver finds every record sent under the clause by the key.
    assert!(before.iter().all(|r| erasure_key(r) == named), "{before:?}");
    assert!(
        before
            .iter()
            .all(|r| !serde_json::Value::Object(r.fields.clone())
                .to_string()
                .contains(&installation_id)),
        "promotions records stay unlinked to the installation id"
    );
    let history = world.ok(&["history", "--kind", "deletion-request"]).await;
    assert!(
        history.contains("queued") && history.contains("sent") && history.contains("erasure key"),
        "{history}"
    );

    // Granted again: a new key, which the request does not name and which
    // cannot be linked to the last.
    world.ok(&["consent", "grant", "marketing"]).await;
    promotions(&world, 2).await;
    let after = &world.delivered("promotions")[3..];
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|r| erasure_key(r) != named), "{after:?}");
    assert_eq!(erasure_key(&after[0]), erasure_key(&after[1]));

    // The EULA declares none: withdrawing it sends nothing at all.
    let before = world.receiver.requests().len();
    world.ok(&["consent", "revoke", "eula"]).await;
    world.ok(&["flush"]).await;
    assert_eq!(
        world.receiver.requests().len(),
        before,
        "something was sent"
    );
    assert_eq!(deletions(&world).len(), 1);
    daemon.terminate().await;
}

/// `count` third-party user counts through the ingest socket, then a
/// flush; the component sends no installation id (the agent adds it).
async fn user_counts(world: &World, count: usize) {
    let line = "{\"kind\":\"record\",\"purpose\":\"third_party_user_count\",\"fields\":{\"product_name\":\"Suite\",\"os_version\":\"12\"}}\n";
    let out = world.emit(&["-"], line.repeat(count).as_bytes()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.ok(&["flush"]).await;
}

/// Issue 20, item 4 D: `third_party_analytics`, whose records carry the
/// installation id, asks for their erasure by it; the id is replaced, so
/// records sent after a new grant do not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawing_third_party_analytics_asks_for_erasure_by_the_installation_id_its_records_carry()
 {
    let world = World::new().await;
    world.receiver.set_status(200);
    world.set_region("eu");
    for clause in ["eula_regional", "third_party_analytics"] {
        world.ok(&["consent", "grant", clause]).await;
    }
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    user_counts(&world, 2).await;
    let id =
        |r: &crate::support::Received| r.fields["installation_id"].as_str().unwrap().to_owned();
    let before = world.delivered("third_party_user_count");
    assert_eq!(before.len(), 2);
    assert_eq!(id(&before[0]), id(&before[1]));

    world
        .ok(&["consent", "revoke", "third_party_analytics"])
        .await;
    world.ok(&["flush"]).await;
    let sent = deletions(&world);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let request = &sent[0].request;
    assert_eq!(request.clause.id, "third_party_analytics");
    assert_eq!(request.purposes, ["third_party_user_count"]);
    assert_eq!(request.erasure_key, None);
    let named = request
        .installation_id
        .expect("the id its records carry")
        .to_string();
    assert!(before.iter().all(|r| id(r) == named), "{before:?}");

    world
        .ok(&["consent", "grant", "third_party_analytics"])
        .await;
    user_counts(&world, 1).await;
    let after = &world.delivered("third_party_user_count")[2..];
    assert_eq!(after.len(), 1);
    assert_ne!(id(&after[0]), named, "replaced at the withdrawal");
    daemon.terminate().await;
}
