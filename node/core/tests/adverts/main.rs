//! The advert book: every admission rule and its penalty flag, expiry, eviction when full,
//! and the gateway's pick (ranking, price cap, exclusion, eligibility), plus a property test
//! of its bound and freshness. Ledger states are built from a genesis and real transactions.

use std::sync::OnceLock;

use attest_contracts_sim::{Ctx, Genesis, JobPhase, Params, StakeStatus, State};
use attest_core::market::book::{
    AdvertBook, AdvertError, Inserted, MAX_ADVERT_TTL_MS, MAX_CLOCK_SKEW_MS, MAX_PROVIDERS,
    NoProvider, Offer, Reputation, Request,
};
use attest_protocol::encoding::{Canonical, encode};
use attest_protocol::tx::{Action, CommitResult, EquivocationEvidence, OpenJob, Unstake};
use attest_protocol::workload::{self, execute};
use attest_protocol::{
    AccountId, Amount, BlockHash, BoundedVec, Bytes, CapacityAdvert, ChainId, DeviceName, Height,
    JobId, ModelId, Round, SecretKey, Signed, Tx, Verified, Vote, VoteKind, tx_hash,
};

mod admission;
mod matching;
mod properties;

const DEVICES: &[&str] = &["h100", "wse-3"];
const NOW: u64 = 1_700_000_000_000;
const TINY: &str = "attest-tiny-1b";
const BASE: &str = "attest-base-8b";
const CLIENT: u8 = 1;
/// Providers are accounts 10..=17, each staked with its node key.
const PROVIDERS: std::ops::RangeInclusive<u8> = 10..=17;
const UNSTAKED: u8 = 50;

/// Keys are derived once per process: derivation is a scalar multiplication.
fn keys() -> &'static [SecretKey] {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    KEYS.get_or_init(|| (0..=255u8).map(|n| SecretKey::from_seed([n; 32])).collect())
}

fn key(n: u8) -> SecretKey {
    keys()[usize::from(n)].clone()
}

fn id(n: u8) -> AccountId {
    keys()[usize::from(n)].public()
}

fn node_key(n: u8) -> SecretKey {
    key(n.wrapping_add(100))
}

fn chain() -> ChainId {
    ChainId::new("attest-test").expect("valid chain id")
}

fn tokens(n: u64) -> Amount {
    Amount::tokens(n).expect("small amount")
}

fn model(name: &str) -> ModelId {
    ModelId::new(name).expect("model id")
}

fn genesis_with(params: Params, stakes: &[(u8, Amount)]) -> Genesis {
    Genesis {
        chain_id: chain(),
        params,
        // Providers pay fees for their commits and unstakes.
        balances: std::iter::once((id(CLIENT), tokens(1_000)))
            .chain(
                stakes
                    .iter()
                    .filter(|(n, _)| *n != CLIENT)
                    .map(|(n, _)| (id(*n), tokens(10))),
            )
            .collect(),
        stakes: stakes
            .iter()
            .map(|(n, amount)| {
                (
                    id(*n),
                    node_key(*n).public(),
                    *amount,
                    attest_protocol::tx::Capability {
                        device: attest_protocol::DeviceName::new("cpu").unwrap(),
                        memory_bytes: 256_000_000_000,
                    },
                )
            })
            .collect(),
    }
}

/// Every provider staked at 200 tokens (the minimum is 100); no spot-checks, so jobs settle
/// without a checker.
fn state() -> State {
    let stakes: Vec<(u8, Amount)> = PROVIDERS.map(|n| (n, tokens(200))).collect();
    let params = Params {
        check_probability_ppm: 0,
        ..Params::default()
    };
    State::from_genesis(&genesis_with(params, &stakes)).expect("valid genesis")
}

/// An advert by provider `n`: one slot of the tiny model on an h100, live for 30 s.
fn terms(n: u8) -> CapacityAdvert {
    CapacityAdvert {
        node: node_key(n).public(),
        device: DeviceName::new("h100").expect("device"),
        models: BoundedVec::new(vec![model(TINY)]).expect("one model"),
        free_slots: 1,
        price_per_token: Amount(1_000),
        tokens_per_sec_milli: 50_000,
        expires_at_ms: NOW + 30_000,
        seq: 1,
    }
}

fn signed(n: u8, body: CapacityAdvert) -> Signed<CapacityAdvert> {
    Signed::sign(&chain(), &key(n), body)
}

