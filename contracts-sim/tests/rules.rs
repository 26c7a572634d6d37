//! Table-driven tests, one group per rule family.

mod common;

use attest_contracts_sim::{
    Event, Genesis, GenesisError, JobPhase, Params, RefundReason, SlashReason, State, TxError,
};
use attest_protocol::tx::{
    Action, CheckLevel, CommitResult, Stake, Transfer, Unstake, VerdictOutcome,
};
use attest_protocol::workload;
use attest_protocol::{Amount, Bytes, Hash, Height, JobId, Nonce, Signed, Tx};
use common::*;

type GenesisExpect = fn(&GenesisError) -> bool;
type Tweak = fn(&mut JobSpec) -> u8;
type CommitTweak = fn(CommitResult) -> CommitResult;
type Outcome = fn(&Trace) -> VerdictOutcome;

fn transfer(to: u8, amount: u64) -> Action {
    Action::Transfer(Transfer {
        to: id(to),
        amount: Amount(amount),
    })
}

#[test]
fn transfer_moves_tokens_and_pays_the_proposer() {
    let mut h = Harness::new(genesis(params(0)));
    let fee = h.state.params().min_fee;
    let events = h.send(CLIENT, transfer(OTHER, 5_000)).unwrap();
    assert_eq!(h.balance(CLIENT), Amount(tokens(1_000).0 - 5_000 - fee.0));
    assert_eq!(h.balance(OTHER), Amount(tokens(10).0 + 5_000));
    assert_eq!(h.balance(PROPOSER), fee);
    assert_eq!(h.state.account(&id(CLIENT)).nonce, Nonce(1));
    assert!(matches!(events[0], Event::FeePaid { .. }));
    assert!(matches!(events[1], Event::Transfer { .. }));
}

