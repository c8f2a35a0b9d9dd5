//! Ingest throughput, in lines per second: parsing alone (one thread, no
//! I/O), and through the real `ingest.sock` of an in-process daemon to the
//! last durable acknowledgement. `scan_verdict` (folded into the KSN
//! window) and `install_task` (a queued record each) are the two shapes of
//! load; plain `serde_json` parsing of the same verdict lines into a
//! `Value` is the baseline the performance targets are relative to.
//!
//! Run with `cargo bench --bench ingest`; numbers go to BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use consentry::catalogue::{Catalogue, Region};
use consentry::collect::CollectContext;
use consentry::collect::ksn::KsnDelta;
use consentry::config::Config;
use consentry::consent::{Consents, Method, Registry, grant};
use consentry::daemon::{self, Agent, Listeners};
use consentry::gate::Gate;
use consentry::ingest::client;
use consentry::ingest::event::{Outcome, Parser};
use consentry::store::Filling;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

fn verdict_lines(count: usize) -> String {
    let verdicts = ["unknown", "trusted", "untrusted"];
    let mut lines = String::with_capacity(count * 130);
    for n in 0..count {
        let object = hex::encode(Sha256::digest((n as u64 % 50_000).to_le_bytes()));
        lines.push_str(&format!(
            "{{\"kind\":\"scan_verdict\",\"object\":\"{object}\",\"verdict\":\"{}\",\"trust_reason\":\"none\"}}\n",
            verdicts[n % 3]
        ));
    }
    lines
}

fn install_lines(count: usize) -> String {
    let mut lines = String::with_capacity(count * 150);
    for n in 0..count {
        lines.push_str(&format!(
            "{{\"kind\":\"install_task\",\"task\":\"update\",\"status\":\"failed\",\"error_type\":\"io\",\"error_code\":{n},\"duration_ms\":1200,\"campaign_id\":\"c-7\"}}\n"
        ));
    }
    lines
}

fn accept_all(dir: &Path) -> std::path::PathBuf {
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
    grant(
        &consent_file,
        &catalogue,
        Region::Global,
        "ksn",
        Method::Cli,
    )
    .unwrap();
    consent_file
}

fn parse(c: &mut Criterion) {
    const LINES: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::embedded();
    let consents = Consents::load(&accept_all(dir.path()), &catalogue).unwrap();
    let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
    let gate = Gate::with_registry(catalogue.clone(), registry);
    let config: Config = test_config(dir.path(), OUT_OF_THE_WAY);
    let context = CollectContext::new(config.product.clone(), uuid::Uuid::new_v4(), config.region);
    let parser = Parser {
        catalogue: &catalogue,
        context: &context,
    };
    let verdicts = verdict_lines(LINES);
    let installs = install_lines(LINES);

    let mut group = c.benchmark_group("ingest_parse");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("scan_verdict_1000_lines", |b| {
        b.iter(|| {
            let mut delta = KsnDelta::default();
            for line in verdicts.lines() {
                black_box(parser.parse(line.as_bytes(), &mut delta).unwrap());
            }
            delta
        })
    });
    group.bench_function("baseline_serde_json_value_scan_verdict_1000_lines", |b| {
        b.iter(|| {
            for line in verdicts.lines() {
                black_box(serde_json::from_str::<serde_json::Value>(line).unwrap());
            }
        })
    });
    // What an ingest connection does for each installer task: parse the
    // line, and gate its draft straight to its line.
    let mut drafts = gate.drafts();
    group.bench_function("install_task_1000_lines_parse_and_gate", |b| {
        b.iter(|| {
            let mut delta = KsnDelta::default();
            for line in installs.lines() {
                if let Outcome::Install(task) = parser.parse(line.as_bytes(), &mut delta).unwrap() {
                    let draft = task.draft(&context, None);
                    drafts
                        .admit(&draft, SystemTime::now(), |line| {
                            black_box(line.size());
                        })
                        .unwrap();
                }
            }
        })
    });
    // The same, and the lines grouped into segments and packed as the
    // store will keep them.
    group.bench_function("install_task_1000_lines_to_segments", |b| {
        b.iter(|| {
            let mut delta = KsnDelta::default();
            let mut filling = Filling::default();
            for line in installs.lines() {
                if let Outcome::Install(task) = parser.parse(line.as_bytes(), &mut delta).unwrap() {
                    let draft = task.draft(&context, None);
                    drafts
                        .admit(&draft, SystemTime::now(), |line| filling.push(line))
                        .unwrap();
                }
            }
            black_box(filling.finish())
        })
    });
    // A regional edition reports installation tasks under
    // `installation_quality`, with the country (read from the time zone
    // and locale): parsing alone, in the EU.
    let eu = CollectContext::new(config.product.clone(), uuid::Uuid::new_v4(), Region::Eu);
    let eu_parser = Parser {
        catalogue: &catalogue,
        context: &eu,
    };
    group.bench_function("install_task_1000_lines_parse_eu", |b| {
        b.iter(|| {
            let mut delta = KsnDelta::default();
            for line in installs.lines() {
                black_box(eu_parser.parse(line.as_bytes(), &mut delta).unwrap());
            }
        })
    });
    group.finish();
}

