//! Shared test harness: keys, a genesis, a block-by-block driver and workload traces.
#![allow(dead_code)]
// See the crate root: `TxError` names accounts, whose keys are large.
#![allow(clippy::result_large_err)]

pub mod mc;

use std::sync::OnceLock;

use attest_contracts_sim::apply::disputes::round_index;
use attest_contracts_sim::draw::{is_selected, spot_check_seed};
use attest_contracts_sim::{Ctx, Event, Genesis, JobPhase, Params, SlashReason, State, TxError};
use attest_protocol::tx::{
    Action, Capability, CheckLevel, CommitResult, DisputeMove, DisputeStep, OpenJob, Verdict,
    VerdictOutcome,
};
use attest_protocol::workload::{self, ACC_BYTES, Execution, execute_with};
use attest_protocol::{
    AccountId, Amount, BlockHash, Bytes, ChainId, DeviceName, Hash, Height, JobId, MerkleTree,
    ModelId, Round, SecretKey, Signed, Tx, Verified,
};

/// A table row's expectation of a refusal.
pub type Expect = fn(&TxError) -> bool;

pub const CLIENT: u8 = 1;
pub const PROVIDER: u8 = 2;
pub const CHECKER: u8 = 3;
pub const PROPOSER: u8 = 4;
pub const OTHER: u8 = 5;

/// Key derivation is a scalar multiplication; the Monte Carlo test names accounts millions
/// of times, so keys are derived once per process.
fn keys() -> &'static [SecretKey] {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    KEYS.get_or_init(|| (0..=255u8).map(|n| SecretKey::from_seed([n; 32])).collect())
}

pub fn key(n: u8) -> SecretKey {
    keys()[usize::from(n)].clone()
}

pub fn node_key(n: u8) -> SecretKey {
    key(n.wrapping_add(100))
}

pub fn id(n: u8) -> AccountId {
    keys()[usize::from(n)].public()
}

pub fn chain() -> ChainId {
    ChainId::new("attest-test").expect("valid chain id")
}

pub fn tokens(n: u64) -> Amount {
    Amount::tokens(n).expect("small amount")
}

/// The harness's blocks are [`BLOCK_MS`] apart.
pub const BLOCK_MS: u64 = 1_000;

/// The default parameters with windows of whole harness blocks: a 20-block verdict window,
/// 10-block dispute rounds, deadlines up to 200 blocks and 2,000 blocks of unbonding.
pub fn block_params() -> Params {
    Params {
        verdict_window_ms: 20 * BLOCK_MS,
        dispute_round_ms: 10 * BLOCK_MS,
        max_deadline_ms: 200 * BLOCK_MS as u32,
        unbonding_ms: 2_000 * BLOCK_MS,
        ..Params::default()
    }
}

/// [`block_params`] with every check forced (p = 1) or none (p = 0) so rule tests are not at
/// the mercy of the draw.
pub fn params(p_ppm: u32) -> Params {
    Params {
        check_probability_ppm: p_ppm,
        ..block_params()
    }
}

/// A device that holds every catalogue model.
pub fn big_device() -> Capability {
    Capability {
        device: DeviceName::new("cpu").expect("device"),
        memory_bytes: 256_000_000_000,
    }
}

/// A device that holds the 1B and 8B models but not the 70B one.
pub fn small_device() -> Capability {
    Capability {
        device: DeviceName::new("h100-sxm").expect("device"),
        memory_bytes: 80_000_000_000,
    }
}

/// Client and proposer funded; provider and checker funded and staked above the minimum.
pub fn genesis(params: Params) -> Genesis {
    Genesis {
        chain_id: chain(),
        params,
        balances: vec![
            (id(CLIENT), tokens(1_000)),
            (id(PROVIDER), tokens(10)),
            (id(CHECKER), tokens(10)),
            (id(OTHER), tokens(10)),
        ],
        stakes: vec![
            (
                id(PROVIDER),
                node_key(PROVIDER).public(),
                tokens(200),
                big_device(),
            ),
            (
                id(CHECKER),
                node_key(CHECKER).public(),
                tokens(200),
                big_device(),
            ),
        ],
    }
}

/// A slash, as its event told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slash {
    pub who: AccountId,
    pub amount: Amount,
    pub reason: SlashReason,
}