#[test]
fn account_rule_refusals() {
    let cases: Vec<(&str, u8, u64, u64, Action, Expect)> = vec![
        (
            "nonce from the future",
            CLIENT,
            1,
            1_000,
            transfer(OTHER, 1),
            |e| {
                matches!(
                    e,
                    TxError::BadNonce {
                        expected: Nonce(0),
                        got: Nonce(1),
                        ..
                    }
                )
            },
        ),
        (
            "fee below minimum",
            CLIENT,
            0,
            999,
            transfer(OTHER, 1),
            |e| matches!(e, TxError::FeeTooLow { .. }),
        ),
        (
            "more than the balance",
            OTHER,
            0,
            1_000,
            transfer(CLIENT, tokens(10).0),
            |e| matches!(e, TxError::InsufficientBalance { .. }),
        ),
        (
            "unknown account cannot pay the fee",
            77,
            0,
            1_000,
            transfer(CLIENT, 1),
            |e| matches!(e, TxError::InsufficientBalance { .. }),
        ),
        ("zero transfer", CLIENT, 0, 1_000, transfer(OTHER, 0), |e| {
            matches!(e, TxError::ZeroAmount { .. })
        }),
    ];
    for (name, who, nonce, fee, action, expected) in cases {
        let mut h = Harness::new(genesis(params(0)));
        let body = Tx {
            nonce: Nonce(nonce),
            fee: Amount(fee),
            action,
        };
        let tx = Signed::sign(&chain(), &key(who), body)
            .verify(&chain())
            .unwrap();
        let err = h.apply(&tx).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
}

#[test]
fn a_replayed_transaction_is_refused() {
    let mut h = Harness::new(genesis(params(0)));
    let tx = h.sign(CLIENT, transfer(OTHER, 1));
    h.apply(&tx).unwrap();
    assert!(matches!(h.apply(&tx), Err(TxError::BadNonce { .. })));
}

fn stake_action(account: u8, node: u8, amount: Amount) -> Action {
    Action::Stake(Stake::new(
        &chain(),
        &node_key(node),
        id(account),
        amount,
        big_device(),
    ))
}

#[test]
fn stake_rule_refusals() {
    let cases: Vec<(&str, u8, Action, Expect)> = vec![
        (
            "binding signed for another account",
            OTHER,
            Action::Stake(Stake::new(
                &chain(),
                &node_key(OTHER),
                id(CLIENT),
                tokens(1),
                big_device(),
            )),
            |e| matches!(e, TxError::BadNodeBinding { .. }),
        ),
        (
            "node bound to another account",
            OTHER,
            {
                let mut s = Stake::new(
                    &chain(),
                    &node_key(PROVIDER),
                    id(OTHER),
                    tokens(1),
                    big_device(),
                );
                s.amount = tokens(1);
                Action::Stake(s)
            },
            |e| matches!(e, TxError::NodeTaken { .. }),
        ),
        (
            "a second node for one account",
            PROVIDER,
            stake_action(PROVIDER, OTHER, tokens(1)),
            |e| matches!(e, TxError::NodeMismatch { .. }),
        ),
        (
            "zero stake",
            OTHER,
            stake_action(OTHER, OTHER, Amount::ZERO),
            |e| matches!(e, TxError::ZeroAmount { .. }),
        ),
        (
            "stake beyond the balance",
            OTHER,
            stake_action(OTHER, OTHER, tokens(11)),
            |e| matches!(e, TxError::InsufficientBalance { .. }),
        ),
        (
            "unstake without stake",
            OTHER,
            Action::Unstake(Unstake { amount: tokens(1) }),
            |e| matches!(e, TxError::NotStaked { .. }),
        ),
        (
            "unstake beyond the bonded stake",
            PROVIDER,
            Action::Unstake(Unstake {
                amount: tokens(201),
            }),
            |e| matches!(e, TxError::InsufficientStake { .. }),
        ),
    ];
    for (name, who, action, expected) in cases {
        let mut h = Harness::new(genesis(params(0)));
        let err = h.send(who, action).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
}

#[test]
fn stake_unbond_and_release() {
    let mut h = Harness::new(genesis(params(0)));
    h.send(OTHER, stake_action(OTHER, OTHER, tokens(5)))
        .unwrap();
    assert_eq!(
        h.state.node_account(&node_key(OTHER).public()),
        Some(&id(OTHER))
    );
    assert_eq!(h.stake_total(OTHER), tokens(5));
    let events = h
        .send(OTHER, Action::Unstake(Unstake { amount: tokens(2) }))
        .unwrap();
    let release_at = match events[1] {
        Event::Unbonding { release_at_ms, .. } => release_at_ms,
        ref e => panic!("unexpected {e:?}"),
    };
    assert_eq!(release_at, BLOCK_MS + h.state.params().unbonding_ms);
    // Still counted as stake (slashable) until released.
    assert_eq!(h.stake_total(OTHER), tokens(5));
    let before = h.balance(OTHER);
    let events = h.run_to(release_at / BLOCK_MS);
    assert!(events.contains(&Event::Released {
        who: id(OTHER),
        amount: tokens(2),
    }));
    assert_eq!(h.balance(OTHER), Amount(before.0 + tokens(2).0));
    assert_eq!(h.stake_total(OTHER), tokens(3));
}

#[test]
fn unbonding_entries_are_bounded() {
    let mut h = Harness::new(genesis(params(0)));
    for _ in 0..attest_contracts_sim::state::MAX_UNBONDING_ENTRIES {
        h.send(PROVIDER, Action::Unstake(Unstake { amount: Amount(1) }))
            .unwrap();
    }
    let err = h
        .send(PROVIDER, Action::Unstake(Unstake { amount: Amount(1) }))
        .unwrap_err();
    assert!(matches!(err, TxError::TooManyUnbonding { .. }));
}

#[test]
fn genesis_refusals() {
    let base = genesis(params(0));
    let mut dup_balance = base.clone();
    dup_balance.balances.push((id(CLIENT), tokens(1)));
    let mut dup_stake = base.clone();
    dup_stake.stakes.push((
        id(PROVIDER),
        node_key(OTHER).public(),
        tokens(1),
        big_device(),
    ));
    let mut dup_node = base.clone();
    dup_node.stakes.push((
        id(OTHER),
        node_key(PROVIDER).public(),
        tokens(1),
        big_device(),
    ));
    let mut overflow = base.clone();
    overflow.balances.push((id(OTHER + 1), Amount(u64::MAX)));
    let mut bad_params = base.clone();
    bad_params.params.winner_share_ppm = 100_000;
    let cases: Vec<(&str, Genesis, GenesisExpect)> = vec![
        ("duplicate balance", dup_balance, |e| {
            matches!(e, GenesisError::DuplicateBalance { .. })
        }),
        ("duplicate stake", dup_stake, |e| {
            matches!(e, GenesisError::DuplicateStake { .. })
        }),
        ("duplicate node", dup_node, |e| {
            matches!(e, GenesisError::DuplicateNode { .. })
        }),
        ("supply overflow", overflow, |e| {
            matches!(e, GenesisError::SupplyOverflow)
        }),
        ("winner share below 20%", bad_params, |e| {
            matches!(e, GenesisError::BadParam { .. })
        }),
    ];
    for (name, g, expected) in cases {
        let err = State::from_genesis(&g).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
}

#[test]
fn open_job_locks_escrow() {
    let mut h = Harness::new(genesis(params(0)));
    let spec = JobSpec::tiny();
    let before = h.balance(CLIENT);
    let job = h.open(&spec);
    let fee = h.state.params().min_fee;
    let escrow = spec.escrow(h.state.params());
    assert_eq!(h.balance(CLIENT), Amount(before.0 - escrow.0 - fee.0));
    let j = h.state.job(&job).unwrap();
    assert_eq!(j.escrow, escrow);
    assert_eq!(j.step_count, spec.workload().step_count());
    assert_eq!(
        j.phase,
        JobPhase::Open {
            deadline_ms: 6 * BLOCK_MS
        }
    );
}

#[test]
fn open_job_refusals() {
    let small_input = Params {
        max_input_bytes: 1,
        ..params(0)
    };
    let cases: Vec<(&str, Params, Tweak, Expect)> = vec![
        (
            "provider opens with itself",
            params(0),
            |_| PROVIDER,
            |e| matches!(e, TxError::SelfDeal { .. }),
        ),
        (
            "input over the chain's cap",
            small_input,
            |_| CLIENT,
            |e| matches!(e, TxError::InputTooLong { len: 2, max: 1 }),
        ),
        (
            "unknown model",
            params(0),
            |s| {
                s.model = "no-such-model";
                CLIENT
            },
            |e| matches!(e, TxError::Workload(_)),
        ),
        (
            "zero tokens",
            params(0),
            |s| {
                s.max_tokens = 0;
                CLIENT
            },
            |e| matches!(e, TxError::Workload(_)),
        ),
        (
            "zero deadline",
            params(0),
            |s| {
                s.deadline_blocks = 0;
                CLIENT
            },
            |e| matches!(e, TxError::BadDeadline { .. }),
        ),
        (
            "deadline beyond the bound",
            params(0),
            |s| {
                s.deadline_blocks = 201;
                CLIENT
            },
            |e| matches!(e, TxError::BadDeadline { .. }),
        ),
        (
            "escrow beyond the balance",
            params(0),
            |s| {
                s.price = tokens(600);
                CLIENT
            },
            |e| matches!(e, TxError::InsufficientBalance { .. }),
        ),
        (
            "escrow overflows",
            params(0),
            |s| {
                s.price = Amount(u64::MAX / 2 + 1);
                CLIENT
            },
            |e| matches!(e, TxError::Overflow { .. }),
        ),
    ];
    for (name, p, tweak, expected) in cases {
        let mut h = Harness::new(genesis(p));
        let mut spec = JobSpec::tiny();
        let who = tweak(&mut spec);
        let mut open = spec.open_job();
        if who == PROVIDER {
            open.provider = id(PROVIDER);
        }
        let err = h.send(who, Action::OpenJob(open)).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
}

#[test]
fn provider_must_be_eligible() {
    // Not staked.
    let mut h = Harness::new(genesis(params(0)));
    let mut open = JobSpec::tiny().open_job();
    open.provider = id(OTHER);
    let err = h.send(CLIENT, Action::OpenJob(open)).unwrap_err();
    assert!(matches!(err, TxError::ProviderNotEligible { .. }));
    // Staked below the minimum.
    let mut g = genesis(params(0));
    g.stakes[0].2 = tokens(99);
    let mut h = Harness::new(g);
    let err = h
        .send(CLIENT, Action::OpenJob(JobSpec::tiny().open_job()))
        .unwrap_err();
    assert!(matches!(err, TxError::ProviderNotEligible { .. }));
}

#[test]
fn commit_result_refusals() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let cases: Vec<(&str, u8, CommitTweak, Expect)> = vec![
        (
            "not the provider",
            CHECKER,
            |c| c,
            |e| matches!(e, TxError::NotProvider { .. }),
        ),
        (
            "wrong step count",
            PROVIDER,
            |mut c| {
                c.step_count += 1;
                c
            },
            |e| matches!(e, TxError::WrongStepCount { .. }),
        ),
        (
            "wrong token count",
            PROVIDER,
            |mut c| {
                c.tokens -= 1;
                c
            },
            |e| matches!(e, TxError::WrongTokens { .. }),
        ),
        (
            "unknown job",
            PROVIDER,
            |mut c| {
                c.job = JobId([9; 32]);
                c
            },
            |e| matches!(e, TxError::UnknownJob { .. }),
        ),
        (
            "final activation of the wrong width",
            PROVIDER,
            |mut c| {
                c.final_activation = Bytes::new(c.final_activation[..10].to_vec()).unwrap();
                c
            },
            |e| matches!(e, TxError::FinalActivationWidth { got: 10, .. }),
        ),
        (
            // An honest computation with a wrong output hash.
            "output hash is not the final accumulator",
            PROVIDER,
            |mut c| {
                c.output_hash = Hash([1; 32]);
                c
            },
            |e| {
                matches!(
                    e,
                    TxError::OutputHashMismatch {
                        output_hash: Hash([1, ..]),
                        ..
                    }
                )
            },
        ),
        (
            "forged accumulator and output hash",
            PROVIDER,
            |mut c| {
                let mut activation = c.final_activation.into_vec();
                let tail = activation.len() - 32;
                activation[tail..].copy_from_slice(&[1; 32]);
                c.final_activation = Bytes::new(activation).unwrap();
                c.output_hash = Hash([1; 32]);
                c
            },
            |e| matches!(e, TxError::BadFinalProof { index: 87, .. }),
        ),
        (
            "final activation not the trace's last",
            PROVIDER,
            |mut c| {
                let mut activation = c.final_activation.into_vec();
                activation[0] ^= 1;
                c.final_activation = Bytes::new(activation).unwrap();
                c
            },
            |e| matches!(e, TxError::BadFinalProof { .. }),
        ),
        (
            "final proof against another root",
            PROVIDER,
            |mut c| {
                c.trace_root = Hash([3; 32]);
                c
            },
            |e| matches!(e, TxError::BadFinalProof { .. }),
        ),
        (
            "final proof of another leaf",
            PROVIDER,
            |mut c| {
                let trace = Trace::new(&JobSpec::tiny(), None);
                c.final_proof = trace.tree.prove(0).unwrap();
                c
            },
            |e| matches!(e, TxError::BadFinalProof { .. }),
        ),
    ];
    for (name, who, tweak, expected) in cases {
        let mut h = Harness::new(genesis(params(0)));
        let job = h.open(&spec);
        let err = h
            .send(who, Action::CommitResult(tweak(trace.commit(job))))
            .expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
}

#[test]
fn commit_records_the_last_leaf() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    let events = h.commit(job, &trace).unwrap();
    // An honest output hash is the accumulator chain a client recomputes from the bytes.
    let output_hash = workload::output_hash(&trace.exec.output);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ResultCommitted { final_leaf, output_hash: o, .. }
            if *final_leaf == trace.final_leaf() && *o == output_hash
    )));
    let JobPhase::Committed { result, .. } = &h.state.job(&job).unwrap().phase else {
        panic!("not committed");
    };
    assert_eq!(result.final_leaf, trace.final_leaf());
    assert_eq!(result.output_hash, output_hash);
}

