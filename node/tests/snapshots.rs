//! Snapshots on disk: written atomically, the newest kept, and on load a damaged or foreign
//! snapshot is skipped for an older one, never trusted.

use attest_chain::{Chain, GenesisFile, commit_solo};
use attest_contracts_sim::Params;
use attest_core::store::{GenesisId, MemStore, Store};
use attest_node::snapshots::{Snapshots, load, load_newest};
use attest_protocol::{Amount, ChainId, Height, SecretKey};

fn setup() -> (GenesisFile, SecretKey) {
    let validator = SecretKey::from_seed([1; 32]);
    let genesis = GenesisFile::new(
        ChainId::new("snapshots").unwrap(),
        1_000,
        Params::default(),
        vec![(validator.public(), Amount(1_000_000))],
        vec![(
            validator.public(),
            SecretKey::from_seed([2; 32]).public(),
            Amount(1_000_000),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        )],
    );
    (genesis, validator)
}

/// Commits an empty block `gap_ms` after the last on `chain` and stores it.
fn step(chain: &mut Chain, store: &mut MemStore, validator: &SecretKey, gap_ms: u64) {
    let time = chain.last_time_ms() + gap_ms;
    let (block, cert) = commit_solo(chain, validator, time, Vec::new()).unwrap();
    store.put_block(&block, &cert).unwrap();
}

#[test]
fn the_newest_usable_snapshot_is_loaded_and_damaged_ones_are_skipped() {
    let (genesis, validator) = setup();
    let dir = tempfile::tempdir().unwrap();
    let snapshots = Snapshots::new(dir.path(), 2, 2);
    let mut store = MemStore::new(GenesisId {
        chain_id: genesis.genesis.chain_id.clone(),
        hash: genesis.hash(),
    });
    let mut chain = Chain::new(&genesis).unwrap();
    for _ in 0..6 {
        step(&mut chain, &mut store, &validator, 1_000);
        if snapshots.due(chain.height()) {
            let bytes = chain.snapshot(genesis.hash()).encode();
            snapshots.write(chain.height(), &bytes).unwrap();
        }
    }
    // Written at 2, 4 and 6; the newest two kept.
    let heights: Vec<u64> = snapshots.list().unwrap().iter().map(|(h, _)| h.0).collect();
    assert_eq!(heights, vec![6, 4]);
    let newest = load_newest(&snapshots, &genesis, &store).unwrap();
    assert_eq!(newest.height(), Height(6));
    assert_eq!(newest.state_root(), chain.state_root());

    // A flipped byte in the newest: reported and skipped for the older one.
    let path = snapshots.path(Height(6));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = load(&path, &genesis, &store).unwrap_err();
    assert!(format!("{err:#}").contains("checksum"), "{err:#}");
    assert_eq!(
        load_newest(&snapshots, &genesis, &store).unwrap().height(),
        Height(4)
    );

    // A snapshot whose head is not the stored block at its height is refused.
    let (other_genesis, other_validator) = setup();
    let mut other = Chain::new(&other_genesis).unwrap();
    let mut other_store = MemStore::new(GenesisId {
        chain_id: other_genesis.genesis.chain_id.clone(),
        hash: other_genesis.hash(),
    });
    for _ in 0..4 {
        // Different times make different blocks on the same genesis.
        step(&mut other, &mut other_store, &other_validator, 777);
    }
    let err = load(&snapshots.path(Height(4)), &genesis, &other_store).unwrap_err();
    assert!(
        format!("{err:#}").contains("not the stored block"),
        "{err:#}"
    );

    // Nothing usable at all: None, and the node replays from genesis.
    std::fs::write(snapshots.path(Height(4)), b"garbage").unwrap();
    assert!(load_newest(&snapshots, &genesis, &store).is_none());
}
