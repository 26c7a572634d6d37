//! The shell: one tokio task that owns the libp2p swarm, the store and the `NodeCore`, and only
//! translates between them.
//!
//! Each turn of the loop takes one event (a swarm event, a due timer, a local command or the
//! shutdown signal), hands it to the core with the wall-clock time, and then carries out every
//! effect the core queued, in order: persistence is synchronous and complete before the next
//! effect (a vote reaches the disk before the network), publishing never waits for a peer.
//! Nothing here decides anything about the ledger.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::metrics::Recorder;
use libp2p::request_response::{self, Message, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use attest_chain::GenesisFile;
use attest_core::market::{HeldAdvert, JobClock, JobRun, NoProvider, Offer, Request};
use attest_core::mempool::AdmitError;
use attest_core::store::{CommittedBlock, GenesisId, Store, StoreError};
use attest_core::wire::{ConsensusMessage, TxBatch};
use attest_core::{CoreConfig, Effect, GossipVerdict, NodeCore, PeerKey, host, topic};
use attest_protocol::{
    AccountId, BlockHash, Canonical, ChainId, Hash, Height, JobId, SecretKey, SignatureError,
    Signed, SignedTx, Tx, TxHash, Verified, Vote,
};

use crate::accel_pool::{AccelError, AccelPool, AccelResult, DeviceConfig};
use crate::metrics::Metrics;
use crate::net::{self, Behaviour, BehaviourEvent, NetConfig};
use crate::reach::Probes;
use crate::recent::{Parts, Recent, RecentView};
use crate::sled_store::{BlockReader, HistoryReader, SledStore};
use crate::snapshots::{self, Snapshots};
use crate::views::ProofView;
use crate::views::{
    AccountSnapshot, AdvertReach, BlockEvents, BlockRange, JobSnapshot, MAX_LISTED_JOBS,
    MAX_LISTED_SLASHES, MAX_SUBSCRIBERS, Status, TxStatus, ValidatorView, ValidatorsView,
};
use attest_contracts_sim::{Job, Key};

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The node's identity key.
    pub node_key: SecretKey,
    /// The validator account key.
    pub account_key: SecretKey,
    /// The chain.
    pub genesis: GenesisFile,
    /// Where the store lives.
    pub data_dir: std::path::PathBuf,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial (with `/p2p/` ids).
    pub bootnodes: Vec<Multiaddr>,
    /// Core settings.
    pub core: CoreConfig,
    /// The simulated accelerator this node runs jobs and checks on.
    pub device: DeviceConfig,
    /// Blocks between state snapshots, and how many are kept.
    pub snapshots: (u64, usize),
}

/// A request from a local client (the HTTP API) to the node loop.
#[derive(Debug)]
pub enum Command {
    /// Admit and gossip a transaction whose signature the handle checked (off the loop).
    SubmitTx(
        Box<Verified<Tx>>,
        oneshot::Sender<Result<TxHash, AdmitError>>,
    ),
    /// The gateway's pick for a request now. A pick changes nothing: a job opened through
    /// this node is what takes a slot (`NodeCore::submit_tx`).
    Quote(Request, oneshot::Sender<Result<Offer, NoProvider>>),
    /// A job in the live state with its measured timeline and the output this node holds.
    Job(JobId, bool, oneshot::Sender<LiveJob>),
    /// An account's balance, nonce, stake and provider record from the live state (without
    /// what the history holds of it).
    Account(AccountId, bool, oneshot::Sender<AccountSnapshot>),
    /// A receiver of every committed block's events from now on, or `None` if the stream
    /// already has its bound of subscribers.
    Subscribe(oneshot::Sender<Option<broadcast::Receiver<Arc<BlockEvents>>>>),
    /// Whether a transaction waits in the mempool.
    TxPending(TxHash, oneshot::Sender<bool>),
    /// Which connected peers hold a provider's advert, asked of each now; `None` if
    /// [`crate::reach::MAX_PROBES`] probes run already.
    AdvertReach(AccountId, oneshot::Sender<Option<AdvertReach>>),
}

/// What the loop knows of a job: the live state's entry (`None` once the job left the state
/// for the history, or if there is no such job) and what the node measured and holds of it.
#[derive(Debug)]
pub struct LiveJob {
    job: Option<Job>,
    clock: Option<JobClock>,
    output: Option<Vec<u8>>,
    proof: Option<ProofView>,
}

/// A handle to a running node: cloneable, talks to the loop over a bounded channel.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    /// Committed blocks, read off the loop.
    blocks: BlockReader,
    /// The history (jobs that left the state, accounts' parts and slashes, the transaction
    /// index), read off the loop.
    history: HistoryReader,
    /// What the loop last published for readers: status and adverts.
    published: watch::Receiver<Arc<Published>>,
    metrics: Arc<Metrics>,
    /// The newest blocks, jobs, latencies, disputes and slashes, fed by the loop per block.
    recent: Arc<Mutex<Recent>>,
    /// The chain's id, which signatures are checked under before a transaction reaches the
    /// loop.
    chain: ChainId,
    /// The genesis document the node started from, served to auditors and clients.
    genesis: Arc<GenesisFile>,
    genesis_hash: Hash,
    /// One `GET /v1/audit` at a time.
    audit_gate: Arc<tokio::sync::Semaphore>,
}

