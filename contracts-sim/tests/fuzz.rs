//! No transaction can crash the state machine: arbitrary actions (huge amounts, bogus
//! indices, random proofs, final activations and witnesses, unknown models, random evidence,
//! real results and verdicts with one part changed) from every party,
//! against a state with a dispute, a pending check and an open job. Each must either apply
//! or be refused with the state root unchanged, and the invariants must hold after each.

mod common;

use attest_protocol::merkle::MAX_PROOF_DEPTH;
use attest_protocol::tx::{
    Action, CheckLevel, CommitResult, DisputeMove, DisputeStep, EquivocationEvidence, OpenJob,
    Transfer, Unstake, Verdict, VerdictOutcome,
};
use attest_protocol::{
    Amount, BlockHash, BoundedVec, Bytes, DeviceName, Hash, Height, JobId, MerkleProof, ModelId,
    Round, Signed, Vote, VoteKind,
};
use common::*;
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash> {
    prop_oneof![any::<[u8; 32]>().prop_map(Hash), Just(Hash([0; 32]))]
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        Just(Amount(0)),
        Just(Amount(u64::MAX)),
        any::<u64>().prop_map(Amount),
        (0..10_000u64).prop_map(Amount)
    ]
}

fn party() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![CLIENT, PROVIDER, CHECKER, OTHER])
}

/// A job reference: one of the three live jobs (by index) or a random id.
#[derive(Debug, Clone)]
enum JobRef {
    Live(usize),
    Random(JobId),
}

fn job_ref() -> impl Strategy<Value = JobRef> {
    prop_oneof![4 => (0..3usize).prop_map(JobRef::Live), 1 => any::<[u8; 32]>().prop_map(|b| JobRef::Random(JobId(b)))]
}

#[derive(Debug, Clone)]
enum Fuzz {
    Act(u8, JobRef, FuzzAction),
    /// A real move in the dispute (0: the provider's opening, 1: the checker's, 2: the
    /// checker's witness), so that fuzzing reaches later rounds and the resolution.
    Play(u8),
    EndBlock,
}

#[derive(Debug, Clone)]
enum FuzzAction {
    Transfer(u8, Amount),
    Unstake(Amount),
    Open(String, Vec<u8>, u32, Amount, u32),
    Commit(Hash, u64, u32, Vec<u8>, Vec<Hash>),
    /// The honest or the cheating trace's real result, with the output hash replaced if
    /// given.
    RealCommit(bool, Option<Hash>),
    Verdict(Option<(Hash, Hash, Vec<Hash>)>),
    /// The honest or the cheating trace's real disagreement, with the final leaf replaced if
    /// given.
    RealDisagree(bool, Option<Hash>),
    OpenLeaf(u32, u64, Hash, Vec<Hash>),
    Witness(u32, Vec<u8>),
    Evidence(u8, u64, u8, u8),
}

fn fuzz_action() -> impl Strategy<Value = FuzzAction> {
    let model = prop::sample::select(vec![
        "attest-tiny-1b".to_owned(),
        "attest-large-70b".to_owned(),
        "nope".to_owned(),
    ]);
    prop_oneof![
        1 => (party(), amount()).prop_map(|(to, a)| FuzzAction::Transfer(to, a)),
        1 => amount().prop_map(FuzzAction::Unstake),
        1 => (model, prop::collection::vec(any::<u8>(), 0..8), any::<u32>(), amount(), any::<u32>())
            .prop_map(|(m, i, t, p, d)| FuzzAction::Open(m, i, t, p, d)),
        1 => (
            hash(),
            prop_oneof![any::<u64>(), Just(88u64)],
            prop_oneof![any::<u32>(), Just(2u32)],
            prop::collection::vec(any::<u8>(), 0..70),
            prop::collection::vec(hash(), 0..9),
        )
            .prop_map(|(h, s, t, a, p)| FuzzAction::Commit(h, s, t, a, p)),
        1 => (any::<bool>(), prop::option::of(hash()))
            .prop_map(|(c, h)| FuzzAction::RealCommit(c, h)),
        1 => prop::option::of((hash(), hash(), prop::collection::vec(hash(), 0..9)))
            .prop_map(FuzzAction::Verdict),
        1 => (any::<bool>(), prop::option::of(hash()))
            .prop_map(|(c, h)| FuzzAction::RealDisagree(c, h)),
        4 => (0..10u32, prop_oneof![any::<u64>(), 0..100u64], hash(), prop::collection::vec(hash(), 0..9))
            .prop_map(|(r, i, l, p)| FuzzAction::OpenLeaf(r, i, l, p)),
        2 => (0..10u32, prop::collection::vec(any::<u8>(), 0..70)).prop_map(|(r, w)| FuzzAction::Witness(r, w)),
        1 => (party(), 0..4u64, any::<u8>(), any::<u8>()).prop_map(|(s, h, a, b)| FuzzAction::Evidence(s, h, a, b)),
    ]
}

fn fuzz() -> impl Strategy<Value = Fuzz> {
    prop_oneof![
        8 => (party(), job_ref(), fuzz_action()).prop_map(|(w, j, a)| Fuzz::Act(w, j, a)),
        3 => (0..3u8).prop_map(Fuzz::Play),
        1 => Just(Fuzz::EndBlock),
    ]
}

