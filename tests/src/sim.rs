//! The simulator: N real `NodeCore`s with in-memory stores on a virtual clock, driven through
//! the faulty network.
//!
//! This module owns the run: the genesis and keys, the main loop (the earliest of the next
//! queued event and the nodes' own deadlines, ties to queued events), node lifecycles (crash
//! keeps only the store; restart opens a snapshot of it), carrying out each node's effects in
//! order, and the end of a run (liveness after the last fault, agreement on every balance).
//! What the effects and events do in detail lives in [`crate::effects`]; what is checked, in
//! [`crate::invariants`]. Everything is a function of the scenario's seed.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use attest_chain::GenesisFile;
use attest_chain::ValidatorSet;
use attest_consensus::TimeoutConfig;
use attest_contracts_sim::{Params, SlashReason, State};
use attest_core::store::{GenesisId, MemStore};
use attest_core::{CoreConfig, NodeCore, PeerKey};
use attest_protocol::tx::Capability;
use attest_protocol::{AccountId, Amount, BlockHash, ChainId, Height, SecretKey};

use crate::scenario::big_device;

use crate::clients::{Clients, client_funds};
use crate::invariants::Checker;
use crate::network::{Event, Network, Queue};
use crate::rng::Rng;
use crate::scenario::{Role, Scenario};

/// The genesis time of every run (ms since the epoch).
pub const GENESIS_MS: u64 = 1_700_000_000_000;
/// When a run starts: the virtual clock's first reading.
pub const START_MS: u64 = GENESIS_MS + 1_000;
/// A run that takes more steps than this is stuck in a loop.
const MAX_STEPS: u64 = 20_000_000;

/// The core settings of simulated nodes: timeouts a few times the simulated latency.
pub fn core_config() -> CoreConfig {
    let ms = Duration::from_millis;
    CoreConfig {
        idle_block_interval_ms: 800,
        rebroadcast_interval_ms: 700,
        // Short, so leftovers no block takes leave within a run.
        mempool_ttl_ms: 3_000,
        timeouts: TimeoutConfig {
            propose: ms(500),
            propose_delta: ms(200),
            prevote: ms(300),
            prevote_delta: ms(150),
            precommit: ms(300),
            precommit_delta: ms(150),
            max: ms(5_000),
        },
        ..CoreConfig::default()
    }
}

/// The chain of the newest of `node`'s snapshots that its store anchors (it holds the block
/// after the snapshot, whose header claims the snapshot's root), checked like a state-synced
/// one; `None` to replay from genesis (or the store's base).
fn restart_point(
    genesis: &attest_chain::GenesisFile,
    node: &SimNode,
) -> Option<attest_chain::Chain> {
    use attest_core::store::Store;
    node.disk_snapshots.iter().rev().find_map(|s| {
        let anchor = node.store.block(s.manifest.height.next()).ok()??;
        let chain_id = &genesis.genesis.chain_id;
        attest_chain::statesync::restore(chain_id, &s.manifest, &s.chunks, &anchor).ok()
    })
}

pub use crate::scenario::MAX_SIM_NODES;

/// Nodes below this keep the keys they always had (`[i + 1; 32]` and `[i + 100; 32]`), so
/// the small runs' traces do not change; the others' keys are derived by hash.
const BYTE_KEYED: usize = 99;

/// A key seed for the `i`th key of `role`, for nodes past [`BYTE_KEYED`].
fn derived_seed(role: &str, i: usize) -> [u8; 32] {
    let tag = format!("attest/sim/{role}");
    attest_protocol::hash::hash_tagged(&tag, &[&(i as u64).to_le_bytes()]).0
}

/// Every node's peer id and the node of each peer id, derived once (a key derivation is a
/// scalar multiplication; the wide runs look peers up per message).
fn peers() -> &'static (Vec<PeerKey>, BTreeMap<PeerKey, usize>) {
    static PEERS: std::sync::OnceLock<(Vec<PeerKey>, BTreeMap<PeerKey, usize>)> =
        std::sync::OnceLock::new();
    PEERS.get_or_init(|| {
        let ids: Vec<PeerKey> = (0..MAX_SIM_NODES)
            .map(|i| node_key(i).public().peer_id_bytes().to_vec())
            .collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i))
            .collect();
        (ids, index)
    })
}

