//! Verification scenarios in the deterministic simulator: checks only by devices that can
//! run the model, watchers that challenge what the random draw missed, challengers that lie
//! and lose their bond, and windows that last the same block time whatever the block rate.
//! Each test runs a few seeds (more with `ATTEST_SIM_SEEDS=N`); a failure prints the seed
//! that replays it (`ATTEST_SIM_SEED=S`).

use attest_contracts_sim::{Job, JobPhase, Params, Review, TxError};
use attest_core::accel::{Cheat, CheatMode, RATE_ONE_PPM};
use attest_core::market::MarketConfig;
use attest_protocol::tx::{CheckLevel, OpenJob};
use attest_protocol::{AccountId, Amount, Bytes, DeviceName, JobId, ModelId};
use attest_tests::runner::run_seeds;
use attest_tests::scenario::{JobTraffic, Scenario, big_device, small_device};
use attest_tests::sim::{Outcome, validator_key};

const LARGE: &str = "attest-large-70b";

fn account(i: usize) -> AccountId {
    validator_key(i).public()
}

fn serving() -> MarketConfig {
    MarketConfig {
        serve: true,
        ..MarketConfig::default()
    }
}

/// Four nodes, `jobs` jobs of `model` to random providers that can run it (not through the
/// gateway, so a cheater keeps getting work), windows of 10 s, check rate `p_ppm`.
fn scenario(seed: u64, jobs: u64, model: &'static str, p_ppm: u32) -> Scenario {
    let mut s = Scenario::honest(seed, 4);
    s.params = Params {
        check_probability_ppm: p_ppm,
        verdict_window_ms: 10_000,
        dispute_round_ms: 10_000,
        ..Params::default()
    };
    s.jobs = Some(JobTraffic {
        count: jobs,
        model,
        input_len: (2, 6),
        max_tokens: 2,
        via_gateway: false,
        ..JobTraffic::default()
    });
    s.target_height = 20;
    s
}

/// The jobs `who` challenged (not as the drawn checker).
fn challenged_by(o: &Outcome, who: AccountId) -> Vec<(&JobId, &Job)> {
    let review = Review::Disputed {
        challenger: who,
        assigned: false,
    };
    o.state.jobs().filter(|(_, j)| j.review == review).collect()
}

/// Every job on the ledger is final.
fn every_job_final(o: &Outcome) {
    for (id, job) in o.state.jobs() {
        assert!(job.phase.is_final(), "job {id} is {}", job.phase.name());
    }
}

#[test]
fn a_70b_job_is_checked_by_the_one_other_device_that_holds_it() {
    run_seeds(
        "a_70b_job_is_checked_by_the_one_other_device_that_holds_it",
        2,
        |seed| {
            let mut s = scenario(seed, 6, LARGE, 0);
            // Nodes 0 and 1 hold the 70B model, nodes 2 and 3 (80 GB) do not.
            s.devices = vec![big_device(), big_device(), small_device(), small_device()];
            if let Some(jobs) = s.jobs.as_mut() {
                jobs.check = CheckLevel::Always;
            }
            s
        },
        |o| {
            every_job_final(o);
            assert!(
                o.state.jobs().count() >= 4,
                "too few jobs reached the ledger"
            );
            assert!(o.slashes.is_empty(), "slashes: {:?}", o.slashes);
            for (id, job) in o.state.jobs() {
                assert_eq!(job.phase, JobPhase::Settled, "job {id}");
                let other = if job.provider == account(0) {
                    account(1)
                } else {
                    assert_eq!(
                        job.provider,
                        account(1),
                        "job {id}: a provider without the device"
                    );
                    account(0)
                };
                assert_eq!(
                    job.review,
                    Review::Agreed { checker: other },
                    "job {id}: checked by the other 70B-capable node"
                );
                assert!(job.faults.is_empty(), "job {id}: {:?}", job.faults);
            }
        },
    );
}

