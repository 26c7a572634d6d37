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
//! The tree is kept as a compact trie (a branch where leaves part) whose branches cache their
//! hashes. A write marks the branches on its key's path and [`SparseMerkleTree::root`]
//! rehashes only those: a batch of `k` writes into `n` leaves costs `O(k log n)` hashes and
//! pointer steps, with no search of the leaf set.

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

/// A node of the tree's arena.
#[derive(Debug, Clone)]
enum Node {
    /// One leaf.
    Leaf { key: Hash, value: Hash },
    /// The highest level where its leaves part: they share their first `depth` bits (those of
    /// `key`, any of its keys) and part at bit `depth`. `hash` is the subtree's hash at
    /// `depth`, current unless `dirty`.
    Branch {
        depth: u16,
        key: Hash,
        left: u32,
        right: u32,
        hash: Hash,
        dirty: bool,
    },
}

/// The tree, as a compact binary trie in an arena: a branch where leaves part, a leaf where
/// one is alone. Each branch caches its hash; a write marks the branches on its path, and
/// [`SparseMerkleTree::root`] rehashes only those (plus, for a branch below a run of levels
/// where one side is empty, one hash per such level). No step depends on the number of
/// leaves but the path length, about `log2 n`.
#[derive(Debug, Clone, Default)]
pub struct SparseMerkleTree {
    nodes: Vec<Node>,
    /// Arena slots free for reuse.
    free: Vec<u32>,
    root: Option<u32>,
    len: usize,
}

impl PartialEq for SparseMerkleTree {
    /// The same leaves (the arena's layout is history, not content).
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for SparseMerkleTree {}

impl SparseMerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over `leaves` (key, value hash).
    pub fn from_leaves(leaves: impl IntoIterator<Item = (Hash, Hash)>) -> Self {
        let mut tree = Self::new();
        for (k, v) in leaves {
            tree.insert(k, v);
        }
        tree.root();
        tree
    }

    /// How many leaves it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value under `key`.
    pub fn get(&self, key: &Hash) -> Option<Hash> {
        let mut at = self.root?;
        loop {
            match &self.nodes[at as usize] {
                Node::Leaf { key: k, value } => return (k == key).then_some(*value),
                Node::Branch {
                    depth, left, right, ..
                } => {
                    at = if bit(key, usize::from(*depth)) {
                        *right
                    } else {
                        *left
                    }
                }
            }
        }
    }

