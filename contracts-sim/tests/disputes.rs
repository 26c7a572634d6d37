//! Bisection disputes: divergence at the first, a middle and the last step, cheating
//! providers (a doctored trace, a lie about the output), lying checkers (a doctored trace, a
//! copied last leaf), bad moves and every missed deadline.

mod common;

use attest_contracts_sim::apply::disputes::rounds_for;
use attest_contracts_sim::{
    DisputeEnd, Event, JailReason, JobPhase, Params, SlashReason, StakeStatus, TxError,
};
use attest_protocol::tx::{Action, DisputeMove, DisputeStep, Unstake, VerdictOutcome};
use attest_protocol::workload;
use attest_protocol::{Amount, Bytes, Hash, JobId, Round};
use common::*;

/// Opens a job, commits `provider`'s trace, and has the checker disagree with `checker`'s.
fn disputed(p: Params, spec: &JobSpec, provider: &Trace, checker: &Trace) -> (Harness, JobId) {
    let mut h = Harness::new(genesis(p));
    let job = h.open(spec);
    h.commit(job, provider).unwrap();
    let events = h.verdict(CHECKER, job, checker.disagree()).unwrap();
    let rounds = rounds_for(spec.workload().step_count()).unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DisputeOpened { rounds: r, .. } if *r == rounds
    )));
    (h, job)
}

fn resolved(
    events: &[Event],
) -> (
    attest_protocol::AccountId,
    attest_protocol::AccountId,
    DisputeEnd,
) {
    events
        .iter()
        .find_map(|e| match e {
            Event::DisputeResolved {
                winner, loser, end, ..
            } => Some((*winner, *loser, *end)),
            _ => None,
        })
        .expect("the dispute resolved")
}

fn specs() -> Vec<JobSpec> {
    vec![
        // 88 steps: not a power of two, 7 rounds.
        JobSpec::tiny(),
        // 32 steps: a power of two, 5 rounds; divergence at the last step is never opened:
        // the commit and the verdict proved both last leaves.
        JobSpec {
            model: "attest-base-8b",
            input: Vec::new(),
            max_tokens: 1,
            ..JobSpec::tiny()
        },
    ]
}

/// The provider doctors one step and lets the change propagate: its commit is consistent
/// (the final activation it opens is its trace's last and ends in its output hash), so only
/// the dispute can catch it, at the step it doctored.
#[test]
fn cheating_provider_loses_at_the_first_divergent_step() {
    for spec in specs() {
        let steps = spec.workload().step_count();
        let honest = Trace::new(&spec, None);
        for i in [0, steps / 2, steps - 1] {
            let cheat = Trace::new(&spec, Some(i));
            let (mut h, job) = disputed(params(1_000_000), &spec, &cheat, &honest);
            let client_before = h.balance(CLIENT);
            let checker_before = h.balance(CHECKER);
            let checker_nonce = h.state.account(&id(CHECKER)).nonce.0;
            let (events, rounds) = h.play_dispute(job, &cheat, &honest);
            assert_eq!(rounds, rounds_for(steps).unwrap(), "steps {steps} i {i}");
            let (winner, loser, end) = resolved(&events);
            assert_eq!((winner, loser), (id(CHECKER), id(PROVIDER)), "i {i}");
            assert_eq!(end, DisputeEnd::Reexecuted { step: i }, "steps {steps}");
            // Half the stake slashed; at least 20% of it to the checker, the rest to the
            // treasury; the client refunded in full; the provider on probation.
            let slash = tokens(100);
            assert_eq!(h.stake_total(PROVIDER), tokens(100));
            let share = Amount(slash.0 / 5);
            let moves = h.state.account(&id(CHECKER)).nonce.0 - checker_nonce;
            let fees = moves * h.state.params().min_fee.0;
            assert_eq!(
                h.balance(CHECKER).0 + fees,
                checker_before.0 + share.0,
                "i {i}"
            );
            assert_eq!(
                h.balance(CLIENT),
                Amount(client_before.0 + spec.escrow(h.state.params()).0)
            );
            assert_eq!(h.state.treasury(), Amount(slash.0 - share.0));
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::ProbationStarted { .. }))
            );
            assert_eq!(h.state.job(&job).unwrap().phase, JobPhase::Refunded);
        }
    }
}