fn verified(n: u8, body: CapacityAdvert) -> Verified<CapacityAdvert> {
    signed(n, body).verify(&chain()).expect("own signature")
}

fn book() -> AdvertBook {
    AdvertBook::new(DEVICES)
}

fn request(cap: Amount) -> Request {
    Request {
        model: model(TINY),
        max_price_per_token: cap,
        exclude: Some(id(CLIENT)),
    }
}

fn insert_err(state: &State, n: u8, body: CapacityAdvert) -> AdvertError {
    book()
        .insert(NOW, verified(n, body), state)
        .expect_err("refused")
}

/// Drives a ledger state with real transactions, block by block.
struct Ledger {
    state: State,
    height: Height,
}

impl Ledger {
    fn new(state: State) -> Self {
        Self {
            state,
            height: Height(1),
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            height: self.height,
            time_ms: self.height.0 * 1_000,
            block_hash: BlockHash([7; 32]),
            proposer: id(CLIENT),
        }
    }

    fn tx(&self, who: u8, action: Action) -> Verified<Tx> {
        let nonce = self.state.account(&id(who)).nonce;
        let fee = self.state.params().min_fee;
        Signed::sign(&chain(), &key(who), Tx { nonce, fee, action })
            .verify(&chain())
            .expect("own signature")
    }

    fn send(&mut self, who: u8, action: Action) -> Verified<Tx> {
        let tx = self.tx(who, action);
        let ctx = self.ctx();
        self.state.apply(&ctx, &tx).expect("transaction applies");
        tx
    }

    fn next_block(&mut self) {
        let ctx = self.ctx();
        self.state.end_block(&ctx);
        self.height = self.height.next();
    }

    /// Opens a tiny job from the client to `provider`; returns its id.
    fn open(&mut self, provider: u8) -> JobId {
        let open = OpenJob {
            model: model(TINY),
            input: Bytes::new(b"hi".to_vec()).expect("small input"),
            max_tokens: 2,
            provider: id(provider),
            device: DeviceName::new("h100").expect("device"),
            price_per_token: Amount(1_000),
            deadline_ms: 5_000,
            check: attest_protocol::tx::CheckLevel::Random,
        };
        let tx = self.send(CLIENT, Action::OpenJob(open));
        JobId::from(tx_hash(tx.signed()))
    }

    fn run_until(&mut self, done: impl Fn(&State) -> bool) {
        for _ in 0..100 {
            if done(&self.state) {
                return;
            }
            self.next_block();
        }
        panic!("the ledger never reached the expected state");
    }

    /// A job `provider` serves honestly until it settles.
    fn settle_job(&mut self, provider: u8) {
        let job = self.open(provider);
        self.next_block();
        let spec = workload::Job::new(TINY, b"hi", 2).expect("valid job");
        let result = CommitResult::from_execution(job, &execute(&spec));
        self.send(provider, Action::CommitResult(result));
        self.run_until(|s| s.job(&job).is_some_and(|j| j.phase == JobPhase::Settled));
    }

    /// A job `provider` never commits: it is penalised when the deadline passes.
    fn miss_job(&mut self, provider: u8) {
        let job = self.open(provider);
        self.run_until(|s| s.job(&job).is_some_and(|j| j.phase.is_final()));
    }

    /// Evidence of two conflicting prevotes by `who`: it is slashed and jailed.
    fn jail(&mut self, who: u8) {
        let vote = |b: u8| Vote {
            height: Height(1),
            round: Round(0),
            kind: VoteKind::Prevote,
            block: Some(BlockHash([b; 32])),
        };
        let evidence = EquivocationEvidence {
            first: Signed::sign(&chain(), &key(who), vote(1)),
            second: Signed::sign(&chain(), &key(who), vote(2)),
        };
        self.send(CLIENT, Action::Equivocation(Box::new(evidence)));
    }
}

fn expiring(n: u8, expires_at_ms: u64) -> Verified<CapacityAdvert> {
    verified(
        n,
        CapacityAdvert {
            expires_at_ms,
            ..terms(n)
        },
    )
}

fn priced(n: u8, price: u64, tps: u64) -> Verified<CapacityAdvert> {
    verified(
        n,
        CapacityAdvert {
            price_per_token: Amount(price),
            tokens_per_sec_milli: tps,
            ..terms(n)
        },
    )
}

fn pick(book: &AdvertBook, state: &State, cap: u64) -> Result<Offer, NoProvider> {
    book.pick(NOW, &request(Amount(cap)), state)
}
