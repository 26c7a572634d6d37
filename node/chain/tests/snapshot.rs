//! Snapshots: a chain restored from one continues exactly as the original, and every kind of
//! damage is refused with an error that names it.

use attest_chain::{Chain, GenesisFile, Snapshot, SnapshotError, commit_solo};
use attest_contracts_sim::Params;
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::{Amount, Block, ChainId, Nonce, SecretKey, Signed};

fn genesis() -> (GenesisFile, SecretKey, SecretKey) {
    let validator = SecretKey::from_seed([1; 32]);
    let client = SecretKey::from_seed([3; 32]);
    let genesis = GenesisFile::new(
        ChainId::new("snap").unwrap(),
        1_000,
        Params::default(),
        vec![(client.public(), Amount(1_000_000_000))],
        vec![(
            validator.public(),
            SecretKey::from_seed([2; 32]).public(),
            Amount(1_000_000_000),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        )],
    );
    (genesis, validator, client)
}

/// Builds and commits one block of `n` transfers from `client` on `chain`.
fn step(chain: &mut Chain, validator: &SecretKey, client: &SecretKey) -> Block {
    let id = chain.chain_id().clone();
    let nonce = chain.state().account(&client.public()).nonce;
    let txs = (0..3)
        .map(|i| {
            let body = Tx {
                nonce: Nonce(nonce.0 + i),
                fee: Params::default().min_fee,
                action: Action::Transfer(Transfer {
                    to: SecretKey::from_seed([9; 32]).public(),
                    amount: Amount(5),
                }),
            };
            Signed::sign(&id, client, body).verify(&id).unwrap()
        })
        .collect();
    let now = chain.last_time_ms() + 1_000;
    let (block, _) = commit_solo(chain, validator, now, txs).unwrap();
    block
}

#[test]
fn a_restored_chain_continues_like_the_original() {
    let (genesis, validator, client) = genesis();
    let mut chain = Chain::new(&genesis).unwrap();
    for _ in 0..3 {
        step(&mut chain, &validator, &client);
    }
    let bytes = chain.snapshot(genesis.hash()).encode();
    let mut restored = Chain::from_snapshot(&genesis, Snapshot::decode(&bytes).unwrap()).unwrap();
    assert_eq!(restored.height(), chain.height());
    assert_eq!(restored.state_root(), chain.state_root());
    assert_eq!(restored.state(), chain.state());
    // The original's next block checks and commits on the restored chain, last commit and all.
    let block = step(&mut chain, &validator, &client);
    let cert = chain.last_certificate().unwrap().clone();
    let applied = restored.check_committed(&block, &cert).unwrap();
    restored.commit(&block, cert, applied).unwrap();
    assert_eq!(restored.state_root(), chain.state_root());
    // A snapshot at genesis works too.
    let fresh = Chain::new(&genesis).unwrap();
    let at_zero = Snapshot::decode(&fresh.snapshot(genesis.hash()).encode()).unwrap();
    assert_eq!(
        Chain::from_snapshot(&genesis, at_zero).unwrap().height().0,
        0
    );
}

#[test]
fn damaged_snapshots_are_refused() {
    let (genesis, validator, client) = genesis();
    let mut chain = Chain::new(&genesis).unwrap();
    for _ in 0..2 {
        step(&mut chain, &validator, &client);
    }
    let snapshot = chain.snapshot(genesis.hash());
    let bytes = snapshot.encode();

    assert_eq!(
        Snapshot::decode(b"not a snapshot"),
        Err(SnapshotError::Magic)
    );
    for cut in [bytes.len() - 1, bytes.len() / 2, 40] {
        assert_eq!(
            Snapshot::decode(&bytes[..cut]),
            Err(SnapshotError::Checksum),
            "cut at {cut}"
        );
    }
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    assert_eq!(Snapshot::decode(&flipped), Err(SnapshotError::Checksum));

    // Well-formed but lying: a changed balance no longer hashes to the root.
    let mut forged = snapshot.clone();
    let (_, value) = forged
        .entries
        .iter_mut()
        .find(|(k, _)| matches!(k, attest_contracts_sim::Key::Account(_)))
        .unwrap();
    value[0] ^= 1;
    let forged = Snapshot::decode(&forged.encode()).unwrap();
    assert!(matches!(
        Chain::from_snapshot(&genesis, forged),
        Err(SnapshotError::State(_))
    ));

    // A head the certificate does not commit.
    let mut moved = snapshot.clone();
    moved.header.last_hash.0[0] ^= 1;
    assert!(matches!(
        Chain::from_snapshot(&genesis, moved),
        Err(SnapshotError::CertificateMismatch { .. })
    ));

    // Another chain's snapshot.
    let other = GenesisFile::new(
        ChainId::new("other").unwrap(),
        1_000,
        Params::default(),
        Vec::new(),
        vec![(
            validator.public(),
            client.public(),
            Amount(1),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        )],
    );
    assert!(matches!(
        Chain::from_snapshot(&other, snapshot),
        Err(SnapshotError::WrongGenesis { .. })
    ));
}