/// Drives a state block by block and checks the invariants after every transition. Each
/// transition runs speculatively first and is then applied from its delta, as a node does;
/// the incremental root is checked against a from-scratch rebuild every time.
pub struct Harness {
    pub state: State,
    pub height: Height,
    pub block_hash: BlockHash,
    /// Every slash so far, from the events.
    pub slashes: Vec<Slash>,
}

impl Harness {
    pub fn new(genesis: Genesis) -> Self {
        let state = State::from_genesis(&genesis).expect("valid genesis");
        Self {
            state,
            height: Height(1),
            block_hash: BlockHash([7; 32]),
            slashes: Vec::new(),
        }
    }

    pub fn ctx(&self) -> Ctx {
        Ctx {
            height: self.height,
            time_ms: BLOCK_MS * self.height.0,
            block_hash: self.block_hash,
            proposer: id(PROPOSER),
        }
    }

    pub fn sign(&self, who: u8, action: Action) -> Verified<Tx> {
        let nonce = self.state.account(&id(who)).nonce;
        let fee = self.state.params().min_fee;
        Signed::sign(&chain(), &key(who), Tx { nonce, fee, action })
            .verify(&chain())
            .expect("own signature")
    }

    /// Applies a transaction; on refusal checks the state root did not move.
    pub fn apply(&mut self, tx: &Verified<Tx>) -> Result<Vec<Event>, TxError> {
        let ctx = self.ctx();
        self.transition(|s| s.apply(&ctx, tx))
    }

    /// Runs `f` speculatively, checks what it did, and applies its delta.
    fn transition(
        &mut self,
        f: impl FnOnce(&mut State) -> Result<Vec<Event>, TxError>,
    ) -> Result<Vec<Event>, TxError> {
        let before = self.state.state_root();
        let (out, delta) = self.state.speculate(f);
        assert_eq!(before, self.state.state_root(), "speculation left a trace");
        match &out {
            Ok(events) => {
                self.state
                    .check_block(&delta, events)
                    .expect("block invariants");
                self.state.apply_delta(&delta);
                self.slashes.extend(events.iter().filter_map(|e| match e {
                    Event::Slashed {
                        who,
                        amount,
                        reason,
                        ..
                    } => Some(Slash {
                        who: *who,
                        amount: *amount,
                        reason: reason.clone(),
                    }),
                    _ => None,
                }));
            }
            Err(_) => assert!(delta.is_empty(), "a refused tx changed the state"),
        }
        let root = self.state.state_root();
        let rebuilt = State::import(self.state.export(), &root).expect("the export rebuilds");
        assert_eq!(rebuilt, self.state, "export and import round-trip");
        self.state.check_invariants().expect("invariants");
        out
    }

    pub fn send(&mut self, who: u8, action: Action) -> Result<Vec<Event>, TxError> {
        let tx = self.sign(who, action);
        self.apply(&tx)
    }

    /// Ends the current block and starts the next.
    pub fn next_block(&mut self) -> Vec<Event> {
        let ctx = self.ctx();
        let events = self
            .transition(|s| Ok(s.end_block(&ctx)))
            .expect("end_block never fails");
        self.height = self.height.next();
        let mut bh = [0u8; 32];
        bh[..8].copy_from_slice(&self.height.0.to_le_bytes());
        self.block_hash = BlockHash(bh);
        events
    }

    /// Ends blocks until (and including) `height`, collecting their events.
    pub fn run_to(&mut self, height: u64) -> Vec<Event> {
        let mut all = Vec::new();
        while self.height.0 <= height {
            all.extend(self.next_block());
        }
        all
    }

    pub fn balance(&self, who: u8) -> Amount {
        self.state.account(&id(who)).balance
    }

    pub fn stake_total(&self, who: u8) -> Amount {
        self.state
            .stake(&id(who))
            .and_then(|s| s.total())
            .unwrap_or(Amount::ZERO)
    }

    /// Opens a job from CLIENT to PROVIDER; returns its id.
    pub fn open(&mut self, spec: &JobSpec) -> JobId {
        let tx = self.sign(CLIENT, Action::OpenJob(spec.open_job()));
        let job = JobId::from(attest_protocol::tx_hash(tx.signed()));
        self.apply(&tx).expect("job opens");
        job
    }

