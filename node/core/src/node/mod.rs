//! `NodeCore`: one node, sans-IO.
//!
//! It holds two participants: the ledger node ([`Ledger`]: the committed chain, the mempool,
//! the consensus instance, the proposals applied at the height being decided, sync) and the
//! market participant ([`Participant`]: duties, measurements, the gateway, the advert book).
//! It takes inputs (`handle_gossip`, `submit_tx`, `handle_timeout`, `handle_response`,
//! `handle_job_done`, each with `now` in milliseconds since the Unix epoch) and yields effects
//! (`poll_effect`) and its next deadline (`poll_timeout`). It never touches a socket, a file,
//! the clock or OS randomness: the node shell, the local network and the simulator drive it
//! and carry out its effects in order through [`crate::host`].
//!
//! Pacing: after a block commits the next height starts at once if transactions wait, and
//! otherwise when the first transaction or consensus message for it arrives, or when the idle
//! interval has passed, so an idle chain still makes blocks and time-based windows advance.

pub mod adverts;
mod joining;
pub mod requests;

use std::collections::{BTreeMap, VecDeque};

use attest_contracts_sim::Event;
use attest_protocol::{
    AccountId, Amount, Block, BlockHash, BoundedVec, Canonical, CommitCertificate, Height, Nonce,
    SecretKey, Signed, SignedTx, TxHash, Verified, Vote,
};

use attest_chain::{Applied, BlockError, Chain, ChainError, ValidatorSetError};
use attest_consensus::{
    BlockValidity, Consensus, ConsensusConfig, Input, InputError, LockRecord, Output, OwnMessage,
    TimeoutConfig, TimeoutId,
};
use attest_protocol::JobId;
use attest_protocol::workload::Execution;

use attest_chain::statesync::SyncSnapshot;

use crate::history::HistoryBatch;
use crate::market::{
    AdvertBook, Duties, Duty, DutyStats, Gateway, GatewayStats, JobRun, MarketConfig, Measurements,
    Purpose,
};
use crate::mempool::{AccountView, AdmitError, Mempool};
use crate::statesync::{StateSync, Trust};
use crate::store::StoreError;
use crate::topic;
use crate::wire::{self, ConsensusMessage, TxBatch};

pub use crate::wire::PeerKey;

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// An idle chain makes a block after this many milliseconds.
    pub idle_block_interval_ms: u64,
    /// Mempool bound on transactions.
    pub mempool_max_txs: usize,
    /// Mempool bound on bytes.
    pub mempool_max_bytes: usize,
    /// A transaction waiting this long is dropped (see [`Mempool::expire`]).
    pub mempool_ttl_ms: u64,
    /// Consensus timeouts.
    pub timeouts: TimeoutConfig,
    /// Own consensus messages are sent again this often while a height is undecided: gossip
    /// may lose them, and Tendermint is live only if they eventually arrive.
    pub rebroadcast_interval_ms: u64,
    /// What this node does in the market.
    pub market: MarketConfig,
    /// Blocks between the snapshots this node offers for state sync (it keeps the newest).
    pub snapshot_interval_blocks: u64,
    /// Join by state sync towards this trusted block when the node starts with an empty
    /// store; ignored once the node has blocks.
    pub state_sync: Option<Trust>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            idle_block_interval_ms: 1_000,
            mempool_max_txs: 10_000,
            mempool_max_bytes: 32 * 1024 * 1024,
            mempool_ttl_ms: 60_000,
            timeouts: TimeoutConfig::default(),
            rebroadcast_interval_ms: 2_000,
            market: MarketConfig {
                serve: true,
                ..MarketConfig::default()
            },
            snapshot_interval_blocks: 1_000,
            state_sync: None,
        }
    }
}

/// What must be made durable; every host carries it out with [`crate::host::persist`].
#[derive(Debug, Clone)]
pub enum Persist {
    /// Append our own vote to the write-ahead log, durably.
    Vote(Signed<Vote>),
    /// Write the lock of a precommit we are about to send to the write-ahead log, durably.
    Lock(Box<LockRecord>),
    /// Store a committed block and its certificate, durably.
    Block(Box<(Block, CommitCertificate)>),
    /// Index what a committed block added to the history (it precedes the block's `Block`).
    History(Box<crate::history::HistoryBatch>),
    /// Start an empty store from a state-synced snapshot and the block after it, durably
    /// ([`crate::store::Store::put_base`]).
    Base(Box<Base>),
}

/// A state-synced start: see [`Persist::Base`].
#[derive(Debug, Clone)]
pub struct Base {
    /// The snapshot's height.
    pub height: Height,
    /// The encoded `SyncSnapshot`.
    pub snapshot: Vec<u8>,
    /// The block after it, with its certificate.
    pub anchor: Block,
    /// The anchor's certificate.
    pub certificate: CommitCertificate,
}

/// Something the host must do. Effects are carried out in the order they are polled: a
/// `Persist` effect must be durable before any later effect is carried out.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Make this durable (with [`crate::host::persist`]).
    Persist(Persist),
    /// Publish `data` on gossip topic `topic`.
    Broadcast {
        /// The topic.
        topic: &'static str,
        /// The canonical bytes.
        data: Vec<u8>,
    },
    /// Send a sync request to `peer`; hand its answer to [`NodeCore::handle_response`].
    Request {
        /// The peer.
        peer: PeerKey,
        /// The canonical bytes of a [`SyncRequest`].
        data: Vec<u8>,
    },
    /// Run a job on the accelerator; hand the execution to [`NodeCore::handle_job_done`].
    RunJob(Box<JobRun>),
    /// A peer sent something provably wrong (a state-sync chunk that does not match its
    /// manifest, a snapshot the chain contradicts): log it and score the peer down.
    Misbehaved {
        /// The peer.
        peer: PeerKey,
        /// What it did.
        reason: String,
    },
    /// The node must stop: a decided block cannot be applied (it does not apply to this
    /// node's state, which only a bug can cause, or after it nobody is left to validate). Nothing of that block was persisted, so the store ends at the block before;
    /// the host stops the node with `reason` and carries out no later effect.
    Halt {
        /// The decided block's height.
        height: Height,
        /// What went wrong.
        reason: String,
    },
    /// A block committed (for logs, the API and metrics).
    Committed {
        /// Its height.
        height: Height,
        /// Its hash.
        hash: BlockHash,
        /// Its block time (ms since the epoch).
        time_ms: u64,
        /// How many transactions it carried.
        txs: usize,
        /// What the contract did.
        events: Vec<Event>,
    },
}

