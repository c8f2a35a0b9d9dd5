//! The OpenTelemetry Collector the tests run: `tests/collector/` (the
//! Collector's own Go modules, one release) built as
//! `<target dir>/otelcol-consentry`, found here, configured per start (an
//! OTLP/HTTP receiver on 127.0.0.1 over TLS with the world's certificate
//! and the agent's bearer token, memory_limiter, batch, the file exporter),
//! started and stopped as a process, and its file exporter's JSON lines
//! read back as records.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::support::{BIN, PATIENCE, World, eventually};

/// Names the Collector binary, instead of `<target dir>/otelcol-consentry`.
pub const ENV: &str = "CONSENTRY_OTELCOL";

/// The bearer token the agent sends and the Collector's `bearertokenauth`
/// checks (both read the world's `token` file).
const TOKEN: &str = "collector-test-token";

/// Where `.ci/run` builds the Collector: beside `debug/` in the target
/// directory the test binary itself was built in (so `CARGO_TARGET_DIR` is
/// followed).
fn default_path() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the consentry binary is in <target>/<profile>/")
        .join("otelcol-consentry")
}

/// The Collector to run, or `None` after printing why the test is skipped
/// and the command that builds it. A `CONSENTRY_OTELCOL` that names no file
/// is a mistake, not a reason to skip.
pub fn binary(test: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ENV) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{ENV}={} is not a file", path.display());
        return Some(path);
    }
    let path = default_path();
    if path.is_file() {
        return Some(path);
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/collector");
    eprintln!(
        "SKIPPED {test}: no OpenTelemetry Collector at {}; build it with: (cd {} && go build -o {} .) or name one in {ENV}",
        path.display(),
        source.display(),
        path.display()
    );
    None
}

/// The memory_limiter's settings for one start.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimit {
    pub limit_mib: u32,
    pub spike_limit_mib: u32,
}

/// Far above what the tests make the Collector hold.
pub const ROOMY: MemoryLimit = MemoryLimit {
    limit_mib: 512,
    spike_limit_mib: 128,
};

/// Below the Collector's own idle heap (about 1–2 MiB): every request with
/// records is refused for as long as it runs.
pub const STARVED: MemoryLimit = MemoryLimit {
    limit_mib: 1,
    spike_limit_mib: 0,
};

/// One Collector, started and stopped as often as a test needs, on the
/// same port, with a fresh output file per start.
pub struct Collector {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    starts: u32,
    child: Option<Child>,
    /// A broker's address: the Kafka exporter beside the file exporter.
    kafka: Option<String>,
}

impl Collector {
    /// A Collector for `world`: its certificate and key, its token file,
    /// a free port. Nothing runs yet.
    pub fn new(binary: PathBuf, world: &World) -> Self {
        std::fs::write(world.path("server.key"), &world.pki.server_key_pem).unwrap();
        std::fs::write(world.path("token"), TOKEN).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            binary,
            dir: world.dir.path().to_owned(),
            port,
            starts: 0,
            child: None,
            kafka: None,
        }
    }

    /// The agent's `endpoint`: the receiver's OTLP/HTTP logs URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/v1/logs", self.port)
    }

    /// The `[upload]` lines that point `world`'s agent here (OTLP, the
    /// token) plus `extra`, in place of the loopback receiver.
    pub fn agent_config(&self, world: &World, extra: &str) -> String {
        world
            .config_text(&format!(
                "protocol = \"otlp-http\"\ntoken_file = \"token\"\n{extra}"
            ))
            .replace(&world.receiver.url(), &self.url())
    }

    /// From the next start on, export to the Kafka broker at `bootstrap`
    /// too: `packaging/otelcol/config.yaml`'s topic, acks and compression,
    /// OTLP/JSON messages (the fleet's file says `otlp_proto`) so that
    /// Kafka's console consumer prints one a line.
    pub fn export_to_kafka(&mut self, bootstrap: String) {
        self.kafka = Some(bootstrap);
    }

    fn config(&self, limit: MemoryLimit, output: &Path) -> String {
        let dir = self.dir.display();
        let (kafka, exporters) = match &self.kafka {
            Some(bootstrap) => (
                format!(
                    r#"  kafka:
    brokers: [{bootstrap}]
    logs:
      topic: {topic}
      encoding: otlp_json
    partition_logs_by_resource_attributes: true
    producer:
      required_acks: -1
      compression: zstd
"#,
                    topic = super::kafka::TOPIC
                ),
                "[file, kafka]",
            ),
            None => (String::new(), "[file]"),
        };
        format!(
            r#"extensions:
  bearertokenauth:
    filename: {dir}/token
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
        tls:
          cert_file: {dir}/server.pem
          key_file: {dir}/server.key
          min_version: "1.2"
        auth:
          authenticator: bearertokenauth
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: {limit}
    spike_limit_mib: {spike}
  batch:
    timeout: 200ms
exporters:
  file:
    path: {output}
    flush_interval: 100ms
{kafka}service:
  # No metrics server (its default port would clash between tests).
  telemetry:
    metrics:
      level: none
  extensions: [bearertokenauth]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: {exporters}
"#,
            port = self.port,
            limit = limit.limit_mib,
            spike = limit.spike_limit_mib,
            output = output.display(),
        )
    }

    /// Starts the Collector with `limit` and waits until its receiver
    /// accepts connections.
    pub async fn start(&mut self, limit: MemoryLimit) {
        assert!(self.child.is_none(), "the Collector is running already");
        self.starts += 1;
        let n = self.starts;
        let config = self.dir.join(format!("otelcol-{n}.yaml"));
        let output = self.dir.join(format!("exported-{n}.jsonl"));
        std::fs::write(&config, self.config(limit, &output)).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("otelcol-{n}.log"))).unwrap();
        let mut child = Command::new(&self.binary)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                break;
            }
            if let Ok(Some(exit)) = child.try_wait() {
                panic!("the Collector exited ({exit}): {}", self.log(n));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Collector never listened: {}",
                self.log(n)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }

    /// SIGTERM (the Collector drains what it has taken and writes it out),
    /// then waits for it to exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("the Collector is running");
        let pid = child.id().expect("running") as i32;
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let exit = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .expect("the Collector did not stop after SIGTERM")
            .unwrap();
        assert!(exit.success(), "{exit}: {}", self.log(self.starts));
    }

    /// Waits until the running Collector's log says `what`.
    pub async fn wait_for_log(&self, what: &str) {
        let logged = format!("saw the Collector log {what:?}");
        eventually(&logged, PATIENCE, async || {
            let log = self.log(self.starts);
            if log.contains(what) { Ok(()) } else { Err(log) }
        })
        .await;
    }

    /// The log of start `n` (1, 2, …).
    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("otelcol-{n}.log"))).unwrap_or_default()
    }

    /// Every record the file exporter has written so far, over all starts.
    pub fn exported(&self) -> Vec<Exported> {
        let mut records = Vec::new();
        for n in 1..=self.starts {
            let text = std::fs::read_to_string(self.dir.join(format!("exported-{n}.jsonl")))
                .unwrap_or_default();
            // A line still being written has no newline yet.
            let whole = text.rfind('\n').map_or("", |end| &text[..end]);
            for line in whole.lines().filter(|l| !l.is_empty()) {
                let request: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                records.extend(Exported::all_of(&request));
            }
        }
        records
    }

    /// Waits until the file exporter has written at least `count` records
    /// of scope `consentry`, and returns everything written.
    pub async fn wait_for_records(&self, count: usize) -> Vec<Exported> {
        let what = format!("saw the file exporter write {count} distinct records");
        eventually(&what, PATIENCE, async || {
            let records = self.exported();
            // Distinct by dedup key: a batch sent again (its answer lost
            // to a stop) is written twice, and its copies must not stand
            // in for records still on their way to the file.
            let telemetry: BTreeSet<(String, i64)> = records
                .iter()
                .filter(|r| r.scope == "consentry")
                .map(Exported::dedup_key)
                .collect();
            if telemetry.len() >= count {
                Ok(records)
            } else {
                Err(format!("{} distinct records written", telemetry.len()))
            }
        })
        .await
    }
}