/// The checker's trace is the doctored one: it disagrees with a genuinely different last leaf,
/// loses at the step it doctored and is slashed.
#[test]
fn lying_checker_loses_and_the_honest_provider_is_paid() {
    for spec in specs() {
        let steps = spec.workload().step_count();
        let honest = Trace::new(&spec, None);
        for i in [0, steps / 2, steps - 1] {
            let liar = Trace::new(&spec, Some(i));
            let (mut h, job) = disputed(params(1_000_000), &spec, &honest, &liar);
            let (events, rounds) = h.play_dispute(job, &honest, &liar);
            assert_eq!(rounds, rounds_for(steps).unwrap());
            let (winner, loser, end) = resolved(&events);
            assert_eq!((winner, loser), (id(PROVIDER), id(CHECKER)));
            assert_eq!(end, DisputeEnd::Reexecuted { step: i });
            assert_eq!(h.stake_total(CHECKER), tokens(100));
            assert_eq!(
                h.stake_total(PROVIDER),
                tokens(200),
                "honest provider slashed"
            );
            // The winner's share of the lying checker's slash counts as earned, and its
            // record shows what the slash took from the loser.
            let taken = h.state.record(&id(CHECKER)).slashed;
            assert_eq!(taken, tokens(100));
            assert!(h.state.record(&id(PROVIDER)).earned.0 >= taken.0 / 5);
            // Each side's record counts the dispute once.
            let (won, lost) = (h.state.record(&id(PROVIDER)), h.state.record(&id(CHECKER)));
            assert_eq!((won.disputes_won, won.disputes_lost), (1, 0));
            assert_eq!((lost.disputes_won, lost.disputes_lost), (0, 1));
            assert!(events.iter().any(|e| matches!(
                e,
                Event::Settled {
                    checker_paid: None,
                    ..
                }
            )));
            assert!(h.slashes.iter().all(|s| s.who != id(PROVIDER)));
        }
    }
}

/// A cheat is refused before any dispute: the honest provider commits, the checker's
/// alternative trace keeps the provider's last leaf.
#[test]
fn a_checker_that_copies_the_last_leaf_cannot_open_a_dispute() {
    for spec in specs() {
        let honest = Trace::new(&spec, None);
        // The lying checker doctors an intermediate leaf and keeps the honest last one.
        let liar = Trace::doctored(&spec, 10);
        assert_ne!(liar.root(), honest.root());
        let mut h = Harness::new(genesis(params(1_000_000)));
        let job = h.open(&spec);
        h.commit(job, &honest).unwrap();
        let err = h.verdict(CHECKER, job, liar.disagree()).unwrap_err();
        assert!(
            matches!(err, TxError::DisagreementWithoutDifference { .. }),
            "{err:?}"
        );
        // Nor can it claim a different last leaf its root does not hold.
        let forged = VerdictOutcome::Disagree {
            trace_root: liar.root(),
            final_leaf: Hash([0x66; 32]),
            final_proof: liar.tree.prove(liar.steps() - 1).unwrap(),
        };
        let err = h.verdict(CHECKER, job, forged).unwrap_err();
        assert!(matches!(err, TxError::BadFinalProof { .. }), "{err:?}");
        // It can only agree or stay silent; silent, it is penalized and the provider is paid.
        let deadline = h.state.job(&job).unwrap().phase.deadline_ms().unwrap();
        let events = h.run_to(deadline / BLOCK_MS);
        assert!(h.dispute(&job).is_none());
        assert!(events.contains(&Event::VerdictMissed {
            job,
            checker: id(CHECKER),
        }));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Settled { provider_paid, .. } if provider_paid.0 > 0))
        );
        assert_eq!(h.stake_total(PROVIDER), tokens(200));
        assert!(h.slashes.iter().all(|s| s.who != id(PROVIDER)));
    }
}

