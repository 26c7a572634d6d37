//! Tests of `attest_core::store`: one suite run against `MemStore` and `SledStore`, sled-only
//! tests of durability across a restart and a crash, corruption written straight into the sled
//! trees, and a model-based property test against a `BTreeMap`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use attest_consensus::{LockRecord, PolkaCert};
use attest_core::store::{GenesisId, MemStore, Store, StoreError};
use attest_node::sled_store::SledStore;
use attest_protocol::{
    Block, BlockHash, BlockHeader, BoundedVec, Canonical, ChainId, CommitCertificate, CommitSig,
    Hash, Height, Proposal, Round, SecretKey, Signed, Vote, VoteKind,
};
use proptest::prelude::*;

/// Heights the fixture chain covers.
const CHAIN_LEN: u64 = 10;

fn chain_id() -> ChainId {
    ChainId::new("attest-store-test").expect("valid chain id")
}

fn genesis() -> GenesisId {
    GenesisId {
        chain_id: chain_id(),
        hash: Hash([7; 32]),
    }
}

fn validators() -> Vec<SecretKey> {
    (1..=4u8).map(|i| SecretKey::from_seed([i; 32])).collect()
}

/// A block at `height` after `prev`, and a certificate signed by every validator. `variant`
/// changes the timestamp, so variants at one height are different blocks.
fn make_block(
    chain: &ChainId,
    height: u64,
    prev: Option<&(Block, CommitCertificate)>,
    variant: u64,
) -> (Block, CommitCertificate) {
    let keys = validators();
    let last = prev.map(|(_, c)| c.clone());
    let header = BlockHeader {
        chain_id: chain.clone(),
        height: Height(height),
        prev: prev.map(|(b, _)| b.hash()).unwrap_or_default(),
        proposer: keys[0].public(),
        time_ms: 1_000 * height + variant,
        tx_root: Block::tx_root(&[]),
        state_root: Hash([height as u8; 32]),
        last_commit: Block::last_commit_hash(last.as_ref()),
    };
    let block = Block {
        header,
        txs: BoundedVec::default(),
        last_commit: last,
    };
    let mut cert = CommitCertificate {
        height: Height(height),
        round: Round(0),
        block: block.hash(),
        signatures: BoundedVec::default(),
    };
    let mut sigs: Vec<CommitSig> = keys
        .iter()
        .map(|k| CommitSig {
            validator: k.public(),
            signature: Signed::sign(chain, k, cert.vote()).signature,
        })
        .collect();
    sigs.sort_by_key(|s| s.validator);
    cert.signatures = BoundedVec::new(sigs).expect("4 validators fit");
    (block, cert)
}

/// The fixture: a chain of `CHAIN_LEN` blocks and, at each height, a different (fork) block.
struct Fixture {
    chain: Vec<(Block, CommitCertificate)>,
    forks: Vec<(Block, CommitCertificate)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let id = chain_id();
        let mut chain: Vec<(Block, CommitCertificate)> = Vec::new();
        let mut forks = Vec::new();
        for h in 1..=CHAIN_LEN {
            forks.push(make_block(&id, h, chain.last(), 1));
            let next = make_block(&id, h, chain.last(), 0);
            chain.push(next);
        }
        Fixture { chain, forks }
    })
}

/// The fixture's chain block at `height` (from 1).
fn at(height: u64) -> &'static (Block, CommitCertificate) {
    &fixture().chain[height as usize - 1]
}

fn fork(height: u64) -> &'static (Block, CommitCertificate) {
    &fixture().forks[height as usize - 1]
}

fn put(store: &mut impl Store, height: u64) -> Result<(), StoreError> {
    let (b, c) = at(height);
    store.put_block(b, c)
}

fn put_chain(store: &mut impl Store, to: u64) {
    for h in 1..=to {
        put(store, h).expect("contiguous put succeeds");
    }
}

fn vote(height: u64, round: u32, kind: VoteKind, block: Option<BlockHash>) -> Signed<Vote> {
    let body = Vote {
        height: Height(height),
        round: Round(round),
        kind,
        block,
    };
    Signed::sign(&chain_id(), &validators()[0], body)
}

fn heights(store: &impl Store, from: u64, to: u64) -> Vec<u64> {
    store
        .blocks(Height(from)..=Height(to))
        .map(|r| r.expect("readable").0.header.height.0)
        .collect()
}

/// `Store` is object-safe, so the shell can hold a `Box<dyn Store + Send>`.
#[allow(dead_code)]
fn store_is_object_safe(_: &mut (dyn Store + Send)) {}

