//! The mechanisms against their own definitions, at fixed seeds: the
//! reports' distribution (a chi-square test against the exact
//! probabilities), ε (the likelihood ratio of every report under any two
//! true values), the wire forms, and the estimators (unbiased, within
//! their bounds).

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use super::*;

fn ldp(mechanism: Mechanism, epsilon: f64, k: usize) -> Ldp {
    Ldp {
        mechanism,
        epsilon: Epsilon::new(epsilon).unwrap(),
        domain: (0..k).map(|i| format!("v{i}")).collect(),
        other: None,
    }
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The chi-square statistic's value that a correct sampler exceeds with
/// probability 0.001, for `df` degrees of freedom (Wilson–Hilferty).
fn chi_square_critical(df: usize) -> f64 {
    let df = df as f64;
    let z = 3.09;
    let h = 2.0 / (9.0 * df);
    df * (1.0 - h + z * h.sqrt()).powi(3)
}

/// Pearson's statistic of `observed` counts against `probabilities`.
fn chi_square(observed: &[u64], probabilities: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(probabilities)
        .map(|(&o, &p)| {
            let expected = p * n as f64;
            (o as f64 - expected).powi(2) / expected
        })
        .sum()
}

const DRAWS: usize = 40_000;

#[test]
fn k_rr_reports_follow_their_distribution() {
    for (seed, epsilon, k) in [(1, 0.5, 3), (2, 1.0, 5), (3, 2.0, 8)] {
        let mut rng = rng(seed);
        let truth = 1;
        let mut observed = vec![0u64; k];
        for _ in 0..DRAWS {
            observed[rr::randomise(truth, k, epsilon, &mut rng)] += 1;
        }
        let expected: Vec<f64> = (0..k)
            .map(|r| rr::likelihood(r, truth, k, epsilon))
            .collect();
        let stat = chi_square(&observed, &expected);
        assert!(
            stat < chi_square_critical(k - 1),
            "ε {epsilon}, k {k}: χ² {stat}"
        );
    }
}

#[test]
fn unary_reports_follow_their_distribution() {
    // k = 4: every one of the 16 possible reports is a cell.
    for (seed, epsilon) in [(4, 0.5), (5, 1.0), (6, 2.0)] {
        let (k, truth) = (4, 2);
        let mut rng = rng(seed);
        let mut observed = vec![0u64; 1 << k];
        for _ in 0..DRAWS {
            let bits = unary::randomise(truth, k, epsilon, &mut rng);
            let cell = bits
                .iter()
                .enumerate()
                .map(|(i, &b)| usize::from(b) << i)
                .sum::<usize>();
            observed[cell] += 1;
        }
        let expected: Vec<f64> = (0..1usize << k)
            .map(|cell| {
                let bits: Vec<bool> = (0..k).map(|i| cell >> i & 1 == 1).collect();
                unary::likelihood(&bits, truth, epsilon)
            })
            .collect();
        let stat = chi_square(&observed, &expected);
        assert!(stat < chi_square_critical(15), "ε {epsilon}: χ² {stat}");
    }
}

#[test]
fn hadamard_reports_follow_their_distribution() {
    for (seed, epsilon, k) in [(7, 0.5, 3), (8, 1.0, 5), (9, 2.0, 12)] {
        let truth = k - 1;
        let order = hadamard::order(k) as usize;
        let mut rng = rng(seed);
        let mut observed = vec![0u64; 2 * order];
        for _ in 0..DRAWS {
            let report = hadamard::randomise(truth, k, epsilon, &mut rng);
            observed[2 * report.column as usize + usize::from(report.plus)] += 1;
        }
        let expected: Vec<f64> = (0..2 * order)
            .map(|cell| {
                let report = hadamard::Report {
                    column: (cell / 2) as u32,
                    plus: cell % 2 == 1,
                };
                hadamard::likelihood(report, truth, k, epsilon)
            })
            .collect();
        let stat = chi_square(&observed, &expected);
        assert!(
            stat < chi_square_critical(2 * order - 1),
            "ε {epsilon}, k {k}: χ² {stat}"
        );
    }
}

#[test]
fn geometric_noise_follows_its_distribution() {
    for (seed, epsilon) in [(10, 0.5), (11, 1.0), (12, 2.0)] {
        let mut rng = rng(seed);
        // Cells −6..=6 and the two tails.
        let mut observed = vec![0u64; 15];
        for _ in 0..DRAWS {
            let z = geometric::noise(epsilon, &mut rng);
            observed[(z.clamp(-7, 7) + 7) as usize] += 1;
        }
        let inner: Vec<f64> = (-6..=6)
            .map(|z| geometric::probability(z, epsilon))
            .collect();
        let tail = (1.0 - inner.iter().sum::<f64>()) / 2.0;
        let mut expected = vec![tail];
        expected.extend(inner);
        expected.push(tail);
        let stat = chi_square(&observed, &expected);
        assert!(stat < chi_square_critical(14), "ε {epsilon}: χ² {stat}");
        // Mean zero, the variance the estimator assumes.
        let mut rng = rng_for_moments(seed);
        let draws: Vec<f64> = (0..DRAWS)
            .map(|_| geometric::noise(epsilon, &mut rng) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / DRAWS as f64;
        let variance = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / DRAWS as f64;
        let expected = geometric::variance(epsilon);
        assert!(
            mean.abs() < 5.0 * (expected / DRAWS as f64).sqrt(),
            "mean {mean}"
        );
        assert!(
            (variance / expected - 1.0).abs() < 0.1,
            "variance {variance} against {expected}"
        );
    }
}

fn rng_for_moments(seed: u64) -> ChaCha20Rng {
    rng(seed + 1000)
}

/// The gate's own entry point, through the declaration: a categorical
/// field's report is always a wire form of its mechanism, and for unary
/// and Hadamard never the value itself.
#[test]
fn a_declaration_randomises_into_its_wire_form_only() {
    let mut rng = rng(13);
    for mechanism in [Mechanism::KRr, Mechanism::Unary, Mechanism::Hadamard] {
        let declared = ldp(mechanism, 1.0, 20);
        for _ in 0..500 {
            let FieldValue::String(report) = declared
                .randomise(&FieldValue::String("v7".into()), &mut rng)
                .unwrap()
            else {
                panic!("a string field stays a string");
            };
            let mut tally = Frequencies::new(&declared).unwrap();
            tally.add(&report).unwrap();
            if mechanism != Mechanism::KRr {
                assert_ne!(&*report, "v7");
            }
        }
        // Outside the domain: nothing, unless `other` names a value.
        assert_eq!(
            declared.randomise(&FieldValue::String("v99".into()), &mut rng),
            None
        );
        assert_eq!(declared.randomise(&FieldValue::Integer(3), &mut rng), None);
        let other = Ldp {
            other: Some("v0".into()),
            ..declared
        };
        assert!(
            other
                .randomise(&FieldValue::String("v99".into()), &mut rng)
                .is_some()
        );
    }
    let counted = ldp(Mechanism::Geometric, 1.0, 0);
    assert!(matches!(
        counted.randomise(&FieldValue::Integer(5), &mut rng),
        Some(FieldValue::Integer(_))
    ));
    assert_eq!(
        counted.randomise(&FieldValue::String("5".into()), &mut rng),
        None
    );
}

#[test]
fn wire_forms_round_trip_and_malformed_reports_are_refused() {
    let bits = vec![
        true, false, false, true, true, false, false, false, true, true,
    ];
    assert_eq!(unary::encode(&bits), "1903");
    assert_eq!(unary::decode("1903", 10), Some(bits));
    assert_eq!(unary::decode("1907", 10), None, "a bit past the domain");
    assert_eq!(unary::decode("19", 10), None);
    assert_eq!(unary::decode("zz03", 10), None);
    let report = hadamard::Report {
        column: 137,
        plus: true,
    };
    assert_eq!(report.encode(), "137+");
    assert_eq!(hadamard::Report::decode("137+", 200), Some(report));
    assert_eq!(
        hadamard::Report::decode("137+", 100),
        None,
        "past the order"
    );
    for bad in ["", "+", "1", "-1-", "1 +", "x+"] {
        assert_eq!(hadamard::Report::decode(bad, 200), None, "{bad:?}");
    }
    let declared = ldp(Mechanism::KRr, 1.0, 3);
    let mut tally = Frequencies::new(&declared).unwrap();
    assert!(matches!(
        tally.add("v3"),
        Err(EstimateError::Malformed { .. })
    ));
    assert!(Frequencies::new(&ldp(Mechanism::Geometric, 1.0, 0)).is_err());
}

#[test]
fn epsilon_is_positive_finite_and_bounded() {
    assert!(Epsilon::new(1.0).is_ok());
    assert!(Epsilon::new(Epsilon::MAX).is_ok());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(Epsilon::new(bad), Err(EpsilonError::NotPositive), "{bad}");
    }
    assert_eq!(Epsilon::new(10.5), Err(EpsilonError::TooLarge));
}

#[test]
fn the_plain_words_name_epsilon_and_its_ratio() {
    let words = ldp(Mechanism::KRr, 1.0, 4).in_words();
    assert!(words.contains("with ε = 1, a report names the real value at most e^ε ≈ 2.7 times as often as any other"), "{words}");
    let words = ldp(Mechanism::Hadamard, 0.5, 250).in_words();
    assert!(
        words.contains("ε = 0.5") && words.contains("≈ 1.6 times"),
        "{words}"
    );
    let words = ldp(Mechanism::Geometric, 2.0, 0).in_words();
    assert!(
        words.contains("one event more or less") && words.contains("≈ 7.4 times"),
        "{words}"
    );
    let budget = Budget {
        epsilon_per_day: Epsilon::new(8.0).unwrap(),
        reports_per_day: 5,
    };
    assert_eq!(
        budget.in_words(1.5),
        "At most 5 reports a day, each spending ε = 1.5: at most ε = 7.5 a day of a budget of ε = 8 (sequential composition); further reports that day are not sent."
    );
}

/// Each estimator recovers a known distribution within its bound, and is
/// centred on it (the mean error over many values is small).
#[test]
fn estimators_recover_a_known_distribution_within_their_bounds() {
    let k = 12;
    let n = 30_000usize;
    // True counts: value i holds a share proportional to k − i.
    let weights: Vec<usize> = (0..k).map(|i| k - i).collect();
    let total: usize = weights.iter().sum();
    let truth: Vec<usize> = weights.iter().map(|w| w * n / total).collect();
    let n: usize = truth.iter().sum();
    for (seed, mechanism) in [
        (20, Mechanism::KRr),
        (21, Mechanism::Unary),
        (22, Mechanism::Hadamard),
    ] {
        let declared = ldp(mechanism, 1.0, k);
        let mut rng = rng(seed);
        let mut tally = Frequencies::new(&declared).unwrap();
        for (index, &count) in truth.iter().enumerate() {
            let value = FieldValue::String(declared.domain[index].clone().into());
            for _ in 0..count {
                let FieldValue::String(report) = declared.randomise(&value, &mut rng).unwrap()
                else {
                    unreachable!()
                };
                tally.add(&report).unwrap();
            }
        }
        assert_eq!(tally.reports(), n as u64);
        let bound = tally.bound(0.01);
        let estimates = tally.estimates();
        let mut z_sum = 0.0;
        for (estimate, &count) in estimates.iter().zip(&truth) {
            let error = estimate.count - count as f64;
            assert!(
                error.abs() <= bound,
                "{mechanism}: {} off by {error}, bound {bound}",
                estimate.value
            );
            z_sum += error / estimate.variance.sqrt();
        }
        // The mean of k standardised errors has standard deviation 1/√k.
        assert!(
            (z_sum / k as f64).abs() < 4.0 / (k as f64).sqrt(),
            "{mechanism}: mean z {}",
            z_sum / k as f64
        );
    }
    let mut sum = Sum::default();
    let mut rng = rng(23);
    for i in 0..n as i64 {
        sum.add(geometric::randomise(i % 7, 1.0, &mut rng));
    }
    let true_total: i64 = (0..n as i64).map(|i| i % 7).sum();
    let (estimate, _) = sum.estimate(1.0);
    assert!((estimate - true_total as f64).abs() <= sum.bound(1.0, 0.01));
}

/// The worst ratio, over every report and every pair of true values, of
/// the report's probability under the two.
fn worst_ratio(likelihoods: &[Vec<f64>]) -> f64 {
    likelihoods
        .iter()
        .map(|per_truth| {
            let max = per_truth.iter().cloned().fold(f64::MIN, f64::max);
            let min = per_truth.iter().cloned().fold(f64::MAX, f64::min);
            max / min
        })
        .fold(1.0, f64::max)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        rng_seed: RngSeed::Fixed(25),
        ..ProptestConfig::default()
    })]

    /// No report is more than e^ε times as likely under one true value as
    /// under another; k-RR and Hadamard reach it exactly.
    #[test]
    fn epsilon_bounds_every_likelihood_ratio(
        epsilon in 0.05f64..10.0,
        k in 2usize..24,
        seed in any::<u64>(),
    ) {
        let limit = epsilon.exp() * (1.0 + 1e-9);
        let mut rng = rng(seed);
        // k-RR: every possible report.
        let table: Vec<Vec<f64>> = (0..k)
            .map(|r| (0..k).map(|t| rr::likelihood(r, t, k, epsilon)).collect())
            .collect();
        let ratio = worst_ratio(&table);
        prop_assert!(ratio <= limit && ratio >= epsilon.exp() * (1.0 - 1e-9));
        // Hadamard: every possible report.
        let order = hadamard::order(k);
        let table: Vec<Vec<f64>> = (0..order)
            .flat_map(|column| [true, false].map(|plus| hadamard::Report { column, plus }))
            .map(|report| (0..k).map(|t| hadamard::likelihood(report, t, k, epsilon)).collect())
            .collect();
        prop_assert!(worst_ratio(&table) <= limit);
        // Unary: reports drawn from the mechanism (2^k are too many).
        let table: Vec<Vec<f64>> = (0..20)
            .map(|i| unary::randomise(i % k, k, epsilon, &mut rng))
            .map(|bits| (0..k).map(|t| unary::likelihood(&bits, t, epsilon)).collect())
            .collect();
        prop_assert!(worst_ratio(&table) <= limit);
        // Geometric: counts one apart, at any report.
        let count = i64::from(rng.next_u32() % 1000);
        let report = geometric::randomise(count, epsilon, &mut rng);
        let here = geometric::probability(report - count, epsilon);
        let next = geometric::probability(report - count - 1, epsilon);
        prop_assert!(here / next <= limit && next / here <= limit);
    }
}