/// The queue grows by every iteration and is never sent: a bound this high
/// stays out of the way (`socket_at_the_bound` measures what it costs).
const OUT_OF_THE_WAY: u64 = 4 << 30;

fn test_config(dir: &Path, max_queue_bytes: u64) -> Config {
    let path = dir.join("consentry.toml");
    // The endpoint is a closed loopback port: the uploader fails fast and
    // backs off; nothing leaves the machine.
    std::fs::write(
        &path,
        format!(
            r#"state_dir = "state"
runtime_dir = "run"
consent_file = "consent.toml"
[product]
id = "bench"
version = "1.0"
[collect]
interval = "1h"
[store]
max_queue_bytes = {max_queue_bytes}
[upload]
endpoint = "https://127.0.0.1:9/v1/batches"
batch_max_delay = "1h"
"#
        ),
    )
    .unwrap();
    Config::load(&path).unwrap()
}

/// A daemon on `runtime`, in a directory of its own; cancel the token to
/// stop it.
fn start_daemon(
    runtime: &tokio::runtime::Runtime,
    max_queue_bytes: u64,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), daemon::RunError>>,
) {
    let dir = tempfile::tempdir().unwrap();
    accept_all(dir.path());
    let config = test_config(dir.path(), max_queue_bytes);
    let socket = config.ingest_socket();
    let shutdown = CancellationToken::new();
    let (agent, listeners) = runtime.block_on(async {
        let agent = Agent::open(config).await.unwrap();
        let listeners = Listeners::bind(&agent.config()).unwrap();
        (agent, listeners)
    });
    let daemon = runtime.spawn(daemon::run(agent, listeners, shutdown.clone()));
    (dir, socket, shutdown, daemon)
}

fn socket(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_dir, socket, shutdown, daemon) = start_daemon(&runtime, OUT_OF_THE_WAY);

    let mut group = c.benchmark_group("ingest_socket");
    group.sample_size(10);
    for (name, lines, count) in [
        (
            "scan_verdict_100000_lines_to_durable_ack",
            Arc::new(verdict_lines(100_000)),
            100_000u64,
        ),
        (
            "install_task_20000_lines_to_durable_ack",
            Arc::new(install_lines(20_000)),
            20_000,
        ),
    ] {
        group.throughput(Throughput::Elements(count));
        group.bench_function(name, |b| {
            b.iter(|| {
                let summary = runtime
                    .block_on(client::send(&socket, lines.as_bytes()))
                    .unwrap();
                assert_eq!(summary.accepted, count);
            })
        });
    }
    group.finish();
    shutdown.cancel();
    runtime.block_on(daemon).unwrap().unwrap();
}

/// The same install tasks into a queue held at a 16 MiB bound, that is
/// evicting the oldest records all the time (nothing is ever sent).
fn socket_at_the_bound(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_dir, socket, shutdown, daemon) = start_daemon(&runtime, 16 << 20);
    let lines = install_lines(20_000);
    // Fill it to the bound first.
    for _ in 0..6 {
        runtime
            .block_on(client::send(&socket, lines.as_bytes()))
            .unwrap();
    }
    let mut group = c.benchmark_group("ingest_socket_at_the_bound");
    group.sample_size(10);
    group.throughput(Throughput::Elements(20_000));
    group.bench_function("install_task_20000_lines_evicting", |b| {
        b.iter(|| {
            let summary = runtime
                .block_on(client::send(&socket, lines.as_bytes()))
                .unwrap();
            assert_eq!(summary.accepted, 20_000);
        })
    });
    group.finish();
    shutdown.cancel();
    runtime.block_on(daemon).unwrap().unwrap();
}

criterion_group!(benches, parse, socket, socket_at_the_bound);
criterion_main!(benches);
