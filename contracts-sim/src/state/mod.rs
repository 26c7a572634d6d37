//! The ledger state, its genesis, its root and its read-only queries.
//!
//! The live state holds what the rules can still need: accounts, stakes, running jobs and
//! final jobs for `retention_blocks` more, evidence while it can still matter, and a running
//! [`Record`] per account. Everything else (finished jobs, slashes) is in the ledger's blocks
//! and events, which hosts index into their history. Its root is a sparse Merkle tree over its
//! entries ([`keys`]), updated from the keys a block touched ([`tree`]).

mod journal;
pub mod keys;
mod tree;

use std::collections::{BTreeMap, BTreeSet};

use attest_protocol::limits::MAX_INPUT_BYTES;
use attest_protocol::smt::SparseMerkleTree;
use attest_protocol::tx::{Capability, CheckLevel};
use attest_protocol::workload::{self, WorkloadError};
use attest_protocol::{AccountId, Amount, BlockHash, Bytes, ChainId, DeviceName, Hash, Height};
use attest_protocol::{JobId, ModelId, Nonce, PublicKey, Round, VoteKind};
use serde::{Deserialize, Serialize};

use crate::error::GenesisError;
use crate::events::SlashReason;
use crate::params::Params;
use keys::{Entry, Key, Meta};
pub use tree::{SnapshotError, StateProof, StateProofError};

/// The facts of the block being applied, taken from its header and nothing else: the state
/// machine reads no clock and no randomness of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// The block's height.
    pub height: Height,
    /// The block's timestamp (milliseconds since the Unix epoch), from its header: every
    /// deadline, window and release is in this block time, so a window lasts as long under
    /// load as idle, and replay still reads no clock.
    pub time_ms: u64,
    /// The block's hash: the spot-check seed of results committed in it.
    pub block_hash: BlockHash,
    /// The block's proposer, who receives the fees.
    pub proposer: AccountId,
}

/// The chain's starting point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The chain id every evidence signature is checked against.
    pub chain_id: ChainId,
    /// The parameters.
    pub params: Params,
    /// Opening balances.
    pub balances: Vec<(AccountId, Amount)>,
    /// Opening stakes: account, node key, bonded amount, the node's device. Genesis is
    /// trusted, so no node binding signature is asked for.
    pub stakes: Vec<(AccountId, PublicKey, Amount, Capability)>,
}

/// An account's spendable balance and next nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Account {
    /// Spendable tokens.
    pub balance: Amount,
    /// The nonce its next transaction must carry.
    pub nonce: Nonce,
}

/// Whether a staked account may be assigned work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StakeStatus {
    /// In good standing.
    Active,
    /// Jailed for equivocation. There is no unjail transaction in this version.
    Jailed,
    /// Banned after losing a second dispute as a provider.
    Banned,
}

/// Stake on its way out: still slashable until `release_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbond {
    /// How much.
    pub amount: Amount,
    /// The block time at which it returns to the balance (at the end of the first block
    /// whose time reaches it).
    pub release_at_ms: u64,
}

/// At most this many unbonding entries per account: each `Unstake` adds one, and the list is
/// scanned on every slash and release.
pub const MAX_UNBONDING_ENTRIES: usize = 32;

/// An account's stake and standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeEntry {
    /// The node bound to the account (its PeerId's key).
    pub node: PublicKey,
    /// Bonded stake: what checker draws weigh and `min_stake` compares.
    pub bonded: Amount,
    /// Unbonding stake, oldest first.
    pub unbonding: Vec<Unbond>,
    /// Standing.
    pub status: StakeStatus,
    /// Disputes lost as a provider.
    pub disputes_lost: u32,
    /// Jobs left that are checked with p = 1 (probation).
    pub probation_left: u32,
    /// The bound node's device: which models the account may provide and check.
    pub capability: Capability,
}

impl StakeEntry {
    /// Bonded plus unbonding: everything a slash can reach. `None` on overflow, which the
    /// supply bound rules out.
    pub fn total(&self) -> Option<Amount> {
        self.unbonding
            .iter()
            .try_fold(self.bonded, |acc, u| acc.checked_add(u.amount))
    }

    /// Whether the account may be assigned jobs or checks.
    pub fn eligible(&self, min_stake: Amount) -> bool {
        self.status == StakeStatus::Active && self.bonded >= min_stake && self.bonded.0 > 0
    }

    /// Whether it may be assigned a job or a check of `model`: eligible, and its device
    /// holds the model's weights.
    pub fn can_serve(&self, min_stake: Amount, model: &str) -> bool {
        self.eligible(min_stake) && self.capability.can_run(model)
    }
}

