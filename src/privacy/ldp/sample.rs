//! The three draws every mechanism is made of, written out so that their
//! probabilities can be read: a uniform real in [0, 1), a biased coin, and
//! a uniform index. No `rand` distribution is used.

use rand::Rng;

/// A uniform real in [0, 1), on the 2^53 multiples of 2^-53 (every double
/// in the interval that an `f64` mantissa can hold at that spacing).
pub(super) fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    (rng.next_u64() >> 11) as f64 * SCALE
}

/// `true` with probability `p` (to within 2^-53).
pub(super) fn coin<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    unit(rng) < p
}

/// A uniform integer in `0..n` (`n > 0`), by rejection: no modulo bias.
pub(super) fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    assert!(n > 0, "an empty range has no uniform draw");
    // The largest multiple of n that fits: draws at or above it are
    // redrawn (fewer than one in two for any n, almost never for small n).
    let limit = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < limit {
            return x % n;
        }
    }
}