    /// The leaves in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &Hash)> {
        let mut stack: Vec<u32> = self.root.into_iter().collect();
        std::iter::from_fn(move || {
            while let Some(at) = stack.pop() {
                match &self.nodes[at as usize] {
                    Node::Leaf { key, value } => return Some((key, value)),
                    Node::Branch { left, right, .. } => {
                        stack.push(*right);
                        stack.push(*left);
                    }
                }
            }
            None
        })
    }

    fn alloc(&mut self, node: Node) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes")
            }
        }
    }

    /// A branch over two subtrees that part at bit `depth`.
    fn branch(&mut self, depth: usize, key: Hash, a: (u32, &Hash), b: (u32, &Hash)) -> u32 {
        let (left, right) = if bit(a.1, depth) {
            (b.0, a.0)
        } else {
            (a.0, b.0)
        };
        self.alloc(Node::Branch {
            depth: depth as u16,
            key,
            left,
            right,
            hash: EMPTY,
            dirty: true,
        })
    }

    /// Sets the value under `key`.
    pub fn insert(&mut self, key: Hash, value: Hash) {
        self.root = Some(match self.root {
            None => {
                self.len += 1;
                self.alloc(Node::Leaf { key, value })
            }
            Some(at) => self.insert_at(at, key, value),
        });
    }

    /// Inserts under the subtree at `at`; returns what takes its place.
    fn insert_at(&mut self, at: u32, key: Hash, value: Hash) -> u32 {
        match self.nodes[at as usize].clone() {
            Node::Leaf { key: k, value: v } => {
                if k == key {
                    if v != value {
                        self.nodes[at as usize] = Node::Leaf { key, value };
                    }
                    return at;
                }
                self.len += 1;
                let leaf = self.alloc(Node::Leaf { key, value });
                let depth = common_bits(&k, &key);
                self.branch(depth, k, (at, &k), (leaf, &key))
            }
            Node::Branch { depth, key: bk, .. } => {
                let depth = usize::from(depth);
                let shared = common_bits(&bk, &key);
                if shared < depth {
                    // The key parts from this branch's leaves above it.
                    self.len += 1;
                    let leaf = self.alloc(Node::Leaf { key, value });
                    return self.branch(shared, bk, (at, &bk), (leaf, &key));
                }
                let go_right = bit(&key, depth);
                let child = match &self.nodes[at as usize] {
                    Node::Branch { left, right, .. } => {
                        if go_right {
                            *right
                        } else {
                            *left
                        }
                    }
                    Node::Leaf { .. } => unreachable!("matched a branch"),
                };
                let new = self.insert_at(child, key, value);
                if let Node::Branch {
                    left, right, dirty, ..
                } = &mut self.nodes[at as usize]
                {
                    if go_right {
                        *right = new;
                    } else {
                        *left = new;
                    }
                    *dirty = true;
                }
                at
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &Hash) -> Option<Hash> {
        let at = self.root?;
        let (replacement, old) = self.remove_at(at, key);
        if old.is_some() {
            self.root = replacement;
            self.len -= 1;
        }
        old
    }

    /// Removes under the subtree at `at`: what takes its place, and the removed value.
    fn remove_at(&mut self, at: u32, key: &Hash) -> (Option<u32>, Option<Hash>) {
        match self.nodes[at as usize].clone() {
            Node::Leaf { key: k, value } => {
                if k == *key {
                    self.free.push(at);
                    (None, Some(value))
                } else {
                    (Some(at), None)
                }
            }
            Node::Branch {
                depth,
                key: bk,
                left,
                right,
                ..
            } => {
                let depth = usize::from(depth);
                if common_bits(&bk, key) < depth {
                    return (Some(at), None);
                }
                let go_right = bit(key, depth);
                let (child, other) = if go_right {
                    (right, left)
                } else {
                    (left, right)
                };
                let (new, old) = self.remove_at(child, key);
                if old.is_none() {
                    return (Some(at), None);
                }
                match new {
                    // One side left: the branch goes, its other child takes its place.
                    None => {
                        self.free.push(at);
                        (Some(other), old)
                    }
                    Some(new) => {
                        if let Node::Branch {
                            left, right, dirty, ..
                        } = &mut self.nodes[at as usize]
                        {
                            if go_right {
                                *right = new;
                            } else {
                                *left = new;
                            }
                            *dirty = true;
                        }
                        (Some(at), old)
                    }
                }
            }
        }
    }

    /// The depth a node's own hash is at (a leaf's hash is the same at every depth).
    fn top(&self, at: u32) -> Option<(usize, Hash)> {
        match &self.nodes[at as usize] {
            Node::Leaf { .. } => None,
            Node::Branch { depth, key, .. } => Some((usize::from(*depth), *key)),
        }
    }

    /// The hash of the subtree at `at` seen from `depth` (at or above its top): a branch
    /// deeper down is wrapped once per level in between, the empty side beside it.
    fn seen_from(&self, at: u32, own: Hash, depth: usize) -> Hash {
        match self.top(at) {
            None => own,
            Some((top, key)) => {
                let mut h = own;
                for level in (depth..top).rev() {
                    h = if bit(&key, level) {
                        node_hash(&EMPTY, &h)
                    } else {
                        node_hash(&h, &EMPTY)
                    };
                }
                h
            }
        }
    }

    /// The node's own hash, rehashing what is dirty below it.
    fn rehash(&mut self, at: u32) -> Hash {
        match self.nodes[at as usize].clone() {
            Node::Leaf { key, value } => leaf_hash(&key, &value),
            Node::Branch {
                hash, dirty: false, ..
            } => hash,
            Node::Branch {
                depth, left, right, ..
            } => {
                let below = usize::from(depth) + 1;
                let l = self.rehash(left);
                let r = self.rehash(right);
                let h = node_hash(
                    &self.seen_from(left, l, below),
                    &self.seen_from(right, r, below),
                );
                if let Node::Branch { hash, dirty, .. } = &mut self.nodes[at as usize] {
                    *hash = h;
                    *dirty = false;
                }
                h
            }
        }
    }

    /// The node's own hash without touching the arena (for proofs from `&self`).
    fn hash_ro(&self, at: u32) -> Hash {
        match &self.nodes[at as usize] {
            Node::Leaf { key, value } => leaf_hash(key, value),
            Node::Branch {
                hash, dirty: false, ..
            } => *hash,
            Node::Branch {
                depth, left, right, ..
            } => {
                let below = usize::from(*depth) + 1;
                node_hash(
                    &self.seen_from(*left, self.hash_ro(*left), below),
                    &self.seen_from(*right, self.hash_ro(*right), below),
                )
            }
        }
    }

    /// The root hash, rehashing what writes left stale.
    pub fn root(&mut self) -> Hash {
        match self.root {
            None => EMPTY,
            Some(at) => {
                let own = self.rehash(at);
                self.seen_from(at, own, 0)
            }
        }
    }

    /// A proof of `key`'s value, or of its absence. Cheapest right after [`Self::root`].
    pub fn prove(&self, key: &Hash) -> SmtProof {
        let mut siblings = Vec::new();
        let Some(mut at) = self.root else {
            return SmtProof {
                siblings,
                terminal: None,
            };
        };
        let mut depth = 0;
        loop {
            match &self.nodes[at as usize] {
                Node::Leaf { key: k, value } => {
                    return SmtProof {
                        siblings,
                        terminal: Some((*k, *value)),
                    };
                }
                Node::Branch {
                    depth: b,
                    key: bk,
                    left,
                    right,
                    ..
                } => {
                    let b = usize::from(*b);
                    let shared = common_bits(bk, key);
                    if shared < b {
                        // The key leaves the branch's path at level `shared`: empty siblings
                        // down to there, then the branch beside an empty subtree.
                        siblings.extend(std::iter::repeat_n(EMPTY, shared - depth));
                        siblings.push(self.seen_from(at, self.hash_ro(at), shared + 1));
                        return SmtProof {
                            siblings,
                            terminal: None,
                        };
                    }
                    siblings.extend(std::iter::repeat_n(EMPTY, b - depth));
                    let (next, other) = if bit(key, b) {
                        (*right, *left)
                    } else {
                        (*left, *right)
                    };
                    siblings.push(self.seen_from(other, self.hash_ro(other), b + 1));
                    at = next;
                    depth = b + 1;
                }
            }
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
    use std::collections::BTreeMap;

    use super::*;

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
