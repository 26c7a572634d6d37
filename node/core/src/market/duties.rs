//! The job pipeline's duties: what this node owes the market as a provider, as a checker and
//! as a party to a dispute, driven by committed ledger state. Pure: no clock, no I/O.
//!
//! After every committed block the core hands the block's events and the new contract state
//! to [`Duties::on_commit`], which answers with [`Duty`] values: run a job on the accelerator
//! (to provide a result, to check one, or to rebuild a trace a dispute needs), or submit a
//! transaction (a result, a verdict, a dispute move). A finished execution comes back through
//! [`Duties::on_done`]. Every decision reads the committed state, never a guess about it, so a
//! restarted node ([`Duties::rescan`]) picks up exactly where the ledger says it stands.
//!
//! Test-only cheats (`danger_*` in config; compiled only with the `cheats` feature) make this
//! node provide wrong traces, or give false verdicts, at a rate; the decision and the wrong
//! trace are deterministic from a per-node key and the job id, so a cheater can still answer
//! the dispute openings of its own trace.

use std::collections::{BTreeMap, BTreeSet};

use attest_contracts_sim::apply::disputes::round_index;
use attest_contracts_sim::{Check, Event, JobPhase, Side, State};
use attest_protocol::tx::{
    Action, Activation, CommitResult, DisputeMove, DisputeStep, Verdict, VerdictOutcome,
};
use attest_protocol::workload::{self, Execution};
use attest_protocol::{AccountId, Height, JobId, ModelId, Round};

use crate::accel::Cheat;
#[cfg(feature = "cheats")]
use crate::accel::{CheatMode, run_job, should_cheat};
use crate::bounded::BoundedMap;

/// The most traces held for disputes at once. A trace holds one 32-byte leaf per step, and a
/// job has `(input bytes + output tokens) x layers` steps: ~13 MB for the largest the limits
/// allow (`attest_protocol::limits`), a few thousand leaves for typical ones. Past either
/// bound (this count, or [`MAX_TRACE_BYTES`]) the oldest goes, and is rebuilt by re-execution
/// if a dispute needs it.
pub const MAX_TRACES: usize = 1_024;

/// The most bytes of traces held at once (leaves, output and final activation): about five
/// of the largest traces the limits allow, or the whole [`MAX_TRACES`] of typical ones.
pub const MAX_TRACE_BYTES: usize = 64 * 1024 * 1024;

/// What a trace weighs against [`MAX_TRACE_BYTES`].
fn trace_bytes(e: &Execution) -> usize {
    e.leaves
        .len()
        .saturating_mul(32)
        .saturating_add(e.output.len())
        .saturating_add(e.final_activation.len())
}

/// Why a job runs on the accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    /// We are its provider: commit the result.
    Provide,
    /// We are its checker: post a verdict.
    Check,
    /// A dispute needs our trace again (after a restart or eviction): keep it, then move.
    Replay,
    /// We watch another provider's result: re-execute it and challenge it if it is wrong.
    Watch,
}

/// A job for the accelerator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The job.
    pub job: JobId,
    /// Why it runs.
    pub purpose: Purpose,
    /// The model.
    pub model: ModelId,
    /// The input bytes.
    pub input: Vec<u8>,
    /// Tokens to generate.
    pub max_tokens: u32,
    /// A test-only cheat to apply, if this node cheats on this job (`cheats` builds only).
    #[cfg(feature = "cheats")]
    pub cheat: Option<CheatMode>,
    /// The seed of the cheat (and of nothing else).
    pub seed: [u8; 32],
}

impl JobRun {
    /// An honest run (no cheat).
    pub fn new(
        job: JobId,
        purpose: Purpose,
        model: ModelId,
        input: Vec<u8>,
        max_tokens: u32,
        seed: [u8; 32],
    ) -> Self {
        Self {
            job,
            purpose,
            model,
            input,
            max_tokens,
            #[cfg(feature = "cheats")]
            cheat: None,
            seed,
        }
    }

    /// Runs it, synchronously: the one execution path, for the shell's accelerator pool (on
    /// a blocking thread) and the simulator alike.
    pub fn execute(&self) -> Result<Execution, workload::WorkloadError> {
        let job = workload::Job::new(self.model.as_str(), &self.input, self.max_tokens)?;
        #[cfg(feature = "cheats")]
        return Ok(run_job(&job, self.cheat, self.seed));
        #[cfg(not(feature = "cheats"))]
        return Ok(workload::execute(&job));
    }
}

