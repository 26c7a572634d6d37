//! The trace Merkle tree: every leaf's proof verifies, and a proof stops verifying when any
//! part of the claim (leaf, index, leaf count, root) or of the proof itself changes.

use attest_protocol::merkle::{self, MAX_PROOF_DEPTH, node_hash};
use attest_protocol::{BoundedVec, Hash, MerkleProof, MerkleTree, hash_tagged};
use proptest::prelude::*;

/// Distinct leaves for a tree of `count`, different for each `salt`.
fn leaves(count: u64, salt: u64) -> Vec<Hash> {
    (0..count)
        .map(|i| hash_tagged("test/leaf", &[&salt.to_le_bytes(), &i.to_le_bytes()]))
        .collect()
}

fn ceil_log2(n: u64) -> usize {
    if n <= 1 {
        0
    } else {
        (64 - (n - 1).leading_zeros()) as usize
    }
}

/// For leaf `index` of a `count`-leaf tree, which levels give the path a sibling. Two counts
/// with the same shape for an index build the same path, so the leaf count is only bound to the
/// extent it changes this shape (the module documents that verifiers must know the count).
fn path_shape(count: u64, index: u64) -> Vec<bool> {
    let (mut i, mut width) = (index, count);
    let mut shape = Vec::new();
    while width > 1 {
        shape.push((i ^ 1) < width);
        i /= 2;
        width = width.div_ceil(2);
    }
    shape
}

fn with_siblings(siblings: Vec<Hash>) -> Option<MerkleProof> {
    BoundedVec::new(siblings)
        .ok()
        .map(|siblings| MerkleProof { siblings })
}

fn flip(h: &Hash, byte: usize) -> Hash {
    let mut b = h.0;
    b[byte % 32] ^= 1 << (byte % 8);
    Hash(b)
}

/// Checks every proof of a `count`-leaf tree, and that each kind of tampering is refused for
/// every `stride`-th leaf and the last one (tampering costs dozens of hashes per leaf).
fn check_tree(count: u64, salt: u64, stride: u64) {
    let leaves = leaves(count, salt);
    let tree = MerkleTree::new(leaves.clone());
    let root = tree.root();
    assert_eq!(merkle::root(&leaves), root, "count {count}");
    assert_eq!(tree.len(), count);
    assert_eq!(tree.is_empty(), count == 0);
    assert_eq!(tree.leaves(), leaves.as_slice());
    assert_eq!(tree.prove(count), None);
    assert_eq!(tree.prove(u64::MAX), None);

    for index in 0..count {
        let leaf = &leaves[index as usize];
        let proof = tree.prove(index).expect("index in range");
        assert!(
            proof.siblings.len() <= ceil_log2(count),
            "count {count} index {index}"
        );
        assert_eq!(
            proof.siblings.len(),
            path_shape(count, index).iter().filter(|s| **s).count()
        );
        assert!(
            proof.verify(&root, count, index, leaf),
            "count {count} index {index}"
        );

        if index % stride != 0 && index != count - 1 {
            continue;
        }
        // The claim changes.
        assert!(!proof.verify(&root, count, index, &flip(leaf, index as usize)));
        assert!(!proof.verify(&flip(&root, 7), count, index, leaf));
        for other in [
            index ^ 1,
            index + 1,
            index.wrapping_sub(1),
            count - 1 - index,
        ] {
            if other != index && other < count {
                assert!(
                    !proof.verify(&root, count, other, leaf),
                    "count {count}: leaf {index}'s proof verifies at {other}"
                );
            }
        }
        assert!(!proof.verify(&root, count, count, leaf));
        assert!(!proof.verify(&root, count, u64::MAX, leaf));
        for other_count in [count - 1, count + 1, count * 2, count / 2, count + 7] {
            if other_count == count {
                continue;
            }
            let same_path =
                index < other_count && path_shape(other_count, index) == path_shape(count, index);
            assert_eq!(
                proof.verify(&root, other_count, index, leaf),
                same_path,
                "count {count} index {index} claimed count {other_count}"
            );
        }

        // The proof changes.
        let siblings = proof.siblings.to_vec();
        for i in 0..siblings.len() {
            let mut changed = siblings.clone();
            changed[i] = flip(&changed[i], i);
            let p = with_siblings(changed).expect("same length");
            assert!(!p.verify(&root, count, index, leaf));
            let mut dropped = siblings.clone();
            dropped.remove(i);
            let p = with_siblings(dropped).expect("shorter");
            assert!(!p.verify(&root, count, index, leaf));
        }
        let mut appended = siblings.clone();
        appended.push(*leaf);
        if let Some(p) = with_siblings(appended) {
            assert!(!p.verify(&root, count, index, leaf));
        }
        if siblings.len() >= 2 {
            let mut swapped = siblings.clone();
            swapped.swap(0, 1);
            if swapped != siblings {
                let p = with_siblings(swapped).expect("same length");
                assert!(!p.verify(&root, count, index, leaf));
            }
        }
    }
}

