//! What the node loop answers queries with: the snapshot and view types the shell builds and
//! the HTTP API serialises. Both use this module and it uses neither, so the API and the shell
//! do not depend on each other's types (the API talks to the loop through
//! `crate::shell::NodeHandle`).

use serde::{Deserialize, Serialize};

use attest_contracts_sim::{Event, Job, JobCounts, SlashReason, StakeStatus, State as Ledger};
use attest_core::history::{Role, SlashEntry};
use attest_core::market::JobClock;
use attest_core::market::book::Reputation;
use attest_core::store::CommittedBlock;
use attest_protocol::{
    AccountId, Amount, BlockHash, DeviceName, Height, JobId, Nonce, PublicKey, Round, VoteKind,
};

/// What `Command::Blocks` read.
#[derive(Debug, Clone)]
pub struct BlockRange {
    /// The node's last committed height when it answered.
    pub latest: Height,
    /// The blocks read, ascending, without gaps, from the first height asked.
    pub blocks: Vec<CommittedBlock>,
}

/// A job as `Command::Job` answers it.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    /// The job as the ledger holds it now.
    pub job: Job,
    /// Its stages from the blocks this node committed since it started (`None` if it saw
    /// none of them, or the job was measured so long ago that its clock was dropped).
    pub clock: Option<JobClock>,
    /// The output bytes, if this node opened the job as gateway and holds them verified.
    pub output: Option<Vec<u8>>,
    /// Proof of the job's entry, when asked for.
    pub proof: Option<ProofView>,
}

/// Proofs of state entries for a light client (`?proof=true`): check them with
/// `attest_chain::verify_light` against block `height + 1` and its certificate, which carry
/// the root of the state after `height`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofView {
    /// The height of the proven state; block `height + 1`'s header carries its root.
    pub height: Height,
    /// The root the proofs are against.
    pub state_root: attest_protocol::Hash,
    /// The validators (account, power in units) that decide `height + 1`: the set its
    /// certificate must reach a quorum of, as this node knows it.
    pub validators: Vec<(PublicKey, Amount)>,
    /// Each entry's proof, hex of the canonical encoding of an `attest_contracts_sim::StateProof`.
    pub proofs: Vec<String>,
}

impl ProofView {
    /// Proofs of `keys` at `chain`'s head.
    pub fn of(chain: &attest_chain::Chain, keys: &[attest_contracts_sim::Key]) -> Self {
        Self {
            height: chain.height(),
            state_root: chain.state_root(),
            validators: chain
                .validators()
                .validators()
                .iter()
                .map(|v| (v.account(), Amount(v.power())))
                .collect(),
            proofs: keys
                .iter()
                .map(|k| hex::encode(attest_protocol::encoding::encode(&chain.prove(*k))))
                .collect(),
        }
    }
}

/// A snapshot of the node for `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The chain this node follows.
    pub chain_id: String,
    /// The hash of its genesis document (`GET /v1/genesis`), which an auditor pins.
    pub genesis_hash: attest_protocol::Hash,
    /// The node's PeerId.
    pub peer_id: String,
    /// The validator account.
    pub account: String,
    /// The last committed height.
    pub height: Height,
    /// The last committed block's hash.
    pub latest_block_hash: BlockHash,
    /// Connected peers.
    pub peers: usize,
    /// Transactions waiting.
    pub mempool: usize,
    /// While the node joins by state sync, what it is doing; `null` otherwise.
    pub state_sync: Option<String>,
    /// The height its stored blocks start after: 0, or the snapshot it joined from by state
    /// sync (blocks at or below it are not served by this node).
    pub base_height: Height,
    /// The height of the snapshot it offers to nodes joining by state sync, if any.
    pub offered_snapshot: Option<Height>,
}

/// Which connected peers hold a provider's advert, as each of them answered
/// (`GET /v1/adverts/{provider}/reach`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertReach {
    /// The provider asked about.
    pub provider: AccountId,
    /// How many connected peers were asked.
    pub asked: usize,
    /// The PeerIds that hold its advert.
    pub holding: Vec<String>,
    /// The PeerIds that answered without it.
    pub not_holding: Vec<String>,
    /// The PeerIds that did not answer in time.
    pub no_answer: Vec<String>,
}

/// The most job parts an account answer lists (`recent_jobs`).
pub const MAX_LISTED_JOBS: usize = 10;

