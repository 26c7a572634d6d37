//! Several `Consensus` instances in one process, connected by a deterministic in-memory router
//! (a queue delivered in an order drawn from a seeded xorshift) and a virtual clock.
//!
//! Checked: identical decisions with valid certificates, progress with one validator crashed,
//! no progress when the crashed validator holds more than a third of the stake, and that a
//! validator restarted from its write-ahead log never signs two different votes for one slot.

use std::collections::{BTreeMap, VecDeque};

use attest_chain::{ValidatorSet, verify_certificate};
use attest_consensus::{
    BlockValidity, Consensus, ConsensusConfig, Input, Output, OwnMessage, PolkaCert, TimeoutConfig,
    TimeoutId,
};
use attest_protocol::tx::EquivocationEvidence;
use attest_protocol::{
    Amount, Block, BlockHash, BlockHeader, BoundedVec, ChainId, CommitCertificate, Hash, Height,
    Proposal, Round, SecretKey, Signed, Vote, VoteKind,
};

/// A tiny xorshift64: the router's only source of "randomness", so every run replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone)]
enum Msg {
    Vote(Signed<Vote>),
    Proposal(Box<Signed<Proposal>>),
    Polka(Box<PolkaCert>),
}

struct Node {
    key: SecretKey,
    cons: Consensus,
    /// The write-ahead log: our own messages, appended before they are sent.
    wal: Vec<OwnMessage>,
    /// The "store": decided blocks and certificates, kept across restarts.
    chain: BTreeMap<u64, (Block, CommitCertificate)>,
    timers: Vec<(u64, TimeoutId)>,
    up: bool,
    /// Every vote this validator ever sent, across restarts, per slot.
    said: BTreeMap<(Height, Round, VoteKind), Vote>,
    self_conflicts: usize,
    /// Votes sent again from the log after a restart.
    resent: usize,
    evidence: Vec<EquivocationEvidence>,
}

impl Node {
    fn note_vote(&mut self, v: &Signed<Vote>) {
        let slot = (v.body.height, v.body.round, v.body.kind);
        match self.said.get(&slot) {
            Some(prev) if *prev != v.body => self.self_conflicts += 1,
            Some(_) => {}
            None => {
                self.said.insert(slot, v.body.clone());
            }
        }
    }
}

struct Sim {
    chain_id: ChainId,
    validators: ValidatorSet,
    nodes: Vec<Node>,
    inflight: Vec<(usize, Msg)>,
    now_ms: u64,
    rng: Rng,
    target: u64,
    /// Every message broadcast, for a listener that follows without a key.
    tap: Vec<Msg>,
    /// Percent of deliveries dropped, and percent duplicated. With losses, idle nodes
    /// re-broadcast their own messages once per timer, as a host would on a timer.
    drop_pct: u64,
    dup_pct: u64,
    rebroadcast_done: bool,
    /// A validator that sends, next to each of its votes, a conflicting one.
    double_voter: Option<usize>,
}

fn config(chain_id: &ChainId) -> ConsensusConfig {
    ConsensusConfig {
        chain_id: chain_id.clone(),
        timeouts: TimeoutConfig::default(),
    }
}

impl Sim {
    fn new(stakes: &[u64], seed: u64, target: u64) -> Self {
        let chain_id = ChainId::new("attest-test").expect("valid chain id");
        let keys: Vec<SecretKey> = (0..stakes.len())
            .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
            .collect();
        let validators = ValidatorSet::new(
            keys.iter()
                .zip(stakes)
                .map(|(k, s)| (k.public(), Amount(*s))),
        )
        .expect("valid validator set");
        let nodes = keys
            .into_iter()
            .map(|key| Node {
                cons: Consensus::new(config(&chain_id), Some(key.clone()), []).expect("empty WAL"),
                key,
                wal: Vec::new(),
                chain: BTreeMap::new(),
                timers: Vec::new(),
                up: true,
                said: BTreeMap::new(),
                self_conflicts: 0,
                resent: 0,
                evidence: Vec::new(),
            })
            .collect();
        let mut sim = Self {
            chain_id,
            validators,
            nodes,
            inflight: Vec::new(),
            now_ms: 0,
            rng: Rng(seed.max(1)),
            target,
            tap: Vec::new(),
            drop_pct: 0,
            dup_pct: 0,
            rebroadcast_done: false,
            double_voter: None,
        };
        for i in 0..sim.nodes.len() {
            sim.start(i, Height(1));
        }
        sim
    }

