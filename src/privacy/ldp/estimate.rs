//! The receiving side: a fleet's randomized reports in, unbiased estimates
//! out, each with its variance (`docs/protocol.md`, "Local differential
//! privacy"). Nothing here runs in the agent; it is in the library so that
//! a receiver, the demo and `examples/ldp.rs` use the very definitions the
//! gate randomises with.
//!
//! For a categorical field, [`Frequencies`] counts reports and gives, per
//! value of the domain, the estimated number of agents whose true value it
//! was. For k-ary randomized response and unary encoding, with C_v the
//! reports that name (or set the bit of) v among n, and (p, q) the
//! mechanism's probabilities: ĉ_v = (C_v − n·q) / (p − q), with variance
//! n·q(1 − q) / (p − q)^2 + c_v(1 − p − q) / (p − q). For Hadamard
//! response, with m = (e^ε + 1) / (e^ε − 1): ĉ_v = m · Σ s_i·H[v+1][j_i],
//! variance n·m^2 − c_v. The variance's c_v is taken as the estimate,
//! clamped to [0, n].
//!
//! [`Frequencies::bound`] is Hoeffding's inequality with a union bound
//! over the domain: with probability at least 1 − δ, no estimate is off
//! by more than it. For a count ([`Sum`]) the noise is unbounded, and the
//! bound is Chebyshev's.

use super::{Ldp, Mechanism, hadamard, rr, unary};

/// Why a report or a declaration cannot be estimated from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstimateError {
    #[error("a {0} mechanism randomises a count: sum its reports with `Sum`")]
    NotCategorical(&'static str),
    #[error("a geometric mechanism's reports are counts; `Frequencies` takes categorical ones")]
    NotACount,
    #[error("`{report}` is not a {mechanism} report over a domain of {k} values")]
    Malformed {
        report: String,
        mechanism: &'static str,
        k: usize,
    },
}

/// The estimate for one value of the domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Frequency {
    pub value: String,
    /// Estimated number of reports whose true value was this one
    /// (unbiased; may fall below zero or above the count of reports).
    pub count: f64,
    /// The variance of `count`.
    pub variance: f64,
}

/// Reports of one categorical field, tallied.
#[derive(Debug, Clone)]
pub struct Frequencies<'l> {
    ldp: &'l Ldp,
    reports: u64,
    /// k-RR and unary: reports that name or set each value. Hadamard: per
    /// column, reports with + less reports with −.
    tally: Vec<i64>,
}

impl<'l> Frequencies<'l> {
    pub fn new(ldp: &'l Ldp) -> Result<Self, EstimateError> {
        let k = ldp.domain.len();
        let width = match ldp.mechanism {
            Mechanism::Geometric => return Err(EstimateError::NotCategorical("geometric")),
            Mechanism::KRr | Mechanism::Unary => k,
            Mechanism::Hadamard => hadamard::order(k) as usize,
        };
        Ok(Self {
            ldp,
            reports: 0,
            tally: vec![0; width],
        })
    }

    /// Adds one report, as the wire carries it.
    pub fn add(&mut self, report: &str) -> Result<(), EstimateError> {
        let k = self.ldp.domain.len();
        let malformed = || EstimateError::Malformed {
            report: report.chars().take(80).collect(),
            mechanism: self.ldp.mechanism.as_str(),
            k,
        };
        match self.ldp.mechanism {
            Mechanism::Geometric => return Err(EstimateError::NotACount),
            Mechanism::KRr => {
                let index = self.ldp.index_of(report).ok_or_else(malformed)?;
                self.tally[index] += 1;
            }
            Mechanism::Unary => {
                let bits = unary::decode(report, k).ok_or_else(malformed)?;
                for (slot, bit) in self.tally.iter_mut().zip(bits) {
                    *slot += i64::from(bit);
                }
            }
            Mechanism::Hadamard => {
                let report = hadamard::Report::decode(report, k).ok_or_else(malformed)?;
                self.tally[report.column as usize] += if report.plus { 1 } else { -1 };
            }
        }
        self.reports += 1;
        Ok(())
    }

