//! The transparency report (`consentry report`) from the real binary:
//! what it says matches what the receiver got and what the trail
//! recorded, it changes nothing, and the page renders in a real browser
//! (headless Chromium, Debian's `chromium`, which `.ci/run` installs) with
//! the network blocked. Without Chromium that test says SKIPPED and
//! passes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::support::{Daemon, World};

/// Long enough for Chromium's first start on a loaded two-core machine.
const BROWSER_PATIENCE: Duration = Duration::from_secs(120);

async fn report(world: &World, args: &[&str]) -> Value {
    let mut all = vec!["report", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&world.ok(&all).await).unwrap()
}

fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
}

/// Lines for the ingest socket: an installation error, an activation by
/// code and a scan verdict (with `verdict_object` as its object's hash).
fn events(verdict_object: char) -> String {
    let object = verdict_object.to_string().repeat(64);
    format!(
        "{{\"kind\":\"install_task\",\"task\":\"install\",\"status\":\"failed\"}}\n\
         {{\"kind\":\"activation\",\"method\":\"code\",\"code\":\"ABCDE-12345\"}}\n\
         {{\"kind\":\"scan_verdict\",\"object\":\"{object}\",\"verdict\":\"unknown\"}}\n"
    )
}

/// A world whose running daemon sent several purposes (its first attempt
/// refused with 503 and sent again), with eula and ksn granted, then ksn
/// withdrawn and a scan verdict discarded at the door.
async fn world_that_sent() -> (World, Daemon) {
    let world = World::new().await;
    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["consent", "grant", "ksn"]).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    world.receiver.script(&[503]);
    let out = world.emit(&["-"], events('a').as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    // The flush collects and closes the KSN window; its first attempt is
    // refused, and the daemon sends the batch again.
    let _ = world.run(&["flush"]).await;
    world
        .status_until("everything delivered", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    world.ok(&["consent", "revoke", "ksn"]).await;
    let out = world.emit(&["-"], events('b').as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world
        .status_until("the new records delivered", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;
    (world, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_says_what_was_sent_answered_and_withdrawn_and_changes_nothing() {
    let fresh = World::new().await;
    let empty = report(&fresh, &[]).await;
    assert_eq!(empty["schema"], "consentry.report/1");
    assert_eq!(empty["sent"]["records"], 0);
    assert!(array(&empty["batches"]).is_empty());
    assert!(array(&empty["receipts"]).is_empty());
    assert!(!fresh.path("state").exists(), "report creates no state");

    let (world, daemon) = world_that_sent().await;
    let trail = world.ok(&["history", "--json", "--limit", "10000"]).await;
    let report = report(&world, &[]).await;
    assert_eq!(
        trail,
        world.ok(&["history", "--json", "--limit", "10000"]).await,
        "the report recorded something"
    );

    sends_match_the_receiver_and_the_trail(&world, &report).await;

    // The receipts, and the verdict the withdrawal left.
    let events: Vec<(&str, &str)> = array(&report["receipts"])
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["clause"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [("grant", "eula"), ("grant", "ksn"), ("revoke", "ksn")]
    );
    let ksn = array(&report["purposes"])
        .iter()
        .find(|p| p["id"] == "ksn_scan_aggregates")
        .unwrap();
    assert_eq!(ksn["verdict"]["allowed"], false);
    assert_eq!(ksn["verdict"]["withdrawn"], true);
    // The verdict sent after the withdrawal, refused at the door: counted
    // by the running daemon, and said so.
    assert_eq!(report["daemon"]["pid"], daemon.pid());
    assert_eq!(
        ksn["losses"],
        serde_json::json!([{
            "kind": "discarded",
            "reason": "its purpose was not allowed when the event arrived: refused at the ingest socket, never stored",
            "count": 1,
            "unit": "events",
            "span": "daemon"
        }])
    );
    assert_eq!(report["disclosure"]["region"], "global");

    renderings_say_the_same(&world, &report).await;

    let bad = world.run(&["report", "--since", "last week"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is neither a time"));
    daemon.terminate().await;
}

/// Per purpose, the records the receiver accepted; each batch with its
/// answers as the trail has them and its body as `history --show` prints
/// it.
async fn sends_match_the_receiver_and_the_trail(world: &World, report: &Value) {
    // Per purpose, what the receiver accepted.
    let mut total = 0;
    for purpose in array(&report["purposes"]) {
        let id = purpose["id"].as_str().unwrap();
        let delivered = world.delivered(id).len() as u64;
        assert_eq!(purpose["sent"]["records"], delivered, "{id}: {purpose}");
        let per_day: u64 = array(&purpose["days"])
            .iter()
            .map(|d| d["records"].as_u64().unwrap())
            .sum();
        assert_eq!(per_day, delivered, "{id}");
        total += delivered;
    }
    assert!(total > 0);
    assert_eq!(report["sent"]["records"], total);
    assert_eq!(report["failed_attempts"], 1);

    // Each batch: its answers as the trail has them, its body as
    // `history --show` prints it.
    let batches = array(&report["batches"]);
    assert!(!batches.is_empty());
    for batch in batches {
        let id = batch["batch_id"].as_str().unwrap();
        let shown = world.ok(&["history", "--show", id]).await;
        assert_eq!(batch["body"]["text"], shown.as_str(), "{id}");
        assert_eq!(batch["answer"]["event"], "uploaded");
    }
    let retried = batches
        .iter()
        .find(|b| array(&b["attempts"]).len() == 2)
        .expect("the refused batch, sent again");
    let answers: Vec<&Value> = array(&retried["attempts"])
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(answers, [503, 200]);
}

/// Markdown names every purpose that sent and the withdrawal; `-o`
/// writes the page for its owner only.
async fn renderings_say_the_same(world: &World, report: &Value) {
    let md = world.ok(&["report", "--format", "md"]).await;
    assert!(md.starts_with("# What consentry sent: "), "{md}");
    for sender in array(&report["purposes"])
        .iter()
        .filter(|p| p["sent"]["records"] != 0)
    {
        assert!(md.contains(&format!("(`{}`)", sender["id"].as_str().unwrap())));
    }
    assert!(md.contains("withdrawn: ksn v"), "{md}");

    let page = world.path("report.html");
    let said = world
        .ok(&["report", "-o", page.to_str().unwrap(), "--since", "7d"])
        .await;
    assert!(
        said.starts_with(&format!("wrote {}", page.display())),
        "{said}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&page).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the page holds the bodies sent");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg class=\"chart\"") && !html.contains("<script"));
}

/// Debian's `chromium` (or `chromium-browser`), if this machine has one
/// that starts.
async fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())?;
    let version = tokio::process::Command::new(&found)
        .arg("--version")
        .output()
        .await
        .ok()?;
    version.status.success().then_some(found)
}

/// The only way out of the browser: a proxy on loopback that takes each
/// connection, notes its first line (`GET http://host/…`, `CONNECT
/// host:443`) and closes it. Every other name resolves to nothing.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let noted = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 256];
                let read =
                    tokio::time::timeout(Duration::from_secs(2), stream.read(&mut head)).await;
                let n = read.ok().and_then(Result::ok).unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n]);
                let first = line.lines().next().unwrap_or("(nothing)").to_owned();
                noted.lock().unwrap().push(first);
            }
        });
        Self { port, seen }
    }

    /// What was asked for that is not the browser's own housekeeping
    /// (component updates, sign-in: Google's hosts, which the page cannot
    /// name: it names no host at all).
    fn asked_by_pages(&self) -> Vec<String> {
        const BROWSER_OWN: [&str; 4] = [
            ".google.com",
            ".googleapis.com",
            ".gvt1.com",
            ".gstatic.com",
        ];
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                let target = line.split_whitespace().nth(1).unwrap_or("");
                let host = target
                    .trim_start_matches("http://")
                    .split(['/', ':'])
                    .next()
                    .unwrap_or("");
                !BROWSER_OWN.iter().any(|own| host.ends_with(own))
            })
            .cloned()
            .collect()
    }
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom`,
/// `--screenshot=…`), the network blocked but for `proxy`.
async fn browse(
    chromium: &Path,
    proxy: &Proxy,
    page: &Path,
    mode: &[&str],
) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--proxy-server=127.0.0.1:{}", proxy.port))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(mode)
        .arg(format!("file://{}", page.display()))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_PATIENCE, run)
        .await
        .expect("Chromium did not finish")
        .unwrap();
    assert!(
        output.status.success(),
        "Chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The share of pixels unlike the most common colour, and how many
/// colours there are, of an 8-bit PNG.
fn ink(png_file: &Path) -> (f64, usize) {
    let file = std::io::BufReader::new(std::fs::File::open(png_file).unwrap());
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for pixel in pixels[..info.buffer_size()].chunks_exact(channels) {
        *counts.entry(pixel).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let background = counts.values().max().copied().unwrap_or(0);
    (1.0 - background as f64 / total as f64, counts.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_in_headless_chromium_with_the_network_blocked() {
    let Some(chromium) = chromium().await else {
        eprintln!("SKIPPED: no chromium on this machine (`.ci/run` installs Debian's `chromium`)");
        return;
    };
    let (world, daemon) = world_that_sent().await;
    let page = world.path("report.html");
    world.ok(&["report", "-o", page.to_str().unwrap()]).await;
    let report = report(&world, &[]).await;
    let proxy = Proxy::start().await;

    // The blockade is watched: a page that asks for something is seen.
    let canary = world.path("canary.html");
    std::fs::write(
        &canary,
        "<!DOCTYPE html><img src=\"http://canary.example/x.png\" alt=\"\">",
    )
    .unwrap();
    browse(&chromium, &proxy, &canary, &["--dump-dom"]).await;
    let asked = proxy.asked_by_pages();
    assert!(
        asked.iter().any(|l| l.contains("canary.example")),
        "{asked:?}"
    );
    proxy.seen.lock().unwrap().clear();

    let dom = browse(&chromium, &proxy, &page, &["--dump-dom"]).await;
    let dom = String::from_utf8(dom.stdout).unwrap();
    let senders: Vec<&str> = array(&report["purposes"])
        .iter()
        .filter(|p| p["sent"]["records"] != 0)
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(senders.len() >= 2, "{senders:?}");
    for id in &senders {
        assert!(dom.contains(&format!("<section id=\"p-{id}\">")), "{id}");
        assert!(
            dom.contains(&format!(
                "<title id=\"chart-{id}-t\">What {id} sent per day</title>"
            )),
            "{id}"
        );
    }
    for receipt in array(&report["receipts"]) {
        assert!(
            dom.contains(receipt["receipt_id"].as_str().unwrap()),
            "{receipt}"
        );
    }
    assert!(dom.contains("<svg class=\"chart\" viewBox="), "no chart");
    assert!(dom.contains("<rect class=\"bar rec\""), "no bar");
    assert!(
        dom.contains("class=\"mark ev-revoke\""),
        "the withdrawal is not marked"
    );
    assert!(
        dom.contains("<details><summary>The body as sent"),
        "no body"
    );

    let shot = world.path("report.png");
    let screenshot = format!("--screenshot={}", shot.display());
    browse(
        &chromium,
        &proxy,
        &page,
        &[&screenshot, "--window-size=1000,1400"],
    )
    .await;
    let (share, colours) = ink(&shot);
    assert!(
        share > 0.02 && colours > 8,
        "a blank page: {share:.4} of the pixels inked, {colours} colours"
    );
    assert_eq!(
        proxy.asked_by_pages(),
        Vec::<String>::new(),
        "the page asked for something"
    );
    daemon.terminate().await;
}