#[test]
fn a_wrong_output_hash_is_refused_at_commit() {
    // The provider computed honestly but commits the hash of another output: the final
    // activation it opens ends in the true accumulator, not in the claimed hash.
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(1_000_000)));
    let job = h.open(&spec);
    let mut lie = honest.commit(job);
    lie.output_hash = workload::output_hash(b"xx");
    assert_ne!(lie.output_hash, honest.exec.output_hash);
    let err = h.send(PROVIDER, Action::CommitResult(lie)).unwrap_err();
    let TxError::OutputHashMismatch { accumulator, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(accumulator, honest.exec.output_hash);
    assert!(matches!(
        h.state.job(&job).unwrap().phase,
        JobPhase::Open { .. }
    ));
    h.commit(job, &honest).unwrap();
}

#[test]
fn a_provider_that_lies_about_its_output_is_slashed() {
    // The provider makes its lie consistent: its last step's accumulator is the hash it
    // claims. The commit is accepted; the last leaf differs from the honest one, every
    // earlier leaf agrees, and the referee re-executes the last step.
    for spec in specs() {
        let steps = spec.workload().step_count();
        let honest = Trace::new(&spec, None);
        let liar = Trace::wrong_output(&spec, workload::output_hash(b"x"));
        assert_ne!(liar.exec.output_hash, honest.exec.output_hash);
        let (mut h, job) = disputed(params(1_000_000), &spec, &liar, &honest);
        let client_before = h.balance(CLIENT);
        let (events, rounds) = h.play_dispute(job, &liar, &honest);
        assert_eq!(rounds, rounds_for(steps).unwrap());
        let (winner, loser, end) = resolved(&events);
        assert_eq!((winner, loser), (id(CHECKER), id(PROVIDER)));
        assert_eq!(end, DisputeEnd::Reexecuted { step: steps - 1 });
        assert_eq!(h.stake_total(PROVIDER), tokens(100));
        assert_eq!(
            h.balance(CLIENT),
            Amount(client_before.0 + spec.escrow(h.state.params()).0)
        );
        assert_eq!(h.state.job(&job).unwrap().phase, JobPhase::Refunded);
    }
}

#[test]
fn divergence_at_step_zero_is_decided_by_the_last_opening() {
    // With lo = -1 the referee starts from the initial activation: no resolution phase.
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(0));
    let (mut h, job) = disputed(params(1_000_000), &spec, &cheat, &honest);
    for round in 0..7 {
        let (p, c) = (h.open_move(job, &cheat), h.open_move(job, &honest));
        h.send(PROVIDER, p).unwrap();
        let events = h.send(CHECKER, c).unwrap();
        let decided = events
            .iter()
            .any(|e| matches!(e, Event::DisputeResolved { .. }));
        assert_eq!(decided, round == 6, "round {round}");
    }
    assert!(h.dispute(&job).is_none());
    assert_eq!(h.stake_total(PROVIDER), tokens(100));
}

/// Plays the dispute until round `round` (bisection or resolution), then lets only `mover`
/// (if any) act and runs past the deadline. Returns the resolution.
fn miss_round(
    spec: &JobSpec,
    provider: &Trace,
    checker: &Trace,
    round: u32,
    mover: Option<u8>,
) -> (
    attest_protocol::AccountId,
    attest_protocol::AccountId,
    DisputeEnd,
) {
    let (mut h, job) = disputed(params(1_000_000), spec, provider, checker);
    loop {
        let d = h.dispute(&job).expect("still disputed");
        if d.round == round {
            break;
        }
        let (p, c) = (h.open_move(job, provider), h.open_move(job, checker));
        h.send(PROVIDER, p).unwrap();
        h.send(CHECKER, c).unwrap();
        h.next_block();
    }
    let d = h.dispute(&job).unwrap();
    match mover {
        Some(PROVIDER) => {
            let m = h.open_move(job, provider);
            h.send(PROVIDER, m).unwrap();
        }
        Some(_) if d.round < d.rounds => {
            let m = h.open_move(job, checker);
            h.send(CHECKER, m).unwrap();
        }
        Some(_) => {
            let m = h.witness_move(job, checker);
            h.send(CHECKER, m).unwrap();
        }
        None => {}
    }
    let events = h.run_to(d.deadline_ms / BLOCK_MS);
    assert!(h.dispute(&job).is_none(), "the deadline ends the dispute");
    resolved(&events)
}

