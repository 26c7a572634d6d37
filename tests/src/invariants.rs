//! The invariants checked after every step, and the reference chain they are checked against.
//!
//! This module owns the judgement of a run. A reference [`Chain`] (the oracle) applies the
//! first block committed at each height through `attest-contracts-sim`, which yields the
//! validator set of every height and the state root after it. Against it every node's work
//! is checked: one block per height across all nodes and the whole run; every certificate
//! verifies against its height's set (the oracle's; the committing node's own set, when the
//! simulator saw it, must be that same set); every node's state root and contract invariants
//! at each height it reaches; and no honest validator persists or sends two different votes
//! for one (height, round, kind), nor sends a vote it has not persisted. A violation panics
//! with what happened.

use std::collections::{BTreeMap, BTreeSet};

use attest_chain::Chain;
use attest_chain::GenesisFile;
use attest_chain::{ValidatorSet, verify_certificate};
use attest_protocol::{
    Block, BlockHash, ChainId, CommitCertificate, Hash, Height, PublicKey, Round, Signed, Vote,
    VoteKind,
};

type Slot = (Height, Round, VoteKind);

/// The invariant checker of one run.
#[derive(Debug)]
pub struct Checker {
    chain_id: ChainId,
    oracle: Chain,
    /// The validator set that decides each height.
    sets: BTreeMap<Height, ValidatorSet>,
    /// The block committed at each height, and the node that committed it first.
    committed: BTreeMap<Height, (BlockHash, usize)>,
    /// Each committed block's time (ms).
    times: BTreeMap<Height, u64>,
    /// The state root after each height.
    roots: BTreeMap<Height, Hash>,
    /// Certificates (by height and hash) already verified: nodes often assemble the same one.
    verified: BTreeSet<(Height, Hash)>,
    /// Each honest node's persisted votes (over all its incarnations); `None` for the others.
    votes: Vec<Option<BTreeMap<Slot, Signed<Vote>>>>,
    keys: Vec<PublicKey>,
    /// Every slash the committed blocks made, in order (the live state keeps only counts).
    slashes: Vec<(PublicKey, attest_contracts_sim::SlashReason)>,
}

impl Checker {
    /// A checker for nodes with validator keys `keys`; `honest[i]` says whether node `i`'s
    /// votes are held to the no-double-signing rule.
    pub fn new(genesis: &GenesisFile, keys: Vec<PublicKey>, honest: &[bool]) -> Self {
        let oracle = Chain::new(genesis).expect("the simulator's genesis is valid");
        let mut sets = BTreeMap::new();
        sets.insert(Height(1), oracle.validators().clone());
        let mut roots = BTreeMap::new();
        roots.insert(Height(0), oracle.state_root());
        Self {
            chain_id: genesis.genesis.chain_id.clone(),
            oracle,
            sets,
            committed: BTreeMap::new(),
            times: BTreeMap::new(),
            roots,
            verified: BTreeSet::new(),
            votes: honest.iter().map(|h| h.then(BTreeMap::new)).collect(),
            keys,
            slashes: Vec::new(),
        }
    }

    /// Every slash the committed blocks made, in order.
    pub fn slashes(&self) -> &[(PublicKey, attest_contracts_sim::SlashReason)] {
        &self.slashes
    }

    /// The reference chain.
    pub fn oracle(&self) -> &Chain {
        &self.oracle
    }

