//! A lossless, in-process network of `NodeCore`s on a virtual clock.
//!
//! Every node has a `MemStore`; effects are carried out in order through [`crate::host`]
//! (persist, then send);
//! broadcasts reach every other running node in the order they were sent; sync requests are
//! answered from the target's store. It is deterministic and does no I/O. Tests use it to
//! check agreement without faults, and the ledger benchmark uses it to measure what the core
//! can commit when the network costs nothing. (The seeded faulty-network simulator, with
//! delays, drops, partitions and Byzantine nodes, lives in the `attest-tests` crate.)

use std::collections::{BTreeMap, VecDeque};

use attest_contracts_sim::Params;
use attest_protocol::{Amount, BlockHash, ChainId, Height, SecretKey};

use attest_chain::GenesisFile;

use crate::host;
use crate::node::{CoreConfig, Effect, NodeCore, PeerKey};
use crate::store::{GenesisId, MemStore};
use crate::wire::ConsensusMessage;
use attest_protocol::Canonical;

/// The genesis time of every local network.
pub const GENESIS_MS: u64 = 1_700_000_000_000;

/// One node of the network.
#[derive(Debug)]
pub struct LocalNode {
    /// The core, `None` while crashed.
    pub core: Option<NodeCore>,
    /// What the node made durable.
    pub store: MemStore,
    /// Its validator account key.
    pub key: SecretKey,
    /// Every block it committed, by height.
    pub committed: BTreeMap<Height, BlockHash>,
}

/// The network.
#[derive(Debug)]
pub struct LocalNet {
    /// The chain's genesis.
    pub genesis: GenesisFile,
    /// The nodes, validators all.
    pub nodes: Vec<LocalNode>,
    /// Virtual time, ms since the epoch.
    pub now: u64,
    /// Client accounts funded at genesis.
    pub clients: Vec<SecretKey>,
    /// Deliver consensus votes as the node shell does: decoded and verified by the host, then
    /// handed to [`NodeCore::handle_checked_vote`]. Off by default: everything through
    /// [`NodeCore::handle_gossip`].
    pub host_checks_votes: bool,
    /// Nodes that halted (`Effect::Halt`) and why; a halted node is stopped.
    pub halts: Vec<(usize, String)>,
    /// When set, a copy of every message sent: gossip under its topic, requests under
    /// [`TAP_REQUEST`] and answers under [`TAP_RESPONSE`] (the fuzzers' seed corpus is drawn
    /// from it). Unbounded: set it only for a run of bounded length.
    pub tap: Option<Vec<(&'static str, Vec<u8>)>>,
    config: CoreConfig,
    queue: VecDeque<(usize, &'static str, Vec<u8>)>,
}

/// The [`LocalNet::tap`] name of a request between nodes.
pub const TAP_REQUEST: &str = "request";
/// The [`LocalNet::tap`] name of an answer to a request.
pub const TAP_RESPONSE: &str = "response";

/// A key from a fixed seed: `tag` says what for, `i` which one.
fn seeded(tag: u8, i: usize) -> SecretKey {
    let mut s = [tag; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SecretKey::from_seed(s)
}

/// Node `i`'s identity key, bound to its validator account at genesis.
pub fn node_key(i: usize) -> SecretKey {
    seeded(3, i)
}

/// A node's peer key in the local network: its PeerId bytes.
pub fn peer(i: usize) -> PeerKey {
    node_key(i).public().peer_id_bytes().to_vec()
}

impl LocalNet {
    /// `validators` equally staked validators and `clients` funded client accounts, all keys
    /// from fixed seeds; every node started.
    pub fn new(validators: usize, clients: usize, config: CoreConfig) -> Self {
        let seed = seeded;
        let keys: Vec<SecretKey> = (0..validators).map(|i| seed(1, i)).collect();
        let clients: Vec<SecretKey> = (0..clients).map(|i| seed(2, i)).collect();
        let funds = Amount::tokens(1_000_000).expect("fits");
        let mut balances: Vec<_> = keys.iter().map(|k| (k.public(), funds)).collect();
        balances.extend(clients.iter().map(|k| (k.public(), funds)));
        let stake = Amount::tokens(500).expect("fits");
        // Every local node binds a device that holds every catalogue model.
        let device = crate::accel::DeviceProfile::find("cpu")
            .expect("a catalogue profile")
            .capability();
        let stakes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.public(), node_key(i).public(), stake, device.clone()))
            .collect();
        let chain = ChainId::new("attest-local").expect("valid chain id");
        let genesis = GenesisFile::new(chain, GENESIS_MS, Params::default(), balances, stakes);
        let id = GenesisId {
            chain_id: genesis.genesis.chain_id.clone(),
            hash: genesis.hash(),
        };
        let nodes = keys
            .into_iter()
            .map(|key| LocalNode {
                core: None,
                store: MemStore::new(id.clone()),
                key,
                committed: BTreeMap::new(),
            })
            .collect();
        let mut net = Self {
            genesis,
            nodes,
            now: GENESIS_MS + 1_000,
            clients,
            config,
            queue: VecDeque::new(),
            host_checks_votes: false,
            halts: Vec::new(),
            tap: None,
        };
        for i in 0..validators {
            net.start(i);
        }
        net
    }

    /// Starts (or restarts) node `i` from its store.
    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let core = host::open(
            &self.genesis,
            Some(node.key.clone()),
            self.config.clone(),
            &node.store,
            self.now,
        )
        .expect("a node opens on its own store");
        node.core = Some(core);
    }