#[test]
fn a_party_that_misses_a_round_loses() {
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(40));
    for round in 0..7 {
        let end = DisputeEnd::MissedRound {
            round: Round(round),
        };
        // The checker moves, the provider does not.
        let r = miss_round(&spec, &cheat, &honest, round, Some(CHECKER));
        assert_eq!(r, (id(CHECKER), id(PROVIDER), end), "round {round}");
        // The provider moves, the checker does not.
        let r = miss_round(&spec, &cheat, &honest, round, Some(PROVIDER));
        assert_eq!(r, (id(PROVIDER), id(CHECKER), end), "round {round}");
    }
    // Both miss: the provider loses.
    let r = miss_round(&spec, &cheat, &honest, 3, None);
    assert_eq!(r.1, id(PROVIDER));
}

#[test]
fn missed_resolution_phase_loses() {
    // The challenger withholds the witness.
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(40));
    let r = miss_round(&spec, &cheat, &honest, 7, None);
    assert_eq!(
        r,
        (
            id(PROVIDER),
            id(CHECKER),
            DisputeEnd::MissedRound { round: Round(7) }
        )
    );
    // With 32 steps and divergence at the last, no round opens step 31: the witness of
    // step 30 is still the challenger's to give.
    let spec = &specs()[1];
    let honest = Trace::new(spec, None);
    let cheat = Trace::new(spec, Some(31));
    let r = miss_round(spec, &cheat, &honest, 5, None);
    assert_eq!(
        r,
        (
            id(PROVIDER),
            id(CHECKER),
            DisputeEnd::MissedRound { round: Round(5) }
        )
    );
}

#[test]
fn bad_moves_are_refused() {
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(40));
    let (mut h, job) = disputed(params(1_000_000), &spec, &cheat, &honest);
    let good = h.open_move(job, &cheat);
    let Action::Dispute(good_move) = good.clone() else {
        unreachable!()
    };
    let DisputeStep::Open { index, .. } = good_move.step.clone() else {
        unreachable!()
    };
    let with = |step: DisputeStep, round: u32| {
        Action::Dispute(DisputeMove {
            job,
            round: Round(round),
            step,
        })
    };
    let other_index = index + 1;
    let cases: Vec<(&str, u8, Action, Expect)> = vec![
        (
            "wrong index",
            PROVIDER,
            with(
                DisputeStep::Open {
                    index: other_index,
                    leaf: cheat.leaf(other_index),
                    proof: cheat.tree.prove(other_index).unwrap(),
                },
                0,
            ),
            |e| matches!(e, TxError::WrongIndex { .. }),
        ),
        (
            "bad proof",
            PROVIDER,
            with(
                DisputeStep::Open {
                    index,
                    leaf: Hash([1; 32]),
                    proof: cheat.tree.prove(index).unwrap(),
                },
                0,
            ),
            |e| matches!(e, TxError::BadProof { .. }),
        ),
        ("the other party's leaf", CHECKER, good.clone(), |e| {
            matches!(e, TxError::BadProof { .. })
        }),
        (
            "wrong round",
            PROVIDER,
            with(good_move.step.clone(), 1),
            |e| matches!(e, TxError::WrongRound { .. }),
        ),
        ("not a party", CLIENT, good.clone(), |e| {
            matches!(e, TxError::NotDisputeParty { .. })
        }),
        (
            "witness during bisection",
            CHECKER,
            with(
                DisputeStep::Witness {
                    activation: Bytes::new(vec![0; 32]).unwrap(),
                },
                0,
            ),
            |e| matches!(e, TxError::UnexpectedMove { .. }),
        ),
    ];
    for (name, who, action, expected) in cases {
        let err = h.send(who, action).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
    h.send(PROVIDER, good.clone()).unwrap();
    let err = h.send(PROVIDER, good).unwrap_err();
    assert!(matches!(err, TxError::AlreadyMoved { .. }));
}

