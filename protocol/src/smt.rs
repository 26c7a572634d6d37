//! A sparse Merkle tree over 32-byte keys, with an incremental root and proofs of presence
//! and absence. It authenticates the ledger state (`docs/PROTOCOL.md`, section 6a).
//!
//! A key's bits, most significant bit of byte 0 first, are its path: 0 goes left, 1 right.
//! The hash of a subtree (the leaves whose keys start with one prefix) is
//! - [`EMPTY`] (32 zero bytes) with no leaf;
//! - `H("attest/smt-leaf/v1", key || value)` with exactly one leaf: a leaf sits at the
//!   highest level where it is alone, so paths are about `log2 n` long, not 256;
//! - `H("attest/smt-node/v1", left || right)` with two or more.
//!
//! The tree caches the hash of every subtree with two or more leaves. A write drops the
//! cached hashes on its key's path, down to the depth where the key parts from its
//! neighbours, and [`SparseMerkleTree::root`] rehashes only those: a batch of `k` writes into
//! `n` leaves costs `O(k log n)` hashes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, hash_tagged, tag};

/// The hash of an empty subtree.
pub const EMPTY: Hash = Hash([0; 32]);

/// The deepest a path can go: one level per key bit.
pub const MAX_DEPTH: usize = 256;

/// A leaf's hash.
pub fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    hash_tagged(tag::SMT_LEAF, &[&key.0, &value.0])
}

/// An inner node's hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    hash_tagged(tag::SMT_NODE, &[&left.0, &right.0])
}

/// Bit `i` of `key` (0 = most significant bit of byte 0).
fn bit(key: &Hash, i: usize) -> bool {
    key.0[i / 8] & (0x80 >> (i % 8)) != 0
}

/// `key` with every bit from `depth` on cleared: the subtree's prefix.
fn prefix(key: &Hash, depth: usize) -> Hash {
    let mut out = [0u8; 32];
    let full = depth / 8;
    out[..full].copy_from_slice(&key.0[..full]);
    if full < 32 {
        let keep = depth % 8;
        if keep > 0 {
            out[full] = key.0[full] & (0xffu8 << (8 - keep));
        }
    }
    Hash(out)
}

/// `key` with every bit from `depth` on set: the last key of the subtree.
fn prefix_end(key: &Hash, depth: usize) -> Hash {
    let mut out = prefix(key, depth).0;
    let full = depth / 8;
    if full < 32 {
        let keep = depth % 8;
        out[full] |= 0xffu8 >> keep;
        for b in out.iter_mut().skip(full + 1) {
            *b = 0xff;
        }
    }
    Hash(out)
}

/// The number of leading bits `a` and `b` share.
fn common_bits(a: &Hash, b: &Hash) -> usize {
    for i in 0..32 {
        let x = a.0[i] ^ b.0[i];
        if x != 0 {
            return i * 8 + x.leading_zeros() as usize;
        }
    }
    MAX_DEPTH
}

/// The tree: its leaves and the cached hashes of its subtrees with two or more leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseMerkleTree {
    leaves: BTreeMap<Hash, Hash>,
    /// `(depth, prefix)` to the subtree's hash, for subtrees with two or more leaves. A
    /// missing entry for such a subtree means it must be rehashed.
    nodes: BTreeMap<(u16, Hash), Hash>,
}

