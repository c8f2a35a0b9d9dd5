//! Optimized unary encoding (OUE; Wang et al., USENIX Security 2017): the
//! report is one bit per value of the domain; the true value's bit is set
//! with probability p = 1/2, every other bit with q = 1 / (e^ε + 1).
//! Changing the true value changes two bits' odds, each by a factor whose
//! product is p(1 − q) / ((1 − p) q) = e^ε.
//!
//! Its variance per report, 4·e^ε / (e^ε − 1)^2, does not grow with the
//! domain: the most accurate of the three for a large one, at one bit per
//! value on the wire (`hadamard` sends a few bytes instead).
//!
//! On the wire: the bits as lower-case hex, bit i of the domain in byte
//! i / 8 at bit i % 8 (least significant first), every byte written, the
//! unused high bits of the last one zero.

use rand::Rng;

use super::sample::coin;

/// (p, q): the probability that the true value's bit is set, and that any
/// other's is.
pub fn probabilities(epsilon: f64) -> (f64, f64) {
    (0.5, 1.0 / (epsilon.exp() + 1.0))
}

/// The report's bits for a true value at `index` of `k`.
pub fn randomise<R: Rng + ?Sized>(index: usize, k: usize, epsilon: f64, rng: &mut R) -> Vec<bool> {
    debug_assert!(index < k);
    let (p, q) = probabilities(epsilon);
    (0..k)
        .map(|i| coin(rng, if i == index { p } else { q }))
        .collect()
}

/// The bits as the wire's hex.
pub fn encode(bits: &[bool]) -> String {
    let bytes: Vec<u8> = bits
        .chunks(8)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |byte, (i, &bit)| byte | (u8::from(bit) << i))
        })
        .collect();
    hex::encode(bytes)
}

/// The `k` bits of a report, or `None` when `text` is not one (wrong
/// length, not hex, a bit set past the domain).
pub fn decode(text: &str, k: usize) -> Option<Vec<bool>> {
    if text.len() != k.div_ceil(8) * 2 {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    let bits: Vec<bool> = (0..bytes.len() * 8)
        .map(|i| bytes[i / 8] >> (i % 8) & 1 == 1)
        .collect();
    if bits[k..].iter().any(|&b| b) {
        return None;
    }
    Some(bits[..k].to_vec())
}

/// The probability of the report `bits` when the true value is `index`.
pub fn likelihood(bits: &[bool], index: usize, epsilon: f64) -> f64 {
    let (p, q) = probabilities(epsilon);
    bits.iter()
        .enumerate()
        .map(|(i, &bit)| {
            let set = if i == index { p } else { q };
            if bit { set } else { 1.0 - set }
        })
        .product()
}