/// How the suite creates a store and restarts it.
trait Harness {
    type S: Store + std::fmt::Debug;
    fn create(&mut self) -> Self::S;
    /// Stops `store` as a crash would (everything acknowledged kept) and opens it again.
    fn reopen(&mut self, store: Self::S, genesis: &GenesisId) -> Result<Self::S, StoreError>;
}

struct Mem;

impl Harness for Mem {
    type S = MemStore;
    fn create(&mut self) -> MemStore {
        MemStore::new(genesis())
    }
    fn reopen(&mut self, store: MemStore, genesis: &GenesisId) -> Result<MemStore, StoreError> {
        let snapshot = store.clone();
        drop(store);
        snapshot.reopen(genesis)
    }
}

struct Disk(tempfile::TempDir);

impl Disk {
    fn new() -> Self {
        Disk(tempfile::tempdir().expect("temp dir"))
    }
}

impl Harness for Disk {
    type S = SledStore;
    fn create(&mut self) -> SledStore {
        SledStore::open(self.0.path(), &genesis()).expect("open a new store")
    }
    fn reopen(&mut self, store: SledStore, genesis: &GenesisId) -> Result<SledStore, StoreError> {
        drop(store);
        SledStore::open(self.0.path(), genesis)
    }
}

fn round_trip<H: Harness>(h: &mut H) {
    let mut store = h.create();
    assert_eq!(store.latest_height(), Height(0));
    assert_eq!(store.genesis(), &genesis());
    put_chain(&mut store, 5);
    assert_eq!(store.latest_height(), Height(5));
    for height in 1..=5 {
        let (b, c) = at(height);
        assert_eq!(store.block(Height(height)).unwrap().as_ref(), Some(b));
        assert_eq!(store.certificate(Height(height)).unwrap().as_ref(), Some(c));
    }
    assert_eq!(store.block(Height(0)).unwrap(), None);
    assert_eq!(store.block(Height(6)).unwrap(), None);
    assert_eq!(store.certificate(Height(6)).unwrap(), None);
}

fn contiguity_enforced<H: Harness>(h: &mut H) {
    let mut store = h.create();
    let gap = put(&mut store, 2).unwrap_err();
    assert!(
        matches!(
            gap,
            StoreError::NotContiguous {
                height: Height(2),
                latest: Height(0)
            }
        ),
        "{gap}"
    );
    put(&mut store, 1).unwrap();
    assert!(matches!(
        put(&mut store, 3),
        Err(StoreError::NotContiguous { .. })
    ));
    // A block claiming height 0 (the genesis state) is never stored.
    let (mut b0, mut c0) = at(1).clone();
    b0.header.height = Height(0);
    (c0.height, c0.block) = (Height(0), b0.hash());
    assert!(matches!(
        store.put_block(&b0, &c0),
        Err(StoreError::NotContiguous { .. })
    ));
    assert_eq!(store.latest_height(), Height(1));
    assert_eq!(store.block(Height(2)).unwrap(), None);
}

fn put_checks_arguments<H: Harness>(h: &mut H) {
    let mut store = h.create();
    put_chain(&mut store, 2);
    let (b3, _) = at(3);
    let (_, fork_cert3) = fork(3);
    let err = store.put_block(b3, fork_cert3).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::CertificateMismatch {
                height: Height(3),
                ..
            }
        ),
        "{err}"
    );
    let other = ChainId::new("another-chain").unwrap();
    let (ob, oc) = make_block(&other, 3, Some(at(2)), 0);
    let err = store.put_block(&ob, &oc).unwrap_err();
    assert!(matches!(err, StoreError::WrongChain { .. }), "{err}");
    // The same block again is a no-op; a different block at a stored height is refused.
    put(&mut store, 2).unwrap();
    let (fb, fc) = fork(2);
    let err = store.put_block(fb, fc).unwrap_err();
    assert!(
        matches!(&err, StoreError::ConflictingBlock { height: Height(2), stored, offered }
            if *stored == at(2).0.hash() && *offered == fb.hash()),
        "{err}"
    );
    assert_eq!(store.block(Height(2)).unwrap().as_ref(), Some(&at(2).0));
    assert_eq!(store.latest_height(), Height(2));
}

