//! The state root, proofs of single entries, and snapshots of the whole live state.
//!
//! The root is the root of a sparse Merkle tree (`attest_protocol::smt`, specified in
//! `docs/PROTOCOL.md`) whose leaves are the state's entries: leaf key `Key::hash`, leaf value
//! `Entry::hash`. Writes mark their keys; computing the root rehashes those leaves and their
//! paths only, so a block costs what it touched.

use attest_protocol::Hash;
use attest_protocol::smt::{ProofError, SmtProof, SparseMerkleTree, verify};
use serde::{Deserialize, Serialize};

use super::State;
use super::keys::{Entry, EntryError, Key};

/// A proof that an entry has a value (or is absent) under a state root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProof {
    /// The entry's key.
    pub key: Key,
    /// The value's canonical bytes, or `None` for a proof of absence.
    pub value: Option<Vec<u8>>,
    /// The path from the root to the leaf.
    pub proof: SmtProof,
}

impl StateProof {
    /// Checks the proof against `root`: the value it carries is the entry's value under that
    /// root (or the entry is absent, for `value: None`). Returns the decoded entry.
    pub fn verify(&self, root: &Hash) -> Result<Option<Entry>, StateProofError> {
        let shown = verify(root, &self.key.hash(), &self.proof)?;
        let claimed = self
            .value
            .as_ref()
            .map(|bytes| Entry::from_bytes(&self.key, bytes))
            .transpose()?;
        match (&claimed, shown) {
            (None, None) => Ok(None),
            (Some(entry), Some(hash)) if entry.hash() == hash => Ok(claimed),
            (Some(_), Some(_)) => Err(StateProofError::ValueMismatch),
            (Some(_), None) => Err(StateProofError::ShowsAbsent),
            (None, Some(_)) => Err(StateProofError::ShowsPresent),
        }
    }
}

/// Why a state proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateProofError {
    /// The path does not lead to the root.
    #[error("the proof does not match the state root: {0}")]
    Path(#[from] ProofError),
    /// The value does not decode as its key's entry.
    #[error("{0}")]
    Entry(#[from] EntryError),
    /// The proof's leaf holds another value than the one claimed.
    #[error("the value does not match the leaf the proof leads to")]
    ValueMismatch,
    /// The proof shows the entry absent, but a value is claimed.
    #[error("the proof shows the entry absent, but a value is claimed")]
    ShowsAbsent,
    /// The proof shows a value, but absence is claimed.
    #[error("the proof shows a value, but the entry is claimed absent")]
    ShowsPresent,
}

/// Why a snapshot cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// An entry does not decode.
    #[error("{0}")]
    Entry(#[from] EntryError),
    /// The entries are not in strictly increasing key order (or repeat one).
    #[error("entry {index} is out of order")]
    Order {
        /// Its position.
        index: usize,
    },
    /// The meta entry is missing or not first.
    #[error("the snapshot has no meta entry first")]
    NoMeta,
    /// The entries do not hash to the expected root.
    #[error("the entries hash to {got}, expected state root {expected}")]
    Root {
        /// The root the snapshot must have.
        expected: Hash,
        /// What its entries give.
        got: Hash,
    },
}

impl State {
    /// The root of the state tree. Rehashes only the entries written since the last call.
    pub fn state_root(&mut self) -> Hash {
        for key in std::mem::take(&mut self.touched) {
            let leaf = key.hash();
            match self.entry_bytes(&key) {
                Some(bytes) => {
                    let value = Entry::value_hash(&bytes);
                    self.tree.insert(leaf, value);
                }
                None => {
                    self.tree.remove(&leaf);
                }
            }
        }
        self.tree.root()
    }

    /// A proof of the entry under `key` against the root last computed by
    /// [`State::state_root`] (a chain computes it at every commit, so this is its head's).
    pub fn prove(&self, key: Key) -> StateProof {
        debug_assert!(self.touched.is_empty(), "prove after state_root");
        StateProof {
            key,
            value: self.entry_bytes(&key),
            proof: self.tree.prove(&key.hash()),
        }
    }

    /// Every entry, in key order, as canonical bytes: what a snapshot holds.
    pub fn export(&self) -> impl Iterator<Item = (Key, Vec<u8>)> + '_ {
        let keys = std::iter::once(Key::Meta)
            .chain(std::iter::once(Key::Treasury))
            .chain(self.accounts.keys().map(|k| Key::Account(*k)))
            .chain(self.stakes.keys().map(|k| Key::Stake(*k)))
            .chain(self.nodes.keys().map(|k| Key::Node(*k)))
            .chain(self.records.keys().map(|k| Key::Record(*k)))
            .chain(self.jobs.keys().map(|k| Key::Job(*k)))
            .chain(self.timers.iter().map(|(h, j)| Key::Timer(*h, *j)))
            .chain(self.releases.iter().map(|(h, a)| Key::Release(*h, *a)))
            .chain(self.retire.iter().map(|(h, j)| Key::Retire(*h, *j)))
            .chain(
                self.evidence
                    .iter()
                    .map(|(h, a, r, k)| Key::Evidence(*h, *a, *r, *k)),
            );
        keys.filter_map(|k| self.entry_bytes(&k).map(|v| (k, v)))
    }

    /// Rebuilds a state from exported entries and checks it against `expected`, the state root
    /// committed at the snapshot's height. Nothing in a snapshot is trusted until its root
    /// matches.
    pub fn import(
        entries: impl IntoIterator<Item = (Key, Vec<u8>)>,
        expected: &Hash,
    ) -> Result<State, SnapshotError> {
        let mut entries = entries.into_iter();
        let meta = match entries.next() {
            Some((Key::Meta, bytes)) => match Entry::from_bytes(&Key::Meta, &bytes)? {
                Entry::Meta(m) => *m,
                _ => return Err(SnapshotError::NoMeta),
            },
            _ => return Err(SnapshotError::NoMeta),
        };
        let mut state = State::empty(meta);
        state.touched.clear();
        let mut leaves = vec![(Key::Meta.hash(), Entry::Meta(Box::new(state.meta())).hash())];
        let mut last = Key::Meta;
        for (index, (key, bytes)) in entries.enumerate() {
            if key <= last {
                return Err(SnapshotError::Order { index: index + 1 });
            }
            last = key;
            let entry = Entry::from_bytes(&key, &bytes)?;
            leaves.push((key.hash(), Entry::value_hash(&bytes)));
            state.write_raw(key, Some(entry));
        }
        state.touched.clear();
        leaves.sort_unstable();
        state.tree = SparseMerkleTree::from_leaves(leaves);
        let got = state.tree.root();
        if got != *expected {
            return Err(SnapshotError::Root {
                expected: *expected,
                got,
            });
        }
        Ok(state)
    }
}

impl Entry {
    /// The leaf value of an entry given its canonical bytes.
    pub fn value_hash(bytes: &[u8]) -> Hash {
        attest_protocol::hash::hash_tagged(attest_protocol::hash::tag::STATE_VALUE, &[bytes])
    }
}