    fn start(&mut self, i: usize, height: Height) {
        let validators = self.validators.clone();
        self.apply(i, Input::StartHeight { height, validators });
    }

    /// Feeds one input to node `i` and carries out the outputs, as a host would.
    fn apply(&mut self, i: usize, input: Input) {
        let mut work = VecDeque::from([input]);
        while let Some(next) = work.pop_front() {
            // Rejections are expected (late votes for a decided height) and change nothing.
            let Ok(outputs) = self.nodes[i].cons.handle(next) else {
                continue;
            };
            for o in outputs {
                self.effect(i, o, &mut work);
            }
        }
    }

    fn effect(&mut self, i: usize, o: Output, work: &mut VecDeque<Input>) {
        match o {
            Output::PersistAndBroadcastVote(v) => {
                self.nodes[i].wal.push(OwnMessage::Vote(v.clone()));
                self.nodes[i].note_vote(&v);
                if self.double_voter == Some(i) {
                    let mut body = v.body.clone();
                    body.block = match body.block {
                        Some(_) => None,
                        None => Some(BlockHash([9; 32])),
                    };
                    let other = Signed::sign(&self.chain_id, &self.nodes[i].key, body);
                    self.broadcast(i, Msg::Vote(other));
                }
                self.broadcast(i, Msg::Vote(v));
            }
            Output::BroadcastVote(v) => {
                self.nodes[i].resent += 1;
                self.nodes[i].note_vote(&v);
                self.broadcast(i, Msg::Vote(v));
            }
            Output::PersistAndBroadcastProposal(p) => {
                self.nodes[i]
                    .wal
                    .push(OwnMessage::Proposal(Box::new(p.clone())));
                self.broadcast(i, Msg::Proposal(Box::new(p)));
            }
            Output::BroadcastProposal(p) => self.broadcast(i, Msg::Proposal(Box::new(p))),
            Output::PersistLock(l) => self.nodes[i].wal.push(OwnMessage::Lock(l)),
            Output::BroadcastPolka(c) => self.broadcast(i, Msg::Polka(c)),
            Output::ScheduleTimeout { id, duration } => {
                let at = self.now_ms + duration.as_millis() as u64;
                self.nodes[i].timers.push((at, id));
            }
            Output::GetValue { height, round, .. } => {
                let block = self.build_block(i, height, round);
                work.push_back(Input::ProposeValue {
                    height,
                    round,
                    block,
                });
            }
            Output::Decided { block, certificate } => {
                self.commit(i, block, certificate, work);
            }
            Output::Equivocation(e) => self.nodes[i].evidence.push(e),
            Output::RecheckProposal(p) => {
                let validity = self.judge(i, &p.body.block);
                work.push_back(Input::Proposal {
                    proposal: p,
                    validity,
                });
            }
        }
    }

    fn commit(&mut self, i: usize, block: Block, cert: CommitCertificate, w: &mut VecDeque<Input>) {
        verify_certificate(&self.chain_id, &self.validators, &cert).expect("valid certificate");
        assert_eq!(cert.block, block.hash());
        let h = block.header.height;
        assert!(self.nodes[i].chain.insert(h.0, (block, cert)).is_none());
        if h.0 < self.target {
            w.push_back(Input::StartHeight {
                height: h.next(),
                validators: self.validators.clone(),
            });
        }
    }

    fn build_block(&self, i: usize, height: Height, round: Round) -> Block {
        let node = &self.nodes[i];
        let (prev, last) = match node.chain.get(&(height.0 - 1)) {
            Some((b, c)) => (b.hash(), Some(c.clone())),
            None => (BlockHash::default(), None),
        };
        Block {
            header: BlockHeader {
                chain_id: self.chain_id.clone(),
                height,
                prev,
                proposer: node.key.public(),
                time_ms: height.0 * 1000 + u64::from(round.0),
                tx_root: Block::tx_root(&[]),
                state_root: Hash::default(),
                last_commit: Block::last_commit_hash(last.as_ref()),
            },
            txs: BoundedVec::default(),
            last_commit: last,
        }
    }