/// What a provider committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The output hash.
    pub output_hash: Hash,
    /// The trace root.
    pub trace_root: Hash,
    /// The trace's last leaf, `leaf_hash(step_count - 1, final_activation)`: the commit
    /// proved it against `trace_root`, and its activation ends in `output_hash`. A checker
    /// disagrees only by showing a different one.
    pub final_leaf: Hash,
    /// Tokens generated (always the job's `max_tokens`).
    pub tokens: u32,
    /// The block of the commit.
    pub committed_at: Height,
    /// That block's time.
    pub committed_at_ms: u64,
    /// The spot-check seed `H(spot-check, block hash, job id)`; checker redraws reuse it.
    pub seed: Hash,
}

/// The check state of a committed result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Check {
    /// Not checked: settles at the end of the first block whose time reaches `settle_at_ms`;
    /// until then anyone who may challenge can.
    Unchecked {
        /// The settlement time.
        settle_at_ms: u64,
    },
    /// A checker was assigned and owes a verdict by `deadline_ms`.
    Pending {
        /// The checker.
        checker: AccountId,
        /// The latest block time for its verdict.
        deadline_ms: u64,
        /// Redraws made so far (the draw counter of the current checker).
        redraws: u32,
        /// Checkers that missed their window on this job, never drawn again for it.
        failed: Vec<AccountId>,
    },
}

/// Which side of a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// The job's provider.
    Provider,
    /// The checker that disagreed.
    Challenger,
}

/// A bisection dispute in progress (see [`crate::apply::disputes`] for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// The checker that disagreed, or the account that challenged.
    pub challenger: AccountId,
    /// What the challenger locked: zero for the assigned checker, the chain's challenge bond
    /// for anyone else. Held here until the dispute ends.
    pub bond: Amount,
    /// Its trace root.
    pub challenger_root: Hash,
    /// Bisection rounds: `ceil(log2 step_count)`. Round `rounds` is the resolution phase.
    pub rounds: u32,
    /// The current round.
    pub round: u32,
    /// The highest agreed virtual index; `None` is index -1 (the initial activation).
    pub lo: Option<u64>,
    /// The leaf both parties opened at `lo` (when `lo` is an index).
    pub agreed_leaf: Option<Hash>,
    /// The two leaves (provider, challenger) at the disagreed end `hi`: at first the last
    /// leaves the commit and the verdict proved, then those of each disagreeing round.
    pub hi_leaves: (Hash, Hash),
    /// The provider's opening this round.
    pub provider_leaf: Option<Hash>,
    /// The challenger's opening this round.
    pub challenger_leaf: Option<Hash>,
    /// The latest block time for the current round's moves.
    pub deadline_ms: u64,
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobPhase {
    /// Waiting for the provider's result until `deadline_ms`.
    Open {
        /// The latest block time for the result.
        deadline_ms: u64,
    },
    /// A result is committed; checked or waiting for settlement.
    Committed {
        /// The result.
        result: Committed,
        /// Its check.
        check: Check,
    },
    /// A dispute over the result is running.
    Disputed {
        /// The result.
        result: Committed,
        /// The dispute.
        dispute: Box<Dispute>,
    },
    /// Paid out.
    Settled,
    /// Escrow returned to the client.
    Refunded,
}

impl JobPhase {
    /// The phase's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            JobPhase::Open { .. } => "open",
            JobPhase::Committed { .. } => "committed",
            JobPhase::Disputed { .. } => "disputed",
            JobPhase::Settled => "settled",
            JobPhase::Refunded => "refunded",
        }
    }

    /// The block time at which the phase times out (at the end of the first block whose
    /// time reaches it), if it can.
    pub fn deadline_ms(&self) -> Option<u64> {
        match self {
            JobPhase::Open { deadline_ms } => Some(*deadline_ms),
            JobPhase::Committed { check, .. } => Some(match check {
                Check::Unchecked { settle_at_ms } => *settle_at_ms,
                Check::Pending { deadline_ms, .. } => *deadline_ms,
            }),
            JobPhase::Disputed { dispute, .. } => Some(dispute.deadline_ms),
            JobPhase::Settled | JobPhase::Refunded => None,
        }
    }

    /// Whether the job is over.
    pub fn is_final(&self) -> bool {
        matches!(self, JobPhase::Settled | JobPhase::Refunded)
    }
}

