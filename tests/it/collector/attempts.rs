//! The agent's upload attempts, read from its own JSON log
//! (`--log-format json`): one line per batch sent, `batch delivered` or
//! `batch not delivered; it stays queued`, with the time it was written
//! (microseconds), which no Collector records for a request it refused or
//! never saw.

use std::time::{Duration, SystemTime};

use consentry::upload::RetryPolicy;

/// One attempt: when its answer (or failure) was logged, and what it was.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: SystemTime,
    /// How long before `at` the batch was put on the wire (`sent_us_ago`).
    pub sent_ago: Duration,
    pub delivered: bool,
    /// The failure in words (`receiver answered 503`, a connection error).
    pub error: String,
}

/// Every attempt in `log`, oldest first.
pub fn read(log: &str) -> Vec<Attempt> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| {
            let delivered = match line["fields"]["message"].as_str()? {
                "batch delivered" => true,
                "batch not delivered; it stays queued" => false,
                _ => return None,
            };
            let at = humantime::parse_rfc3339(line["timestamp"].as_str()?).ok()?;
            let sent_ago = Duration::from_micros(line["fields"]["sent_us_ago"].as_u64()?);
            let error = line["fields"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Some(Attempt {
                at,
                sent_ago,
                delivered,
                error,
            })
        })
        .collect()
}

/// How much sooner than its wait an attempt may be logged: a wait counts
/// from the answer, a log line is written after the audit trail's commit.
const LOGGED_LATE: Duration = Duration::from_millis(50);

impl Attempt {
    /// When the batch was put on the wire.
    pub fn sent(&self) -> SystemTime {
        self.at - self.sent_ago
    }
}

/// After `k` failures in a row, the next attempt came no sooner than the
/// shortest backoff `policy` allows for `k` (its equal-jitter low end). An
/// attempt put on the wire before the failure was logged (the other of two
/// batches on the wire) was not sent after it, and is not held to it.
pub fn assert_waits_kept(attempts: &[Attempt], policy: &RetryPolicy) {
    let mut failures = 0u32;
    for pair in attempts.windows(2) {
        if pair[0].delivered {
            failures = 0;
            continue;
        }
        failures += 1;
        if pair[1].sent() < pair[0].at {
            continue;
        }
        let gap = pair[1].at.duration_since(pair[0].at).unwrap_or_default();
        let shortest = policy.backoff(failures, 0.0);
        assert!(
            gap + LOGGED_LATE >= shortest,
            "attempt after {failures} failures came {gap:?} after the last, sooner than {shortest:?}"
        );
    }
}

/// The waits between consecutive attempts, in milliseconds.
pub fn gaps(attempts: &[&Attempt]) -> Vec<u128> {
    attempts
        .windows(2)
        .map(|pair| {
            pair[1]
                .at
                .duration_since(pair[0].at)
                .unwrap_or_default()
                .as_millis()
        })
        .collect()
}

/// The most attempts whose answers were logged within one second.
pub fn peak_per_second<'a>(attempts: impl Iterator<Item = &'a Attempt>) -> usize {
    let times: Vec<SystemTime> = attempts.map(|a| a.at).collect();
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]).unwrap_or_default() >= Duration::from_secs(1)
        {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}