fn build(jobs: &[JobId], job: &JobRef, a: FuzzAction, traces: [&Trace; 2]) -> Action {
    let job = match job {
        JobRef::Live(i) => jobs[*i],
        JobRef::Random(id) => *id,
    };
    match a {
        FuzzAction::Transfer(to, amount) => Action::Transfer(Transfer { to: id(to), amount }),
        FuzzAction::Unstake(amount) => Action::Unstake(Unstake { amount }),
        FuzzAction::Open(model, input, max_tokens, price, deadline) => Action::OpenJob(OpenJob {
            model: ModelId::new(&model).unwrap(),
            input: Bytes::new(input).unwrap(),
            max_tokens,
            provider: id(PROVIDER),
            device: DeviceName::new("cpu").unwrap(),
            price_per_token: price,
            deadline_ms: deadline.saturating_mul(1_000),
            check: if deadline % 2 == 0 {
                CheckLevel::Random
            } else {
                CheckLevel::Always
            },
        }),
        FuzzAction::Commit(h, step_count, tokens, activation, siblings) => {
            Action::CommitResult(CommitResult {
                job,
                output_hash: h,
                trace_root: h,
                step_count,
                tokens,
                final_activation: Bytes::new(activation).unwrap(),
                final_proof: proof(siblings),
            })
        }
        FuzzAction::RealCommit(cheat, output_hash) => {
            let mut c = traces[usize::from(cheat)].commit(job);
            c.output_hash = output_hash.unwrap_or(c.output_hash);
            Action::CommitResult(c)
        }
        FuzzAction::Verdict(d) => Action::Verdict(Verdict {
            job,
            outcome: match d {
                None => VerdictOutcome::Agree,
                Some((trace_root, final_leaf, siblings)) => VerdictOutcome::Disagree {
                    trace_root,
                    final_leaf,
                    final_proof: proof(siblings),
                },
            },
        }),
        FuzzAction::RealDisagree(cheat, leaf) => {
            let mut outcome = traces[usize::from(cheat)].disagree();
            if let (VerdictOutcome::Disagree { final_leaf, .. }, Some(leaf)) = (&mut outcome, leaf)
            {
                *final_leaf = leaf;
            }
            Action::Verdict(Verdict { job, outcome })
        }
        FuzzAction::OpenLeaf(round, index, leaf, siblings) => Action::Dispute(DisputeMove {
            job,
            round: Round(round),
            step: DisputeStep::Open {
                index,
                leaf,
                proof: proof(siblings),
            },
        }),
        FuzzAction::Witness(round, w) => Action::Dispute(DisputeMove {
            job,
            round: Round(round),
            step: DisputeStep::Witness {
                activation: Bytes::new(w).unwrap(),
            },
        }),
        FuzzAction::Evidence(signer, height, a, b) => {
            let vote = |x: u8| Vote {
                height: Height(height),
                round: Round(0),
                kind: VoteKind::Prevote,
                block: (!x.is_multiple_of(4)).then_some(BlockHash([x % 4; 32])),
            };
            Action::Equivocation(Box::new(EquivocationEvidence {
                first: Signed::sign(&chain(), &key(signer), vote(a)),
                second: Signed::sign(&chain(), &key(signer), vote(b)),
            }))
        }
    }
}

fn proof(siblings: Vec<Hash>) -> MerkleProof {
    MerkleProof {
        siblings: BoundedVec::<Hash, MAX_PROOF_DEPTH>::new(siblings).unwrap(),
    }
}

/// A state with a dispute in round 0, a pending check and an open job.
fn setup(honest: &Trace, cheat: &Trace) -> (Harness, Vec<JobId>) {
    let spec = JobSpec::tiny();
    let mut h = Harness::new(genesis(params(1_000_000)));
    let disputed = h.open(&spec);
    h.commit(disputed, cheat).unwrap();
    h.verdict(CHECKER, disputed, honest.disagree()).unwrap();
    let checked = h.open(&spec);
    h.commit(checked, honest).unwrap();
    let open = h.open(&spec);
    (h, vec![disputed, checked, open])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_transactions_never_crash(steps in prop::collection::vec(fuzz(), 1..80)) {
        let spec = JobSpec::tiny();
        let (honest, cheat) = (Trace::new(&spec, None), Trace::new(&spec, Some(40)));
        let (mut h, jobs) = setup(&honest, &cheat);
        for step in steps {
            match step {
                Fuzz::Play(side) => {
                    let Some(d) = h.dispute(&jobs[0]) else { continue };
                    let (who, action) = match side {
                        0 => (PROVIDER, h.open_move(jobs[0], &cheat)),
                        1 => (CHECKER, h.open_move(jobs[0], &honest)),
                        _ if d.lo.is_some() => (CHECKER, h.witness_move(jobs[0], &honest)),
                        _ => continue,
                    };
                    let _ = h.send(who, action);
                }
                Fuzz::EndBlock => {
                    h.next_block();
                }
                // `Harness::apply` checks the root on refusal and the invariants always.
                Fuzz::Act(who, job, action) => {
                    let _ = h.send(who, build(&jobs, &job, action, [&honest, &cheat]));
                }
            }
        }
    }
}
