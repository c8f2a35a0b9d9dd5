//! Upload policy, apart from the transport: how a response is classified and
//! how long to wait before the next attempt. Pure functions, tested without
//! a network or a runtime.

use std::time::Duration;

/// What one upload attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadResult {
    /// 2xx: the receiver has the batch; it leaves the queue.
    Accepted { status: u16 },
    /// Worth retrying as is: 5xx, 408, 429, or no response at all.
    Retryable {
        status: Option<u16>,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// The receiver refused this batch (other 4xx). It stays queued, as the
    /// receiver may be fixed, but attempts slow to the longest wait.
    Refused { status: u16, detail: String },
}

impl UploadResult {
    /// Classifies an HTTP status. `retry_after` is the parsed header, if any.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            200..=299 => UploadResult::Accepted { status },
            408 | 429 | 500..=599 => UploadResult::Retryable {
                status: Some(status),
                retry_after,
                detail: format!("receiver answered {status}"),
            },
            _ => UploadResult::Refused {
                status,
                detail: format!("receiver refused the batch with {status}"),
            },
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            UploadResult::Accepted { status } | UploadResult::Refused { status, .. } => {
                Some(*status)
            }
            UploadResult::Retryable { status, .. } => *status,
        }
    }

    /// A short description for logs and the audit trail.
    pub fn detail(&self) -> String {
        match self {
            UploadResult::Accepted { status } => format!("accepted with {status}"),
            UploadResult::Retryable { detail, .. } | UploadResult::Refused { detail, .. } => {
                detail.clone()
            }
        }
    }
}

/// What to do with a batch the receiver refused (a 4xx other than 408 and
/// 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The endpoint or the credentials are wrong, not the records (401,
    /// 403, 404, 405, 407, 410, 421): retry later with backoff, and never
    /// dead-letter a whole queue for a configuration mistake.
    RetryLater,
    /// Send the batch again in halves, to find the record refused.
    Split,
    /// This one record is refused: move it to the dead-letter table.
    DeadLetter,
}

impl Refusal {
    /// The decision for a refusal with `status` of a batch of `records`.
    pub fn of(status: u16, records: usize) -> Self {
        match status {
            401 | 403 | 404 | 405 | 407 | 410 | 421 => Refusal::RetryLater,
            _ if records > 1 => Refusal::Split,
            _ => Refusal::DeadLetter,
        }
    }
}

/// The waits between attempts, from `[upload]` in the agent config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

/// A `Retry-After` longer than this is not believed: a misconfigured
/// receiver must not silence an agent for days.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(6 * 3600);

impl RetryPolicy {
    /// The wait after `failures` consecutive failures (1 = the first):
    /// exponential from `initial`, capped at `max`, with "equal jitter"
    /// (half fixed, half random) so a fleet that failed together does not
    /// retry together. `unit` is a random number in [0, 1).
    pub fn backoff(&self, failures: u32, unit: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The wait after `result`, given `failures` so far (including this one).
    pub fn wait_after(&self, result: &UploadResult, failures: u32, unit: f64) -> Duration {
        match result {
            UploadResult::Accepted { .. } => Duration::ZERO,
            // The backoff, but never less than the server asked for.
            UploadResult::Retryable {
                retry_after: Some(wait),
                ..
            } => self
                .backoff(failures, unit)
                .max((*wait).min(RETRY_AFTER_CAP)),
            UploadResult::Retryable { .. } => self.backoff(failures, unit),
            UploadResult::Refused { .. } => self.max,
        }
    }
}

/// Parses `Retry-After`: delay seconds, or an HTTP date (how long until
/// then by this machine's clock; a date already past means no wait).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, std::time::SystemTime::now())
}

/// [`parse_retry_after`] as of `now`.
pub fn parse_retry_after_at(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Thu, 26 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after_at(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after_at("Thu, 26 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after_at("Wed, 25 Nov 2026 10:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past"
        );
        assert_eq!(parse_retry_after_at("soon", now), None);
        assert_eq!(parse_retry_after_at("-5", now), None);
    }

    #[test]
    fn the_wait_is_at_least_what_the_server_asked() {
        let asked = |secs| UploadResult::Retryable {
            status: Some(429),
            retry_after: Some(Duration::from_secs(secs)),
            detail: String::new(),
        };
        // Longer than the backoff: the server's wait.
        assert_eq!(
            POLICY.wait_after(&asked(60), 1, 1.0),
            Duration::from_secs(60)
        );
        // Shorter: the backoff still applies.
        assert!(POLICY.wait_after(&asked(1), 8, 1.0) >= Duration::from_secs(60));
    }

    #[test]
    fn refusals_split_down_to_the_record_but_never_for_a_wrong_endpoint() {
        assert_eq!(Refusal::of(400, 500), Refusal::Split);
        assert_eq!(Refusal::of(413, 2), Refusal::Split);
        assert_eq!(Refusal::of(422, 1), Refusal::DeadLetter);
        assert_eq!(Refusal::of(413, 1), Refusal::DeadLetter);
        for status in [401, 403, 404, 410] {
            assert_eq!(Refusal::of(status, 1), Refusal::RetryLater);
            assert_eq!(Refusal::of(status, 500), Refusal::RetryLater);
        }
    }
    use proptest::prelude::*;

    const POLICY: RetryPolicy = RetryPolicy {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(900),
    };

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            UploadResult::from_status(204, None),
            UploadResult::Accepted { .. }
        ));
        for status in [408, 429, 500, 503] {
            assert!(matches!(
                UploadResult::from_status(status, None),
                UploadResult::Retryable { .. }
            ));
        }
        for status in [400, 401, 404, 413] {
            assert!(matches!(
                UploadResult::from_status(status, None),
                UploadResult::Refused { .. }
            ));
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(POLICY.backoff(1, 1.0), Duration::from_secs(5));
        assert_eq!(POLICY.backoff(2, 1.0), Duration::from_secs(10));
        assert_eq!(POLICY.backoff(3, 0.0), Duration::from_secs(10));
        assert_eq!(POLICY.backoff(40, 1.0), Duration::from_secs(900));
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let result = UploadResult::from_status(503, parse_retry_after(" 120 "));
        assert_eq!(POLICY.wait_after(&result, 1, 0.5), Duration::from_secs(120));
        let result = UploadResult::from_status(503, Some(Duration::from_secs(10 * 24 * 3600)));
        assert_eq!(POLICY.wait_after(&result, 1, 0.5), RETRY_AFTER_CAP);
    }

    proptest! {
        #[test]
        fn backoff_stays_within_half_and_whole_of_its_ceiling(failures in 1u32..100, unit in 0.0f64..1.0) {
            let wait = POLICY.backoff(failures, unit);
            prop_assert!(wait <= POLICY.max);
            prop_assert!(wait >= POLICY.initial / 2);
        }
    }
}