fn range_reads<H: Harness>(h: &mut H) {
    let mut store = h.create();
    assert!(heights(&store, 1, 10).is_empty());
    put_chain(&mut store, 5);
    assert_eq!(heights(&store, 2, 4), vec![2, 3, 4]);
    assert_eq!(heights(&store, 0, u64::MAX), vec![1, 2, 3, 4, 5]);
    assert!(heights(&store, 4, 2).is_empty());
    assert!(heights(&store, 6, 9).is_empty());
    let all: Vec<_> = store
        .blocks(Height(1)..=Height(5))
        .map(Result::unwrap)
        .collect();
    assert_eq!(all, fixture().chain[..5].to_vec());
}

fn votes_round_trip_and_pruning<H: Harness>(h: &mut H) {
    let mut store = h.create();
    let target = Some(at(1).0.hash());
    let mut expected = BTreeMap::new();
    // Recorded out of order; read back by round, then prevote before precommit.
    for height in [3, 1, 2] {
        for round in [1, 0] {
            for kind in [VoteKind::Precommit, VoteKind::Prevote] {
                let v = vote(height, round, kind, target);
                store.record_own_vote(&v).unwrap();
                expected
                    .entry(height)
                    .or_insert_with(Vec::new)
                    .push(((round, kind), v));
            }
        }
    }
    for (height, mut votes) in expected.clone() {
        votes.sort_by_key(|(k, _)| *k);
        let votes: Vec<_> = votes.into_iter().map(|(_, v)| v).collect();
        assert_eq!(store.own_votes(Height(height)).unwrap(), votes);
    }
    assert!(store.own_votes(Height(4)).unwrap().is_empty());
    // Idempotent for the same vote; a different vote for the same slot is equivocation.
    store
        .record_own_vote(&vote(2, 0, VoteKind::Prevote, target))
        .unwrap();
    let err = store
        .record_own_vote(&vote(2, 0, VoteKind::Prevote, None))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConflictingOwnVote { height: Height(2), stored, offered: None, .. }
            if stored == target),
        "{err}"
    );
    assert_eq!(store.own_votes(Height(2)).unwrap().len(), 4);
    store.prune_own_votes_below(Height(3)).unwrap();
    assert!(store.own_votes(Height(1)).unwrap().is_empty());
    assert!(store.own_votes(Height(2)).unwrap().is_empty());
    assert_eq!(store.own_votes(Height(3)).unwrap().len(), 4);
}

fn reopen_keeps_everything<H: Harness>(h: &mut H) {
    let mut store = h.create();
    put_chain(&mut store, 4);
    let v = vote(5, 2, VoteKind::Precommit, Some(at(5).0.hash()));
    store.record_own_vote(&v).unwrap();
    let mut store = h.reopen(store, &genesis()).expect("reopen");
    assert_eq!(store.latest_height(), Height(4));
    assert_eq!(heights(&store, 1, 10), vec![1, 2, 3, 4]);
    assert_eq!(
        store.certificate(Height(4)).unwrap().as_ref(),
        Some(&at(4).1)
    );
    assert_eq!(store.own_votes(Height(5)).unwrap(), vec![v]);
    // After a restart the WAL still refuses a conflicting vote.
    let nil = vote(5, 2, VoteKind::Precommit, None);
    assert!(matches!(
        store.record_own_vote(&nil),
        Err(StoreError::ConflictingOwnVote { .. })
    ));
    put(&mut store, 5).unwrap();
    assert_eq!(store.latest_height(), Height(5));
}

/// A lock record: block `at(height)` proposed by validator 0 in `round`, with a polka of
/// every fixture validator's prevote.
fn lock(height: u64, round: u32) -> LockRecord {
    let block = at(height).0.clone();
    let hash = block.hash();
    let proposal = Proposal {
        height: Height(height),
        round: Round(round),
        pol_round: None,
        block,
    };
    let mut prevotes: Vec<Signed<Vote>> = validators()
        .iter()
        .map(|k| {
            let body = Vote {
                height: Height(height),
                round: Round(round),
                kind: VoteKind::Prevote,
                block: Some(hash),
            };
            Signed::sign(&chain_id(), k, body)
        })
        .collect();
    prevotes.sort_by_key(|v| v.signer);
    LockRecord {
        proposal: Signed::sign(&chain_id(), &validators()[0], proposal),
        polka: PolkaCert {
            height: Height(height),
            round: Round(round),
            block: hash,
            prevotes: BoundedVec::new(prevotes).unwrap(),
        },
    }
}

