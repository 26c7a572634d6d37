//! Model-based property test: random transaction sequences, valid and invalid, applied to
//! `State` and to a deliberately naive reference model, compared after every step (the way
//! sled checks its tree against a `BTreeMap`). Every refused transaction must leave the
//! state root unchanged and the invariants must hold after every step.
//!
//! The chain runs with p = 0 so no result is checked; disputes and checks have their own
//! tests. The model does handle every timeout the sequences reach: missed commits (refund
//! and capped penalty), unchecked settlement and unbonding releases. Commits are real
//! results (the final activation and its proof from an execution), some with one fault.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use attest_contracts_sim::{Ctx, Genesis, JobPhase, Params, State, TxError};
use attest_protocol::tx::{
    Action, Capability, CheckLevel, CommitResult, OpenJob, Stake, Transfer, Unstake,
};
use attest_protocol::workload::{self, Execution};
use attest_protocol::{
    AccountId, Amount, BlockHash, Bytes, ChainId, DeviceName, Hash, Height, JobId, ModelId, Nonce,
    SecretKey, Signed, Tx, tx_hash,
};
use proptest::prelude::*;

const USERS: u8 = 5;
const PROPOSER: u8 = 9;
const MIN_FEE: u64 = 1_000;
const TOKEN: u64 = 1_000_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n + 1; 32])
}
fn node(n: u8) -> SecretKey {
    SecretKey::from_seed([n + 101; 32])
}
fn acct(n: u8) -> AccountId {
    key(n).public()
}
fn chain() -> ChainId {
    ChainId::new("attest-model").unwrap()
}

/// The model counts in blocks; the chain's windows are in block time, this far apart.
const BLOCK_MS: u64 = 1_000;

/// A device that holds the model the ops open.
fn device() -> Capability {
    Capability {
        device: DeviceName::new("cpu").unwrap(),
        memory_bytes: 256_000_000_000,
    }
}

fn params() -> Params {
    Params {
        min_fee: Amount(MIN_FEE),
        min_stake: Amount(100 * TOKEN),
        check_probability_ppm: 0,
        verdict_window_ms: 3 * BLOCK_MS,
        max_checker_redraws: 0,
        dispute_round_ms: BLOCK_MS,
        max_deadline_ms: 10 * BLOCK_MS as u32,
        unbonding_ms: 34 * BLOCK_MS,
        ..Params::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Transfer {
        from: u8,
        to: u8,
        amount: u64,
    },
    Stake {
        who: u8,
        node_of: u8,
        amount: u64,
    },
    Unstake {
        who: u8,
        amount: u64,
    },
    Open {
        client: u8,
        provider: u8,
        tokens: u32,
        price: u64,
        deadline: u32,
    },
    Commit {
        job: usize,
        who: u8,
        fault: Option<CommitFault>,
    },
    BadNonce {
        who: u8,
        ahead: bool,
    },
    LowFee {
        who: u8,
    },
    EndBlock,
    /// Many empty blocks at once, so unbonding releases are reached.
    Skip(u8),
}

/// One thing wrong with an otherwise honest result.
#[derive(Debug, Clone, Copy)]
enum CommitFault {
    StepCount,
    /// An output hash the final activation does not end in.
    OutputHash,
    /// A final activation that is not the trace's last.
    FinalActivation,
}

impl CommitFault {
    /// The refusal the fault gives when nothing else is wrong with the commit.
    fn refusal(self, e: &TxError) -> bool {
        match self {
            CommitFault::StepCount => matches!(e, TxError::WrongStepCount { .. }),
            CommitFault::OutputHash => matches!(e, TxError::OutputHashMismatch { .. }),
            CommitFault::FinalActivation => matches!(e, TxError::BadFinalProof { .. }),
        }
    }
}

/// The honest execution of the model's jobs (input "x") for `tokens`, computed once.
fn execution(tokens: u32) -> &'static Execution {
    static EXECUTIONS: [OnceLock<Execution>; 3] = [const { OnceLock::new() }; 3];
    EXECUTIONS[tokens as usize].get_or_init(|| {
        workload::execute(&workload::Job::new("attest-tiny-1b", b"x", tokens).unwrap())
    })
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..USERS;
    prop_oneof![
        1 => (who.clone(), 0..USERS + 1, prop_oneof![0..10u64, 0..200 * TOKEN])
            .prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        1 => (who.clone(), who.clone(), 0..120 * TOKEN)
            .prop_map(|(who, node_of, amount)| Op::Stake { who, node_of, amount }),
        1 => (who.clone(), 0..80 * TOKEN).prop_map(|(who, amount)| Op::Unstake { who, amount }),
        3 => (who.clone(), who.clone(), 0..3u32, 0..5_000u64, 0..5u32).prop_map(
            |(client, provider, tokens, price, deadline)| Op::Open {
                client,
                provider,
                tokens,
                price,
                deadline
            }
        ),
        3 => (any::<usize>(), who.clone(), prop::option::weighted(0.2, prop_oneof![
            Just(CommitFault::StepCount),
            Just(CommitFault::OutputHash),
            Just(CommitFault::FinalActivation),
        ]))
            .prop_map(|(job, who, fault)| Op::Commit { job, who, fault }),
        1 => (who.clone(), any::<bool>()).prop_map(|(who, ahead)| Op::BadNonce { who, ahead }),
        1 => who.prop_map(|who| Op::LowFee { who }),
        3 => Just(Op::EndBlock),
        1 => (1..40u8).prop_map(Op::Skip),
    ]
}

