//! The joining side of state sync, driven by hand: which peers it asks, what it believes, and
//! whom it reports. (The simulator runs it among real cores with a peer serving bad chunks.)

use attest_chain::statesync::{Manifest, SyncSnapshot, restore};
use attest_chain::{Chain, GenesisFile, commit_solo};
use attest_contracts_sim::Params;
use attest_core::statesync::{StateSync, Step, Trust};
use attest_core::wire::{ChunkRequest, Request, SyncRequest};
use attest_protocol::{Amount, Block, ChainId, CommitCertificate, Hash, Height, SecretKey};

struct Fixture {
    genesis: GenesisFile,
    snapshot: SyncSnapshot,
    /// Blocks 1..=head with certificates.
    blocks: Vec<(Block, CommitCertificate)>,
}

/// A one-validator chain of 12 blocks with a snapshot at 8.
fn fixture() -> Fixture {
    let validator = SecretKey::from_seed([2; 32]);
    let genesis = GenesisFile::new(
        ChainId::new("sync").unwrap(),
        1_000,
        Params::default(),
        vec![(validator.public(), Amount(1_000_000_000))],
        vec![(
            validator.public(),
            SecretKey::from_seed([1; 32]).public(),
            Amount(1_000_000_000),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        )],
    );
    let mut chain = Chain::new(&genesis).unwrap();
    let mut blocks = Vec::new();
    let mut snapshot = None;
    for h in 1..=12u64 {
        let time = chain.last_time_ms() + 1_000;
        blocks.push(commit_solo(&mut chain, &validator, time, Vec::new()).unwrap());
        if h == 8 {
            snapshot = chain.sync_snapshot();
        }
    }
    Fixture {
        genesis,
        snapshot: snapshot.unwrap(),
        blocks,
    }
}

fn peer(i: u8) -> Vec<u8> {
    vec![i]
}

fn asks(steps: &[Step]) -> Vec<(Vec<u8>, Request)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Ask(p, r) => Some((p.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

fn reported(steps: &[Step]) -> Vec<Vec<u8>> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Misbehaved(p, _) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

impl Fixture {
    fn trust(&self) -> Trust {
        let (block, _) = self.blocks.last().unwrap();
        Trust {
            height: block.header.height,
            hash: block.hash(),
        }
    }

    /// The blocks a peer answers a sync request with.
    fn answer(&self, request: &Request) -> Vec<(Block, CommitCertificate)> {
        let Request::Sync(SyncRequest { from, to }) = request else {
            panic!("not a sync request: {request:?}");
        };
        self.blocks[(from.0 - 1) as usize..to.0 as usize].to_vec()
    }
}

/// Drives discovery with `offers` (peer, manifests) and returns the steps after the window.
fn discover(sync: &mut StateSync, offers: &[(u8, Vec<Manifest>)]) -> Vec<Step> {
    for (p, _) in offers {
        let steps = sync.on_peer(&peer(*p));
        assert!(matches!(&asks(&steps)[..], [(_, Request::Snapshots)]));
    }
    for (p, manifests) in offers {
        sync.on_offers(0, &peer(*p), manifests.clone());
    }
    sync.on_timer(1_000)
}

#[test]
fn an_honest_snapshot_is_linked_fetched_and_restores() {
    let f = fixture();
    let mut sync = StateSync::new(f.trust());
    let steps = discover(
        &mut sync,
        &[
            (1, vec![f.snapshot.manifest.clone()]),
            (2, vec![f.snapshot.manifest.clone()]),
        ],
    );
    let [(p, request)] = &asks(&steps)[..] else {
        panic!("one block request expected: {steps:?}");
    };
    assert_eq!(
        request,
        &Request::Sync(SyncRequest {
            from: Height(9),
            to: Height(12)
        })
    );
    let steps = sync.on_blocks(p, f.answer(request));
    let chunk_asks = asks(&steps);
    assert_eq!(chunk_asks.len(), f.snapshot.chunks.len());
    let mut ready = None;
    for (p, r) in chunk_asks {
        let Request::Chunk(ChunkRequest { manifest, index }) = r else {
            panic!("{r:?}");
        };
        let chunk = f.snapshot.chunks[index as usize].clone();
        for step in sync.on_chunk(&p, manifest, index, Some(chunk)) {
            if let Step::Ready(fetched) = step {
                ready = Some(fetched);
            }
        }
    }
    let fetched = ready.expect("every chunk in: ready");
    assert_eq!(fetched.anchor.header.height, Height(9));
    let chain = restore(
        &f.genesis.genesis.chain_id,
        &fetched.manifest,
        &fetched.chunks,
        &fetched.anchor,
    )
    .unwrap();
    assert_eq!(chain.height(), Height(8));
}

#[test]
fn a_manifest_the_anchor_contradicts_is_refused_and_its_peers_reported() {
    let f = fixture();
    let mut lie = f.snapshot.manifest.clone();
    lie.state_root = Hash([9; 32]);
    lie.height = Height(10); // newer, so it is chosen first
    let mut sync = StateSync::new(f.trust());
    let steps = discover(
        &mut sync,
        &[(1, vec![lie]), (2, vec![f.snapshot.manifest.clone()])],
    );
    let [(p, request)] = &asks(&steps)[..] else {
        panic!("{steps:?}");
    };
    assert_eq!(p, &peer(1), "the newest offer is linked first");
    let steps = sync.on_blocks(p, f.answer(request));
    assert_eq!(reported(&steps), vec![peer(1)]);
    // Back to discovery without the lie: the honest offer is chosen next.
    let steps = sync.on_timer(2_000);
    let steps = if asks(&steps).iter().any(|(_, r)| *r == Request::Snapshots) {
        sync.on_offers(2_000, &peer(2), vec![f.snapshot.manifest.clone()]);
        sync.on_timer(3_000)
    } else {
        steps
    };
    let [(p, Request::Sync(_))] = &asks(&steps)[..] else {
        panic!("{steps:?}");
    };
    assert_eq!(p, &peer(2));
}

#[test]
fn a_block_off_the_trusted_chain_gets_its_sender_reported() {
    let f = fixture();
    let mut sync = StateSync::new(f.trust());
    let steps = discover(
        &mut sync,
        &[
            (1, vec![f.snapshot.manifest.clone()]),
            (2, vec![f.snapshot.manifest.clone()]),
        ],
    );
    let [(p, request)] = &asks(&steps)[..] else {
        panic!("{steps:?}");
    };
    let mut blocks = f.answer(request);
    blocks.last_mut().unwrap().0.header.time_ms += 1;
    let steps = sync.on_blocks(p, blocks);
    assert_eq!(reported(&steps), vec![p.clone()]);
    let [(other, Request::Sync(_))] = &asks(&steps)[..] else {
        panic!("the blocks are asked of another peer: {steps:?}");
    };
    assert_ne!(other, p);
}

#[test]
fn snapshots_at_or_above_the_trusted_block_are_not_used() {
    let f = fixture();
    let mut sync = StateSync::new(Trust {
        height: Height(8),
        hash: f.blocks[7].0.hash(),
    });
    // The snapshot at 8 has its anchor at 9, above the trusted block: nothing to choose, so
    // the peers are asked again later.
    let steps = discover(&mut sync, &[(1, vec![f.snapshot.manifest.clone()])]);
    assert!(asks(&steps).iter().all(|(_, r)| *r == Request::Snapshots));
    assert!(steps.iter().any(|s| matches!(s, Step::Wake(_))));
}