/// Node `i`'s peer id in the simulator.
pub fn peer(i: usize) -> PeerKey {
    peers().0[i].clone()
}

/// Node `i`'s identity key (its PeerId), bound to its account at genesis.
pub fn node_key(i: usize) -> SecretKey {
    if i < BYTE_KEYED {
        SecretKey::from_seed([i as u8 + 100; 32])
    } else {
        SecretKey::from_seed(derived_seed("node", i))
    }
}

/// The node whose peer id is `key`, if any of `n`.
pub fn node_of(key: &[u8], n: usize) -> Option<usize> {
    peers().1.get(key).copied().filter(|i| *i < n)
}

/// Node `i`'s validator account key.
pub fn validator_key(i: usize) -> SecretKey {
    if i < BYTE_KEYED {
        SecretKey::from_seed([i as u8 + 1; 32])
    } else {
        SecretKey::from_seed(derived_seed("account", i))
    }
}

/// The genesis of a run with `n` validators (equal stake, node `i` binding `devices[i]`, or a
/// device that holds every model past the list's end) and `clients` funded clients.
pub fn genesis(n: usize, clients: usize, params: Params, devices: &[Capability]) -> GenesisFile {
    let tokens = |t| Amount::tokens(t).expect("in range");
    let mut balances: Vec<_> = (0..n)
        .map(|i| (validator_key(i).public(), tokens(1_000)))
        .collect();
    balances.extend((0..clients).map(|c| (crate::clients::client_key(c).public(), client_funds())));
    let stakes = (0..n)
        .map(|i| {
            let node = node_key(i).public();
            (
                validator_key(i).public(),
                node,
                tokens(500),
                devices.get(i).cloned().unwrap_or_else(big_device),
            )
        })
        .collect();
    let chain = ChainId::new("attest-sim").expect("valid chain id");
    GenesisFile::new(chain, GENESIS_MS, params, balances, stakes)
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Its validator account key.
    pub key: SecretKey,
    /// How it behaves.
    pub role: Role,
    /// Its running core, `None` while crashed.
    pub core: Option<NodeCore>,
    /// Its store: everything it made durable.
    pub store: MemStore,
    /// The store as the crash left it, until the restart.
    pub snapshot: Option<MemStore>,
    /// State snapshots it wrote (as the node shell writes one every
    /// `snapshot_interval_blocks`), newest last, two kept: a restart starts from the newest
    /// that its store anchors, and replays only the blocks after it.
    pub disk_snapshots: Vec<attest_chain::statesync::SyncSnapshot>,
    /// Incarnation: goes up at every crash.
    pub epoch: u64,
    /// A torn crash waits for this many more effects.
    pub torn: Option<u8>,
    /// The chain height last checked (`None`: check again).
    pub height: Option<Height>,
    /// The validator set its chain holds for the next height, with that height.
    pub set: Option<(Height, ValidatorSet)>,
    /// Real gossip it received lately (a garbage node forges from these).
    pub recent: VecDeque<(&'static str, Rc<Vec<u8>>)>,
}

impl SimNode {
    /// Its chain height, if running.
    pub fn chain_height(&self) -> Option<u64> {
        self.core.as_ref().map(|c| c.chain().height().0)
    }
}

/// Counters of a run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Steps taken (events and timer firings).
    pub steps: u64,
    /// Gossip messages handed to a core.
    pub gossip_delivered: u64,
    /// Forged or junk gossip handed to a core.
    pub forged_delivered: u64,
    /// ... of which the core accepted (for forwarding).
    pub forged_accepted: u64,
    /// Sync requests sent.
    pub sync_requests: u64,
    /// Sync requests that failed (lost, partitioned, crashed or silent peer).
    pub sync_failures: u64,
    /// Crashes.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
    /// Client transfers submitted to a node (including re-sends).
    pub tx_submissions: u64,
    /// Equivocation evidence transactions committed (seen by the reference chain).
    pub evidence_committed: u64,
    /// Jailings committed.
    pub jailed: u64,
    /// Restarts that started from a state snapshot rather than genesis.
    pub snapshot_restarts: u64,
    /// Misbehaviour reports: (reporting node, accused node if it is one).
    pub misbehaviour_reports: Vec<(usize, Option<usize>)>,
    /// Nodes that halted (`Effect::Halt`), with why: a bug in every run, asserted empty.
    pub halts: Vec<(usize, String)>,
}