fn locks_round_trip_reopen_and_pruning<H: Harness>(h: &mut H) {
    let mut store = h.create();
    for (height, round) in [(3, 1), (2, 0), (3, 0)] {
        store.record_own_lock(&lock(height, round)).unwrap();
    }
    // The first record of a slot stays.
    let mut other = lock(3, 1);
    other.proposal.body.pol_round = Some(Round(0));
    store.record_own_lock(&other).unwrap();
    let store = h.reopen(store, &genesis()).expect("reopen");
    assert_eq!(
        store.own_locks(Height(3)).unwrap(),
        vec![lock(3, 0), lock(3, 1)]
    );
    assert_eq!(store.own_locks(Height(2)).unwrap(), vec![lock(2, 0)]);
    assert!(store.own_locks(Height(4)).unwrap().is_empty());
    let mut store = store;
    store.prune_own_votes_below(Height(3)).unwrap();
    assert!(store.own_locks(Height(2)).unwrap().is_empty());
    assert_eq!(store.own_locks(Height(3)).unwrap().len(), 2);
}

fn genesis_mismatch_on_reopen<H: Harness>(h: &mut H) {
    let mut store = h.create();
    put_chain(&mut store, 1);
    let other = GenesisId {
        chain_id: chain_id(),
        hash: Hash([9; 32]),
    };
    let err = h.reopen(store, &other).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, StoreError::GenesisMismatch { stored, expected, .. }
            if **stored == genesis() && **expected == other),
        "{msg}"
    );
    assert!(msg.contains(&genesis().hash.to_string()), "{msg}");
    assert!(msg.contains(&other.hash.to_string()), "{msg}");
}

/// A store begun from a state-synced base at height 3 holds the anchor (block 4) and takes
/// blocks from 5 on; a reopen keeps the base; a second base, or a base on a store with blocks,
/// is refused.
fn a_state_synced_base<H: Harness>(h: &mut H) {
    let mut store = h.create();
    let (anchor, cert) = at(4);
    // The anchor must be the block after the base.
    assert!(matches!(
        store.put_base(Height(2), b"snap", anchor, cert),
        Err(StoreError::NotContiguous { .. })
    ));
    store.put_base(Height(3), b"snap", anchor, cert).unwrap();
    assert_eq!(store.base_height(), Height(3));
    assert_eq!(store.latest_height(), Height(4));
    assert_eq!(
        store.base_snapshot().unwrap().as_deref(),
        Some(&b"snap"[..])
    );
    assert_eq!(store.block(Height(3)).unwrap(), None, "below the base");
    assert_eq!(store.block(Height(4)).unwrap().as_ref(), Some(anchor));
    assert!(matches!(
        store.put_base(Height(3), b"snap", anchor, cert),
        Err(StoreError::NotEmpty { .. })
    ));
    assert!(matches!(
        put(&mut store, 6),
        Err(StoreError::NotContiguous { .. })
    ));
    put(&mut store, 5).unwrap();
    assert_eq!(heights(&store, 1, 10), vec![4, 5]);
    let store = h.reopen(store, &genesis()).unwrap();
    assert_eq!(store.base_height(), Height(3));
    assert_eq!(store.latest_height(), Height(5));
    assert_eq!(
        store.base_snapshot().unwrap().as_deref(),
        Some(&b"snap"[..])
    );

    drop(store);
    let mut full = h.create();
    put_chain(&mut full, 1);
    assert!(matches!(
        full.put_base(Height(3), b"snap", anchor, cert),
        Err(StoreError::NotEmpty { .. })
    ));
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod mem_store {
            $(#[test] fn $name() { super::$name(&mut super::Mem) })*
        }
        mod sled_store {
            $(#[test] fn $name() { super::$name(&mut super::Disk::new()) })*
        }
    };
}

suite!(
    round_trip,
    contiguity_enforced,
    put_checks_arguments,
    range_reads,
    votes_round_trip_and_pruning,
    reopen_keeps_everything,
    locks_round_trip_reopen_and_pruning,
    genesis_mismatch_on_reopen,
    a_state_synced_base,
);

// ---- sled only: a real crash ----

/// Set in the child process of `sled_acknowledged_writes_survive_abort`: the directory to
/// write into before aborting.
const CRASH_DIR_ENV: &str = "ATTEST_STORE_CRASH_DIR";

/// Writes blocks and votes, then aborts without any destructor or flush running, as a
/// `kill -9` or power cut would stop the node right after it acknowledged them.
fn crash_child(dir: &Path) -> ! {
    let mut store = SledStore::open(dir, &genesis()).expect("child opens the store");
    put_chain(&mut store, 3);
    store
        .record_own_vote(&vote(4, 0, VoteKind::Prevote, None))
        .expect("vote recorded");
    std::process::abort();
}

/// Runs the test `name` of this binary again as a child with `env` naming `dir`; the child
/// writes there and must end in `abort()`.
fn run_aborting_child(name: &str, env: &str, dir: &Path) {
    use std::os::unix::process::ExitStatusExt;
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(env, dir)
        .status()
        .expect("child runs");
    assert_eq!(
        status.signal(),
        Some(6),
        "the child must reach abort(): {status}"
    );
}

#[test]
fn sled_acknowledged_writes_survive_abort() {
    if let Some(dir) = std::env::var_os(CRASH_DIR_ENV) {
        crash_child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    run_aborting_child(
        "sled_acknowledged_writes_survive_abort",
        CRASH_DIR_ENV,
        dir.path(),
    );
    let store = SledStore::open(dir.path(), &genesis()).expect("reopen after the crash");
    assert_eq!(store.latest_height(), Height(3));
    assert_eq!(heights(&store, 1, 10), vec![1, 2, 3]);
    assert_eq!(
        store.own_votes(Height(4)).unwrap(),
        vec![vote(4, 0, VoteKind::Prevote, None)]
    );
}

/// Writes grouped with `begin_group`/`end_group` (what the shell does with back-to-back
/// writes) are hidden from readers until the group ends, and durable once it has: a child
/// writes a group and aborts right after `end_group`.
#[test]
fn sled_grouped_writes_are_shown_at_the_end_and_survive_abort() {
    if let Some(dir) = std::env::var_os(GROUP_CRASH_DIR_ENV) {
        let mut store = SledStore::open(Path::new(&dir), &genesis()).expect("child opens");
        store.begin_group();
        put_chain(&mut store, 3);
        store
            .record_own_vote(&vote(4, 0, VoteKind::Prevote, None))
            .expect("vote recorded");
        store.end_group().expect("the group's flush");
        std::process::abort();
    }
    // Shown only at the end.
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), &genesis()).unwrap();
    let reader = store.reader();
    store.begin_group();
    put_chain(&mut store, 2);
    assert_eq!(
        reader.latest_height(),
        Height(0),
        "shown before the group's flush"
    );
    store.end_group().unwrap();
    assert_eq!(reader.latest_height(), Height(2));
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    run_aborting_child(
        "sled_grouped_writes_are_shown_at_the_end_and_survive_abort",
        GROUP_CRASH_DIR_ENV,
        dir.path(),
    );
    let store = SledStore::open(dir.path(), &genesis()).expect("reopen after the crash");
    assert_eq!(heights(&store, 1, 10), vec![1, 2, 3]);
    assert_eq!(
        store.own_votes(Height(4)).unwrap(),
        vec![vote(4, 0, VoteKind::Prevote, None)]
    );
}