/// What the core must do for a duty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duty {
    /// Run a job on the accelerator and hand the execution to [`Duties::on_done`].
    Run(Box<JobRun>),
    /// Sign and submit a transaction with this action from our account, then report its
    /// hash with [`Duties::note_submitted`].
    Submit(DutyKey, Box<Action>),
    /// Gossip again our transaction with this hash, still waiting in our mempool: peers that
    /// lost it cannot put it in their blocks.
    Regossip(attest_protocol::TxHash),
}

/// Which duty a submitted transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DutyKey(JobId, DutyTx);

/// A transaction submitted for a duty.
#[derive(Debug, Clone)]
struct Sent {
    /// The height of its last submission.
    at: Height,
    action: Action,
    /// Its hash, once submitted; `None` if the mempool refused it.
    hash: Option<attest_protocol::TxHash>,
    /// Whether it was still waiting in our mempool after the last commit.
    in_pool: bool,
}

/// Which transaction of a job's duties: the provider's result, the checker's verdict, a
/// watcher's challenge, or a dispute move in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DutyTx {
    /// The provider's result.
    Result,
    /// The checker's verdict.
    Verdict,
    /// Our challenge of a result we watched (a `Disagree` with the chain's bond).
    Challenge,
    /// A dispute move in this round.
    Move(u32),
}

/// Blocks after which a duty's transaction still owed is submitted again. The contract's
/// windows are several times longer (verdict window and dispute rounds, default 20 and 10
/// blocks), so a lost transaction costs one retry, not the deadline.
pub const RESUBMIT_AFTER_BLOCKS: u64 = 3;

/// Per-node market settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketConfig {
    /// Whether this node serves jobs assigned to its account.
    pub serve: bool,
    /// The share of other providers' results, in parts per million, this node re-executes
    /// when it has spare capacity, challenging any it finds wrong. 0 watches nothing.
    pub watch_rate_ppm: u32,
    /// Test only (`cheats` builds): cheat on provided jobs at this rate.
    #[cfg(feature = "cheats")]
    pub danger_cheat: Option<Cheat>,
    /// Test only: give a false verdict (a flipped re-execution) on checks at this rate.
    #[cfg(feature = "cheats")]
    pub danger_false_verdicts: Option<Cheat>,
    /// What this node advertises, if it advertises.
    pub advert: Option<super::book::AdvertTerms>,
}

/// Cheat settings were given to a build without the `cheats` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "danger_cheat or danger_false_verdicts is set, but this build has no cheat modes: they are \
     compiled only with the `cheats` feature (tests, the demo and test networks)"
)]
pub struct CheatsNotCompiled;

impl MarketConfig {
    /// These settings with the test-only cheats `cheat` (on provided jobs) and
    /// `false_verdicts` (on checks). Without the `cheats` feature any cheat is refused.
    pub fn with_cheats(
        self,
        cheat: Option<Cheat>,
        false_verdicts: Option<Cheat>,
    ) -> Result<Self, CheatsNotCompiled> {
        #[cfg(feature = "cheats")]
        return Ok(Self {
            danger_cheat: cheat,
            danger_false_verdicts: false_verdicts,
            ..self
        });
        #[cfg(not(feature = "cheats"))]
        match (cheat, false_verdicts) {
            (None, None) => Ok(self),
            _ => Err(CheatsNotCompiled),
        }
    }
}

/// Figures the pipeline measures, by block heights (the API turns them into times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Results we committed.
    pub results_submitted: u64,
    /// Verdicts we posted, agreeing and not.
    pub verdicts_agree: u64,
    /// Verdicts disagreeing.
    pub verdicts_disagree: u64,
    /// Dispute moves we submitted.
    pub dispute_moves: u64,
    /// Others' results we re-executed as a watcher.
    pub watched: u64,
    /// Challenges we posted (watched results we found wrong).
    pub challenges: u64,
    /// Executions that failed (a job no rule should have admitted).
    pub failed_runs: u64,
}