    /// Sets the block hash so that committing `job` in this block is (or is not) selected at
    /// rate `p_ppm`.
    pub fn steer_draw(&mut self, job: &JobId, p_ppm: u32, selected: bool) {
        for i in 0u64.. {
            let mut bh = [0xabu8; 32];
            bh[..8].copy_from_slice(&i.to_le_bytes());
            let bh = BlockHash(bh);
            if is_selected(&spot_check_seed(&bh, job), p_ppm) == selected {
                self.block_hash = bh;
                return;
            }
        }
    }

    pub fn commit(&mut self, job: JobId, trace: &Trace) -> Result<Vec<Event>, TxError> {
        self.send(PROVIDER, Action::CommitResult(trace.commit(job)))
    }

    pub fn verdict(
        &mut self,
        who: u8,
        job: JobId,
        outcome: VerdictOutcome,
    ) -> Result<Vec<Event>, TxError> {
        self.send(who, Action::Verdict(Verdict { job, outcome }))
    }

    /// The dispute over `job`, if one is running.
    pub fn dispute(&self, job: &JobId) -> Option<attest_contracts_sim::Dispute> {
        match &self.state.job(job)?.phase {
            JobPhase::Disputed { dispute, .. } => Some((**dispute).clone()),
            _ => None,
        }
    }

    /// One party's opening for the current round.
    pub fn open_move(&self, job: JobId, trace: &Trace) -> Action {
        let d = self.dispute(&job).expect("a dispute");
        let steps = self.state.job(&job).expect("job").step_count;
        let index = round_index(&d, steps).expect("index");
        Action::Dispute(DisputeMove {
            job,
            round: Round(d.round),
            step: trace.opening(index),
        })
    }

    /// The challenger's witness: its own activation at `lo`.
    pub fn witness_move(&self, job: JobId, trace: &Trace) -> Action {
        let d = self.dispute(&job).expect("a dispute");
        let lo = d.lo.expect("a witness is needed only for lo >= 0");
        Action::Dispute(DisputeMove {
            job,
            round: Round(d.round),
            step: trace.witness(lo),
        })
    }

    /// Plays a dispute to the end with both parties answering from their traces: both open
    /// in every bisection round, then the checker supplies its witness if one is needed.
    /// Returns the events and the number of bisection rounds played.
    pub fn play_dispute(
        &mut self,
        job: JobId,
        provider: &Trace,
        checker: &Trace,
    ) -> (Vec<Event>, u32) {
        self.play_dispute_with(job, provider, CHECKER, checker)
    }

    /// [`Harness::play_dispute`] with `challenger` (the account that disagreed) answering
    /// from `theirs`.
    pub fn play_dispute_with(
        &mut self,
        job: JobId,
        provider: &Trace,
        challenger: u8,
        theirs: &Trace,
    ) -> (Vec<Event>, u32) {
        let mut events = Vec::new();
        let mut rounds = 0;
        while let Some(d) = self.dispute(&job) {
            if d.round < d.rounds {
                rounds += 1;
                let (p, c) = (self.open_move(job, provider), self.open_move(job, theirs));
                events.extend(self.send(PROVIDER, p).expect("provider opens"));
                events.extend(self.send(challenger, c).expect("challenger opens"));
            } else {
                let w = self.witness_move(job, theirs);
                events.extend(self.send(challenger, w).expect("witness"));
            }
            events.extend(self.next_block());
        }
        (events, rounds)
    }
}

/// A job's parameters.
#[derive(Clone)]
pub struct JobSpec {
    pub model: &'static str,
    pub input: Vec<u8>,
    pub max_tokens: u32,
    pub price: Amount,
    pub deadline_blocks: u32,
    pub check: CheckLevel,
}

impl JobSpec {
    pub fn tiny() -> Self {
        Self {
            model: "attest-tiny-1b",
            input: b"hi".to_vec(),
            max_tokens: 2,
            price: Amount(1_000),
            deadline_blocks: 5,
            check: CheckLevel::Random,
        }
    }

    /// A one-token job of the 70B model (141 GB of weights: only a big device holds it).
    pub fn large() -> Self {
        Self {
            model: "attest-large-70b",
            input: b"x".to_vec(),
            max_tokens: 1,
            ..Self::tiny()
        }
    }

    pub fn open_job(&self) -> OpenJob {
        OpenJob {
            model: ModelId::new(self.model).expect("model id"),
            input: Bytes::new(self.input.clone()).expect("small input"),
            max_tokens: self.max_tokens,
            provider: id(PROVIDER),
            device: DeviceName::new("h100").expect("device"),
            price_per_token: self.price,
            deadline_ms: self.deadline_blocks * BLOCK_MS as u32,
            check: self.check,
        }
    }

