//! Market scenarios in the deterministic simulator: real `NodeCore`s run jobs on the
//! simulated accelerator, check each other's results, play disputes and slash cheaters, on a
//! virtual clock with a seeded network. Each test runs a few seeds (more with
//! `ATTEST_SIM_SEEDS=N`) and a failure prints the seed that replays it (`ATTEST_SIM_SEED=S`).

use attest_contracts_sim::apply::disputes::rounds_for;
use attest_contracts_sim::{JobPhase, Params, SlashReason, StakeStatus};
use attest_core::accel::{Cheat, CheatMode, RATE_ONE_PPM};
use attest_core::market::MarketConfig;
use attest_protocol::AccountId;
use attest_tests::rng::Rng;
use attest_tests::runner::run_seeds;
use attest_tests::scenario::{JobTraffic, NetFaults, Scenario};
use attest_tests::sim::{Outcome, validator_key};

/// Windows of 10 s of block time: a window must outlast a sync round trip of a party that
/// fell behind (a lost sync request costs 1.5 s here) and a re-execution. A high check rate,
/// so a run of tens of jobs catches a cheater more than once.
fn market_params(check_ppm: u32) -> Params {
    Params {
        check_probability_ppm: check_ppm,
        verdict_window_ms: 10_000,
        dispute_round_ms: 10_000,
        ..Params::default()
    }
}

/// `n` nodes (4 to 6), a steady stream of `jobs` jobs, lossy-ish network.
fn market(seed: u64, jobs: u64, check_ppm: u32) -> Scenario {
    market_of(seed, 4 + Rng::fork(seed, 0x3A4).index(3), jobs, check_ppm)
}

/// [`market`] with `n` nodes.
fn market_of(seed: u64, n: usize, jobs: u64, check_ppm: u32) -> Scenario {
    let mut s = Scenario::honest(seed, n);
    s.tx_interval_ms = Some((400, 1_500));
    s.params = market_params(check_ppm);
    s.jobs = Some(JobTraffic {
        count: jobs,
        ..JobTraffic::default()
    });
    s.net = NetFaults {
        latency_ms: (2, 30),
        drop_ppm: 20_000,
        ..NetFaults::default()
    };
    // Long enough for the last job to settle after its verdict window or dispute.
    s.target_height = 90;
    s
}

fn cheat(mode: CheatMode, rate_ppm: u32) -> MarketConfig {
    MarketConfig {
        serve: true,
        watch_rate_ppm: 0,
        danger_cheat: Some(Cheat { mode, rate_ppm }),
        danger_false_verdicts: None,
        advert: None,
    }
}

fn account(i: usize) -> AccountId {
    validator_key(i).public()
}

/// Every job the clients opened is final; none is still open, committed or disputed.
fn every_job_final(o: &Outcome) {
    let jobs: Vec<_> = o.state.jobs().collect();
    // A client whose job names a provider banned before it commits replaces it with a
    // transfer (see `clients`), so a few opened jobs may never reach the ledger.
    assert!(
        jobs.len() as u64 * 10 >= o.jobs_opened * 8,
        "only {} of {} opened jobs reached the ledger",
        jobs.len(),
        o.jobs_opened
    );
    for (id, job) in &jobs {
        assert!(
            job.phase.is_final(),
            "job {id} is still {}",
            job.phase.name()
        );
    }
}

/// Every dispute took exactly ceil(log2 L) rounds.
fn disputes_take_log_rounds(o: &Outcome) {
    for (id, clock) in &o.job_clocks {
        if clock.dispute_opened.is_none() {
            continue;
        }
        let steps = o
            .state
            .job(id)
            .expect("a measured job is on the ledger")
            .step_count;
        let want = rounds_for(steps).expect("a job has steps");
        assert_eq!(
            clock.dispute_rounds, want,
            "job {id}: {} dispute rounds for {steps} steps",
            clock.dispute_rounds
        );
        assert!(
            clock.dispute_resolved.is_some(),
            "job {id}: dispute unresolved"
        );
    }
}

fn slashed(o: &Outcome) -> Vec<(AccountId, &SlashReason)> {
    o.slashes.iter().map(|(who, r)| (*who, r)).collect()
}