#[test]
fn an_audit_starts_from_a_snapshot_and_checks_the_blocks_after_it() {
    use attest_chain::audit::{AuditRange, audit_from_snapshot, no_clock};
    let (genesis, validator, client) = genesis();
    let mut chain = Chain::new(&genesis).unwrap();
    let mut blocks = Vec::new();
    let mut snapshot = None;
    for _ in 0..5 {
        let block = step(&mut chain, &validator, &client);
        blocks.push((block, chain.last_certificate().unwrap().clone()));
        if chain.height().0 == 3 {
            snapshot = Some(chain.snapshot(genesis.hash()).encode());
        }
    }
    let restore = || {
        Chain::from_snapshot(
            &genesis,
            Snapshot::decode(snapshot.as_ref().unwrap()).unwrap(),
        )
        .unwrap()
    };
    let tail = || blocks[3..].iter().cloned().map(Ok::<_, std::io::Error>);
    let range = AuditRange::new(Some(attest_protocol::Height(4)), None).unwrap();
    let report = audit_from_snapshot(&genesis, restore(), tail(), range, no_clock).unwrap();
    assert!(report.ok);
    assert_eq!(report.from_snapshot, Some(attest_protocol::Height(3)));
    assert_eq!(report.counts.blocks, 2);
    assert_eq!(report.head.unwrap().height.0, 5);
    // A gap after the snapshot is refused.
    let gap = blocks[4..].iter().cloned().map(Ok::<_, std::io::Error>);
    assert!(audit_from_snapshot(&genesis, restore(), gap, range, no_clock).is_err());
    // A range reaching into the checkpoint is refused.
    let early = AuditRange::new(Some(attest_protocol::Height(2)), None).unwrap();
    assert!(audit_from_snapshot(&genesis, restore(), tail(), early, no_clock).is_err());
}

#[test]
fn state_sync_chunks_restore_the_chain_and_damage_is_refused() {
    use attest_chain::statesync::{RestoreError, restore};
    let (genesis, validator, client) = genesis();
    let mut chain = Chain::new(&genesis).unwrap();
    assert!(
        chain.sync_snapshot().is_none(),
        "nothing to offer at genesis"
    );
    for _ in 0..3 {
        step(&mut chain, &validator, &client);
    }
    let snap = chain.sync_snapshot().expect("a snapshot past genesis");
    assert_eq!(
        snap,
        chain.clone().sync_snapshot().unwrap(),
        "deterministic"
    );
    let anchor = step(&mut chain, &validator, &client);
    let decoded = attest_chain::statesync::SyncSnapshot::decode(&snap.encode()).unwrap();
    assert_eq!(decoded, snap);
    let mut restored = restore(
        &genesis.genesis.chain_id,
        &snap.manifest,
        &snap.chunks,
        &anchor,
    )
    .unwrap();
    assert_eq!(restored.height(), snap.manifest.height);
    assert_eq!(restored.state_root(), snap.manifest.state_root);
    // The anchor itself checks and commits on the restored chain, last commit and all.
    let cert = chain.last_certificate().unwrap().clone();
    let applied = restored.check_committed(&anchor, &cert).unwrap();
    restored.commit(&anchor, cert, applied).unwrap();
    assert_eq!(restored.state_root(), chain.state_root());

    let mut bad = snap.chunks.clone();
    bad[0][5] ^= 1;
    assert_eq!(
        restore(&genesis.genesis.chain_id, &snap.manifest, &bad, &anchor).unwrap_err(),
        RestoreError::Chunk { index: 0 }
    );
    assert!(matches!(
        restore(
            &genesis.genesis.chain_id,
            &snap.manifest,
            &snap.chunks[1..],
            &anchor
        ),
        Err(RestoreError::ChunkCount { .. })
    ));
    let mut lying = snap.manifest.clone();
    lying.state_root = attest_protocol::Hash([7; 32]);
    assert!(matches!(
        restore(&genesis.genesis.chain_id, &lying, &snap.chunks, &anchor),
        Err(RestoreError::Root { .. })
    ));
    // A manifest whose entries were changed, chunk hashes recomputed to match: the root the
    // anchor carries refuses it.
    let mut forged = snap.clone();
    let mut entries = attest_chain::statesync::chunk_entries(&forged.chunks[0]).unwrap();
    entries.pop();
    let mut chunk = Vec::new();
    for (k, v) in &entries {
        attest_chain::statesync::put_entry(&mut chunk, k, v);
    }
    forged.chunks[0] = chunk;
    forged.manifest.entries -= 1;
    forged.manifest.chunks = attest_protocol::BoundedVec::new(
        forged
            .chunks
            .iter()
            .map(|c| attest_chain::statesync::chunk_hash(c))
            .collect(),
    )
    .unwrap();
    assert!(matches!(
        restore(
            &genesis.genesis.chain_id,
            &forged.manifest,
            &forged.chunks,
            &anchor
        ),
        Err(RestoreError::Snapshot(SnapshotError::State(_)))
    ));
    // Another block than the one after the head.
    assert!(matches!(
        restore(
            &genesis.genesis.chain_id,
            &snap.manifest,
            &snap.chunks,
            &step(&mut chain, &validator, &client)
        ),
        Err(RestoreError::Anchor { .. })
    ));
}