impl SparseMerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over `leaves` (key, value hash), hashed in one pass.
    pub fn from_leaves(leaves: impl IntoIterator<Item = (Hash, Hash)>) -> Self {
        let mut tree = Self {
            leaves: leaves.into_iter().collect(),
            nodes: BTreeMap::new(),
        };
        tree.root();
        tree
    }

    /// How many leaves it holds.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The value under `key`.
    pub fn get(&self, key: &Hash) -> Option<Hash> {
        self.leaves.get(key).copied()
    }

    /// The leaves in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &Hash)> {
        self.leaves.iter()
    }

    /// Sets the value under `key`.
    pub fn insert(&mut self, key: Hash, value: Hash) {
        if self.leaves.insert(key, value) != Some(value) {
            self.invalidate(&key);
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &Hash) -> Option<Hash> {
        let old = self.leaves.remove(key);
        if old.is_some() {
            self.invalidate(key);
        }
        old
    }

    /// Drops the cached hashes on `key`'s path. A cached subtree on the path holds two or
    /// more leaves other than (or besides) `key`, all sharing its prefix with `key`, so it is
    /// no deeper than `key`'s longest common prefix with a neighbour.
    fn invalidate(&mut self, key: &Hash) {
        let below = self.leaves.range(..*key).next_back().map(|(k, _)| *k);
        let above = self
            .leaves
            .range((std::ops::Bound::Excluded(*key), std::ops::Bound::Unbounded))
            .next()
            .map(|(k, _)| *k);
        let deepest = [below, above]
            .iter()
            .flatten()
            .map(|n| common_bits(key, n))
            .max()
            .unwrap_or(0)
            .min(MAX_DEPTH - 1);
        for depth in 0..=deepest {
            self.nodes.remove(&(depth as u16, prefix(key, depth)));
        }
    }

    /// The root hash, rehashing what writes left stale.
    pub fn root(&mut self) -> Hash {
        self.hash_at(0, &Hash([0; 32]), true)
    }

    /// The hash of the subtree at `depth` holding `key`'s prefix; caches what it computes
    /// when `cache` is set.
    fn hash_at(&mut self, depth: usize, key: &Hash, cache: bool) -> Hash {
        let start = prefix(key, depth);
        // A cached hash is current (writes drop the stale ones): one look-up for the clean
        // siblings along a rehashed path.
        let id = (depth as u16, start);
        if let Some(h) = self.nodes.get(&id) {
            return *h;
        }
        let end = prefix_end(key, depth);
        let mut two = self.leaves.range(start..=end);
        let Some((k, v)) = two.next() else {
            return EMPTY;
        };
        if two.next().is_none() {
            return leaf_hash(k, v);
        }
        // Two distinct keys share at most 255 bits, so a subtree of two leaves is above 256.
        let mut right = start;
        right.0[depth / 8] |= 0x80 >> (depth % 8);
        let l = self.hash_at(depth + 1, &start, cache);
        let r = self.hash_at(depth + 1, &right, cache);
        let h = node_hash(&l, &r);
        if cache {
            self.nodes.insert(id, h);
        }
        h
    }

    /// The hash of a subtree without touching the cache (for proofs from `&self`).
    fn hash_ro(&self, depth: usize, key: &Hash) -> Hash {
        let start = prefix(key, depth);
        let end = prefix_end(key, depth);
        let mut two = self.leaves.range(start..=end);
        let Some((k, v)) = two.next() else {
            return EMPTY;
        };
        if two.next().is_none() {
            return leaf_hash(k, v);
        }
        if let Some(h) = self.nodes.get(&(depth as u16, start)) {
            return *h;
        }
        let mut right = start;
        right.0[depth / 8] |= 0x80 >> (depth % 8);
        node_hash(
            &self.hash_ro(depth + 1, &start),
            &self.hash_ro(depth + 1, &right),
        )
    }

    /// A proof of `key`'s value, or of its absence. Cheapest right after [`Self::root`].
    pub fn prove(&self, key: &Hash) -> SmtProof {
        let mut siblings = Vec::new();
        let mut depth = 0;
        loop {
            let start = prefix(key, depth);
            let end = prefix_end(key, depth);
            let mut two = self.leaves.range(start..=end);
            let first = two.next();
            match (first, two.next()) {
                (None, _) => {
                    return SmtProof {
                        siblings,
                        terminal: None,
                    };
                }
                (Some((k, v)), None) => {
                    return SmtProof {
                        siblings,
                        terminal: Some((*k, *v)),
                    };
                }
                _ => {}
            }
            let mut other = prefix(key, depth + 1);
            other.0[depth / 8] ^= 0x80 >> (depth % 8);
            siblings.push(self.hash_ro(depth + 1, &other));
            depth += 1;
        }
    }
}