/// What to tell gossipsub about a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Valid: forward it.
    Accept,
    /// Invalid (bad signature, malformed): drop it and penalize the sender.
    Reject(String),
    /// Not useful (duplicate, stale) but not malicious: drop it.
    Ignore(String),
}

/// Why a node could not start from its store.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The genesis is unusable.
    #[error(transparent)]
    Genesis(#[from] ChainError),
    /// Reading the store failed or found corrupt data.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored block does not replay: the store does not belong to this chain or is corrupt.
    #[error("stored block {height} does not replay: {error}")]
    Replay {
        /// The block's height.
        height: Height,
        /// Why.
        error: Box<BlockError>,
    },
    /// After a stored block nobody is left to validate.
    #[error("after stored block {height}: {error}")]
    NoValidators {
        /// The block's height.
        height: Height,
        /// Why the set is unusable.
        error: ValidatorSetError,
    },
    /// The write-ahead log cannot be restored.
    #[error("vote log: {0}")]
    Wal(String),
    /// The store began with a state-synced snapshot that cannot be used.
    #[error("the state-synced base at height {height}: {detail}")]
    Base {
        /// The base height.
        height: Height,
        /// Why.
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Consensus(TimeoutId),
    StartHeight(Height),
    Rebroadcast(Height),
    Advert,
    StateSync,
    /// Publish the transactions waiting in the outbox.
    FlushTxs,
}

/// A consensus message as the core hears it: decoded, and for a vote the host verified off
/// its loop, with the signature already checked.
enum Heard {
    Proposal(Box<Signed<attest_protocol::Proposal>>),
    Vote(Signed<Vote>),
    CheckedVote(Verified<Vote>),
    Polka(Box<attest_consensus::PolkaCert>),
}

/// A transaction a local client offers: as it came, or with its signature already checked.
enum Offered {
    Signed(SignedTx),
    Verified(Verified<attest_protocol::Tx>),
}

/// Transactions admitted here and not yet gossiped: published as one [`TxBatch`] when it is
/// full or [`wire::TX_BATCH_MS`] after the first (bounded by [`wire::MAX_TX_BATCH`] and
/// [`wire::TX_BATCH_FLUSH_BYTES`]: it is flushed on reaching either).
#[derive(Debug, Default)]
struct Outbox {
    txs: Vec<SignedTx>,
    bytes: usize,
    armed: bool,
}

/// The ledger node: the committed chain, what waits to go in it, and the consensus that
/// decides the next block.
struct Ledger {
    chain: Chain,
    consensus: Consensus,
    mempool: Mempool,
    /// The height consensus is deciding, or `None` while waiting to start the next one.
    deciding: Option<Height>,
    /// What proposed blocks do to the state, by block hash, for blocks checked (or built) at
    /// the height being decided; cleared when it commits, and bounded in bytes
    /// ([`MAX_APPLIED_BYTES`]).
    applied_proposals: BTreeMap<BlockHash, Applied>,
    /// The bytes `applied_proposals` holds.
    applied_bytes: usize,
    /// The peer we are syncing from, if any.
    syncing: Option<PeerKey>,
    /// Joining by state sync: until it is done, the node takes part in nothing else.
    statesync: Option<StateSync>,
    /// The state-sync timer's key in `timers` (one at a time).
    statesync_timer: Option<(u64, u64)>,
    /// The snapshots this node offers for state sync with their manifest ids, newest last;
    /// at most [`SERVED_SNAPSHOTS`]. Two, so that a joining node whose trusted block is the
    /// newest snapshot's height still finds one below it.
    served: VecDeque<(attest_protocol::Hash, SyncSnapshot)>,
}

/// The most bytes of proposal deltas a node holds for one height. Consensus admits a bounded
/// number of proposals per round and rounds ahead; a height that takes many rounds could still
/// fill this, so past it the held deltas are dropped: a block decided without one is checked
/// again from its certificate (`Chain::check_committed`), which costs time, never safety.
pub const MAX_APPLIED_BYTES: usize = 64 << 20;

/// The most snapshots a node keeps in memory to offer for state sync.
pub const SERVED_SNAPSHOTS: usize = 2;

impl Ledger {
    /// Offers `snapshot` for state sync, dropping the oldest past [`SERVED_SNAPSHOTS`].
    fn offer(&mut self, snapshot: SyncSnapshot) {
        if self.served.len() >= SERVED_SNAPSHOTS {
            self.served.pop_front();
        }
        self.served.push_back((snapshot.id(), snapshot));
    }

    /// Keeps what a checked proposal does until its height commits, within
    /// [`MAX_APPLIED_BYTES`].
    fn hold_applied(&mut self, applied: Applied) {
        let bytes = applied.bytes();
        if self.applied_bytes.saturating_add(bytes) > MAX_APPLIED_BYTES {
            self.applied_proposals.clear();
            self.applied_bytes = 0;
        }
        self.applied_bytes = self.applied_bytes.saturating_add(bytes);
        if let Some(old) = self.applied_proposals.insert(applied.hash, applied) {
            self.applied_bytes = self.applied_bytes.saturating_sub(old.bytes());
        }
    }
}

/// The market participant.
struct Participant {
    /// What we owe the market as provider, checker and dispute party.
    duties: Duties,
    /// Stage times of every job, from committed blocks.
    measurements: Measurements,
    /// Output delivery for jobs opened through this node.
    gateway: Gateway,
    /// Capacity adverts heard on gossip (and our own).
    book: AdvertBook,
    /// When we last advertised, and the free slots we announced.
    last_advert_ms: u64,
    advertised_free: Option<u32>,
    /// Whether we warned that our bound device holds fewer models than the configured one.
    warned_device: bool,
}

/// The node core.
pub struct NodeCore {
    ledger: Ledger,
    market: Participant,
    key: Option<SecretKey>,
    config: CoreConfig,
    /// Deadline (ms) and a sequence number to keep equal deadlines apart.
    timers: BTreeMap<(u64, u64), Timer>,
    timer_seq: u64,
    effects: VecDeque<Effect>,
    outbox: Outbox,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("height", &self.ledger.chain.height())
            .field("running", &self.ledger.deciding)
            .field("mempool", &self.ledger.mempool)
            .finish()
    }
}

