//! When to send, so that a fleet never falls into step: pure functions of
//! time, the installation and the receiver's answers, shared by the daemon
//! and by the fleet simulation (`examples/fleet.rs`), which runs these very
//! functions in virtual time.
//!
//! - Every periodic schedule (collections, KSN windows, uploads,
//!   housekeeping) runs on slots of its period shifted by a per-installation
//!   phase ([`Jitter::phase`], derived from the installation id): a restart
//!   or an outage does not move an agent's slots, and a fleet's slots are
//!   spread evenly over the period.
//! - A failed attempt waits an exponential backoff with "equal jitter", the
//!   random half drawn from the installation and the attempt
//!   ([`Jitter::unit`]), so agents that failed together come back spread
//!   over the backoff window.
//! - A `Retry-After`, on any answer, is a floor: the wait is spread over
//!   `[Retry-After, 2 × Retry-After)`, so a fleet told to come back in ten
//!   minutes does not come back in one second.
//! - Every attempt, first or retry, falls on one of the installation's
//!   upload slots ([`next_attempt`]): no agent tries more often than once
//!   an interval, so an outage causes no retry storm.
//! - The receiver's `Consentry-Upload-Interval` header sets the interval
//!   between uploads, within `[upload] interval_min` and `interval_max`;
//!   while it is set, even a full batch waits for the next slot.

use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::policy::{RETRY_AFTER_CAP, Refusal, RetryPolicy, UploadResult};
use super::transport::Pacing;

/// A per-installation source of spread: the same installation always gets
/// the same phase and the same jitter for the same attempt; two
/// installations are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter(u64);

/// Salts that keep one schedule's draws apart from another's.
pub mod salt {
    pub const UPLOAD: u64 = 1;
    pub const COLLECT: u64 = 2;
    pub const KSN_WINDOW: u64 = 3;
    pub const HOUSEKEEPING: u64 = 4;
    /// Retries use `RETRY + attempt`.
    pub const RETRY: u64 = 1 << 32;
}

impl Jitter {
    /// The jitter of installation `id` (its SHA-256, so ids that differ in
    /// one bit are unrelated).
    pub fn of(id: &Uuid) -> Self {
        let digest = Sha256::digest(id.as_bytes());
        Self(u64::from_le_bytes(
            digest[..8].try_into().expect("8 bytes of a digest"),
        ))
    }

    /// A seed as it is (simulations).
    pub fn from_seed(seed: u64) -> Self {
        Self(seed)
    }

    /// A number in [0, 1), fixed for this installation and `salt`.
    pub fn unit(&self, salt: u64) -> f64 {
        // splitmix64: a well-mixed 64-bit value per (seed, salt).
        let mut z = self.0 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// This installation's offset within `period` for schedule `salt`.
    pub fn phase(&self, period: Duration, salt: u64) -> Duration {
        period.mul_f64(self.unit(salt))
    }

    /// How long from `now` (time since the UNIX epoch, or any fixed
    /// origin the fleet shares) until this installation's next slot of
    /// `period` for schedule `salt`: never zero, at most `period`.
    pub fn until_next_slot(&self, now: Duration, period: Duration, salt: u64) -> Duration {
        until_next_slot(now, period, self.phase(period, salt))
    }
}

/// How long from `now` until the next moment after it that is `phase` past
/// a multiple of `period` (in (0, period]).
pub fn until_next_slot(now: Duration, period: Duration, phase: Duration) -> Duration {
    let period_ns = period.as_nanos().max(1);
    let into = (now.as_nanos() + period_ns - phase.as_nanos() % period_ns) % period_ns;
    Duration::from_nanos((period_ns - into) as u64)
}

/// When an agent tries next, as a time since the UNIX epoch: at its first
/// upload slot of `interval` after `now`, or, when it must wait (a backoff, a
/// `Retry-After`: `not_before`), its first slot after the wait. Every
/// attempt, first or retry, falls on the installation's own slots: a fleet
/// that failed together stays spread by its phases, and no agent tries
/// more often than once an interval, however short its backoff (an outage
/// makes no retry storm). A wait already past counts from `now`, so a queue
/// that cannot be sent never spins.
pub fn next_attempt(
    jitter: &Jitter,
    interval: Duration,
    now: Duration,
    not_before: Option<Duration>,
) -> Duration {
    let from = not_before.filter(|t| *t > now).unwrap_or(now);
    from + jitter.until_next_slot(from, interval, salt::UPLOAD)
}

/// The bounds a receiver's upload interval is held within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalBounds {
    pub min: Duration,
    pub max: Duration,
}

/// One agent's upload pace: failures in a row, the server's interval, and
/// what they mean for the next attempt.
#[derive(Debug, Clone)]
pub struct Pace {
    policy: RetryPolicy,
    bounds: IntervalBounds,
    /// `batch_max_delay`: the interval when the receiver sets none.
    base: Duration,
    /// The receiver's, within `bounds`.
    server_interval: Option<Duration>,
    failures: u32,
    /// Attempts so far (the salt of each retry's jitter).
    attempts: u64,
}

