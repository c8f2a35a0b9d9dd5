//! A fleet of agents against one receiver, in virtual time: does the fleet
//! fall into step after an outage, and does it slow down when asked?
//!
//! ```text
//! cargo run --release --example fleet -- --agents 1000000 --minutes 60 --outage 10
//! ```
//!
//! Every agent decides exactly as the daemon's uploader task does, through
//! the same functions (`consentry::upload::schedule`: the per-installation
//! `Jitter` and its slots, `Pace::after` on every answer, `next_attempt`;
//! `UploadResult::classify` for the status, with the OTLP/HTTP rules):
//! only the clock is virtual and the network a model. An agent's records
//! arrive at a steady rate; at each wake-up it sends its queue in batches
//! of `batch_max_records` until one fails or the queue is empty.
//!
//! The receiver model serves at most `--capacity` requests a second
//! (default: 1.5 × the fleet's steady rate) and is down (connection
//! refused) for `--outage` minutes from `--outage-at`. Above 90 % of its
//! capacity in a second it starts asking the fleet to slow down: every
//! answer from then on carries `Consentry-Upload-Interval` (the interval at
//! which the fleet would use 70 % of the capacity), and requests beyond the
//! capacity in a second are answered 429 with that many seconds of
//! `Retry-After`.
//!
//! It prints the request rate per second (peak, mean, p99), the peak after
//! the outage against the steady rate, the most requests in any second once
//! the receiver asked the fleet to slow down against the capacity, the time
//! to drain after the outage, and how many records were delayed.

use std::time::{Duration, Instant};

use consentry::upload::RetryPolicy;
use consentry::upload::policy::{Protocol, UploadResult};
use consentry::upload::schedule::{IntervalBounds, Jitter, Pace, next_attempt, salt};
use consentry::upload::transport::Pacing;
use uuid::Uuid;

/// The agent's defaults (`config/consentry.toml`).
const BATCH_MAX_DELAY: Duration = Duration::from_secs(60);
const BATCH_MAX_RECORDS: u64 = 500;
const POLICY: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(5),
    max: Duration::from_secs(15 * 60),
};
const BOUNDS: IntervalBounds = IntervalBounds {
    min: Duration::from_secs(10),
    max: Duration::from_secs(3600),
};
/// Virtual time starts at a wall-clock moment, as slots are wall-clock
/// aligned (2026-11-26T10:00:00Z).
const EPOCH: Duration = Duration::from_secs(1_795_687_200);

struct Options {
    agents: u32,
    minutes: u64,
    outage: u64,
    outage_at: u64,
    capacity: Option<u64>,
    records_per_minute: f64,
    seed: u64,
}

fn options() -> Options {
    let mut options = Options {
        agents: 10_000,
        minutes: 60,
        outage: 10,
        outage_at: 10,
        capacity: None,
        records_per_minute: 1.0,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--agents" => options.agents = value().parse().expect("--agents N"),
            "--minutes" => options.minutes = value().parse().expect("--minutes N"),
            "--outage" => options.outage = value().parse().expect("--outage MINUTES"),
            "--outage-at" => options.outage_at = value().parse().expect("--outage-at MINUTE"),
            "--capacity" => {
                options.capacity = Some(value().parse().expect("--capacity PER_SECOND"))
            }
            "--records-per-minute" => {
                options.records_per_minute = value().parse().expect("--records-per-minute R")
            }
            "--seed" => options.seed = value().parse().expect("--seed N"),
            "--help" | "-h" => {
                println!(
                    "fleet [--agents N] [--minutes M] [--outage MINUTES] [--outage-at MINUTE] [--capacity PER_SECOND] [--records-per-minute R] [--seed N]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown option {other} (see --help)"),
        }
    }
    options
}

/// One agent: the daemon uploader's state, nothing else.
struct Agent {
    jitter: Jitter,
    pace: Pace,
    not_before: Option<Duration>,
    /// Records generated up to this moment are delivered.
    delivered_until: Duration,
    /// Whether it has been told to slow down.
    told: bool,
}

/// The receiver model.
struct Server {
    capacity: u64,
    down: std::ops::Range<Duration>,
    /// Once set, every answer carries this interval.
    asked: Option<(Duration, Duration)>,
    slow_interval: Duration,
    this_second: u64,
}