/// A path from the root to where a key's leaf is or would be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtProof {
    /// The siblings' hashes from the root down: `siblings[d]` is the sibling at depth `d + 1`.
    pub siblings: Vec<Hash>,
    /// What the path ends at, at depth `siblings.len()`: an empty subtree (`None`) or a
    /// subtree holding one leaf, (its key, its value hash), which for a proof of absence is
    /// another key's.
    pub terminal: Option<(Hash, Hash)>,
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// More siblings than key bits.
    #[error("the proof has {0} siblings; a path has at most 256")]
    TooLong(usize),
    /// The terminal leaf is not on the key's path.
    #[error("the proof's leaf is not on the key's path")]
    OffPath,
    /// The path does not hash to the root.
    #[error("the proof does not hash to the root")]
    RootMismatch,
    /// The path is not the tree's own: it goes on past a subtree that holds one leaf or none.
    #[error("the proof is not in canonical form")]
    NonCanonical,
}

/// Checks `proof` for `key` against `root`: `Some(value hash)` if it shows the key present,
/// `None` if it shows it absent. A proof shows one answer per key and root: paths stop where
/// the tree's do (a leaf alone in its subtree, or an empty subtree), and a valid path ending
/// elsewhere is refused as non-canonical.
pub fn verify(root: &Hash, key: &Hash, proof: &SmtProof) -> Result<Option<Hash>, ProofError> {
    let depth = proof.siblings.len();
    if depth > MAX_DEPTH {
        return Err(ProofError::TooLong(depth));
    }
    let (mut hash, answer) = match &proof.terminal {
        None => (EMPTY, None),
        Some((k, v)) => {
            if common_bits(k, key) < depth {
                return Err(ProofError::OffPath);
            }
            (leaf_hash(k, v), (k == key).then_some(*v))
        }
    };
    // The last sibling must not be empty when the path ends at a leaf or at nothing: the
    // tree would have stopped one level higher.
    if depth > 0 && proof.siblings[depth - 1] == EMPTY {
        return Err(ProofError::NonCanonical);
    }
    for d in (0..depth).rev() {
        let sibling = &proof.siblings[d];
        hash = if bit(key, d) {
            node_hash(sibling, &hash)
        } else {
            node_hash(&hash, sibling)
        };
    }
    if hash != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hash {
        Hash([b; 32])
    }

    /// The root straight from the definition.
    fn reference(leaves: &BTreeMap<Hash, Hash>, depth: usize, at: &Hash) -> Hash {
        let inside: Vec<_> = leaves
            .iter()
            .filter(|(k, _)| common_bits(k, at) >= depth)
            .collect();
        match inside.len() {
            0 => EMPTY,
            1 => leaf_hash(inside[0].0, inside[0].1),
            _ => {
                let mut right = prefix(at, depth);
                right.0[depth / 8] |= 0x80 >> (depth % 8);
                node_hash(
                    &reference(leaves, depth + 1, &prefix(at, depth)),
                    &reference(leaves, depth + 1, &right),
                )
            }
        }
    }

    #[test]
    fn empty_and_single() {
        let mut t = SparseMerkleTree::new();
        assert_eq!(t.root(), EMPTY);
        t.insert(h(1), h(9));
        assert_eq!(t.root(), leaf_hash(&h(1), &h(9)));
        let p = t.prove(&h(1));
        assert!(p.siblings.is_empty());
        assert_eq!(verify(&t.root(), &h(1), &p), Ok(Some(h(9))));
        assert_eq!(verify(&t.root(), &h(2), &t.prove(&h(2))), Ok(None));
    }

    #[test]
    fn keys_differing_in_the_last_bit() {
        let mut t = SparseMerkleTree::new();
        let a = Hash([0; 32]);
        let mut b = a;
        b.0[31] = 1;
        t.insert(a, h(1));
        t.insert(b, h(2));
        let mut m = BTreeMap::new();
        m.insert(a, h(1));
        m.insert(b, h(2));
        assert_eq!(t.root(), reference(&m, 0, &Hash([0; 32])));
        let p = t.prove(&b);
        assert_eq!(p.siblings.len(), 256);
        assert_eq!(verify(&t.root(), &b, &p), Ok(Some(h(2))));
    }

    #[test]
    fn incremental_matches_reference() {
        let mut t = SparseMerkleTree::new();
        let mut m = BTreeMap::new();
        let mut x: u64 = 7;
        for step in 0..600u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut k = [0u8; 32];
            k[0] = (x >> 56) as u8 & 0x0f;
            k[31] = (x >> 48) as u8 & 0x07;
            let k = Hash(k);
            if x.is_multiple_of(3) {
                t.remove(&k);
                m.remove(&k);
            } else {
                let v = h((x >> 40) as u8);
                t.insert(k, v);
                m.insert(k, v);
            }
            if step % 7 == 0 {
                let r = t.root();
                assert_eq!(r, reference(&m, 0, &Hash([0; 32])));
                assert_eq!(SparseMerkleTree::from_leaves(m.clone()).root(), r);
                for probe in [k, h(3), Hash([0; 32])] {
                    let p = t.prove(&probe);
                    assert_eq!(verify(&r, &probe, &p), Ok(m.get(&probe).copied()));
                }
            }
        }
    }

    /// The worked example of `docs/PROTOCOL.md` section 6a, whose figures an independent
    /// Python implementation of the definition computed.
    #[test]
    fn golden_example() {
        let mut t = SparseMerkleTree::new();
        t.insert(h(0x01), h(0x11));
        t.insert(h(0x02), h(0x22));
        t.insert(h(0x80), h(0x33));
        let root = t.root();
        assert_eq!(
            root.to_string(),
            "8bcf7abe3a2b6617512bedcb756cc91185b805236e5d24eb396f3a780bae59ca"
        );
        let p = t.prove(&h(0x02));
        let shown: Vec<String> = p.siblings.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 7);
        assert_eq!(
            shown[0],
            "621ce827c945f4448e629b42726e9ab850b1cd2870ff784a47bc868463b6d35c"
        );
        assert!(shown[1..6].iter().all(|s| *s == EMPTY.to_string()));
        assert_eq!(
            shown[6],
            "cf7a76357ee4a19142c9798dc8ea1e9cdefc1846fcb90cbc505f2a3cf660bae6"
        );
        assert_eq!(verify(&root, &h(0x02), &p), Ok(Some(h(0x22))));
        // A changed value, another root, a dropped sibling, a flipped sibling: refused.
        let mut changed = p.clone();
        changed.terminal = Some((h(0x02), h(0x23)));
        assert_eq!(
            verify(&root, &h(0x02), &changed),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify(&h(0x99), &h(0x02), &p),
            Err(ProofError::RootMismatch)
        );
        let mut truncated = p.clone();
        truncated.siblings.remove(3);
        assert!(verify(&root, &h(0x02), &truncated).is_err());
        let mut flipped = p.clone();
        flipped.siblings[0].0[0] ^= 1;
        assert!(verify(&root, &h(0x02), &flipped).is_err());
        // Absence of a key on B's path: ends at A's leaf or an empty subtree.
        let absent = h(0x03);
        assert_eq!(verify(&root, &absent, &t.prove(&absent)), Ok(None));
        // A leaf off the key's path is refused.
        let mut off = t.prove(&h(0x80));
        off.terminal = Some((h(0x01), h(0x11)));
        assert_eq!(verify(&root, &h(0x80), &off), Err(ProofError::OffPath));
    }
}
