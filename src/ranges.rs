//! The range of every duration in the agent config, in one table.
//!
//! A value outside its range is refused when the config loads, with the
//! key, the value and the range, at the key's line. The ranges are wide
//! enough for every setup we know of (the defaults, the shipped config,
//! the tests, the demo and the load tools all sit inside them, a few of
//! the tests' fast timers at the lower ends) and
//! narrow enough that a typo (`"100000000d"`) or a slipped unit (`"5d"` for
//! `"5s"`) is refused instead of obeyed: a timer set for 270,000 years is
//! a timer that never fires. `config/consentry.toml` states each range
//! beside its key; a test below keeps the two in step.
//!
//! A leaf module: the sections (`upload`, `collect`, `store`) check their
//! own keys against it, and nothing here imports them.

use std::time::Duration;

use crate::clock::HumanDuration;

/// The durations one key takes, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    /// The config table the key is in (`upload`, `collect`, `store`).
    pub table: &'static str,
    pub key: &'static str,
    pub min: Duration,
    pub max: Duration,
}

const fn range(
    table: &'static str,
    key: &'static str,
    min: Duration,
    max: Duration,
) -> DurationRange {
    DurationRange {
        table,
        key,
        min,
        max,
    }
}

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// `[upload] batch_max_delay`, 100 ms to 1 day: under 100 ms a batch closes
/// before a burst of events has arrived (a request per record); a partial
/// batch that waits longer than a day only ages its records towards
/// `max_record_age`.
pub const BATCH_MAX_DELAY: DurationRange = range("upload", "batch_max_delay", millis(100), days(1));

/// `[upload] timeout`, 1 s to 10 min: under a second a TLS handshake over a
/// slow or distant link cannot finish; a receiver that has not answered in
/// ten minutes is hung, and the batch it holds waits for the next attempt.
pub const TIMEOUT: DurationRange = range("upload", "timeout", secs(1), minutes(10));

/// `[upload] retry_initial`, 100 ms to 1 h: the first wait after a failed
/// upload; shorter is a burst of requests at a receiver in trouble, longer
/// keeps data waiting an hour after a blip (a restarted receiver).
pub const RETRY_INITIAL: DurationRange = range("upload", "retry_initial", millis(100), hours(1));

/// `[upload] retry_max`, 1 s to 1 day: the longest wait between attempts;
/// an agent notices a receiver that is back within a day at most.
pub const RETRY_MAX: DurationRange = range("upload", "retry_max", secs(1), days(1));

/// `[upload] interval_min`, 1 s to 30 days: a receiver may never ask for
/// uploads more often than once a second (`Consentry-Upload-Interval`).
pub const INTERVAL_MIN: DurationRange = range("upload", "interval_min", secs(1), days(30));

/// `[upload] interval_max`, 1 s to 30 days: a receiver may slow an agent to
/// one upload a month, no further: queued records would outlive the
/// default `max_record_age` (30 days) before they could go.
pub const INTERVAL_MAX: DurationRange = range("upload", "interval_max", secs(1), days(30));

/// `[collect] interval`, 1 min to 30 days: each run looks at the system and
/// queues a record per periodic purpose; more often than a minute repeats
/// the same facts, rarer than a month is no longer a periodic report.
pub const COLLECT_INTERVAL: DurationRange = range("collect", "interval", minutes(1), days(30));

/// `[collect] ksn_window`, 1 s to 1 day: one `ksn_scan_aggregates` report
/// per window; a window longer than a day holds its counts back from the
/// receiver that long (and a withdrawal discards the open window whole).
pub const KSN_WINDOW: DurationRange = range("collect", "ksn_window", secs(1), days(1));

/// `[store] max_record_age`, 1 h to 365 days: under an hour a short outage
/// of the receiver drops what was queued; a record kept for more than a
/// year describes a machine as it no longer is.
pub const MAX_RECORD_AGE: DurationRange = range("store", "max_record_age", hours(1), days(365));

