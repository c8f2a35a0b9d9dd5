//! The audit trail a person can read back: `history`, `history --show`
//! reproducing a sent body byte for byte, and what a report cannot say
//! about itself (a capped KSN counter).

use consentry::upload::protocol::Body;
use sha2::{Digest, Sha256};

use consentry::ingest::client;

use crate::support::{PATIENCE, World, eventually};

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
    // The grant's receipt comes first: the first flush recorded it.
    assert_eq!(history["entries"][0]["event"], "consent");
    let history: Vec<serde_json::Value> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] != "consent")
        .cloned()
        .collect();
    let events: Vec<&str> = history
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

    // The refused batch, and its retry: two batches may be on the wire at
    // once, so another one may come between them.
    let requests = world.receiver.requests();
    let first = requests.iter().find(|r| r.status == 500).unwrap();
    let retry = requests
        .iter()
        .rfind(|r| r.idempotency_key == first.idempotency_key)
        .unwrap();
    assert!(retry.received_at > first.received_at, "it was retried");
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
    let wire = Body::kept(retry.body.to_vec(), String::new());
    assert_eq!(shown.stdout, wire.json().unwrap(), "not the body sent");
    assert!(String::from_utf8_lossy(&shown.stderr).contains(&recorded));
    // The digest recorded is of the bytes the receiver got, which
    // `--wire` prints.
    assert_eq!(hex::encode(Sha256::digest(&retry.body)), recorded);
    let raw = world
        .run(&["history", "--show", &batch[..8], "--wire"])
        .await;
    assert!(raw.status.success(), "{raw:?}");
    assert_eq!(
        raw.stdout,
        retry.body.to_vec(),
        "--wire is not the bytes sent"
    );
    let both = world
        .run(&["history", "--show", &batch, "--wire", "--json"])
        .await;
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot be combined with --json"),
        "{both:?}"
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_by_kind_time_and_purpose_and_carries_the_numbers() {
    let world = World::new().await;
    world.receiver.script(&[503]);
    world.ok(&["consent", "grant", "eula"]).await;
    assert!(!world.run(&["flush"]).await.status.success());
    world.ok(&["flush"]).await;
    let json = |args: &'static [&'static str]| {
        let world = &world;
        async move {
            let mut all = args.to_vec();
            all.push("--json");
            let out: serde_json::Value = serde_json::from_str(&world.ok(&all).await).unwrap();
            out["entries"].as_array().unwrap().clone()
        }
    };
    let uploads = json(&["history", "--kind", "uploaded"]).await;
    assert!(!uploads.is_empty());
    assert!(uploads.iter().all(|e| e["event"] == "uploaded"));
    let facts = &uploads[0]["facts"];
    assert_eq!(facts["status"], 200);
    assert!(
        facts["purposes"]["update_identity"].as_u64() >= Some(1),
        "{facts}"
    );
    assert!(facts["json_bytes"].as_u64() > Some(0));
    assert!(facts["wire_bytes"].as_u64() > Some(0));
    assert_eq!(facts["compression"], "zstd");
    assert_eq!(facts["body_sha256"].as_str().unwrap().len(), 64);
    assert!(facts["latency_ms"].is_u64());

    let failed = json(&["history", "--kind", "failed"]).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["facts"]["status"], 503);

    let about = json(&["history", "--purpose", "update_identity"]).await;
    assert_eq!(about.len(), uploads.len() + failed.len());
    assert!(
        json(&["history", "--purpose", "promotions"])
            .await
            .is_empty()
    );
    assert!(!json(&["history", "--since", "1h"]).await.is_empty());
    assert!(
        json(&["history", "--since", "2099-01-01T00:00:00Z"])
            .await
            .is_empty()
    );
    let bad = world.run(&["history", "--since", "soon"]).await;
    assert_eq!(bad.status.code(), Some(1));
}

/// A `ksn_request` line that claims the largest count of bytes sent.
const HUGE_REQUEST: &[u8] =
    b"{\"kind\":\"ksn_request\",\"ok\":true,\"bytes_sent\":9223372036854775807}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_ksn_counter_is_logged_once_previewed_and_in_the_history() {
    let world = World::new().await;
    for clause in ["eula", "ksn"] {
        world.ok(&["consent", "grant", clause]).await;
    }
    let daemon = world.spawn_daemon().await;
    // Three chunks, each its own commit: full, capped once, capped twice.
    for _ in 0..3 {
        let summary = client::send(&world.ingest_socket(), HUGE_REQUEST)
            .await
            .unwrap();
        assert_eq!(summary.accepted, 1);
    }
    let preview: serde_json::Value = serde_json::from_str(
        &world
            .ok(&["preview", "ksn_scan_aggregates", "--json"])
            .await,
    )
    .unwrap();
    let message = preview["previews"][0]["message"].as_str().unwrap();
    assert!(message.contains("bytes_sent (2 additions)"), "{message}");

    let report = eventually("got a KSN report", PATIENCE, async || {
        world.run(&["flush"]).await;
        world
            .delivered("ksn_scan_aggregates")
            .pop()
            .ok_or("no report")
    })
    .await;
    assert_eq!(report.fields["bytes_sent"], i64::MAX);
    assert_eq!(report.fields["requests_succeeded"], 3);
    assert!(!report.fields.contains_key("capped"), "nothing undeclared");

    let capped: serde_json::Value = serde_json::from_str(
        &world
            .ok(&[
                "history",
                "--kind",
                "capped",
                "--purpose",
                "ksn_scan_aggregates",
                "--json",
            ])
            .await,
    )
    .unwrap();
    let entries = capped["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{capped}");
    assert_eq!(entries[0]["facts"]["capped"]["bytes_sent"], 2, "{capped}");
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("the true totals are larger"),
        "{capped}"
    );

    let (exit, log) = daemon.terminate().await;
    assert!(exit.success());
    assert_eq!(
        log.matches("`bytes_sent` reached its maximum").count(),
        1,
        "{log}"
    );
}