/// What a finished run leaves.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Every node's final height (`None` if down).
    pub heights: Vec<Option<u64>>,
    /// The honest nodes' common final height.
    pub height: u64,
    /// The committed block hashes, heights 1 up.
    pub chain: Vec<BlockHash>,
    /// The committed blocks' times (ms), heights 1 up.
    pub block_times_ms: Vec<u64>,
    /// A digest of everything that happened, in order.
    pub trace: u64,
    /// Virtual time the run took (ms).
    pub elapsed_ms: u64,
    /// The honest nodes' (identical) contract state at `height`.
    pub state: State,
    /// Every slash the run's blocks made, in order.
    pub slashes: Vec<(AccountId, SlashReason)>,
    /// Counters.
    pub stats: Stats,
    /// Transfers the clients signed.
    pub transfers_signed: u64,
    /// Transactions left in each running node's mempool at the end.
    pub mempools: Vec<Option<usize>>,
    /// Jobs the clients opened.
    pub jobs_opened: u64,
    /// Every job's stage clock as the first running honest node measured it.
    pub job_clocks: Vec<(attest_protocol::JobId, attest_core::market::JobClock)>,
    /// What each running node's job pipeline did (`None` if down).
    pub duty_stats: Vec<Option<attest_core::market::DutyStats>>,
    /// Adverts in each running node's book at the end (`None` if down).
    pub advert_books: Vec<Option<usize>>,
    /// What each running node's gateway did (`None` if down).
    pub gateway_stats: Vec<Option<attest_core::market::GatewayStats>>,
    /// The height each node's store starts after (above 0 for a node that state-synced).
    pub bases: Vec<u64>,
}

impl Outcome {
    /// A digest of the committed chain.
    pub fn chain_digest(&self) -> u64 {
        let mut t = Trace::default();
        for h in &self.chain {
            t.bytes(h.as_bytes());
        }
        t.0
    }
}

/// An FNV-1a digest of a run's events.
#[derive(Debug, Clone, Copy)]
pub struct Trace(pub u64);

impl Default for Trace {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Trace {
    /// Mixes in `bytes`.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    /// Mixes in `v`.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// A run in progress.
#[derive(Debug)]
pub struct Sim {
    /// The scenario.
    pub scenario: Scenario,
    /// The genesis.
    pub genesis: GenesisFile,
    /// Its identity, for reopening stores.
    pub genesis_id: GenesisId,
    /// The nodes.
    pub nodes: Vec<SimNode>,
    /// The virtual clock (ms since the epoch).
    pub now: u64,
    /// Pending events.
    pub queue: Queue,
    /// The links.
    pub net: Network,
    /// Randomness of Byzantine nodes and clients.
    pub rng: Rng,
    /// The invariants.
    pub checker: Checker,
    /// Client traffic.
    pub clients: Clients,
    /// The trace digest.
    pub trace: Trace,
    /// Counters.
    pub stats: Stats,
    /// The highest honest height when the last fault happened.
    calm_height: Option<u64>,
    /// The last height whose contract events were counted.
    pub(crate) counted_height: u64,
    /// Print every effect (`ATTEST_SIM_VERBOSE=1`).
    pub(crate) verbose: bool,
}

enum Next {
    Event,
    Timer(usize),
}

impl Sim {
    /// Sets up `scenario`: genesis, stores, cores, the first client and garbage ticks, and
    /// the scheduled faults.
    pub fn new(scenario: Scenario) -> Self {
        let n = scenario.len();
        let genesis = genesis(
            n,
            scenario.clients,
            scenario.params.clone(),
            &scenario.devices,
        );
        let genesis_id = GenesisId {
            chain_id: genesis.genesis.chain_id.clone(),
            hash: genesis.hash(),
        };
        let honest: Vec<bool> = scenario.roles.iter().map(|r| r.is_honest()).collect();
        let keys = (0..n).map(|i| validator_key(i).public()).collect();
        let checker = Checker::new(&genesis, keys, &honest);
        let nodes = (0..n)
            .map(|i| SimNode {
                key: validator_key(i),
                role: scenario.roles[i],
                core: None,
                store: MemStore::new(genesis_id.clone()),
                snapshot: None,
                disk_snapshots: Vec::new(),
                epoch: 0,
                torn: None,
                height: None,
                set: None,
                recent: VecDeque::new(),
            })
            .collect();
        let clients = Clients::new(genesis.genesis.chain_id.clone(), scenario.clients);
        let seed = scenario.seed;
        let mut sim = Self {
            net: Network::new(scenario.net.clone(), n, Rng::fork(seed, 1)),
            rng: Rng::fork(seed, 2),
            scenario,
            genesis,
            genesis_id,
            nodes,
            now: START_MS,
            queue: Queue::default(),
            checker,
            clients,
            trace: Trace::default(),
            stats: Stats::default(),
            calm_height: None,
            counted_height: 0,
            verbose: std::env::var_os("ATTEST_SIM_VERBOSE").is_some(),
        };
        sim.schedule_start();
        sim
    }