impl NodeHandle {
    /// Sends `command`, built around a reply sender, and waits for the loop's answer.
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .context("node stopped")?;
        rx.await.context("node stopped")
    }

    /// Where the transaction `hash` is, as this node knows it. The loop is asked first
    /// whether it waits in the mempool; if not, the transaction index off the loop: a
    /// transaction leaves the pool in the same loop turn that writes its block's index, so
    /// one that committed is found either way.
    pub async fn tx(&self, hash: TxHash) -> Result<Result<TxStatus, StoreError>> {
        if self.ask(|reply| Command::TxPending(hash, reply)).await? {
            return Ok(Ok(TxStatus::Pending));
        }
        let at = self.read_history(move |h| h.tx_location(&hash)).await?;
        Ok(at.map(|at| match at {
            Some((height, index)) => TxStatus::Committed { height, index },
            None => TxStatus::Unknown,
        }))
    }

    /// Runs `read` on the history on the blocking pool.
    async fn read_history<T: Send + 'static>(
        &self,
        read: impl FnOnce(&HistoryReader) -> T + Send + 'static,
    ) -> Result<T> {
        let history = self.history.clone();
        tokio::task::spawn_blocking(move || read(&history))
            .await
            .context("history reader failed")
    }

    /// The genesis document the node started from (its hash is `status().genesis_hash`).
    pub fn genesis(&self) -> &GenesisFile {
        &self.genesis
    }

    /// The hash of [`NodeHandle::genesis`], computed once at start.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// The node's metrics, to encode for a scrape.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The sections `parts` of what the node committed recently (a short lock, never the
    /// loop).
    pub fn recent(&self, parts: Parts) -> RecentView {
        // A poisoned lock only means a recorder panicked mid-update; the record stays usable.
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .view(parts)
    }

    /// The permit a node audit holds while it runs (one at a time).
    pub fn audit_gate(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.audit_gate
    }

    /// A reader of the committed blocks, for work off the loop (the node's own audit).
    pub fn block_reader(&self) -> BlockReader {
        self.blocks.clone()
    }

    /// The validator set of the next height, as the loop last published it.
    pub fn validators(&self) -> ValidatorsView {
        self.published.borrow().validators.clone()
    }

    /// Committed blocks `from..=to`, as many as the read budget allows.
    pub async fn blocks(&self, from: Height, to: Height) -> Result<Result<BlockRange, StoreError>> {
        let reader = self.blocks.clone();
        tokio::task::spawn_blocking(move || read_range(&reader, from, to))
            .await
            .context("block reader failed")
    }

    /// The unexpired adverts in the book, as the loop last published it (after its latest
    /// commit, or within [`PUBLISH_INTERVAL`]).
    pub async fn adverts(&self) -> Result<Vec<HeldAdvert>> {
        let now = now_ms();
        let published = Arc::clone(&self.published.borrow());
        Ok(published
            .adverts
            .iter()
            .filter(|held| held.advert().expires_at_ms > now)
            .cloned()
            .collect())
    }

    /// The gateway's pick for `request`, counted as an assignment.
    pub async fn quote(&self, request: Request) -> Result<Result<Offer, NoProvider>> {
        self.ask(|reply| Command::Quote(request, reply)).await
    }

    /// A job, `None` if the ledger has none with this id: the live state's entry from the
    /// loop, else the history's, read off the loop (a job leaves the state in the same loop
    /// turn that writes it to the history).
    pub async fn job(&self, id: JobId, proof: bool) -> Result<Option<JobSnapshot>> {
        let live = self.ask(|reply| Command::Job(id, proof, reply)).await?;
        let job = match live.job {
            Some(job) => Some(job),
            None => self
                .read_history(move |h| h.final_job(&id))
                .await?
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "reading a final job");
                    None
                })
                .map(|f| f.job),
        };
        Ok(job.map(|job| JobSnapshot {
            job,
            clock: live.clock,
            output: live.output,
            proof: live.proof,
        }))
    }

    /// An account's balance, stake and provider record from the loop, with its newest
    /// slashes and parts in jobs from the history, read off the loop.
    pub async fn account(&self, id: AccountId, proof: bool) -> Result<AccountSnapshot> {
        let live = self.ask(|reply| Command::Account(id, proof, reply)).await?;
        let (slashes, jobs) = self
            .read_history(move |h| {
                let slashes = h.slashes_of(&id, MAX_LISTED_SLASHES).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "reading an account's slashes");
                    Vec::new()
                });
                let jobs = h.account_jobs(&id, MAX_LISTED_JOBS).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "reading an account's jobs");
                    Vec::new()
                });
                (slashes, jobs)
            })
            .await?;
        Ok(live.with_history(&slashes, jobs))
    }

    /// Which connected peers hold `provider`'s advert, as each answers now (at most
    /// [`crate::reach::PROBE_WAIT_MS`]); `None` if too many probes run already.
    pub async fn advert_reach(&self, provider: AccountId) -> Result<Option<AdvertReach>> {
        self.ask(|reply| Command::AdvertReach(provider, reply))
            .await
    }

    /// Every committed block's events from now on. A receiver that falls more than
    /// [`EVENT_BUFFER`] blocks behind loses the oldest and is told how many on its next read.
    /// `None` if [`MAX_SUBSCRIBERS`] receivers are already out.
    pub async fn subscribe(&self) -> Result<Option<broadcast::Receiver<Arc<BlockEvents>>>> {
        self.ask(Command::Subscribe).await
    }

    /// Submits a transaction; answers with its hash or why it was refused. Its signature is
    /// checked here, on the caller's task: the loop admits only verified transactions from
    /// clients, and a forged one never reaches it.
    pub async fn submit(&self, tx: SignedTx) -> Result<Result<TxHash, AdmitError>> {
        let tx = match tx.verify(&self.chain) {
            Ok(verified) => verified,
            Err(e) => return Ok(Err(AdmitError::BadSignature(e))),
        };
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SubmitTx(Box::new(tx), reply))
            .await
            .context("node stopped")?;
        rx.await.context("node stopped")
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status> {
        Ok(self.published.borrow().status.clone())
    }

    /// The committed block at `height` with its certificate, or `None` if there is none yet.
    pub async fn block(
        &self,
        height: Height,
    ) -> Result<Result<Option<CommittedBlock>, StoreError>> {
        let reader = self.blocks.clone();
        tokio::task::spawn_blocking(move || read_committed(&reader, height))
            .await
            .context("block reader failed")
    }
}

