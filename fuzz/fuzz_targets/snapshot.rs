//! State snapshots, as a node reads them from its disk or from a peer. The first byte picks
//! the reader:
//! - 0: a snapshot file (`Snapshot::decode`), then the chain it describes under the fuzz
//!   genesis (entries, root and certificate checked);
//! - 1: a state-sync snapshot (`SyncSnapshot::decode`) and its restore through an anchor
//!   block: the input is `len (4 bytes, LE) | anchor block | snapshot`;
//! - 2: one state-sync chunk: its entries, each decoded as a state entry, imported as a state.
#![no_main]

use attest_chain::statesync::{SyncSnapshot, chunk_entries, restore};
use attest_chain::{Chain, Snapshot};
use attest_contracts_sim::State;
use attest_protocol::{Block, Canonical, Hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let genesis = attest_fuzz::genesis();
    match which % 3 {
        0 => {
            if let Ok(snapshot) = Snapshot::decode(bytes) {
                let _ = Chain::from_snapshot(genesis, snapshot);
            }
        }
        1 => {
            let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
                return;
            };
            let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
            let Some((anchor, snapshot)) = rest.split_at_checked(len) else {
                return;
            };
            if let (Ok(anchor), Ok(snapshot)) =
                (Block::decode(anchor), SyncSnapshot::decode(snapshot))
            {
                let chain = &genesis.genesis.chain_id;
                let _ = restore(chain, &snapshot.manifest, &snapshot.chunks, &anchor);
            }
        }
        _ => {
            if let Ok(entries) = chunk_entries(bytes) {
                let _ = State::import(entries, &Hash::default());
            }
        }
    }
});