    fn schedule_start(&mut self) {
        for (at, fault) in self.scenario.faults.clone() {
            self.queue.push(START_MS + at, Event::Fault(fault));
        }
        if self.scenario.tx_interval_ms.is_some() && self.scenario.clients > 0 {
            self.queue.push(START_MS + 100, Event::ClientTick);
        }
        if self.scenario.jobs.is_some() && self.scenario.clients > 0 {
            self.queue.push(START_MS + 300, Event::JobTick);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].role == Role::Garbage {
                self.queue
                    .push(START_MS + 50, Event::GarbageTick { node: i });
            }
            if !self.scenario.late.contains(&i) {
                self.open(i);
            }
        }
    }

    /// Opens node `i`'s core on its store (a start or a restart) and carries out its effects.
    pub fn open(&mut self, i: usize) {
        self.open_with(i, None);
    }

    /// Starts late node `i` by state sync, trusting the head of the highest running honest
    /// node.
    pub fn join(&mut self, i: usize) {
        let trust = (0..self.nodes.len())
            .filter(|&j| j != i && self.nodes[j].role.is_honest())
            .filter_map(|j| self.nodes[j].core.as_ref())
            .map(|c| c.chain())
            .max_by_key(|c| c.height())
            .map(|c| attest_core::statesync::Trust {
                height: c.height(),
                hash: c.last_hash(),
            });
        self.open_with(i, trust);
    }

    fn open_with(&mut self, i: usize, trust: Option<attest_core::statesync::Trust>) {
        let node = &mut self.nodes[i];
        if let Some(snapshot) = node.snapshot.take() {
            node.store = snapshot
                .reopen(&self.genesis_id)
                .unwrap_or_else(|e| panic!("node {i}: store does not reopen: {e}"));
        }
        let mut market = self.scenario.markets[i].clone();
        // Every node advertises an H100 at a price that differs by node.
        market.advert = Some(attest_core::node::adverts::AdvertTerms {
            node: node_key(i).public(),
            device: attest_protocol::DeviceName::new("h100-sxm").expect("valid device name"),
            models: attest_protocol::workload::CATALOGUE
                .iter()
                .filter_map(|m| attest_protocol::ModelId::new(m.id).ok())
                .collect(),
            slots: 4,
            price_per_token: Amount(100 + 10 * i as u64),
            tokens_per_sec_milli: 50_000_000,
        });
        let defaults = core_config();
        let config = CoreConfig {
            market,
            snapshot_interval_blocks: self.scenario.snapshot_interval_blocks,
            state_sync: trust,
            idle_block_interval_ms: self
                .scenario
                .idle_block_interval_ms
                .unwrap_or(defaults.idle_block_interval_ms),
            ..defaults
        };
        let key = Some(node.key.clone());
        let core = match restart_point(&self.genesis, node) {
            Some(chain) => {
                self.stats.snapshot_restarts += 1;
                attest_core::host::open_from(chain, key, config, &node.store, self.now)
            }
            None => attest_core::host::open(&self.genesis, key, config, &node.store, self.now),
        }
        .unwrap_or_else(|e| panic!("node {i} does not open its store: {e}"));
        node.core = Some(core);
        node.height = None;
        node.set = None;
        self.after_input(i);
    }