/// What stands behind a job's result beyond the provider's own commitment, as the contract
/// established it. With the job's phase it says what a result is worth: a `Settled` job with
/// `None` was never checked by anyone; with `Agreed` a drawn checker re-executed it and
/// agreed; with `Disputed` the provider won a dispute (and a `Refunded` one lost it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Review {
    /// Nobody has checked or challenged the result (or there is none yet).
    #[default]
    None,
    /// The assigned checker re-executed it and agreed.
    Agreed {
        /// The checker.
        checker: AccountId,
    },
    /// A dispute was opened over it.
    Disputed {
        /// The assigned checker that disagreed, or the challenger.
        challenger: AccountId,
        /// Whether it was the assigned checker (no bond) rather than a challenger.
        assigned: bool,
    },
}

/// A fault established on a job: the record that backs a slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Who was at fault.
    pub who: AccountId,
    /// The slash reason it backs.
    pub reason: SlashReason,
}

/// A job and everything the contract needs to referee it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The client that opened it.
    pub client: AccountId,
    /// The provider it names.
    pub provider: AccountId,
    /// The model.
    pub model: ModelId,
    /// The input; the referee re-executes from it.
    pub input: Bytes<MAX_INPUT_BYTES>,
    /// Tokens to generate.
    pub max_tokens: u32,
    /// The advert's device.
    pub device: DeviceName,
    /// The advert's price per token.
    pub price_per_token: Amount,
    /// The trace's step count, computed from model, input and tokens at opening.
    pub step_count: u64,
    /// Escrow still locked (zero once the job is final).
    pub escrow: Amount,
    /// The block that opened it.
    pub opened_at: Height,
    /// The assurance its client bought.
    pub check: CheckLevel,
    /// Where it is.
    pub phase: JobPhase,
    /// Faults established on it (each backs one slash).
    pub faults: Vec<Fault>,
    /// Who checked or challenged its result.
    pub review: Review,
}

impl Job {
    /// The tokens the job holds: its escrow, and a challenger's bond while disputed.
    pub fn locked(&self) -> u128 {
        let bond = match &self.phase {
            JobPhase::Disputed { dispute, .. } => dispute.bond.0,
            _ => 0,
        };
        u128::from(self.escrow.0) + u128::from(bond)
    }

    /// The workload job this job describes: what the result is checked against and what the
    /// dispute referee runs. Opening checked it, so it only fails for a job no rule admits.
    pub fn workload(&self) -> Result<workload::Job<'_>, WorkloadError> {
        workload::Job::new(self.model.as_str(), &self.input, self.max_tokens)
    }

    /// The index of the trace's last step, `step_count - 1` (every job has a step).
    pub fn last_step(&self) -> u64 {
        self.step_count.saturating_sub(1)
    }
}

/// The key of an equivocation: one punishment per signer, height, round and vote kind.
pub type EvidenceKey = (AccountId, Height, Round, VoteKind);

/// An evidence entry as the live state orders it: by height first, so the entries past the
/// unbonding period leave from the front.
pub type LiveEvidence = (Height, AccountId, Round, VoteKind);

/// Jobs by where they are, for one account in one role. Counts only move: a job's count
/// moves from phase to phase and stays in `settled` or `refunded` after the job leaves the
/// live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobCounts {
    /// Waiting for the provider's result.
    pub open: u64,
    /// Result committed, not final yet.
    pub committed: u64,
    /// Under dispute.
    pub disputed: u64,
    /// Paid out.
    pub settled: u64,
    /// Escrow returned.
    pub refunded: u64,
}

impl JobCounts {
    /// Moves `delta` jobs into (or, negative, out of) the phase named `phase`; saturating.
    pub fn add(&mut self, phase: &str, delta: i8) {
        let slot = match phase {
            "open" => &mut self.open,
            "committed" => &mut self.committed,
            "disputed" => &mut self.disputed,
            "settled" => &mut self.settled,
            _ => &mut self.refunded,
        };
        *slot = if delta >= 0 {
            slot.saturating_add(u64::from(delta.unsigned_abs()))
        } else {
            slot.saturating_sub(u64::from(delta.unsigned_abs()))
        };
    }