const GROUP_CRASH_DIR_ENV: &str = "ATTEST_STORE_GROUP_CRASH_DIR";

/// The history a block writes is read the same through the store and through a
/// `HistoryReader` handed out before the write (the API's reader off the loop).
#[test]
fn sled_history_is_read_the_same_off_the_loop() {
    use attest_core::history::{HistoryBatch, Role};
    use attest_protocol::{JobId, TxHash};
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), &genesis()).unwrap();
    let reader = store.history_reader();
    let who = validators()[0].public();
    let (job, tx) = (JobId([7; 32]), TxHash([9; 32]));
    assert_eq!(reader.tx_location(&tx).unwrap(), None);
    let mut batch = HistoryBatch {
        height: Height(3),
        ..HistoryBatch::default()
    };
    batch.parts.push((who, Role::Provider, job));
    batch.txs = vec![TxHash([1; 32]), tx];
    store.begin_group();
    store.put_history(&batch).unwrap();
    store.end_group().unwrap();
    assert_eq!(reader.tx_location(&tx).unwrap(), Some((Height(3), 1)));
    assert_eq!(store.tx_location(&tx).unwrap(), Some((Height(3), 1)));
    let parts = vec![(Height(3), Role::Provider, job)];
    assert_eq!(reader.account_jobs(&who, 10).unwrap(), parts);
    assert_eq!(store.account_jobs(&who, 10).unwrap(), parts);
    assert_eq!(reader.final_job(&job).unwrap(), None);
    assert!(reader.slashes_of(&who, 10).unwrap().is_empty());
}

// ---- sled only: corruption written straight into the trees ----

/// A closed store in a temp dir holding chain blocks 1..=`blocks` and one vote at height 2.
fn closed_store(blocks: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), &genesis()).unwrap();
    put_chain(&mut store, blocks);
    store
        .record_own_vote(&vote(2, 0, VoteKind::Prevote, None))
        .unwrap();
    dir
}