    /// Node `i` wrote a state snapshot of its head (its core offers it now).
    pub fn write_snapshot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(snapshot) = node.core.as_ref().and_then(|c| c.served_snapshot()) else {
            return;
        };
        if node.disk_snapshots.last() == Some(snapshot) {
            return;
        }
        node.disk_snapshots.push(snapshot.clone());
        if node.disk_snapshots.len() > 2 {
            node.disk_snapshots.remove(0);
        }
    }

    /// Node `i` crashes now: its core and unsent effects are gone, its store stays.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.core.take().is_none() {
            return;
        }
        node.snapshot = Some(node.store.clone());
        node.torn = None;
        node.epoch += 1;
        self.stats.crashes += 1;
        self.trace.u64(0xC0 + i as u64);
    }

    /// Runs the scenario to its end and checks it; panics on any violation.
    pub fn run(mut self) -> Outcome {
        let calm = START_MS + self.scenario.calm_at();
        let deadline = calm + self.scenario.liveness_budget_ms;
        loop {
            let Some((at, next)) = self.next() else {
                panic!(
                    "LIVENESS: nothing left to happen at {} ms",
                    self.now - START_MS
                );
            };
            if at > deadline {
                self.liveness_failure(calm);
            }
            self.now = self.now.max(at);
            self.trace.u64(self.now);
            match next {
                Next::Event => self.on_event(),
                Next::Timer(i) => {
                    self.trace.u64(0x71 + i as u64);
                    if let Some(core) = self.nodes[i].core.as_mut() {
                        core.handle_timeout(self.now);
                    }
                    self.after_input(i);
                }
            }
            self.stats.steps += 1;
            assert!(
                self.stats.steps < MAX_STEPS,
                "too many steps: a loop at one instant?"
            );
            if self.now >= calm && self.ended() {
                return self.finish();
            }
        }
    }

    fn next(&self) -> Option<(u64, Next)> {
        let mut best = self.queue.next_at().map(|t| (t, Next::Event));
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(t) = node.core.as_ref().and_then(NodeCore::poll_timeout) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| t < *b) {
                best = Some((t, Next::Timer(i)));
            }
        }
        best
    }

    fn honest(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes.iter().filter(|n| n.role.is_honest())
    }

    fn honest_heights(&self) -> Vec<Option<u64>> {
        self.honest().map(SimNode::chain_height).collect()
    }

    /// Whether the run reached its end: every honest node up, all at one height, at least the
    /// target and some blocks past the height of the last fault.
    fn ended(&mut self) -> bool {
        let heights = self.honest_heights();
        let calm_height = *self
            .calm_height
            .get_or_insert_with(|| heights.iter().flatten().copied().max().unwrap_or(0));
        let goal = self
            .scenario
            .target_height
            .max(calm_height + self.scenario.liveness_blocks);
        let first = heights.first().copied().flatten();
        first.is_some_and(|h| h >= goal)
            && heights.iter().all(|h| *h == first)
            && self.jobs_settled()
    }

    /// With job traffic: every job is opened, and every job on the ledger is final.
    fn jobs_settled(&self) -> bool {
        let Some(jobs) = &self.scenario.jobs else {
            return true;
        };
        self.clients.jobs_opened() >= jobs.count
            && self
                .checker
                .oracle()
                .state()
                .jobs()
                .all(|(_, j)| j.phase.is_final())
    }

    fn liveness_failure(&self, calm: u64) -> ! {
        panic!(
            "LIVENESS: honest nodes did not reach height {} (target {}, or {} past {:?} at the \
             last fault) within {} ms after the last fault at {} ms; heights {:?}, {} events \
             queued; own votes at the next height:{}",
            self.scenario
                .target_height
                .max(self.calm_height.unwrap_or(0) + self.scenario.liveness_blocks),
            self.scenario.target_height,
            self.scenario.liveness_blocks,
            self.calm_height,
            self.scenario.liveness_budget_ms,
            calm - START_MS,
            self.nodes
                .iter()
                .map(SimNode::chain_height)
                .collect::<Vec<_>>(),
            self.queue.len(),
            self.own_votes_summary(),
        )
    }

    /// Each node's own votes at its next height, for a diagnosis.
    pub fn own_votes_summary(&self) -> String {
        use attest_core::store::Store;
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let next = node.store.latest_height().next();
            let votes = node.store.own_votes(next).unwrap_or_default();
            let votes: Vec<String> = votes
                .iter()
                .map(|v| {
                    let block = v
                        .body
                        .block
                        .map_or("nil".into(), |b| b.to_string()[..8].to_owned());
                    format!("r{}:{:?}:{block}", v.body.round.0, v.body.kind)
                })
                .collect();
            let role = node.role;
            out.push_str(&format!(
                "\n  node {i} ({role:?}) at {}: {}",
                next.0 - 1,
                votes.join(" ")
            ));
        }
        out
    }

    /// The end-of-run checks: the honest nodes agree on every account, stake and the state
    /// root at their common height.
    fn finish(self) -> Outcome {
        assert!(
            self.stats.halts.is_empty(),
            "nodes halted: {:?}",
            self.stats.halts
        );
        for (k, core) in self.honest().filter_map(|n| n.core.as_ref()).enumerate() {
            assert_eq!(
                core.consensus_internal_errors(),
                0,
                "honest node #{k}: the consensus driver refused inputs the engine checked"
            );
        }
        let honest: Vec<&NodeCore> = self.honest().filter_map(|n| n.core.as_ref()).collect();
        let first = honest[0].chain();
        let height = first.height();
        let reference = self
            .checker
            .root(height)
            .expect("committed height has a root");
        for (k, core) in honest.iter().enumerate() {
            let (a, b) = (first.state(), core.chain().state());
            let same_accounts = a.accounts().eq(b.accounts());
            let same_stakes = a.stakes().eq(b.stakes());
            assert!(
                same_accounts && same_stakes && core.chain().state_root() == reference,
                "honest node #{k} disagrees on balances or stakes at height {height}"
            );
        }
        let chain = self.checker.committed().map(|(_, h)| h).collect();
        Outcome {
            seed: self.scenario.seed,
            heights: self.nodes.iter().map(SimNode::chain_height).collect(),
            height: height.0,
            chain,
            block_times_ms: self.checker.block_times().collect(),
            trace: self.trace.0,
            elapsed_ms: self.now - START_MS,
            state: first.state().clone(),
            slashes: self.checker.slashes().to_vec(),
            stats: self.stats.clone(),
            transfers_signed: self.clients.submitted(),
            mempools: self
                .nodes
                .iter()
                .map(|n| n.core.as_ref().map(NodeCore::mempool_len))
                .collect(),
            jobs_opened: self.clients.jobs_opened(),
            job_clocks: honest[0]
                .measurements()
                .jobs()
                .map(|(id, c)| (*id, c.clone()))
                .collect(),
            duty_stats: self
                .nodes
                .iter()
                .map(|n| n.core.as_ref().map(|c| c.duty_stats().clone()))
                .collect(),
            bases: self
                .nodes
                .iter()
                .map(|n| attest_core::store::Store::base_height(&n.store).0)
                .collect(),
            advert_books: self
                .nodes
                .iter()
                .map(|n| n.core.as_ref().map(|c| c.adverts().len()))
                .collect(),
            gateway_stats: self
                .nodes
                .iter()
                .map(|n| n.core.as_ref().map(|c| c.gateway_stats().clone()))
                .collect(),
        }
    }
}

/// Runs `scenario` to its end; panics with what went wrong on any violation.
pub fn run(scenario: Scenario) -> Outcome {
    Sim::new(scenario).run()
}
