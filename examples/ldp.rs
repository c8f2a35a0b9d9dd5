//! A fleet's randomized country reports against the truth: how well does
//! the receiver's estimator recover a distribution it never sees?
//!
//! ```text
//! cargo run --release --example ldp -- --agents 100000 --epsilon 1
//! ```
//!
//! Every agent holds a country drawn from a known distribution (a few
//! large countries and a long tail) and reports it exactly as the gate
//! would: through the declaration of `geo_distribution.country_code` in
//! the built-in `kis` catalogue (`privacy::ldp::Ldp::randomise`, Hadamard
//! response over 250 values), with a fresh generator keyed from the
//! operating system per report (`privacy::ldp::os_rng`), as the gate does.
//! `--epsilon` and `--mechanism` (`k_rr`, `unary`, `hadamard`) replace the
//! catalogue's; `--seed N` makes the run reproducible (ChaCha20 from N).
//!
//! The receiver side is `privacy::ldp::Frequencies`: it prints the true
//! and estimated shares of the largest countries with each estimate's
//! standard deviation, the largest error over the whole domain, and the
//! bound that every estimate stays within with probability 95 %
//! (Hoeffding with a union bound over the domain, `Frequencies::bound`).

use consentry::catalogue::{BuiltIn, Catalogue};
use consentry::privacy::ldp::{self, Epsilon, Frequencies, Ldp, Mechanism};
use consentry::record::FieldValue;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

/// The known distribution: share of the fleet per country; the rest of
/// the domain holds nobody, and `XK` (outside the list) is reported as
/// `ZZ`.
const TRUTH: &[(&str, f64)] = &[
    ("US", 0.24),
    ("DE", 0.12),
    ("RU", 0.10),
    ("BR", 0.08),
    ("IN", 0.07),
    ("FR", 0.06),
    ("GB", 0.05),
    ("JP", 0.04),
    ("IT", 0.04),
    ("ES", 0.03),
    ("MX", 0.03),
    ("PL", 0.03),
    ("NL", 0.02),
    ("TR", 0.02),
    ("CA", 0.02),
    ("SE", 0.01),
    ("CH", 0.01),
    ("AT", 0.01),
    ("XK", 0.01),
    ("LI", 0.005),
    ("IS", 0.005),
];

struct Options {
    agents: usize,
    epsilon: Option<f64>,
    mechanism: Option<Mechanism>,
    seed: Option<u64>,
}

fn options() -> Options {
    let mut options = Options {
        agents: 100_000,
        epsilon: None,
        mechanism: None,
        seed: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--agents" => options.agents = value().parse().expect("--agents N"),
            "--epsilon" => options.epsilon = Some(value().parse().expect("--epsilon E")),
            "--mechanism" => {
                let name = value();
                let quoted = format!("\"{name}\"");
                options.mechanism = Some(
                    serde_json::from_str(&quoted)
                        .unwrap_or_else(|_| panic!("--mechanism k_rr|unary|hadamard, not {name}")),
                );
            }
            "--seed" => options.seed = Some(value().parse().expect("--seed N")),
            other => {
                panic!("unknown flag {other}; use --agents N --epsilon E --mechanism M --seed N")
            }
        }
    }
    options
}

/// The catalogue's declaration, with the options' replacements.
fn declaration(options: &Options) -> Ldp {
    let catalogue = Catalogue::builtin(BuiltIn::Kis);
    let field = catalogue
        .purpose("geo_distribution")
        .and_then(|p| p.field("country_code"))
        .expect("kis declares geo_distribution.country_code");
    let mut ldp = field.ldp.clone().expect("kis randomises the country");
    if let Some(epsilon) = options.epsilon {
        ldp.epsilon = Epsilon::new(epsilon).expect("--epsilon in (0, 10]");
    }
    if let Some(mechanism) = options.mechanism {
        assert!(
            mechanism.is_categorical(),
            "a country needs a categorical mechanism"
        );
        ldp.mechanism = mechanism;
    }
    ldp
}

fn main() {
    let options = options();
    let ldp = declaration(&options);
    let n = options.agents;
    // Agents per true value, in the order of TRUTH; what rounding leaves
    // over goes to the first.
    let mut holders: Vec<(&str, usize)> = TRUTH
        .iter()
        .map(|&(country, share)| (country, (share * n as f64).floor() as usize))
        .collect();
    let assigned: usize = holders.iter().map(|h| h.1).sum();
    holders[0].1 += n - assigned;

    let mut seeded = options.seed.map(ChaCha20Rng::seed_from_u64);
    let mut tally = Frequencies::new(&ldp).expect("categorical");
    let started = std::time::Instant::now();
    for &(country, count) in &holders {
        let value = FieldValue::String(country.into());
        for _ in 0..count {
            let mut fresh;
            let rng = match seeded.as_mut() {
                Some(rng) => rng,
                None => {
                    fresh = ldp::os_rng().expect("the OS's random source");
                    &mut fresh
                }
            };
            let Some(FieldValue::String(report)) = ldp.randomise(&value, rng) else {
                panic!("{country} is in the domain or reported as `other`");
            };
            tally.add(&report).expect("the gate's reports parse");
        }
    }
    let elapsed = started.elapsed();

    // The truth per domain value, as the receiver should find it.
    let mut truth = vec![0usize; ldp.domain.len()];
    for &(country, count) in &holders {
        truth[ldp.index_for(country).expect("in the domain or other")] += count;
    }
    let estimates = tally.estimates();
    println!(
        "{} agents, {} with ε = {} over {} values ({}), {:.1} s to randomise and tally",
        n,
        ldp.mechanism,
        ldp.epsilon,
        ldp.domain.len(),
        if options.seed.is_some() {
            "seeded ChaCha20"
        } else {
            "OS random source, as the gate"
        },
        elapsed.as_secs_f64()
    );
    println!(
        "\n{:<8} {:>9} {:>10} {:>9} {:>8}",
        "country", "true %", "estimate %", "± σ %", "error σ"
    );
    let share = |count: f64| 100.0 * count / n as f64;
    let mut order: Vec<usize> = (0..truth.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(truth[i]));
    for &i in order.iter().take(TRUTH.len()) {
        let estimate = &estimates[i];
        let sigma = estimate.variance.sqrt();
        println!(
            "{:<8} {:>9.2} {:>10.2} {:>9.2} {:>8.2}",
            estimate.value,
            share(truth[i] as f64),
            share(estimate.count),
            share(sigma),
            (estimate.count - truth[i] as f64) / sigma
        );
    }
    let (worst, error) = estimates
        .iter()
        .zip(&truth)
        .map(|(e, &t)| (e, (e.count - t as f64).abs()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a domain of two values or more");
    let bound = tally.bound(0.05);
    println!(
        "\nlargest error over all {} values: {:.3} % of the fleet ({:.0} agents, at {})",
        truth.len(),
        share(error),
        error,
        worst.value
    );
    println!(
        "theoretical bound (every value at once, probability ≥ 95 %, Hoeffding): {:.3} % ({:.0} agents){}",
        share(bound),
        bound,
        if error <= bound { "" } else { "  EXCEEDED" }
    );
    let mean_sigma =
        estimates.iter().map(|e| e.variance.sqrt()).sum::<f64>() / estimates.len() as f64;
    println!(
        "standard deviation of one estimate: {:.3} % of the fleet",
        share(mean_sigma)
    );
}
