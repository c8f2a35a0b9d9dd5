//! End-to-end load: install-task events from a client through `ingest.sock`
//! into a real daemon, out to a loopback TLS receiver that answers 200, and
//! optionally the same workload through the Glean peer
//! (`../shared/peers/glean-bench`) in the same invocation, with ratios.
//!
//! ```sh
//! cargo run --release --example load -- --events 1000000 --compare-glean
//! cargo run --release --example load -- --events 1000000 --backlog
//! cargo run --release --example load -- --verdicts 10000000 --objects 10000000
//! ```
//!
//! The daemon is this program started again as a child process (the same
//! library code `consentry daemon` runs, on the same runtime), so its CPU
//! and peak RSS are read from `/proc/<pid>` apart from the generator's and
//! the receiver's. What is printed for each run:
//!
//! - events/s: from the first line sent to the receiver's 2xx for the last
//!   record;
//! - daemon CPU per event: the child's user + system time over the run;
//! - peak RSS: the child's `VmHWM`;
//! - wire bytes per event, and the wire size as a share of the JSON.
//!
//! With `--backlog` the receiver first answers 503 while every event is
//! queued (and acknowledged) on disk, then 200, and a flush is asked for
//! over the control socket: the drain is timed from there, and the peak
//! RSS covers both phases.
//!
//! With `--verdicts N` the load is N `scan_verdict` events over
//! `--objects M` distinct objects (default N), folded into the KSN
//! aggregate: verdicts/s to the last durable acknowledgement, daemon CPU
//! per verdict and peak RSS (the sketches' memory does not grow with M).
//! The lines are written to a file first, so making them is not timed.
//!
//! Glean's figures are its own process (it records, batches, persists,
//! compresses and hands pings to an uploader that decodes and counts them, in one
//! process), from the line it prints.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use consentry::catalogue::{Catalogue, Region};
use consentry::consent::{Method, grant};
use consentry::receiver::{LoopbackPki, Receiver};

const USAGE: &str =
    "usage: load [--events N] [--runs R] [--backlog] [--compare-glean] [--glean-dir DIR]
       load --verdicts N [--objects M] [--runs R]";

