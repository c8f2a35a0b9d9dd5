//! The uploader against the loopback receiver and a real store.

use std::collections::BTreeSet;
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
    bench_with(records, "").await
}

/// [`bench`], with more `[upload]` settings (TOML lines).
async fn bench_with(records: i64, settings: &str) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let pki = LoopbackPki::generate().unwrap();
    let receiver = Receiver::start(&pki).await.unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let config: UploadConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\nca_file = \"{}\"\n{settings}",
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
    /// Queues `chunks` ingest chunks (segments) of two records each,
    /// numbered from 0.
    async fn enqueue_chunks(&self, chunks: i64) {
        for chunk in 0..chunks {
            let records = (2 * chunk..2 * chunk + 2)
                .map(|n| test_record("update_identity", n))
                .collect();
            self.writer.enqueue(records).await.unwrap();
        }
    }

    /// The ids of the batches claimed now, and of those with a kept body.
    async fn claims_and_kept(&self) -> (Vec<String>, Vec<String>) {
        self.writer
            .call(|c, _| {
                let ids = |sql: &str| -> Result<Vec<String>, StoreError> {
                    Ok(c.prepare(sql)?
                        .query_map([], |row| row.get(0))?
                        .collect::<Result<_, _>>()?)
                };
                Ok((
                    ids("SELECT DISTINCT batch_id FROM claim ORDER BY batch_id")?,
                    ids("SELECT batch_id FROM sent_body ORDER BY batch_id")?,
                ))
            })
            .await
            .unwrap()
    }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batches_are_on_the_wire_at_once_never_three_and_each_goes_once() {
    // Five segments of two records (five ingest chunks), two per batch.
    let bench = bench_with(0, "batch_max_records = 2").await;
    bench.enqueue_chunks(5).await;
    let answer_after = Duration::from_millis(300);
    bench.receiver.set_delay(answer_after);
    let mut uploader = bench.uploader();
    let sending = tokio::spawn(async move { uploader.upload_pending(true).await });
    // The receiver holds the first answer: the second batch is claimed,
    // kept and sent beside it.
    assert!(
        bench
            .receiver
            .wait_for_requests(2, Duration::from_secs(10))
            .await
    );
    let (claims, kept) = bench.claims_and_kept().await;
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert_eq!(kept, claims, "each body is kept before it leaves");

    let summary = sending.await.unwrap().unwrap();
    assert_eq!(summary.records_sent, 10, "{summary:?}");
    assert_eq!(summary.batches_sent, 5, "{summary:?}");
    let requests = bench.receiver.requests();
    // The receiver answers each request `answer_after` after it came: no
    // two others may come meanwhile (less a margin for two requests
    // overtaking each other on their way).
    for request in &requests {
        let window =
            request.received_at..request.received_at + answer_after - Duration::from_millis(50);
        let beside = requests
            .iter()
            .filter(|other| {
                other.received_at > request.received_at && window.contains(&other.received_at)
            })
            .count();
        assert!(beside <= 1, "three batches were on the wire at once");
    }
    let keys: BTreeSet<_> = requests.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(
        (requests.len(), keys.len()),
        (5, 5),
        "one request per batch, each its own key"
    );
    let mut numbers: Vec<i64> = requests
        .iter()
        .flat_map(|r| r.envelope.as_ref().unwrap().records.clone())
        .map(|record| {
            let fields: serde_json::Value = serde_json::from_str(record.fields.get()).unwrap();
            fields["n"].as_i64().unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..10).collect::<Vec<_>>(),
        "each record exactly once"
    );
    let (claims, kept) = bench.claims_and_kept().await;
    assert!(claims.is_empty(), "{claims:?}");
    assert_eq!(kept.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_batch_on_the_wire_fails_the_other_is_still_answered_and_the_failed_one_goes_again_first()
 {
    let bench = bench_with(0, "batch_max_records = 2").await;
    bench.enqueue_chunks(3).await;
    bench.receiver.set_delay(Duration::from_millis(200));
    // The first batch (records 0 and 1) is answered 503, wherever it
    // comes among the requests on the wire.
    bench.receiver.refuse_containing("\"n\":0}", 503);
    let mut uploader = bench.uploader();
    let failed = uploader.upload_pending(true).await.unwrap();
    let requests = |bench: &Bench| -> Vec<(String, bool)> {
        bench
            .receiver
            .requests()
            .iter()
            .map(|r| {
                let first = r.envelope.as_ref().unwrap().records[0].fields.get() == "{\"n\":0}";
                (r.idempotency_key.clone().unwrap(), first)
            })
            .collect()
    };
    let sent = requests(&bench);
    assert_eq!(sent.len(), 2, "two went, and nothing more after the 503");
    let first = sent.iter().find(|(_, first)| *first).unwrap().0.clone();
    // The other was delivered and removed; the first stays claimed and
    // kept (its retry keeps its id); nothing else was claimed.
    assert_eq!(failed.records_sent, 2, "{failed:?}");
    assert!(
        failed.stopped.as_deref().unwrap().contains("503"),
        "{failed:?}"
    );
    assert!(
        failed.retry_in_seconds.is_some(),
        "the 503's wait stands: {failed:?}"
    );
    assert!(uploader.not_before().is_some());
    let (claims, kept) = bench.claims_and_kept().await;
    assert_eq!(claims, vec![first.clone()]);
    let mut both: Vec<String> = sent.iter().map(|(key, _)| key.clone()).collect();
    both.sort();
    assert_eq!(kept, both);

    bench.receiver.refuse_containing("\"n\":0}", 200);
    let done = uploader.upload_pending(true).await.unwrap();
    assert_eq!(done.records_sent, 4, "{done:?}");
    let sent = requests(&bench);
    assert_eq!(sent.len(), 4);
    assert_eq!(
        sent[2].0, first,
        "the failed batch goes again first, under its key"
    );
    assert!(!sent[..3].iter().any(|(key, _)| *key == sent[3].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failure_batches_go_one_at_a_time_until_one_is_delivered() {
    let bench = bench_with(0, "batch_max_records = 2").await;
    bench.enqueue_chunks(3).await;
    bench.receiver.set_status(503);
    let mut uploader = bench.uploader();
    // Two on the wire, both answered 503.
    let first = uploader.upload_pending(true).await.unwrap();
    assert_eq!(first.records_sent, 0, "{first:?}");
    assert_eq!(bench.receiver.requests().len(), 2);
    // Still failing: one request, not two.
    uploader.upload_pending(true).await.unwrap();
    assert_eq!(bench.receiver.requests().len(), 3);
    // Delivered: one at a time until then, two at once after.
    bench.receiver.set_status(200);
    let done = uploader.upload_pending(true).await.unwrap();
    assert_eq!(done.records_sent, 6, "{done:?}");
    assert_eq!(bench.receiver.requests().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_built_beside_another_does_not_report_its_drops_again() {
    let bench = bench_with(0, "batch_max_records = 2").await;
    bench.enqueue_chunks(3).await;
    bench
        .writer
        .call(|c, _| {
            Ok(c.execute_batch(
                "INSERT INTO dropped (purpose, reason, total, unreported)
                 VALUES ('update_identity', 'queue_full', 5, 5)",
            )?)
        })
        .await
        .unwrap();
    bench.receiver.set_delay(Duration::from_millis(200));
    let summary = bench.uploader().upload_pending(true).await.unwrap();
    assert_eq!(summary.records_sent, 6, "{summary:?}");
    let reported: Vec<u64> = bench
        .receiver
        .requests()
        .iter()
        .map(|r| {
            let dropped = &r.envelope.as_ref().unwrap().dropped;
            dropped
                .get("update_identity")
                .and_then(|reasons| reasons.get("queue_full"))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    // Two bodies may reach the receiver in either order.
    let mut reported = reported;
    reported.sort_unstable();
    assert_eq!(reported, vec![0, 0, 5], "reported once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_the_receivers_record_count_ends_when_the_batch_is_counted() {
    let bench = bench(3).await;
    bench.receiver.count_only();
    let patience = Duration::from_millis(50);
    assert!(
        !bench.receiver.wait_for_records(1, patience).await,
        "nothing was sent yet"
    );
    let mut uploader = bench.uploader();
    let (counted, summary) = tokio::join!(
        bench.receiver.wait_for_records(3, Duration::from_secs(10)),
        uploader.upload_pending(true)
    );
    assert!(counted);
    assert_eq!(summary.unwrap().records_sent, 3);
    assert_eq!(bench.receiver.totals().records, 3);
    assert!(!bench.receiver.wait_for_records(4, patience).await);
}