#[test]
fn every_proof_of_every_small_tree_verifies() {
    for count in 1..=300 {
        check_tree(count, 0, if count <= 100 { 1 } else { 3 });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn proofs_of_larger_trees_verify(count in 301u64..2500, salt in any::<u64>()) {
        check_tree(count, salt, 16);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn root_matches_tree_and_depends_on_every_leaf(
        count in 1u64..600,
        salt in any::<u64>(),
        which in any::<prop::sample::Index>(),
    ) {
        let mut leaves = leaves(count, salt);
        let root = merkle::root(&leaves);
        prop_assert_eq!(MerkleTree::new(leaves.clone()).root(), root);
        prop_assert_ne!(root, merkle::empty_root());
        let i = which.index(leaves.len());
        leaves[i] = flip(&leaves[i], i);
        prop_assert_ne!(merkle::root(&leaves), root);
        // Reordering two different leaves changes the root too.
        if count > 1 {
            let j = (i + 1) % leaves.len();
            let before = merkle::root(&leaves);
            leaves.swap(i, j);
            prop_assert_ne!(merkle::root(&leaves), before);
        }
    }

    #[test]
    fn a_proof_for_one_tree_fails_for_another(count in 1u64..200, index in any::<prop::sample::Index>()) {
        let a = MerkleTree::new(leaves(count, 1));
        let b = MerkleTree::new(leaves(count, 2));
        let i = index.index(count as usize) as u64;
        let proof = a.prove(i).expect("in range");
        prop_assert!(proof.verify(&a.root(), count, i, &a.leaves()[i as usize]));
        prop_assert!(!proof.verify(&b.root(), count, i, &a.leaves()[i as usize]));
        // Another tree's leaf with this tree's siblings: only a one-leaf tree's (empty) proof
        // fits every tree.
        prop_assert_eq!(
            proof.verify(&b.root(), count, i, &b.leaves()[i as usize]),
            count == 1
        );
    }
}

#[test]
fn empty_tree() {
    let tree = MerkleTree::new(Vec::new());
    assert!(tree.is_empty());
    assert_eq!(tree.len(), 0);
    assert_eq!(tree.root(), merkle::empty_root());
    assert_eq!(merkle::root(&[]), merkle::empty_root());
    assert_eq!(tree.prove(0), None);
    // Nothing is a member of the empty tree, not even with an empty proof.
    let empty = MerkleProof::default();
    assert!(!empty.verify(&merkle::empty_root(), 0, 0, &merkle::empty_root()));
    // The empty root is the documented tagged hash, not a hash of zero leaves' nodes.
    assert_eq!(
        merkle::empty_root(),
        hash_tagged("attest/merkle-empty/v1", &[])
    );
}

#[test]
fn small_trees_have_the_documented_shape() {
    let l = leaves(5, 9);
    // One leaf: the root is the leaf, the proof is empty.
    assert_eq!(merkle::root(&l[..1]), l[0]);
    let one = MerkleTree::new(l[..1].to_vec());
    assert_eq!(one.prove(0), Some(MerkleProof::default()));
    assert!(MerkleProof::default().verify(&l[0], 1, 0, &l[0]));
    // Five leaves: the fifth is promoted unchanged twice.
    let n01 = node_hash(&l[0], &l[1]);
    let n23 = node_hash(&l[2], &l[3]);
    let expected = node_hash(&node_hash(&n01, &n23), &l[4]);
    assert_eq!(merkle::root(&l), expected);
    let tree = MerkleTree::new(l.clone());
    assert_eq!(
        tree.prove(4).expect("in range").siblings.to_vec(),
        vec![node_hash(&n01, &n23)]
    );
    assert_eq!(
        tree.prove(2).expect("in range").siblings.to_vec(),
        vec![l[3], n01, l[4]]
    );
    // The inner-node tag is the documented one.
    assert_eq!(
        n01,
        hash_tagged("attest/merkle-node/v1", &[&l[0].0, &l[1].0])
    );
}

/// The leaf count is bound only through the path shape: leaf 0 of a 5-leaf tree has the same
/// path (three siblings, always on the right) as leaf 0 of a 6-leaf tree, so its proof also
/// "verifies" for a claimed count of 6. This is why results commit `step_count` next to the
/// root and verifiers take the count from there.
#[test]
fn leaf_count_is_bound_only_through_the_path_shape() {
    let l = leaves(5, 3);
    let tree = MerkleTree::new(l.clone());
    let proof = tree.prove(0).expect("in range");
    assert!(proof.verify(&tree.root(), 5, 0, &l[0]));
    assert!(proof.verify(&tree.root(), 6, 0, &l[0]));
    assert!(!proof.verify(&tree.root(), 4, 0, &l[0]));
    assert!(!proof.verify(&tree.root(), 9, 0, &l[0]));
}

#[test]
fn proof_depth_bound_covers_the_largest_trace() {
    // The largest job: 80 layers, 4096 input bytes, 1024 output tokens.
    let steps = 80 * (4096 + 1024) as u64;
    assert!(ceil_log2(steps) <= MAX_PROOF_DEPTH);
    // And a full-depth proof has the bound's length, one more does not fit.
    assert!(
        BoundedVec::<Hash, MAX_PROOF_DEPTH>::new(vec![Hash::default(); MAX_PROOF_DEPTH]).is_ok()
    );
    assert!(
        BoundedVec::<Hash, MAX_PROOF_DEPTH>::new(vec![Hash::default(); MAX_PROOF_DEPTH + 1])
            .is_err()
    );
}

proptest! {
    /// The one-pass root and last-leaf proof equal the kept tree's, for every size.
    #[test]
    fn root_and_last_proof_match_the_tree(count in 1usize..300) {
        let leaves = leaves(count as u64, 7);
        let (root, proof) = merkle::root_and_last_proof(&leaves).expect("leaves");
        let tree = MerkleTree::new(leaves.clone());
        prop_assert_eq!(root, tree.root());
        prop_assert_eq!(&proof, &tree.prove(count as u64 - 1).expect("in range"));
        prop_assert!(proof.verify(&root, count as u64, count as u64 - 1, &leaves[count - 1]));
    }
}

#[test]
fn root_and_last_proof_of_no_leaves_is_none() {
    assert!(merkle::root_and_last_proof(&[]).is_none());
}
