//! The mixed outage: a receiver that goes through 500s, 429 with
//! `Retry-After`, a stall longer than the agent's request timeout,
//! connection resets and TLS handshakes that fail, phase after phase,
//! while ingest load keeps arriving; then it recovers. Measured and
//! checked:
//!
//! - nothing acknowledged is lost, and a record that arrived twice did so
//!   under one batch id (the stall phase answers 200 after the agent gave
//!   up: it stored a batch whose answer never arrived);
//! - the attempts during the outage stay within what the configured
//!   `RetryPolicy` allows: attempt `k + 1` comes at least
//!   `backoff(k, 0)` after attempt `k`, so `n` attempts take at least the
//!   sum of the first `n - 1` shortest waits;
//! - an attempt answered 429 with `Retry-After: R` is followed by the next
//!   no sooner than `R` later;
//! - the daemon's resident memory stays bounded and does not grow with
//!   the outage.
//!
//! `CONSENTRY_FAULT_SECONDS` sets the outage's length (20 s by default,
//! what CI runs); `scripts/faults.sh` runs it for minutes.

use std::time::{Duration, Instant};

use consentry::upload::RetryPolicy;

use super::ledger::{Ledger, assert_conserved};
use crate::support::{World, eventually};

/// The policy the test configures (`retry_initial`, `retry_max`).
const POLICY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(2),
};
/// The agent's request timeout (`timeout`): shorter than the stall.
const TIMEOUT: Duration = Duration::from_secs(1);
/// What a 429 asks for.
const RETRY_AFTER_SECS: u64 = 3;
/// How long each phase lasts.
const PHASE: Duration = Duration::from_secs(2);
/// Ingest load: this many install tasks every [`LOAD_EVERY`].
const LOAD_LINES: u64 = 100;
const LOAD_EVERY: Duration = Duration::from_millis(250);
/// Resident memory the daemon must stay under, whatever the outage.
const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// How the receiver fails in one phase. In this order, a keep-alive
/// connection never carries one phase's fault into the next: after the
/// HTTP answers (500, 429) comes the stall, whose timed-out connections
/// the agent drops, so the resets and the failing handshakes meet new
/// connections.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Status500,
    TooManyRequests,
    Stall,
    Reset,
    UntrustedCertificate,
}

const PHASES: [Phase; 5] = [
    Phase::Status500,
    Phase::TooManyRequests,
    Phase::Stall,
    Phase::Reset,
    Phase::UntrustedCertificate,
];

/// Switches the receiver from `from` to `phase`. A stalled request must
/// not be answered while the agent still waits for it (that would be a
/// slow success, not a stall): the hang is let go only once the agent's
/// timeout has passed, after the new phase's fault is in place.
async fn enter(world: &World, from: Option<Phase>, phase: Phase) {
    let receiver = &world.receiver;
    receiver.set_reset(false);
    receiver.set_untrusted_certificate(false).unwrap();
    receiver.set_retry_after(None);
    receiver.set_status(503);
    match phase {
        Phase::Status500 => receiver.set_status(500),
        Phase::TooManyRequests => {
            receiver.set_status(429);
            receiver.set_retry_after(Some(&RETRY_AFTER_SECS.to_string()));
        }
        // Stored, but the answer never arrives in time.
        Phase::Stall => {
            receiver.set_status(200);
            receiver.set_hang(true);
        }
        Phase::Reset => receiver.set_reset(true),
        Phase::UntrustedCertificate => receiver.set_untrusted_certificate(true).unwrap(),
    }
    if matches!(from, Some(Phase::Stall)) && !matches!(phase, Phase::Stall) {
        tokio::time::sleep(TIMEOUT + Duration::from_millis(250)).await;
        receiver.set_hang(false);
    }
}