impl Pace {
    pub fn new(policy: RetryPolicy, base: Duration, bounds: IntervalBounds) -> Self {
        Self {
            policy,
            bounds,
            base,
            server_interval: None,
            failures: 0,
            attempts: 0,
        }
    }

    /// New settings (a reload); failures so far still count.
    pub fn reconfigure(&mut self, policy: RetryPolicy, base: Duration, bounds: IntervalBounds) {
        self.policy = policy;
        self.base = base;
        self.bounds = bounds;
        self.server_interval = self
            .server_interval
            .map(|i| i.clamp(bounds.min, bounds.max));
    }

    /// The interval between regular uploads now.
    pub fn interval(&self) -> Duration {
        self.server_interval.unwrap_or(self.base)
    }

    /// Whether the receiver has set the interval (a full batch then waits
    /// for its slot).
    pub fn is_slowed(&self) -> bool {
        self.server_interval.is_some()
    }

    /// Failed attempts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Notes an attempt that came to `result`, with the answer's `pacing`;
    /// returns how long nothing more may be sent (`None`: no wait beyond
    /// the regular slots).
    pub fn after(
        &mut self,
        jitter: &Jitter,
        result: &UploadResult,
        pacing: Pacing,
    ) -> Option<Duration> {
        self.attempts += 1;
        if let Some(interval) = pacing.upload_interval {
            self.server_interval = Some(interval.clamp(self.bounds.min, self.bounds.max));
        }
        let spread = jitter.unit(salt::RETRY + self.attempts);
        let asked = pacing
            .retry_after
            .filter(|wait| !wait.is_zero())
            .map(|wait| {
                wait.min(RETRY_AFTER_CAP)
                    .mul_f64(1.0 + spread)
                    .min(RETRY_AFTER_CAP)
            });
        match result {
            UploadResult::Accepted { .. } => {
                self.failures = 0;
                asked
            }
            // A refusal of the content, not of the agent: the batch is sent
            // again in halves, or its record dead-lettered, at once.
            UploadResult::Refused { status, .. }
                if Refusal::of(*status, 2) != Refusal::RetryLater =>
            {
                asked
            }
            UploadResult::Retryable { .. } | UploadResult::Refused { .. } => {
                self.failures = self.failures.saturating_add(1);
                let backoff = match result {
                    UploadResult::Refused { .. } => self.policy.max,
                    _ => self.policy.backoff(self.failures, spread),
                };
                Some(asked.map_or(backoff, |asked| asked.max(backoff)))
            }
        }
    }

