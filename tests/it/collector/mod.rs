//! The agent against a real OpenTelemetry Collector (`tests/collector/`,
//! built from the Collector's own Go modules), not a decoder of ours: the
//! daemon in `protocol = "otlp-http"` over TLS with the test CA and a
//! bearer token, the Collector's OTLP/HTTP receiver → memory_limiter →
//! batch → file exporter, whose JSON lines are read back and checked
//! against what docs/fleet.md promises:
//!
//! - every record arrives once, with its consent proof, its dedup key and
//!   its resource, with zstd bodies (the default) and with gzip;
//! - the Collector stopped for 30 s mid-drain: nothing lost, nothing
//!   duplicated but under its own dedup key, the retries within the
//!   backoff's bound;
//! - the memory_limiter refusing: what the Collector answers, the agent
//!   backing off, everything delivered once the pressure passes;
//! - a real Kafka broker behind the Collector (`kafka.rs`): every record
//!   once in the topic.
//!
//! Without a built Collector each test says SKIPPED with the command that
//! builds it (`.ci/run` builds it whenever `go` is there).

mod attempts;
mod kafka;
mod otelcol;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, SystemTime};

use consentry::catalogue::Catalogue;
use consentry::upload::RetryPolicy;
use consentry::upload::compression::Compression;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use self::attempts::Attempt;
use self::otelcol::{Collector, Exported, ROOMY, STARVED};
use crate::faults::ledger::Ledger;
use crate::faults::outage::most_attempts;
use crate::support::{PATIENCE, World, eventually};

/// The retry policy of the world's config (`retry_initial`, `retry_max`).
const POLICY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(1),
};

/// A longer policy, whose doubling shows within seconds.
const DOUBLING: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(400),
    max: Duration::from_millis(3200),
};

/// A world whose agent sends to `collector` (OTLP, its token) with
/// `extra` lines in `[upload]` and `policy`, and accepts `grants`.
async fn world_for(
    binary: std::path::PathBuf,
    extra: &str,
    policy: &RetryPolicy,
    grants: &[&str],
) -> (World, Collector) {
    let world = World::new().await;
    let collector = Collector::new(binary, &world);
    let config = collector
        .agent_config(&world, extra)
        .replace(
            "retry_initial = \"200ms\"",
            &format!("retry_initial = \"{}ms\"", policy.initial.as_millis()),
        )
        .replace(
            "retry_max = \"1s\"",
            &format!("retry_max = \"{}ms\"", policy.max.as_millis()),
        );
    world.write_config(&config);
    for clause in grants {
        world.ok(&["consent", "grant", clause]).await;
    }
    (world, collector)
}