/// What this node owes the market.
#[derive(Debug)]
pub struct Duties {
    me: Option<AccountId>,
    config: MarketConfig,
    /// Per-node key for cheat decisions and seeds (test-only modes).
    cheat_key: [u8; 32],
    /// Jobs we may owe something on.
    watch: BTreeSet<JobId>,
    /// Jobs handed to the accelerator and not back yet, and why.
    executing: BTreeMap<JobId, Purpose>,
    /// How many of `executing` are `Purpose::Provide` (kept with it, so adverts need no scan).
    providing: usize,
    /// Our traces, for jobs we provided or challenged; the oldest go past [`MAX_TRACES`].
    traces: BoundedMap<JobId, Execution>,
    /// Transactions submitted for a duty, with the height of their last submission: sent
    /// again while the ledger still shows the duty owed [`RESUBMIT_AFTER_BLOCKS`] later (a
    /// transaction can be lost: evicted behind a refused predecessor, or dropped by a crash).
    sent: BTreeMap<(JobId, DutyTx), Sent>,
    /// The height of the last commit seen.
    height: Height,
    /// Output bytes of the jobs we provided, served to gateways; the oldest go past
    /// [`MAX_SERVED_OUTPUTS`].
    outputs: BoundedMap<JobId, Vec<u8>>,
    stats: Stats,
}

/// Outputs of provided jobs kept to serve gateways (at most 1,024 bytes each, so ~4 MB).
pub const MAX_SERVED_OUTPUTS: usize = 4_096;

/// The least "most executions in flight" for which a watch starts: a watch only uses spare
/// capacity, so it is skipped (not queued) while more runs are out than a quarter of the slots
/// the node advertises, or than this for a node with few slots or none.
pub const MAX_BUSY_FOR_WATCH: usize = 1;

impl Duties {
    /// Duties of the account `me` (`None`: a node without an account owes nothing).
    pub fn new(me: Option<AccountId>, config: MarketConfig) -> Self {
        let mut cheat_key = blake3::Hasher::new();
        cheat_key.update(b"attest/danger-cheat/v1");
        if let Some(k) = &me {
            cheat_key.update(k.as_bytes());
        }
        Self {
            me,
            config,
            cheat_key: *cheat_key.finalize().as_bytes(),
            watch: BTreeSet::new(),
            executing: BTreeMap::new(),
            providing: 0,
            traces: BoundedMap::with_bytes(MAX_TRACES, MAX_TRACE_BYTES, trace_bytes),
            sent: BTreeMap::new(),
            height: Height(0),
            outputs: BoundedMap::new(MAX_SERVED_OUTPUTS),
            stats: Stats::default(),
        }
    }

    /// The output bytes of a job we provided, if still held.
    pub fn output(&self, job: &JobId) -> Option<&[u8]> {
        self.outputs.get(job).map(Vec::as_slice)
    }

    /// Jobs we are running as provider now.
    pub fn providing(&self) -> usize {
        self.providing
    }

    /// What the pipeline measured.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// After a restart: every unfinished job that names us, from the state alone.
    pub fn rescan(&mut self, state: &State) -> Vec<Duty> {
        let Some(me) = self.me else {
            return Vec::new();
        };
        let ours: Vec<JobId> = state
            .jobs()
            .filter(|(_, j)| !j.phase.is_final())
            .filter(|(_, j)| j.provider == me || involves(&j.phase, &me))
            .map(|(id, _)| *id)
            .collect();
        self.watch.extend(ours);
        self.duties(state)
    }

    /// The block at `height` committed with `events`; `state` is the state after it.
    pub fn on_commit(&mut self, height: Height, state: &State, events: &[Event]) -> Vec<Duty> {
        self.height = height;
        let Some(me) = self.me else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in events {
            match e {
                Event::JobOpened { job, provider, .. } if *provider == me => {
                    self.watch.insert(*job);
                }
                Event::CheckAssigned { job, checker, .. } if *checker == me => {
                    self.watch.insert(*job);
                }
                Event::DisputeOpened {
                    job,
                    provider,
                    challenger,
                    ..
                } if *provider == me || *challenger == me => {
                    self.watch.insert(*job);
                }
                Event::ResultCommitted { job, provider, .. } if *provider != me => {
                    out.extend(self.maybe_watch(state, me, *job));
                }
                _ => {}
            }
        }
        out.extend(self.duties(state));
        out
    }