#[test]
fn commit_twice_or_late_is_refused() {
    let spec = JobSpec {
        deadline_blocks: 1,
        ..JobSpec::tiny()
    };
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    h.commit(job, &trace).unwrap();
    let err = h.commit(job, &trace).unwrap_err();
    assert!(matches!(err, TxError::WrongPhase { .. }));

    // Opened at height 1 with one block: height 2 is the last. Probe the rule at height 3
    // before any end of block has refunded the job.
    let late = h.open(&spec);
    h.height = Height(3);
    let err = h.commit(late, &trace).unwrap_err();
    assert!(matches!(
        err,
        TxError::DeadlinePassed {
            deadline_ms: 2_000,
            time_ms: 3_000,
            ..
        }
    ));
    h.next_block();
    assert_eq!(h.state.job(&late).unwrap().phase, JobPhase::Refunded);
    let err = h.commit(late, &trace).unwrap_err();
    assert!(matches!(err, TxError::WrongPhase { .. }));
}

#[test]
fn commit_on_the_deadline_block_is_accepted() {
    let spec = JobSpec {
        deadline_blocks: 2,
        ..JobSpec::tiny()
    };
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    h.run_to(2);
    assert_eq!(h.height, Height(3));
    h.commit(job, &trace).unwrap();
}