    /// The host's check of a block against its chain: it must extend our last block.
    fn judge(&self, i: usize, block: &Block) -> BlockValidity {
        let h = block.header.height.0;
        let prev = match self.nodes[i].chain.get(&(h - 1)) {
            Some((b, _)) => b.hash(),
            None if h == 1 => BlockHash::default(),
            None => return BlockValidity::Invalid,
        };
        if block.header.prev == prev {
            BlockValidity::Valid
        } else {
            BlockValidity::Invalid
        }
    }

    fn broadcast(&mut self, from: usize, msg: Msg) {
        if !self.nodes[from].up {
            return;
        }
        self.tap.push(msg.clone());
        for j in 0..self.nodes.len() {
            if j != from {
                self.inflight.push((j, msg.clone()));
            }
        }
    }

    /// One step: deliver a message in seeded order, or, when none is in flight, catch up
    /// laggards (as sync would) and advance the clock to the next timer. `false` when idle.
    fn step(&mut self) -> bool {
        if !self.inflight.is_empty() {
            let k = self.rng.below(self.inflight.len());
            let (to, msg) = self.inflight.swap_remove(k);
            if !self.nodes[to].up || self.rng.next() % 100 < self.drop_pct {
                return true;
            }
            if self.rng.next() % 100 < self.dup_pct {
                self.inflight.push((to, msg.clone()));
            }
            let input = match msg {
                Msg::Vote(v) => Input::Vote(v),
                Msg::Polka(c) => Input::Polka(c),
                Msg::Proposal(p) => {
                    let validity = self.judge(to, &p.body.block);
                    Input::Proposal {
                        proposal: *p,
                        validity,
                    }
                }
            };
            self.apply(to, input);
            return true;
        }
        self.sync_laggards();
        if self.drop_pct > 0 && !self.rebroadcast_done {
            self.rebroadcast_done = true;
            for i in 0..self.nodes.len() {
                for m in self.nodes[i].cons.own_messages() {
                    let msg = match m {
                        OwnMessage::Vote(v) => Msg::Vote(v),
                        OwnMessage::Proposal(p) => Msg::Proposal(p),
                        OwnMessage::Lock(_) => continue,
                    };
                    self.broadcast(i, msg);
                }
            }
            return true;
        }
        self.rebroadcast_done = false;
        self.fire_next_timer()
    }

    fn sync_laggards(&mut self) {
        for i in 0..self.nodes.len() {
            while self.nodes[i].up {
                let Some(h) = self.nodes[i].cons.height() else {
                    break;
                };
                let found = self
                    .nodes
                    .iter()
                    .find_map(|n| n.chain.get(&h.0).cloned())
                    .filter(|_| !self.nodes[i].chain.contains_key(&h.0));
                let Some((block, cert)) = found else { break };
                let mut work = VecDeque::new();
                self.commit(i, block, cert, &mut work);
                for input in work {
                    self.apply(i, input);
                }
                if h.0 >= self.target {
                    break;
                }
            }
        }
    }

    fn fire_next_timer(&mut self) -> bool {
        let next = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.up)
            .flat_map(|(i, n)| n.timers.iter().enumerate().map(move |(k, t)| (t.0, i, k)))
            .min();
        let Some((at, i, k)) = next else {
            return false;
        };
        self.now_ms = self.now_ms.max(at);
        let (_, id) = self.nodes[i].timers.swap_remove(k);
        self.apply(i, Input::TimeoutElapsed(id));
        true
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].timers.clear();
    }

    /// Restarts node `i` from its write-ahead log and store.
    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.cons = Consensus::new(
            config(&self.chain_id),
            Some(node.key.clone()),
            node.wal.clone(),
        )
        .expect("own WAL restores");
        node.up = true;
        let height = Height(node.chain.keys().max().map_or(1, |h| h + 1));
        self.start(i, height);
    }

    fn done(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .all(|n| n.chain.contains_key(&self.target))
    }

    fn run(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if self.done() || !self.step() {
                return;
            }
        }
    }

    /// Every pair of nodes agrees on every height both decided; every certificate verifies.
    fn check_agreement(&self) {
        let mut first: BTreeMap<u64, BlockHash> = BTreeMap::new();
        for n in &self.nodes {
            for (h, (b, c)) in &n.chain {
                verify_certificate(&self.chain_id, &self.validators, c).expect("valid cert");
                let hash = *first.entry(*h).or_insert(b.hash());
                assert_eq!(hash, b.hash(), "two different blocks decided at height {h}");
            }
            assert_eq!(
                n.self_conflicts, 0,
                "a validator signed two different votes"
            );
            assert_eq!(
                n.cons.internal_errors(),
                0,
                "the driver refused our own input"
            );
        }
    }

    fn decided_by(&self, i: usize) -> usize {
        self.nodes[i].chain.len()
    }
}

