//! Several `NodeCore`s on a virtual clock and a lossless in-memory network: they agree on
//! every block, commit transfers, keep going with one node down, and a restarted node
//! replays its store and syncs back. (The seeded faulty-network simulator lives in `tests/`.)

use std::collections::{BTreeMap, VecDeque};

use attest_contracts_sim::Params;
use attest_node::core::{CoreConfig, Effect, NodeCore, PeerKey};
use attest_node::genesis::GenesisFile;
use attest_node::store::{GenesisId, MemStore, Store};
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::{Amount, BlockHash, ChainId, Height, Nonce, SecretKey, Signed};

const GENESIS_MS: u64 = 1_700_000_000_000;

struct Node {
    core: Option<NodeCore>,
    store: MemStore,
    key: SecretKey,
    committed: BTreeMap<Height, BlockHash>,
}

struct Net {
    genesis: GenesisFile,
    nodes: Vec<Node>,
    now: u64,
    queue: VecDeque<(usize, &'static str, Vec<u8>)>,
}

fn peer(i: usize) -> PeerKey {
    vec![i as u8]
}

impl Net {
    fn new(n: usize) -> (Self, SecretKey) {
        let client = SecretKey::from_seed([200; 32]);
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
            .collect();
        let mut balances: Vec<_> = keys
            .iter()
            .map(|k| (k.public(), Amount::tokens(1_000).unwrap()))
            .collect();
        balances.push((client.public(), Amount::tokens(1_000).unwrap()));
        let stakes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let node = SecretKey::from_seed([i as u8 + 100; 32]).public();
                (k.public(), node, Amount::tokens(500).unwrap())
            })
            .collect();
        let chain = ChainId::new("attest-core-test").unwrap();
        let genesis = GenesisFile::new(chain, GENESIS_MS, Params::default(), balances, stakes);
        let id = GenesisId {
            chain_id: genesis.genesis.chain_id.clone(),
            hash: genesis.hash(),
        };
        let mut net = Self {
            genesis,
            nodes: Vec::new(),
            now: GENESIS_MS + 1_000,
            queue: VecDeque::new(),
        };
        for key in keys {
            net.nodes.push(Node {
                core: None,
                store: MemStore::new(id.clone()),
                key,
                committed: BTreeMap::new(),
            });
        }
        for i in 0..n {
            net.start(i);
        }
        (net, client)
    }

    fn config() -> CoreConfig {
        CoreConfig {
            idle_block_interval_ms: 200,
            ..CoreConfig::default()
        }
    }

    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let core = NodeCore::open(
            &self.genesis,
            Some(node.key.clone()),
            Self::config(),
            &node.store,
            self.now,
        )
        .expect("node opens");
        node.core = Some(core);
    }

    /// Carries out node `i`'s effects.
    fn drain(&mut self, i: usize) {
        while let Some(effect) = self.nodes[i].core.as_mut().and_then(NodeCore::poll_effect) {
            match effect {
                Effect::PersistVote(v) => self.nodes[i].store.record_own_vote(&v).unwrap(),
                Effect::PersistBlock(b) => self.nodes[i].store.put_block(&b.0, &b.1).unwrap(),
                Effect::Broadcast { topic, data } => self.queue.push_back((i, topic, data)),
                Effect::Request { peer: p, data } => {
                    let target = p[0] as usize;
                    let answer = self.nodes[target]
                        .core
                        .as_ref()
                        .and_then(|_| NodeCore::serve_sync(&self.nodes[target].store, &data));
                    let now = self.now;
                    if let Some(core) = self.nodes[i].core.as_mut() {
                        core.handle_sync_response(now, &p, answer.as_deref());
                    }
                }
                Effect::Committed { height, hash, .. } => {
                    let previous = self.nodes[i].committed.insert(height, hash);
                    assert!(
                        previous.is_none() || previous == Some(hash),
                        "node {i} recommitted {height}"
                    );
                }
            }
        }
    }

    /// One step: deliver everything queued, or else advance the clock to the next timer.
    fn step(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        if let Some((from, topic, data)) = self.queue.pop_front() {
            for to in 0..self.nodes.len() {
                if to == from {
                    continue;
                }
                let now = self.now;
                if let Some(core) = self.nodes[to].core.as_mut() {
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

    fn run_until(&mut self, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..200_000 {
            // Effects first, so what `done` sees has been persisted.
            for i in 0..self.nodes.len() {
                self.drain(i);
            }
            if done(self) {
                return;
            }
            self.step();
        }
        panic!("did not converge; heights {:?}", self.heights());
    }

    fn heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.core.as_ref().map_or(0, |c| c.chain().height().0))
            .collect()
    }

    fn assert_agreement(&self) {
        let mut by_height: BTreeMap<Height, BlockHash> = BTreeMap::new();
        for node in &self.nodes {
            for (h, hash) in &node.committed {
                let seen = by_height.entry(*h).or_insert(*hash);
                assert_eq!(seen, hash, "two different blocks committed at height {h}");
            }
        }
        let roots: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref())
            .filter(|c| c.chain().height() == self.nodes[0].core.as_ref().unwrap().chain().height())
            .map(|c| c.chain().state_root())
            .collect();
        assert!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "state roots differ at one height"
        );
    }
}