/// Opens the sled database under the store, as an attacker or a bad disk would see it.
fn raw<R>(dir: &Path, f: impl FnOnce(&sled::Db) -> R) -> R {
    // Retried like `SledStore::open`: a just-dropped store's sled threads may hold the lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let db = loop {
        match sled::open(dir) {
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            opened => break opened.expect("raw open"),
        }
    };
    let out = f(&db);
    db.flush().expect("raw flush");
    out
}

/// Asserts what the raw tree holds under `key`: the store left corrupt data as it found it.
fn assert_raw(dir: &Path, tree: &str, key: &[u8], want: Option<&[u8]>) {
    assert_eq!(
        raw_get(dir, tree, key).as_deref(),
        want,
        "{tree} {}",
        hex::encode(key)
    );
}

fn raw_get(dir: &Path, tree: &str, key: &[u8]) -> Option<Vec<u8>> {
    raw(dir, |db| {
        db.open_tree(tree)
            .unwrap()
            .get(key)
            .unwrap()
            .map(|v| v.to_vec())
    })
}

fn raw_put(dir: &Path, tree: &str, key: &[u8], value: &[u8]) {
    raw(dir, |db| {
        db.open_tree(tree).unwrap().insert(key, value).unwrap()
    });
}

fn raw_remove(dir: &Path, tree: &str, key: &[u8]) {
    raw(dir, |db| db.open_tree(tree).unwrap().remove(key).unwrap());
}

fn key(h: u64) -> [u8; 8] {
    h.to_be_bytes()
}

/// Asserts `err` is corruption in `tree` at `height` and names the store's path.
fn assert_corrupt(err: &StoreError, dir: &Path, tree: &str, height: Option<u64>) {
    let msg = err.to_string();
    match err {
        StoreError::Corrupt {
            path,
            tree: t,
            height: h,
            ..
        } => {
            assert_eq!(path, dir, "{msg}");
            assert_eq!(*t, tree, "{msg}");
            assert_eq!(*h, height.map(Height), "{msg}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains(tree), "{msg}");
    if let Some(h) = height {
        assert!(msg.contains(&format!("height {h}")), "{msg}");
    }
}

const GARBAGE: &[u8] = b"\xff\xfenot a block";

#[test]
fn sled_garbage_block_below_latest_is_reported_and_kept() {
    let dir = closed_store(3);
    raw_put(dir.path(), SledStore::BLOCKS_TREE, &key(2), GARBAGE);
    let mut store = SledStore::open(dir.path(), &genesis()).expect("the latest entry is intact");
    let err = store.block(Height(2)).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::BLOCKS_TREE, Some(2));
    assert!(
        store.certificate(Height(2)).is_err(),
        "a certificate is checked against its block"
    );
    let mut replay = store.blocks(Height(1)..=Height(3));
    assert!(replay.next().unwrap().is_ok());
    assert!(replay.next().unwrap().is_err());
    assert!(
        replay.next().is_none(),
        "replay stops at the corrupt height"
    );
    drop(replay);
    // Re-putting that height must not paper over the damage.
    assert!(matches!(
        put(&mut store, 2),
        Err(StoreError::Corrupt { .. })
    ));
    drop(store);
    assert_raw(dir.path(), SledStore::BLOCKS_TREE, &key(2), Some(GARBAGE));
}

#[test]
fn sled_garbage_at_latest_height_fails_open() {
    let dir = closed_store(3);
    raw_put(dir.path(), SledStore::CERTIFICATES_TREE, &key(3), GARBAGE);
    let err = SledStore::open(dir.path(), &genesis()).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::CERTIFICATES_TREE, Some(3));
    assert_raw(
        dir.path(),
        SledStore::CERTIFICATES_TREE,
        &key(3),
        Some(GARBAGE),
    );
}

#[test]
fn sled_malformed_key_fails_open() {
    let dir = closed_store(2);
    // 0x61 sorts after every 8-byte key of a realistic height, so this is the "latest" key.
    raw_put(
        dir.path(),
        SledStore::BLOCKS_TREE,
        b"abc",
        &at(3).0.encode(),
    );
    let err = SledStore::open(dir.path(), &genesis()).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::BLOCKS_TREE, None);
    assert!(
        err.to_string().contains("616263"),
        "names the raw key: {err}"
    );
}

#[test]
fn sled_block_under_wrong_height_is_reported() {
    let dir = closed_store(3);
    raw_put(
        dir.path(),
        SledStore::BLOCKS_TREE,
        &key(2),
        &at(3).0.encode(),
    );
    let store = SledStore::open(dir.path(), &genesis()).unwrap();
    let err = store.block(Height(2)).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::BLOCKS_TREE, Some(2));
    assert!(err.to_string().contains("height 3"), "{err}");
}

