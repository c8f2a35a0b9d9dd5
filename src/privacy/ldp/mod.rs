//! Local differential privacy: what a catalogue field declares so that a
//! report says something about the fleet and almost nothing about this
//! machine, and the mechanisms that make it so. The gate randomises a
//! declared field before anything is stored (`gate::Gate::admit`): the true
//! value never reaches the queue, the disk or the wire.
//!
//! A field declares `[purpose.field.ldp]` with a `mechanism`, an
//! `epsilon` (ε) and, for a categorical one, the `domain` of values it may
//! take (`docs/catalogue.md`, "Local differential privacy"):
//!
//! - [`rr`]: k-ary randomized response, for a small domain;
//! - [`unary`]: optimized unary encoding, for a large domain, the most
//!   accurate, one bit per value on the wire;
//! - [`hadamard`]: Hadamard randomized response, for a large domain, a few
//!   bytes on the wire;
//! - [`geometric`]: the two-sided geometric mechanism, for a count (a KSN
//!   window's counters), ε per window.
//!
//! A purpose with such fields declares a `privacy_budget`: ε a day and the
//! most reports a day its schedule makes. Sequential composition: a day's
//! loss is at most the sum of its fields' ε times the reports, and the
//! loader refuses a declaration over the budget; the gate sends no more
//! reports a day than declared ([`Budget`]).
//!
//! Randomness comes from the operating system's cryptographic source
//! ([`os_rng`]): each randomised record gets a ChaCha20 stream keyed by 32
//! fresh bytes of `getrandom(2)`. A seedable generator is used only by
//! tests and by `examples/ldp.rs` when asked for `--seed`. The mechanisms
//! are written against `rand::Rng`, so the tests drive the very code the
//! gate runs.
//!
//! This module must never keep, log or return the true value of a field
//! it randomised, and never take randomness from anything but the OS's
//! source outside tests.

use std::fmt;

use rand::rngs::{ChaCha20Rng, SysRng};
use rand::{Rng, SeedableRng, TryRng};
use serde::{Deserialize, Serialize};

use crate::record::FieldValue;

pub mod estimate;
pub mod geometric;
pub mod hadamard;
pub mod rr;
mod sample;
pub mod unary;

#[cfg(test)]
mod tests;

pub use estimate::{EstimateError, Frequencies, Frequency, Sum};

/// How a field is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// k-ary randomized response: the report is a value of the domain.
    KRr,
    /// Optimized unary encoding: one bit per value of the domain.
    Unary,
    /// Hadamard randomized response: a column and a sign.
    Hadamard,
    /// Two-sided geometric noise on a count.
    Geometric,
}

impl Mechanism {
    pub const NAMES: &'static str = "k_rr, unary, hadamard, geometric";

    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::KRr => "k_rr",
            Mechanism::Unary => "unary",
            Mechanism::Hadamard => "hadamard",
            Mechanism::Geometric => "geometric",
        }
    }

    /// Whether it reports one of a declared domain's values (a string
    /// field), rather than a count (an integer field).
    pub fn is_categorical(self) -> bool {
        self != Mechanism::Geometric
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The privacy parameter: a report is at most e^ε times as likely under
/// one true value as under any other. Finite, above zero, at most
/// [`Epsilon::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(into = "f64", try_from = "f64")]
pub struct Epsilon(f64);

impl TryFrom<f64> for Epsilon {
    type Error = EpsilonError;
    fn try_from(epsilon: f64) -> Result<Self, EpsilonError> {
        Self::new(epsilon)
    }
}

impl From<Epsilon> for f64 {
    fn from(epsilon: Epsilon) -> f64 {
        epsilon.0
    }
}

// Only finite values are ever made, so equality is total.
impl Eq for Epsilon {}

impl Epsilon {
    /// Past 10, e^ε is above 22 000: the true value is almost always what
    /// is sent, and calling it private would mislead.
    pub const MAX: f64 = 10.0;

    pub fn new(epsilon: f64) -> Result<Self, EpsilonError> {
        if !epsilon.is_finite() || epsilon <= 0.0 {
            return Err(EpsilonError::NotPositive);
        }
        if epsilon > Self::MAX {
            return Err(EpsilonError::TooLarge);
        }
        Ok(Self(epsilon))
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// e^ε: the most a report's probability may differ between two true
    /// values.
    pub fn ratio(self) -> f64 {
        self.0.exp()
    }
}

impl fmt::Display for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Shortest form that reads back: 1, 0.5, 0.25.
        write!(f, "{}", self.0)
    }
}

/// Why an ε is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EpsilonError {
    #[error("ε must be a number above 0")]
    NotPositive,
    #[error("ε above {} protects nothing: e^ε would pass 22 000", Epsilon::MAX)]
    TooLarge,
}

/// A field's local differential privacy, as the catalogue declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ldp {
    pub mechanism: Mechanism,
    pub epsilon: Epsilon,
    /// The values a categorical field may take, in a fixed order (empty
    /// for `geometric`): the order is the reports' encoding, so a receiver
    /// must use the catalogue's.
    pub domain: Vec<String>,
    /// The domain value a true value outside the domain is reported as
    /// (`other = "ZZ"`); `None`: such a record is refused, and nothing of
    /// it is stored.
    pub other: Option<String>,
}