#[test]
fn missed_commit_refunds_and_penalizes() {
    let spec = JobSpec::tiny();
    let mut h = Harness::new(genesis(params(0)));
    let client_before = h.balance(CLIENT);
    let job = h.open(&spec);
    let fee = h.state.params().min_fee;
    let events = h.run_to(6);
    let penalty = h.state.params().missed_deadline_penalty;
    assert!(events.contains(&Event::CommitMissed {
        job,
        provider: id(PROVIDER),
    }));
    assert_eq!(h.balance(CLIENT), Amount(client_before.0 - fee.0));
    assert_eq!(h.stake_total(PROVIDER), Amount(tokens(200).0 - penalty.0));
    assert_eq!(h.state.treasury(), penalty);
    assert_eq!(h.slashes[0].reason, SlashReason::MissedCommit { job });
    assert_eq!(h.state.job(&job).unwrap().phase, JobPhase::Refunded);
}

#[test]
fn unchecked_result_settles_after_the_window() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    let provider_before = h.balance(PROVIDER);
    let events = h.commit(job, &trace).unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ResultCommitted {
            selected: false,
            ..
        }
    )));
    let fee = h.state.params().min_fee;
    // Nothing before the window ends.
    let w = h.state.params().verdict_window_ms / BLOCK_MS;
    let events = h.run_to(w);
    assert_eq!(count(&events, |e| matches!(e, Event::Settled { .. })), 0);
    let events = h.run_to(1 + w);
    let payment = spec.price.0 * u64::from(spec.max_tokens);
    let cut = payment / 100;
    assert!(events.contains(&Event::Settled {
        job,
        provider: id(PROVIDER),
        provider_paid: Amount(payment - cut),
        protocol_fee: Amount(cut),
        checker_paid: None,
        client: id(CLIENT),
        client_refund: h.state.params().checker_fee,
    }));
    assert_eq!(
        h.balance(PROVIDER),
        Amount(provider_before.0 - fee.0 + payment - cut)
    );
    assert_eq!(h.state.treasury(), Amount(cut));
}

