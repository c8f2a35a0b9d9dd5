//! The Kafka leg: a single-node Apache Kafka broker in KRaft mode (broker
//! and controller in one process, no ZooKeeper) from Apache Kafka's own
//! jars (`tests/kafka/pom.xml`, copied by `.ci/run` into
//! `<target dir>/kafka-libs`), run with the machine's Java between the
//! Collector's Kafka exporter and Kafka's console consumer, whose output
//! the test counts.
//!
//! Without the jars or without `java` the test says SKIPPED with the
//! command that fetches them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::process::{Child, Command};

use super::otelcol::{self, Exported, ROOMY};
use super::{POLICY, assert_conserved, uploaded, world_for};
use crate::faults::ledger::Ledger;
use crate::support::{BIN, PATIENCE, World};

/// Names the directory of Kafka's jars, instead of
/// `<target dir>/kafka-libs`.
pub const ENV: &str = "CONSENTRY_KAFKA_LIBS";

/// The topic of `packaging/otelcol/config.yaml`.
pub const TOPIC: &str = "consentry-logs";

/// JVM options for every Kafka process: a small heap and a quick start on
/// the 2-core machine (no server-class JIT, one GC thread).
const JVM: [&str; 4] = [
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
];

/// How long the console consumer waits for a message before it exits.
const CONSUMER_IDLE: Duration = Duration::from_secs(3);

/// Where `.ci/run` copies the jars: beside `debug/` in the target
/// directory the test binary was built in.
fn default_libs() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the consentry binary is in <target>/<profile>/")
        .join("kafka-libs")
}

/// The directory of Kafka's jars, or `None` after printing why the test
/// is skipped and the command that fetches them.
pub fn libs(test: &str) -> Option<PathBuf> {
    let libs = match std::env::var_os(ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_dir(), "{ENV}={} is not a directory", path.display());
            path
        }
        None => default_libs(),
    };
    let java = std::process::Command::new("java")
        .arg("-version")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if java && has_broker(&libs) {
        return Some(libs);
    }
    let pom = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/pom.xml");
    eprintln!(
        "SKIPPED {test}: {}; fetch the broker with: mvn -q -f {} dependency:copy-dependencies -DoutputDirectory={} (Java 17 or later on PATH) or name a directory of Kafka's jars in {ENV}",
        if java {
            format!("no Apache Kafka jars in {}", libs.display())
        } else {
            "no java on PATH".to_owned()
        },
        pom.display(),
        libs.display(),
    );
    None
}

/// Whether `dir` holds the broker's jar (`kafka_2.13-<version>.jar`).
fn has_broker(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("kafka_2.13-") && name.ends_with(".jar")
        })
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One broker-and-controller process on 127.0.0.1, its data in the
/// world's directory.
pub struct Broker {
    libs: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// From the storage format to the listener accepting connections.
    pub started_in: Duration,
}

impl Broker {
    /// Formats the storage with a fresh cluster id and starts the broker;
    /// returns once it accepts connections.
    pub async fn start(libs: PathBuf, world: &World) -> Self {
        let dir = world.path("kafka");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let controller = free_port();
        let properties = dir.join("server.properties");
        std::fs::write(
            &properties,
            format!(
                "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
",
                data = dir.join("data").display(),
            ),
        )
        .unwrap();
        let started = Instant::now();
        let cluster = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        let format = Command::new("java")
            .args(JVM)
            .arg("-cp")
            .arg(classpath(&libs))
            // `--cluster-id=…` in one argument: a base64url id may start with
            // `-`, which would read as an option.
            .args(["kafka.tools.StorageTool", "format"])
            .arg(format!("--cluster-id={cluster}"))
            .arg("-c")
            .arg(&properties)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(
            format.status.success(),
            "kafka-storage format: {}",
            String::from_utf8_lossy(&format.stderr)
        );
        let log = std::fs::File::create(dir.join("broker.log")).unwrap();
        let mut child = Command::new("java")
            .args(JVM)
            .arg("-cp")
            .arg(classpath(&libs))
            .arg("kafka.Kafka")
            .arg(&properties)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // A JVM's start on a busy 2-core machine: longer than PATIENCE.
        let deadline = tokio::time::Instant::now() + 3 * PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(exit)) = child.try_wait() {
                panic!(
                    "the broker exited ({exit}): {}",
                    read(&dir.join("broker.log"))
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker never listened"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            libs,
            dir,
            port,
            child: Some(child),
            started_in: started.elapsed(),
        }
    }