    /// The committed block hashes, by height.
    pub fn committed(&self) -> impl Iterator<Item = (Height, BlockHash)> + '_ {
        self.committed.iter().map(|(h, (hash, _))| (*h, *hash))
    }

    /// Each committed block's time (ms), heights 1 up.
    pub fn block_times(&self) -> impl Iterator<Item = u64> + '_ {
        self.times.values().copied()
    }

    /// The state root after `height`, once some node committed it.
    pub fn root(&self, height: Height) -> Option<Hash> {
        self.roots.get(&height).copied()
    }

    /// Node `node` persisted `block` with `cert`; `node_set` is the validator set its chain
    /// held for that height before committing, if the simulator saw it.
    pub fn on_persist_block(
        &mut self,
        node: usize,
        block: &Block,
        cert: &CommitCertificate,
        node_set: Option<&ValidatorSet>,
    ) {
        let height = block.header.height;
        let hash = block.hash();
        assert!(
            cert.height == height && cert.block == hash,
            "node {node} persisted block {height} ({hash}) with a certificate for {} ({})",
            cert.height,
            cert.block
        );
        match self.committed.get(&height) {
            Some((first, by)) if *first != hash => panic!(
                "SAFETY: two blocks committed at height {height}: {first} by node {by}, \
                 {hash} by node {node}"
            ),
            Some(_) => {}
            None => {
                self.committed.insert(height, (hash, node));
                self.times.insert(height, block.header.time_ms);
                self.advance_oracle(node, block, cert);
            }
        }
        let set = self
            .sets
            .get(&height)
            .unwrap_or_else(|| panic!("no validator set known for height {height}"));
        if self.verified.insert((height, cert.hash()))
            && let Err(e) = verify_certificate(&self.chain_id, set, cert)
        {
            panic!("node {node} committed block {height} with an invalid certificate: {e}");
        }
        if let Some(own) = node_set
            && own != set
        {
            panic!("node {node} held another validator set for height {height} than the reference");
        }
    }

    fn advance_oracle(&mut self, node: usize, block: &Block, cert: &CommitCertificate) {
        let height = block.header.height;
        assert_eq!(
            height,
            self.oracle.height().next(),
            "node {node} committed block {height} before any node committed the one below"
        );
        let applied = self
            .oracle
            .check_committed(block, cert)
            .unwrap_or_else(|e| {
                panic!(
                    "node {node} committed block {height}, which the reference chain refuses: {e}"
                )
            });
        if let Err(e) = self
            .oracle
            .state()
            .check_block(&applied.delta, &applied.events)
        {
            panic!("block {height} breaks a contract invariant: {e:?}");
        }
        for e in &applied.events {
            if let attest_contracts_sim::Event::Slashed { who, reason, .. } = e {
                self.slashes.push((*who, reason.clone()));
            }
        }
        self.oracle
            .commit(block, cert.clone(), applied)
            .unwrap_or_else(|e| panic!("after block {height} no validators are left: {e}"));
        if let Err(e) = self.oracle.state().check_invariants() {
            panic!("contract invariant broken after block {height}: {e:?}");
        }
        self.roots.insert(height, self.oracle.state_root());
        self.sets
            .insert(height.next(), self.oracle.validators().clone());
    }

    /// Node `node` announced a commit of `hash` at `height`.
    pub fn on_committed(&self, node: usize, height: Height, hash: BlockHash) {
        match self.committed.get(&height) {
            Some((first, _)) if *first == hash => {}
            other => panic!(
                "node {node} announced block {height} = {hash}, but the committed one is {other:?}"
            ),
        }
    }

    /// Node `node`'s chain reached `height` with state root `root`; its contract state's own
    /// invariants were checked by the caller.
    pub fn on_height(&self, node: usize, height: Height, root: Hash) {
        match self.roots.get(&height) {
            Some(r) if *r == root => {}
            Some(r) => panic!(
                "node {node} has state root {root} at height {height}, the reference has {r}"
            ),
            None => panic!("node {node} is at height {height}, which nobody committed"),
        }
    }

    /// Node `node` persisted its own vote `vote`.
    pub fn on_persist_vote(&mut self, node: usize, vote: &Signed<Vote>) {
        assert_eq!(
            vote.signer, self.keys[node],
            "node {node} persisted a vote signed by another key"
        );
        let Some(votes) = self.votes[node].as_mut() else {
            return;
        };
        let v = &vote.body;
        let slot = (v.height, v.round, v.kind);
        if let Some(prev) = votes.get(&slot)
            && prev != vote
        {
            panic!(
                "SAFETY: honest node {node} persisted two votes for height {} round {} {:?}: \
                 {:?} then {:?}",
                v.height, v.round, v.kind, prev.body.block, v.block
            );
        }
        votes.insert(slot, vote.clone());
    }

    /// Node `node` is sending `vote`: an honest node sends only its own votes it persisted.
    pub fn on_send_vote(&self, node: usize, vote: &Signed<Vote>) {
        let Some(votes) = self.votes[node].as_ref() else {
            return;
        };
        if vote.signer != self.keys[node] {
            return;
        }
        let v = &vote.body;
        match votes.get(&(v.height, v.round, v.kind)) {
            Some(p) if p == vote => {}
            Some(p) => panic!(
                "SAFETY: honest node {node} sends a vote at {} round {} {:?} for {:?}, \
                 having persisted one for {:?}",
                v.height, v.round, v.kind, v.block, p.body.block
            ),
            None => panic!(
                "honest node {node} sends a vote at {} round {} {:?} it never persisted",
                v.height, v.round, v.kind
            ),
        }
    }
}
