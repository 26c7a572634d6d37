//! Detection and false accusations at scale, through the real `State`: the figures for the
//! closing note (ARCHITECTURE.md, "What is measured" and "Verification economics").
//!
//! - Detection: independent seeded trials, each a cheating provider from genesis that cheats
//!   on each job with probability f, run until its first slash (real spot-check draws from
//!   block hashes, real verdicts, real bisection disputes, one re-executed step). With check
//!   rate p each job ends in a slash with probability q = p f, so jobs-until-first-slash X is
//!   geometric: mean 1/q and P(X > n) = (1 - q)^n. Its (1 - delta)-quantile, the jobs within
//!   which a cheat is caught with probability 1 - delta, is the smallest n with
//!   (1 - q)^n <= delta: ceil(N) with N = ln(delta) / ln(1 - q). Jobs-until-FIRST-slash is
//!   what the formula predicts; a provider on probation after a proven cheat is checked with
//!   p = 1, which the trials never reach.
//! - False accusations: an honest provider and an honest checker, p = 1 so the real draw
//!   selects every result; no verdict may disagree and nobody may be slashed.
//!
//! The long runs are ignored; run them with
//! `cargo test --release -p attest-contracts-sim --test detection -- --ignored --nocapture`.
//! `small_samples_exercise_both_measurements` runs the same code on small samples in CI. The
//! seeds are fixed, so every run is deterministic and cannot flake; each assertion is made
//! only where the sample size supports it (see [`quantile_margin`]). Timings are printed,
//! never asserted.

mod common;

use std::time::Instant;

use attest_contracts_sim::{Event, Params};
use attest_protocol::Amount;
use attest_protocol::tx::{Action, Verdict};
use common::mc::{
    Chain, Cheat, Prepared, SplitMix, jobs_until_slash, jobs_until_slash_watched, mc_params,
};
use common::{CHECKER, JobSpec, PROVIDER, Trace, id};

/// The check rate of [`mc_params`].
const P: f64 = 0.1;

/// Fixed seed bases: trial `t` at cheating rate f uses
/// `DETECTION_SEED + (f_permille << 32) + t`, honest chain `k` uses `HONEST_SEED + k`.
const DETECTION_SEED: u64 = 0xde7e_c700_0000_0000;
const HONEST_SEED: u64 = 0x4f0e_5700_0000_0000;

/// The job of every detection trial: the tiny model, empty input, one token (22 steps, so a
/// dispute is 5 bisection rounds, a witness and one re-executed step).
fn detection_spec() -> JobSpec {
    JobSpec {
        input: Vec::new(),
        max_tokens: 1,
        price: Amount(2_000),
        ..JobSpec::tiny()
    }
}

/// Jobs-until-first-slash of `trials` cheating providers, sorted.
struct Detection {
    f: f64,
    /// The watch rate `w` (0 without a watcher).
    w: f64,
    counts: Vec<u64>,
}

impl Detection {
    /// The chance a job ends in a slash: `f (p + w - p w)`.
    fn q(&self) -> f64 {
        self.f * (P + self.w - P * self.w)
    }
}

fn detect(cheat_permille: u64, trials: u64) -> Detection {
    detect_watched(cheat_permille, 0, trials)
}

/// [`detect`] with a watcher re-executing unchecked results at `watch_permille / 1000`.
fn detect_watched(cheat_permille: u64, watch_permille: u64, trials: u64) -> Detection {
    let w = Cheat::new(detection_spec());
    let mut chain = Chain::new(mc_params());
    let start = Instant::now();
    let mut counts: Vec<u64> = (0..trials)
        .map(|t| {
            let seed = DETECTION_SEED + (watch_permille << 48) + (cheat_permille << 32) + t;
            if watch_permille == 0 {
                jobs_until_slash(&mut chain, &w, seed, cheat_permille)
            } else {
                jobs_until_slash_watched(&mut chain, &w, seed, cheat_permille, watch_permille)
            }
        })
        .collect();
    let secs = start.elapsed().as_secs_f64();
    counts.sort_unstable();
    let jobs: u64 = counts.iter().sum();
    let s = &chain.signer;
    println!(
        "detection f = {:.3}, p = {P}, w = {:.3}: {trials} cheating providers, {jobs} jobs, {} slashes \
         (all of the cheat, none of a checker or an honest job) in {secs:.1} s \
         ({:.0} jobs/s); {} txs signed+verified ({:.1} s), {} reused",
        cheat_permille as f64 / 1000.0,
        watch_permille as f64 / 1000.0,
        counts.len(),
        jobs as f64 / secs,
        s.signed,
        s.signing.as_secs_f64(),
        s.reused,
    );
    Detection {
        f: cheat_permille as f64 / 1000.0,
        w: watch_permille as f64 / 1000.0,
        counts,
    }
}

