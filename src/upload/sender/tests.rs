//! The uploader against the loopback receiver and a real store.

use std::time::Duration;

use super::*;
use crate::catalogue::{Catalogue, Region};
use crate::consent::{Consents, Method, Registry, grant};
use crate::gate::test_record;
use crate::receiver::{LoopbackPki, Receiver};

/// A store with `records` queued, a receiver, and what an uploader
/// needs to send to it.
struct Bench {
    dir: tempfile::TempDir,
    receiver: Receiver,
    writer: Writer<()>,
    gate: Arc<Gate>,
    config: UploadConfig,
}

async fn bench(records: i64) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let pki = LoopbackPki::generate().unwrap();
    let receiver = Receiver::start(&pki).await.unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let config: UploadConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\nca_file = \"{}\"",
        receiver.url(),
        ca.display()
    ))
    .unwrap();
    let catalogue = Catalogue::embedded();
    let consent_file = dir.path().join("consent.toml");
    grant(
        &consent_file,
        &catalogue,
        Region::Global,
        "eula",
        Method::Cli,
    )
    .unwrap();
    let consents = Consents::load(&consent_file, &catalogue).unwrap();
    let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
    let gate = Arc::new(Gate::with_registry(catalogue, registry));
    let (writer, _thread) = Writer::spawn(&dir.path().join("state"), ()).unwrap();
    writer
        .enqueue(
            (0..records)
                .map(|n| test_record("update_identity", n))
                .collect(),
        )
        .await
        .unwrap();
    Bench {
        dir,
        receiver,
        writer,
        gate,
        config,
    }
}

impl Bench {
    fn uploader(&self) -> Uploader<()> {
        Uploader::new(
            self.writer.clone(),
            Arc::clone(&self.gate),
            Transport::new(&self.config).unwrap(),
            &self.config,
            AgentIdentity::fixed(Region::Global, Uuid::nil()),
            SendLock::open(&self.dir.path().join("state")).unwrap(),
        )
    }

    /// Makes the writer's connection fail every removal from the
    /// queue (`on`), as a full disk can, or stops doing so.
    async fn refuse_deletes(&self, on: bool) {
        let sql = if on {
            "CREATE TEMP TRIGGER refuse_deletes BEFORE DELETE ON main.queue
             BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;"
        } else {
            "DROP TRIGGER temp.refuse_deletes;"
        };
        self.writer
            .call(move |c, _| Ok(c.execute_batch(sql)?))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_on_one_state_dir_never_send_at_once() {
    // Two rounds of a daemon: the second skips.
    let bench = bench(3).await;
    bench.receiver.set_delay(Duration::from_millis(300));
    let (mut one, mut two) = (bench.uploader(), bench.uploader());
    let (a, b) = tokio::join!(one.upload_pending(false), two.upload_pending(false));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.batches_sent + b.batches_sent, 1, "{a:?} {b:?}");
    let skipped = [&a, &b]
        .iter()
        .filter(|s| s.stopped.as_deref() == Some(ANOTHER_SENDER))
        .count();
    assert_eq!(skipped, 1, "{a:?} {b:?}");
    assert_eq!(bench.receiver.requests().len(), 1);

    // Two flushes: the second waits for the first, then finds nothing
    // left; still one request.
    let bench = self::bench(3).await;
    bench.receiver.set_delay(Duration::from_millis(300));
    let (mut one, mut two) = (bench.uploader(), bench.uploader());
    let (a, b) = tokio::join!(one.upload_pending(true), two.upload_pending(true));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.batches_sent + b.batches_sent, 1, "{a:?} {b:?}");
    assert!(a.stopped.is_none() && b.stopped.is_none(), "{a:?} {b:?}");
    assert_eq!(bench.receiver.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_batch_that_cannot_be_removed_is_removed_later_not_resent() {
    let bench = bench(3).await;
    bench.receiver.set_delay(Duration::from_millis(300));
    let mut uploader = bench.uploader();
    let writer = bench.writer.clone();
    let sending = tokio::spawn(async move {
        let summary = uploader.upload_pending(true).await;
        (uploader, summary)
    });
    assert!(
        bench
            .receiver
            .wait_for_requests(1, Duration::from_secs(10))
            .await
    );
    // The disk "fills" while the receiver is answering.
    bench.refuse_deletes(true).await;
    let (mut uploader, summary) = sending.await.unwrap();
    let summary = summary.unwrap();
    assert_eq!(summary.records_sent, 0);
    assert!(
        summary
            .stopped
            .as_deref()
            .unwrap()
            .contains("delivered but cannot be removed"),
        "{summary:?}"
    );
    assert!(summary.retry_in_seconds.is_some(), "it backs off");

    // Still failing: nothing is sent again.
    let again = uploader.upload_pending(true).await.unwrap();
    assert_eq!(again.records_sent, 0);
    assert_eq!(bench.receiver.requests().len(), 1);

    // Space is back: the removal goes through, without a resend.
    bench.refuse_deletes(false).await;
    let done = uploader.upload_pending(true).await.unwrap();
    assert_eq!(done.records_sent, 3, "{done:?}");
    assert_eq!(done.records_queued, 0);
    assert_eq!(bench.receiver.requests().len(), 1, "the batch was resent");
    let trail = writer
        .call(|c, _| crate::store::queue::recent_audit(c, 10))
        .await
        .unwrap();
    assert_eq!(
        trail.iter().filter(|a| a.event == "uploaded").count(),
        1,
        "{trail:?}"
    );
}
