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

use attest_contracts_sim::apply::disputes::round_index;
use attest_contracts_sim::{Ctx, Event, JobPhase, Params, State};
use attest_protocol::tx::{Action, DisputeMove, Verdict, VerdictOutcome};
use attest_protocol::{Amount, BlockHash, Height, JobId, Nonce, Round, Signed, Tx, tx_hash};
use common::*;

/// splitmix64: a tiny, well-mixed, seedable generator (no `rand` crate in the tree).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn block_hash(&mut self) -> BlockHash {
        let mut b = [0u8; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        BlockHash(b)
    }
}

/// A minimal driver: unlike the test harness it does not check invariants after every
/// transaction (that is quadratic over thousands of jobs); it checks them once per trial.
struct Chain {
    state: State,
    height: u64,
    block_hash: BlockHash,
}

impl Chain {
    fn ctx(&self) -> Ctx {
        Ctx {
            height: Height(self.height),
            time_ms: self.height,
            block_hash: self.block_hash,
            proposer: id(PROPOSER),
        }
    }

    /// Opens a job and returns its id (the hash of the transaction that opened it).
    fn send_open(&mut self, spec: &JobSpec) -> JobId {
        let tx = self.sign(CLIENT, Action::OpenJob(spec.open_job()));
        self.state.apply(&self.ctx(), &tx).expect("the job opens");
        JobId::from(tx_hash(tx.signed()))
    }

    fn send(&mut self, who: u8, action: Action) -> Vec<Event> {
        let tx = self.sign(who, action);
        self.state.apply(&self.ctx(), &tx).expect("a valid move")
    }

    fn sign(&self, who: u8, action: Action) -> attest_protocol::Verified<Tx> {
        Signed::sign(
            &chain(),
            &key(who),
            Tx {
                nonce: Nonce(self.state.account(&id(who)).nonce.0),
                fee: self.state.params().min_fee,
                action,
            },
        )
        .verify(&chain())
        .unwrap()
    }

    fn end_block(&mut self, rng: &mut SplitMix) -> Vec<Event> {
        let events = self.state.end_block(&self.ctx());
        self.height += 1;
        self.block_hash = rng.block_hash();
        events
    }
}

fn mc_params() -> Params {
    Params {
        check_probability_ppm: 100_000,
        verdict_window_blocks: 1,
        dispute_round_blocks: 1,
        max_deadline_blocks: 10,
        unbonding_blocks: 40,
        ..Params::default()
    }
}

/// Plays the dispute over `job` with both parties answering from their traces: both open
/// in every bisection round, then the checker supplies its witness if one is needed.
fn play(
    c: &mut Chain,
    rng: &mut SplitMix,
    job: JobId,
    provider: &Trace,
    checker: &Trace,
) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(JobPhase::Disputed { dispute: d, .. }) =
        c.state.job(&job).map(|j| j.phase.clone())
    {
        let mv = |step| {
            Action::Dispute(DisputeMove {
                job,
                round: Round(d.round),
                step,
            })
        };
        if d.round < d.rounds {
            let index = round_index(&d, provider.steps()).unwrap();
            events.extend(c.send(PROVIDER, mv(provider.opening(index))));
            events.extend(c.send(CHECKER, mv(checker.opening(index))));
        } else {
            events.extend(c.send(CHECKER, mv(checker.witness(d.lo.unwrap()))));
        }
        events.extend(c.end_block(rng));
    }
    events
}

/// Runs jobs until the provider's first slash; returns how many jobs that took.
fn trial(seed: u64, cheat_permille: u64, spec: &JobSpec, honest: &Trace, cheat: &Trace) -> u64 {
    let mut rng = SplitMix(seed);
    let mut c = Chain {
        state: State::from_genesis(&genesis(mc_params())).unwrap(),
        height: 1,
        block_hash: BlockHash([0; 32]),
    };
    for n in 1..=100_000u64 {
        let tx_job = c.send_open(spec);
        c.end_block(&mut rng);
        let cheating = rng.next() % 1000 < cheat_permille;
        let trace = if cheating { cheat } else { honest };
        let events = c.send(PROVIDER, Action::CommitResult(trace.commit(tx_job)));
        let checked = events
            .iter()
            .any(|e| matches!(e, Event::CheckAssigned { .. }));
        c.end_block(&mut rng);
        let mut events = Vec::new();
        if checked {
            let outcome = if cheating {
                honest.disagree()
            } else {
                VerdictOutcome::Agree
            };
            events.extend(c.send(
                CHECKER,
                Action::Verdict(Verdict {
                    job: tx_job,
                    outcome,
                }),
            ));
            events.extend(play(&mut c, &mut rng, tx_job, trace, honest));
        }
        // Unchecked results settle one block after the commit (W = 1).
        events.extend(c.end_block(&mut rng));
        assert!(c.state.job(&tx_job).unwrap().phase.is_final());
        let slashed = events.iter().find_map(|e| match e {
            Event::Slashed { who, .. } => Some(*who),
            _ => None,
        });
        if let Some(who) = slashed {
            // Only a cheat that was checked is ever slashed: no false accusation, and an
            // honest provider is never slashed.
            assert_eq!(who, id(PROVIDER), "seed {seed}: a checker was slashed");
            assert!(
                cheating && checked,
                "seed {seed}: an honest job was slashed"
            );
            c.state.check_invariants().unwrap();
            return n;
        }
    }
    panic!("seed {seed}: no slash in 100,000 jobs");
}

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
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(7));
    let counts: Vec<u64> = (0..trials)
        .map(|t| {
            trial(
                0x5eed_0000 + t * 7919 + cheat_permille,
                cheat_permille,
                &spec,
                &honest,
                &cheat,
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