/// The naive model: plain integers, no journal, no indexes.
#[derive(Debug, Default)]
struct Model {
    balances: BTreeMap<AccountId, u64>,
    nonces: BTreeMap<AccountId, u64>,
    bonded: BTreeMap<AccountId, u64>,
    /// (amount, release height), oldest first.
    unbonding: BTreeMap<AccountId, Vec<(u64, u64)>>,
    node_of: BTreeMap<AccountId, u8>,
    node_owner: BTreeMap<u8, AccountId>,
    jobs: Vec<MJob>,
    treasury: u64,
}

#[derive(Debug, Clone)]
struct MJob {
    id: JobId,
    client: AccountId,
    provider: AccountId,
    price: u64,
    tokens: u32,
    escrow: u64,
    steps: u64,
    deadline: u64,
    /// `Some(settle height)` once committed.
    settle_at: Option<u64>,
    done: bool,
}

impl Model {
    fn bal(&self, a: &AccountId) -> u64 {
        self.balances.get(a).copied().unwrap_or(0)
    }
    fn add(&mut self, a: AccountId, v: u64) {
        *self.balances.entry(a).or_insert(0) += v;
    }
    fn sub(&mut self, a: AccountId, v: u64) {
        *self.balances.get_mut(&a).unwrap() -= v;
    }
    fn stake_total(&self, a: &AccountId) -> u64 {
        self.bonded.get(a).copied().unwrap_or(0)
            + self
                .unbonding
                .get(a)
                .map_or(0, |v| v.iter().map(|u| u.0).sum())
    }

    /// Applies an action after the nonce and fee checks passed; `false` = refused (and
    /// nothing changed). `avail` is the signer's balance after the fee.
    fn action(&mut self, h: u64, signer: AccountId, avail: u64, op: &Op, job_id: JobId) -> bool {
        match *op {
            Op::Transfer { to, amount, .. } => self.transfer(signer, avail, acct(to), amount),
            Op::Stake {
                who,
                node_of,
                amount,
            } => self.stake(signer, avail, acct(who), node_of, amount),
            Op::Unstake { amount, .. } => self.unstake(h, signer, amount),
            Op::Open {
                provider,
                tokens,
                price,
                deadline,
                ..
            } => {
                let job = MJob {
                    id: job_id,
                    client: signer,
                    provider: acct(provider),
                    price,
                    tokens,
                    escrow: price * u64::from(tokens) + params().checker_fee.0,
                    steps: (1 + u64::from(tokens)) * 22,
                    deadline: h + u64::from(deadline),
                    settle_at: None,
                    done: false,
                };
                self.open(avail, job, deadline)
            }
            Op::Commit { job, fault, .. } => self.commit(h, signer, job, fault.is_none()),
            Op::BadNonce { .. } | Op::LowFee { .. } | Op::EndBlock | Op::Skip(_) => unreachable!(),
        }
    }

    fn transfer(&mut self, from: AccountId, avail: u64, to: AccountId, amount: u64) -> bool {
        if amount == 0 || avail < amount {
            return false;
        }
        self.sub(from, amount);
        self.add(to, amount);
        true
    }