#[test]
fn agreeing_checker_is_paid_and_job_settles() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(1_000_000)));
    let job = h.open(&spec);
    let events = h.commit(job, &trace).unwrap();
    assert!(events.contains(&Event::CheckAssigned {
        job,
        checker: id(CHECKER),
        deadline_ms: 21 * BLOCK_MS,
    }));
    let before = h.balance(CHECKER);
    let events = h.verdict(CHECKER, job, VerdictOutcome::Agree).unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Settled { checker_paid: Some((c, _)), client_refund: Amount(0), .. } if *c == id(CHECKER)
    )));
    let fee = h.state.params().min_fee;
    assert_eq!(
        h.balance(CHECKER),
        Amount(before.0 - fee.0 + h.state.params().checker_fee.0)
    );
    // Both records count what they were paid for their work (not block fees).
    let payment = spec.price.0 * u64::from(spec.max_tokens);
    assert_eq!(
        h.state.record(&id(PROVIDER)).earned,
        Amount(payment - payment / 100)
    );
    assert_eq!(
        h.state.record(&id(CHECKER)).earned,
        h.state.params().checker_fee
    );
    assert_eq!(h.state.record(&id(CLIENT)).earned, Amount::ZERO);
    assert_eq!(h.state.record(&id(CHECKER)).checks, 1);
    assert_eq!(h.state.record(&id(PROVIDER)).checks, 0);
}

#[test]
fn verdict_refusals() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let cases: Vec<(&str, u8, Outcome, Expect)> = vec![
        (
            "not the checker",
            OTHER,
            |_| VerdictOutcome::Agree,
            |e| matches!(e, TxError::NotChecker { .. }),
        ),
        (
            "disagree with the provider's own root",
            CHECKER,
            |t| t.disagree(),
            |e| matches!(e, TxError::DisagreeWithSameRoot { .. }),
        ),
        (
            // A different root, but the same last leaf: the same output.
            "disagree showing the provider's last leaf",
            CHECKER,
            |_| Trace::doctored(&JobSpec::tiny(), 10).disagree(),
            |e| matches!(e, TxError::DisagreementWithoutDifference { .. }),
        ),
        (
            "last leaf not proven against the checker's root",
            CHECKER,
            |_| {
                let other = Trace::new(&JobSpec::tiny(), Some(40));
                VerdictOutcome::Disagree {
                    trace_root: Hash([1; 32]),
                    final_leaf: other.final_leaf(),
                    final_proof: other.tree.prove(other.steps() - 1).unwrap(),
                }
            },
            |e| matches!(e, TxError::BadFinalProof { index: 87, .. }),
        ),
        (
            "a proof of another leaf than the last",
            CHECKER,
            |_| {
                let other = Trace::new(&JobSpec::tiny(), Some(40));
                VerdictOutcome::Disagree {
                    trace_root: other.root(),
                    final_leaf: other.leaf(0),
                    final_proof: other.tree.prove(0).unwrap(),
                }
            },
            |e| matches!(e, TxError::BadFinalProof { .. }),
        ),
    ];
    for (name, who, outcome, expected) in cases {
        let mut h = Harness::new(genesis(params(1_000_000)));
        let job = h.open(&spec);
        h.commit(job, &trace).unwrap();
        let err = h.verdict(who, job, outcome(&trace)).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
    // An agreeing verdict on an unchecked job: only an assigned checker agrees.
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    h.commit(job, &trace).unwrap();
    let err = h.verdict(CHECKER, job, VerdictOutcome::Agree).unwrap_err();
    assert!(matches!(err, TxError::NotChecker { .. }), "{err:?}");
}

/// Genesis with a second staked checker.
fn two_checkers(p: Params) -> Genesis {
    let mut g = genesis(p);
    g.stakes.push((
        id(OTHER),
        node_key(OTHER).public(),
        tokens(200),
        big_device(),
    ));
    g
}