struct Options {
    events: u64,
    runs: usize,
    backlog: bool,
    compare_glean: bool,
    glean_dir: PathBuf,
    verdicts: Option<u64>,
    objects: Option<u64>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        events: 100_000,
        runs: 3,
        backlog: false,
        compare_glean: false,
        glean_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/glean-bench"),
        verdicts: None,
        objects: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--events" => options.events = value("--events")?.parse().context("--events")?,
            "--runs" => options.runs = value("--runs")?.parse().context("--runs")?,
            "--backlog" => options.backlog = true,
            "--compare-glean" => options.compare_glean = true,
            "--glean-dir" => options.glean_dir = value("--glean-dir")?.into(),
            "--verdicts" => {
                options.verdicts = Some(value("--verdicts")?.parse().context("--verdicts")?)
            }
            "--objects" => {
                options.objects = Some(value("--objects")?.parse().context("--objects")?)
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if options.events == 0 || options.runs == 0 {
        bail!("--events and --runs must be at least 1");
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    // The child: run a daemon on the config given, until SIGTERM.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--daemon") {
        return daemon(Path::new(&args[2]));
    }
    let options = options()?;
    if let Some(verdicts) = options.verdicts {
        return verdicts_main(&options, verdicts);
    }
    let glean = if options.compare_glean {
        Some(build_glean(&options.glean_dir)?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let lines = install_lines(options.events);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 1..=options.runs {
        let figures = runtime.block_on(consentry_run(&lines, options.events, options.backlog))?;
        println!("run {run}: consentry {}", figures.line());
        ours.push(figures);
        if let Some(glean) = &glean {
            let figures = glean_run(glean, options.events)?;
            println!("run {run}: glean     {}", figures.line());
            theirs.push(figures);
        }
    }
    let ours = Figures::median(&ours);
    println!();
    println!(
        "median of {} runs, {} events each:",
        options.runs, options.events
    );
    println!("  consentry {}", ours.line());
    if !theirs.is_empty() {
        let theirs = Figures::median(&theirs);
        println!("  glean     {}", theirs.line());
        println!(
            "  ratios (consentry / glean): events/s {:.1}x, CPU per event {:.3}x, peak RSS {:.3}x, wire bytes per event {:.2}x",
            ours.events_per_s / theirs.events_per_s,
            ours.cpu_us_per_event / theirs.cpu_us_per_event,
            ours.peak_rss_mib / theirs.peak_rss_mib,
            ours.wire_bytes_per_event / theirs.wire_bytes_per_event,
        );
    }
    Ok(())
}

/// One run's figures.
#[derive(Debug, Clone, Default)]
struct Figures {
    /// Events/s to the last durable acknowledgement (consentry only).
    acked_per_s: Option<f64>,
    events_per_s: f64,
    cpu_us_per_event: f64,
    peak_rss_mib: f64,
    wire_bytes_per_event: f64,
    /// Compressed size over the JSON's (consentry only).
    wire_share: Option<f64>,
    /// Seconds to drain the backlog (`--backlog` only).
    drain_s: Option<f64>,
}

impl Figures {
    fn line(&self) -> String {
        let mut line = format!(
            "events/s {:>9.0}  CPU {:>6.2} µs/event  peak RSS {:>6.1} MiB  wire {:>5.1} B/event",
            self.events_per_s, self.cpu_us_per_event, self.peak_rss_mib, self.wire_bytes_per_event
        );
        if let Some(acked) = self.acked_per_s {
            line.push_str(&format!("  (acked at {acked:.0}/s)"));
        }
        if let Some(share) = self.wire_share {
            line.push_str(&format!(" ({:.1} % of the JSON)", share * 100.0));
        }
        if let Some(drain) = self.drain_s {
            line.push_str(&format!("  backlog drained in {drain:.2} s"));
        }
        line
    }

    fn median(runs: &[Figures]) -> Figures {
        let median = |f: &dyn Fn(&Figures) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Figures {
            acked_per_s: runs[0]
                .acked_per_s
                .map(|_| median(&|f| f.acked_per_s.unwrap_or(0.0))),
            events_per_s: median(&|f| f.events_per_s),
            cpu_us_per_event: median(&|f| f.cpu_us_per_event),
            peak_rss_mib: median(&|f| f.peak_rss_mib),
            wire_bytes_per_event: median(&|f| f.wire_bytes_per_event),
            wire_share: runs[0]
                .wire_share
                .map(|_| median(&|f| f.wire_share.unwrap_or(0.0))),
            drain_s: runs[0]
                .drain_s
                .map(|_| median(&|f| f.drain_s.unwrap_or(0.0))),
        }
    }
}

/// The peer's workload: six fields, the same values Glean records.
fn install_lines(count: u64) -> String {
    let tasks = ["install", "update", "uninstall"];
    let mut lines = String::with_capacity(count as usize * 170);
    for i in 0..count {
        let status = if i % 7 == 0 { "failed" } else { "succeeded" };
        lines.push_str(&format!(
            "{{\"kind\":\"install_task\",\"task\":\"{}\",\"status\":\"{status}\",\"error_type\":\"io\",\"error_code\":{},\"duration_ms\":{},\"campaign_id\":\"campaign-2026-11\"}}\n",
            tasks[(i % 3) as usize],
            0x8007_0000u64 + i % 50,
            1000 + i % 977,
        ));
    }
    lines
}

async fn consentry_run(lines: &str, events: u64, backlog: bool) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let pki = LoopbackPki::generate()?;
    let receiver = Receiver::start(&pki).await?;
    receiver.count_only();
    if backlog {
        receiver.set_status(503);
    }
    let (mut child, socket) = start_daemon(dir.path(), &pki, &receiver, &["eula"]).await?;
    let before = receiver.totals();
    let cpu_before = child.cpu_seconds()?;
    let started = Instant::now();
    let summary = consentry::ingest::client::send(&socket, lines.as_bytes()).await?;
    let acked_s = started.elapsed().as_secs_f64();
    if summary.accepted != events {
        bail!(
            "the daemon accepted {} of {events} events: {:?}",
            summary.accepted,
            summary.errors.first()
        );
    }
    let mut drain_started = None;
    if backlog {
        receiver.set_status(200);
        drain_started = Some(Instant::now());
        // As an operator would: a flush starts the drain now, rather than
        // when the uploader's wait after the last 503 runs out (up to
        // `retry_max`, which the drain time would otherwise include).
        let control = socket.with_file_name("control.sock");
        tokio::spawn(async move {
            let flush = consentry::control::Request::Flush;
            if let Err(err) = consentry::control::request(&control, &flush).await {
                eprintln!("flush: {err}");
            }
        });
    }
    // Woken as each batch is counted, so the end is timed to the batch;
    // every 50 ms the daemon is checked for having died.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !receiver
        .wait_for_records(before.records + events, Duration::from_millis(50))
        .await
    {
        if Instant::now() > deadline {
            bail!("not every event arrived within 600 s");
        }
        child.check()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let drain_s = drain_started.map(|t| t.elapsed().as_secs_f64());
    let cpu = child.cpu_seconds()? - cpu_before;
    let peak_rss_mib = child.peak_rss_kib()? as f64 / 1024.0;
    child.stop()?;
    let after = receiver.totals();
    let wire = (after.wire_bytes - before.wire_bytes) as f64;
    let json = (after.json_bytes - before.json_bytes) as f64;
    Ok(Figures {
        acked_per_s: Some(events as f64 / acked_s),
        events_per_s: events as f64 / elapsed,
        cpu_us_per_event: cpu * 1e6 / events as f64,
        peak_rss_mib,
        wire_bytes_per_event: wire / events as f64,
        wire_share: Some(wire / json),
        drain_s,
    })
}

/// Writes a config and consent (`clauses` accepted) into `dir`, starts the
/// daemon child on it, and waits until its ingest socket is up and its
/// start-up work has settled.
async fn start_daemon(
    dir: &Path,
    pki: &LoopbackPki,
    receiver: &Receiver,
    clauses: &[&str],
) -> anyhow::Result<(Daemon, PathBuf)> {
    std::fs::write(dir.join("receiver-ca.pem"), &pki.ca_pem)?;
    let config = dir.join("consentry.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "state"
runtime_dir = "run"
consent_file = "consent.toml"
[product]
id = "load"
version = "1.0.0.0"
[collect]
interval = "1h"
[store]
max_queue_bytes = {}
[upload]
endpoint = "{}"
ca_file = "receiver-ca.pem"
batch_max_delay = "1s"
retry_initial = "1s"
retry_max = "1s"
"#,
            4u64 << 30,
            receiver.url()
        ),
    )?;
    let catalogue = Catalogue::embedded();
    for clause in clauses {
        grant(
            &dir.join("consent.toml"),
            &catalogue,
            Region::Global,
            clause,
            Method::Cli,
        )?;
    }
    let mut child = Daemon::start(&config)?;
    let socket = dir.join("run/ingest.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("the daemon did not bind {} within 30 s", socket.display());
        }
        child.check()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let start-up work (the first collection, its upload) settle first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok((child, socket))
}

/// `--verdicts`: scan verdicts into the KSN aggregate, `runs` times.
fn verdicts_main(options: &Options, verdicts: u64) -> anyhow::Result<()> {
    let objects = options.objects.unwrap_or(verdicts).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let lines = tempfile::NamedTempFile::new()?;
    {
        use sha2::Digest;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, lines.as_file());
        let kinds = ["unknown", "trusted", "untrusted"];
        for n in 0..verdicts {
            let object = hex::encode(sha2::Sha256::digest((n % objects).to_le_bytes()));
            writeln!(
                out,
                "{{\"kind\":\"scan_verdict\",\"object\":\"{object}\",\"verdict\":\"{}\",\"trust_reason\":\"none\"}}",
                kinds[(n % 3) as usize]
            )?;
        }
        out.flush()?;
    }
    let mut runs = Vec::new();
    for run in 1..=options.runs {
        let (rate, cpu, rss) = runtime.block_on(async {
            let dir = tempfile::tempdir()?;
            let pki = LoopbackPki::generate()?;
            let receiver = Receiver::start(&pki).await?;
            receiver.count_only();
            let (child, socket) =
                start_daemon(dir.path(), &pki, &receiver, &["eula", "ksn"]).await?;
            let cpu_before = child.cpu_seconds()?;
            let started = Instant::now();
            let input = tokio::fs::File::open(lines.path()).await?;
            let summary = consentry::ingest::client::send(&socket, input).await?;
            let elapsed = started.elapsed().as_secs_f64();
            if summary.accepted != verdicts {
                bail!(
                    "the daemon accepted {} of {verdicts} verdicts: {:?}",
                    summary.accepted,
                    summary.errors.first()
                );
            }
            let cpu = child.cpu_seconds()? - cpu_before;
            let rss = child.peak_rss_kib()? as f64 / 1024.0;
            child.stop()?;
            anyhow::Ok((verdicts as f64 / elapsed, cpu * 1e6 / verdicts as f64, rss))
        })?;
        println!(
            "run {run}: {verdicts} verdicts over {objects} objects: {rate:>9.0} verdicts/s to the last ack  CPU {cpu:.2} µs/verdict  peak RSS {rss:.1} MiB"
        );
        runs.push((rate, cpu, rss));
    }
    let median = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "\nmedian of {} runs: {:.0} verdicts/s, CPU {:.2} µs/verdict, peak RSS {:.1} MiB",
        runs.len(),
        median(&|r| r.0),
        median(&|r| r.1),
        median(&|r| r.2)
    );
    Ok(())
}

