//! Body compression on the wire: zstd by default, gzip when asked, and
//! gzip from then on (remembered across restarts) for a receiver that
//! answers 415 to zstd; the refused batch is the one that goes again.

use consentry::upload::compression::{Compression, decompress};
use sha2::Digest as _;

use crate::support::{PATIENCE, World, eventually};

/// Waits until the receiver has accepted a request.
async fn first_accepted(world: &World) -> consentry::receiver::ReceivedRequest {
    eventually("accepted a request", PATIENCE, async || {
        let requests = world.receiver.requests();
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        requests
            .into_iter()
            .find(|r| r.status == 200)
            .ok_or(format!("statuses {statuses:?}"))
    })
    .await
}

async fn a_gzip_only_receiver_gets_the_refused_batch_again_as_gzip(upload_extra: &str) {
    let world = World::with_upload_extra(upload_extra).await;
    world.receiver.set_gzip_only(true);
    world.ok(&["consent", "grant", "eula"]).await;
    let daemon = world.spawn_daemon().await;

    let accepted = first_accepted(&world).await;
    let requests = world.receiver.requests();
    let refused = &requests[0];
    assert_eq!(refused.status, 415);
    assert_eq!(refused.content_encoding.as_deref(), Some("zstd"));
    assert_eq!(Compression::of(&refused.body), Some(Compression::Zstd));
    assert_eq!(accepted.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(Compression::of(&accepted.body), Some(Compression::Gzip));
    assert_eq!(
        refused.idempotency_key, accepted.idempotency_key,
        "the refused batch is the one sent again"
    );
    assert_eq!(
        decompress(&refused.body).unwrap(),
        decompress(&accepted.body).unwrap(),
        "the same document, recompressed"
    );
    assert_eq!(
        requests.iter().filter(|r| r.status == 415).count(),
        1,
        "asked once"
    );

    // What history keeps and shows is what was last sent.
    let key = accepted.idempotency_key.clone().unwrap();
    let shown = world.run(&["history", "--show", &key]).await;
    assert!(shown.status.success(), "{shown:?}");
    let wire = world.run(&["history", "--show", &key, "--wire"]).await;
    assert!(wire.status.success(), "{wire:?}");
    assert_eq!(
        wire.stdout,
        accepted.body.to_vec(),
        "the gzip bytes are kept"
    );
    let history = world.ok(&["history", "--json"]).await;
    let digest = hex::encode(sha2::Sha256::digest(&accepted.body));
    assert!(
        history.contains(&format!("body sha256 {digest}")),
        "the delivery names the digest of the gzip bytes: {history}"
    );
    assert!(
        history.contains("answered 415 to a zstd body; gzip from now on"),
        "the switch is in the audit trail: {history}"
    );
    daemon.terminate().await;

    // Remembered: after a restart, nothing more is sent as zstd.
    let seen = world.receiver.requests().len();
    let mut daemon = world.spawn_daemon().await;
    assert!(world.receiver.wait_for_requests(seen + 1, PATIENCE).await);
    daemon.drain_log();
    let after: Vec<_> = world.receiver.requests().split_off(seen);
    assert!(
        after.iter().all(|r| r.status == 200),
        "{:?}",
        statuses(&after)
    );
    assert!(
        after
            .iter()
            .all(|r| r.content_encoding.as_deref() == Some("gzip")),
        "gzip after the restart"
    );
    daemon.terminate().await;
}

fn statuses(requests: &[consentry::receiver::ReceivedRequest]) -> Vec<u16> {
    requests.iter().map(|r| r.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_only_receiver_gets_gzip_from_its_first_415_on() {
    a_gzip_only_receiver_gets_the_refused_batch_again_as_gzip("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_only_otlp_receiver_gets_gzip_from_its_first_415_on() {
    a_gzip_only_receiver_gets_the_refused_batch_again_as_gzip("protocol = \"otlp-http\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_gzip_in_the_config_sends_gzip_from_the_start() {
    let world = World::with_upload_extra("compression = \"gzip\"").await;
    world.ok(&["consent", "grant", "eula"]).await;
    let daemon = world.spawn_daemon().await;
    let accepted = first_accepted(&world).await;
    let first = world.receiver.requests().remove(0);
    assert_eq!(first.status, 200);
    assert_eq!(accepted.content_encoding.as_deref(), Some("gzip"));
    daemon.terminate().await;
}