/// What the loop publishes for the API to read without asking it: its status and the advert
/// book, as of its latest commit (or connection change), and at least every
/// [`PUBLISH_INTERVAL`].
#[derive(Debug)]
struct Published {
    status: Status,
    adverts: Vec<HeldAdvert>,
    validators: ValidatorsView,
}

/// What the API reads of `core` and its host now.
fn published(
    core: &NodeCore,
    store: &SledStore,
    swarm: &Swarm<Behaviour>,
    account: &str,
    genesis_hash: Hash,
) -> Published {
    let chain = core.chain();
    let status = Status {
        chain_id: chain.chain_id().to_string(),
        genesis_hash,
        peer_id: swarm.local_peer_id().to_string(),
        account: account.to_owned(),
        height: chain.height(),
        latest_block_hash: chain.last_hash(),
        peers: swarm.connected_peers().count(),
        mempool: core.mempool_len(),
        state_sync: core.state_sync_phase().map(str::to_owned),
        base_height: store.base_height(),
        offered_snapshot: core.offered_snapshot().map(|m| m.height),
    };
    let adverts = core
        .adverts()
        .iter()
        .map(|(_, held)| held.clone())
        .collect();
    let set = chain.validators();
    let validators = ValidatorsView {
        height: chain.height().next(),
        total_power: set.total_power(),
        validators: set
            .validators()
            .iter()
            .map(|v| ValidatorView {
                account: v.account(),
                power: v.power(),
            })
            .collect(),
    };
    Published {
        status,
        adverts,
        validators,
    }
}

/// How often the loop publishes when nothing commits, so that peers, the mempool and the
/// state-sync phase stay current on an idle node.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// Bound on queued local commands: the API waits rather than piling up work.
const COMMAND_QUEUE: usize = 1024;

/// Blocks of events the event stream buffers for its slowest subscriber. The loop never waits
/// for a subscriber: one that falls further behind loses the oldest and is told so. At the
/// idle pace of a block a second that is a minute of slack. Memory is this many blocks of job
/// events, shared by every subscriber: a handful per block in practice, ~20 MB at worst (64
/// blocks each full of 1,024 job transactions at a few hundred bytes of events apiece).
pub const EVENT_BUFFER: usize = 64;

