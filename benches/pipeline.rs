//! Criterion benches, one group per pipeline stage: the catalogue check, the
//! consent decision, queueing in SQLite, and encoding a batch for the wire.
//! Run with `cargo bench --bench pipeline`; numbers go to BENCHMARKS.md.

use consentry::upload::compression::Compression;
use std::hint::black_box;

use consentry::catalogue::{Catalogue, Region};
use consentry::collect::{FieldValue, Record};
use consentry::consent::{Consents, Method, Registry, grant};
use consentry::gate::{Gate, GatedRecord};
use consentry::store::{Batch, QueuedRecord, Store};
use consentry::upload::otlp;
use consentry::upload::protocol::{self, Envelope};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

fn update_identity_record() -> Record {
    let mut record = Record::new("update_identity");
    record
        .set(
            "product_id",
            FieldValue::String("consentry-demo-suite".into()),
        )
        .set("product_version", FieldValue::String("1.0.0.0".into()))
        .set("installation_id", FieldValue::Uuid(Uuid::new_v4()))
        .set("update_task_id", FieldValue::Uuid(Uuid::new_v4()));
    record
}

/// A gate with the EULA accepted, over the embedded catalogue.
fn eula_gate(dir: &std::path::Path) -> Gate {
    let catalogue = Catalogue::embedded();
    let consent_file = dir.join("consent.toml");
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
    Gate::with_registry(catalogue, registry)
}

/// What a gated record looks like read back from the queue.
fn queued(record: &GatedRecord) -> QueuedRecord {
    QueuedRecord {
        purpose: record.purpose().into(),
        clause: record.clause().into(),
        clause_version: record.clause_version(),
        clause_sha256: record.clause_sha256().into(),
        collected_at: record.collected_at().into(),
        fields_json: record.fields_json().into(),
    }
}

fn gate(c: &mut Criterion) {
    let record = update_identity_record();
    let dir = tempfile::tempdir().unwrap();
    let gate = eula_gate(dir.path());
    let catalogue = gate.catalogue();
    let consent_file = dir.path().join("consent.toml");

    let mut group = c.benchmark_group("gate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("catalogue_check", |b| {
        b.iter(|| catalogue.check(black_box(&record)).unwrap())
    });
    let registry = gate.registry();
    group.bench_function("registry_is_allowed", |b| {
        b.iter(|| registry.is_allowed(black_box("update_identity")))
    });
    group.bench_function("consent_file_load_and_evaluate", |b| {
        b.iter(|| {
            let consents = Consents::load(&consent_file, catalogue).unwrap();
            Registry::evaluate(catalogue, &consents, Region::Global)
        })
    });
    group.bench_function("fields_to_wire_json", |b| {
        b.iter(|| serde_json::to_string(black_box(&record.fields)).unwrap())
    });
    group.bench_function("gate_is_allowed_snapshot", |b| {
        b.iter(|| gate.is_allowed(black_box("update_identity")))
    });
    group.bench_function("gate_admit", |b| {
        b.iter(|| gate.admit(black_box(&record)).unwrap())
    });
    group.finish();
}

const BATCH: usize = 500;