#[test]
fn a_70b_job_nobody_else_can_check_is_refused_at_open() {
    run_seeds(
        "a_70b_job_nobody_else_can_check_is_refused_at_open",
        2,
        |seed| {
            let mut s = scenario(seed, 3, LARGE, 0);
            // Only node 0 holds the 70B model: its results could never be checked.
            s.devices = vec![big_device(), small_device(), small_device(), small_device()];
            s
        },
        |o| {
            assert!(
                o.jobs_opened >= 3,
                "the clients tried {} jobs",
                o.jobs_opened
            );
            assert_eq!(o.state.jobs().count(), 0, "no such job may open");
            let open = OpenJob {
                model: ModelId::new(LARGE).unwrap(),
                input: Bytes::new(b"abc".to_vec()).unwrap(),
                max_tokens: 2,
                provider: account(0),
                device: DeviceName::new("cpu").unwrap(),
                price_per_token: Amount(100),
                deadline_ms: 10_000,
                check: CheckLevel::Random,
            };
            let client = attest_tests::clients::client_key(0).public();
            assert!(matches!(
                o.state.check_open(client, &open),
                Err(TxError::NoCapableChecker { .. })
            ));
        },
    );
}

#[test]
fn a_watcher_catches_a_cheater_the_random_draw_missed() {
    run_seeds(
        "a_watcher_catches_a_cheater_the_random_draw_missed",
        2,
        |seed| {
            // p = 0: no result is ever drawn for a check. Node 0 cheats on every job; node 1
            // watches every result it has spare capacity for.
            let mut s = scenario(seed, 24, "attest-tiny-1b", 0);
            s.markets[0].danger_cheat = Some(Cheat {
                mode: CheatMode::Flip,
                rate_ppm: RATE_ONE_PPM,
            });
            s.markets[1] = MarketConfig {
                watch_rate_ppm: 1_000_000,
                ..serving()
            };
            s
        },
        |o| {
            every_job_final(o);
            let (cheater, watcher) = (account(0), account(1));
            for (who, reason) in &o.slashes {
                assert_eq!(*who, cheater, "an honest node was slashed: {reason:?}");
            }
            let caught = challenged_by(o, watcher);
            assert!(!caught.is_empty(), "the watcher challenged nothing");
            for (id, job) in &caught {
                assert_eq!(
                    job.provider, cheater,
                    "job {id}: a challenge of an honest result"
                );
                assert_eq!(job.phase, JobPhase::Refunded, "job {id}: the cheater lost");
            }
            let stats = o.duty_stats[1].as_ref().expect("the watcher is up");
            assert!(stats.watched > 0 && stats.challenges > 0, "{stats:?}");
            let stake = o.state.stake(&cheater).expect("staked");
            assert!(stake.disputes_lost >= 1, "the cheater never lost");
        },
    );
}

/// A node drawn to check a result it is also watching owes the verdict all the same: every
/// node watches every result, half of them are drawn for a check, and no honest node may
/// miss a verdict.
#[test]
fn a_watcher_drawn_as_checker_still_posts_its_verdict() {
    run_seeds(
        "a_watcher_drawn_as_checker_still_posts_its_verdict",
        2,
        |seed| {
            let mut s = scenario(seed, 16, "attest-tiny-1b", 500_000);
            for m in &mut s.markets {
                m.watch_rate_ppm = 1_000_000;
            }
            s
        },
        |o| {
            every_job_final(o);
            assert!(
                o.slashes.is_empty(),
                "an honest node was penalized: {:?}",
                o.slashes
            );
            let checked = o
                .state
                .jobs()
                .filter(|(_, j)| matches!(j.review, Review::Agreed { .. }))
                .count();
            assert!(checked > 0, "no result was checked");
        },
    );
}