/// Encoded block bytes one `Command::Blocks` reads at most (past the first block). A block can
/// be 8 MB, so 100 of them must not be read in one turn of the loop; 4 MB reads in a few
/// milliseconds, and a client asks again from where the answer stopped.
pub const MAX_RANGE_BYTES: usize = 4 * 1024 * 1024;

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it), moved by the
/// test-only clock skew if one is set ([`set_clock_skew_ms`]).
pub fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    ms.saturating_add_signed(CLOCK_SKEW_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// The test-only skew [`now_ms`] adds: 0 unless a node was started with
/// `danger_clock_skew_ms` (one node per process, so one clock per process).
static CLOCK_SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// TEST ONLY (the chaos test's clock-skew fault): runs this process's clock `ms` ahead of the
/// machine's (negative: behind). Set once, before the node starts.
pub fn set_clock_skew_ms(ms: i64) {
    CLOCK_SKEW_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Time since this process first asked, on the monotonic clock: the clock
/// `attest_chain::audit` takes for its timing figures.
pub fn monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// The block and certificate at `height`, if stored. One entry read through `blocks`, which
/// reads block and certificate together and reports a half-written pair as corruption.
fn read_committed(
    store: &BlockReader,
    height: Height,
) -> Result<Option<CommittedBlock>, StoreError> {
    store.blocks(height..=height).next().transpose()
}

/// Blocks `from..=to` that are stored, stopping after the block that takes the total encoded
/// size past [`MAX_RANGE_BYTES`].
fn read_range(store: &BlockReader, from: Height, to: Height) -> Result<BlockRange, StoreError> {
    let mut blocks = Vec::new();
    let mut bytes = 0;
    for item in store.blocks(from..=to) {
        let pair = item?;
        bytes += pair.0.encode().len();
        blocks.push(pair);
        if bytes > MAX_RANGE_BYTES {
            break;
        }
    }
    Ok(BlockRange {
        latest: store.latest_height(),
        blocks,
    })
}

/// The running node.
pub struct Node {
    swarm: Swarm<Behaviour>,
    core: NodeCore,
    store: SledStore,
    commands: mpsc::Receiver<Command>,
    pending: BTreeMap<OutboundRequestId, PeerKey>,
    /// Advert reach probes in flight (the API's, not the core's).
    probes: Probes,
    account: String,
    bootnodes: Vec<Multiaddr>,
    accel: AccelPool,
    results: mpsc::Receiver<AccelResult>,
    /// Jobs waiting for room on the device's queue, oldest first; at most [`BACKLOG`].
    backlog: VecDeque<JobRun>,
    metrics: Arc<Metrics>,
    /// What the explorer lists, shared with the handles.
    recent: Arc<Mutex<Recent>>,
    /// Committed blocks' events for the API's event stream; bounded by [`EVENT_BUFFER`].
    events: broadcast::Sender<Arc<BlockEvents>>,
    /// Where snapshots go, and how often.
    snapshots: Snapshots,
    /// The genesis hash snapshots name.
    genesis_hash: attest_protocol::Hash,
    /// The chain's id, which gossiped transactions are verified under off the loop.
    chain: ChainId,
    /// Gossiped transaction batches and votes being verified on blocking threads: at most
    /// [`VERIFIERS`] at once; past that one is verified on the loop.
    verifiers: Arc<tokio::sync::Semaphore>,
    /// Gossip verified off the loop, back for the core.
    checked_tx: mpsc::Sender<CheckedGossip>,
    checked: mpsc::Receiver<CheckedGossip>,
    /// Where the loop publishes what the API reads without asking it.
    publisher: watch::Sender<Arc<Published>>,
    /// Whether something the API reads changed since the last publication.
    publish_due: bool,
}

/// Gossip messages verified at once off the loop: one per host core is enough to keep the
/// loop from checking signatures while it has consensus to run.
const VERIFIERS: usize = 2;

/// Gossip whose signatures are checked off the loop.
enum Unchecked {
    /// A transaction batch.
    Txs(TxBatch),
    /// A consensus vote.
    Vote(Signed<Vote>),
}

/// What checking an [`Unchecked`] found: each signature verified under the chain's id, or
/// why not.
enum Checked {
    Txs(Vec<Result<Verified<Tx>, SignatureError>>),
    Vote(Result<Verified<Vote>, SignatureError>),
}

/// A gossip message with its signatures checked, and who to tell the verdict.
struct CheckedGossip {
    message_id: gossipsub::MessageId,
    source: PeerId,
    checked: Checked,
}

/// Verifies every signature of `work` under `chain`.
fn verify(chain: &ChainId, work: Unchecked) -> Checked {
    match work {
        Unchecked::Txs(batch) => Checked::Txs(Signed::verify_all(chain, batch.0.into_vec())),
        Unchecked::Vote(vote) => Checked::Vote(vote.verify(chain)),
    }
}

/// Jobs a node keeps waiting for its accelerator beyond the device's own queue. A provider is
/// assigned only what its adverts offered, and checks are rare (p = 10%), so this is
/// headroom for bursts; past it a job fails at once rather than hold unbounded memory.
const BACKLOG: usize = 1_024;

/// How often unconnected bootnodes are dialled again: nodes of a testnet start in any order,
/// and a bootnode that was not up yet must still be reached.
const REDIAL_INTERVAL: Duration = Duration::from_secs(2);

/// The most connections the node opens to peers it discovered (bootnodes are always dialled,
/// and peers may dial us): enough for a full gossip mesh and every validator of a small set.
const MAX_DIALED_PEERS: usize = 64;

/// The most listen addresses taken from one peer's identify message.
const MAX_LEARNED_ADDRESSES: usize = 8;

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("core", &self.core).finish()
    }
}