/// The daemon child process.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(config: &Path) -> anyhow::Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .arg("--daemon")
            .arg(config)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the daemon")?;
        Ok(Self { child })
    }

    fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the daemon exited: {status}");
        }
        Ok(())
    }

    /// User + system CPU seconds so far (`/proc/PID/stat` fields 14, 15).
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let after_name = &stat[stat.rfind(')').context("unreadable stat")? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // Linux reports these in USER_HZ, 100 per second on every architecture.
        Ok(ticks as f64 / 100.0)
    }

    /// `VmHWM`: the peak resident set.
    fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .context("no VmHWM")?;
        Ok(line.split_whitespace().nth(1).context("VmHWM")?.parse()?)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `consentry daemon`, as the binary runs it, without the signal niceties.
fn daemon(config: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = consentry::config::Config::load(config)?;
        let preflight = consentry::preflight::run(&config)?;
        let agent = consentry::daemon::Agent::open_daemon(config, preflight).await?;
        let listeners = consentry::daemon::Listeners::bind(&agent.config())?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            terminate.recv().await;
            stop.cancel();
        });
        consentry::daemon::run(agent, listeners, shutdown).await?;
        anyhow::Ok(())
    })
}

/// The peer, copied out of its (read-only) directory and built in release.
fn build_glean(source: &Path) -> anyhow::Result<PathBuf> {
    if !source.join("Cargo.toml").exists() {
        bail!(
            "no Glean peer at {} (pass --glean-dir DIR, a copy of glean-bench)",
            source.display()
        );
    }
    let target = target_dir()?.join("peers");
    let copy = target.join("glean-bench");
    std::fs::create_dir_all(copy.join("src"))?;
    for file in ["Cargo.toml", "src/main.rs"] {
        let text = std::fs::read(source.join(file))?;
        if std::fs::read(copy.join(file)).ok().as_deref() != Some(&text[..]) {
            std::fs::write(copy.join(file), text)?;
        }
    }
    eprintln!("building the Glean peer (the first time takes minutes) ...");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(copy.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target.join("glean-target"))
        .status()
        .context("cannot run cargo to build the Glean peer")?;
    if !status.success() {
        bail!("building the Glean peer failed: {status}");
    }
    Ok(target.join("glean-target/release/glean-bench"))
}

/// This build's target directory (`target/`), from where this example runs.
fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/load
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .context("cannot tell the target directory from this program's path")
}

fn glean_run(binary: &Path, events: u64) -> anyhow::Result<Figures> {
    let output = Command::new(binary)
        .arg(events.to_string())
        .stderr(Stdio::null())
        .output()
        .context("cannot run the Glean peer")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("glean:"))
        .with_context(|| format!("the Glean peer printed no figures: {text}"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("no {name} in {line}"))?
            .parse()
            .with_context(|| format!("{name} in {line}"))
    };
    let delivered = field("delivered")?;
    if delivered < events as f64 {
        let _ = writeln!(
            std::io::stderr(),
            "warning: glean delivered {delivered} of {events}"
        );
    }
    Ok(Figures {
        events_per_s: field("events_per_s")?,
        cpu_us_per_event: field("cpu_us_per_event")?,
        peak_rss_mib: field("maxrss_mib")?,
        wire_bytes_per_event: field("bytes_per_event")?,
        acked_per_s: None,
        wire_share: None,
        drain_s: None,
    })
}
