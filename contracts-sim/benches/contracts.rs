//! `apply` throughput: plain transfers, and full job lifecycles (open, commit, a spot-check
//! verdict, settlement). Signatures are made and verified outside the timed section: these
//! time the state machine, not ed25519. Benchmarks assert nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use attest_contracts_sim::State;
use attest_protocol::tx::{Action, CommitResult, Transfer, Verdict, VerdictOutcome};
use attest_protocol::{Amount, JobId, Nonce, Signed, Tx, Verified, tx_hash};
use common::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const BATCH: u64 = 1_000;

fn signed(who: u8, nonce: u64, action: Action) -> Verified<Tx> {
    let tx = Tx {
        nonce: Nonce(nonce),
        fee: params(0).min_fee,
        action,
    };
    Signed::sign(&chain(), &key(who), tx)
        .verify(&chain())
        .unwrap()
}

fn transfers(c: &mut Criterion) {
    let h = Harness::new(genesis(params(0)));
    let txs: Vec<_> = (0..BATCH)
        .map(|n| {
            let to = id(OTHER);
            signed(
                CLIENT,
                n,
                Action::Transfer(Transfer {
                    to,
                    amount: Amount(1),
                }),
            )
        })
        .collect();
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("transfer", |b| {
        b.iter_batched(
            || h.state.clone(),
            |mut state: State| {
                for tx in &txs {
                    black_box(state.apply(&h.ctx(), tx).unwrap());
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn lifecycles(c: &mut Criterion) {
    let h = Harness::new(genesis(params(1_000_000)));
    let spec = JobSpec::tiny();
    let trace = Trace::new(&spec, None);
    let jobs = 200u64;
    let mut txs = Vec::new();
    for n in 0..jobs {
        let open = signed(CLIENT, n, Action::OpenJob(spec.open_job()));
        let job = JobId::from(tx_hash(open.signed()));
        let commit: CommitResult = trace.commit(job);
        txs.push(open);
        txs.push(signed(PROVIDER, n, Action::CommitResult(commit)));
        let verdict = Verdict {
            job,
            outcome: VerdictOutcome::Agree,
        };
        txs.push(signed(CHECKER, n, Action::Verdict(verdict)));
    }
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(jobs));
    group.bench_function("job_lifecycle", |b| {
        b.iter_batched(
            || h.state.clone(),
            |mut state: State| {
                for tx in &txs {
                    black_box(state.apply(&h.ctx(), tx).unwrap());
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, transfers, lifecycles);
criterion_main!(benches);