    pub fn workload(&self) -> workload::Job<'_> {
        workload::Job::new(self.model, &self.input, self.max_tokens).expect("valid job")
    }

    pub fn escrow(&self, params: &Params) -> Amount {
        Amount(self.price.0 * u64::from(self.max_tokens) + params.checker_fee.0)
    }
}

/// A full trace: the execution (leaves, root, output hash, final activation), every step's
/// activation and the tree over the leaves.
pub struct Trace {
    pub exec: Execution,
    pub activations: Vec<Vec<u8>>,
    pub tree: MerkleTree,
}

impl Trace {
    /// The honest trace, or one whose hidden lane 0 at step `corrupt` is flipped and the
    /// change propagated: every later state (its accumulator included) follows from the
    /// flipped one, so the commit is consistent and, for every step the tests corrupt, every
    /// leaf from `corrupt` on differs from the honest one, the last included (a dispute that
    /// opens checks this).
    pub fn new(spec: &JobSpec, corrupt: Option<u64>) -> Self {
        Self::with_hook(spec, |i, _, act| {
            if Some(i) == corrupt {
                act[0] ^= 0x01;
            }
        })
    }

    /// The trace `execute_with(job, hook)` gives, with every activation as it was hashed.
    pub fn with_hook(spec: &JobSpec, mut hook: impl FnMut(u64, &[u8], &mut Vec<u8>)) -> Self {
        let job = spec.workload();
        let mut activations = Vec::new();
        let exec = execute_with(&job, |i, prev, act| {
            hook(i, prev, act);
            activations.push(act.clone());
        });
        Self::from_parts(exec, activations)
    }

    fn from_parts(exec: Execution, activations: Vec<Vec<u8>>) -> Self {
        Self {
            tree: exec.tree(),
            exec,
            activations,
        }
    }

    /// The honest trace with only the leaf at `index` replaced (not propagated): a doctored
    /// tree rather than a different execution. Unless `index` is the last step, its last
    /// leaf, and so its output, is the honest one.
    pub fn doctored(spec: &JobSpec, index: u64) -> Self {
        let Self {
            mut exec,
            activations,
            ..
        } = Self::new(spec, None);
        exec.leaves[index as usize] = Hash([0x5a; 32]);
        exec.trace_root = exec.tree().root();
        Self::from_parts(exec, activations)
    }

    /// A provider that computes honestly but lies about its output: the last step's
    /// accumulator is replaced by `output_hash`, so the result it commits is consistent (the
    /// final activation ends in that hash) and only the last leaf differs from the honest
    /// trace.
    pub fn wrong_output(spec: &JobSpec, output_hash: Hash) -> Self {
        let last = spec.workload().step_count() - 1;
        Self::with_hook(spec, |i, _, act| {
            if i == last {
                let tail = act.len() - ACC_BYTES;
                act[tail..].copy_from_slice(&output_hash.0);
            }
        })
    }

    pub fn steps(&self) -> u64 {
        self.exec.step_count()
    }

    pub fn root(&self) -> Hash {
        self.exec.trace_root
    }

    pub fn leaf(&self, index: u64) -> Hash {
        self.exec.leaves[index as usize]
    }

    pub fn final_leaf(&self) -> Hash {
        self.leaf(self.steps() - 1)
    }

    /// The opening of leaf `index` with its proof.
    pub fn opening(&self, index: u64) -> DisputeStep {
        DisputeStep::Open {
            index,
            leaf: self.leaf(index),
            proof: self.tree.prove(index).expect("index in range"),
        }
    }

    /// The witness for a divergence after step `lo`: the activation of step `lo`.
    pub fn witness(&self, lo: u64) -> DisputeStep {
        DisputeStep::Witness {
            activation: Bytes::new(self.activations[lo as usize].clone()).expect("small"),
        }
    }

    pub fn commit(&self, job: JobId) -> CommitResult {
        CommitResult::from_execution(job, &self.exec)
    }

    pub fn disagree(&self) -> VerdictOutcome {
        VerdictOutcome::disagree(&self.exec)
    }
}

/// The events of a kind, for assertions.
pub fn count(events: &[Event], pred: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}