/// `[store] audit_retention`, 1 day to 3650 days: `history` must at least
/// answer what was sent today; ten years covers the longest record-keeping
/// duty an operator is likely to have, and longer is a typo.
pub const AUDIT_RETENTION: DurationRange = range("store", "audit_retention", days(1), days(3650));

/// Every range above: what the tests and the documentation go through.
pub const ALL: [DurationRange; 10] = [
    BATCH_MAX_DELAY,
    TIMEOUT,
    RETRY_INITIAL,
    RETRY_MAX,
    INTERVAL_MIN,
    INTERVAL_MAX,
    COLLECT_INTERVAL,
    KSN_WINDOW,
    MAX_RECORD_AGE,
    AUDIT_RETENTION,
];

impl DurationRange {
    /// Nothing, or the key and why `value` is refused: the key, the value
    /// and the range, and what to write instead.
    pub fn check(&self, value: HumanDuration) -> Result<(), (&'static str, String)> {
        if (self.min..=self.max).contains(&value.0) {
            return Ok(());
        }
        Err((
            self.key,
            format!(
                "[{}] {} is {}, outside its range: give a duration from {}",
                self.table,
                self.key,
                short(value.0),
                self.shown()
            ),
        ))
    }

    /// `"1s to 10m"`: the range as `config/consentry.toml` states it.
    pub fn shown(&self) -> String {
        format!("{} to {}", short(self.min), short(self.max))
    }
}

/// `d` in its largest whole unit (`"30d"`, `"10m"`, `"250ms"`), as a config
/// file would write it; what has no whole unit, humantime's way.
pub fn short(d: Duration) -> String {
    const UNITS: [(u128, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) || ms == 0 {
        return humantime::format_duration(d).to_string();
    }
    match UNITS.iter().find(|(unit, _)| ms.is_multiple_of(*unit)) {
        Some((unit, name)) => format!("{}{name}", ms / unit),
        None => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_the_way_a_config_writes_them() {
        assert_eq!(TIMEOUT.shown(), "1s to 10m");
        assert_eq!(AUDIT_RETENTION.shown(), "1d to 3650d");
        assert_eq!(short(millis(250)), "250ms");
        assert_eq!(short(minutes(90)), "90m");
        assert_eq!(short(Duration::from_nanos(1500)), "1us 500ns");
    }

    #[test]
    fn the_ends_are_in_and_a_step_past_them_is_out() {
        for range in ALL {
            for inside in [range.min, range.max] {
                assert!(range.check(HumanDuration(inside)).is_ok(), "{range:?}");
            }
            for outside in [range.min - millis(1), range.max + millis(1)] {
                let (key, message) = range.check(HumanDuration(outside)).unwrap_err();
                assert_eq!(key, range.key);
                assert!(
                    message.contains(&format!("[{}] {}", range.table, range.key))
                        && message.contains(&short(outside))
                        && message.contains(&range.shown()),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn the_shipped_config_states_every_range_beside_its_key() {
        let shipped = crate::config::EMBEDDED_EXAMPLE;
        for range in ALL {
            let table = shipped
                .find(&format!("\n[{}]\n", range.table))
                .unwrap_or_else(|| panic!("no [{}] in the shipped config", range.table));
            let key = table
                + shipped[table..]
                    .find(&format!("\n{} = ", range.key))
                    .unwrap_or_else(|| panic!("no {} in [{}]", range.key, range.table));
            // The comment just above the key, over the keys it also
            // speaks of (`interval_min` for `interval_max`).
            let comment: Vec<&str> = shipped[..key]
                .lines()
                .rev()
                .skip_while(|line| !line.starts_with('#'))
                .take_while(|line| line.starts_with('#'))
                .collect();
            let comment = comment.into_iter().rev().collect::<Vec<_>>().join("\n");
            assert!(
                comment.contains(&format!("({})", range.shown())),
                "config/consentry.toml does not state `({})` above {}:\n{comment}",
                range.shown(),
                range.key
            );
        }
    }
}