/// The most slash records an account answer lists, newest last; `slashes_total` counts all.
pub const MAX_LISTED_SLASHES: usize = 100;

/// An account as `GET /v1/accounts/{id}` shows it. Built by the node loop from the state
/// ([`AccountSnapshot::of`]); serialised by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// The account.
    pub account: AccountId,
    /// Spendable balance, in units (0 for an account never seen).
    pub balance: Amount,
    /// The nonce its next transaction must carry.
    pub nonce: Nonce,
    /// Its stake, if it ever staked.
    pub stake: Option<StakeView>,
    /// Its record as a provider.
    pub provider: ProviderRecord,
    /// Jobs it opened as a client, by phase.
    pub client_jobs: PhaseCounts,
    /// What the protocol paid it for its work in all, in units: pay for provided jobs, checker
    /// fees, shares of slashes and forfeited bonds it won (not block fees).
    #[serde(default)]
    pub earned: Amount,
    /// What slashes and penalties took from its stake in all, in units.
    #[serde(default)]
    pub penalized: Amount,
    /// Verdicts it posted as a job's drawn checker.
    #[serde(default)]
    pub checks: u64,
    /// Bisection disputes it won, as provider or challenger.
    #[serde(default)]
    pub disputes_won: u64,
    /// Bisection disputes it lost, on either side.
    #[serde(default)]
    pub disputes_lost: u64,
    /// Its newest parts in jobs from this node's history index, newest first, at most
    /// [`MAX_LISTED_JOBS`]: the height it took the part at, `client`, `provider` or
    /// `checker`, and the job.
    #[serde(default)]
    pub recent_jobs: Vec<(Height, String, JobId)>,
    /// Its voting power if it is in the validator set of the next height (the top
    /// `max_validators` active stakes), else `null`.
    #[serde(default)]
    pub validator_power: Option<u64>,
    /// Proofs of its account, stake and record entries, when asked for (`?proof=true`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub proof: Option<ProofView>,
}

/// An account's stake and standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeView {
    /// Bonded stake, in units.
    pub bonded: Amount,
    /// Stake on its way out, oldest first: still slashable until released.
    pub unbonding: Vec<UnbondView>,
    /// `active`, `jailed` or `banned`.
    pub status: String,
    /// Whether it may be assigned jobs and checks now (active, with `min_stake` bonded).
    pub eligible: bool,
    /// Disputes lost as a provider.
    pub disputes_lost: u32,
    /// Jobs left that are always checked (probation after a lost dispute).
    pub probation_left: u32,
    /// The node bound to the account: its identity key.
    pub node: PublicKey,
    /// The same node as a libp2p PeerId.
    pub node_peer_id: String,
    /// The bound node's device profile (which models it may provide and check).
    pub device: DeviceName,
    /// That device's memory, in bytes: a model fits if its weights do.
    pub memory_bytes: u64,
}

/// Stake unbonding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbondView {
    /// How much, in units.
    pub amount: Amount,
    /// The block time (ms since the Unix epoch) at which it returns to the balance.
    pub release_at_ms: u64,
}

/// Jobs by phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCounts {
    /// Waiting for the provider's result.
    pub open: u64,
    /// Result committed, being checked or waiting to settle.
    pub committed: u64,
    /// In dispute.
    pub disputed: u64,
    /// Paid out.
    pub settled: u64,
    /// Escrow returned to the client.
    pub refunded: u64,
}

impl From<JobCounts> for PhaseCounts {
    fn from(c: JobCounts) -> Self {
        Self {
            open: c.open,
            committed: c.committed,
            disputed: c.disputed,
            settled: c.settled,
            refunded: c.refunded,
        }
    }
}

/// An account's record as a provider, from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// Jobs naming it as provider, by phase.
    pub jobs: PhaseCounts,
    /// Its standing, as the gateway ranks it.
    pub reputation: ReputationView,
    /// Slashes naming it (as provider, checker or validator).
    pub slashes_total: u64,
    /// The newest of them, at most [`MAX_LISTED_SLASHES`], oldest first.
    pub slashes: Vec<SlashView>,
}

/// One slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashView {
    /// Stake taken, in units.
    pub amount: Amount,
    /// The block that slashed it.
    pub height: Height,
    /// Why.
    #[serde(flatten)]
    pub reason: ReasonView,
}