    /// The most runs out for which a watch still starts: a quarter of the advertised slots (a
    /// device batches dozens of sequences), at least [`MAX_BUSY_FOR_WATCH`].
    fn watch_busy_limit(&self) -> usize {
        self.config
            .advert
            .as_ref()
            .map_or(MAX_BUSY_FOR_WATCH, |t| t.slots as usize / 4)
            .max(MAX_BUSY_FOR_WATCH)
    }

    /// Rule "watch": re-execute another provider's result with probability `watch_rate`
    /// (drawn from a per-node key and the job id, so each node watches its own share), when
    /// our bound device holds the model and at most `watch_busy_limit` runs are out. Not
    /// our own jobs as client either: the client challenges through `attest challenge`.
    fn maybe_watch(&mut self, state: &State, me: AccountId, id: JobId) -> Option<Duty> {
        let rate = self.config.watch_rate_ppm;
        if rate == 0 || self.executing.len() > self.watch_busy_limit() || self.watch.contains(&id) {
            return None;
        }
        let job = state.job(&id)?;
        // Our own check is a duty, not a watch (its run posts the verdict we owe).
        if job.client == me || involves(&job.phase, &me) {
            return None;
        }
        if !matches!(job.phase, JobPhase::Committed { .. }) {
            return None;
        }
        let fits = state
            .stake(&me)
            .is_some_and(|s| s.capability.can_run(job.model.as_str()));
        if !fits || !watch_selected(&self.cheat_key, &id, rate) {
            return None;
        }
        self.watch.insert(id);
        self.stats.watched += 1;
        Some(self.run(id, job, Purpose::Watch))
    }

