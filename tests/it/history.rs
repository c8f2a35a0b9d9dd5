//! The audit trail a person can read back: `history`, and `history
//! --show` reproducing a sent body byte for byte.

use consentry::upload::protocol::Body;
use sha2::{Digest, Sha256};

use crate::support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_failed_and_delivered_uploads() {
    let world = World::new().await;
    let empty: serde_json::Value =
        serde_json::from_str(&world.ok(&["history", "--json"]).await).unwrap();
    assert_eq!(
        empty,
        serde_json::json!({"schema": "consentry.history/1", "entries": []})
    );
    assert!(!world.path("state").exists(), "history creates no state");

    world.receiver.script(&[500]);
    world.ok(&["consent", "grant", "eula"]).await;
    assert!(!world.run(&["flush"]).await.status.success());
    world.ok(&["flush"]).await;
    let history: serde_json::Value =
        serde_json::from_str(&world.ok(&["history", "--json"]).await).unwrap();
    let history = &history["entries"];
    let events: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // The second flush collected again: the refused batch goes first, under
    // its old id, then the new record in a batch of its own.
    assert_eq!(events, ["failed", "uploaded", "uploaded"]);
    assert_eq!(history[0]["batch_id"], history[1]["batch_id"]);
    assert_ne!(history[1]["batch_id"], history[2]["batch_id"]);
    assert_eq!(history[0]["detail"], "receiver answered 500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_show_reproduces_the_sent_body_and_a_retry_sends_the_same_bytes() {
    let world = World::new().await;
    world.receiver.script(&[500]);
    world.ok(&["consent", "grant", "eula"]).await;
    assert!(!world.run(&["flush"]).await.status.success());
    world.ok(&["flush"]).await;

    let requests = world.receiver.requests();
    let (first, retry) = (&requests[0], &requests[1]);
    assert_eq!(first.idempotency_key, retry.idempotency_key);
    assert_eq!(first.body, retry.body, "a retry sends the same bytes");

    let batch = retry.idempotency_key.clone().unwrap();
    let history: serde_json::Value =
        serde_json::from_str(&world.ok(&["history", "--json"]).await).unwrap();
    let uploaded = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "uploaded" && e["batch_id"] == batch.as_str())
        .expect("the delivery is in the trail");
    let recorded = uploaded["detail"]
        .as_str()
        .unwrap()
        .rsplit("sha256 ")
        .next()
        .unwrap()
        .to_owned();

    // A prefix of the id is enough, as people type them.
    let shown = world.run(&["history", "--show", &batch[..8]]).await;
    assert!(shown.status.success(), "{shown:?}");
    assert_eq!(hex::encode(Sha256::digest(&shown.stdout)), recorded);
    let wire = Body {
        gzip: retry.body.to_vec(),
        sha256: String::new(),
    };
    assert_eq!(shown.stdout, wire.json().unwrap(), "not the body sent");
    assert!(String::from_utf8_lossy(&shown.stderr).contains(&recorded));

    let json: serde_json::Value =
        serde_json::from_str(&world.ok(&["history", "--show", &batch, "--json"]).await).unwrap();
    assert_eq!(json["sha256"], recorded.as_str());
    assert_eq!(json["body"]["batch_id"], batch.as_str());

    let unknown = world.run(&["history", "--show", "ffffffff"]).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no body is kept for batch `ffffffff`"),
        "{unknown:?}"
    );
}