#[test]
fn missed_verdict_penalizes_and_redraws() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(two_checkers(params(1_000_000)));
    let job = h.open(&spec);
    let events = h.commit(job, &trace).unwrap();
    let first = events
        .iter()
        .find_map(|e| match e {
            Event::CheckAssigned { checker, .. } => Some(*checker),
            _ => None,
        })
        .unwrap();
    let events = h.run_to(21);
    assert!(events.contains(&Event::VerdictMissed {
        job,
        checker: first
    }));
    let second = events
        .iter()
        .find_map(|e| match e {
            Event::CheckAssigned { checker, .. } => Some(*checker),
            _ => None,
        })
        .expect("a redraw");
    assert_ne!(first, second, "a failed checker is never redrawn");
    let penalty = h.state.params().missed_deadline_penalty;
    let first_total = h.state.stake(&first).unwrap().total().unwrap();
    assert_eq!(first_total, Amount(tokens(200).0 - penalty.0));
    // The second misses too: nobody is left, the job settles unchecked.
    let events = h.run_to(41);
    assert!(events.contains(&Event::VerdictMissed {
        job,
        checker: second
    }));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Settled {
            checker_paid: None,
            ..
        }
    )));
    assert_eq!(h.slashes.len(), 2);
}

#[test]
fn redraws_are_bounded() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let p = Params {
        max_checker_redraws: 0,
        ..params(1_000_000)
    };
    let mut h = Harness::new(two_checkers(p));
    let job = h.open(&spec);
    h.commit(job, &trace).unwrap();
    let events = h.run_to(21);
    assert_eq!(
        count(&events, |e| matches!(e, Event::CheckAssigned { .. })),
        0
    );
    assert!(events.iter().any(|e| matches!(e, Event::Settled { .. })));
}

#[test]
fn late_verdict_is_refused() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(1_000_000)));
    let job = h.open(&spec);
    h.commit(job, &trace).unwrap();
    h.run_to(20);
    // Height 21 is the last block for the verdict.
    assert_eq!(h.height, Height(21));
    h.height = Height(22); // probe the rule directly: the next block is past the window
    let err = h.verdict(CHECKER, job, VerdictOutcome::Agree).unwrap_err();
    assert!(matches!(err, TxError::DeadlinePassed { .. }));
}

#[test]
fn no_eligible_checker_settles_unchecked() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(1_000_000)));
    let job = h.open(&spec);
    // The only other staked account drops below the minimum stake after the job opened.
    h.send(
        CHECKER,
        Action::Unstake(Unstake {
            amount: tokens(150),
        }),
    )
    .unwrap();
    let events = h.commit(job, &trace).unwrap();
    assert!(events.contains(&Event::NoCheckerAvailable { job }));
}

#[test]
fn a_job_nobody_else_can_check_is_refused_at_open() {
    let mut g = genesis(params(1_000_000));
    g.stakes[1].3 = small_device();
    let mut h = Harness::new(g);
    let large = JobSpec::large();
    let err = h
        .send(CLIENT, Action::OpenJob(large.open_job()))
        .unwrap_err();
    assert!(matches!(err, TxError::NoCapableChecker { .. }), "{err:?}");
    // A model the checker's device holds opens.
    h.open(&JobSpec::tiny());
    // A provider whose device cannot hold the model is not eligible for it.
    let mut g = genesis(params(1_000_000));
    g.stakes[0].3 = small_device();
    let mut h = Harness::new(g);
    let err = h
        .send(CLIENT, Action::OpenJob(large.open_job()))
        .unwrap_err();
    assert!(
        matches!(err, TxError::ProviderNotEligible { reason, .. } if reason.contains("device")),
        "{err:?}"
    );
}

#[test]
fn checkers_are_drawn_only_among_devices_that_hold_the_model() {
    // CHECKER's device cannot hold the 70B model; OTHER's can. With p = 1 every result is
    // checked, and always by OTHER, whatever the seed.
    let mut g = two_checkers(params(1_000_000));
    g.stakes[1].3 = small_device();
    let mut h = Harness::new(g);
    let large = JobSpec::large();
    let trace = Trace::new(&large, None);
    for _ in 0..6 {
        let job = h.open(&large);
        let events = h.commit(job, &trace).unwrap();
        assert!(
            events.iter().any(
                |e| matches!(e, Event::CheckAssigned { checker, .. } if *checker == id(OTHER))
            ),
            "{events:?}"
        );
        h.next_block();
    }
}

#[test]
fn a_client_that_buys_always_is_always_checked() {
    let trace = Trace::new(&JobSpec::tiny(), None);
    let mut h = Harness::new(genesis(params(0)));
    let always = JobSpec {
        check: CheckLevel::Always,
        ..JobSpec::tiny()
    };
    for _ in 0..4 {
        let job = h.open(&always);
        let events = h.commit(job, &trace).unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::ResultCommitted { selected: true, .. }))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::CheckAssigned { .. }))
        );
        h.next_block();
    }
    // The random level at p = 0 is never checked.
    let job = h.open(&JobSpec::tiny());
    let events = h.commit(job, &trace).unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::CheckAssigned { .. }))
    );
}

