//! The two-sided geometric mechanism (Ghosh, Roughgarden and Sundararajan,
//! STOC 2009), the discrete Laplace: a count is sent plus noise Z with
//! P(Z = z) = (1 − α) / (1 + α) · α^|z|, α = e^−ε. A count that differs by
//! one (one event more or less) changes the probability of any report by
//! at most e^ε: ε protects each single event of the window, not a habit
//! that adds many (`docs/consent.md` says so in words).
//!
//! The noise has mean 0 and variance 2α / (1 − α)^2, so a fleet's sum of
//! reports is an unbiased estimate of its true sum; a report may be below
//! zero, and is sent as it is (clamping it would bias the sum).
//!
//! Z is drawn as the difference of two geometric variates (failures before
//! a success of probability 1 − α), each by inversion of a uniform draw.

use rand::Rng;

use super::sample::unit;

/// α = e^−ε.
pub fn alpha(epsilon: f64) -> f64 {
    (-epsilon).exp()
}

/// The variance of the noise: 2α / (1 − α)^2.
pub fn variance(epsilon: f64) -> f64 {
    let a = alpha(epsilon);
    2.0 * a / ((1.0 - a) * (1.0 - a))
}

/// P(Z = z).
pub fn probability(z: i64, epsilon: f64) -> f64 {
    let a = alpha(epsilon);
    (1.0 - a) / (1.0 + a) * a.powf(z.unsigned_abs() as f64)
}

/// One draw of Z.
pub fn noise<R: Rng + ?Sized>(epsilon: f64, rng: &mut R) -> i64 {
    let a = alpha(epsilon);
    failures(a, rng) - failures(a, rng)
}

/// `count` as reported: plus the noise, saturating at the ends of i64.
pub fn randomise<R: Rng + ?Sized>(count: i64, epsilon: f64, rng: &mut R) -> i64 {
    count.saturating_add(noise(epsilon, rng))
}

/// Failures before the first success of probability 1 − α: P(G = g) =
/// (1 − α) α^g, by inversion, floor(ln U / ln α) with U uniform in (0, 1].
fn failures<R: Rng + ?Sized>(a: f64, rng: &mut R) -> i64 {
    let u = 1.0 - unit(rng);
    let g = (u.ln() / a.ln()).floor();
    // Beyond 2^53 the draw has no meaning left; it does not happen for any
    // ε the loader accepts (it would take U below 2^-53 at ε = 0.01).
    g.min(9.0e15) as i64
}