impl Node {
    /// Opens the store, replays it, builds the swarm and starts listening and dialling.
    pub fn start(settings: NodeSettings) -> Result<(Self, NodeHandle)> {
        let genesis_id = GenesisId {
            chain_id: settings.genesis.genesis.chain_id.clone(),
            hash: settings.genesis.hash(),
        };
        let store = SledStore::open(&settings.data_dir, &genesis_id)?;
        let (every, kept) = settings.snapshots;
        let snapshots = Snapshots::new(&settings.data_dir, every, kept);
        let key = Some(settings.account_key.clone());
        let core = match snapshots::load_newest(&snapshots, &settings.genesis, &store) {
            Some(chain) => host::open_from(chain, key, settings.core.clone(), &store, now_ms())?,
            // From genesis, or from the snapshot a state-synced store began with.
            None => host::open(
                &settings.genesis,
                key,
                settings.core.clone(),
                &store,
                now_ms(),
            )?,
        };
        if let Some(trust) = settings.core.state_sync {
            if core.state_sync_phase().is_some() {
                tracing::info!(height = trust.height.0, hash = %trust.hash,
                    "joining by state sync towards the trusted block");
            } else {
                tracing::info!(
                    height = core.chain().height().0,
                    "the store has blocks: the trusted block for state sync is not needed"
                );
            }
        }
        let mut swarm = net::build_swarm(&NetConfig::new(settings.node_key.seed()))?;
        for addr in &settings.listen {
            net::listen(&mut swarm, addr.clone())?;
        }
        for addr in &settings.bootnodes {
            let Some(peer) = net::bootnode_peer(addr) else {
                anyhow::bail!("bootnode {addr} lacks a /p2p/<PeerId> suffix");
            };
            // The routing table starts from the bootnodes; the rest is discovered.
            let kad = &mut swarm.behaviour_mut().kad;
            kad.add_address(&peer, net::without_peer(addr));
        }
        let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (accel, results) = AccelPool::start(vec![settings.device.clone()])?;
        let metrics = Arc::new(Metrics::new(core.chain().height()));
        let recent = Arc::new(Mutex::new(Recent::new()));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (checked_tx, checked) = mpsc::channel(VERIFIERS);
        let account = settings.account_key.public().to_string();
        let first = Arc::new(published(&core, &store, &swarm, &account, genesis_id.hash));
        let (publisher, published) = watch::channel(first);
        let blocks = store.reader();
        let history = store.history_reader();
        let node = Self {
            swarm,
            core,
            store,
            commands,
            pending: BTreeMap::new(),
            probes: Probes::default(),
            account,
            bootnodes: settings.bootnodes.clone(),
            accel,
            results,
            backlog: VecDeque::new(),
            metrics: Arc::clone(&metrics),
            recent: Arc::clone(&recent),
            events,
            snapshots,
            genesis_hash: genesis_id.hash,
            chain: settings.genesis.genesis.chain_id.clone(),
            verifiers: Arc::new(tokio::sync::Semaphore::new(VERIFIERS)),
            checked_tx,
            checked,
            publisher,
            publish_due: false,
        };
        let handle = NodeHandle {
            commands: tx,
            blocks,
            history,
            published,
            metrics,
            recent,
            chain: settings.genesis.genesis.chain_id.clone(),
            genesis: Arc::new(settings.genesis.clone()),
            genesis_hash: genesis_id.hash,
            audit_gate: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        Ok((node, handle))
    }

    /// The addresses the swarm listens on so far.
    pub fn listeners(&self) -> Vec<Multiaddr> {
        self.swarm.listeners().cloned().collect()
    }

    /// The node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until `shutdown` resolves; the store is flushed on the way out.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        self.carry_out()?;
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        let mut publish = tokio::time::interval(PUBLISH_INTERVAL);
        loop {
            let sleep = match self.core.poll_timeout() {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Some(command) = self.commands.recv() => self.on_command(command),
                () = tokio::time::sleep(sleep) => self.core.handle_timeout(now_ms()),
                _ = redial.tick() => {
                    self.dial_bootnodes();
                    self.redial_discovered();
                }
                _ = publish.tick() => {
                    self.publish_due = true;
                    self.probes.expire(now_ms());
                }
                Some(result) = self.results.recv() => self.on_job_done(result),
                Some(batch) = self.checked.recv() => self.on_checked(batch),
                () = &mut shutdown => break,
            }
            self.carry_out()?;
        }
        tracing::info!(height = self.core.chain().height().0, "shutting down");
        self.accel.shutdown().await;
        Ok(())
    }

    /// A job came back from the accelerator: the core gets it, and a waiting job gets the room.
    fn on_job_done(&mut self, result: AccelResult) {
        let outcome = result.outcome.map_err(|e| e.to_string());
        self.core
            .handle_job_done(now_ms(), result.id, result.purpose, outcome);
        while let Some(run) = self.backlog.pop_front() {
            if let Err(run) = self.try_run(run) {
                self.backlog.push_front(run);
                break;
            }
        }
    }