#[test]
fn sled_certificate_for_another_block_is_reported() {
    let dir = closed_store(3);
    raw_put(
        dir.path(),
        SledStore::CERTIFICATES_TREE,
        &key(2),
        &fork(2).1.encode(),
    );
    let store = SledStore::open(dir.path(), &genesis()).unwrap();
    let err = store.certificate(Height(2)).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::CERTIFICATES_TREE, Some(2));
    assert!(
        err.to_string().contains(&fork(2).0.hash().to_string()),
        "{err}"
    );
}

#[test]
fn sled_gap_in_heights_is_reported_and_not_filled() {
    let dir = closed_store(3);
    for tree in [SledStore::BLOCKS_TREE, SledStore::CERTIFICATES_TREE] {
        raw_remove(dir.path(), tree, &key(2));
    }
    let mut store = SledStore::open(dir.path(), &genesis()).unwrap();
    assert_eq!(store.latest_height(), Height(3));
    let err = store.block(Height(2)).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::BLOCKS_TREE, Some(2));
    let replay: Vec<_> = store.blocks(Height(1)..=Height(3)).collect();
    assert_eq!(replay.len(), 2, "block 1, then the gap error, then nothing");
    assert!(replay[1].is_err());
    assert!(matches!(
        put(&mut store, 2),
        Err(StoreError::Corrupt { .. })
    ));
    drop(store);
    assert_raw(dir.path(), SledStore::BLOCKS_TREE, &key(2), None);
}

#[test]
fn sled_first_height_not_one_fails_open() {
    let dir = closed_store(2);
    for tree in [SledStore::BLOCKS_TREE, SledStore::CERTIFICATES_TREE] {
        raw_remove(dir.path(), tree, &key(1));
    }
    let err = SledStore::open(dir.path(), &genesis()).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::BLOCKS_TREE, Some(2));
}

#[test]
fn sled_missing_latest_certificate_fails_open() {
    let dir = closed_store(3);
    raw_remove(dir.path(), SledStore::CERTIFICATES_TREE, &key(3));
    let err = SledStore::open(dir.path(), &genesis()).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::CERTIFICATES_TREE, Some(2));
}

#[test]
fn sled_garbage_vote_is_reported_and_not_pruned() {
    let dir = closed_store(1);
    let mut vkey = key(2).to_vec();
    vkey.extend_from_slice(&[0, 0, 0, 0, 0]);
    raw_put(dir.path(), SledStore::VOTES_TREE, &vkey, GARBAGE);
    let mut store = SledStore::open(dir.path(), &genesis()).unwrap();
    let err = store.own_votes(Height(2)).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::VOTES_TREE, Some(2));
    let err = store.prune_own_votes_below(Height(3)).unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::VOTES_TREE, Some(2));
    // Recording over it is refused too: the slot is taken by bytes that do not decode.
    let err = store
        .record_own_vote(&vote(2, 0, VoteKind::Prevote, None))
        .unwrap_err();
    assert_corrupt(&err, dir.path(), SledStore::VOTES_TREE, Some(2));
    drop(store);
    assert_raw(dir.path(), SledStore::VOTES_TREE, &vkey, Some(GARBAGE));
}

#[test]
fn sled_missing_or_garbage_genesis_fails_open() {
    let dir = closed_store(1);
    let meta = SledStore::META_TREE;
    raw_put(dir.path(), meta, SledStore::GENESIS_KEY, GARBAGE);
    let err = SledStore::open(dir.path(), &genesis()).unwrap_err();
    assert_corrupt(&err, dir.path(), meta, None);
    raw_remove(dir.path(), meta, SledStore::GENESIS_KEY);
    let err = SledStore::open(dir.path(), &genesis()).unwrap_err();
    assert_corrupt(&err, dir.path(), meta, None);
    assert_raw(dir.path(), meta, SledStore::GENESIS_KEY, None);
}

// ---- model-based property test ----