#[test]
fn bad_resolution_moves_are_refused() {
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(40));
    let (mut h, job) = disputed(params(1_000_000), &spec, &cheat, &honest);
    while h.dispute(&job).unwrap().round < 7 {
        let (p, c) = (h.open_move(job, &cheat), h.open_move(job, &honest));
        h.send(PROVIDER, p).unwrap();
        h.send(CHECKER, c).unwrap();
    }
    let d = h.dispute(&job).unwrap();
    assert_eq!(d.lo, Some(39));
    let witness = |act: Vec<u8>| {
        Action::Dispute(DisputeMove {
            job,
            round: Round(7),
            step: DisputeStep::Witness {
                activation: Bytes::new(act).unwrap(),
            },
        })
    };
    let err = h
        .send(PROVIDER, witness(honest.activations[39].clone()))
        .unwrap_err();
    assert!(matches!(err, TxError::UnexpectedMove { .. }));
    let err = h
        .send(CHECKER, witness(honest.activations[38].clone()))
        .unwrap_err();
    assert!(matches!(err, TxError::WitnessMismatch { index: 39, .. }));
    let err = h.send(CHECKER, witness(vec![0; 10])).unwrap_err();
    assert!(matches!(err, TxError::WitnessWidth { got: 10, .. }));
    // The bisection is over: nobody opens leaves any more.
    for (who, trace) in [(PROVIDER, &cheat), (CHECKER, &honest)] {
        let err = h.send(who, h.open_move(job, trace)).unwrap_err();
        assert!(matches!(err, TxError::UnexpectedMove { .. }));
    }
    let events = h
        .send(CHECKER, witness(honest.activations[39].clone()))
        .unwrap();
    assert_eq!(
        resolved(&events),
        (
            id(CHECKER),
            id(PROVIDER),
            DisputeEnd::Reexecuted { step: 40 }
        )
    );
}

#[test]
fn unbonding_stake_is_still_slashed() {
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(0));
    let (mut h, job) = disputed(params(1_000_000), &spec, &cheat, &honest);
    h.send(
        PROVIDER,
        Action::Unstake(Unstake {
            amount: tokens(150),
        }),
    )
    .unwrap();
    h.play_dispute(job, &cheat, &honest);
    let entry = h.state.stake(&id(PROVIDER)).unwrap();
    assert_eq!(entry.bonded, Amount::ZERO);
    assert_eq!(entry.unbonding[0].amount, tokens(100));
}

#[test]
fn probation_then_ban() {
    let p = params(100_000);
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let cheat = Trace::new(&spec, Some(5));
    let mut h = Harness::new(genesis(p.clone()));
    // First job: steered into a check, the provider cheats and loses.
    let job = h.open(&spec);
    h.steer_draw(&job, p.check_probability_ppm, true);
    h.commit(job, &cheat).unwrap();
    h.verdict(CHECKER, job, honest.disagree()).unwrap();
    h.play_dispute(job, &cheat, &honest);
    assert_eq!(h.state.stake(&id(PROVIDER)).unwrap().probation_left, 20);
    // Second job: the draw says "no check", probation checks it anyway.
    let job = h.open(&spec);
    h.steer_draw(&job, p.check_probability_ppm, false);
    let events = h.commit(job, &cheat).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ResultCommitted { selected: true, .. }))
    );
    assert_eq!(h.state.stake(&id(PROVIDER)).unwrap().probation_left, 19);
    h.verdict(CHECKER, job, honest.disagree()).unwrap();
    let (events, _) = h.play_dispute(job, &cheat, &honest);
    assert!(events.contains(&Event::Jailed {
        who: id(PROVIDER),
        reason: JailReason::SecondLostDispute,
    }));
    assert_eq!(
        h.state.stake(&id(PROVIDER)).unwrap().status,
        StakeStatus::Banned
    );
    let err = h
        .send(CLIENT, Action::OpenJob(spec.open_job()))
        .unwrap_err();
    assert!(matches!(err, TxError::ProviderNotEligible { .. }));
    let lost: Vec<_> = h
        .slashes
        .iter()
        .filter(|s| matches!(s.reason, SlashReason::DisputeLost { .. }))
        .collect();
    assert_eq!(lost.len(), 2);
}