/// How many binomial standard errors the sample of `m` trials keeps between the true
/// (1 - 1/d)-quantile of the geometric law and the edges of `[ceil(N) (1 - tol),
/// ceil(N) (1 + tol)]`; the smaller of the two sides.
///
/// The empirical quantile Q (the smallest n with at least m - m/d trials at most n) is at
/// most n_hi iff at most m/d trials exceed n_hi. That count is binomial with mean
/// m t_hi, t_hi = (1 - q)^n_hi < delta, and standard deviation sqrt(m t_hi (1 - t_hi)), so
/// the margin on that side is (delta - t_hi) / sqrt(t_hi (1 - t_hi) / m); likewise Q >= n_lo
/// iff more than m/d trials exceed n_lo - 1. Counting in jobs takes care of the steps of the
/// discrete law. Roughly, the quantile's relative standard error is
/// sqrt((1 - delta) / (m delta)) / ln(1/delta): at m = 10^4 that is 1.4% for delta = 0.5,
/// 1.3% for 0.1, 2.2% for 0.01 and 4.6% for 0.001; at m = 10^5, 0.7% for 0.01 and 1.5% for
/// 0.001. A 5% tolerance is therefore asserted where it is at least three standard errors
/// (e.g. delta = 0.01 at 2 x 10^4 trials or more), and only printed elsewhere.
fn quantile_margin(m: u64, q: f64, d: u64, tol: f64) -> f64 {
    let delta = 1.0 / d as f64;
    let n_star = (delta.ln() / (1.0 - q).ln()).ceil();
    let n_hi = (n_star * (1.0 + tol)).floor();
    let n_lo = (n_star * (1.0 - tol)).ceil();
    let z = |gap: f64, t: f64| {
        let sd = (t * (1.0 - t) / m as f64).sqrt();
        if sd == 0.0 { f64::INFINITY } else { gap / sd }
    };
    let t_hi = (1.0 - q).powf(n_hi);
    let t_lo = (1.0 - q).powf(n_lo - 1.0);
    z(delta - t_hi, t_hi).min(z(t_lo - delta, t_lo))
}

/// Prints the figures of `det` and asserts: the mean within four standard errors of 1/(p f);
/// for each delta = 1/d in `ds` the empirical (1 - delta)-quantile within `tol` of ceil(N)
/// wherever [`quantile_margin`] is at least three. Returns how many quantiles it asserted.
fn check(det: &Detection, ds: &[u64], tol: f64) -> usize {
    let m = det.counts.len() as u64;
    let q = det.q();
    let mean = det.counts.iter().sum::<u64>() as f64 / m as f64;
    // Geometric: sd = sqrt(1 - q) / q, so the mean's standard error is that over sqrt(m).
    let se = (1.0 - q).sqrt() / q / (m as f64).sqrt();
    println!(
        "  f = {:.3}, w = {:.3}: mean jobs until first slash {mean:.3} vs 1/(f (p + w - p w)) \
         = {:.3} (diff {:+.2}%, standard error {:.2}%)",
        det.f,
        det.w,
        1.0 / q,
        100.0 * (mean * q - 1.0),
        100.0 * se * q,
    );
    assert!(
        (mean - 1.0 / q).abs() < 4.0 * se,
        "f = {}: mean {mean}, expected {} +- {}",
        det.f,
        1.0 / q,
        4.0 * se
    );
    println!(
        "  f = {:.3}: delta | N = ln(delta)/ln(1-q) | ceil(N) | empirical (1-delta)-quantile \
         | diff vs N | diff vs ceil(N) | margin (SE) | within {:.0}%?",
        det.f,
        100.0 * tol
    );
    let mut asserted = 0;
    for &d in ds {
        assert_eq!(m % d, 0, "the sample size is a multiple of 1/delta");
        let delta = 1.0 / d as f64;
        let n = delta.ln() / (1.0 - q).ln();
        let n_star = n.ceil();
        let quantile = det.counts[(m - m / d - 1) as usize] as f64;
        let margin = quantile_margin(m, q, d, tol);
        let within = (quantile - n_star).abs() <= tol * n_star;
        let supported = margin >= 3.0;
        println!(
            "  f = {:.3}: {delta:<6} | {n:>10.2} | {n_star:>6} | {quantile:>6} | {:>+7.2}% \
             | {:>+7.2}% | {margin:>5.1} | {}",
            det.f,
            100.0 * (quantile / n - 1.0),
            100.0 * (quantile / n_star - 1.0),
            match (supported, within) {
                (true, _) => "asserted",
                (false, true) => "yes (not asserted: margin < 3 SE)",
                (false, false) => "no (not asserted: margin < 3 SE)",
            }
        );
        if supported {
            assert!(
                within,
                "f = {}, delta = {delta}: quantile {quantile}, ceil(N) = {n_star}",
                det.f
            );
            asserted += 1;
        }
    }
    asserted
}

