//! Upload policy, apart from the transport: how a response is classified and
//! how long to wait before the next attempt. Pure functions, tested without
//! a network or a runtime.

use std::time::Duration;

use serde::Deserialize;

/// The wire format, and with it the rules for reading an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// consentry's own gzip JSON envelope (`docs/protocol.md`).
    #[default]
    ConsentryJson,
    /// OTLP/HTTP logs: an `ExportLogsServiceRequest`, protobuf, gzip.
    OtlpHttp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::ConsentryJson => "consentry-json",
            Protocol::OtlpHttp => "otlp-http",
        }
    }

    /// Whether an answer with `status` (not 2xx) is worth sending again as
    /// is. consentry's protocol: 408, 429 and any 5xx. OTLP/HTTP: only what
    /// its specification names retryable (429, 502, 503, 504); any other
    /// 4xx or 5xx must not be retried as is.
    pub fn is_retryable(self, status: u16) -> bool {
        match self {
            Protocol::ConsentryJson => matches!(status, 408 | 429 | 500..=599),
            Protocol::OtlpHttp => matches!(status, 429 | 502 | 503 | 504),
        }
    }
}

/// What one upload attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadResult {
    /// 2xx: the receiver has the batch; it leaves the queue. `rejected`:
    /// how many of its records the receiver said it did not take (an OTLP
    /// partial success), and why.
    Accepted {
        status: u16,
        rejected: Option<super::otlp::Rejected>,
    },
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
    /// Classifies an HTTP status by consentry's protocol. `retry_after` is
    /// the parsed header, if any.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        Self::classify(Protocol::ConsentryJson, status, retry_after)
    }

    /// Classifies an HTTP status by `protocol`'s rules.
    pub fn classify(protocol: Protocol, status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            200..=299 => UploadResult::Accepted {
                status,
                rejected: None,
            },
            _ if protocol.is_retryable(status) => UploadResult::Retryable {
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
            UploadResult::Accepted { status, .. } | UploadResult::Refused { status, .. } => {
                Some(*status)
            }
            UploadResult::Retryable { status, .. } => *status,
        }
    }

    /// A short description for logs and the audit trail.
    pub fn detail(&self) -> String {
        match self {
            UploadResult::Accepted {
                status,
                rejected: None,
            } => format!("accepted with {status}"),
            UploadResult::Accepted {
                status,
                rejected: Some(rejected),
            } => format!(
                "accepted with {status}, but the receiver rejected {} record(s): {}",
                rejected.records,
                if rejected.message.is_empty() {
                    "it gave no reason"
                } else {
                    &rejected.message
                }
            ),
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
    fn otlp_retries_only_what_its_specification_names() {
        for status in [429, 502, 503, 504] {
            assert!(matches!(
                UploadResult::classify(Protocol::OtlpHttp, status, None),
                UploadResult::Retryable { .. }
            ));
        }
        // Retryable in consentry's protocol, permanent in OTLP's.
        for status in [408, 500, 501, 505] {
            assert!(matches!(
                UploadResult::classify(Protocol::ConsentryJson, status, None),
                UploadResult::Retryable { .. }
            ));
            assert!(matches!(
                UploadResult::classify(Protocol::OtlpHttp, status, None),
                UploadResult::Refused { .. }
            ));
        }
        assert!(matches!(
            UploadResult::classify(Protocol::OtlpHttp, 200, None),
            UploadResult::Accepted { rejected: None, .. }
        ));
    }

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(POLICY.backoff(1, 1.0), Duration::from_secs(5));
        assert_eq!(POLICY.backoff(2, 1.0), Duration::from_secs(10));
        assert_eq!(POLICY.backoff(3, 0.0), Duration::from_secs(10));
        assert_eq!(POLICY.backoff(40, 1.0), Duration::from_secs(900));
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