#[derive(Debug, Clone)]
enum Op {
    Put {
        height: u64,
        fork: bool,
    },
    Read(u64),
    Range(u64, u64),
    Record {
        height: u64,
        round: u32,
        kind: VoteKind,
        target: u8,
    },
    OwnVotes(u64),
    Prune(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let height = 0..=CHAIN_LEN + 1;
    let kind = prop_oneof![Just(VoteKind::Prevote), Just(VoteKind::Precommit)];
    prop_oneof![
        4 => (1..=CHAIN_LEN, proptest::bool::weighted(0.2))
            .prop_map(|(height, fork)| Op::Put { height, fork }),
        2 => height.clone().prop_map(Op::Read),
        1 => (height.clone(), height).prop_map(|(a, b)| Op::Range(a, b)),
        3 => (1..=5u64, 0..3u32, kind, 0..3u8)
            .prop_map(|(height, round, kind, target)| Op::Record { height, round, kind, target }),
        1 => (0..=6u64).prop_map(Op::OwnVotes),
        1 => (0..=6u64).prop_map(Op::Prune),
        1 => Just(Op::Reopen),
    ]
}

/// The reference: what the store must hold.
#[derive(Default)]
struct Model {
    blocks: BTreeMap<u64, (Block, CommitCertificate)>,
    votes: BTreeMap<(u64, u32, VoteKind), Signed<Vote>>,
}

impl Model {
    fn latest(&self) -> u64 {
        self.blocks.keys().next_back().copied().unwrap_or(0)
    }
}

/// Applies a block operation to the store and the model and checks that they agree.
fn step_blocks(store: &mut impl Store, model: &mut Model, op: &Op) {
    match *op {
        Op::Put { height, fork: f } => {
            let (b, c) = if f { fork(height) } else { at(height) };
            let got = store.put_block(b, c);
            match model.blocks.get(&height) {
                Some((s, _)) if s.hash() == b.hash() => got.unwrap(),
                Some(_) => assert!(matches!(got, Err(StoreError::ConflictingBlock { .. }))),
                None if height == model.latest() + 1 => {
                    got.unwrap();
                    model.blocks.insert(height, (b.clone(), c.clone()));
                }
                None => assert!(matches!(got, Err(StoreError::NotContiguous { .. }))),
            }
        }
        Op::Read(height) => {
            let want = model.blocks.get(&height);
            let (block, cert) = (
                store.block(Height(height)),
                store.certificate(Height(height)),
            );
            assert_eq!(block.unwrap().as_ref(), want.map(|e| &e.0));
            assert_eq!(cert.unwrap().as_ref(), want.map(|e| &e.1));
        }
        Op::Range(a, b) => {
            let got: Vec<_> = store
                .blocks(Height(a)..=Height(b))
                .map(Result::unwrap)
                .collect();
            let want = model.blocks.iter().filter(|(h, _)| (a..=b).contains(*h));
            assert_eq!(got, want.map(|(_, e)| e.clone()).collect::<Vec<_>>());
        }
        _ => unreachable!("not a block operation"),
    }
}

/// Applies a vote operation to the store and the model and checks that they agree.
fn step_votes(store: &mut impl Store, model: &mut Model, op: &Op) {
    match *op {
        Op::Record {
            height,
            round,
            kind,
            target,
        } => {
            let hashes = [None, Some(at(height).0.hash()), Some(fork(height).0.hash())];
            let v = vote(height, round, kind, hashes[usize::from(target)]);
            let got = store.record_own_vote(&v);
            match model.votes.get(&(height, round, kind)) {
                Some(s) if *s == v => got.unwrap(),
                Some(_) => assert!(matches!(got, Err(StoreError::ConflictingOwnVote { .. }))),
                None => {
                    got.unwrap();
                    model.votes.insert((height, round, kind), v);
                }
            }
        }
        Op::OwnVotes(height) => {
            let want = model.votes.iter().filter(|(k, _)| k.0 == height);
            let want: Vec<_> = want.map(|(_, v)| v.clone()).collect();
            assert_eq!(store.own_votes(Height(height)).unwrap(), want);
        }
        Op::Prune(height) => {
            store.prune_own_votes_below(Height(height)).unwrap();
            model.votes.retain(|k, _| k.0 >= height);
        }
        _ => unreachable!("not a vote operation"),
    }
}

fn run_model<H: Harness>(h: &mut H, ops: &[Op]) {
    let mut store = h.create();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Put { .. } | Op::Read(_) | Op::Range(..) => step_blocks(&mut store, &mut model, op),
            Op::Reopen => store = h.reopen(store, &genesis()).unwrap(),
            _ => step_votes(&mut store, &mut model, op),
        }
        assert_eq!(store.latest_height(), Height(model.latest()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn mem_store_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(&mut Mem, &ops);
    }
}

proptest! {
    // Every put and vote flushes, and every case opens a new database: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn sled_store_agrees_with_model(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(&mut Disk::new(), &ops);
    }
}