    /// Hands a job to the device, or gives it back if the device's queue is full. Any other
    /// refusal (a model the device cannot hold) goes to the core as the job's failure.
    fn try_run(&mut self, run: JobRun) -> std::result::Result<(), JobRun> {
        let device = self.accel.devices().first().map(|d| d.profile().name);
        let (job, purpose) = (run.job, run.purpose);
        // The pool hands the run back only inside a refusal, so keep a copy for a full queue.
        match self.accel.try_submit(device.unwrap_or(""), run.clone()) {
            Ok(()) => Ok(()),
            Err(AccelError::QueueFull { .. }) => Err(run),
            Err(e) => {
                self.core
                    .handle_job_done(now_ms(), job, purpose, Err(e.to_string()));
                Ok(())
            }
        }
    }

    /// Dials every bootnode we are not connected to. A bootnode that is down is only logged:
    /// it may come up later.
    fn dial_bootnodes(&mut self) {
        for addr in &self.bootnodes {
            let Some(peer) = net::bootnode_peer(addr) else {
                continue;
            };
            if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
                continue;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "dialling bootnode");
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::TxPending(hash, reply) => {
                let _ = reply.send(self.core.mempool_contains(&hash));
            }
            Command::SubmitTx(tx, reply) => {
                let _ = reply.send(self.core.submit_verified_tx(now_ms(), *tx));
            }
            Command::Quote(request, reply) => {
                let _ = reply.send(self.core.quote(now_ms(), &request));
            }
            Command::Job(id, proof, reply) => {
                // The live state only; a job that left it is read from the history off the
                // loop (`NodeHandle::job`).
                let chain = self.core.chain();
                let _ = reply.send(LiveJob {
                    job: chain.state().job(&id).cloned(),
                    clock: self.core.measurements().job(&id).cloned(),
                    output: self.core.job_output(&id).map(<[u8]>::to_vec),
                    proof: proof.then(|| ProofView::of(chain, &[Key::Job(id)])),
                });
            }
            Command::Account(id, proof, reply) => {
                let chain = self.core.chain();
                let mut snapshot = AccountSnapshot::of(chain.state(), &id);
                snapshot.validator_power = chain.validators().get(&id).map(|v| v.power());
                if proof {
                    let keys = [Key::Account(id), Key::Stake(id), Key::Record(id)];
                    snapshot.proof = Some(ProofView::of(chain, &keys));
                }
                let _ = reply.send(snapshot);
            }
            Command::AdvertReach(provider, reply) => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                let data = attest_core::wire::Request::Advert(provider).encode();
                let requests = &mut self.swarm.behaviour_mut().requests;
                self.probes.start(
                    provider,
                    peers,
                    now_ms(),
                    |peer| requests.send_request(peer, data.clone()),
                    reply,
                );
            }
            Command::Subscribe(reply) => {
                let room = self.events.receiver_count() < MAX_SUBSCRIBERS;
                let _ = reply.send(room.then(|| self.events.subscribe()));
            }
        }
    }

    /// Writes a snapshot of the chain at `height` (its head) off the loop: the loop only
    /// exports and encodes the state; the file is written and fsynced on a blocking thread.
    fn write_snapshot(&self, height: Height) {
        let bytes = self.core.chain().snapshot(self.genesis_hash).encode();
        let snapshots = self.snapshots.clone();
        tokio::task::spawn_blocking(move || match snapshots.write(height, &bytes) {
            Ok(path) => {
                tracing::info!(path = %path.display(), bytes = bytes.len(), "snapshot written")
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "writing a snapshot failed"),
        });
    }

    /// Records a swarm event in libp2p's metrics, with the behaviour events it has metrics for.
    fn record_swarm(&mut self, event: &SwarmEvent<BehaviourEvent>) {
        let p2p = &self.metrics.libp2p;
        p2p.record(event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => p2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => p2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => p2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => p2p.record(e),
            SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. } => {
                self.metrics.set_peers(self.swarm.connected_peers().count());
                self.publish_due = true;
            }
            _ => {}
        }
    }

    /// A block committed: metrics, and its events to the stream's subscribers (never waiting:
    /// the broadcast channel drops the oldest for a subscriber that lags).
    fn on_committed(
        &mut self,
        height: Height,
        hash: BlockHash,
        time_ms: u64,
        txs: usize,
        events: Vec<attest_contracts_sim::Event>,
    ) {
        self.metrics
            .on_block(height, time_ms, txs, &events, self.core.measurements());
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .on_block(
                height,
                hash,
                time_ms,
                txs,
                &events,
                self.core.measurements(),
            );
        self.metrics.sync_stats(
            self.core.duty_stats(),
            self.core.gateway_stats(),
            self.core.consensus_internal_errors(),
        );
        if self.events.receiver_count() > 0 {
            let block = BlockEvents::new(height, hash, txs, time_ms, events);
            // An error only means every subscriber left since the count was read.
            let _ = self.events.send(Arc::new(block));
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.record_swarm(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                if self.core.state_sync_phase().is_none()
                    && self.off_loop(
                        message_id.clone(),
                        propagation_source,
                        message.topic.as_str(),
                        &message.data,
                    )
                {
                    return;
                }
                let from = propagation_source.to_bytes();
                let verdict =
                    self.core
                        .handle_gossip(now_ms(), &from, message.topic.as_str(), &message.data);
                self.report(&message_id, &propagation_source, verdict);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Requests(request_response::Event::Message {
                peer,
                message,
                ..
            })) => self.on_request_message(peer, message),
            SwarmEvent::Behaviour(BehaviourEvent::Requests(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) => {
                if self.probes.answer(&request_id, None) {
                    tracing::debug!(%error, "advert probe failed");
                } else if let Some(peer) = self.pending.remove(&request_id) {
                    tracing::debug!(%error, "sync request failed");
                    self.core.handle_response(now_ms(), &peer, None);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!(peer = %peer_id, "connected");
                self.core.peer_connected(now_ms(), &peer_id.to_bytes());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.learn_addresses(peer_id, &info),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            })) => {
                tracing::debug!(%peer, "discovered");
                self.dial_discovered(peer);
            }
            _ => {}
        }
    }

    /// A peer told us (identify) where it listens: if it speaks our Kademlia, those addresses
    /// go into the routing table, at most [`MAX_LEARNED_ADDRESSES`] of them and none that
    /// cannot be dialled (unspecified or port 0).
    fn learn_addresses(&mut self, peer: PeerId, info: &identify::Info) {
        if !info
            .protocols
            .iter()
            .any(|p| p.as_ref() == net::KAD_PROTOCOL)
        {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for addr in info
            .listen_addrs
            .iter()
            .filter(|a| net::dialable(a))
            .take(MAX_LEARNED_ADDRESSES)
        {
            kad.add_address(&peer, addr.clone());
        }
    }

    /// Dials a peer the routing table holds, unless connected already or at
    /// [`MAX_DIALED_PEERS`] connections.
    fn dial_discovered(&mut self, peer: PeerId) {
        if peer == *self.swarm.local_peer_id()
            || self.swarm.is_connected(&peer)
            || self.swarm.connected_peers().count() >= MAX_DIALED_PEERS
        {
            return;
        }
        if let Err(e) = self.swarm.dial(peer) {
            tracing::debug!(%peer, error = %e, "dialling a discovered peer");
        }
    }

    /// Dials every peer of the routing table we are not connected to (a peer lost in a
    /// partition is found again this way), up to [`MAX_DIALED_PEERS`] connections.
    fn redial_discovered(&mut self) {
        let known: Vec<PeerId> = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|bucket| {
                bucket
                    .iter()
                    .map(|entry| *entry.node.key.preimage())
                    .collect::<Vec<_>>()
            })
            .take(MAX_DIALED_PEERS)
            .collect();
        for peer in known {
            self.dial_discovered(peer);
        }
    }

    /// Tells gossipsub what the core made of a message.
    fn report(
        &mut self,
        message_id: &gossipsub::MessageId,
        source: &PeerId,
        verdict: GossipVerdict,
    ) {
        let acceptance = match verdict {
            GossipVerdict::Accept => MessageAcceptance::Accept,
            GossipVerdict::Reject(reason) => {
                tracing::debug!(peer = %source, %reason, "rejected gossip");
                MessageAcceptance::Reject
            }
            GossipVerdict::Ignore(_) => MessageAcceptance::Ignore,
        };
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        gossip.report_message_validation_result(message_id, source, acceptance);
    }

    /// A gossiped transaction batch or vote: decoded here, its signatures verified on a
    /// blocking thread (or here, when [`VERIFIERS`] are busy), handed to the core when it comes
    /// back. A consensus message that is not a vote goes to the core at once. Returns false
    /// for a topic the core decodes itself.
    fn off_loop(
        &mut self,
        message_id: gossipsub::MessageId,
        source: PeerId,
        topic_name: &str,
        data: &[u8],
    ) -> bool {
        let work = match topic_name {
            topic::TX_BATCHES => match TxBatch::decode(data) {
                Ok(batch) => Unchecked::Txs(batch),
                Err(e) => {
                    self.report(&message_id, &source, GossipVerdict::Reject(e.to_string()));
                    return true;
                }
            },
            topic::CONSENSUS => match ConsensusMessage::decode(data) {
                Ok(ConsensusMessage::Vote(vote)) => Unchecked::Vote(vote),
                Ok(other) => {
                    let from = source.to_bytes();
                    let verdict = self.core.handle_consensus_message(now_ms(), &from, other);
                    self.report(&message_id, &source, verdict);
                    return true;
                }
                Err(e) => {
                    self.report(&message_id, &source, GossipVerdict::Reject(e.to_string()));
                    return true;
                }
            },
            _ => return false,
        };
        let Ok(permit) = self.verifiers.clone().try_acquire_owned() else {
            let checked = verify(&self.chain, work);
            self.on_checked(CheckedGossip {
                message_id,
                source,
                checked,
            });
            return true;
        };
        let (chain, back) = (self.chain.clone(), self.checked_tx.clone());
        tokio::task::spawn_blocking(move || {
            let checked = verify(&chain, work);
            // The loop is gone only when the node stops. The permit is held until the loop
            // has the message, so at most VERIFIERS are out of its hands.
            let _ = back.blocking_send(CheckedGossip {
                message_id,
                source,
                checked,
            });
            drop(permit);
        });
        true
    }

    /// Gossip verified off the loop: handed to the core, and its verdict reported.
    fn on_checked(&mut self, gossip: CheckedGossip) {
        let verdict = match gossip.checked {
            Checked::Txs(txs) => self.core.handle_checked_tx_batch(now_ms(), txs),
            Checked::Vote(vote) => {
                let from = gossip.source.to_bytes();
                self.core.handle_checked_vote(now_ms(), &from, vote)
            }
        };
        self.report(&gossip.message_id, &gossip.source, verdict);
    }

    fn on_request_message(&mut self, peer: PeerId, message: Message<Vec<u8>, Vec<u8>>) {
        match message {
            Message::Request {
                request, channel, ..
            } => {
                // Answered straight from the store: serving committed blocks needs no core.
                let answer =
                    host::serve_request(&self.core, &self.store, &request).unwrap_or_default();
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .requests
                    .send_response(channel, answer);
            }
            Message::Response {
                request_id,
                response,
            } => {
                if self.probes.answer(&request_id, Some(&response)) {
                    return;
                }
                if let Some(key) = self.pending.remove(&request_id) {
                    let _ = peer;
                    self.core.handle_response(now_ms(), &key, Some(&response));
                }
            }
        }
    }

    fn queue_job(&mut self, run: JobRun) {
        if self.backlog.len() >= BACKLOG {
            let error = format!("accelerator backlog full ({BACKLOG} jobs waiting)");
            self.core
                .handle_job_done(now_ms(), run.job, run.purpose, Err(error));
        } else {
            self.backlog.push_back(run);
        }
    }

    /// Carries out the core's effects in order. A store failure is fatal: the node must not
    /// go on after failing to make a vote or block durable.
    ///
    /// Writes the core asks for back to back share one flush (a block with its history and
    /// the vote pruning, a lock with its precommit): the group ends, flushed, before the next
    /// effect that is not a write, so nothing is sent or announced before it is durable.
    fn carry_out(&mut self) -> Result<()> {
        let mut grouped = false;
        while let Some(effect) = self.core.poll_effect() {
            if let Effect::Persist(what) = &effect {
                if !grouped {
                    self.store.begin_group();
                    grouped = true;
                }
                host::persist(&mut self.store, what)?;
                continue;
            }
            if std::mem::take(&mut grouped) {
                self.store.end_group()?;
            }
            match effect {
                // Taken above; persisting here too would be as correct.
                Effect::Persist(what) => host::persist(&mut self.store, &what)?,
                Effect::Broadcast { topic, data } => {
                    let gossip = &mut self.swarm.behaviour_mut().gossipsub;
                    // Without subscribed peers the publish fails; consensus re-broadcasts on a
                    // timer and the mempool is gossiped again by whoever holds it.
                    if let Err(e) = gossip.publish(IdentTopic::new(topic), data) {
                        tracing::debug!(topic, error = %e, "publish");
                    }
                }
                Effect::Request { peer, data } => match PeerId::from_bytes(&peer) {
                    Ok(id) => {
                        let request_id =
                            self.swarm.behaviour_mut().requests.send_request(&id, data);
                        self.pending.insert(request_id, peer);
                    }
                    Err(_) => self.core.handle_response(now_ms(), &peer, None),
                },
                Effect::RunJob(run) => {
                    if !self.backlog.is_empty() {
                        self.queue_job(*run);
                    } else if let Err(run) = self.try_run(*run) {
                        self.queue_job(run);
                    }
                }
                Effect::Halt { height, reason } => {
                    tracing::error!(height = height.0, %reason, "halting");
                    anyhow::bail!("the node halted at height {height}: {reason}");
                }
                Effect::Misbehaved { peer, reason } => {
                    let peer = PeerId::from_bytes(&peer).map(|p| p.to_string());
                    tracing::warn!(peer = %peer.unwrap_or_default(), %reason, "peer misbehaved");
                    self.metrics.on_misbehaved();
                }
                Effect::Committed {
                    height,
                    hash,
                    time_ms,
                    txs,
                    events,
                } => {
                    tracing::info!(height = height.0, %hash, txs, events = events.len(), "committed");
                    self.publish_due = true;
                    self.on_committed(height, hash, time_ms, txs, events);
                    if self.snapshots.due(height) {
                        self.write_snapshot(height);
                    }
                }
            }
        }
        if grouped {
            self.store.end_group()?;
        }
        self.metrics.set_mempool(self.core.mempool_len());
        if self.publish_due {
            self.publish_due = false;
            let now = published(
                &self.core,
                &self.store,
                &self.swarm,
                &self.account,
                self.genesis_hash,
            );
            self.publisher.send_replace(Arc::new(now));
        }
        Ok(())
    }
}
