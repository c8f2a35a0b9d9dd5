//! Hadamard randomized response (Cormode, Kulkarni and Srivastava,
//! SIGMOD 2018, after Bassily and Smith's succinct histograms): the
//! domain's i-th value is row i + 1 of the Sylvester–Hadamard matrix of
//! order K, the smallest power of two above the domain's size (row 0, all
//! ones, says nothing). A report is one column j, drawn uniformly, and the
//! sign of the true row at j, kept with probability p = e^ε / (e^ε + 1)
//! and flipped otherwise: the likelihoods of a report under two true values
//! differ by at most p / (1 − p) = e^ε.
//!
//! A few bytes on the wire whatever the domain (`"137+"`: the column in
//! decimal, then `+` or `-`), at a variance per report of
//! ((e^ε + 1) / (e^ε − 1))^2: about 1.27 times unary encoding's at ε = 1,
//! and far below k-ary randomized response's for a domain of more than a
//! few values. The default for large domains (`docs/consent.md` argues it).

use rand::Rng;

use super::sample::{below, coin};

/// One report: a column of the matrix and a sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub column: u32,
    pub plus: bool,
}

/// K: the smallest power of two above `k` (rows 1..=k carry the values).
pub fn order(k: usize) -> u32 {
    u32::try_from((k + 1).next_power_of_two()).expect("domains are bounded far below 2^31")
}

/// The sign of H[row][column] in the Sylvester construction: + when the
/// two share an even number of set bits.
pub fn plus(row: u32, column: u32) -> bool {
    (row & column).count_ones().is_multiple_of(2)
}

/// The probability that a report keeps the true sign.
pub fn keep_probability(epsilon: f64) -> f64 {
    let e = epsilon.exp();
    e / (e + 1.0)
}

/// A report for a true value at `index` of `k`.
pub fn randomise<R: Rng + ?Sized>(index: usize, k: usize, epsilon: f64, rng: &mut R) -> Report {
    debug_assert!(index < k);
    let column = below(rng, u64::from(order(k))) as u32;
    let truth = plus(index as u32 + 1, column);
    let keep = coin(rng, keep_probability(epsilon));
    Report {
        column,
        plus: truth == keep,
    }
}

impl Report {
    pub fn encode(self) -> String {
        format!("{}{}", self.column, if self.plus { '+' } else { '-' })
    }

    /// A report of a domain of `k` values, or `None` when `text` is not one.
    pub fn decode(text: &str, k: usize) -> Option<Self> {
        let (digits, sign) = text.split_at(text.len().checked_sub(1)?);
        let plus = match sign {
            "+" => true,
            "-" => false,
            _ => return None,
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let column: u32 = digits.parse().ok()?;
        (column < order(k)).then_some(Self { column, plus })
    }
}

/// The probability of `report` when the true value is `index` of `k`.
pub fn likelihood(report: Report, index: usize, k: usize, epsilon: f64) -> f64 {
    let keep = keep_probability(epsilon);
    let kept = plus(index as u32 + 1, report.column) == report.plus;
    (if kept { keep } else { 1.0 - keep }) / f64::from(order(k))
}