#[test]
fn honest_market_settles_every_job_without_disputes() {
    run_seeds(
        "honest_market_settles_every_job_without_disputes",
        3,
        |seed| market(seed, 30, 300_000),
        |o| {
            every_job_final(o);
            assert!(
                o.jobs_opened >= 20,
                "too few jobs opened: {}",
                o.jobs_opened
            );
            let settled = o
                .state
                .jobs()
                .filter(|(_, j)| j.phase == JobPhase::Settled)
                .count() as u64;
            assert_eq!(settled, o.jobs_opened, "every honest job settles");
            // Each job's gateway fetched its output from the provider and checked it
            // against the ledger (a job re-sent through a second node has two gateways).
            let gateways = o.gateway_stats.iter().flatten();
            let (verified, rejected) =
                gateways.fold((0, 0), |(v, r), g| (v + g.verified, r + g.rejected));
            assert!(
                verified >= settled,
                "{verified} outputs verified for {settled} jobs"
            );
            assert_eq!(rejected, 0);
            // Every node heard every provider's advert (its own included).
            let n = o.heights.len();
            assert!(
                o.advert_books.iter().flatten().all(|b| *b == n),
                "advert books: {:?}",
                o.advert_books
            );
            assert!(o.slashes.is_empty(), "slashes: {:?}", slashed(o));
            let checked = o
                .job_clocks
                .iter()
                .filter(|(_, c)| c.verdict.is_some())
                .count();
            let disputes = o
                .job_clocks
                .iter()
                .filter(|(_, c)| c.dispute_opened.is_some())
                .count();
            assert_eq!(disputes, 0);
            // p = 0.3 over 20+ jobs: no check at all has chance 0.7^20 < 0.1%.
            assert!(checked > 0, "no job was checked");
            for (id, c) in &o.job_clocks {
                if let Some((_, _, agree)) = c.verdict {
                    assert!(agree, "job {id}: an honest checker disagreed");
                    assert!(c.validation_latency_ms().is_some());
                }
            }
        },
    );
}

/// A provider cheating on every job, in each mode: caught, slashed, on probation after its
/// first lost dispute and banned after its second; its cheated clients refunded; no honest
/// node slashed; every dispute exactly ceil(log2 L) rounds.
fn caught_at_full_rate(name: &str, mode: CheatMode) {
    run_seeds(
        name,
        2,
        |seed| {
            let mut s = market(seed, 60, 500_000);
            s.markets[0] = cheat(mode, RATE_ONE_PPM);
            // Clients pick providers at random: the market's reputation ranking would shun
            // the cheater after its first loss, and this test is about its second.
            if let Some(jobs) = s.jobs.as_mut() {
                jobs.via_gateway = false;
            }
            s
        },
        |o| {
            every_job_final(o);
            disputes_take_log_rounds(o);
            let cheater = account(0);
            for (who, reason) in slashed(o) {
                assert_eq!(who, cheater, "an honest node was slashed: {reason:?}");
                assert!(
                    matches!(reason, SlashReason::DisputeLost { .. }),
                    "{reason:?}"
                );
            }
            let stake = o.state.stake(&cheater).expect("the cheater is staked");
            assert!(
                stake.disputes_lost >= 2,
                "lost only {} disputes",
                stake.disputes_lost
            );
            assert_eq!(stake.status, StakeStatus::Banned);
            // Every job of the cheater that ended in a lost dispute refunded its client.
            for (id, clock) in &o.job_clocks {
                let job = o.state.job(id).expect("on the ledger");
                if job.provider == cheater && clock.dispute_resolved.is_some() {
                    assert_eq!(job.phase, JobPhase::Refunded, "job {id}");
                }
            }
        },
    );
}

#[test]
fn a_lazy_provider_is_caught_and_banned() {
    caught_at_full_rate("a_lazy_provider_is_caught_and_banned", CheatMode::Lazy);
}

#[test]
fn a_truncating_provider_is_caught_and_banned() {
    caught_at_full_rate(
        "a_truncating_provider_is_caught_and_banned",
        CheatMode::Truncate,
    );
}

#[test]
fn a_flipping_provider_is_caught_and_banned() {
    caught_at_full_rate("a_flipping_provider_is_caught_and_banned", CheatMode::Flip);
}

/// At rate 0.1 a cheater cheats on a tenth of its jobs: every cheat that is checked is
/// caught, nothing honest is slashed, and its honest jobs settle.
#[test]
fn a_provider_cheating_on_a_tenth_of_its_jobs_is_caught_when_checked() {
    run_seeds(
        "a_provider_cheating_on_a_tenth_of_its_jobs_is_caught_when_checked",
        2,
        |seed| {
            let mut s = market(seed, 60, 1_000_000);
            s.markets[0] = cheat(CheatMode::Flip, 100_000);
            s
        },
        |o| {
            every_job_final(o);
            disputes_take_log_rounds(o);
            let cheater = account(0);
            for (who, reason) in slashed(o) {
                assert_eq!(who, cheater, "an honest node was slashed: {reason:?}");
            }
            // With p = 1 every cheat is checked: each disagreeing verdict is a lost dispute.
            let disagreed = o
                .job_clocks
                .iter()
                .filter(|(_, c)| matches!(c.verdict, Some((_, _, false))))
                .count();
            let lost = o.state.stake(&cheater).map_or(0, |s| s.disputes_lost);
            assert_eq!(
                disagreed as u32, lost,
                "every disagreement ends in a lost dispute"
            );
        },
    );
}