    /// An execution came back from the accelerator.
    pub fn on_done(
        &mut self,
        state: &State,
        job: JobId,
        purpose: Purpose,
        outcome: Result<Execution, String>,
    ) -> Vec<Duty> {
        if self.executing.remove(&job) == Some(Purpose::Provide) {
            self.providing = self.providing.saturating_sub(1);
        }
        let execution = match outcome {
            Ok(e) => e,
            Err(error) => {
                self.stats.failed_runs += 1;
                tracing::warn!(job = %job, error, "job execution failed");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        // A watched result we were drawn to check since the run started: the run is our
        // check, and the verdict is owed.
        let purpose = match (purpose, state.job(&job).map(|j| &j.phase)) {
            (Purpose::Watch, Some(phase)) if self.me.is_some_and(|me| involves(phase, &me)) => {
                Purpose::Check
            }
            (p, _) => p,
        };
        match purpose {
            Purpose::Provide => {
                let result = CommitResult::from_execution(job, &execution);
                self.keep_output(job, execution.output.clone());
                self.keep_trace(job, execution);
                if !self.sent.contains_key(&(job, DutyTx::Result)) {
                    self.stats.results_submitted += 1;
                    out.push(self.submit(job, DutyTx::Result, Action::CommitResult(result)));
                }
            }
            Purpose::Check => {
                let committed = state.job(&job).and_then(|j| match &j.phase {
                    JobPhase::Committed { result, .. } => Some(result.final_leaf),
                    _ => None,
                });
                if let Some(final_leaf) = committed
                    && !self.sent.contains_key(&(job, DutyTx::Verdict))
                {
                    let outcome = if execution.leaves.last() == Some(&final_leaf) {
                        self.stats.verdicts_agree += 1;
                        VerdictOutcome::Agree
                    } else {
                        self.stats.verdicts_disagree += 1;
                        VerdictOutcome::disagree(&execution)
                    };
                    if outcome != VerdictOutcome::Agree {
                        self.keep_trace(job, execution);
                    }
                    let verdict = Action::Verdict(Verdict { job, outcome });
                    out.push(self.submit(job, DutyTx::Verdict, verdict));
                }
            }
            Purpose::Watch => {
                let committed = state.job(&job).and_then(|j| match &j.phase {
                    JobPhase::Committed { result, .. } => Some(result.final_leaf),
                    _ => None,
                });
                match committed {
                    Some(final_leaf) if execution.leaves.last() != Some(&final_leaf) => {
                        if !self.sent.contains_key(&(job, DutyTx::Challenge)) {
                            self.stats.challenges += 1;
                            let outcome = VerdictOutcome::disagree(&execution);
                            self.keep_trace(job, execution);
                            let challenge = Action::Verdict(Verdict { job, outcome });
                            out.push(self.submit(job, DutyTx::Challenge, challenge));
                        }
                    }
                    // It agrees (or the result is past challenging): nothing owed.
                    _ => self.forget(&job),
                }
            }
            Purpose::Replay => self.keep_trace(job, execution),
        }
        // Only this job's duties can have changed: the run was all that held it back.
        if self.watch.contains(&job) {
            out.extend(self.duties_of(state, job));
        }
        out
    }

    /// Everything owed now on the watched jobs; finished jobs are forgotten. `O(watched)`:
    /// once per block, never per job.
    fn duties(&mut self, state: &State) -> Vec<Duty> {
        let mut out = Vec::new();
        let watched: Vec<JobId> = self.watch.iter().copied().collect();
        for id in watched {
            out.extend(self.duties_of(state, id));
        }
        out
    }

    /// What is owed now on the watched job `id`; forgotten if it is final.
    fn duties_of(&mut self, state: &State, id: JobId) -> Vec<Duty> {
        let mut out = Vec::new();
        match state.job(&id) {
            Some(job) if !job.phase.is_final() => {
                out.extend(self.resubmissions(state, id));
                if let Some(d) = self.duty_for(state, id) {
                    out.push(d);
                }
            }
            _ => self.forget(&id),
        }
        out
    }

    /// Records a transaction for a duty and hands it out.
    fn submit(&mut self, job: JobId, tx_kind: DutyTx, action: Action) -> Duty {
        let sent = Sent {
            at: self.height,
            action: action.clone(),
            hash: None,
            in_pool: true,
        };
        self.sent.insert((job, tx_kind), sent);
        Duty::Submit(DutyKey(job, tx_kind), Box::new(action))
    }

    /// The core submitted the transaction of `key`; `hash` is `None` if the mempool refused it.
    pub fn note_submitted(&mut self, key: DutyKey, hash: Option<attest_protocol::TxHash>) {
        if let Some(s) = self.sent.get_mut(&(key.0, key.1)) {
            s.hash = hash;
            s.in_pool = hash.is_some();
        }
    }

    /// After a commit, before [`Duties::on_commit`]: which of our transactions still wait in
    /// the mempool. Only one that left it without the ledger taking the duty is sent again;
    /// a second copy of one still waiting would be refused and take our later ones with it.
    pub fn note_pool(&mut self, waiting: impl Fn(&attest_protocol::TxHash) -> bool) {
        for s in self.sent.values_mut() {
            s.in_pool = s.hash.as_ref().is_some_and(&waiting);
        }
    }

    /// Transactions of `id` the ledger still shows owed long after we sent them: again.
    /// Those no longer owed (committed, or overtaken) are dropped.
    fn resubmissions(&mut self, state: &State, id: JobId) -> Vec<Duty> {
        let Some(me) = self.me else {
            return Vec::new();
        };
        let tx_kinds: Vec<DutyTx> = self
            .sent
            .range((id, DutyTx::Result)..=(id, DutyTx::Move(u32::MAX)))
            .map(|((_, tx_kind), _)| *tx_kind)
            .collect();
        let mut out = Vec::new();
        for tx_kind in tx_kinds {
            if !owed(state, &me, id, tx_kind) {
                self.sent.remove(&(id, tx_kind));
                continue;
            }
            let height = self.height;
            if let Some(s) = self.sent.get_mut(&(id, tx_kind))
                && s.in_pool
                && height.0 >= s.at.0 + RESUBMIT_AFTER_BLOCKS
                && let Some(hash) = s.hash
            {
                s.at = height;
                out.push(Duty::Regossip(hash));
            } else if let Some(s) = self.sent.get_mut(&(id, tx_kind))
                && !s.in_pool
                && height.0 >= s.at.0 + RESUBMIT_AFTER_BLOCKS
            {
                s.at = height;
                out.push(Duty::Submit(
                    DutyKey(id, tx_kind),
                    Box::new(s.action.clone()),
                ));
            }
        }
        out
    }

    fn forget(&mut self, id: &JobId) {
        self.watch.remove(id);
        self.traces.remove(id);
        let kinds: Vec<DutyTx> = self
            .sent
            .range((*id, DutyTx::Result)..=(*id, DutyTx::Move(u32::MAX)))
            .map(|((_, kind), _)| *kind)
            .collect();
        for kind in kinds {
            self.sent.remove(&(*id, kind));
        }
    }

    fn duty_for(&mut self, state: &State, id: JobId) -> Option<Duty> {
        let me = self.me?;
        let job = state.job(&id)?;
        if self.executing.contains_key(&id) {
            return None;
        }
        match &job.phase {
            JobPhase::Open { .. } if job.provider == me && self.config.serve => {
                if self.sent.contains_key(&(id, DutyTx::Result)) {
                    return None;
                }
                Some(self.run(id, job, Purpose::Provide))
            }
            JobPhase::Committed {
                check: Check::Pending { checker, .. },
                ..
            } if *checker == me && !self.sent.contains_key(&(id, DutyTx::Verdict)) => {
                Some(self.run(id, job, Purpose::Check))
            }
            JobPhase::Disputed { dispute, .. } => {
                let side = if job.provider == me {
                    Side::Provider
                } else if dispute.challenger == me {
                    Side::Challenger
                } else {
                    return None;
                };
                self.dispute_move(id, job, dispute, side)
            }
            _ => None,
        }
    }

    /// Our move in the dispute's current round, if we owe one and have not made it.
    fn dispute_move(
        &mut self,
        id: JobId,
        job: &attest_contracts_sim::Job,
        d: &attest_contracts_sim::Dispute,
        side: Side,
    ) -> Option<Duty> {
        if self.sent.contains_key(&(id, DutyTx::Move(d.round))) {
            return None;
        }
        let step = if d.round < d.rounds {
            let mine = match side {
                Side::Provider => d.provider_leaf,
                Side::Challenger => d.challenger_leaf,
            };
            if mine.is_some() {
                return None;
            }
            let Some(trace) = self.traces.get(&id) else {
                return Some(self.run(id, job, Purpose::Replay));
            };
            let index = round_index(d, job.step_count)?;
            let leaf = *trace.leaves.get(usize::try_from(index).ok()?)?;
            let proof = trace.tree().prove(index)?;
            DisputeStep::Open { index, leaf, proof }
        } else {
            // The resolution phase: only the challenger moves, with the activation of the
            // agreed step. Agreed means both traces hold it, so the honest one is it.
            if side != Side::Challenger {
                return None;
            }
            let lo = d.lo?;
            let w = job.workload().ok()?;
            let activation = workload::activation_at(&w, lo).ok()?;
            DisputeStep::Witness {
                activation: Activation::new(activation).ok()?,
            }
        };
        self.stats.dispute_moves += 1;
        let action = Action::Dispute(DisputeMove {
            job: id,
            round: Round(d.round),
            step,
        });
        Some(self.submit(id, DutyTx::Move(d.round), action))
    }

    /// Hands a job to the accelerator, with this node's cheat for it if any.
    fn run(&mut self, id: JobId, job: &attest_contracts_sim::Job, purpose: Purpose) -> Duty {
        let seed = *blake3::keyed_hash(&self.cheat_key, id.as_bytes()).as_bytes();
        #[cfg(feature = "cheats")]
        let cheat = self.cheat_for(job, purpose, &seed);
        let replaced = self.executing.insert(id, purpose);
        if replaced == Some(Purpose::Provide) {
            self.providing = self.providing.saturating_sub(1);
        }
        if purpose == Purpose::Provide {
            self.providing += 1;
        }
        Duty::Run(Box::new(JobRun {
            job: id,
            purpose,
            model: job.model.clone(),
            input: job.input.as_slice().to_vec(),
            max_tokens: job.max_tokens,
            #[cfg(feature = "cheats")]
            cheat,
            seed,
        }))
    }

    /// This node's test-only cheat for a run of `job`, if its settings draw one.
    #[cfg(feature = "cheats")]
    fn cheat_for(
        &self,
        job: &attest_contracts_sim::Job,
        purpose: Purpose,
        seed: &[u8; 32],
    ) -> Option<CheatMode> {
        // A replay must rebuild the trace we committed to, so it takes the same decision as
        // the run it repeats: the provider's cheat for our own jobs, the checker's otherwise.
        let as_provider = match purpose {
            Purpose::Provide => true,
            // A watcher with false verdicts on challenges falsely (a test of the bond).
            Purpose::Check | Purpose::Watch => false,
            Purpose::Replay => Some(job.provider) == self.me,
        };
        let cheat = if as_provider {
            self.config.danger_cheat
        } else {
            self.config.danger_false_verdicts.map(|c| Cheat {
                mode: CheatMode::Flip,
                ..c
            })
        };
        cheat.filter(|c| should_cheat(c, seed)).map(|c| c.mode)
    }

    fn keep_output(&mut self, id: JobId, output: Vec<u8>) {
        self.outputs.insert(id, output);
    }

    fn keep_trace(&mut self, id: JobId, execution: Execution) {
        self.traces.insert(id, execution);
    }
}

/// Whether the ledger still waits for our transaction in `tx_kind` of job `id`.
fn owed(state: &State, me: &AccountId, id: JobId, tx_kind: DutyTx) -> bool {
    let Some(job) = state.job(&id) else {
        return false;
    };
    match (tx_kind, &job.phase) {
        (DutyTx::Result, JobPhase::Open { .. }) => job.provider == *me,
        (
            DutyTx::Verdict,
            JobPhase::Committed {
                check: Check::Pending { checker, .. },
                ..
            },
        ) => checker == me,
        // A challenge stays owed while the result can be challenged (the contract refuses it
        // after the window, when the job has settled).
        (DutyTx::Challenge, JobPhase::Committed { .. }) => true,
        (DutyTx::Move(round), JobPhase::Disputed { dispute, .. }) if dispute.round == round => {
            if round >= dispute.rounds {
                // The resolution phase waits for the challenger's witness alone.
                return dispute.challenger == *me;
            }
            if job.provider == *me {
                dispute.provider_leaf.is_none()
            } else {
                dispute.challenger == *me && dispute.challenger_leaf.is_none()
            }
        }
        _ => false,
    }
}

/// Whether a node with `key` watches job `id` at `rate_ppm`: the first four bytes of
/// `H_key("attest/watch/v1" || id)`, little-endian, below `rate_ppm / 10^6` of their range.
fn watch_selected(key: &[u8; 32], id: &JobId, rate_ppm: u32) -> bool {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"attest/watch/v1");
    h.update(id.as_bytes());
    let mut four = [0u8; 4];
    four.copy_from_slice(&h.finalize().as_bytes()[..4]);
    let x = u64::from(u32::from_le_bytes(four));
    x * 1_000_000 < u64::from(rate_ppm.min(1_000_000)) << 32
}

/// Whether `me` checks or challenges in `phase`.
fn involves(phase: &JobPhase, me: &AccountId) -> bool {
    match phase {
        JobPhase::Committed {
            check: Check::Pending { checker, .. },
            ..
        } => checker == me,
        JobPhase::Disputed { dispute, .. } => dispute.challenger == *me,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flip() -> Option<Cheat> {
        Some("flip:0.5".parse().expect("a cheat setting"))
    }

    #[test]
    fn honest_settings_are_taken_by_every_build() {
        let config = MarketConfig::default().with_cheats(None, None);
        assert_eq!(config, Ok(MarketConfig::default()));
    }

    /// `.ci/run` runs this crate's unit tests once without the feature, so this runs in CI.
    #[cfg(not(feature = "cheats"))]
    #[test]
    fn a_build_without_the_feature_refuses_any_cheat() {
        let config = MarketConfig::default();
        assert_eq!(
            config.clone().with_cheats(flip(), None),
            Err(CheatsNotCompiled)
        );
        assert_eq!(config.with_cheats(None, flip()), Err(CheatsNotCompiled));
        const { assert!(!crate::accel::CHEATS_COMPILED) };
    }

    #[cfg(feature = "cheats")]
    #[test]
    fn a_build_with_the_feature_takes_the_cheats() {
        let config = MarketConfig::default()
            .with_cheats(flip(), flip())
            .expect("cheats build");
        assert_eq!(config.danger_cheat, flip());
        assert_eq!(config.danger_false_verdicts, flip());
        const { assert!(crate::accel::CHEATS_COMPILED) };
    }
}