    /// All jobs counted.
    pub fn total(&self) -> u64 {
        [
            self.open,
            self.committed,
            self.disputed,
            self.settled,
            self.refunded,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// An account's running record, kept up to date by every transition (never recomputed by a
/// scan): what a quote's reputation and an account view read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// Jobs that named it as their provider.
    pub provided: JobCounts,
    /// Jobs it opened as a client.
    pub opened: JobCounts,
    /// How often its stake was slashed.
    pub slashes: u64,
    /// How much stake slashes took in all.
    pub slashed: Amount,
    /// What the protocol paid it in all for its work: its pay for provided jobs that settled
    /// (after the protocol's share), checker fees, and its shares of slashes and forfeited
    /// bonds as a dispute's winner or an equivocation's reporter. Block fees are not counted.
    pub earned: Amount,
    /// Verdicts it posted as a job's drawn checker (agreeing or disagreeing).
    pub checks: u64,
    /// Bisection disputes it won, as the provider or as the challenger (a drawn checker that
    /// disagreed, or anyone who challenged with a bond).
    pub disputes_won: u64,
    /// Bisection disputes it lost, on either side.
    pub disputes_lost: u64,
}

/// The whole ledger state. Every collection is ordered, and its root is the state tree over
/// its entries ([`keys::Key`]), so equal states have equal roots on every machine.
#[derive(Debug, Clone)]
pub struct State {
    pub(crate) chain_id: ChainId,
    pub(crate) params: Params,
    pub(crate) genesis_supply: Amount,
    pub(crate) accounts: BTreeMap<AccountId, Account>,
    pub(crate) stakes: BTreeMap<AccountId, StakeEntry>,
    /// Node key to the account it is bound to.
    pub(crate) nodes: BTreeMap<PublicKey, AccountId>,
    pub(crate) records: BTreeMap<AccountId, Record>,
    pub(crate) jobs: BTreeMap<JobId, Job>,
    /// `(deadline in block time, job)` for every job that can time out: `end_block` pops
    /// these in order instead of scanning every job.
    pub(crate) timers: BTreeSet<(u64, JobId)>,
    /// `(release time, account)` for unbonding entries.
    pub(crate) releases: BTreeSet<(u64, AccountId)>,
    /// `(height, job)`: final jobs leaving the live state at the end of that height.
    pub(crate) retire: BTreeSet<(Height, JobId)>,
    pub(crate) treasury: Amount,
    pub(crate) evidence: BTreeSet<LiveEvidence>,
    /// Every active stake with bonded stake, most bonded first (ties by account): the
    /// validator set is its first `max_validators`. Derived from the stakes by every write
    /// ([`State::write_raw`]); not an entry of its own.
    pub(crate) ranked: BTreeSet<(std::cmp::Reverse<Amount>, AccountId)>,
    /// Prior values of what the current transaction (or speculated block) touched, to undo
    /// it. Empty between transitions; not state.
    pub(crate) journal: Vec<(Key, Option<Entry>)>,
    /// Whether a block is being speculated (the journal is kept across transactions).
    pub(crate) holding: bool,
    /// The height of the block being applied (set by `apply` and `end_block`); not state.
    pub(crate) at: Height,
    /// Keys written since the root was last computed.
    pub(crate) touched: BTreeSet<Key>,
    /// The state tree as of the last root.
    pub(crate) tree: SparseMerkleTree,
}

impl PartialEq for State {
    /// Equal entries (the tree and the bookkeeping follow from them).
    fn eq(&self, other: &Self) -> bool {
        self.chain_id == other.chain_id
            && self.params == other.params
            && self.genesis_supply == other.genesis_supply
            && self.accounts == other.accounts
            && self.stakes == other.stakes
            && self.nodes == other.nodes
            && self.records == other.records
            && self.jobs == other.jobs
            && self.timers == other.timers
            && self.releases == other.releases
            && self.retire == other.retire
            && self.treasury == other.treasury
            && self.evidence == other.evidence
    }
}

impl Eq for State {}

impl State {
    /// The state at genesis.
    pub fn from_genesis(genesis: &Genesis) -> Result<State, GenesisError> {
        genesis.params.validate()?;
        let mut supply = Amount::ZERO;
        let mut accounts = BTreeMap::new();
        for (id, amount) in &genesis.balances {
            let account = Account {
                balance: *amount,
                nonce: Nonce(0),
            };
            if accounts.insert(*id, account).is_some() {
                return Err(GenesisError::DuplicateBalance { account: *id });
            }
            supply = supply
                .checked_add(*amount)
                .ok_or(GenesisError::SupplyOverflow)?;
        }
        let mut stakes = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for (id, node, amount, capability) in &genesis.stakes {
            if nodes.insert(*node, *id).is_some() {
                return Err(GenesisError::DuplicateNode { node: *node });
            }
            let entry = StakeEntry {
                node: *node,
                bonded: *amount,
                unbonding: Vec::new(),
                status: StakeStatus::Active,
                disputes_lost: 0,
                probation_left: 0,
                capability: capability.clone(),
            };
            if stakes.insert(*id, entry).is_some() {
                return Err(GenesisError::DuplicateStake { account: *id });
            }
            accounts.entry(*id).or_insert_with(Account::default);
            supply = supply
                .checked_add(*amount)
                .ok_or(GenesisError::SupplyOverflow)?;
        }
        let mut state = State::empty(Meta {
            chain_id: genesis.chain_id.clone(),
            params: genesis.params.clone(),
            genesis_supply: supply,
        });
        for (id, account) in accounts {
            state.write_raw(Key::Account(id), Some(Entry::Account(account)));
        }
        for (id, entry) in stakes {
            state.write_raw(Key::Stake(id), Some(Entry::Stake(Box::new(entry))));
        }
        for (node, id) in nodes {
            state.write_raw(Key::Node(node), Some(Entry::Node(id)));
        }
        Ok(state)
    }

    /// A state with only its meta entry and a zero treasury.
    fn empty(meta: Meta) -> State {
        let mut state = State {
            chain_id: meta.chain_id.clone(),
            params: meta.params.clone(),
            genesis_supply: meta.genesis_supply,
            accounts: BTreeMap::new(),
            stakes: BTreeMap::new(),
            nodes: BTreeMap::new(),
            records: BTreeMap::new(),
            jobs: BTreeMap::new(),
            timers: BTreeSet::new(),
            releases: BTreeSet::new(),
            retire: BTreeSet::new(),
            treasury: Amount::ZERO,
            evidence: BTreeSet::new(),
            ranked: BTreeSet::new(),
            journal: Vec::new(),
            holding: false,
            at: Height(0),
            touched: BTreeSet::new(),
            tree: SparseMerkleTree::new(),
        };
        state.touched.insert(Key::Meta);
        state.touched.insert(Key::Treasury);
        state
    }

    /// The chain id.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The supply created at genesis, which every transition conserves.
    pub fn genesis_supply(&self) -> Amount {
        self.genesis_supply
    }

    /// An account's balance and nonce (zero for an account never seen).
    pub fn account(&self, id: &AccountId) -> Account {
        self.accounts.get(id).copied().unwrap_or_default()
    }

    /// Every account, in key order.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &Account)> {
        self.accounts.iter()
    }

    /// An account's stake, if it ever staked.
    pub fn stake(&self, id: &AccountId) -> Option<&StakeEntry> {
        self.stakes.get(id)
    }

    /// Every stake, in account order.
    pub fn stakes(&self) -> impl Iterator<Item = (&AccountId, &StakeEntry)> {
        self.stakes.iter()
    }

    /// The validators of the height after this state: the first `max_validators` active
    /// stakes with bonded stake, most bonded first, ties by account key. Reads an ordered
    /// index: its cost is the set's size, not the number of stakes.
    pub fn validators(&self) -> impl Iterator<Item = (AccountId, Amount)> + '_ {
        self.ranked
            .iter()
            .take(self.params.max_validators as usize)
            .map(|(std::cmp::Reverse(bonded), id)| (*id, *bonded))
    }