/// The batches the agent's audit trail says were delivered: id → records.
async fn uploaded(world: &World) -> BTreeMap<String, u64> {
    let history: serde_json::Value = serde_json::from_str(
        &world
            .ok(&[
                "history", "--kind", "uploaded", "--limit", "100000", "--json",
            ])
            .await,
    )
    .unwrap();
    history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["batch_id"].as_str().unwrap().to_owned(),
                e["records"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Per error code of an install task, the dedup keys it arrived under and
/// how often.
fn arrivals(records: &[Exported]) -> BTreeMap<i64, Vec<(String, i64)>> {
    let mut codes: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for record in records.iter().filter(|r| r.scope == "consentry") {
        if record.text("consentry.purpose") == "installation_errors" {
            codes
                .entry(record.int("error_code"))
                .or_default()
                .push(record.dedup_key());
        }
    }
    codes
}

/// What the file exporter wrote, once it holds every install task
/// `ledger` had acknowledged (some perhaps twice). A count would not do:
/// the records the agent collects itself, and a batch written twice, would
/// stand in for tasks still on their way. A task truly lost fails here,
/// after `PATIENCE`.
async fn wait_for_acked(collector: &Collector, ledger: &Ledger) -> Vec<Exported> {
    let what = format!(
        "saw the file exporter write all {} acknowledged tasks",
        ledger.acked.len()
    );
    eventually(&what, PATIENCE, async || {
        let records = collector.exported();
        let codes = arrivals(&records);
        let missing = ledger
            .acked
            .iter()
            .filter(|code| !codes.contains_key(&(**code as i64)))
            .count();
        if missing == 0 {
            Ok(records)
        } else {
            Err(format!("{missing} not written yet"))
        }
    })
    .await
}

/// What a conservation check over the Collector's output found.
#[derive(Debug)]
struct Conservation {
    lost: usize,
    /// Arrivals beyond the first of a record, all under its one key.
    duplicates: usize,
}

/// Every acknowledged code arrived, and every copy of it under one dedup
/// key (a resend the pipeline drops by `(batch_id, record)`).
fn assert_conserved(ledger: &Ledger, records: &[Exported]) -> Conservation {
    let codes = arrivals(records);
    let lost: Vec<u64> = ledger
        .acked
        .iter()
        .filter(|code| !codes.contains_key(&(**code as i64)))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records never reached the Collector's output, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let mut duplicates = 0;
    for (code, keys) in &codes {
        let distinct: BTreeSet<_> = keys.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "error_code {code} arrived under two dedup keys: {keys:?}"
        );
        duplicates += keys.len() - 1;
    }
    Conservation {
        lost: lost.len(),
        duplicates,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_with_its_proof_and_resource_zstd() {
    every_record_arrives_once(
        "every_record_arrives_once_with_its_proof_and_resource_zstd",
        Compression::Zstd,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_with_its_proof_and_resource_gzip() {
    every_record_arrives_once(
        "every_record_arrives_once_with_its_proof_and_resource_gzip",
        Compression::Gzip,
    )
    .await;
}

/// The bodies' compression of each upload in the audit trail.
async fn compressions(world: &World) -> BTreeSet<String> {
    let history: serde_json::Value = serde_json::from_str(
        &world
            .ok(&[
                "history", "--kind", "uploaded", "--limit", "100000", "--json",
            ])
            .await,
    )
    .unwrap();
    history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["facts"]["compression"]
                .as_str()
                .unwrap_or("none")
                .to_owned()
        })
        .collect()
}

async fn every_record_arrives_once(test: &str, compression: Compression) {
    let Some(binary) = otelcol::binary(test) else {
        return;
    };
    let (world, mut collector) = world_for(
        binary,
        &format!(
            "batch_max_records = 40\ncompression = \"{}\"",
            compression.content_encoding()
        ),
        &POLICY,
        &["eula", "ksn", "marketing"],
    )
    .await;
    let check = world.run(&["check"]).await;
    assert!(
        check.status.success(),
        "the agent refuses the config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    collector.start(ROOMY).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    let mut ledger = Ledger::default();
    assert!(ledger.send(&world.ingest_socket(), 300).await);
    let verdicts: String = (0..50)
        .map(|n| {
            format!(
                "{{\"kind\":\"scan_verdict\",\"object\":\"{n:064x}\",\"verdict\":\"unknown\"}}\n"
            )
        })
        .collect();
    let out = world.emit(&["-"], verdicts.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world.ok(&["flush"]).await;
    let status = world
        .status_until("sent everything", |s| s["daemon"]["records_queued"] == 0)
        .await;
    // The Collector answers every 2xx with an empty `partialSuccess`:
    // nothing was rejected, nothing dead-lettered.
    assert_eq!(status["daemon"]["store"]["dead_letters"], 0, "{status}");

    let batches = uploaded(&world).await;
    let sent: u64 = batches.values().sum();
    // Every body went as configured: the Collector took it (no 415, no
    // fallback to gzip).
    assert_eq!(
        compressions(&world).await,
        BTreeSet::from([compression.content_encoding().to_owned()])
    );
    let records = collector.wait_for_records(sent as usize).await;
    let telemetry: Vec<&Exported> = records.iter().filter(|r| r.scope == "consentry").collect();
    assert_eq!(
        telemetry.len() as u64,
        sent,
        "the audit trail says {sent} records were delivered"
    );
    let conservation = assert_conserved(&ledger, &records);
    assert_eq!(conservation.duplicates, 0, "a record arrived twice");

    let catalogue = Catalogue::embedded();
    let consent = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let mut keys = BTreeSet::new();
    let mut per_batch: BTreeMap<String, u64> = BTreeMap::new();
    let mut purposes = BTreeSet::new();
    let mut verdicts_counted = 0;
    for record in &telemetry {
        assert_eq!(record.scope_version, env!("CARGO_PKG_VERSION"));
        // The resource: the agent, its region, and the identity only where
        // the record itself carries it.
        let resource = &record.resource;
        assert_eq!(resource["service.name"], "consentry");
        assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(resource["consentry.region"], "global");
        for field in ["installation_id", "product_id", "product_version"] {
            assert_eq!(
                record.attributes.get(field),
                resource.get(&format!("consentry.{field}")),
                "{field} of {record:?}"
            );
        }
        // The dedup key: a batch the audit trail delivered, a place in it.
        let (batch, place) = record.dedup_key();
        assert!(batches.contains_key(&batch), "batch {batch} not in history");
        assert!(keys.insert((batch.clone(), place)), "{batch}/{place} twice");
        *per_batch.entry(batch).or_default() += 1;
        // The consent proof: the accepted clause, its version and digest.
        let purpose = record.text("consentry.purpose").to_owned();
        assert_eq!(record.event_name, format!("consentry.{purpose}"));
        assert!(record.time_unix_nano > 1_700_000_000_000_000_000);
        let clause = catalogue
            .clause(record.text("consentry.clause"))
            .expect("a catalogue clause");
        assert!(
            consent.contains(&clause.text_sha256),
            "{} not accepted",
            clause.id
        );
        assert_eq!(
            record.int("consentry.clause_version"),
            i64::from(clause.version)
        );
        assert_eq!(record.text("consentry.clause_sha256"), clause.text_sha256);
        // Nothing but the purpose's declared fields besides the proof.
        let declared: BTreeSet<&str> = catalogue
            .purpose(&purpose)
            .unwrap()
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        for name in record.attributes.keys() {
            assert!(
                name.starts_with("consentry.") || declared.contains(name.as_str()),
                "{purpose}: undeclared {name}"
            );
        }
        if purpose == "ksn_scan_aggregates" {
            verdicts_counted += record.int("unknown_statuses");
            assert!(!resource.contains_key("consentry.installation_id"));
        }
        purposes.insert(purpose);
    }
    // Every delivered batch is whole in the output, its places 0..n.
    assert_eq!(per_batch, batches);
    assert_eq!(verdicts_counted, 50);
    for purpose in [
        "update_identity",
        "installation_errors",
        "ksn_scan_aggregates",
    ] {
        assert!(
            purposes.contains(purpose),
            "{purpose} missing: {purposes:?}"
        );
    }
    eprintln!(
        "collector: {} records in {} batches through the Collector (OTLP/HTTP, TLS, bearer token, {}), each once, proof and resource as documented",
        sent,
        batches.len(),
        compression.content_encoding()
    );
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    collector.stop().await;
}

/// docs/fleet.md shows the configuration fleets copy: the one
/// `packaging/otelcol/config.yaml` holds (and `.ci/run` validates), less
/// the file's opening comment.
#[test]
fn the_fleet_doc_shows_the_packaged_collector_configuration() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/fleet.md")).unwrap();
    let config = std::fs::read_to_string(root.join("packaging/otelcol/config.yaml")).unwrap();
    let shown = doc
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(yaml, _)| yaml)
        .expect("a yaml block in docs/fleet.md");
    assert!(shown.contains("exporters:\n  kafka:"), "{shown}");
    assert!(
        config.ends_with(shown),
        "docs/fleet.md's yaml block is not the end of packaging/otelcol/config.yaml"
    );
}

/// How long the Collector stays down in the outage test: the issue's 30 s.
const OUTAGE: Duration = Duration::from_secs(30);
/// Small batches, so the backlog takes hundreds of requests to drain and
/// the stop lands mid-drain.
const BATCH_MAX_RECORDS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_down_30_s_mid_drain_loses_nothing_and_the_retries_keep_to_the_backoff() {
    let Some(binary) = otelcol::binary(
        "the_collector_down_30_s_mid_drain_loses_nothing_and_the_retries_keep_to_the_backoff",
    ) else {
        return;
    };
    let (world, mut collector) = world_for(
        binary,
        &format!("batch_max_records = {BATCH_MAX_RECORDS}"),
        &POLICY,
        &["eula"],
    )
    .await;
    collector.start(ROOMY).await;
    let mut daemon = world
        .spawn_daemon_args(&["--log-format", "json"], &[("CONSENTRY_LOG", "info")])
        .await;
    daemon.drain_log();
    let socket = world.ingest_socket();
    let mut ledger = Ledger::default();
    // A backlog the agent drains in a few hundred requests.
    for _ in 0..10 {
        assert!(ledger.send(&socket, 1000).await);
    }
    let backlog = ledger.acked.len() as u64;
    // Mid-drain: some delivered, most still queued.
    eventually("started the drain", PATIENCE, async || {
        let queued = world.records_queued().await;
        assert!(queued > 0, "drained before the Collector could be stopped");
        if queued <= backlog * 9 / 10 {
            Ok(())
        } else {
            Err(format!("{queued} of {backlog} queued"))
        }
    })
    .await;
    collector.stop().await;
    let down = SystemTime::now();
    let queued_at_stop = world.records_queued().await;
    // Ingest goes on meanwhile.
    tokio::time::sleep(OUTAGE / 2).await;
    assert!(ledger.send(&socket, 500).await);
    tokio::time::sleep(OUTAGE / 2).await;
    let backlog_at_restart = world.records_queued().await;
    // Nothing can be delivered before the Collector is started again; it
    // may answer before `start` returns.
    let restarting = SystemTime::now();
    collector.start(ROOMY).await;
    let up = SystemTime::now();
    world
        .status_until("drained the queue", |s| s["daemon"]["records_queued"] == 0)
        .await;
    let drained = up.elapsed().unwrap();
    let records = wait_for_acked(&collector, &ledger).await;
    let conservation = assert_conserved(&ledger, &records);
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    collector.stop().await;

    // The attempts while it was down, from the agent's own log: within
    // the bound the retry policy sets (attempt k + 1 at least the shortest
    // backoff after attempt k), each after the wait the agent stated.
    let attempts = attempts::read(&log);
    // (A batch answered just before the stop may be logged just after it.)
    let failed: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.at > down && a.at < up && !a.delivered)
        .collect();
    let first_failed = failed
        .first()
        .expect("attempts while the Collector was down")
        .at;
    assert!(
        !attempts
            .iter()
            .any(|a| a.delivered && a.at > first_failed && a.at < restarting),
        "delivered while the Collector was down: {attempts:?}"
    );
    let window = up.duration_since(down).unwrap();
    let spread = failed
        .last()
        .unwrap()
        .at
        .duration_since(first_failed)
        .unwrap();
    let bound = most_attempts(&POLICY, spread);
    assert!(
        failed.len() as u64 <= bound && failed.len() >= 5,
        "{} attempts over {spread:?} (bound {bound})",
        failed.len()
    );
    attempts::assert_waits_kept(&attempts, &POLICY);
    // After the restart: the first attempt at the end of its wait, then
    // the backlog in as many requests as it needs and no more (the
    // uploader sends one batch after another: its rate is the Collector's
    // latency, the number of requests the backlog's).
    let first_after = attempts.iter().find(|a| a.at >= up).expect("an attempt");
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.at >= up).collect();
    let needed = backlog_at_restart.div_ceil(BATCH_MAX_RECORDS);
    assert!(
        after.iter().all(|a| a.delivered) && after.len() as u64 <= needed,
        "{} requests after the restart for {backlog_at_restart} records in batches of {BATCH_MAX_RECORDS}",
        after.len()
    );
    let peak_before = attempts::peak_per_second(attempts.iter().filter(|a| a.at < down));
    let peak_after = attempts::peak_per_second(after.iter().copied());
    eprintln!(
        "collector outage: {} records acknowledged ({} queued at the stop, {backlog_at_restart} at the restart), down {:.1} s: {} attempts over {:.1} s (bound {bound}), first attempt {:.2} s after the restart, then {} requests (the backlog needs {needed}), drained {:.1} s after it; lost {}, duplicates {} (each under its own dedup key); requests/s peak before {peak_before}, after {peak_after}",
        ledger.acked.len(),
        queued_at_stop,
        window.as_secs_f64(),
        failed.len(),
        spread.as_secs_f64(),
        first_after
            .at
            .duration_since(up)
            .unwrap_or_default()
            .as_secs_f64(),
        after.len(),
        drained.as_secs_f64(),
        conservation.lost,
        conservation.duplicates,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limiter_refusing_is_retried_with_backoff_and_everything_arrives_after() {
    let Some(binary) = otelcol::binary(
        "the_memory_limiter_refusing_is_retried_with_backoff_and_everything_arrives_after",
    ) else {
        return;
    };
    let (world, mut collector) = world_for(binary, "", &DOUBLING, &["eula"]).await;
    collector.start(STARVED).await;
    // Its first look at the heap, a check_interval after the start.
    collector.wait_for_log("Refusing data").await;
    // What the Collector answers under memory pressure, asked directly.
    let refused = post(&world, &collector).await;
    eprintln!(
        "memory_limiter answer: {} {:?}; body: {:?}",
        refused.status, refused.headers, refused.rpc_status
    );
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(!refused.headers.contains_key("retry-after"), "{refused:?}");
    let (code, message) = refused
        .rpc_status
        .clone()
        .expect("a google.rpc.Status body");
    assert_eq!(code, 14, "UNAVAILABLE");
    assert!(message.contains("high memory usage"), "{message}");

    let mut daemon = world
        .spawn_daemon_args(&["--log-format", "json"], &[("CONSENTRY_LOG", "info")])
        .await;
    daemon.drain_log();
    let mut ledger = Ledger::default();
    assert!(ledger.send(&world.ingest_socket(), 200).await);
    // Refused attempts, further and further apart; none of it exported.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(world.records_queued().await >= 200);
    assert!(
        collector.exported().iter().all(|r| r.scope != "consentry"),
        "exported while refusing"
    );
    let relieved = SystemTime::now();
    collector.stop().await;
    collector.start(ROOMY).await;
    let eased = SystemTime::now();
    let accepted = post(&world, &collector).await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    // A 2xx's answer: a partial_success with nothing rejected.
    let partial = accepted.partial_success.clone().expect("an answer body");
    assert_eq!(partial, (0, String::new()), "{accepted:?}");
    world
        .status_until("delivered everything", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    let records = wait_for_acked(&collector, &ledger).await;
    let conservation = assert_conserved(&ledger, &records);
    assert_eq!(conservation.duplicates, 0);
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    collector.stop().await;

    let attempts = attempts::read(&log);
    // (Between the two Collectors an attempt finds nobody: not a refusal.)
    let refusals: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.at < relieved && !a.delivered)
        .collect();
    assert!(refusals.len() >= 3, "{attempts:?}");
    assert!(
        refusals.iter().all(|a| a.error.contains("503")),
        "{refusals:?}"
    );
    attempts::assert_waits_kept(&attempts, &DOUBLING);
    let window = refusals
        .last()
        .unwrap()
        .at
        .duration_since(refusals[0].at)
        .unwrap();
    let bound = most_attempts(&DOUBLING, window);
    assert!(
        refusals.len() as u64 <= bound,
        "{} refusals over {window:?}, more than {bound}",
        refusals.len()
    );
    let first_delivery = attempts.iter().find(|a| a.delivered).expect("a delivery");
    eprintln!(
        "memory_limiter: 503 without Retry-After ({message}); {} refused attempts over {:.1} s (bound {bound}), the waits between them {:?}; delivered {:.2} s after the pressure passed, {} records, none lost or twice",
        refusals.len(),
        window.as_secs_f64(),
        attempts::gaps(&refusals),
        first_delivery
            .at
            .duration_since(eased)
            .unwrap_or_default()
            .as_secs_f64(),
        ledger.acked.len(),
    );
}

/// The `google.rpc.Status` an OTLP/HTTP receiver answers a failure with.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// One request sent by the test itself, and its answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// A failure's body: (code, message).
    rpc_status: Option<(i32, String)>,
    /// A 2xx's `partial_success`: (rejected records, message).
    partial_success: Option<(i64, String)>,
}

/// POSTs one log record (scope `consentry.test`, not the agent's) as the
/// agent would: protobuf, gzip, the token, trusting the test CA.
async fn post(world: &World, collector: &Collector) -> Answer {
    let tls = consentry::upload::tls::client_config(consentry::upload::tls::TrustSettings {
        ca_file: Some(&world.path("ca.pem")),
        server_certificate: None,
        pins: &[],
    })
    .unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "consentry.test".into(),
                    ..Default::default()
                }),
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("probe".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&request.encode_to_vec()).unwrap();
    let response = client
        .post(collector.url())
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .bearer_auth(std::fs::read_to_string(world.path("token")).unwrap())
        .body(gzip.finish().unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let (rpc_status, partial_success) = if status == 200 {
        let answer = ExportLogsServiceResponse::decode(&body[..]).unwrap();
        let partial = answer
            .partial_success
            .map(|p| (p.rejected_log_records, p.error_message));
        (None, partial)
    } else {
        let rpc = RpcStatus::decode(&body[..])
            .ok()
            .map(|s| (s.code, s.message));
        (rpc, None)
    };
    Answer {
        status,
        headers,
        rpc_status,
        partial_success,
    }
}
