//! Time as it appears in files and on the wire: human durations in config
//! files (`"90s"`, `"6h"`) and RFC 3339 UTC timestamps.
//!
//! A leaf module: it imports nothing from the crate, so config, collectors,
//! the store, the consent file and the protocol can all use it without
//! importing each other.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The last second RFC 3339's four-digit year can write:
/// 9999-12-31T23:59:59Z.
const LAST_WRITABLE: Duration = Duration::from_secs(253_402_300_799);

/// RFC 3339 UTC with second precision: what every timestamp on the wire
/// and in the consent file looks like. A time outside 1970–9999 (a clock
/// set far wrong) is written as the nearest end of that range: it cannot
/// be written otherwise, and a wrong clock must not stop the daemon.
pub fn rfc3339(time: SystemTime) -> String {
    with_rfc3339(time, str::to_owned)
}

/// [`rfc3339`] appended to `out`, without a `String` of its own.
pub fn push_rfc3339(out: &mut String, time: SystemTime) {
    with_rfc3339(time, |text| out.push_str(text));
}

/// Calls `f` with `time` written as [`rfc3339`] does.
fn with_rfc3339<T>(time: SystemTime, f: impl FnOnce(&str) -> T) -> T {
    let last = SystemTime::UNIX_EPOCH + LAST_WRITABLE;
    let time = time.clamp(SystemTime::UNIX_EPOCH, last);
    let second = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    // Every record is stamped: those of one second (thousands of them in
    // an ingest chunk) share the text written for the first.
    LAST_WRITTEN.with_borrow_mut(|(written, text)| {
        if *written != Some(second) {
            *text = humantime::format_rfc3339_seconds(time).to_string();
            *written = Some(second);
        }
        f(text)
    })
}

thread_local! {
    /// The second [`rfc3339`] wrote last on this thread, and its text.
    static LAST_WRITTEN: std::cell::RefCell<(Option<u64>, String)> =
        const { std::cell::RefCell::new((None, String::new())) };
}

/// A duration written the human way in config files: `"90s"`, `"6h"`,
/// `"250ms"`. A bad value is reported at its line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The most digits a duration may be written with. humantime adds up the
/// terms of `"1h 30m"` itself and panics (in `Duration::new`) when its sum
/// carries a second past `u64::MAX` seconds (`"18446744073709551615s
/// 1000ms"`). With at most 11 digits every sum stays under 10^11 years,
/// 3.2e18 seconds, far from that; the longest duration any key takes (ten
/// years, `3650d`) needs four.
const MAX_DIGITS: usize = 11;

/// Why a text is not a duration.
#[derive(Debug, thiserror::Error)]
enum BadDuration {
    #[error("{0} digits, more than the {MAX_DIGITS} any duration needs")]
    TooManyDigits(usize),
    #[error(transparent)]
    Syntax(#[from] humantime::DurationError),
}

/// `text` as a duration, or why it is not one (never a panic).
fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    if digits > MAX_DIGITS {
        return Err(BadDuration::TooManyDigits(digits));
    }
    Ok(humantime::parse_duration(text)?)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = parse_duration(&text).map_err(|err| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration ({err}); write it like \"90s\", \"5m\" or \"6h\""
            ))
        })?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a duration of zero is not allowed here",
            ));
        }
        Ok(Self(duration))
    }
}

/// Written back the way it is read (`"7days"`, `"1h 30m"`), so a
/// `--json` output round-trips into a config file.
impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn each_second_is_written_as_itself_however_the_calls_alternate() {
        let at = |s: u64, ms: u64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms)
        };
        for (time, text) in [
            (at(1_700_000_000, 0), "2023-11-14T22:13:20Z"),
            (at(1_700_000_000, 999), "2023-11-14T22:13:20Z"),
            (at(1_700_000_001, 0), "2023-11-14T22:13:21Z"),
            (at(1_700_000_000, 500), "2023-11-14T22:13:20Z"),
            (at(0, 0), "1970-01-01T00:00:00Z"),
            (
                SystemTime::UNIX_EPOCH - Duration::from_secs(1),
                "1970-01-01T00:00:00Z",
            ),
            (at(1_700_000_001, 0), "2023-11-14T22:13:21Z"),
        ] {
            assert_eq!(rfc3339(time), text);
            let mut out = String::from("at ");
            push_rfc3339(&mut out, time);
            assert_eq!(out, format!("at {text}"));
        }
    }

    #[test]
    fn a_clock_set_outside_1970_to_9999_is_written_as_the_nearest_end_not_a_panic() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00Z");
        let after = SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(rfc3339(after), "9999-12-31T23:59:59Z");
        let last = SystemTime::UNIX_EPOCH + LAST_WRITABLE;
        assert_eq!(rfc3339(last), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn durations_parse_and_zero_is_refused() {
        let d: HumanDuration = serde_json::from_str("\"90s\"").unwrap();
        assert_eq!(d.0, Duration::from_secs(90));
        assert!(serde_json::from_str::<HumanDuration>("\"0s\"").is_err());
        assert!(serde_json::from_str::<HumanDuration>("\"soon\"").is_err());
        let week = HumanDuration(Duration::from_secs(7 * 86_400));
        let text = serde_json::to_string(&week).unwrap();
        assert_eq!(text, "\"7days\"");
        assert_eq!(serde_json::from_str::<HumanDuration>(&text).unwrap(), week);
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        // The last two reach u64::MAX seconds and then carry a whole second
        // in humantime's sum: a panic in `Duration::new`, unguarded.
        for text in [
            "18446744073709551615d",
            "100000000000000y",
            "18446744073709551615s 1000ms",
            "18446744073709551615s 500ms 500ms",
        ] {
            let parsed = std::panic::catch_unwind(|| {
                serde_json::from_str::<HumanDuration>(&format!("\"{text}\""))
            });
            let err = parsed
                .unwrap_or_else(|_| panic!("`{text}` panicked"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(text) && err.contains("not a duration"),
                "{err}"
            );
        }
    }
}