/// A slash reason: its name and what it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonView {
    /// `missed_commit`, `missed_verdict`, `dispute_lost` or `equivocation`.
    pub reason: String,
    /// The job, for the job faults.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub job: Option<JobId>,
    /// The votes' height, round and kind (`prevote` or `precommit`), for equivocation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vote: Option<(Height, Round, String)>,
}

impl ReasonView {
    /// The view of `reason`.
    pub fn new(reason: &SlashReason) -> Self {
        let (job, vote) = match reason {
            SlashReason::MissedCommit { job }
            | SlashReason::MissedVerdict { job }
            | SlashReason::DisputeLost { job } => (Some(*job), None),
            SlashReason::Equivocation {
                height,
                round,
                kind,
            } => {
                let kind = match kind {
                    VoteKind::Prevote => "prevote",
                    VoteKind::Precommit => "precommit",
                };
                (None, Some((*height, *round, kind.to_owned())))
            }
        };
        Self {
            reason: crate::metrics::slash_reason(reason).to_owned(),
            job,
            vote,
        }
    }
}

fn status_name(status: StakeStatus) -> &'static str {
    match status {
        StakeStatus::Active => "active",
        StakeStatus::Jailed => "jailed",
        StakeStatus::Banned => "banned",
    }
}

impl AccountSnapshot {
    /// `id` in `state`: look-ups only, the counts are the account's running record in the
    /// state. Its validator power is the caller's to fill in, and what the node's history
    /// holds of it with [`AccountSnapshot::with_history`].
    pub fn of(state: &Ledger, id: &AccountId) -> Self {
        let account = state.account(id);
        let record = state.record(id);
        let stake = state.stake(id).map(|s| StakeView {
            bonded: s.bonded,
            unbonding: s
                .unbonding
                .iter()
                .map(|u| UnbondView {
                    amount: u.amount,
                    release_at_ms: u.release_at_ms,
                })
                .collect(),
            status: status_name(s.status).to_owned(),
            eligible: s.eligible(state.params().min_stake),
            disputes_lost: s.disputes_lost,
            probation_left: s.probation_left,
            node: s.node,
            node_peer_id: s.node.peer_id(),
            device: s.capability.device.clone(),
            memory_bytes: s.capability.memory_bytes,
        });
        let reputation = Reputation {
            settled: record.provided.settled,
            slashes: record.slashes,
        };
        Self {
            account: *id,
            balance: account.balance,
            nonce: account.nonce,
            stake,
            provider: ProviderRecord {
                jobs: record.provided.into(),
                reputation: reputation.into(),
                slashes_total: record.slashes,
                slashes: Vec::new(),
            },
            client_jobs: record.opened.into(),
            earned: record.earned,
            penalized: record.slashed,
            checks: record.checks,
            disputes_won: record.disputes_won,
            disputes_lost: record.disputes_lost,
            recent_jobs: Vec::new(),
            validator_power: None,
            proof: None,
        }
    }

    /// Adds what the node's history holds of the account: `slashes`, its newest slashes
    /// (newest first, at most [`MAX_LISTED_SLASHES`] kept, listed oldest first), and `jobs`,
    /// its newest parts in jobs (newest first, at most [`MAX_LISTED_JOBS`] kept).
    pub fn with_history(
        mut self,
        slashes: &[SlashEntry],
        jobs: Vec<(Height, Role, JobId)>,
    ) -> Self {
        self.provider.slashes = slashes
            .iter()
            .take(MAX_LISTED_SLASHES)
            .rev()
            .map(|s| SlashView {
                amount: s.amount,
                height: s.height,
                reason: ReasonView::new(&s.reason),
            })
            .collect();
        self.recent_jobs = jobs
            .into_iter()
            .take(MAX_LISTED_JOBS)
            .map(|(height, role, job)| (height, role.name().to_owned(), job))
            .collect();
        self
    }
}

/// A provider's standing from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationView {
    /// Jobs it provided that settled.
    pub settled: u64,
    /// Slashes naming it.
    pub slashes: u64,
    /// The band picks rank on first (higher is better).
    pub tier: i32,
}

impl From<Reputation> for ReputationView {
    fn from(r: Reputation) -> Self {
        Self {
            settled: r.settled,
            slashes: r.slashes,
            tier: r.tier(),
        }
    }
}

