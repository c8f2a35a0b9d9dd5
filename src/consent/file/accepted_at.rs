//! How late an acceptance may be dated: the one rule for `accepted_at`.
//!
//! **`accepted_at` may be at most [`CLOCK_SKEW`] (5 minutes) later than the
//! later of this machine's clock now and the consent file's last
//! modification.** Later is a mistake (a hand-typed `9999-01-01`, a wrong
//! year) and an acceptance that would never grow old, so the file is
//! refused at that record, which holds the queue and purges nothing.
//!
//! Both moments come from the clock that dated the acceptance. The file's
//! modification time is what keeps a clock set back (by hand or by NTP)
//! from voiding a file written before: it still says when the file was
//! written. consentry's own writes (`grant`, `revoke`) never move it back,
//! so granting one clause after the clock was set back does not void the
//! others ([`keep_written_time`]). A hand edit after the clock was set back
//! does move it back; `consentry check` then names the record, and the fix
//! is the clock or the date. The five minutes are for a file written by
//! one tool and dated by another a little apart, never for a wrong date.
//!
//! A date-time with an offset (`+02:00`) is read at that offset, one
//! without as UTC (consentry writes UTC, `Z`), a date alone as its midnight
//! UTC; a time alone names no day and is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use toml::value::{Datetime, Offset};

use crate::document::Origin;

/// How much later than the clock's latest word an acceptance may be dated:
/// room for two tools' clocks a little apart, not for a wrong date.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The latest moment this machine's clock has vouched for: now, or the
/// file's last modification when that is later (a clock set back since).
pub(super) fn latest(origin: &Origin) -> SystemTime {
    let now = SystemTime::now();
    match origin {
        Origin::File(path) => std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .map_or(now, |written| written.max(now)),
        Origin::Embedded(_) => now,
    }
}

/// Why an `accepted_at` cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadAcceptedAt {
    #[error(
        "`{clause}` accepted_at {at} names no day; give the date and time it was accepted, such as 2026-01-31T09:30:00Z"
    )]
    NoDay { clause: String, at: String },
    #[error(
        "`{clause}` accepted_at {at} is in the future (more than 5 minutes after both this machine's clock and the file's last change); give the date it was accepted, or set the clock right"
    )]
    Future { clause: String, at: String },
}

/// Nothing, or why `clause`'s `accepted_at` cannot be: later than
/// [`CLOCK_SKEW`] past `latest`, or no day at all.
pub(super) fn check(clause: &str, at: &Datetime, latest: SystemTime) -> Result<(), BadAcceptedAt> {
    let (clause, shown) = (clause.to_owned(), at.to_string());
    let Some(at_nanos) = unix_nanos(at) else {
        return Err(BadAcceptedAt::NoDay { clause, at: shown });
    };
    if at_nanos > system_nanos(latest) + CLOCK_SKEW.as_nanos() as i128 {
        return Err(BadAcceptedAt::Future { clause, at: shown });
    }
    Ok(())
}

/// What `keep_written_time` sets a rewritten file's modification time to:
/// the old file's, when that is later than now (a clock set back since it
/// was written), so that the acceptances it dated stay within the rule.
pub(super) fn keep_written_time(previous: Option<SystemTime>) -> Option<SystemTime> {
    previous.filter(|written| *written > SystemTime::now())
}

/// Nanoseconds since the Unix epoch (negative before it).
fn system_nanos(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// The instant `at` names, in nanoseconds since the Unix epoch; `None` for
/// a time without a date.
fn unix_nanos(at: &Datetime) -> Option<i128> {
    let date = at.date?;
    let (hour, minute, second, nanos) = at.time.map_or((0, 0, 0, 0), |time| {
        (
            time.hour,
            time.minute,
            time.second.unwrap_or(0),
            time.nanosecond.unwrap_or(0),
        )
    });
    let offset_minutes = match at.offset {
        Some(Offset::Custom { minutes }) => i64::from(minutes),
        Some(Offset::Z) | None => 0,
    };
    let days = days_from_civil(date.year.into(), date.month.into(), date.day.into());
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset_minutes * 60;
    Some(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Datetime {
        text.parse().unwrap()
    }

    #[test]
    fn instants_are_read_at_their_offset() {
        assert_eq!(unix_nanos(&at("1970-01-01T00:00:00Z")), Some(0));
        assert_eq!(
            unix_nanos(&at("2023-11-14T22:13:20Z")),
            Some(1_700_000_000 * 1_000_000_000)
        );
        // The same instant, written three more ways.
        for same in [
            "2023-11-15T00:13:20+02:00",
            "2023-11-14T22:13:20",
            "2023-11-14T21:13:20-01:00",
        ] {
            assert_eq!(
                unix_nanos(&at(same)),
                Some(1_700_000_000 * 1_000_000_000),
                "{same}"
            );
        }
        assert_eq!(
            unix_nanos(&at("2024-03-01")),
            Some(1_709_251_200 * 1_000_000_000)
        );
        assert_eq!(
            unix_nanos(&at("1969-12-31T23:59:59.5Z")),
            Some(-500_000_000)
        );
        assert_eq!(unix_nanos(&at("12:00:00")), None);
    }

    #[test]
    fn days_from_civil_matches_the_calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
    }
}
