//! Seeded Monte Carlo of detection: how many jobs a cheating provider gets away with before
//! its first slash, through the real `State` (real draws from block hashes, real verdicts,
//! real bisection disputes with Merkle proofs and one re-executed step).
//!
//! With check rate p and cheating rate f, each job independently ends in a slash with
//! probability q = p f, so jobs-until-first-slash is geometric: mean 1/q, and
//! P(N > n) = (1 - q)^n, which gives the delta-quantile N = ln(delta) / ln(1 - q). The seeds
//! are fixed, so the test is deterministic and cannot flake; the tolerances are what the
//! sample sizes support (about four standard errors), stated next to each assertion.

mod common;

use attest_protocol::Amount;
use common::JobSpec;
use common::mc::{Chain, Cheat, jobs_until_slash, mc_params};

struct Figures {
    mean: f64,
    /// Fraction of trials that needed more than `n_delta` jobs.
    beyond: f64,
    n_delta: f64,
}

fn run(cheat_permille: u64, trials: u64, delta: f64) -> Figures {
    let spec = JobSpec {
        input: Vec::new(),
        max_tokens: 1,
        price: Amount(2_000),
        ..JobSpec::tiny()
    };
    let w = Cheat::new(spec);
    let mut chain = Chain::new(mc_params());
    let counts: Vec<u64> = (0..trials)
        .map(|t| {
            jobs_until_slash(
                &mut chain,
                &w,
                0x5eed_0000 + t * 7919 + cheat_permille,
                cheat_permille,
            )
        })
        .collect();
    let q = 0.1 * cheat_permille as f64 / 1000.0;
    let n_delta = delta.ln() / (1.0 - q).ln();
    Figures {
        mean: counts.iter().sum::<u64>() as f64 / trials as f64,
        beyond: counts.iter().filter(|&&n| n as f64 > n_delta).count() as f64 / trials as f64,
        n_delta,
    }
}

#[test]
fn the_formula_gives_the_reference_figures() {
    let n = |f: f64, delta: f64| (delta.ln() / (1.0 - 0.1 * f).ln()).ceil();
    assert_eq!(n(1.0, 1e-6), 132.0);
    assert_eq!(n(0.1, 1e-6), 1375.0);
}

#[test]
fn always_cheating_provider_is_caught_as_predicted() {
    // q = 0.1: mean 10 jobs, sd ~9.5; 600 trials give a standard error of 0.39 (3.9% of
    // the mean). Tolerance 1.5 (about four standard errors); for delta = 0.05 (N = 28.4),
    // the fraction of trials beyond N must be 0.05 +- 0.035 (binomial sd 0.009).
    let fig = run(1000, 600, 0.05);
    eprintln!(
        "f = 1: mean {:.2} (1/pf = 10), beyond N={:.1}: {:.3}",
        fig.mean, fig.n_delta, fig.beyond
    );
    assert!((fig.mean - 10.0).abs() < 1.5, "mean {}", fig.mean);
    assert!((fig.beyond - 0.05).abs() < 0.035, "beyond {}", fig.beyond);
}

#[test]
fn ten_percent_cheating_provider_is_caught_as_predicted() {
    // q = 0.01: mean 100 jobs, sd ~99.5; 250 trials give a standard error of 6.3 (6.3% of
    // the mean). Tolerance 25 (about four standard errors); for delta = 0.25 (N = 138), the
    // fraction beyond N must be 0.25 +- 0.11 (binomial sd 0.027).
    let fig = run(100, 250, 0.25);
    eprintln!(
        "f = 0.1: mean {:.2} (1/pf = 100), beyond N={:.1}: {:.3}",
        fig.mean, fig.n_delta, fig.beyond
    );
    assert!((fig.mean - 100.0).abs() < 25.0, "mean {}", fig.mean);
    assert!((fig.beyond - 0.25).abs() < 0.11, "beyond {}", fig.beyond);
}
