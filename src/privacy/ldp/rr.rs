//! k-ary randomized response (Warner 1965; the "direct encoding" of Wang
//! et al., USENIX Security 2017): the report is one value of the domain,
//! the true one with probability p = e^ε / (e^ε + k − 1), each other with
//! q = 1 / (e^ε + k − 1). p / q = e^ε exactly.
//!
//! Best for small domains: its variance per report grows with k
//! ((e^ε + k − 2) / (e^ε − 1)^2), so past about 3·e^ε + 2 values the
//! unary and Hadamard mechanisms estimate better (`docs/protocol.md`).

use rand::Rng;

use super::sample::{below, coin};

/// (p, q): the probability that a report names the true value, and that
/// it names one given other value.
pub fn probabilities(k: usize, epsilon: f64) -> (f64, f64) {
    let e = epsilon.exp();
    let denominator = e + (k as f64) - 1.0;
    (e / denominator, 1.0 / denominator)
}

/// The index a report names, for a true value at `index` of `k`.
pub fn randomise<R: Rng + ?Sized>(index: usize, k: usize, epsilon: f64, rng: &mut R) -> usize {
    debug_assert!(index < k && k >= 2);
    let (p, _) = probabilities(k, epsilon);
    if coin(rng, p) {
        return index;
    }
    // One of the k − 1 others, uniformly.
    let other = below(rng, k as u64 - 1) as usize;
    if other >= index { other + 1 } else { other }
}

/// The probability of the report `reported` when the true value is `index`.
pub fn likelihood(reported: usize, index: usize, k: usize, epsilon: f64) -> f64 {
    let (p, q) = probabilities(k, epsilon);
    if reported == index { p } else { q }
}