    fn stake(
        &mut self,
        signer: AccountId,
        avail: u64,
        who: AccountId,
        node: u8,
        amount: u64,
    ) -> bool {
        let taken = self.node_owner.get(&node).is_some_and(|o| *o != who);
        let other_node = self.node_of.get(&signer).is_some_and(|n| *n != node);
        if amount == 0 || taken || other_node || avail < amount {
            return false;
        }
        self.sub(signer, amount);
        *self.bonded.entry(signer).or_insert(0) += amount;
        self.node_of.insert(signer, node);
        self.node_owner.insert(node, signer);
        true
    }

    fn unstake(&mut self, h: u64, signer: AccountId, amount: u64) -> bool {
        let Some(b) = self.bonded.get(&signer).copied() else {
            return false;
        };
        let entries = self.unbonding.get(&signer).map_or(0, Vec::len);
        if amount == 0 || b < amount || entries >= 32 {
            return false;
        }
        self.bonded.insert(signer, b - amount);
        let list = self.unbonding.entry(signer).or_default();
        list.push((amount, h + 34));
        true
    }

    fn open(&mut self, avail: u64, job: MJob, deadline_blocks: u32) -> bool {
        let provider_ok = self.bonded.get(&job.provider).copied().unwrap_or(0) >= 100 * TOKEN;
        // Someone else must be able to check it (every device here holds the model).
        let checker_ok = self
            .bonded
            .iter()
            .any(|(a, b)| *a != job.provider && *a != job.client && *b >= 100 * TOKEN);
        if job.provider == job.client
            || job.tokens == 0
            || deadline_blocks == 0
            || deadline_blocks > 10
            || !provider_ok
            || !checker_ok
            || avail < job.escrow
        {
            return false;
        }
        self.sub(job.client, job.escrow);
        self.jobs.push(job);
        true
    }

    /// Whether a commit of job `job` by `signer` passes every check but the result's own.
    fn commit_ok(&self, h: u64, signer: AccountId, job: usize) -> bool {
        let n = self.jobs.len();
        self.jobs.get(job % n.max(1)).is_some_and(|j| {
            !j.done && j.settle_at.is_none() && j.provider == signer && h <= j.deadline
        })
    }

    fn commit(&mut self, h: u64, signer: AccountId, job: usize, good_result: bool) -> bool {
        if !good_result || !self.commit_ok(h, signer, job) {
            return false;
        }
        let n = self.jobs.len();
        self.jobs[job % n].settle_at = Some(h + 3);
        true
    }

    fn take_stake(&mut self, who: AccountId, amount: u64) -> u64 {
        let mut left = amount;
        let b = self.bonded.entry(who).or_insert(0);
        let t = (*b).min(left);
        *b -= t;
        left -= t;
        for u in self.unbonding.entry(who).or_default().iter_mut().rev() {
            let t = u.0.min(left);
            u.0 -= t;
            left -= t;
        }
        self.unbonding.get_mut(&who).unwrap().retain(|u| u.0 > 0);
        amount - left
    }

    fn end_block(&mut self, h: u64) {
        let p = params();
        let mut order: Vec<usize> = (0..self.jobs.len()).collect();
        order.sort_by_key(|&i| {
            (
                self.jobs[i].settle_at.unwrap_or(self.jobs[i].deadline),
                self.jobs[i].id,
            )
        });
        for i in order {
            let j = self.jobs[i].clone();
            if j.done {
                continue;
            }
            match j.settle_at {
                None if j.deadline <= h => {
                    let taken = self.take_stake(j.provider, p.missed_deadline_penalty.0);
                    self.treasury += taken;
                    self.add(j.client, j.escrow);
                    self.jobs[i].done = true;
                }
                Some(s) if s <= h => {
                    let pay = j.price * u64::from(j.tokens);
                    let cut = pay / 100;
                    self.add(j.provider, pay - cut);
                    self.treasury += cut;
                    self.add(j.client, j.escrow - pay);
                    self.jobs[i].done = true;
                }
                _ => {}
            }
        }
        for (who, list) in self.unbonding.iter_mut() {
            let released: u64 = list.iter().filter(|u| u.1 <= h).map(|u| u.0).sum();
            list.retain(|u| u.1 > h);
            *self.balances.entry(*who).or_insert(0) += released;
        }
    }
}

struct Sim {
    state: State,
    model: Model,
    height: u64,
}