#[test]
fn four_validators_decide_twenty_identical_heights() {
    for seed in 1..=10 {
        let mut sim = Sim::new(&[10, 10, 10, 10], seed, 20);
        sim.run(200_000);
        sim.check_agreement();
        for i in 0..4 {
            assert_eq!(
                sim.decided_by(i),
                20,
                "seed {seed}: node {i} decided too little"
            );
        }
        // Each block extends the previous one and carries a certificate for it (the
        // proposer's, which may hold other precommits than ours: any quorum proves it).
        let chain = &sim.nodes[0].chain;
        for h in 2..=20u64 {
            let (b, _) = &chain[&h];
            let (prev, _) = &chain[&(h - 1)];
            assert_eq!(b.header.prev, prev.hash());
            let cert = b.last_commit.as_ref().expect("a certificate");
            assert_eq!(cert.block, prev.hash());
            verify_certificate(&sim.chain_id, &sim.validators, cert).expect("valid cert");
        }
        assert!(sim.nodes.iter().all(|n| n.evidence.is_empty()));
        // Without restarts our restored-lock rule and slot rule agree with the driver's own.
        for n in &sim.nodes {
            assert_eq!(n.cons.lock_overrides(), 0);
            assert_eq!(n.cons.refused_conflicting_votes(), 0);
        }
    }
}

#[test]
fn three_of_four_keep_deciding_with_one_crashed() {
    for seed in [3, 99] {
        let mut sim = Sim::new(&[10, 10, 10, 10], seed, 12);
        sim.crash(2);
        sim.run(400_000);
        sim.check_agreement();
        for i in [0, 1, 3] {
            assert_eq!(sim.decided_by(i), 12, "seed {seed}: node {i}");
        }
        assert_eq!(sim.decided_by(2), 0);
        // The crashed validator's turns as proposer cost a round each: some height needed
        // round 1 or later.
        let later_rounds = sim.nodes[0]
            .chain
            .values()
            .filter(|(_, c)| c.round > Round(0))
            .count();
        assert!(later_rounds > 0);
    }
}

#[test]
fn lossy_duplicating_network_still_decides_with_rebroadcast() {
    for seed in [41, 42, 43] {
        let mut sim = Sim::new(&[10, 20, 30, 40], seed, 8);
        sim.drop_pct = 20;
        sim.dup_pct = 20;
        sim.run(400_000);
        sim.check_agreement();
        for i in 0..4 {
            assert_eq!(sim.decided_by(i), 8, "seed {seed}: node {i}");
        }
    }
}

#[test]
fn a_double_voting_validator_is_reported_and_consensus_holds() {
    let mut sim = Sim::new(&[10, 10, 10, 10], 77, 6);
    sim.double_voter = Some(1);
    sim.run(400_000);
    sim.check_agreement();
    let culprit = sim.nodes[1].key.public();
    for i in [0, 2, 3] {
        assert_eq!(sim.decided_by(i), 6, "node {i}");
        let evidence = &sim.nodes[i].evidence;
        assert!(!evidence.is_empty(), "node {i} saw no equivocation");
        // At most once per height, all against the culprit, all checkable.
        let heights: std::collections::BTreeSet<_> =
            evidence.iter().map(|e| e.first.body.height).collect();
        assert_eq!(heights.len(), evidence.len());
        for e in evidence {
            assert!(e.is_conflicting());
            assert_eq!(e.first.signer, culprit);
            e.first.check(&sim.chain_id).expect("first signature");
            e.second.check(&sim.chain_id).expect("second signature");
        }
    }
}