fn store_and_encode(c: &mut Criterion) {
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = eula_gate(gate_dir.path());
    let records: Vec<GatedRecord> = (0..BATCH)
        .map(|_| gate.admit(&update_identity_record()).unwrap())
        .collect();
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    group.bench_function("enqueue_500_one_transaction", |b| {
        b.iter(|| store.enqueue(black_box(&records)).unwrap())
    });
    // The enqueue bench above left a deep backlog behind: claiming from the
    // head of it is what an agent does after an outage.
    // (Filtered out, it left none: this one is skipped too. Its name does
    // not carry the backlog's size, so that a saved baseline matches.)
    if store.depth().unwrap() > 0 {
        group.bench_function("claim_and_complete_500_behind_a_backlog", |b| {
            b.iter(|| {
                let batch = store
                    .claim_batch(BATCH, &["update_identity"])
                    .unwrap()
                    .unwrap();
                store.complete_batch(batch.id, "uploaded", "test").unwrap()
            })
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    group.bench_function("claim_and_complete_500", |b| {
        b.iter_batched(
            || store.enqueue(&records).unwrap(),
            |_| {
                let batch = store
                    .claim_batch(BATCH, &["update_identity"])
                    .unwrap()
                    .unwrap();
                store.complete_batch(batch.id, "uploaded", "test").unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    // The baseline the durable enqueue is held to: a bare rusqlite loop
    // inserting the same rows into a table of the same shape (the queue's
    // columns and indexes), WAL, `synchronous=FULL`, one transaction.
    let bare_dir = tempfile::tempdir().unwrap();
    let mut bare = rusqlite::Connection::open(bare_dir.path().join("bare.sqlite")).unwrap();
    bare.pragma_update(None, "journal_mode", "WAL").unwrap();
    bare.pragma_update(None, "synchronous", "FULL").unwrap();
    bare.execute_batch(
        "CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, purpose TEXT NOT NULL,
           clause TEXT NOT NULL, clause_version INTEGER NOT NULL, clause_sha256 TEXT NOT NULL,
           collected_at TEXT NOT NULL, fields TEXT NOT NULL, size INTEGER NOT NULL);
         CREATE INDEX queue_purpose ON queue (purpose);",
    )
    .unwrap();
    group.bench_function("baseline_bare_rusqlite_insert_500_one_transaction", |b| {
        b.iter(|| {
            let transaction = bare.transaction().unwrap();
            {
                let mut insert = transaction
                    .prepare_cached(
                        "INSERT INTO queue (purpose, clause, clause_version, clause_sha256, collected_at, fields, size)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .unwrap();
                for record in &records {
                    insert
                        .execute(rusqlite::params![
                            record.purpose(),
                            record.clause(),
                            record.clause_version(),
                            record.clause_sha256(),
                            record.collected_at(),
                            record.fields_json(),
                            record.size() as i64,
                        ])
                        .unwrap();
                }
            }
            transaction.commit().unwrap()
        })
    });
    group.finish();

    // A revoke purges everything its clause had queued before the command
    // returns: 100,000 records of the EULA's purposes.
    let mut group = c.benchmark_group("revoke");
    group.sample_size(10);
    let many: Vec<GatedRecord> = (0..100_000 / BATCH).flat_map(|_| records.clone()).collect();
    group.bench_function("purge_100000_queued", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path()).unwrap();
                store.enqueue(&many).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let purged = store.purge_blocked(|_| false, "bench").unwrap();
                assert_eq!(purged, 100_000);
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let batch = Batch::of_records(
        Uuid::new_v4(),
        &records.iter().map(queued).collect::<Vec<_>>(),
    );
    let mut group = c.benchmark_group("protocol");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("envelope_encode_zstd_500", |b| {
        b.iter(|| protocol::encode_batch(black_box(&batch), &Default::default(), Compression::Zstd))
    });
    group.finish();
    wire(c, &gate);
}

/// A mixed batch: installer tasks (what a busy machine sends most) and
/// update identities, one in five.
fn mixed_batch(gate: &Gate) -> Batch {
    task_batch(gate, true)
}

/// A batch of installer tasks (`load`'s workload, the one compared with
/// Glean), with update identities one in five when `mixed`.
fn task_batch(gate: &Gate, mixed: bool) -> Batch {
    let records = (0..BATCH)
        .map(|n| {
            let record = if mixed && n % 5 == 0 {
                update_identity_record()
            } else {
                let mut record = Record::new("installation_errors");
                record
                    .set(
                        "product_id",
                        FieldValue::String("consentry-demo-suite".into()),
                    )
                    .set("product_version", FieldValue::String("1.0.0.0".into()))
                    .set("os_type", FieldValue::String("linux".into()))
                    .set("os_version", FieldValue::String("6.8".into()))
                    .set(
                        "task_type",
                        FieldValue::String(["install", "update", "uninstall"][n % 3].into()),
                    )
                    .set(
                        "task_status",
                        FieldValue::String(if n % 7 == 0 { "failed" } else { "succeeded" }.into()),
                    )
                    .set("error_type", FieldValue::String("io".into()))
                    .set(
                        "error_code",
                        FieldValue::Integer(0x8007_0000 + (n % 50) as i64),
                    )
                    .set(
                        "task_duration_ms",
                        FieldValue::Integer(1000 + (n % 977) as i64),
                    )
                    .set(
                        "upgrade_campaign_id",
                        FieldValue::String("campaign-2026-11".into()),
                    );
                record
            };
            queued(&gate.admit(&record).unwrap())
        })
        .collect::<Vec<_>>();
    Batch::of_records(Uuid::new_v4(), &records)
}

/// The compression and its level, chosen by measurement: the cost of
/// zstd levels 1 to 3 and gzip levels 1 and 6 over a mixed batch's JSON,
/// and the size each reaches (printed once).
fn wire(c: &mut Criterion, gate: &Gate) {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let json = serde_json::to_vec(&Envelope::from_batch(&mixed_batch(gate)).unwrap()).unwrap();
    let tasks =
        serde_json::to_vec(&Envelope::from_batch(&task_batch(gate, false)).unwrap()).unwrap();
    let gzip = |level: u32| {
        let mut encoder = GzEncoder::new(
            Vec::with_capacity(json.len() / 8),
            flate2::Compression::new(level),
        );
        encoder.write_all(&json).unwrap();
        encoder.finish().unwrap()
    };
    let zstd = |level: i32| zstd::stream::encode_all(&json[..], level).unwrap();
    let zstd_tasks = |level: i32| zstd::stream::encode_all(&tasks[..], level).unwrap();
    let sizes: Vec<(&str, usize, String, usize)> = [1, 2, 3]
        .map(|level| {
            (
                "mixed",
                json.len(),
                format!("zstd level {level}"),
                zstd(level).len(),
            )
        })
        .into_iter()
        .chain([1, 6, 9].map(|level| {
            (
                "mixed",
                json.len(),
                format!("gzip level {level}"),
                gzip(level).len(),
            )
        }))
        .chain([1, 2, 3].map(|level| {
            (
                "install-task",
                tasks.len(),
                format!("zstd level {level}"),
                zstd_tasks(level).len(),
            )
        }))
        .collect();
    for (kind, json, name, size) in sizes {
        eprintln!(
            "wire: {kind} batch of {BATCH}: JSON {json} B ({} B/record), {name} {size} B ({:.1} B/record, {:.1} % of the JSON)",
            json / BATCH,
            size as f64 / BATCH as f64,
            size as f64 * 100.0 / json as f64
        );
    }
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(BATCH as u64));
    for level in [1, 2, 3] {
        group.bench_function(format!("zstd_level_{level}_mixed_500"), |b| {
            b.iter(|| zstd(black_box(level)))
        });
    }
    for level in [1, 2, 3] {
        group.bench_function(format!("zstd_level_{level}_install_task_500"), |b| {
            b.iter(|| zstd_tasks(black_box(level)))
        });
    }
    for level in [1, 6] {
        group.bench_function(format!("gzip_level_{level}_mixed_500"), |b| {
            b.iter(|| gzip(black_box(level)))
        });
    }
    // The whole body, each protocol: encoding from the queued records to
    // the bytes on the wire, as the uploader does it (zstd, the default).
    let batch = mixed_batch(gate);
    let otlp = otlp::encode(
        &otlp::request(&batch, Region::Global, &Default::default()).unwrap(),
        Compression::Zstd,
    );
    let envelope = protocol::encode_batch(&batch, &Default::default(), Compression::Zstd);
    eprintln!(
        "wire: mixed batch of {BATCH}: consentry-json {} B zstd ({} B inside), otlp-http {} B zstd ({} B of protobuf inside)",
        envelope.bytes.len(),
        envelope.json_len.unwrap_or(0),
        otlp.bytes.len(),
        otlp.json_len.unwrap_or(0)
    );
    group.bench_function("body_consentry_json_mixed_500", |b| {
        b.iter(|| protocol::encode_batch(black_box(&batch), &Default::default(), Compression::Zstd))
    });
    group.bench_function("body_otlp_http_mixed_500", |b| {
        b.iter(|| {
            otlp::encode(
                &otlp::request(black_box(&batch), Region::Global, &Default::default()).unwrap(),
                Compression::Zstd,
            )
        })
    });
    group.finish();
}

/// A consent file of `records` acceptance records (all but one duplicates,
/// so every record is a problem to locate).
fn consent_file_of(records: usize) -> String {
    let catalogue = Catalogue::embedded();
    let eula = catalogue.clause("eula").unwrap();
    format!(
        "[[accepted]]\nclause = \"eula\"\nversion = {}\ntext_sha256 = \"{}\"\naccepted_at = 2026-11-25T12:00:00Z\nmethod = \"installer\"\n\n",
        eula.version, eula.text_sha256
    )
    .repeat(records)
}

fn consent_load(c: &mut Criterion) {
    let catalogue = Catalogue::embedded();
    let mut group = c.benchmark_group("consent");
    group.sample_size(10);
    for records in [4_000usize, 16_000, 56_000] {
        let text = consent_file_of(records);
        group.throughput(Throughput::Bytes(text.len() as u64));
        let document = consentry::document::Document {
            origin: consentry::document::Origin::Embedded("bench"),
            text,
        };
        group.bench_function(format!("load_{}_kb", document.text.len() / 1000), |b| {
            b.iter(|| Consents::from_document(black_box(&document), &catalogue).unwrap_err())
        });
    }
    group.finish();
}

criterion_group!(benches, gate, store_and_encode, consent_load);
criterion_main!(benches);
