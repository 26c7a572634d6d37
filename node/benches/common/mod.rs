//! What the node benches share: a clock and a store filled with a one-validator chain.

use std::time::Instant;

use attest_chain::{Chain, GenesisFile, commit_solo};
use attest_core::store::{GenesisId, Store};
use attest_node::sled_store::SledStore;
use attest_node::snapshots::Snapshots;
use attest_protocol::SecretKey;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Fills `dir` with `blocks` empty blocks signed by `validator`; writes a snapshot at the end.
pub fn fill(dir: &std::path::Path, genesis: &GenesisFile, validator: &SecretKey, blocks: u64) {
    let id = GenesisId {
        chain_id: genesis.genesis.chain_id.clone(),
        hash: genesis.hash(),
    };
    let mut store = SledStore::open(dir, &id).unwrap();
    let mut chain = Chain::new(genesis).unwrap();
    let started = Instant::now();
    for _ in 0..blocks {
        let time = chain.last_time_ms() + 1;
        let (block, cert) = commit_solo(&mut chain, validator, time, Vec::new()).unwrap();
        store.put_block(&block, &cert).unwrap();
    }
    let bytes = chain.snapshot(genesis.hash()).encode();
    Snapshots::new(dir, 1_000, 2)
        .write(chain.height(), &bytes)
        .unwrap();
    eprintln!("  filled {blocks} blocks in {:?}", started.elapsed());
}