    /// The Kafka exporter's `brokers` entry.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Reads the whole topic from the beginning with Kafka's console
    /// consumer (a new consumer group each time), until it has waited
    /// [`CONSUMER_IDLE`] for more: per message its partition and its value,
    /// an OTLP/JSON `ExportLogsServiceRequest`.
    pub async fn consume(&self) -> Vec<(u32, String)> {
        let output = Command::new("java")
            .args(JVM)
            .arg("-cp")
            .arg(classpath(&self.libs))
            .arg("org.apache.kafka.tools.consumer.ConsoleConsumer")
            .args(["--bootstrap-server", &self.bootstrap()])
            .args(["--topic", TOPIC, "--from-beginning"])
            .args(["--timeout-ms", &CONSUMER_IDLE.as_millis().to_string()])
            .args(["--formatter-property", "print.partition=true"])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        // It exits 0 after its timeout, whatever it read.
        assert!(
            output.status.success(),
            "console consumer: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                // `Partition:N<tab>value`
                let (partition, value) = line
                    .strip_prefix("Partition:")
                    .and_then(|rest| rest.split_once('\t'))
                    .unwrap_or_else(|| panic!("not a partition and a value: {line}"));
                (partition.parse().unwrap(), value.to_owned())
            })
            .collect()
    }

    /// SIGTERM (a controlled shutdown), then waits for the exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("the broker is running");
        let pid = child.id().expect("running") as i32;
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        tokio::time::timeout(PATIENCE, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the broker did not stop after SIGTERM: {}",
                    read(&self.dir.join("broker.log"))
                )
            })
            .unwrap();
    }
}

fn classpath(libs: &Path) -> String {
    format!("{}/*", libs.display())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_kafka_once_through_the_collector() {
    let test = "every_record_reaches_kafka_once_through_the_collector";
    let Some(binary) = otelcol::binary(test) else {
        return;
    };
    let Some(libs) = libs(test) else {
        return;
    };
    let (world, mut collector) =
        world_for(binary, "batch_max_records = 100", &POLICY, &["eula"]).await;
    let mut broker = Broker::start(libs, &world).await;
    collector.export_to_kafka(broker.bootstrap());
    collector.start(ROOMY).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    let mut ledger = Ledger::default();
    assert!(ledger.send(&world.ingest_socket(), 2000).await);
    world.ok(&["flush"]).await;
    world
        .status_until("sent everything", |s| s["daemon"]["records_queued"] == 0)
        .await;
    let batches = uploaded(&world).await;
    let sent: u64 = batches.values().sum();
    // The file exporter beside Kafka has them all: the Collector took them.
    collector.wait_for_records(sent as usize).await;
    let taken = Instant::now();

    // The consumer counts what the topic holds, until it holds them all.
    let deadline = Instant::now() + 3 * PATIENCE;
    let (messages, records) = loop {
        let messages = broker.consume().await;
        let records: Vec<(u32, Exported)> = messages
            .iter()
            .flat_map(|(partition, value)| {
                let request = serde_json::from_str(value)
                    .unwrap_or_else(|e| panic!("not OTLP/JSON ({e}): {value}"));
                Exported::all_of(&request)
                    .into_iter()
                    .map(|record| (*partition, record))
            })
            .collect();
        let telemetry = records.iter().filter(|r| r.1.scope == "consentry").count();
        if telemetry as u64 >= sent {
            break (messages, records);
        }
        assert!(
            Instant::now() < deadline,
            "the topic holds {telemetry} of {sent} records"
        );
    };
    let in_kafka = taken.elapsed();
    // One installation's records in one partition
    // (`partition_logs_by_resource_attributes`), so in order.
    let mut partitions = BTreeMap::<String, BTreeSet<u32>>::new();
    for (partition, record) in records.iter().filter(|r| r.1.scope == "consentry") {
        if let Some(installation) = record.resource.get("consentry.installation_id") {
            partitions
                .entry(installation.to_string())
                .or_default()
                .insert(*partition);
        }
    }
    assert_eq!(partitions.len(), 1, "one installation: {partitions:?}");
    assert!(
        partitions.values().all(|p| p.len() == 1),
        "an installation's records in several partitions: {partitions:?}"
    );
    let records: Vec<Exported> = records.into_iter().map(|(_, record)| record).collect();
    let telemetry = records.iter().filter(|r| r.scope == "consentry").count();
    assert_eq!(telemetry as u64, sent, "more records in Kafka than sent");
    let conservation = assert_conserved(&ledger, &records);
    assert_eq!(conservation.duplicates, 0, "a record twice in the topic");
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    collector.stop().await;
    broker.stop().await;
    eprintln!(
        "kafka: broker (KRaft, one node) formatted and listening in {:.1} s; {sent} records in {} requests from the agent, {} messages in topic {TOPIC}, every record once (lost {}), one installation in one partition of 3, all read back by the console consumer {:.1} s after the Collector had them (its JVM start and {} s idle wait included)",
        broker.started_in.as_secs_f64(),
        batches.len(),
        messages.len(),
        conservation.lost,
        in_kafka.as_secs_f64(),
        CONSUMER_IDLE.as_secs(),
    );
}