impl Ldp {
    /// The position of `value` in the domain.
    pub fn index_of(&self, value: &str) -> Option<usize> {
        self.domain.iter().position(|v| v == value)
    }

    /// The index a true `value` is randomised from: its own, or the
    /// `other` value's; `None` when neither.
    pub fn index_for(&self, value: &str) -> Option<usize> {
        self.index_of(value)
            .or_else(|| self.other.as_deref().and_then(|o| self.index_of(o)))
    }

    /// `value` as it may be stored, or `None` when it cannot be
    /// randomised (of another type, outside the domain without `other`).
    pub fn randomise<R: Rng + ?Sized>(
        &self,
        value: &FieldValue,
        rng: &mut R,
    ) -> Option<FieldValue> {
        let epsilon = self.epsilon.get();
        let k = self.domain.len();
        match (self.mechanism, value) {
            (Mechanism::Geometric, FieldValue::Integer(count)) => Some(FieldValue::Integer(
                geometric::randomise(*count, epsilon, rng),
            )),
            (Mechanism::Geometric, _) => None,
            (mechanism, FieldValue::String(text)) => {
                let index = self.index_for(text)?;
                let report = match mechanism {
                    Mechanism::KRr => self.domain[rr::randomise(index, k, epsilon, rng)].clone(),
                    Mechanism::Unary => unary::encode(&unary::randomise(index, k, epsilon, rng)),
                    Mechanism::Hadamard => hadamard::randomise(index, k, epsilon, rng).encode(),
                    Mechanism::Geometric => unreachable!("matched above"),
                };
                Some(FieldValue::String(report.into()))
            }
            _ => None,
        }
    }

    /// What the declaration means, in plain words, for a disclosure, a
    /// receipt or `status`: `noun` names what the field holds ("country",
    /// "count").
    pub fn in_words(&self) -> String {
        let ratio = self.epsilon.ratio();
        let what = match self.mechanism {
            Mechanism::KRr => format!(
                "randomized before it is stored (k-ary randomized response over {} values): with ε = {}, a report names the real value at most e^ε ≈ {} times as often as any other, so no single report says which it is",
                self.domain.len(),
                self.epsilon,
                times(ratio)
            ),
            Mechanism::Unary | Mechanism::Hadamard => format!(
                "randomized before it is stored ({} over {} values; the value itself is never sent): with ε = {}, any report is at most e^ε ≈ {} times as likely from the real value as from any other, so no single report says which it is",
                if self.mechanism == Mechanism::Unary {
                    "unary encoding"
                } else {
                    "Hadamard response"
                },
                self.domain.len(),
                self.epsilon,
                times(ratio)
            ),
            Mechanism::Geometric => format!(
                "noise added before it is stored (geometric mechanism, ε = {} per report): a count one higher or lower, one event more or less, makes any reported number at most e^ε ≈ {} times as likely; the count sent may be off by a few, or below zero",
                self.epsilon,
                times(ratio)
            ),
        };
        match &self.other {
            Some(other) if self.mechanism.is_categorical() => {
                format!("{what}; a value outside the list is reported as `{other}`")
            }
            _ => what,
        }
    }
}

/// e^ε for people: "2.7", "1.6", "7.4", "20".
fn times(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}")
    } else {
        format!("{ratio:.1}")
    }
}

/// A purpose's privacy budget: ε a day, and the most reports a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub epsilon_per_day: Epsilon,
    /// The most reports of the purpose the gate sends in a UTC day; the
    /// loader checks that ε per report times this stays within the budget.
    pub reports_per_day: u32,
}

impl Budget {
    /// Sequential composition: `per_report` (the sum of a report's
    /// fields' ε) times the reports a day.
    pub fn spend(self, per_report: f64) -> f64 {
        per_report * f64::from(self.reports_per_day)
    }

    /// The budget in words, for a disclosure and `status`.
    pub fn in_words(self, per_report: f64) -> String {
        format!(
            "At most {} reports a day, each spending ε = {}: at most ε = {} a day of a budget of ε = {} (sequential composition); further reports that day are not sent.",
            self.reports_per_day,
            round(per_report),
            round(self.spend(per_report)),
            self.epsilon_per_day
        )
    }
}

/// A sum of ε for people: at most 4 decimals, no trailing zeros.
pub fn round(epsilon: f64) -> String {
    let text = format!("{epsilon:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The operating system's randomness failed: nothing can be randomised,
/// so nothing of the record is stored.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct OsRandomError(String);

/// A generator for one record: ChaCha20 keyed by 32 bytes from the
/// operating system's cryptographic source.
pub fn os_rng() -> Result<ChaCha20Rng, OsRandomError> {
    let mut seed = [0u8; 32];
    SysRng
        .try_fill_bytes(&mut seed)
        .map_err(|err| OsRandomError(err.to_string()))?;
    Ok(ChaCha20Rng::from_seed(seed))
}