#[test]
fn a_challenger_that_wins_gets_its_bond_back_and_the_winners_share() {
    let spec = JobSpec::tiny();
    let wrong = Trace::new(&spec, Some(40));
    let honest = Trace::new(&spec, None);
    let mut h = Harness::new(two_checkers(params(0)));
    h.send(CLIENT, transfer(OTHER, tokens(100).0)).unwrap();
    let job = h.open(&spec);
    h.commit(job, &wrong).unwrap();
    let bond = h.state.params().challenge_bond;
    let before = h.balance(OTHER);
    let client_before = h.balance(CLIENT);
    let events = h.verdict(OTHER, job, honest.disagree()).unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DisputeOpened { challenger, bond: b, .. } if *challenger == id(OTHER) && *b == bond
    )));
    let fee = h.state.params().min_fee;
    assert_eq!(h.balance(OTHER), Amount(before.0 - fee.0 - bond.0));
    let (events, _) = h.play_dispute_with(job, &wrong, OTHER, &honest);
    let share = events
        .iter()
        .find_map(|e| match e {
            Event::Slashed {
                who,
                to_winner: Some((w, share)),
                ..
            } if *who == id(PROVIDER) && *w == id(OTHER) => Some(*share),
            _ => None,
        })
        .expect("the provider is slashed, a share to the challenger");
    assert!(events.contains(&Event::BondReturned {
        job,
        who: id(OTHER),
        amount: bond,
    }));
    assert_eq!(h.state.job(&job).unwrap().phase, JobPhase::Refunded);
    // Every transaction OTHER sent paid a fee; the bond came back.
    let sent = h.state.account(&id(OTHER)).nonce.0;
    assert_eq!(h.balance(OTHER), Amount(before.0 - fee.0 * sent + share.0));
    assert_eq!(
        h.balance(CLIENT),
        Amount(client_before.0 + spec.escrow(h.state.params()).0)
    );
}

#[test]
fn a_lying_challenger_forfeits_its_bond_and_keeps_its_stake() {
    let spec = JobSpec::tiny();
    let honest = Trace::new(&spec, None);
    let liar = Trace::new(&spec, Some(40));
    let mut h = Harness::new(two_checkers(params(0)));
    h.send(CLIENT, transfer(OTHER, tokens(100).0)).unwrap();
    let job = h.open(&spec);
    h.commit(job, &honest).unwrap();
    let bond = h.state.params().challenge_bond;
    let stake = h.stake_total(OTHER);
    let treasury = h.state.treasury();
    h.verdict(OTHER, job, liar.disagree()).unwrap();
    let (events, _) = h.play_dispute_with(job, &honest, OTHER, &liar);
    let (share, to_treasury) = events
        .iter()
        .find_map(|e| match e {
            Event::BondForfeited {
                who,
                amount,
                to_winner: (w, share),
                to_treasury,
                ..
            } if *who == id(OTHER) && *amount == bond && *w == id(PROVIDER) => {
                Some((*share, *to_treasury))
            }
            _ => None,
        })
        .expect("the bond is forfeited");
    assert_eq!(share.0 + to_treasury.0, bond.0);
    assert!(share.0 >= bond.0 / 5, "at least the 20% winner's share");
    assert_eq!(
        h.stake_total(OTHER),
        stake,
        "a challenger risks its bond, not its stake"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Slashed { .. })));
    assert_eq!(h.state.job(&job).unwrap().phase, JobPhase::Settled);
    assert!(h.state.treasury().0 >= treasury.0 + to_treasury.0);
}

#[test]
fn the_client_may_challenge_its_own_job_without_stake() {
    let spec = JobSpec::tiny();
    let wrong = Trace::new(&spec, Some(40));
    let honest = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    h.commit(job, &wrong).unwrap();
    h.verdict(CLIENT, job, honest.disagree()).unwrap();
    let (events, _) = h.play_dispute_with(job, &wrong, CLIENT, &honest);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DisputeResolved { winner, .. } if *winner == id(CLIENT)
    )));
    assert_eq!(h.state.job(&job).unwrap().phase, JobPhase::Refunded);
}

