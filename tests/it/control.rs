//! The control socket while the network is slow: only `flush` waits for
//! the uploader; everything else is answered from memory and the store.

use std::time::Duration;

use crate::support::{PATIENCE, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_answered_while_a_flush_waits_on_a_slow_receiver() {
    let world = World::with_eula_answering(200).await;
    let mut daemon = world.spawn_daemon().await;
    // The start-up collection is delivered first, so that the flush below
    // has a request of its own to wait for.
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);
    world.receiver.set_delay(Duration::from_secs(4));
    let seen = world.receiver.requests().len();

    let flush = tokio::spawn({
        let config = world.path("consentry.toml");
        async move { crate::support::run_with_config(&config, &["flush"]).await }
    });
    // The flush's request has reached the receiver, which holds it (the
    // receiver logs a request before its delay).
    assert!(
        world.receiver.wait_for_requests(seen + 1, PATIENCE).await,
        "the flush sent nothing"
    );
    let started = tokio::time::Instant::now();
    let status = world.status().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "status took {:?} while a flush waited",
        started.elapsed()
    );
    assert!(
        status["daemon"].is_object(),
        "the daemon answered: {status}"
    );
    assert!(!flush.is_finished(), "the flush is still waiting");

    let flushed = flush.await.unwrap();
    assert!(flushed.status.success(), "{flushed:?}");
    daemon.drain_log();
    daemon.terminate().await;
}
