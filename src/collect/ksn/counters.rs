//! The KSN window's exact totals, and where they stop.
//!
//! Every addition to a counter goes through [`Counters::add`]: an event into
//! a chunk's delta, a delta into the window. It stops each counter at
//! [`COUNTER_MAX`] and counts every addition it could not make in full, so a
//! capped total is never passed off as the whole: the window logs the first
//! cap of each counter and, when its report is queued, the audit trail says
//! which counters were capped and how often. These counts stay on the
//! machine; the record carries only the catalogue's fields.

use serde::{Deserialize, Serialize};

/// The largest value a counter holds. A report's integers are signed 64-bit
/// (the catalogue's `integer`), so a total stops here; stopping at
/// `u64::MAX` instead would cut it a second time, without a word, on its way
/// into the record.
pub const COUNTER_MAX: u64 = i64::MAX as u64;

/// The report's totals; field names are the catalogue's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    pub unknown_statuses: u64,
    pub trusted_statuses: u64,
    pub untrusted_statuses: u64,
    pub trusted_by_certificate: u64,
    pub trusted_by_web_address: u64,
    pub trusted_by_process_trust: u64,
    pub unknown_undecided: u64,
    pub user_trusted: u64,
    pub requests_succeeded: u64,
    pub requests_failed: u64,
    pub session_duration_ms: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Counters {
    /// Adds `other` counter by counter, each stopping at [`COUNTER_MAX`];
    /// each counter that could not take its whole addition counts one more
    /// in `capped` (a `Counters` of cap counts, under the same names).
    pub(super) fn add(&mut self, other: &Counters, capped: &mut Counters) {
        let mine = self.values_mut();
        let caps = capped.values_mut();
        for ((mine, (_, amount)), caps) in mine.into_iter().zip(other.fields()).zip(caps) {
            if !add_within_max(mine, amount) {
                *caps = caps.saturating_add(1);
            }
        }
    }

    /// Every counter with its catalogue field name.
    pub fn fields(&self) -> [(&'static str, u64); 13] {
        [
            ("unknown_statuses", self.unknown_statuses),
            ("trusted_statuses", self.trusted_statuses),
            ("untrusted_statuses", self.untrusted_statuses),
            ("trusted_by_certificate", self.trusted_by_certificate),
            ("trusted_by_web_address", self.trusted_by_web_address),
            ("trusted_by_process_trust", self.trusted_by_process_trust),
            ("unknown_undecided", self.unknown_undecided),
            ("user_trusted", self.user_trusted),
            ("requests_succeeded", self.requests_succeeded),
            ("requests_failed", self.requests_failed),
            ("session_duration_ms", self.session_duration_ms),
            ("bytes_sent", self.bytes_sent),
            ("bytes_received", self.bytes_received),
        ]
    }

    /// The counters, in the order of [`Counters::fields`].
    fn values_mut(&mut self) -> [&mut u64; 13] {
        [
            &mut self.unknown_statuses,
            &mut self.trusted_statuses,
            &mut self.untrusted_statuses,
            &mut self.trusted_by_certificate,
            &mut self.trusted_by_web_address,
            &mut self.trusted_by_process_trust,
            &mut self.unknown_undecided,
            &mut self.user_trusted,
            &mut self.requests_succeeded,
            &mut self.requests_failed,
            &mut self.session_duration_ms,
            &mut self.bytes_sent,
            &mut self.bytes_received,
        ]
    }

    /// The counters that are not zero, with their names.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> {
        self.fields().into_iter().filter(|(_, value)| *value > 0)
    }

    pub fn is_zero(&self) -> bool {
        self.nonzero().next().is_none()
    }

    /// Stops every counter above [`COUNTER_MAX`] there, counting one cap
    /// for each in `capped`: a window saved by a build that let counters run
    /// to `u64::MAX`.
    pub(super) fn clamp(&mut self, capped: &mut Counters) {
        let caps = capped.values_mut();
        for (mine, caps) in self.values_mut().into_iter().zip(caps) {
            if *mine > COUNTER_MAX {
                *mine = COUNTER_MAX;
                *caps = caps.saturating_add(1);
            }
        }
    }
}

/// Adds `amount` to `counter` if the sum stays within [`COUNTER_MAX`], and
/// says so; otherwise leaves `counter` at the maximum and says it did not.
fn add_within_max(counter: &mut u64, amount: u64) -> bool {
    match counter.checked_add(amount) {
        Some(sum) if sum <= COUNTER_MAX => {
            *counter = sum;
            true
        }
        _ => {
            *counter = COUNTER_MAX;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mutable_slots_follow_the_serialized_order() {
        let mut counters = Counters::default();
        for (n, slot) in counters.values_mut().into_iter().enumerate() {
            *slot = n as u64 + 1;
        }
        let serialized = serde_json::to_value(counters).unwrap();
        let serialized = serialized.as_object().unwrap();
        assert_eq!(serialized.len(), 13);
        for (n, (name, value)) in counters.fields().into_iter().enumerate() {
            assert_eq!(value, n as u64 + 1, "{name}");
            assert_eq!(serialized[name], value, "{name}");
        }
    }

    #[test]
    fn a_sum_past_the_maximum_stops_there_and_is_counted_per_counter() {
        let mut counters = Counters {
            bytes_sent: COUNTER_MAX,
            session_duration_ms: COUNTER_MAX - 1,
            ..Counters::default()
        };
        let mut capped = Counters::default();
        let more = Counters {
            bytes_sent: COUNTER_MAX,
            session_duration_ms: 1,
            requests_succeeded: 1,
            ..Counters::default()
        };
        counters.add(&more, &mut capped);
        assert_eq!(counters.bytes_sent, COUNTER_MAX);
        assert_eq!(counters.session_duration_ms, COUNTER_MAX, "exactly full");
        assert_eq!(counters.requests_succeeded, 1);
        assert_eq!(capped.nonzero().collect::<Vec<_>>(), [("bytes_sent", 1)]);
        counters.add(&more, &mut capped);
        assert_eq!(
            capped.nonzero().collect::<Vec<_>>(),
            [("session_duration_ms", 1), ("bytes_sent", 2)]
        );
        // Adding nothing to a full counter loses nothing.
        counters.add(&Counters::default(), &mut capped);
        assert_eq!(capped.bytes_sent, 2);
    }

    #[test]
    fn an_addition_past_u64_is_capped_too() {
        let mut counters = Counters {
            bytes_received: COUNTER_MAX,
            ..Counters::default()
        };
        let mut capped = Counters::default();
        let huge = Counters {
            bytes_received: u64::MAX,
            ..Counters::default()
        };
        counters.add(&huge, &mut capped);
        assert_eq!(
            (counters.bytes_received, capped.bytes_received),
            (COUNTER_MAX, 1)
        );
    }

    #[test]
    fn clamp_stops_an_old_total_past_the_maximum_and_counts_it() {
        let mut counters = Counters {
            bytes_sent: u64::MAX - 1,
            bytes_received: COUNTER_MAX,
            ..Counters::default()
        };
        let mut capped = Counters::default();
        counters.clamp(&mut capped);
        assert_eq!(counters.bytes_sent, COUNTER_MAX);
        assert_eq!(counters.bytes_received, COUNTER_MAX);
        assert_eq!(capped.nonzero().collect::<Vec<_>>(), [("bytes_sent", 1)]);
    }
}