    /// A failure with no answer to read (the store, say).
    pub fn failed(&mut self, jitter: &Jitter) -> Duration {
        let result = UploadResult::Retryable {
            status: None,
            retry_after: None,
            detail: String::new(),
        };
        self.after(jitter, &result, Pacing::default())
            .expect("a failure always waits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: RetryPolicy = RetryPolicy {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(900),
    };
    const BOUNDS: IntervalBounds = IntervalBounds {
        min: Duration::from_secs(10),
        max: Duration::from_secs(3600),
    };

    fn pace() -> Pace {
        Pace::new(POLICY, Duration::from_secs(60), BOUNDS)
    }

    fn status(code: u16, retry_after: Option<u64>) -> (UploadResult, Pacing) {
        let retry_after = retry_after.map(Duration::from_secs);
        (
            UploadResult::from_status(code, retry_after),
            Pacing {
                retry_after,
                upload_interval: None,
            },
        )
    }

    #[test]
    fn an_installation_keeps_its_phase_and_a_fleet_spreads_over_the_period() {
        let period = Duration::from_secs(60);
        let one = Jitter::of(&Uuid::from_u128(1));
        assert_eq!(
            one.phase(period, salt::UPLOAD),
            Jitter::of(&Uuid::from_u128(1)).phase(period, salt::UPLOAD)
        );
        // Whenever it starts, its slots are the same moments.
        for start in [0u64, 7, 59, 3601] {
            let now = Duration::from_secs(1_795_687_200 + start);
            let next = now + one.until_next_slot(now, period, salt::UPLOAD);
            let into = next.as_nanos() % period.as_nanos();
            assert_eq!(
                into,
                one.phase(period, salt::UPLOAD).as_nanos() % period.as_nanos()
            );
        }
        // 60,000 installations over 60 one-second bins: none far from 1,000.
        let mut bins = [0u32; 60];
        for n in 0..60_000u128 {
            let phase = Jitter::of(&Uuid::from_u128(n)).phase(period, salt::UPLOAD);
            bins[phase.as_secs() as usize] += 1;
        }
        let (min, max) = (bins.iter().min().unwrap(), bins.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "{bins:?}");
    }

    #[test]
    fn a_slot_is_never_now_and_never_more_than_a_period_away() {
        let period = Duration::from_secs(10);
        assert_eq!(
            until_next_slot(Duration::from_secs(20), period, Duration::ZERO),
            period
        );
        assert_eq!(
            until_next_slot(Duration::from_secs(20), period, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            until_next_slot(Duration::from_secs(24), period, Duration::from_secs(3)),
            Duration::from_secs(9)
        );
    }

    #[test]
    fn every_attempt_falls_on_a_slot_after_any_wait() {
        let jitter = Jitter::from_seed(11);
        let interval = Duration::from_secs(60);
        let phase = jitter.phase(interval, salt::UPLOAD).as_nanos();
        let now = Duration::from_secs(1_795_687_200);
        let on_slot = |t: Duration| t.as_nanos() % interval.as_nanos() == phase;
        // No wait, a wait already past: the next slot, never now.
        for not_before in [None, Some(now - Duration::from_secs(1))] {
            let next = next_attempt(&jitter, interval, now, not_before);
            assert!(on_slot(next) && next > now && next <= now + interval);
        }
        // A short backoff still waits for the slot; a long one, for the
        // first slot after it.
        for wait in [3, 59, 61, 900] {
            let not_before = now + Duration::from_secs(wait);
            let next = next_attempt(&jitter, interval, now, Some(not_before));
            assert!(on_slot(next) && next > not_before && next <= not_before + interval);
        }
    }

    #[test]
    fn retry_after_is_a_floor_spread_over_twice_its_length() {
        let mut waits = Vec::new();
        for n in 0..1000u128 {
            let jitter = Jitter::of(&Uuid::from_u128(n));
            let (result, pacing) = status(429, Some(600));
            waits.push(pace().after(&jitter, &result, pacing).unwrap());
        }
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_secs(600) && *w < Duration::from_secs(1200))
        );
        let early = waits
            .iter()
            .filter(|w| **w < Duration::from_secs(900))
            .count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
        // On a 2xx too.
        let (result, pacing) = status(200, Some(30));
        let wait = pace()
            .after(&Jitter::from_seed(9), &result, pacing)
            .unwrap();
        assert!(wait >= Duration::from_secs(30));
        let (result, pacing) = status(200, None);
        assert_eq!(pace().after(&Jitter::from_seed(9), &result, pacing), None);
    }

    #[test]
    fn the_receiver_sets_the_interval_within_bounds() {
        let mut pace = pace();
        let jitter = Jitter::from_seed(1);
        let (result, _) = status(200, None);
        for (asked, got) in [(600, 600), (1, 10), (86_400, 3600)] {
            let pacing = Pacing {
                retry_after: None,
                upload_interval: Some(Duration::from_secs(asked)),
            };
            pace.after(&jitter, &result, pacing);
            assert_eq!(pace.interval(), Duration::from_secs(got));
            assert!(pace.is_slowed());
        }
    }

    #[test]
    fn failures_back_off_and_a_success_resets() {
        let mut pace = pace();
        let jitter = Jitter::from_seed(3);
        let (failed, pacing) = status(503, None);
        let first = pace.after(&jitter, &failed, pacing).unwrap();
        assert!(first >= Duration::from_millis(2500) && first <= Duration::from_secs(5));
        for _ in 0..20 {
            pace.after(&jitter, &failed, pacing);
        }
        let late = pace.after(&jitter, &failed, pacing).unwrap();
        assert!(late >= Duration::from_secs(450) && late <= Duration::from_secs(900));
        let (ok, pacing) = status(200, None);
        assert_eq!(pace.after(&jitter, &ok, pacing), None);
        assert_eq!(pace.failures(), 0);
        let (refused, pacing) = status(404, None);
        assert_eq!(pace.after(&jitter, &refused, pacing), Some(POLICY.max));
        // A refused record is no reason to wait.
        let (content, pacing) = status(422, None);
        assert_eq!(pace.after(&jitter, &content, pacing), None);
    }

    proptest! {
        #[test]
        fn units_are_in_range(seed: u64, salt: u64) {
            let unit = Jitter::from_seed(seed).unit(salt);
            prop_assert!((0.0..1.0).contains(&unit));
        }

        #[test]
        fn the_next_slot_is_in_range_and_on_phase(now in 0u64..10_000_000_000, period in 1u64..100_000, phase in 0u64..100_000) {
            let (now, period, phase) = (Duration::from_millis(now), Duration::from_millis(period), Duration::from_millis(phase));
            let wait = until_next_slot(now, period, phase);
            prop_assert!(!wait.is_zero() && wait <= period);
            prop_assert_eq!((now + wait).as_nanos() % period.as_nanos(), phase.as_nanos() % period.as_nanos());
        }
    }
}
