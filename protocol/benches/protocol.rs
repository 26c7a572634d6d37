//! Criterion benchmarks of the protocol's hot paths: signing, verification (single and batch),
//! transaction hashing, the workload per model, and Merkle roots and proofs.
//! Benchmarks assert nothing; run with `cargo bench -p attest-protocol`.

use std::hint::black_box;

use attest_protocol::merkle::{self, MerkleTree};
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::workload::{self, CATALOGUE, Job};
use attest_protocol::{
    Amount, ChainId, Hash, Nonce, PublicKey, SecretKey, Signature, Signed, hash_tagged,
    signing_payload, tx_hash, verify_batch,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn transfer(nonce: u64) -> Tx {
    Tx {
        nonce: Nonce(nonce),
        fee: Amount(1_000),
        action: Action::Transfer(Transfer {
            to: SecretKey::from_seed([2; 32]).public(),
            amount: Amount(5_000_000),
        }),
    }
}

fn crypto(c: &mut Criterion) {
    let chain = ChainId::new("attest-bench").unwrap();
    let key = SecretKey::from_seed([1; 32]);
    let signed = Signed::sign(&chain, &key, transfer(0));
    let payload = signing_payload(&chain, &signed.body);

    c.bench_function("sign_tx", |b| b.iter(|| key.sign(black_box(&payload))));
    c.bench_function("verify_tx", |b| {
        b.iter(|| {
            key.public()
                .verify(black_box(&payload), black_box(&signed.signature))
        })
    });
    c.bench_function("tx_hash", |b| b.iter(|| tx_hash(black_box(&signed))));
    let bytes = *key.public().as_bytes();
    // After the first call the key comes from the per-thread cache of checked keys.
    c.bench_function("public_key_from_bytes_cached", |b| {
        b.iter(|| PublicKey::from_bytes(black_box(bytes)))
    });

    // Batches as the node meets them: a gossiped transaction batch (a few to dozens), a
    // block's (hundreds); distinct keys, the worst case (a repeated key enters the sum once).
    let mut group = c.benchmark_group("verify_batch");
    for size in [4usize, 16, 64, 256] {
        let items: Vec<(PublicKey, Vec<u8>, Signature)> = (0..size as u64)
            .map(|i| {
                let k = SecretKey::from_seed(hash_tagged("bench", &[&i.to_le_bytes()]).0);
                let s = Signed::sign(&chain, &k, transfer(i));
                (k.public(), signing_payload(&chain, &s.body), s.signature)
            })
            .collect();
        let refs: Vec<(PublicKey, &[u8], Signature)> = items
            .iter()
            .map(|(k, m, s)| (*k, m.as_slice(), *s))
            .collect();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(size.to_string(), |b| {
            b.iter(|| verify_batch(black_box(&refs)))
        });
    }
    group.finish();
}

fn workloads(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute");
    group.sample_size(10);
    for m in &CATALOGUE {
        let job = Job::new(m.id, b"The quick brown fox jumps over the lazy dog", 32).unwrap();
        group.throughput(Throughput::Elements(job.step_count()));
        group.bench_function(m.id, |b| b.iter(|| workload::execute(black_box(&job))));
    }
    group.finish();

    let job = Job::new("attest-base-8b", b"The quick brown fox", 32).unwrap();
    let prev = workload::activation_at(&job, 99).unwrap();
    c.bench_function("step/attest-base-8b", |b| {
        b.iter(|| workload::step(black_box(&job), 100, black_box(&prev)))
    });
}

fn merkle_trees(c: &mut Criterion) {
    let leaves: Vec<Hash> = (0..10_000u64)
        .map(|i| hash_tagged("bench-leaf", &[&i.to_le_bytes()]))
        .collect();
    let mut group = c.benchmark_group("merkle");
    group.throughput(Throughput::Elements(leaves.len() as u64));
    group.bench_function("root_10k", |b| b.iter(|| merkle::root(black_box(&leaves))));
    group.finish();
    let tree = MerkleTree::new(leaves.clone());
    let root = tree.root();
    c.bench_function("merkle/prove_10k", |b| {
        b.iter(|| tree.prove(black_box(4_321)))
    });
    let proof = tree.prove(4_321).unwrap();
    c.bench_function("merkle/verify_10k", |b| {
        b.iter(|| proof.verify(&root, 10_000, black_box(4_321), &leaves[4_321]))
    });
    c.bench_function("merkle/build_tree_10k", |b| {
        b.iter_batched(|| leaves.clone(), MerkleTree::new, BatchSize::LargeInput)
    });
}

criterion_group!(benches, crypto, workloads, merkle_trees);
criterion_main!(benches);