    /// A client's transaction handed to running node `i` at the network's current time.
    pub fn submit(
        &mut self,
        i: usize,
        tx: attest_protocol::SignedTx,
    ) -> Result<attest_protocol::TxHash, crate::mempool::AdmitError> {
        let now = self.now;
        let core = self.nodes[i].core.as_mut().expect("node is running");
        core.submit_tx(now, tx)
    }

    /// Stops node `i`; it keeps only what its store made durable.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].core = None;
    }

    /// The chain id.
    pub fn chain_id(&self) -> &ChainId {
        &self.genesis.genesis.chain_id
    }

    /// Carries out node `i`'s effects, in order.
    pub fn drain(&mut self, i: usize) {
        while let Some(effect) = self.nodes[i].core.as_mut().and_then(NodeCore::poll_effect) {
            match effect {
                Effect::Persist(what) => host::persist(&mut self.nodes[i].store, &what)
                    .expect("a memory store takes what its own node persists"),
                Effect::Broadcast { topic, data } => {
                    if let Some(tap) = &mut self.tap {
                        tap.push((topic, data.clone()));
                    }
                    self.queue.push_back((i, topic, data));
                }
                // The accelerator answers at once here: this network measures the ledger.
                Effect::RunJob(run) => {
                    let outcome = run.execute().map_err(|e| e.to_string());
                    let now = self.now;
                    if let Some(core) = self.nodes[i].core.as_mut() {
                        core.handle_job_done(now, run.job, run.purpose, outcome);
                    }
                }
                Effect::Request { peer: p, data } => self.answer_sync(i, p, &data),
                Effect::Halt { reason, .. } => {
                    // It stops, as the real node does.
                    self.halts.push((i, reason));
                    self.nodes[i].core = None;
                }
                Effect::Misbehaved { peer: p, reason } => {
                    // Every node here is honest; a peer from outside (a test's hostile
                    // sender) may well be reported.
                    let honest = (0..self.nodes.len()).any(|j| peer(j) == p);
                    assert!(
                        !honest,
                        "node {i}: honest peer {p:?} reported as misbehaving: {reason}"
                    );
                }
                Effect::Committed { height, hash, .. } => {
                    let previous = self.nodes[i].committed.insert(height, hash);
                    assert!(
                        previous.is_none() || previous == Some(hash),
                        "node {i} committed two blocks at {height}"
                    );
                }
            }
        }
    }

    fn answer_sync(&mut self, i: usize, p: PeerKey, data: &[u8]) {
        if let Some(tap) = &mut self.tap {
            tap.push((TAP_REQUEST, data.to_vec()));
        }
        let target = (0..self.nodes.len())
            .find(|&j| peer(j) == p)
            .unwrap_or(usize::MAX);
        let answer = self
            .nodes
            .get(target)
            .filter(|n| n.core.is_some())
            .and_then(|n| {
                n.core
                    .as_ref()
                    .and_then(|c| host::serve_request(c, &n.store, data))
            });
        if let (Some(tap), Some(answer)) = (&mut self.tap, &answer) {
            tap.push((TAP_RESPONSE, answer.clone()));
        }
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle_response(now, &p, answer.as_deref());
        }
    }

    /// One step: carry out every node's effects, then deliver one queued message to every
    /// other running node, or, with nothing queued, advance the clock to the next timer.
    pub fn step(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        if let Some((from, topic, data)) = self.queue.pop_front() {
            let now = self.now;
            for (to, node) in self.nodes.iter_mut().enumerate() {
                if to == from {
                    continue;
                }
                let Some(core) = node.core.as_mut() else {
                    continue;
                };
                let vote = match ConsensusMessage::decode(&data) {
                    Ok(ConsensusMessage::Vote(v))
                        if self.host_checks_votes && topic == crate::topic::CONSENSUS =>
                    {
                        Some(v)
                    }
                    _ => None,
                };
                if let Some(v) = vote {
                    let checked = v.verify(core.chain().chain_id());
                    core.handle_checked_vote(now, &peer(from), checked);
                } else {
                    core.handle_gossip(now, &peer(from), topic, &data);
                }
            }
            return;
        }
        let next = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref()?.poll_timeout())
            .min();
        if let Some(at) = next {
            self.now = self.now.max(at);
            let now = self.now;
            for node in &mut self.nodes {
                if let Some(core) = node.core.as_mut() {
                    core.handle_timeout(now);
                }
            }
        }
    }

    /// Steps until `done` holds (checked after effects are carried out), at most `max_steps`.
    /// Returns whether it held.
    pub fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&LocalNet) -> bool) -> bool {
        for _ in 0..max_steps {
            for i in 0..self.nodes.len() {
                self.drain(i);
            }
            if done(self) {
                return true;
            }
            self.step();
        }
        false
    }

    /// Each node's committed height (0 for a crashed node).
    pub fn heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.core.as_ref().map_or(0, |c| c.chain().height().0))
            .collect()
    }

    /// Panics if a node halted, unless every node committed the same block at every height it
    /// shares with the others, and the running nodes at the first node's height share its
    /// state root.
    pub fn assert_agreement(&self) {
        assert!(self.halts.is_empty(), "nodes halted: {:?}", self.halts);
        self.assert_no_fork();
    }

    /// Panics unless every node committed the same block at every height it shares with the
    /// others, and the running nodes at the first node's height share its state root (halted
    /// nodes allowed).
    pub fn assert_no_fork(&self) {
        let mut by_height: BTreeMap<Height, BlockHash> = BTreeMap::new();
        for node in &self.nodes {
            for (h, hash) in &node.committed {
                let seen = by_height.entry(*h).or_insert(*hash);
                assert_eq!(seen, hash, "two different blocks committed at height {h}");
            }
        }
        let running: Vec<&NodeCore> = self.nodes.iter().filter_map(|n| n.core.as_ref()).collect();
        if let Some(first) = running.first() {
            let h = first.chain().height();
            let roots: Vec<_> = running
                .iter()
                .filter(|c| c.chain().height() == h)
                .map(|c| c.chain().state_root())
                .collect();
            assert!(
                roots.windows(2).all(|w| w[0] == w[1]),
                "state roots differ at height {h}"
            );
        }
    }
}