impl Sim {
    fn new() -> Self {
        let genesis = Genesis {
            chain_id: chain(),
            params: params(),
            balances: (0..USERS).map(|u| (acct(u), Amount(500 * TOKEN))).collect(),
            stakes: (0..2)
                .map(|u| (acct(u), node(u).public(), Amount(150 * TOKEN), device()))
                .collect(),
        };
        let state = State::from_genesis(&genesis).unwrap();
        let mut model = Model::default();
        for u in 0..USERS {
            model.balances.insert(acct(u), 500 * TOKEN);
        }
        for u in 0..2 {
            model.bonded.insert(acct(u), 150 * TOKEN);
            model.node_of.insert(acct(u), u);
            model.node_owner.insert(u, acct(u));
        }
        Self {
            state,
            model,
            height: 1,
        }
    }

    fn ctx(&self) -> Ctx {
        let mut bh = [3u8; 32];
        bh[..8].copy_from_slice(&self.height.to_le_bytes());
        Ctx {
            height: Height(self.height),
            time_ms: self.height * BLOCK_MS,
            block_hash: BlockHash(bh),
            proposer: acct(PROPOSER),
        }
    }

    fn action(&self, op: &Op) -> Option<(u8, Action)> {
        Some(match *op {
            Op::Transfer { from, to, amount } => (
                from,
                Action::Transfer(Transfer {
                    to: acct(to),
                    amount: Amount(amount),
                }),
            ),
            Op::Stake {
                who,
                node_of,
                amount,
            } => (
                who,
                Action::Stake(Stake::new(
                    &chain(),
                    &node(node_of),
                    acct(who),
                    Amount(amount),
                    device(),
                )),
            ),
            Op::Unstake { who, amount } => (
                who,
                Action::Unstake(Unstake {
                    amount: Amount(amount),
                }),
            ),
            Op::Open {
                client,
                provider,
                tokens,
                price,
                deadline,
            } => (
                client,
                Action::OpenJob(OpenJob {
                    model: ModelId::new("attest-tiny-1b").unwrap(),
                    input: Bytes::new(vec![b'x']).unwrap(),
                    max_tokens: tokens,
                    provider: acct(provider),
                    device: DeviceName::new("cpu").unwrap(),
                    price_per_token: Amount(price),
                    deadline_ms: deadline.saturating_mul(BLOCK_MS as u32),
                    check: CheckLevel::Random,
                }),
            ),
            Op::Commit { job, who, fault } => {
                let (id, steps, tokens) = match self.model.jobs.len() {
                    0 => (JobId([1; 32]), 22 * 2, 1),
                    n => {
                        let j = &self.model.jobs[job % n];
                        (j.id, j.steps, j.tokens)
                    }
                };
                let mut c = CommitResult::from_execution(id, execution(tokens));
                // The model's step count formula, checked against the workload's.
                assert_eq!(c.step_count, steps);
                match fault {
                    None => {}
                    Some(CommitFault::StepCount) => c.step_count += 1,
                    Some(CommitFault::OutputHash) => c.output_hash = Hash([1; 32]),
                    Some(CommitFault::FinalActivation) => {
                        let mut activation = c.final_activation.into_vec();
                        activation[0] ^= 1;
                        c.final_activation = Bytes::new(activation).unwrap();
                    }
                }
                (who, Action::CommitResult(c))
            }
            Op::BadNonce { .. } | Op::LowFee { .. } | Op::EndBlock | Op::Skip(_) => return None,
        })
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::EndBlock => self.blocks(1),
            Op::Skip(n) => self.blocks(*n),
            _ => self.transaction(op),
        }
    }

    fn blocks(&mut self, n: u8) {
        for _ in 0..n {
            self.state.end_block(&self.ctx());
            self.model.end_block(self.height);
            self.height += 1;
            self.compare();
        }
    }

    fn nonce(&self, who: u8) -> u64 {
        self.model.nonces.get(&acct(who)).copied().unwrap_or(0)
    }

    fn transaction(&mut self, op: &Op) {
        let (who, action, nonce, fee) = match *op {
            Op::BadNonce { who, ahead } => {
                let n = self.nonce(who);
                let bad = if ahead || n == 0 { n + 1 } else { n - 1 };
                (who, transfer_one(), bad, MIN_FEE)
            }
            Op::LowFee { who } => (who, transfer_one(), self.nonce(who), MIN_FEE - 1),
            _ => {
                let (who, action) = self.action(op).unwrap();
                (who, action, self.nonce(who), MIN_FEE)
            }
        };
        let body = Tx {
            nonce: Nonce(nonce),
            fee: Amount(fee),
            action,
        };
        let tx = Signed::sign(&chain(), &key(who), body)
            .verify(&chain())
            .unwrap();
        let job_id = JobId::from(tx_hash(tx.signed()));
        // A faulty commit that nothing else is wrong with must be refused for its fault.
        let commit_fault = match *op {
            Op::Commit {
                job,
                who,
                fault: Some(fault),
            } if self.model.bal(&acct(who)) >= MIN_FEE
                && self.model.commit_ok(self.height, acct(who), job) =>
            {
                Some(fault)
            }
            _ => None,
        };
        let before = self.state.state_root();
        let got = self.state.apply(&self.ctx(), &tx);
        let ok = self.model_apply(acct(who), nonce, fee, op, job_id);
        match (&got, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                let after = self.state.state_root();
                assert_eq!(before, after, "refused {e:?} changed the root");
                check_error_kind(op, e);
                if let Some(fault) = commit_fault {
                    assert!(fault.refusal(e), "{fault:?} refused with {e:?}");
                }
            }
            _ => panic!("state said {got:?}, model said ok={ok} for {op:?}"),
        }
    }

    /// The model's rules for the nonce and fee, then the action.
    fn model_apply(
        &mut self,
        signer: AccountId,
        nonce: u64,
        fee: u64,
        op: &Op,
        job: JobId,
    ) -> bool {
        let expected_nonce = self.model.nonces.get(&signer).copied().unwrap_or(0);
        let bal = self.model.bal(&signer);
        if nonce != expected_nonce || fee < MIN_FEE || bal < fee {
            return false;
        }
        self.model.sub(signer, fee);
        if !self.model.action(self.height, signer, bal - fee, op, job) {
            self.model.add(signer, fee);
            return false;
        }
        self.model.add(acct(PROPOSER), fee);
        *self.model.nonces.entry(signer).or_insert(0) += 1;
        true
    }

    fn compare(&self) {
        self.state.check_invariants().unwrap();
        for u in (0..=USERS).chain([PROPOSER]) {
            let a = acct(u);
            let s = self.state.account(&a);
            assert_eq!(s.balance.0, self.model.bal(&a), "balance of {u}");
            assert_eq!(
                s.nonce.0,
                self.model.nonces.get(&a).copied().unwrap_or(0),
                "nonce of {u}"
            );
            let (bonded, total) = self
                .state
                .stake(&a)
                .map_or((0, 0), |e| (e.bonded.0, e.total().unwrap().0));
            assert_eq!(
                bonded,
                self.model.bonded.get(&a).copied().unwrap_or(0),
                "bonded of {u}"
            );
            assert_eq!(total, self.model.stake_total(&a), "stake of {u}");
        }
        let model_escrow: u64 = self
            .model
            .jobs
            .iter()
            .filter(|j| !j.done)
            .map(|j| j.escrow)
            .sum();
        assert_eq!(self.state.escrow_total().unwrap().0, model_escrow);
        assert_eq!(self.state.treasury().0, self.model.treasury);
        for j in &self.model.jobs {
            let phase = &self.state.job(&j.id).unwrap().phase;
            let same = match (j.done, j.settle_at) {
                (true, _) => phase.is_final(),
                (false, None) => matches!(phase, JobPhase::Open { .. }),
                (false, Some(_)) => matches!(phase, JobPhase::Committed { .. }),
            };
            assert!(same, "job phase {phase:?} vs model {j:?}");
        }
    }
}

fn transfer_one() -> Action {
    Action::Transfer(Transfer {
        to: acct(0),
        amount: Amount(1),
    })
}

/// Refusals of the generated nonce and fee faults carry the right variant.
fn check_error_kind(op: &Op, e: &TxError) {
    match op {
        Op::BadNonce { .. } => assert!(matches!(e, TxError::BadNonce { .. }), "{e:?}"),
        Op::LowFee { .. } => assert!(matches!(e, TxError::FeeTooLow { .. }), "{e:?}"),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn state_matches_the_naive_model(ops in prop::collection::vec(op(), 1..120)) {
        let mut sim = Sim::new();
        sim.compare();
        for op in &ops {
            sim.step(op);
            sim.compare();
        }
    }
}