/// The most attempts `policy` allows within `window`, starting from no
/// failure: the first is free, each next one waits at least the shortest
/// backoff after the failures so far.
pub fn most_attempts(policy: &RetryPolicy, window: Duration) -> u64 {
    let mut spent = Duration::ZERO;
    let mut attempts = 1;
    loop {
        spent += policy.backoff(attempts as u32, 0.0);
        if spent > window {
            return attempts;
        }
        attempts += 1;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn outage_length() -> Duration {
    let seconds = std::env::var("CONSENTRY_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_outage_loses_nothing_and_keeps_to_the_backoff() {
    let world = World::with_eula_answering(200).await;
    let text = world
        .config_text("batch_max_records = 2000")
        .replace(
            "timeout = \"5s\"",
            &format!("timeout = \"{}ms\"", TIMEOUT.as_millis()),
        )
        .replace("retry_max = \"1s\"", "retry_max = \"2s\"");
    world.write_config(&text);
    // Minutes of failed attempts log more than a pipe holds.
    let mut daemon = world.spawn_daemon_with(&[("CONSENTRY_LOG", "info")]).await;
    daemon.drain_log();
    let pid = daemon.pid();
    let socket = world.ingest_socket();
    let mut ledger = Ledger::default();

    // Delivery works before the outage.
    assert!(ledger.send(&socket, LOAD_LINES).await);
    world
        .status_until("delivered the first records", |s| {
            s["daemon"]["records_queued"] == 0
        })
        .await;

    let length = outage_length();
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut phase = 0;
    enter(&world, None, PHASES[0]).await;
    let mut phase_ends = started + PHASE;
    while started.elapsed() < length {
        if Instant::now() >= phase_ends {
            phase += 1;
            let from = PHASES[(phase - 1) % PHASES.len()];
            enter(&world, Some(from), PHASES[phase % PHASES.len()]).await;
            phase_ends += PHASE;
            rss.push(rss_kib(pid));
        }
        assert!(
            ledger.send(&socket, LOAD_LINES).await,
            "ingest refused during the outage: {:?}",
            ledger.first_refusal
        );
        tokio::time::sleep(LOAD_EVERY).await;
    }
    enter(&world, Some(PHASES[phase % PHASES.len()]), Phase::Status500).await;
    let recovered = Instant::now();
    world.receiver.set_status(200);
    rss.push(rss_kib(pid));

    eventually(
        "drained the queue",
        Duration::from_secs(60) + length / 2,
        async || match world.records_queued().await {
            0 => Ok(()),
            queued => Err(format!("{queued} records queued")),
        },
    )
    .await;
    let drained = recovered.elapsed();
    let conservation = assert_conserved(&world, &ledger, "mixed outage");

    // The request rate during the outage, against the policy's bound.
    let attempts: Vec<Instant> = world
        .receiver
        .attempts()
        .into_iter()
        .filter(|t| *t >= started && *t < recovered)
        .collect();
    let window = recovered - started;
    let bound = most_attempts(&POLICY, window);
    let offsets: Vec<String> = attempts
        .iter()
        .map(|t| format!("{:.2}", (*t - started).as_secs_f64()))
        .collect();
    assert!(
        attempts.len() as u64 <= bound,
        "{} attempts in {window:?}, more than the policy allows ({bound}); at {offsets:?} s",
        attempts.len()
    );
    // Some of each fault was met.
    assert!(attempts.len() >= 5, "only {} attempts", attempts.len());

    // Retry-After honoured: nothing was sent after a 429 until it passed.
    // Two batches may be on the wire at once, so one other batch, sent
    // before the 429 was read, may come meanwhile; never the refused one.
    let all = world.receiver.attempts();
    let requests = world.receiver.requests();
    let mut refused = 0;
    for request in &requests {
        if request.status != 429 {
            continue;
        }
        refused += 1;
        let waited =
            request.received_at + Duration::from_secs(RETRY_AFTER_SECS) - Duration::from_millis(50);
        let meanwhile = all
            .iter()
            .filter(|t| **t > request.received_at && **t < waited)
            .count();
        assert!(
            meanwhile <= 1,
            "{meanwhile} attempts within a 429's {RETRY_AFTER_SECS} s"
        );
        let again = requests.iter().any(|r| {
            r.idempotency_key == request.idempotency_key
                && r.received_at > request.received_at
                && r.received_at < waited
        });
        assert!(
            !again,
            "the refused batch was retried within its Retry-After"
        );
    }
    assert!(refused > 0, "no 429 was answered");

    // Memory: bounded, and not growing with the outage.
    let first = rss[0];
    let peak = *rss.iter().max().unwrap();
    let last = *rss.last().unwrap();
    assert!(peak < RSS_LIMIT_KIB, "RSS reached {peak} KiB");
    assert!(
        last <= first + first / 2 + 16 * 1024,
        "RSS grew from {first} KiB to {last} KiB over the outage"
    );
    eprintln!(
        "faults: outage {:.0} s, {} phases; {} records acknowledged, {} lost, {} delivered under two batch ids, {} resent under the same id; {} attempts (bound {bound}, {:.2}/s); {refused} answered 429, each retried no sooner than its Retry-After; RSS {first}..{peak} KiB (last {last}); drained in {:.1} s",
        window.as_secs_f64(),
        phase + 1,
        conservation.acked,
        conservation.lost,
        conservation.duplicated_across_batches,
        conservation.resent_same_batch,
        attempts.len(),
        attempts.len() as f64 / window.as_secs_f64(),
        drained.as_secs_f64(),
    );
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn the_bound_follows_the_policy() {
    // 0.1 + 0.2 + 0.4 + 0.8 s, then 1 s each (half of retry_max).
    assert_eq!(most_attempts(&POLICY, Duration::from_millis(1400)), 4);
    assert_eq!(most_attempts(&POLICY, Duration::from_millis(1500)), 5);
    assert_eq!(most_attempts(&POLICY, Duration::from_millis(10_500)), 14);
}