#[test]
fn no_decision_when_more_than_a_third_of_stake_is_crashed() {
    // Stakes 1, 1, 1, 2: the last validator holds 2/5 > 1/3, so the other three hold 3/5,
    // which is not more than 2/3.
    let mut sim = Sim::new(&[1, 1, 1, 2], 5, 3);
    let heavy = sim
        .nodes
        .iter()
        .position(|n| sim.validators.get(&n.key.public()).map(|v| v.power()) == Some(2))
        .expect("the heavy validator");
    sim.crash(heavy);
    sim.run(20_000);
    for i in 0..4 {
        assert_eq!(sim.decided_by(i), 0, "node {i} decided without a quorum");
    }
    // The others are alive, just not live: they prevoted (nil, on the propose timeout), but
    // 3/5 of the stake is no quorum for anything, so no further timeout is even scheduled.
    for i in (0..4).filter(|i| *i != heavy) {
        let prevoted = sim.nodes[i]
            .wal
            .iter()
            .any(|m| matches!(m, OwnMessage::Vote(v) if v.body.kind == VoteKind::Prevote));
        assert!(prevoted, "node {i} never voted");
        assert_eq!(sim.nodes[i].cons.round(), Some(Round(0)));
    }
}

#[test]
fn restart_from_the_wal_never_signs_a_conflicting_vote() {
    let mut resent = 0;
    let mut refused = 0;
    for seed in [11, 12, 13, 14, 15, 16] {
        let mut sim = Sim::new(&[10, 10, 10, 10], seed, 10);
        // Crash each validator in turn at a seed-dependent point mid-height, then restart it
        // from its log, at once or after the others moved on.
        let mut rng = Rng(seed * 7 + 1);
        for victim in 0..4 {
            for _ in 0..(20 + rng.below(60)) {
                sim.step();
            }
            sim.crash(victim);
            let downtime = rng.below(40);
            for _ in 0..downtime {
                sim.step();
            }
            sim.restart(victim);
        }
        sim.run(400_000);
        sim.check_agreement();
        for i in 0..4 {
            assert_eq!(sim.decided_by(i), 10, "seed {seed}: node {i}");
            refused += sim.nodes[i].cons.refused_conflicting_votes();
        }
        resent += sim.nodes.iter().map(|n| n.resent).sum::<usize>();
    }
    // The scenario is not vacuous: restarts did find votes of their height in the log.
    assert!(resent > 0);
    eprintln!("restarts: {resent} logged votes re-sent, {refused} conflicting requests refused");
}

#[test]
fn a_follower_without_a_key_decides_the_same_blocks() {
    let mut sim = Sim::new(&[10, 10, 10, 10], 21, 5);
    let mut follower = Consensus::new(config(&sim.chain_id), None, []).expect("no WAL");
    let mut outs = follower
        .handle(Input::StartHeight {
            height: Height(1),
            validators: sim.validators.clone(),
        })
        .expect("starts");
    // Tap everything node 0 receives: the follower sees what a listener on gossip would.
    let mut decided = Vec::new();
    while !sim.done() {
        for msg in std::mem::take(&mut sim.tap) {
            let input = match msg {
                Msg::Vote(v) => Input::Vote(v),
                Msg::Polka(c) => Input::Polka(c),
                Msg::Proposal(p) => Input::Proposal {
                    proposal: *p,
                    validity: BlockValidity::Valid,
                },
            };
            outs.extend(follower.handle(input).unwrap_or_default());
        }
        assert!(sim.step());
        for o in std::mem::take(&mut outs) {
            match o {
                Output::Decided { block, .. } => {
                    decided.push(block.hash());
                    outs.extend(
                        follower
                            .handle(Input::StartHeight {
                                height: block.header.height.next(),
                                validators: sim.validators.clone(),
                            })
                            .expect("next height"),
                    );
                }
                Output::PersistAndBroadcastVote(_) | Output::PersistAndBroadcastProposal(_) => {
                    panic!("a follower signed something")
                }
                _ => {}
            }
        }
    }
    let expected: Vec<BlockHash> = sim.nodes[0].chain.values().map(|(b, _)| b.hash()).collect();
    assert!(!decided.is_empty());
    assert_eq!(decided[..], expected[..decided.len()]);
}