#[test]
fn challenge_refusals() {
    let spec = JobSpec::tiny();
    let wrong = Trace::new(&spec, Some(40));
    let honest = Trace::new(&spec, None);
    let cases: Vec<(&str, u8, Expect)> = vec![
        ("the provider itself", PROVIDER, |e| {
            matches!(e, TxError::MayNotChallenge { .. })
        }),
        ("neither staked nor the client", OTHER, |e| {
            matches!(e, TxError::MayNotChallenge { .. })
        }),
    ];
    for (name, who, expected) in cases {
        let mut h = Harness::new(genesis(params(0)));
        let job = h.open(&spec);
        h.commit(job, &wrong).unwrap();
        let err = h.verdict(who, job, honest.disagree()).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
    // After the window: the job settled at the end of the block its window ended in.
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    h.commit(job, &wrong).unwrap();
    let w = h.state.params().verdict_window_ms / BLOCK_MS;
    h.run_to(w);
    h.verdict(CLIENT, job, honest.disagree())
        .expect("the last block of the window still takes a challenge");
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    h.commit(job, &wrong).unwrap();
    h.run_to(1 + w);
    let err = h.verdict(CLIENT, job, honest.disagree()).unwrap_err();
    assert!(matches!(err, TxError::WrongPhase { .. }), "{err:?}");
    // A challenger without the bond.
    let mut h = Harness::new(two_checkers(params(0)));
    let job = h.open(&spec);
    h.commit(job, &wrong).unwrap();
    let err = h.verdict(OTHER, job, honest.disagree()).unwrap_err();
    assert!(
        matches!(err, TxError::InsufficientBalance { .. }),
        "{err:?}"
    );
}

#[test]
fn same_inputs_give_the_same_root() {
    let run = || {
        let spec = JobSpec::tiny();
        let trace = Trace::new(&spec, None);
        let mut h = Harness::new(genesis(params(1_000_000)));
        h.send(CLIENT, transfer(OTHER, 10)).unwrap();
        let job = h.open(&spec);
        h.commit(job, &trace).unwrap();
        h.verdict(CHECKER, job, VerdictOutcome::Agree).unwrap();
        h.next_block();
        h.state.state_root()
    };
    assert_eq!(run(), run());
    let mut h = Harness::new(genesis(params(0)));
    assert_ne!(run(), h.state.state_root());
}

#[test]
fn refund_reason_is_reported() {
    let spec = JobSpec::tiny();
    let mut h = Harness::new(genesis(params(0)));
    let job = h.open(&spec);
    let events = h.run_to(6);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Refunded { job: j, reason: RefundReason::MissedCommit, .. } if *j == job
    )));
}

#[test]
fn a_final_job_drops_its_input_and_leaves_after_the_retention_window() {
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let mut h = Harness::new(genesis(Params {
        retention_blocks: 5,
        ..params(0)
    }));
    let job = h.open(&spec);
    assert!(!h.state.job(&job).unwrap().input.is_empty());
    h.commit(job, &trace).unwrap();
    let settle_at = 1 + h.state.params().verdict_window_ms / BLOCK_MS;
    let events = h.run_to(settle_at);
    assert!(events.iter().any(|e| matches!(e, Event::Settled { .. })));
    let settled = h.state.job(&job).expect("kept for the retention window");
    assert_eq!(settled.phase, JobPhase::Settled);
    assert!(settled.input.is_empty(), "no check or dispute needs it now");
    let record = h.state.record(&id(PROVIDER));
    assert_eq!((record.provided.settled, record.provided.open), (1, 0));
    assert_eq!(h.state.record(&id(CLIENT)).opened.settled, 1);
    h.run_to(settle_at + 4);
    assert!(h.state.job(&job).is_some(), "still inside the window");
    h.run_to(settle_at + 5);
    assert!(h.state.job(&job).is_none(), "retired after the window");
    // The record counts every job the account ever had.
    assert_eq!(h.state.record(&id(PROVIDER)).provided.settled, 1);
    // A late transaction naming it is refused, and changes nothing (the harness checks).
    let late = h.send(
        CHECKER,
        Action::Verdict(attest_protocol::tx::Verdict {
            job,
            outcome: VerdictOutcome::Agree,
        }),
    );
    assert!(late.is_err());
}

#[test]
fn the_validators_are_the_largest_active_stakes_up_to_max_validators() {
    let mut p = params(0);
    p.max_validators = 2;
    let mut h = Harness::new(genesis(p));
    let set = |h: &Harness| h.state.validators().collect::<Vec<_>>();
    // Equal stakes rank by account key.
    let mut tied = vec![(id(PROVIDER), tokens(200)), (id(CHECKER), tokens(200))];
    tied.sort_by_key(|(a, _)| *a);
    assert_eq!(set(&h), tied);
    // A third, smaller stake provides and checks but does not validate.
    h.send(OTHER, stake_action(OTHER, OTHER, tokens(5)))
        .unwrap();
    assert_eq!(h.state.stakes().count(), 3);
    assert!(
        h.state
            .stake(&id(OTHER))
            .is_some_and(|s| s.eligible(Amount::ZERO))
    );
    assert_eq!(set(&h), tied);
    // Unbonding below it moves the provider out and the third stake in, largest first.
    h.send(
        PROVIDER,
        Action::Unstake(Unstake {
            amount: tokens(196),
        }),
    )
    .unwrap();
    assert_eq!(
        set(&h),
        vec![(id(CHECKER), tokens(200)), (id(OTHER), tokens(5))]
    );
    // Genesis refuses a set of none, or more than a certificate can hold.
    for bad in [0, 257] {
        let mut p = params(0);
        p.max_validators = bad;
        assert!(
            matches!(
                State::from_genesis(&genesis(p)),
                Err(GenesisError::BadParam {
                    field: "max_validators",
                    ..
                })
            ),
            "max_validators {bad} accepted"
        );
    }
}