    /// Reports added.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// One estimate per value of the domain, in the domain's order.
    pub fn estimates(&self) -> Vec<Frequency> {
        let n = self.reports as f64;
        let epsilon = self.ldp.epsilon.get();
        let k = self.ldp.domain.len();
        let clamp = |c: f64| c.clamp(0.0, n);
        self.ldp
            .domain
            .iter()
            .enumerate()
            .map(|(v, value)| {
                let (count, variance) = match self.ldp.mechanism {
                    Mechanism::KRr | Mechanism::Unary => {
                        let (p, q) = match self.ldp.mechanism {
                            Mechanism::KRr => rr::probabilities(k, epsilon),
                            _ => unary::probabilities(epsilon),
                        };
                        let c = (self.tally[v] as f64 - n * q) / (p - q);
                        let var = n * q * (1.0 - q) / ((p - q) * (p - q))
                            + clamp(c) * (1.0 - p - q) / (p - q);
                        (c, var)
                    }
                    Mechanism::Hadamard => {
                        let m = hadamard_scale(epsilon);
                        let row = v as u32 + 1;
                        let signed: i64 = self
                            .tally
                            .iter()
                            .enumerate()
                            .map(|(j, &t)| if hadamard::plus(row, j as u32) { t } else { -t })
                            .sum();
                        let c = m * signed as f64;
                        (c, n * m * m - clamp(c))
                    }
                    Mechanism::Geometric => unreachable!("refused by `new`"),
                };
                Frequency {
                    value: value.clone(),
                    count,
                    variance: variance.max(0.0),
                }
            })
            .collect()
    }

    /// A bound on every estimate's error at once, holding with
    /// probability at least 1 − `delta`: Hoeffding's inequality (each
    /// report adds a term within an interval of width w to an estimate)
    /// and a union bound over the k values: w · sqrt(n · ln(2k/δ) / 2).
    pub fn bound(&self, delta: f64) -> f64 {
        let epsilon = self.ldp.epsilon.get();
        let k = self.ldp.domain.len();
        let width = match self.ldp.mechanism {
            Mechanism::KRr => {
                let (p, q) = rr::probabilities(k, epsilon);
                1.0 / (p - q)
            }
            Mechanism::Unary => {
                let (p, q) = unary::probabilities(epsilon);
                1.0 / (p - q)
            }
            Mechanism::Hadamard => 2.0 * hadamard_scale(epsilon),
            Mechanism::Geometric => return f64::INFINITY,
        };
        width * (self.reports as f64 * (2.0 * k as f64 / delta).ln() / 2.0).sqrt()
    }
}

/// m = (e^ε + 1) / (e^ε − 1): one Hadamard report's ±1, unbiased.
fn hadamard_scale(epsilon: f64) -> f64 {
    let e = epsilon.exp();
    (e + 1.0) / (e - 1.0)
}

/// Reports of one count under the geometric mechanism, summed: the
/// fleet's total is unbiased whatever the noise.
#[derive(Debug, Clone, Default)]
pub struct Sum {
    reports: u64,
    total: i128,
}

impl Sum {
    pub fn add(&mut self, report: i64) {
        self.reports += 1;
        self.total += i128::from(report);
    }

    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// The estimated true total (the reports' sum) and its variance,
    /// n · 2α / (1 − α)^2, for reports made with `epsilon`.
    pub fn estimate(&self, epsilon: f64) -> (f64, f64) {
        (
            self.total as f64,
            self.reports as f64 * super::geometric::variance(epsilon),
        )
    }

    /// Chebyshev: with probability at least 1 − `delta`, the estimate is
    /// within sqrt(variance / δ) of the true total.
    pub fn bound(&self, epsilon: f64, delta: f64) -> f64 {
        (self.estimate(epsilon).1 / delta).sqrt()
    }
}