#[test]
fn a_lying_challenger_loses_its_bond_and_nothing_else() {
    run_seeds(
        "a_lying_challenger_loses_its_bond_and_nothing_else",
        2,
        |seed| {
            // Every provider is honest; node 1 watches every result and, re-executing with a
            // flipped bit, challenges each one it watches.
            let mut s = scenario(seed, 12, "attest-tiny-1b", 0);
            s.markets[1] = MarketConfig {
                watch_rate_ppm: 1_000_000,
                ..serving()
            }
            .with_cheats(
                None,
                Some(Cheat {
                    mode: CheatMode::Flip,
                    rate_ppm: RATE_ONE_PPM,
                }),
            )
            .expect("a cheats build");
            s
        },
        |o| {
            every_job_final(o);
            assert!(o.slashes.is_empty(), "slashes: {:?}", o.slashes);
            let liar = account(1);
            let lost = challenged_by(o, liar);
            assert!(!lost.is_empty(), "the liar challenged nothing");
            for (id, job) in &lost {
                assert_eq!(
                    job.phase,
                    JobPhase::Settled,
                    "job {id}: the honest provider won"
                );
            }
            // Its stake is whole; its balance paid a bond per lost challenge.
            let stake = o.state.stake(&liar).expect("staked");
            assert_eq!(stake.bonded, Amount::tokens(500).unwrap());
            let bond = o.state.params().challenge_bond;
            let start = Amount::tokens(1_000).unwrap();
            let balance = o.state.account(&liar).balance;
            assert!(
                balance.0 <= start.0 - bond.0 * lost.len() as u64 + 10 * Amount::UNITS_PER_TOKEN,
                "balance {balance} after {} lost challenges",
                lost.len()
            );
        },
    );
}

/// Unchecked results settle one verdict window of block time after they commit, at 20 ms
/// blocks and at 500 ms blocks alike; the same window spans many more blocks at the faster
/// rate.
#[test]
fn windows_hold_their_length_at_20_ms_and_500_ms_blocks() {
    let window = 5_000u64;
    let run = |interval: u64| {
        let spans = std::sync::Mutex::new(Vec::new());
        run_seeds(
            &format!("windows_hold_their_length_at_{interval}_ms_blocks"),
            1,
            |seed| {
                let mut s = scenario(seed, 6, "attest-tiny-1b", 0);
                s.params.verdict_window_ms = window;
                s.idle_block_interval_ms = Some(interval);
                // A fast network, so the idle interval sets the block rate.
                s.net.latency_ms = (1, 3);
                s
            },
            |o| {
                every_job_final(o);
                let mut measured = 0;
                for (id, c) in &o.job_clocks {
                    let (Some(committed), Some(closed)) = (c.committed, c.closed) else {
                        continue;
                    };
                    measured += 1;
                    let ms = closed.1 - committed.1;
                    // It settles in the first block whose time reaches the window's end.
                    assert!(ms >= window, "job {id}: settled {ms} ms after its commit");
                    assert!(
                        ms <= window + interval + 2_000,
                        "job {id}: settled {ms} ms after its commit at {interval} ms blocks"
                    );
                    let blocks = closed.0.0 - committed.0.0;
                    spans
                        .lock()
                        .expect("not poisoned")
                        .push((blocks, ms / blocks.max(1)));
                }
                assert!(measured >= 4, "only {measured} jobs measured");
            },
        );
        let mut spans = spans.into_inner().expect("not poisoned");
        spans.sort_unstable();
        spans[spans.len() / 2]
    };
    let (fast, fast_ms) = run(20);
    let (slow, slow_ms) = run(500);
    eprintln!(
        "a {window} ms window: median {fast} blocks of {fast_ms} ms at the 20 ms setting, \
         {slow} blocks of {slow_ms} ms at the 500 ms setting"
    );
    // The block intervals really differ as configured (jobs' transactions add blocks)...
    assert!(fast_ms <= 60, "blocks every {fast_ms} ms in the 20 ms run");
    assert!(
        slow_ms >= 250,
        "blocks every {slow_ms} ms in the 500 ms run"
    );
    // ...and so the same window spans many more blocks at the faster rate.
    assert!(
        fast >= 5 * slow,
        "a 5 s window spans {fast} blocks at 20 ms and {slow} at 500 ms"
    );
}
