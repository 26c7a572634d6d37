//! The state tree against its definition: after any sequence of inserts, overwrites and
//! removes (keys that share long prefixes included), the incremental root equals a root
//! computed straight from the definition over the model map, and every proof verifies to the
//! model's answer.

use std::collections::BTreeMap;

use attest_protocol::Hash;
use attest_protocol::smt::{EMPTY, SparseMerkleTree, leaf_hash, node_hash, verify};
use proptest::prelude::*;

fn bit(key: &Hash, i: usize) -> bool {
    key.0[i / 8] & (0x80 >> (i % 8)) != 0
}

/// The hash of the subtree of `leaves` under the first `depth` bits of `path`.
fn reference(leaves: &[(Hash, Hash)], depth: usize) -> Hash {
    match leaves {
        [] => EMPTY,
        [(k, v)] => leaf_hash(k, v),
        _ => {
            let (l, r): (Vec<_>, Vec<_>) = leaves.iter().partition(|(k, _)| !bit(k, depth));
            node_hash(&reference(&l, depth + 1), &reference(&r, depth + 1))
        }
    }
}

/// A key from a small pool: most share long prefixes, some differ only in the last bit.
fn key(n: u8) -> Hash {
    let mut k = [0u8; 32];
    k[0] = n & 0xc0;
    k[15] = (n >> 3) & 0x03;
    k[31] = n & 0x07;
    Hash(k)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn incremental_root_matches_the_definition(
        ops in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<bool>(), any::<bool>()), 1..120)
    ) {
        let mut tree = SparseMerkleTree::new();
        let mut model = BTreeMap::new();
        for (k, v, remove, root_now) in ops {
            let k = key(k);
            if remove {
                prop_assert_eq!(tree.remove(&k), model.remove(&k));
            } else {
                tree.insert(k, Hash([v; 32]));
                model.insert(k, Hash([v; 32]));
            }
            prop_assert_eq!(tree.len(), model.len());
            if root_now {
                let leaves: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
                let root = tree.root();
                prop_assert_eq!(root, reference(&leaves, 0));
                for probe in [k, key(0), key(0xff)] {
                    let proof = tree.prove(&probe);
                    prop_assert_eq!(verify(&root, &probe, &proof), Ok(model.get(&probe).copied()));
                }
            }
        }
        let leaves: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(tree.root(), reference(&leaves, 0));
        prop_assert!(tree.iter().map(|(k, v)| (*k, *v)).eq(leaves.iter().copied()));
        prop_assert_eq!(SparseMerkleTree::from_leaves(leaves.clone()), tree);
    }
}