fn transfer(client: &SecretKey, chain: &ChainId, nonce: u64) -> Signed<Tx> {
    let to = SecretKey::from_seed([201; 32]).public();
    let tx = Tx {
        nonce: Nonce(nonce),
        fee: Params::default().min_fee,
        action: Action::Transfer(Transfer {
            to,
            amount: Amount(1_000_000),
        }),
    };
    Signed::sign(chain, client, tx)
}

#[test]
fn four_validators_commit_transfers_and_agree() {
    let (mut net, client) = Net::new(4);
    let chain = net.genesis.genesis.chain_id.clone();
    for nonce in 0..20 {
        let now = net.now;
        let tx = transfer(&client, &chain, nonce);
        net.nodes[0]
            .core
            .as_mut()
            .unwrap()
            .submit_tx(now, tx)
            .expect("admitted");
    }
    let recipient = SecretKey::from_seed([201; 32]).public();
    net.run_until(|net| {
        net.nodes.iter().all(|n| {
            let c = n.core.as_ref().unwrap();
            c.chain().state().account(&recipient).balance == Amount(20_000_000)
                && c.mempool_len() == 0
        }) && net.heights().iter().all(|h| *h >= 5)
    });
    net.assert_agreement();
    for node in &net.nodes {
        let state = node.core.as_ref().unwrap().chain().state();
        assert_eq!(state.account(&client.public()).nonce, Nonce(20));
        state.check_invariants().expect("invariants hold");
        assert_eq!(
            node.store.latest_height(),
            node.core.as_ref().unwrap().chain().height()
        );
    }
}

#[test]
fn three_of_four_keep_going_and_a_restarted_node_catches_up() {
    let (mut net, _) = Net::new(4);
    net.run_until(|net| net.heights().iter().all(|h| *h >= 3));
    // Node 3 crashes: it keeps only what its store made durable.
    net.nodes[3].core = None;
    let crashed_at = net.nodes[3].store.latest_height();
    net.run_until(|net| net.heights()[..3].iter().all(|h| *h >= crashed_at.0 + 8));
    net.assert_agreement();

    net.start(3);
    assert_eq!(
        net.nodes[3].core.as_ref().unwrap().chain().height(),
        crashed_at,
        "replayed its store"
    );
    let target = net.heights()[0] + 3;
    net.run_until(|net| net.heights().iter().all(|h| *h >= target));
    net.assert_agreement();
    let hashes: Vec<_> = net
        .nodes
        .iter()
        .map(|n| n.committed.get(&Height(target)).copied())
        .collect();
    assert!(
        hashes.iter().all(|h| h.is_some() && *h == hashes[0]),
        "all four agree at {target}"
    );
}
