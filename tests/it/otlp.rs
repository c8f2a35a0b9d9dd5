//! `[upload] protocol = "otlp-http"`: the real daemon against the loopback
//! receiver, every request decoded here with the OpenTelemetry project's
//! own types (`opentelemetry-proto`, prost), not with consentry's reader,
//! and checked against the catalogue and the consent state: the records,
//! their attributes, the consent proof, the resource; a partial success
//! dead-lettered and counted; OTLP's retryable statuses retried, its
//! permanent ones not.

use std::collections::{BTreeMap, BTreeSet};

use consentry::catalogue::Catalogue;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use prost::Message;

use crate::support::{PATIENCE, World};

const OTLP: &str = "protocol = \"otlp-http\"";

/// A request body as a collector's `otlphttp` receiver reads it.
fn decode(body: &[u8]) -> ExportLogsServiceRequest {
    let bytes = consentry::upload::compression::decompress(body).expect("a compressed body");
    ExportLogsServiceRequest::decode(&bytes[..]).expect("an ExportLogsServiceRequest")
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, Value> {
    list.iter()
        .map(|kv| {
            let value = kv.value.clone().and_then(|v| v.value).expect("a value");
            (kv.key.clone(), value)
        })
        .collect()
}

fn text(value: &Value) -> &str {
    match value {
        Value::StringValue(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

async fn world_with(grants: &[&str]) -> World {
    let world = World::with_upload_extra(OTLP).await;
    for clause in grants {
        world.ok(&["consent", "grant", clause]).await;
    }
    world
}

fn install_tasks(codes: std::ops::Range<u32>) -> String {
    codes
        .map(|code| {
            format!(
                "{{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\",\"error_code\":{code}}}\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_an_otlp_logs_export_the_catalogue_and_the_consent_allow() {
    let world = world_with(&["eula", "ksn", "marketing"]).await;
    let daemon = world.spawn_daemon().await;
    let mut lines = install_tasks(0..20);
    for n in 0..50 {
        lines.push_str(&format!(
            "{{\"kind\":\"scan_verdict\",\"object\":\"{:064x}\",\"verdict\":\"unknown\"}}\n",
            n
        ));
    }
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world.ok(&["flush"]).await;
    world
        .status_until("sent everything", |s| s["daemon"]["records_queued"] == 0)
        .await;

    let catalogue = Catalogue::embedded();
    let consent = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let requests = world.receiver.requests();
    assert!(!requests.is_empty());
    let mut purposes = BTreeSet::new();
    let mut error_codes = BTreeSet::new();
    let mut verdicts = 0;
    let mut places = BTreeSet::new();
    for request in &requests {
        assert_eq!(request.status, 200);
        assert_eq!(request.path, "/v1/batches");
        assert_eq!(request.content_encoding.as_deref(), Some("zstd"));
        let otlp = decode(&request.body);
        let key = request.idempotency_key.clone().expect("an Idempotency-Key");
        for resource_logs in &otlp.resource_logs {
            let resource = attributes(&resource_logs.resource.as_ref().unwrap().attributes);
            assert_eq!(text(&resource["service.name"]), "consentry");
            assert_eq!(
                text(&resource["service.version"]),
                env!("CARGO_PKG_VERSION")
            );
            assert_eq!(text(&resource["consentry.region"]), "global");
            for scope_logs in &resource_logs.scope_logs {
                assert_eq!(scope_logs.scope.as_ref().unwrap().name, "consentry");
                for log in &scope_logs.log_records {
                    let mut record = attributes(&log.attributes);
                    // The dedup key is the batch id, on every record.
                    assert_eq!(text(&record.remove("consentry.batch_id").unwrap()), key);
                    let Some(Value::IntValue(place)) = record.remove("consentry.record") else {
                        panic!("consentry.record is the record's place in its batch")
                    };
                    assert!(
                        places.insert((key.clone(), place)),
                        "two records at {place}"
                    );
                    let purpose = text(&record.remove("consentry.purpose").unwrap()).to_owned();
                    assert_eq!(log.event_name, format!("consentry.{purpose}"));
                    assert!(log.time_unix_nano > 1_700_000_000_000_000_000);
                    // The consent proof: the clause the consent file accepted.
                    let clause = catalogue
                        .clause(text(&record.remove("consentry.clause").unwrap()))
                        .expect("a catalogue clause");
                    assert!(
                        consent.contains(&clause.text_sha256),
                        "{} not accepted",
                        clause.id
                    );
                    assert_eq!(
                        record.remove("consentry.clause_version"),
                        Some(Value::IntValue(i64::from(clause.version)))
                    );
                    assert_eq!(
                        text(&record.remove("consentry.clause_sha256").unwrap()),
                        clause.text_sha256
                    );
                    // Only the purpose's declared fields are left.
                    let declared: BTreeSet<&str> = catalogue
                        .purpose(&purpose)
                        .unwrap()
                        .fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect();
                    for name in record.keys() {
                        assert!(
                            declared.contains(name.as_str()),
                            "{purpose}: undeclared {name}"
                        );
                    }
                    // The resource names an identity only when the record
                    // itself carries it.
                    for field in ["installation_id", "product_id", "product_version"] {
                        assert_eq!(
                            record.get(field).map(text),
                            resource.get(&format!("consentry.{field}")).map(text),
                            "{purpose}: {field}"
                        );
                    }
                    match purpose.as_str() {
                        "installation_errors" => {
                            let Value::IntValue(code) = record["error_code"] else {
                                panic!("error_code is an integer")
                            };
                            error_codes.insert(code);
                        }
                        "ksn_scan_aggregates" => {
                            let Value::IntValue(n) = record["unknown_statuses"] else {
                                panic!("a count")
                            };
                            verdicts += n;
                        }
                        _ => {}
                    }
                    purposes.insert(purpose);
                }
            }
        }
    }
    assert_eq!(error_codes, (0..20).collect());
    assert_eq!(verdicts, 50);
    for purpose in [
        "update_identity",
        "installation_errors",
        "ksn_scan_aggregates",
    ] {
        assert!(
            purposes.contains(purpose),
            "{purpose} missing from {purposes:?}"
        );
    }

    // `history --show` shows the body as OTLP/JSON, digest checked.
    let batch = requests[0].idempotency_key.clone().unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&world.ok(&["history", "--show", &batch, "--json"]).await).unwrap();
    assert!(shown["body"]["resourceLogs"].is_array(), "{shown}");

    // A withdrawal's deletion request goes the same way, as OTLP.
    let before = world.receiver.requests().len();
    world.ok(&["consent", "revoke", "marketing"]).await;
    world.ok(&["flush"]).await;
    let requests = world.receiver.requests();
    let deletion = requests[before..]
        .iter()
        .find(|r| r.deletion.is_some())
        .expect("a deletion request");
    let otlp = decode(&deletion.body);
    let scope = &otlp.resource_logs[0].scope_logs[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "consentry.deletion");
    let record = attributes(&scope.log_records[0].attributes);
    assert_eq!(text(&record["consentry.clause"]), "marketing");
    assert_eq!(
        text(&record["consentry.batch_id"]),
        deletion.idempotency_key.as_deref().unwrap()
    );
    // It names the erasure key promotions records carry, and not the
    // installation id, which they do not.
    assert_eq!(text(&record["consentry.erasure_key"]).len(), 36);
    let resource = attributes(&otlp.resource_logs[0].resource.as_ref().unwrap().attributes);
    assert!(!resource.contains_key("consentry.installation_id"));
    // `check --connect` probes the OTLP endpoint without storing anything.
    let probes = world.receiver.probes();
    world.ok(&["check", "--connect"]).await;
    assert_eq!(world.receiver.probes(), probes + 1);
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_is_dead_lettered_and_counted_and_never_resent() {
    let world = world_with(&["eula"]).await;
    world
        .receiver
        .set_otlp_rejecting(Some((2, "attribute error_code out of range")));
    // Nothing goes until the flush below, whose answer is then ours to
    // read: the daemon's own attempts wait a minute after the first 503.
    world.receiver.set_status(503);
    world.receiver.set_retry_after(Some("60"));
    let daemon = world.spawn_daemon().await;
    assert!(world.receiver.wait_for_requests(1, PATIENCE).await);
    let out = world.emit(&["-"], install_tasks(0..5).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world.receiver.set_status(200);
    let flushed: serde_json::Value =
        serde_json::from_str(&world.ok(&["flush", "--json"]).await).unwrap();
    assert!(
        flushed["upload"]["rejected_by_receiver"].as_u64().unwrap() >= 2,
        "{flushed}"
    );
    world
        .status_until("emptied the queue", |s| s["daemon"]["records_queued"] == 0)
        .await;
    let status = world.status().await;
    assert!(
        status["daemon"]["store"]["dead_letters"].as_u64().unwrap() >= 5,
        "{status}"
    );
    let history = world.ok(&["history", "--limit", "50"]).await;
    assert!(history.contains("rejected 2 of the"), "{history}");
    daemon.terminate().await;

    // Every batch was accepted once: a partial success is not a reason to
    // send it again.
    let keys: Vec<_> = world
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.idempotency_key)
        .collect();
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), unique.len(), "{keys:?}");
    let db = rusqlite::Connection::open(world.path("state/consentry.sqlite3")).unwrap();
    let (dead, status, reason): (i64, i64, String) = db
        .query_row(
            "SELECT COUNT(*), MIN(status), MIN(reason) FROM dead_letter WHERE purpose = 'installation_errors'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(dead, 5, "the batch's records are kept, none resent");
    assert_eq!(status, 200);
    assert!(
        reason.contains("attribute error_code out of range"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_retries_429_502_503_504_and_never_resends_on_a_permanent_status() {
    let world = world_with(&["eula"]).await;
    world.receiver.set_status(503);
    world.receiver.set_retry_after(Some("1"));
    let daemon = world.spawn_daemon().await;
    let out = world.emit(&["-"], install_tasks(0..2).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    // Retryable: kept, tried again under the same batch id.
    for status in [429, 502, 503, 504] {
        world.receiver.set_status(status);
        let before = world.receiver.requests().len();
        assert!(
            world.receiver.wait_for_requests(before + 1, PATIENCE).await,
            "no retry after {status}"
        );
        assert!(world.records_queued().await >= 2);
    }
    // The first batch is stuck and retried; nothing after it is tried.
    let keys: BTreeSet<_> = world
        .receiver
        .requests()
        .into_iter()
        .filter_map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 1, "retries keep the batch id: {keys:?}");

    // Permanent (a 500 in OTLP): never the same request again; the batch is
    // bisected down to the record, which is dead-lettered.
    world.receiver.set_retry_after(None);
    world.receiver.set_status(500);
    world.run(&["flush"]).await;
    world
        .status_until("dead-lettered the refused records", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    let after: Vec<_> = world
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.status == 500)
        .filter_map(|r| r.idempotency_key)
        .collect();
    let unique: BTreeSet<_> = after.iter().collect();
    assert_eq!(
        after.len(),
        unique.len(),
        "a 500 was retried as is: {after:?}"
    );
    daemon.terminate().await;
    let db = rusqlite::Connection::open(world.path("state/consentry.sqlite3")).unwrap();
    let dead: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM dead_letter WHERE status = 500",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(dead >= 2, "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_slows_the_agent_with_its_interval_header_and_retry_after() {
    let world = world_with(&["eula"]).await;
    // Every answer sets a 20 s interval (within the default bounds) and a
    // 2xx asks for 5 s of quiet.
    world.receiver.set_pace(Some("5"), Some("20"));
    let daemon = world.spawn_daemon().await;
    world.ok(&["flush"]).await;
    let first = world.receiver.requests().len();
    assert!(first >= 1);
    // Full batches that would go at once now wait for the next slot.
    let out = world.emit(&["-"], install_tasks(0..600).as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    // Once they are queued, the store has signalled a full batch to the
    // uploader...
    world
        .status_until("queued the full batches", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(600)
        })
        .await;
    // ...but its choice to let them wait shows nowhere (it only goes back
    // to sleep until its slot): no event to wait for, so a short fixed
    // wait, time enough to have sent them had it chosen to.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        world.receiver.requests().len(),
        first,
        "sent while asked to wait"
    );
    let status = world.status().await;
    let next = status["daemon"]["next_upload_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = humantime::parse_rfc3339(&next).unwrap();
    let wait = next
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait > std::time::Duration::from_secs(1),
        "next upload in {wait:?}: {status}"
    );
    daemon.terminate().await;
}
