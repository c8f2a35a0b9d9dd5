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

/// Waits (up to ten seconds) until `bench` holds `count` claims.
async fn until_claims(bench: &Bench, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (claims, _) = bench.claims_and_kept().await;
        if claims.len() == count || tokio::time::Instant::now() > deadline {
            return claims;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_claimed_and_built_while_one_is_on_the_wire_and_each_goes_once() {
    // Five segments of two records (five ingest chunks), two per batch.
    let bench = bench_with(0, "batch_max_records = 2").await;
    bench.enqueue_chunks(5).await;
    bench.receiver.set_delay(Duration::from_millis(400));
    let mut uploader = bench.uploader();
    let sending = tokio::spawn(async move { uploader.upload_pending(true).await });
    assert!(
        bench
            .receiver
            .wait_for_requests(1, Duration::from_secs(10))
            .await
    );
    // The first batch is on the wire (the receiver holds its answer): the
    // second is claimed beside it, its body built but not kept.
    let claims = until_claims(&bench, 2).await;
    assert_eq!(claims.len(), 2, "{claims:?}");
    let (_, kept) = bench.claims_and_kept().await;
    assert_eq!(
        kept.len(),
        1,
        "only the batch on the wire is kept: {kept:?}"
    );

    let summary = sending.await.unwrap().unwrap();
    assert_eq!(summary.records_sent, 10, "{summary:?}");
    assert_eq!(summary.batches_sent, 5, "{summary:?}");
    let requests = bench.receiver.requests();
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
async fn a_batch_prepared_ahead_is_let_go_unsent_and_unkept_when_the_one_on_the_wire_fails() {
    let bench = bench_with(2, "batch_max_records = 2").await;
    let more = (2..4).map(|n| test_record("update_identity", n)).collect();
    bench.writer.enqueue(more).await.unwrap();
    bench.receiver.set_delay(Duration::from_millis(200));
    bench.receiver.script(&[503]);
    let mut uploader = bench.uploader();
    let failed = uploader.upload_pending(true).await.unwrap();
    assert_eq!(failed.records_sent, 0, "{failed:?}");
    assert_eq!(bench.receiver.requests().len(), 1);
    let first = bench.receiver.requests()[0]
        .idempotency_key
        .clone()
        .unwrap();
    // Only the batch that went is kept (history shows what was sent) and
    // still claimed (its retry keeps its id); the one prepared beside it
    // was let go.
    let (claims, kept) = bench.claims_and_kept().await;
    assert_eq!(claims, vec![first.clone()]);
    assert_eq!(kept, vec![first.clone()]);

    bench.receiver.set_delay(Duration::ZERO);
    let done = uploader.upload_pending(true).await.unwrap();
    assert_eq!(done.records_sent, 4, "{done:?}");
    let keys: Vec<String> = bench
        .receiver
        .requests()
        .iter()
        .map(|r| r.idempotency_key.clone().unwrap())
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(
        keys[1], first,
        "the failed batch goes again first, under its key"
    );
    assert_ne!(keys[2], first);
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
    assert_eq!(reported, vec![5, 0, 0], "reported once, by the first body");
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