/// A checker that disagrees falsely loses the dispute against an honest provider and is
/// slashed; the honest provider is paid.
#[test]
fn a_lying_checker_loses_its_disputes() {
    run_seeds(
        "a_lying_checker_loses_its_disputes",
        2,
        |seed| {
            let mut s = market(seed, 30, 1_000_000);
            // The dearest advert: it seldom provides, so it checks often.
            let liar = s.len() - 1;
            s.markets[liar].danger_false_verdicts = Some(Cheat {
                mode: CheatMode::Flip,
                rate_ppm: RATE_ONE_PPM,
            });
            s
        },
        |o| {
            every_job_final(o);
            disputes_take_log_rounds(o);
            let liar = account(o.heights.len() - 1);
            let slashes = slashed(o);
            assert!(!slashes.is_empty(), "the liar was never slashed");
            for (who, reason) in slashes {
                assert_eq!(who, liar, "an honest node was slashed: {reason:?}");
            }
            // The honest providers' jobs it disputed still settled.
            for (id, clock) in &o.job_clocks {
                if clock.dispute_resolved.is_some() {
                    let job = o.state.job(id).expect("on the ledger");
                    assert_eq!(job.phase, JobPhase::Settled, "job {id}");
                }
            }
        },
    );
}

/// A provider that crashes while it has jobs: the deadline refunds their clients; a checker
/// that is down when its check comes is replaced.
#[test]
fn a_crashed_provider_refunds_and_a_silent_checker_is_replaced() {
    run_seeds(
        "a_crashed_provider_refunds_and_a_silent_checker_is_replaced",
        2,
        |seed| {
            let mut s = market(seed, 40, 1_000_000);
            // The cheapest provider, which gets most jobs, is down for ~25 s in the middle of
            // the job stream, far past any commit deadline and verdict window.
            s = s.crash(3_000, 0, None, 25_000);
            s.target_height = 120;
            s
        },
        |o| {
            every_job_final(o);
            let down = account(0);
            let missed_commit = slashed(o)
                .iter()
                .filter(|(w, r)| *w == down && matches!(r, SlashReason::MissedCommit { .. }))
                .count();
            let refunded = o
                .state
                .jobs()
                .filter(|(_, j)| j.provider == down && j.phase == JobPhase::Refunded)
                .count();
            assert_eq!(
                missed_commit, refunded,
                "each missed commit refunds its client"
            );
            let missed_verdict = slashed(o)
                .iter()
                .filter(|(w, r)| *w == down && matches!(r, SlashReason::MissedVerdict { .. }))
                .count();
            assert!(
                missed_commit + missed_verdict > 0,
                "the crash missed nothing: the scenario tests nothing"
            );
            for (who, reason) in slashed(o) {
                assert_eq!(who, down, "only the crashed node is penalised: {reason:?}");
            }
        },
    );
}

/// Five staked nodes, three validators (`max_validators`): the two outside the set follow the
/// chain to the target height (the simulator requires it of every honest node), provide jobs
/// that settle and check others' results.
#[test]
fn providers_outside_the_validator_set_provide_and_check() {
    run_seeds(
        "providers_outside_the_validator_set_provide_and_check",
        2,
        |seed| {
            let mut s = market_of(seed, 5, 40, 1_000_000);
            s.params.max_validators = 3;
            // Providers drawn uniformly, not ranked by a gateway (which favours the first
            // to build a record), so every provider gets jobs.
            if let Some(jobs) = s.jobs.as_mut() {
                jobs.via_gateway = false;
            }
            s
        },
        |o| {
            every_job_final(o);
            let validators: Vec<AccountId> = o.state.validators().map(|(a, _)| a).collect();
            assert_eq!(validators.len(), 3, "{validators:?}");
            let outside: Vec<AccountId> = (0..5)
                .map(account)
                .filter(|a| !validators.contains(a))
                .collect();
            assert_eq!(outside.len(), 2);
            for a in &outside {
                let settled = o.state.record(a).provided.settled;
                assert!(settled > 0, "{a} outside the set provided no settled job");
            }
            let checked_by_outside = o
                .state
                .jobs()
                .filter(|(_, j)| {
                    matches!(j.review, attest_contracts_sim::Review::Agreed { checker }
                        if outside.contains(&checker))
                })
                .count();
            assert!(
                checked_by_outside > 0,
                "nobody outside the set checked a job"
            );
            assert!(o.slashes.is_empty(), "slashes: {:?}", slashed(o));
        },
    );
}