/// What the honest checks saw.
struct Honest {
    jobs: u64,
    checks: u64,
    agreed: u64,
    disagreed: u64,
    disputes: u64,
    slashes: u64,
    settled: u64,
}

/// The jobs of the honest runs: the tiny model over a few inputs and lengths, so results,
/// proofs and step counts vary.
fn honest_specs() -> Vec<JobSpec> {
    [(&b""[..], 1), (b"hi", 2), (b"attest", 1), (b"x", 3)]
        .into_iter()
        .map(|(input, max_tokens)| JobSpec {
            input: input.to_vec(),
            max_tokens,
            price: Amount(2_000),
            ..JobSpec::tiny()
        })
        .collect()
}

/// `chains` independent chains from genesis with p = 1, each running `jobs_per_chain` jobs
/// one after the other, each job's spec drawn from the chain's seed: the provider commits
/// its honest execution, the real draw selects it and assigns the checker, and the checker
/// posts the verdict its own execution gives ([`Prepared::verdict`]). Agreeing settles the job
/// at once. Every transaction goes through `State::apply` as a `Verified<Tx>`.
///
/// Only CHECKER is eligible to check (the provider and client never are), so the draw's
/// checker pick is always CHECKER, and job n's opening, commit and verdict depend only on n
/// and its spec: across chains they repeat, and the driver signs each distinct one once.
fn honest_checks(chains: u64, jobs_per_chain: u64) -> Honest {
    let specs = honest_specs();
    let traces: Vec<Prepared> = specs
        .iter()
        .map(|s| Prepared::new(Trace::new(s, None)))
        .collect();
    let mut chain = Chain::new(Params {
        check_probability_ppm: 1_000_000,
        ..mc_params()
    });
    let mut h = Honest {
        jobs: 0,
        checks: 0,
        agreed: 0,
        disagreed: 0,
        disputes: 0,
        slashes: 0,
        settled: 0,
    };
    let start = Instant::now();
    for k in 0..chains {
        let mut rng = SplitMix(HONEST_SEED + k);
        chain.restart();
        for _ in 0..jobs_per_chain {
            let which = (rng.next() % specs.len() as u64) as usize;
            let (spec, trace) = (&specs[which], &traces[which]);
            let job = chain.send_open(spec);
            let mut events = chain.end_block(&mut rng);
            events.extend(chain.send(PROVIDER, trace.commit(job)));
            let assigned = events.iter().any(|e| {
                matches!(e, Event::CheckAssigned { job: j, checker, .. }
                    if *j == job && *checker == id(CHECKER))
            });
            assert!(assigned, "chain {k}: p = 1 but job {job:?} was not checked");
            events.extend(chain.end_block(&mut rng));
            let outcome = trace.verdict(&chain.state, &job);
            events.extend(chain.send(CHECKER, Action::Verdict(Verdict { job, outcome })));
            h.jobs += 1;
            for e in &events {
                match e {
                    Event::CheckAssigned { .. } => h.checks += 1,
                    Event::VerdictPosted { agree: true, .. } => h.agreed += 1,
                    Event::VerdictPosted { agree: false, .. } => h.disagreed += 1,
                    Event::DisputeOpened { .. } => h.disputes += 1,
                    Event::Slashed { .. } => h.slashes += 1,
                    Event::Settled { .. } => h.settled += 1,
                    _ => {}
                }
            }
            assert!(chain.state.job(&job).unwrap().phase.is_final());
        }
        assert!(
            chain
                .state
                .stakes()
                .all(|(who, _)| chain.state.record(who).slashes == 0),
            "chain {k}: a slash"
        );
        chain.state.check_invariants().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let s = &chain.signer;
    println!(
        "honest checks: {} chains x {} jobs = {} jobs, {} checks drawn, {} agreed, \
         {} disagreed, {} disputes, {} slashes of honest parties, {} settled",
        chains,
        jobs_per_chain,
        h.jobs,
        h.checks,
        h.agreed,
        h.disagreed,
        h.disputes,
        h.slashes,
        h.settled
    );
    println!(
        "honest checks: {secs:.1} s, {:.0} checks/s ({:.1} us per job: open, commit, verdict, \
         2 blocks); {} txs signed+verified in {:.2} s ({:.0} us each), {} reused",
        h.checks as f64 / secs,
        1e6 * secs / h.jobs as f64,
        s.signed,
        s.signing.as_secs_f64(),
        1e6 * s.signing.as_secs_f64() / s.signed as f64,
        s.reused,
    );
    h
}

fn assert_no_false_accusation(h: &Honest) {
    assert_eq!(h.checks, h.jobs, "p = 1 checks every job");
    assert_eq!(h.agreed, h.jobs, "every honest check agrees");
    assert_eq!(h.disagreed, 0, "a Disagree verdict on an honest result");
    assert_eq!(h.disputes, 0, "a dispute over an honest result");
    assert_eq!(h.slashes, 0, "an honest party was slashed");
    assert_eq!(h.settled, h.jobs, "every honest job settles");
}

const DELTAS: [u64; 5] = [2, 10, 100, 1_000, 10_000];

#[test]
#[ignore = "long: about 10^6 jobs; run in release with --ignored"]
fn detection_always_cheating() {
    // q = 0.1, mean 10 jobs: 10^5 providers (about 10^6 jobs).
    let det = detect(1_000, 100_000);
    let asserted = check(&det, &DELTAS, 0.05);
    assert!(
        asserted >= 4,
        "delta down to 0.001 is supported at 10^5 trials"
    );
}

#[test]
#[ignore = "long: about 10^6 jobs; run in release with --ignored"]
fn detection_cheating_half_the_time() {
    // q = 0.05, mean 20 jobs: 5 x 10^4 providers (about 10^6 jobs).
    let det = detect(500, 50_000);
    let asserted = check(&det, &DELTAS[..4], 0.05);
    assert!(
        asserted >= 3,
        "delta down to 0.01 is supported at 5 x 10^4 trials"
    );
}

#[test]
#[ignore = "long: about 2 x 10^6 jobs; run in release with --ignored"]
fn detection_cheating_one_job_in_ten() {
    // q = 0.01, mean 100 jobs: 2 x 10^4 providers (about 2 x 10^6 jobs).
    let det = detect(100, 20_000);
    let asserted = check(&det, &DELTAS[..4], 0.05);
    assert!(
        asserted >= 3,
        "delta down to 0.01 is supported at 2 x 10^4 trials"
    );
}

#[test]
#[ignore = "long: 10^4 cheaters; run in release with --ignored"]
fn detection_with_a_watcher() {
    // f = 0.5, p = 0.1, w = 0.2: q = 0.14, mean 7.1 jobs; 5 x 10^4 providers.
    let det = detect_watched(500, 200, 50_000);
    let asserted = check(&det, &DELTAS[..4], 0.05);
    assert!(
        asserted >= 3,
        "delta down to 0.01 is supported at 5 x 10^4 trials"
    );
    // And one cheating on every job against a watcher of every tenth result.
    let det = detect_watched(1_000, 100, 20_000);
    check(&det, &DELTAS[..4], 0.05);
}

#[test]
#[ignore = "long: 10^6 honest checks; run in release with --ignored"]
fn no_false_accusation_in_a_million_honest_checks() {
    let h = honest_checks(1_000, 1_000);
    assert_no_false_accusation(&h);
}

/// The same code on small samples, so CI exercises it: 1,000 always-cheating providers,
/// 200 cheating on one job in ten, and 2,000 honest checks. The mean is asserted within
/// four standard errors; the quantiles within 25% of ceil(N) where the sample supports that.
#[test]
fn small_samples_exercise_both_measurements() {
    let det = detect(1_000, 1_000);
    assert!(check(&det, &DELTAS[..2], 0.25) >= 2);
    let det = detect(100, 200);
    check(&det, &DELTAS[..2], 0.25);
    let det = detect_watched(500, 200, 1_000);
    check(&det, &DELTAS[..2], 0.25);
    let h = honest_checks(4, 500);
    assert_no_false_accusation(&h);
}
