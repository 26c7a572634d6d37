//! A binary Merkle tree over 32-byte leaves, with inclusion proofs.
//!
//! Leaves are already domain-separated hashes (a trace leaf, a transaction hash). An inner node
//! is `H("attest/merkle-node/v1", left || right)`. A level with an odd number of nodes promotes
//! its last node unchanged to the next level, so every level halves (rounding up) and a proof
//! holds at most `ceil(log2 L)` sibling hashes. The empty tree's root is
//! `H("attest/merkle-empty/v1", "")`. The leaf count is part of what a verifier must know:
//! results commit it next to the root (`step_count`).

use serde::{Deserialize, Serialize};

use crate::bounded::BoundedVec;
use crate::hash::{Hash, hash_tagged, tag};

/// The most sibling hashes a proof may hold: enough for 2^48 leaves.
pub const MAX_PROOF_DEPTH: usize = 48;

/// The hash of two children.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    hash_tagged(tag::MERKLE_NODE, &[&left.0, &right.0])
}

/// The root of a tree with no leaves.
pub fn empty_root() -> Hash {
    hash_tagged(tag::MERKLE_EMPTY, &[])
}

/// A tree with every level kept, to answer proofs.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves; the last level holds the root alone.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves`.
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().map_or(0, Vec::len) > 1 {
            let prev = levels.last().expect("loop condition: a level exists");
            levels.push(next_level(prev));
        }
        Self { levels }
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The leaves.
    pub fn leaves(&self) -> &[Hash] {
        &self.levels[0]
    }

    /// The root.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) if !self.is_empty() => *root,
            _ => empty_root(),
        }
    }

    /// The inclusion proof of leaf `index`, or `None` if there is no such leaf.
    pub fn prove(&self, index: u64) -> Option<MerkleProof> {
        let mut i = usize::try_from(index).ok()?;
        if i >= self.levels[0].len() {
            return None;
        }
        let mut siblings = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                siblings.push(level[sibling]);
            }
            i /= 2;
        }
        Some(MerkleProof {
            siblings: BoundedVec::new(siblings).expect("depth of a tree in memory is below 48"),
        })
    }
}

/// The root over `leaves` and the inclusion proof of the last leaf, in one pass over the
/// levels (what a provider commits; [`MerkleTree::new`] then [`MerkleTree::prove`] give the
/// same pair at the cost of keeping every level). `None` for no leaves.
pub fn root_and_last_proof(leaves: &[Hash]) -> Option<(Hash, MerkleProof)> {
    if leaves.is_empty() {
        return None;
    }
    let mut level = leaves.to_vec();
    let mut siblings = Vec::new();
    while level.len() > 1 {
        // The path node is the level's last; it has a sibling only when it is a right child.
        let last = level.len() - 1;
        if last % 2 == 1 {
            siblings.push(level[last - 1]);
        }
        level = next_level(&level);
    }
    let proof = MerkleProof {
        siblings: BoundedVec::new(siblings).ok()?,
    };
    Some((level[0], proof))
}

/// The root over `leaves`, without keeping the levels.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return empty_root();
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [lone] => *lone,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// The sibling hashes from a leaf up to the root, lowest first; levels where the path node
/// was promoted without a sibling contribute nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MerkleProof {
    /// The siblings, from the leaf's level upwards.
    pub siblings: BoundedVec<Hash, MAX_PROOF_DEPTH>,
}

impl MerkleProof {
    /// Whether this proves that `leaf` is leaf `index` of the `leaf_count`-leaf tree `root`.
    pub fn verify(&self, root: &Hash, leaf_count: u64, index: u64, leaf: &Hash) -> bool {
        if index >= leaf_count {
            return false;
        }
        let (mut i, mut width) = (index, leaf_count);
        let mut acc = *leaf;
        let mut siblings = self.siblings.iter();
        while width > 1 {
            let sibling = i ^ 1;
            if sibling < width {
                let Some(s) = siblings.next() else {
                    return false;
                };
                acc = if i % 2 == 0 {
                    node_hash(&acc, s)
                } else {
                    node_hash(s, &acc)
                };
            }
            i /= 2;
            width = width.div_ceil(2);
        }
        siblings.next().is_none() && acc == *root
    }
}