impl NodeCore {
    /// Starts a node on `chain` (the genesis chain with every stored block replayed, see
    /// [`crate::host::open`]) with `wal`, our own votes and locks logged for the height after
    /// it, and starts that height. `key` is the validator account key, `None` for a node that
    /// only follows.
    ///
    /// `served` is a snapshot to offer for state sync until the next one is due (a host
    /// that starts from a snapshot offers it). A node with `config.state_sync` set and no
    /// block yet joins by state sync first.
    pub fn open(
        chain: Chain,
        key: Option<SecretKey>,
        config: CoreConfig,
        wal: Vec<OwnMessage>,
        now_ms: u64,
        served: Option<SyncSnapshot>,
    ) -> Result<Self, CoreError> {
        let consensus_config = ConsensusConfig {
            chain_id: chain.chain_id().clone(),
            timeouts: config.timeouts,
        };
        let consensus = Consensus::new(consensus_config, key.clone(), wal)
            .map_err(|e| CoreError::Wal(e.to_string()))?;
        let mempool = Mempool::new(
            chain.chain_id().clone(),
            config.mempool_max_txs,
            config.mempool_max_bytes,
        );
        let me = key.as_ref().map(SecretKey::public);
        let duties = Duties::new(me, config.market.clone());
        let statesync = config
            .state_sync
            .filter(|_| chain.height().0 == 0)
            .map(StateSync::new);
        let mut core = Self {
            ledger: Ledger {
                chain,
                consensus,
                mempool,
                deciding: None,
                applied_proposals: BTreeMap::new(),
                applied_bytes: 0,
                syncing: None,
                statesync,
                statesync_timer: None,
                served: served.map(|s| (s.id(), s)).into_iter().collect(),
            },
            market: Participant {
                duties,
                measurements: Measurements::default(),
                gateway: Gateway::default(),
                book: adverts::new_book(),
                last_advert_ms: 0,
                advertised_free: None,
                warned_device: false,
            },
            key,
            config,
            timers: BTreeMap::new(),
            timer_seq: 0,
            outbox: Outbox::default(),
            effects: VecDeque::new(),
        };
        core.arm(now_ms, Timer::Advert);
        let owed = core.market.duties.rescan(core.ledger.chain.state());
        core.carry_duties(now_ms, owed);
        core.start_height(now_ms);
        Ok(core)
    }

    /// The committed chain.
    pub fn chain(&self) -> &Chain {
        &self.ledger.chain
    }

    /// Transactions waiting in the mempool.
    pub fn mempool_len(&self) -> usize {
        self.ledger.mempool.len()
    }

    /// Whether the mempool holds the transaction `hash` (admitted, not yet committed or
    /// expired).
    pub fn mempool_contains(&self, hash: &TxHash) -> bool {
        self.ledger.mempool.contains(hash)
    }

    /// What the job pipeline did (results, verdicts, dispute moves).
    pub fn duty_stats(&self) -> &DutyStats {
        self.market.duties.stats()
    }

    /// The output of a job opened through this node, verified against the ledger.
    pub fn job_output(&self, job: &JobId) -> Option<&[u8]> {
        self.market.gateway.output(job)
    }

    /// Times the consensus driver refused an input the engine had already checked: a bug in
    /// the engine or the driver, 0 in every correct run (exported as a metric, asserted by
    /// the simulator).
    pub fn consensus_internal_errors(&self) -> u64 {
        self.ledger.consensus.internal_errors()
    }

    /// What the gateway did (outputs verified, rejected, abandoned).
    pub fn gateway_stats(&self) -> &GatewayStats {
        self.market.gateway.stats()
    }

    /// Stage times of every job seen in committed blocks.
    pub fn measurements(&self) -> &Measurements {
        &self.market.measurements
    }

    /// An execution asked for with [`Effect::RunJob`] finished (or failed).
    pub fn handle_job_done(
        &mut self,
        now_ms: u64,
        job: JobId,
        purpose: Purpose,
        outcome: Result<Execution, String>,
    ) {
        let owed = self
            .market
            .duties
            .on_done(self.ledger.chain.state(), job, purpose, outcome);
        self.carry_duties(now_ms, owed);
        self.on_capacity_change(now_ms);
    }

