//! The cost of one block against the size of the live state: a chain whose state holds
//! 10^3 or 10^6 entries (accounts funded at genesis) proposes, checks and commits blocks of
//! 200 transfers. With an incremental state root and speculative execution on the state the
//! two should cost the same; the bound is a ratio of at most 1.2. Prints the median
//! per-block time of each phase over the blocks of one run, and the ratio. Asserts nothing.
//!
//! `cargo bench -p attest-chain --bench block`

use std::time::{Duration, Instant};

use attest_chain::{Chain, GenesisFile, solo_certificate};
use attest_contracts_sim::Params;
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::{Amount, ChainId, Nonce, SecretKey, Signed};

const SENDERS: usize = 200;
const BLOCKS: u64 = 30;

struct Phases {
    build: Duration,
    check: Duration,
    commit: Duration,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run(entries: usize) -> Phases {
    let chain_id = ChainId::new("bench").expect("valid id");
    let validator = SecretKey::from_seed([1; 32]);
    let node = SecretKey::from_seed([2; 32]);
    let senders: Vec<SecretKey> = (0..SENDERS)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect();
    let mut balances: Vec<_> = senders
        .iter()
        .map(|k| (k.public(), Amount(1_000_000_000)))
        .collect();
    // Filler accounts: the history a long-lived chain's state would hold.
    // (Any 32 bytes that decode as a curve point make an account id; about half do.)
    let mut i = 0u64;
    while balances.len() < entries {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b[31] = 0x2a;
        i += 1;
        if let Ok(id) = attest_protocol::PublicKey::from_bytes(b) {
            balances.push((id, Amount(1)));
        }
    }
    let genesis = GenesisFile::new(
        chain_id.clone(),
        1_000,
        Params::default(),
        balances,
        vec![(
            validator.public(),
            node.public(),
            Amount(1_000_000_000),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        )],
    );
    let started = Instant::now();
    let mut chain = Chain::new(&genesis).expect("valid genesis");
    eprintln!(
        "  {entries} entries: genesis state built in {:?}",
        started.elapsed()
    );
    let to = SecretKey::from_seed([9; 32]).public();
    let fee = Params::default().min_fee;
    let (mut build, mut check, mut commit) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..BLOCKS {
        let txs: Vec<_> = senders
            .iter()
            .map(|k| {
                let body = Tx {
                    nonce: Nonce(n),
                    fee,
                    action: Action::Transfer(Transfer {
                        to,
                        amount: Amount(1),
                    }),
                };
                Signed::sign(&chain_id, k, body)
                    .verify(&chain_id)
                    .expect("own signature")
            })
            .collect();
        let now = 2_000 + n * 1_000;
        let t = Instant::now();
        let (block, _) = chain.build_block(validator.public(), now, txs);
        build.push(t.elapsed());
        assert_eq!(block.txs.len(), SENDERS, "every transfer applies");
        let t = Instant::now();
        let applied = chain
            .check_proposal(&block, now, &|_| None)
            .expect("own block is valid");
        check.push(t.elapsed());
        let cert =
            solo_certificate(&chain, &validator, &block).expect("the only validator is a quorum");
        let t = Instant::now();
        chain
            .commit(&block, cert, applied)
            .expect("validators remain");
        commit.push(t.elapsed());
    }
    Phases {
        build: median(build),
        check: median(check),
        commit: median(commit),
    }
}

fn main() {
    let small = run(1_000);
    let large = run(1_000_000);
    let total = |p: &Phases| p.build + p.check + p.commit;
    for (name, p) in [("10^3 entries", &small), ("10^6 entries", &large)] {
        println!(
            "{name}: per block (200 transfers) build {:?}, check {:?}, commit {:?}, total {:?}",
            p.build,
            p.check,
            p.commit,
            total(p)
        );
    }
    println!(
        "ratio 10^6 / 10^3: {:.2}",
        total(&large).as_secs_f64() / total(&small).as_secs_f64()
    );
}