    /// The account a node key is bound to.
    pub fn node_account(&self, node: &PublicKey) -> Option<&AccountId> {
        self.nodes.get(node)
    }

    /// A job.
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Every job, in id order.
    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &Job)> {
        self.jobs.iter()
    }

    /// The treasury's balance.
    pub fn treasury(&self) -> Amount {
        self.treasury
    }

    /// An account's running record (all zeros for an account never seen).
    pub fn record(&self, id: &AccountId) -> Record {
        self.records.get(id).copied().unwrap_or_default()
    }

    /// How many entries the live state holds.
    pub fn entries(&self) -> usize {
        // Meta and treasury, then the tables.
        2 + self.accounts.len()
            + self.stakes.len()
            + self.nodes.len()
            + self.records.len()
            + self.jobs.len()
            + self.timers.len()
            + self.releases.len()
            + self.retire.len()
            + self.evidence.len()
    }

    /// Escrow locked in unfinished jobs.
    pub fn escrow_total(&self) -> Option<Amount> {
        self.jobs
            .values()
            .try_fold(Amount::ZERO, |acc, j| acc.checked_add(j.escrow))
    }

    /// Whether an account other than `provider` and `client` may be drawn to check a job of
    /// `model`: the rule "a job needs a capable checker". A scan of the stakes (the set of
    /// staked accounts), stopped at the first.
    pub fn has_capable_checker(
        &self,
        model: &str,
        provider: &AccountId,
        client: &AccountId,
    ) -> bool {
        self.stakes.iter().any(|(who, s)| {
            who != provider && who != client && s.can_serve(self.params.min_stake, model)
        })
    }
}