impl Server {
    fn answer(&mut self, now: Duration) -> (UploadResult, Pacing) {
        if self.down.contains(&now) {
            // Connection refused: no answer at all.
            let result = UploadResult::Retryable {
                status: None,
                retry_after: None,
                detail: String::new(),
            };
            return (result, Pacing::default());
        }
        self.this_second += 1;
        if self.asked.is_none() && self.this_second * 10 >= self.capacity * 9 {
            self.asked = Some((now, self.slow_interval));
        }
        let interval = self.asked.map(|(_, interval)| interval);
        if self.this_second > self.capacity {
            let retry_after = Some(self.slow_interval);
            let pacing = Pacing {
                retry_after,
                upload_interval: interval,
            };
            return (
                UploadResult::classify(Protocol::OtlpHttp, 429, retry_after),
                pacing,
            );
        }
        let pacing = Pacing {
            retry_after: None,
            upload_interval: interval,
        };
        (
            UploadResult::classify(Protocol::OtlpHttp, 200, None),
            pacing,
        )
    }
}

fn main() {
    let options = options();
    let started = Instant::now();
    let horizon = Duration::from_secs(options.minutes * 60);
    let steady = f64::from(options.agents) / BATCH_MAX_DELAY.as_secs_f64();
    let capacity = options.capacity.unwrap_or((steady * 1.5).ceil() as u64);
    let outage_start = Duration::from_secs(options.outage_at * 60);
    let outage_end = outage_start + Duration::from_secs(options.outage * 60);
    let mut server = Server {
        capacity,
        down: outage_start..outage_end,
        asked: None,
        slow_interval: Duration::from_secs(
            (f64::from(options.agents) / (0.7 * capacity as f64)).ceil() as u64,
        )
        .max(BATCH_MAX_DELAY),
        this_second: 0,
    };
    let per_record = Duration::from_secs_f64(60.0 / options.records_per_minute);

    // Each agent's installation id is random, as in the field (from
    // `--seed`, so a run can be repeated); its first wake-up is its first
    // slot after the simulation starts.
    let mut ids = fastrand::Rng::with_seed(options.seed);
    let mut agents: Vec<Agent> = (0..options.agents)
        .map(|_| Agent {
            jitter: Jitter::of(&Uuid::from_u128(ids.u128(..))),
            pace: Pace::new(POLICY, BATCH_MAX_DELAY, BOUNDS),
            not_before: None,
            delivered_until: Duration::ZERO,
            told: false,
        })
        .collect();
    // A calendar of wake-ups, one bucket per virtual second: (nanosecond
    // within it, agent).
    let seconds = horizon.as_secs() as usize;
    let mut calendar: Vec<Vec<(u32, u32)>> = vec![Vec::new(); seconds];
    let schedule = |calendar: &mut Vec<Vec<(u32, u32)>>, at: Duration, agent: u32| {
        if let Some(bucket) = calendar.get_mut(at.as_secs() as usize) {
            bucket.push((at.subsec_nanos(), agent));
        }
    };
    for (n, agent) in agents.iter().enumerate() {
        let first = agent
            .jitter
            .until_next_slot(EPOCH, BATCH_MAX_DELAY, salt::UPLOAD);
        schedule(&mut calendar, first, n as u32);
    }

    let mut rate = vec![0u64; seconds];
    let (mut records_sent, mut delayed) = (0u64, 0u64);
    let mut caught_up_at = None;
    let mut behind = 0u32;
    let (mut told, mut all_told_at) = (0u32, None);
    for second in 0..seconds {
        server.this_second = 0;
        if second as u64 == outage_end.as_secs() {
            // Every agent whose last delivery predates the end of the
            // outage is behind until it delivers again.
            behind = agents
                .iter()
                .filter(|a| a.delivered_until < outage_end)
                .count() as u32;
        }
        // A wake-up may schedule another within the same second: take the
        // bucket until it stays empty.
        loop {
            let mut bucket = std::mem::take(&mut calendar[second]);
            if bucket.is_empty() {
                break;
            }
            bucket.sort_unstable();
            for (nanos, n) in bucket {
                let now = Duration::new(second as u64, nanos);
                let agent = &mut agents[n as usize];
                let was_behind = agent.delivered_until < outage_end && now >= outage_end;
                // The queue: everything generated since the last delivery.
                let mut queued = ((now.as_secs_f64() - agent.delivered_until.as_secs_f64())
                    / per_record.as_secs_f64()) as u64;
                while queued > 0 {
                    rate[second] += 1;
                    let (result, pacing) = server.answer(now);
                    if pacing.upload_interval.is_some() && !agent.told {
                        agent.told = true;
                        told += 1;
                        if told == options.agents {
                            all_told_at = Some(now);
                        }
                    }
                    let wait = agent.pace.after(&agent.jitter, &result, pacing);
                    agent.not_before = wait.map(|w| now + w);
                    if !matches!(result, UploadResult::Accepted { .. }) {
                        break;
                    }
                    let batch = queued.min(BATCH_MAX_RECORDS);
                    queued -= batch;
                    records_sent += batch;
                    // Records older than one interval (plus its slot) were delayed.
                    let late_from = now.saturating_sub(BATCH_MAX_DELAY * 2);
                    if late_from > agent.delivered_until {
                        delayed += ((late_from - agent.delivered_until).as_secs_f64()
                            / per_record.as_secs_f64()) as u64;
                    }
                    if queued == 0 {
                        agent.delivered_until = now;
                    }
                    if wait.is_some() {
                        break;
                    }
                }
                if was_behind && behind > 0 && agent.delivered_until >= outage_end {
                    behind -= 1;
                    if behind == 0 {
                        caught_up_at = Some(now);
                    }
                }
                let next = next_attempt(
                    &agent.jitter,
                    agent.pace.interval(),
                    EPOCH + now,
                    agent.not_before.map(|t| EPOCH + t),
                );
                schedule(&mut calendar, next - EPOCH, n);
            }
        }
    }

    report(
        all_told_at,
        &options,
        &rate,
        steady,
        &server,
        outage_end,
        caught_up_at,
        records_sent,
        delayed,
    );
    eprintln!("simulated in {:.1} s", started.elapsed().as_secs_f64());
}