/// One log record as the file exporter wrote it (OTLP/JSON), attribute
/// values made plain: strings, integers (OTLP/JSON writes them as
/// strings), booleans, arrays.
#[derive(Debug, Clone)]
pub struct Exported {
    pub resource: BTreeMap<String, Value>,
    pub scope: String,
    pub scope_version: String,
    pub event_name: String,
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
}

impl Exported {
    /// Every log record of one OTLP/JSON `ExportLogsServiceRequest`.
    pub fn all_of(request: &Value) -> Vec<Self> {
        let mut records = Vec::new();
        for resource_logs in list(&request["resourceLogs"]) {
            let resource = attributes(&resource_logs["resource"]["attributes"]);
            for scope_logs in list(&resource_logs["scopeLogs"]) {
                let scope = &scope_logs["scope"];
                for log in list(&scope_logs["logRecords"]) {
                    records.push(Exported {
                        resource: resource.clone(),
                        scope: text(&scope["name"]),
                        scope_version: text(&scope["version"]),
                        event_name: text(&log["eventName"]),
                        time_unix_nano: text(&log["timeUnixNano"]).parse().unwrap_or(0),
                        attributes: attributes(&log["attributes"]),
                    });
                }
            }
        }
        records
    }

    /// A string attribute of the record.
    pub fn text(&self, key: &str) -> &str {
        self.attributes
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string {key} in {self:?}"))
    }

    /// An integer attribute of the record.
    pub fn int(&self, key: &str) -> i64 {
        self.attributes
            .get(key)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("no integer {key} in {self:?}"))
    }

    /// The dedup key docs/fleet.md documents.
    pub fn dedup_key(&self) -> (String, i64) {
        (
            self.text("consentry.batch_id").to_owned(),
            self.int("consentry.record"),
        )
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn attributes(list_value: &Value) -> BTreeMap<String, Value> {
    list(list_value)
        .iter()
        .map(|kv| (text(&kv["key"]), plain(&kv["value"])))
        .collect()
}

/// An OTLP/JSON `AnyValue` as a plain JSON value.
fn plain(value: &Value) -> Value {
    if let Some(s) = value.get("stringValue") {
        s.clone()
    } else if let Some(i) = value.get("intValue") {
        // A string in OTLP/JSON (64-bit integers), a number in some
        // writers: either is read.
        i.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| i.as_i64())
            .map_or(Value::Null, Value::from)
    } else if let Some(b) = value.get("boolValue") {
        b.clone()
    } else if let Some(d) = value.get("doubleValue") {
        d.clone()
    } else if let Some(array) = value.get("arrayValue") {
        Value::Array(list(&array["values"]).iter().map(plain).collect())
    } else {
        Value::Null
    }
}