    fn carry_duties(&mut self, now_ms: u64, duties: Vec<Duty>) {
        let runs = duties.iter().any(|d| matches!(d, Duty::Run(_)));
        for duty in duties {
            match duty {
                Duty::Run(run) => self.effects.push_back(Effect::RunJob(run)),
                Duty::Submit(key, action) => {
                    let hash = self.submit_own(now_ms, *action);
                    self.market.duties.note_submitted(key, hash);
                }
                Duty::Regossip(hash) => {
                    if let Some(tx) = self.ledger.mempool.verified(&hash) {
                        let tx = tx.signed().clone();
                        self.queue_gossip(now_ms, tx);
                    }
                }
            }
        }
        if runs {
            self.on_capacity_change(now_ms);
        }
    }

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When `handle_timeout` must next be called (ms since the epoch).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some((&(at, seq), &timer)) = self.timers.iter().next() {
            if at > now_ms {
                break;
            }
            self.timers.remove(&(at, seq));
            match timer {
                Timer::Consensus(id) => self.feed(now_ms, Input::TimeoutElapsed(id)),
                Timer::StartHeight(h)
                    if self.ledger.deciding.is_none() && h == self.ledger.chain.height().next() =>
                {
                    self.start_height(now_ms)
                }
                Timer::Rebroadcast(h) if self.ledger.deciding == Some(h) => {
                    for message in self.ledger.consensus.own_messages() {
                        self.broadcast_own(message);
                    }
                    for polka in self.ledger.consensus.own_polkas() {
                        self.broadcast_consensus(ConsensusMessage::Polka(Box::new(polka)));
                    }
                    self.arm(
                        now_ms + self.config.rebroadcast_interval_ms,
                        Timer::Rebroadcast(h),
                    );
                }
                Timer::Advert => self.on_advert_timer(now_ms),
                Timer::StateSync => {
                    self.ledger.statesync_timer = None;
                    self.on_statesync_timer(now_ms);
                }
                Timer::FlushTxs => {
                    self.outbox.armed = false;
                    self.flush_txs();
                }
                Timer::StartHeight(_) | Timer::Rebroadcast(_) => {}
            }
        }
    }

    /// Puts an admitted transaction in the outbox: published with the next batch.
    fn queue_gossip(&mut self, now_ms: u64, tx: SignedTx) {
        self.outbox.bytes = self.outbox.bytes.saturating_add(tx.encode().len());
        self.outbox.txs.push(tx);
        if self.outbox.txs.len() >= wire::MAX_TX_BATCH
            || self.outbox.bytes >= wire::TX_BATCH_FLUSH_BYTES
        {
            self.flush_txs();
        } else if !self.outbox.armed {
            self.outbox.armed = true;
            self.arm(now_ms + wire::TX_BATCH_MS, Timer::FlushTxs);
        }
    }

    /// Publishes the outbox as one batch.
    fn flush_txs(&mut self) {
        if self.outbox.txs.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.outbox.txs);
        self.outbox.bytes = 0;
        // At most `MAX_TX_BATCH`: `queue_gossip` flushes on reaching it.
        let Ok(batch) = BoundedVec::new(txs) else {
            return;
        };
        self.effects.push_back(Effect::Broadcast {
            topic: topic::TX_BATCHES,
            data: TxBatch(batch).encode(),
        });
    }

    /// A transaction from a local client: admitted to the mempool and gossiped. A job opened
    /// this way makes this node its gateway: it fetches and checks the output.
    pub fn submit_tx(&mut self, now_ms: u64, tx: SignedTx) -> Result<TxHash, AdmitError> {
        self.submit(now_ms, Offered::Signed(tx))
    }

    /// [`NodeCore::submit_tx`] for a transaction whose signature the host already checked
    /// under this chain's id, off the node loop (the API does, on its own tasks).
    pub fn submit_verified_tx(
        &mut self,
        now_ms: u64,
        tx: Verified<attest_protocol::Tx>,
    ) -> Result<TxHash, AdmitError> {
        self.submit(now_ms, Offered::Verified(tx))
    }

    fn submit(&mut self, now_ms: u64, offered: Offered) -> Result<TxHash, AdmitError> {
        let signed = match &offered {
            Offered::Signed(tx) => tx,
            Offered::Verified(tx) => tx.signed(),
        };
        let gossip = signed.clone();
        let opens_with = match &signed.body.action {
            attest_protocol::Action::OpenJob(open) => {
                let state = self.ledger.chain.state();
                state
                    .check_open(signed.signer, open)
                    .map_err(|e| AdmitError::Refused(e.to_string()))?;
                Some(open.provider)
            }
            _ => None,
        };
        let opens_job = opens_with.is_some();
        if opens_job && self.market.gateway.is_full() {
            return Err(AdmitError::GatewayFull {
                jobs: crate::market::gateway::MAX_WANTED,
            });
        }
        if let Offered::Verified(tx) = &offered
            && !opens_job
        {
            self.refuse_if_inapplicable(tx)?;
        }
        let view = View(&self.ledger.chain);
        let hash = match offered {
            Offered::Signed(tx) => self.ledger.mempool.admit(tx, &view, now_ms)?,
            Offered::Verified(tx) => self.ledger.mempool.admit_verified(tx, &view, now_ms)?,
        };
        if let Some(provider) = opens_with {
            self.market.gateway.track(JobId::from(hash), now_ms);
            // The job takes one of the provider's slots in this node's book until its result
            // commits (or its next advert): concurrent clients are spread over providers.
            self.market.book.note_assigned(&provider);
        }
        self.queue_gossip(now_ms, gossip);
        self.on_tx_waiting(now_ms);
        Ok(hash)
    }

    /// Refuses a transaction that is its sender's next (its nonce is the committed one) and
    /// that the state after the head would refuse, with the contract's reason: admitted, it
    /// would wait in the pool until it expired and hold back every later transaction of its
    /// sender. One speculative application; a transaction further ahead is not tried (the
    /// state it applies to is not known yet). Jobs are checked by `check_open` instead.
    fn refuse_if_inapplicable(
        &mut self,
        tx: &Verified<attest_protocol::Tx>,
    ) -> Result<(), AdmitError> {
        let signed = tx.signed();
        let chain = &mut self.ledger.chain;
        if signed.body.nonce != chain.state().account(&signed.signer).nonce {
            return Ok(());
        }
        // A proposer other than the sender, so the fee it pays is not paid back to it.
        let validators = chain.validators().validators();
        let proposer = validators
            .iter()
            .map(|v| v.account())
            .find(|a| *a != signed.signer)
            .or_else(|| validators.first().map(|v| v.account()))
            .unwrap_or(signed.signer);
        chain
            .try_tx(proposer, tx)
            .map_err(|e| AdmitError::Refused(e.to_string()))
    }

    /// A gossip message on `topic` from `from`.
    pub fn handle_gossip(
        &mut self,
        now_ms: u64,
        from: &PeerKey,
        topic_name: &str,
        data: &[u8],
    ) -> GossipVerdict {
        if self.ledger.statesync.is_some() {
            // Nothing can be checked before the state is: the sender is only a peer to ask.
            self.peer_met(now_ms, from);
            return GossipVerdict::Ignore("joining by state sync".into());
        }
        match topic_name {
            topic::TXS => self.gossip_tx(now_ms, data),
            topic::TX_BATCHES => self.gossip_tx_batch(now_ms, data),
            topic::CONSENSUS => self.gossip_consensus(now_ms, from, data),
            topic::ADVERTS => self.gossip_advert(now_ms, data),
            _ => GossipVerdict::Ignore(format!("topic {topic_name} is not handled")),
        }
    }

    /// A transaction gossiped alone (`attest/txs/1`): a batch of one.
    fn gossip_tx(&mut self, now_ms: u64, data: &[u8]) -> GossipVerdict {
        match SignedTx::decode(data) {
            Ok(tx) => self.admit_batch(now_ms, vec![Ok(Offered::Signed(tx))]),
            Err(e) => GossipVerdict::Reject(e.to_string()),
        }
    }

    /// A batch of transactions: each is admitted as if it came alone. The batch is refused
    /// (and its sender penalised) if any transaction in it is forged or oversized, forwarded
    /// if any was new to us, and ignored otherwise.
    fn gossip_tx_batch(&mut self, now_ms: u64, data: &[u8]) -> GossipVerdict {
        let txs = match TxBatch::decode(data) {
            Ok(b) => b.0.into_vec(),
            Err(e) => return GossipVerdict::Reject(e.to_string()),
        };
        let offered = txs.into_iter().map(|tx| Ok(Offered::Signed(tx))).collect();
        self.admit_batch(now_ms, offered)
    }

    /// A gossiped batch whose signatures the host checked off the node loop (the
    /// [`wire::TxBatch`] it decoded, each transaction verified under this chain's id or the
    /// reason it is not): admitted as [`NodeCore::handle_gossip`] admits a batch, with the
    /// same verdict. The host keeps batches that arrive while this node joins by state sync
    /// for `handle_gossip`, which ignores them.
    pub fn handle_checked_tx_batch(
        &mut self,
        now_ms: u64,
        checked: Vec<Result<Verified<attest_protocol::Tx>, attest_protocol::SignatureError>>,
    ) -> GossipVerdict {
        if self.ledger.statesync.is_some() {
            return GossipVerdict::Ignore("joining by state sync".into());
        }
        let offered = checked
            .into_iter()
            .map(|c| c.map(Offered::Verified))
            .collect();
        self.admit_batch(now_ms, offered)
    }

    fn admit_batch(
        &mut self,
        now_ms: u64,
        offered: Vec<Result<Offered, attest_protocol::SignatureError>>,
    ) -> GossipVerdict {
        let (mut admitted, mut forged, mut last) = (false, None, None);
        let view = View(&self.ledger.chain);
        for tx in offered {
            let result = match tx {
                Ok(Offered::Signed(tx)) => self.ledger.mempool.admit(tx, &view, now_ms),
                Ok(Offered::Verified(tx)) => self.ledger.mempool.admit_verified(tx, &view, now_ms),
                Err(e) => Err(AdmitError::BadSignature(e)),
            };
            match result {
                Ok(_) => admitted = true,
                Err(e @ (AdmitError::BadSignature(_) | AdmitError::TooLarge { .. })) => {
                    forged = Some(e.to_string());
                }
                Err(e) => last = Some(e.to_string()),
            }
        }
        if admitted {
            self.on_tx_waiting(now_ms);
        }
        match (forged, admitted) {
            (Some(why), _) => GossipVerdict::Reject(why),
            (None, true) => GossipVerdict::Accept,
            (None, false) => GossipVerdict::Ignore(last.unwrap_or_else(|| "empty batch".into())),
        }
    }

    fn gossip_consensus(&mut self, now_ms: u64, from: &PeerKey, data: &[u8]) -> GossipVerdict {
        match ConsensusMessage::decode(data) {
            Ok(m) => self.handle_consensus_message(now_ms, from, m),
            Err(e) => GossipVerdict::Reject(e.to_string()),
        }
    }

    /// A message from the consensus topic that the host decoded: what
    /// [`NodeCore::handle_gossip`] does with its bytes. A host that verifies votes off its
    /// loop hands those to [`NodeCore::handle_checked_vote`] instead.
    pub fn handle_consensus_message(
        &mut self,
        now_ms: u64,
        from: &PeerKey,
        message: ConsensusMessage,
    ) -> GossipVerdict {
        if self.ledger.statesync.is_some() {
            self.peer_met(now_ms, from);
            return GossipVerdict::Ignore("joining by state sync".into());
        }
        let heard = match message {
            ConsensusMessage::Proposal(p) => Heard::Proposal(p),
            ConsensusMessage::Vote(v) => Heard::Vote(v),
            ConsensusMessage::Polka(c) => Heard::Polka(c),
        };
        self.consensus_heard(now_ms, from, heard)
    }

    /// A vote from the consensus topic whose signature the host checked off the node loop
    /// (under this chain's id), or the reason it does not verify: handled as
    /// [`NodeCore::handle_gossip`] handles a vote, with the same verdict, except that a
    /// forged vote is refused before its height or signer are looked at.
    pub fn handle_checked_vote(
        &mut self,
        now_ms: u64,
        from: &PeerKey,
        checked: Result<Verified<Vote>, attest_protocol::SignatureError>,
    ) -> GossipVerdict {
        if self.ledger.statesync.is_some() {
            self.peer_met(now_ms, from);
            return GossipVerdict::Ignore("joining by state sync".into());
        }
        match checked {
            Ok(vote) => self.consensus_heard(now_ms, from, Heard::CheckedVote(vote)),
            Err(e) => GossipVerdict::Reject(InputError::BadSignature(e).to_string()),
        }
    }

    fn consensus_heard(&mut self, now_ms: u64, from: &PeerKey, message: Heard) -> GossipVerdict {
        let height = match &message {
            Heard::Proposal(p) => p.body.height,
            Heard::Vote(v) => v.body.height,
            Heard::CheckedVote(v) => v.body().height,
            Heard::Polka(c) => c.height,
        };
        // A message for the next height starts it: the others are already there.
        if self.ledger.deciding.is_none() && height == self.ledger.chain.height().next() {
            self.start_height(now_ms);
        }
        // A message for a later height means the sender committed a block we lack. Nobody
        // sends messages for a decided height again, so only sync can bring it. Only a message
        // signed by a validator counts: otherwise any peer could make us sync from it at will.
        let behind = height > self.ledger.chain.height().next() && self.is_from_validator(&message);
        if behind {
            self.request_sync(from.clone());
        }
        let input = match message {
            Heard::Proposal(p) => {
                let validity = self.judge(now_ms, &p);
                Input::Proposal {
                    proposal: *p,
                    validity,
                }
            }
            Heard::Vote(v) => Input::Vote(v),
            Heard::CheckedVote(v) => Input::VerifiedVote(v),
            Heard::Polka(c) => Input::Polka(c),
        };
        match self.ledger.consensus.handle(input) {
            Ok(outputs) => {
                self.carry_out(now_ms, outputs);
                GossipVerdict::Accept
            }
            Err(InputError::FarFutureHeight { .. }) => {
                // `behind` held for this message: the sync was requested above.
                GossipVerdict::Ignore("far-future height: syncing".into())
            }
            Err(e @ (InputError::BadSignature(_) | InputError::BadPolka(_))) => {
                GossipVerdict::Reject(e.to_string())
            }
            // A validator we do not know yet may be one in a set we have not reached: an
            // honest peer can forward that, so it is dropped without a penalty.
            Err(e @ InputError::NotAValidator(_)) => GossipVerdict::Ignore(e.to_string()),
            Err(
                e @ (InputError::WrongProposer { .. }
                | InputError::BlockMismatch { .. }
                | InputError::BlockBody(_)
                | InputError::InvalidPolRound { .. }),
            ) => GossipVerdict::Reject(e.to_string()),
            Err(e) => GossipVerdict::Ignore(e.to_string()),
        }
    }

    /// Checks a proposed block against the chain, keeping the state it leads to.
    fn judge(
        &mut self,
        now_ms: u64,
        proposal: &Signed<attest_protocol::Proposal>,
    ) -> BlockValidity {
        let block = &proposal.body.block;
        if block.header.height != self.ledger.chain.height().next() {
            // Consensus buffers or drops it; a buffered one comes back as RecheckProposal.
            return BlockValidity::Invalid;
        }
        let hash = block.hash();
        if self.ledger.applied_proposals.contains_key(&hash) {
            return BlockValidity::Valid;
        }
        if self.ledger.consensus.precheck_proposal(proposal).is_err() {
            return BlockValidity::Invalid;
        }
        let mempool = &self.ledger.mempool;
        match self
            .ledger
            .chain
            .check_proposal(block, now_ms, &|hash| mempool.verified(hash))
        {
            Ok(applied) => {
                // Consensus admits at most a bounded number of proposals per round
                // (`MAX_PROPOSALS_PER_ROUND`) and rounds ahead (`MAX_ROUND_AHEAD`); this map is
                // cleared when the height commits.
                self.ledger.hold_applied(applied);
                BlockValidity::Valid
            }
            Err(_) => BlockValidity::Invalid,
        }
    }

    fn feed(&mut self, now_ms: u64, input: Input) {
        match self.ledger.consensus.handle(input) {
            Ok(outputs) => self.carry_out(now_ms, outputs),
            // A refusal by the driver itself is a bug here; the consensus counts it
            // (`consensus_internal_errors`, exported and asserted zero by the simulator).
            Err(e @ InputError::Driver(_)) => {
                tracing::error!(error = %e, "consensus driver refused this node's own input");
            }
            // Other rejections of our own inputs (stale timers, late values, a re-checked
            // proposal of a round gone by) change nothing.
            Err(e) => tracing::debug!(error = %e, "own consensus input not taken"),
        }
    }

    fn carry_out(&mut self, now_ms: u64, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::PersistAndBroadcastVote(v) => {
                    self.effects
                        .push_back(Effect::Persist(Persist::Vote(v.clone())));
                    self.broadcast_own(OwnMessage::Vote(v));
                }
                Output::BroadcastVote(v) => self.broadcast_own(OwnMessage::Vote(v)),
                Output::PersistLock(lock) => {
                    self.effects.push_back(Effect::Persist(Persist::Lock(lock)))
                }
                Output::BroadcastPolka(c) => self.broadcast_consensus(ConsensusMessage::Polka(c)),
                // Proposals are not logged: re-proposing after a restart costs a round but is
                // not slashable.
                Output::PersistAndBroadcastProposal(p) | Output::BroadcastProposal(p) => {
                    self.broadcast_own(OwnMessage::Proposal(Box::new(p)))
                }
                Output::ScheduleTimeout { id, duration } => {
                    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                    self.arm(now_ms.saturating_add(ms), Timer::Consensus(id));
                }
                Output::GetValue { height, round, .. } => self.propose(now_ms, height, round),
                Output::Decided { block, certificate } => self.decided(now_ms, block, certificate),
                Output::Equivocation(evidence) => self.report_equivocation(now_ms, evidence),
                Output::RecheckProposal(p) => {
                    let validity = self.judge(now_ms, &p);
                    self.feed(
                        now_ms,
                        Input::Proposal {
                            proposal: p,
                            validity,
                        },
                    );
                }
            }
        }
    }

    fn broadcast_own(&mut self, message: OwnMessage) {
        let message = match message {
            OwnMessage::Vote(v) => ConsensusMessage::Vote(v),
            OwnMessage::Proposal(p) => ConsensusMessage::Proposal(p),
            // Locks stay in the log; their polka travels with the re-proposal it backs.
            OwnMessage::Lock(_) => return,
        };
        self.broadcast_consensus(message);
    }

    fn broadcast_consensus(&mut self, message: ConsensusMessage) {
        self.effects.push_back(Effect::Broadcast {
            topic: topic::CONSENSUS,
            data: message.encode(),
        });
    }

    fn propose(&mut self, now_ms: u64, height: Height, round: attest_protocol::Round) {
        let Some(key) = &self.key else { return };
        let candidates = self.reap_proposal();
        let (block, applied) = self
            .ledger
            .chain
            .build_block(key.public(), now_ms, candidates);
        self.ledger.hold_applied(applied);
        self.feed(
            now_ms,
            Input::ProposeValue {
                height,
                round,
                block,
            },
        );
    }

    fn decided(&mut self, now_ms: u64, block: Block, certificate: CommitCertificate) {
        let hash = block.hash();
        let held = self.ledger.applied_proposals.remove(&hash);
        if let Some(applied) = &held {
            self.ledger.applied_bytes = self.ledger.applied_bytes.saturating_sub(applied.bytes());
        }
        let applied = match held {
            Some(applied) => applied,
            // Decided without our having checked it (we joined late): check it now. A block
            // with a valid certificate that does not apply means this node's state diverged,
            // which only a bug can cause; it halts rather than commit garbage.
            None => match self.ledger.chain.check_committed(&block, &certificate) {
                Ok(applied) => applied,
                Err(e) => {
                    let height = block.header.height;
                    self.effects.push_back(Effect::Halt {
                        height,
                        reason: format!("decided block {height} does not apply here: {e}"),
                    });
                    return;
                }
            },
        };
        self.commit(now_ms, block, certificate, applied);
    }

    fn commit(
        &mut self,
        now_ms: u64,
        block: Block,
        certificate: CommitCertificate,
        applied: Applied,
    ) {
        let height = block.header.height;
        let hash = applied.hash;
        let events = applied.events.clone();
        let time_ms = block.header.time_ms;
        let tx_hashes: Vec<TxHash> = block.txs.iter().map(attest_protocol::tx_hash).collect();
        let signers: Vec<attest_protocol::AccountId> = block.txs.iter().map(|t| t.signer).collect();
        let txs = tx_hashes.len();
        let stored = Box::new((block.clone(), certificate.clone()));
        if let Err(e) = self.ledger.chain.commit(&block, certificate, applied) {
            // Every stake was slashed or jailed away: nobody could decide the next height. The
            // chain kept its head; nothing of this block is persisted or announced.
            self.effects.push_back(Effect::Halt {
                height,
                reason: format!("decided block {height} cannot be applied: {e}"),
            });
            return;
        }
        let mut history = HistoryBatch::of(height, &events, self.ledger.chain.state());
        history.txs.clone_from(&tx_hashes);
        if !history.is_empty() {
            self.effects
                .push_back(Effect::Persist(Persist::History(Box::new(history))));
        }
        self.effects
            .push_back(Effect::Persist(Persist::Block(stored)));
        self.market
            .measurements
            .observe(height, block.header.time_ms, &events);
        self.ledger
            .mempool
            .remove_committed(&tx_hashes, &signers, &View(&self.ledger.chain));
        self.ledger
            .mempool
            .expire(now_ms, self.config.mempool_ttl_ms);
        let ready = self.evict_refused();
        let every = self.config.snapshot_interval_blocks.max(1);
        if height.0.is_multiple_of(every)
            && let Some(snapshot) = self.ledger.chain.sync_snapshot()
        {
            self.ledger.offer(snapshot);
        }
        self.ledger.applied_proposals.clear();
        self.ledger.applied_bytes = 0;
        self.ledger.deciding = None;
        let pool = &self.ledger.mempool;
        self.market.duties.note_pool(|h| pool.contains(h));
        let owed = self
            .market
            .duties
            .on_commit(height, self.ledger.chain.state(), &events);
        let fetches = self
            .market
            .gateway
            .on_commit(now_ms, self.ledger.chain.state(), &events);
        // A provider whose result committed (or whose deadline passed) has its slot back; our
        // book's count never rises above what its last advert announced.
        for e in &events {
            if let Event::ResultCommitted { provider, .. } | Event::CommitMissed { provider, .. } =
                e
            {
                self.market.book.note_released(provider);
            }
        }
        self.effects.push_back(Effect::Committed {
            height,
            hash,
            time_ms,
            txs,
            events,
        });
        self.carry_duties(now_ms, owed);
        self.fetch_outputs(fetches);
        // Start at once only for transactions that can go in a block; others (a nonce gap)
        // must not make the chain race through empty blocks.
        if ready == 0 {
            let at = now_ms + self.config.idle_block_interval_ms;
            self.arm(at, Timer::StartHeight(height.next()));
        } else {
            self.start_height(now_ms);
        }
    }

    /// Drops every waiting transaction of the next proposal's window (what [`Self::propose`]
    /// would reap) that the new state refuses (duplicate evidence, a job that settled, a
    /// balance that no longer covers it), with the same sender's later ones, which cannot
    /// apply without it. Such transactions would never leave the pool otherwise, and would
    /// block their sender. Only the window is tried, so a commit costs at most one block's
    /// trial however full the pool is; a refused transaction further back is dropped when it
    /// reaches the window, or expires. Returns how many transactions are ready for the next
    /// block.
    fn evict_refused(&mut self) -> usize {
        let candidates = self.reap_proposal();
        if candidates.is_empty() {
            return 0;
        }
        let proposer = *candidates[0].signer();
        let accepted = self.ledger.chain.trial(proposer, &candidates);
        let mut refused = Vec::new();
        let mut ready = 0;
        for (tx, ok) in candidates.iter().zip(accepted) {
            if ok {
                ready += 1;
            } else {
                refused.push(attest_protocol::tx_hash(tx.signed()));
            }
        }
        if !refused.is_empty() {
            self.ledger.mempool.evict_with_successors(&refused);
        }
        ready
    }

    /// The waiting transactions a proposal would take now, in the pool's order, within the
    /// block bounds.
    fn reap_proposal(&self) -> Vec<Verified<attest_protocol::Tx>> {
        self.ledger.mempool.reap(
            attest_protocol::limits::MAX_BLOCK_TXS,
            attest_protocol::limits::MAX_PROPOSAL_BYTES,
            &View(&self.ledger.chain),
        )
    }

    fn is_from_validator(&self, message: &Heard) -> bool {
        let chain = self.ledger.chain.chain_id();
        let known = |signer| self.ledger.chain.validators().get(signer).is_some();
        match message {
            Heard::Proposal(p) => known(&p.signer) && p.check(chain).is_ok(),
            Heard::Vote(v) => known(&v.signer) && v.check(chain).is_ok(),
            Heard::CheckedVote(v) => known(v.signer()),
            // A polka only ever backs a proposal: the proposal is what starts a sync.
            Heard::Polka(_) => false,
        }
    }

    fn on_tx_waiting(&mut self, now_ms: u64) {
        if self.ledger.deciding.is_none() {
            self.start_height(now_ms);
        }
    }

    fn start_height(&mut self, now_ms: u64) {
        let height = self.ledger.chain.height().next();
        if self.ledger.deciding == Some(height) || self.ledger.statesync.is_some() {
            return;
        }
        self.ledger.deciding = Some(height);
        let validators = self.ledger.chain.validators().clone();
        self.feed(now_ms, Input::StartHeight { height, validators });
        self.arm(
            now_ms + self.config.rebroadcast_interval_ms,
            Timer::Rebroadcast(height),
        );
    }

    fn arm(&mut self, at: u64, timer: Timer) -> (u64, u64) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
        (at, self.timer_seq)
    }

    fn report_equivocation(
        &mut self,
        now_ms: u64,
        evidence: attest_protocol::tx::EquivocationEvidence,
    ) {
        let _ = self.submit_own(
            now_ms,
            attest_protocol::Action::Equivocation(Box::new(evidence)),
        );
    }

    /// Signs `action` with our account at our next nonce past anything of ours already
    /// waiting, at the minimum fee, and submits it.
    fn submit_own(&mut self, now_ms: u64, action: attest_protocol::Action) -> Option<TxHash> {
        let key = self.key.clone()?;
        let view = View(&self.ledger.chain);
        let account = key.public();
        let mut nonce = view.nonce(&account);
        while self.mempool_has_nonce(&account, nonce) {
            nonce = Nonce(nonce.0 + 1);
        }
        let tx = attest_protocol::Tx {
            nonce,
            fee: self.ledger.chain.state().params().min_fee,
            action,
        };
        let signed = Signed::sign(self.ledger.chain.chain_id(), &key, tx);
        match self.submit_tx(now_ms, signed) {
            Ok(hash) => Some(hash),
            Err(e) => {
                tracing::warn!(error = %e, "could not submit our own transaction");
                None
            }
        }
    }

    fn mempool_has_nonce(&self, account: &AccountId, nonce: Nonce) -> bool {
        self.ledger.mempool.has_sender_nonce(account, nonce)
    }
}

/// The mempool's view of committed state.
struct View<'a>(&'a Chain);

impl AccountView for View<'_> {
    fn nonce(&self, account: &AccountId) -> Nonce {
        self.0.state().account(account).nonce
    }
    fn balance(&self, account: &AccountId) -> Amount {
        self.0.state().account(account).balance
    }
    fn min_fee(&self) -> Amount {
        self.0.state().params().min_fee
    }
}