#[allow(clippy::too_many_arguments)]
fn report(
    all_told_at: Option<Duration>,
    options: &Options,
    rate: &[u64],
    steady: f64,
    server: &Server,
    outage_end: Duration,
    caught_up_at: Option<Duration>,
    records_sent: u64,
    delayed: u64,
) {
    let mut sorted = rate.to_vec();
    sorted.sort_unstable();
    let peak = *sorted.last().unwrap_or(&0);
    let mean = rate.iter().sum::<u64>() as f64 / rate.len().max(1) as f64;
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let after = &rate[(outage_end.as_secs() as usize).min(rate.len())..];
    let peak_after = after.iter().copied().max().unwrap_or(0);
    println!(
        "agents {}, {} min, outage {} min from minute {}, {} record(s)/min each, capacity {}/s, seed {}",
        options.agents,
        options.minutes,
        options.outage,
        options.outage_at,
        options.records_per_minute,
        server.capacity,
        options.seed
    );
    println!("steady rate (agents / batch_max_delay)  {steady:.0}/s");
    println!("requests per second: peak {peak}, mean {mean:.0}, p99 {p99}");
    println!(
        "peak / mean                              {:.2}",
        peak as f64 / mean
    );
    println!(
        "after the outage: peak {peak_after}/s = {:.2} x the steady rate",
        peak_after as f64 / steady
    );
    match server.asked {
        Some((at, interval)) => {
            let most_from = |t: Duration| {
                let from = (t.as_secs() as usize + 1).min(rate.len());
                rate[from..].iter().copied().max().unwrap_or(0)
            };
            println!(
                "asked to slow down at {:.0} s (interval {} s); in the next second on: at most {}/s",
                at.as_secs_f64(),
                interval.as_secs(),
                most_from(at)
            );
            match all_told_at {
                Some(told) => {
                    let most = most_from(told);
                    println!(
                        "every agent told by {:.0} s; from then on at most {most}/s, capacity {}/s: {}",
                        told.as_secs_f64(),
                        server.capacity,
                        if most <= server.capacity {
                            "within"
                        } else {
                            "EXCEEDED"
                        }
                    );
                }
                None => println!("not every agent was told within the run"),
            }
        }
        None => println!("never asked to slow down (the peak stayed below 90 % of capacity)"),
    }
    match caught_up_at {
        Some(at) => println!(
            "drained after the outage in {:.0} s",
            (at - outage_end).as_secs_f64()
        ),
        None => println!("not drained within the run"),
    }
    println!(
        "records delivered {records_sent}, delayed (older than two intervals on delivery) {delayed}"
    );
    // The minute-by-minute picture.
    println!("minute  mean/s  peak/s");
    for (minute, chunk) in rate.chunks(60).enumerate() {
        let sum: u64 = chunk.iter().sum();
        let peak = chunk.iter().copied().max().unwrap_or(0);
        println!(
            "{minute:>6}  {:>6.0}  {peak:>6}",
            sum as f64 / chunk.len() as f64
        );
    }
}