/// Subscribers the stream serves at once. Each holds a connection and a cursor into the
/// shared buffer (not a copy of it), so the bound is about connections and serialisation
/// work, not memory; 64 is far more than the dashboards and CLIs of a testnet need.
pub const MAX_SUBSCRIBERS: usize = 64;

/// A committed block and the contract events of interest in it, as the loop publishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvents {
    /// The block's height.
    pub height: Height,
    /// The block's hash.
    pub hash: BlockHash,
    /// Transactions it carried.
    pub txs: usize,
    /// Its block time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Its contract events that [`event_name`] names, in order.
    pub events: Vec<Event>,
}

impl BlockEvents {
    /// The block's facts and, of `events`, only those the stream carries.
    pub fn new(
        height: Height,
        hash: BlockHash,
        txs: usize,
        time_ms: u64,
        mut events: Vec<Event>,
    ) -> Self {
        events.retain(|e| event_name(e).is_some());
        Self {
            height,
            hash,
            txs,
            time_ms,
            events,
        }
    }
}

/// A contract event as JSON: its fields as the contract names them, with the block's height
/// and time (`height`, `time_ms`) added, and a slash's reason flattened as `/v1/accounts` shows it.
pub fn event_json(height: Height, time_ms: u64, event: &Event) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    // Every variant serialises as `{"Variant": {fields}}`; the fields are what we send.
    let mut fields = match serde_json::to_value(event) {
        Ok(Value::Object(outer)) => match outer.into_iter().next() {
            Some((_, Value::Object(inner))) => inner,
            _ => Map::new(),
        },
        _ => Map::new(),
    };
    if let Event::Slashed { reason, .. } = event {
        let reason = ReasonView::new(reason);
        if let Ok(Value::Object(r)) = serde_json::to_value(reason) {
            fields.remove("reason");
            fields.extend(r);
        }
    }
    fields.insert("height".into(), json!(height));
    fields.insert("time_ms".into(), json!(time_ms));
    if let Some(name) = event_name(event) {
        fields.insert("event".into(), json!(name));
    }
    Value::Object(fields)
}

/// The SSE event name of a contract event the stream carries, `None` for the rest (fees,
/// transfers and stake movements, which the blocks and accounts show).
pub fn event_name(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::JobOpened { .. } => "job_opened",
        Event::ResultCommitted { .. } => "result_committed",
        Event::CheckAssigned { .. } => "check_assigned",
        Event::NoCheckerAvailable { .. } => "no_checker_available",
        Event::VerdictPosted { .. } => "verdict_posted",
        Event::VerdictMissed { .. } => "verdict_missed",
        Event::CommitMissed { .. } => "commit_missed",
        Event::DisputeOpened { .. } => "dispute_opened",
        Event::DisputeRound { .. } => "dispute_round",
        Event::DisputeResolved { .. } => "dispute_resolved",
        Event::Settled { .. } => "settled",
        Event::Refunded { .. } => "refunded",
        Event::Slashed { .. } => "slashed",
        Event::ProbationStarted { .. } => "probation_started",
        Event::Jailed { .. } => "jailed",
        Event::FeePaid { .. }
        | Event::Transfer { .. }
        | Event::Staked { .. }
        | Event::Unbonding { .. }
        | Event::Released { .. } => return None,
        Event::BondReturned { .. } => "bond_returned",
        Event::BondForfeited { .. } => "bond_forfeited",
    })
}

/// `GET /v1/validators`: the validator set that decides the next height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorsView {
    /// The height it decides (the node's height + 1).
    pub height: Height,
    /// The sum of their power.
    pub total_power: u64,
    /// Each validator and its power (its bonded stake), in the set's order.
    pub validators: Vec<ValidatorView>,
}

/// One validator of a [`ValidatorsView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorView {
    /// Its account.
    pub account: AccountId,
    /// Its voting power.
    pub power: u64,
}

/// Where a transaction is, as `Command::Tx` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// In the block at `height`, at `index`.
    Committed {
        /// The block's height.
        height: Height,
        /// Its place in the block, from 0.
        index: u32,
    },
    /// Admitted to this node's mempool, not committed yet.
    Pending,
    /// Neither in the mempool nor in a block this node indexed.
    Unknown,
}
