//! [`SledStore`]: the [`Store`] on disk, in one sled 0.34.7 database directory.
//!
//! Layout, one sled tree per kind of record, values in the protocol's canonical encoding:
//! - `blocks`: 8-byte big-endian height -> `Block`;
//! - `certificates`: 8-byte big-endian height -> `CommitCertificate`;
//! - `own_votes`: height (8 bytes BE) ++ round (4 bytes BE) ++ kind (1 byte: 0 prevote,
//!   1 precommit) -> `Signed<Vote>`;
//! - `own_locks`: height (8 bytes BE) ++ round (4 bytes BE) -> `LockRecord` (the proposal a
//!   validator precommitted, with its polka);
//! - `meta`: `genesis` -> the encoded [`GenesisId`].
//!
//! Big-endian keys make sled's byte order the numeric order, so the last key is the latest
//! height and a height's votes are one prefix scan, ordered by round then kind.
//!
//! Atomicity and durability: `put_block` writes the block and its certificate in one sled
//! transaction over the two trees (sled applies a multi-tree transaction as one unit in its
//! log, so a crash leaves both or neither) and then calls `flush`, which writes and fsyncs the
//! log before returning. Own votes are a single insert followed by `flush`. So one fsync per
//! block and one per own vote, never one per transaction in a block; and fewer when the shell
//! groups writes the core asks for back to back ([`Store::begin_group`]: a block with its
//! history, a lock with its precommit), which share one flush at the group's end, before
//! anything that depends on them is sent, and only then are their blocks shown to readers.
//!
//! This module must never rewrite or delete an entry it could not read: corrupt entries are
//! reported with [`StoreError::Corrupt`] and left in place.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attest_protocol::encoding::{decode_bounded, encode};
use attest_protocol::{Block, Canonical, CommitCertificate, Height, Signed, Vote, VoteKind};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use attest_consensus::LockRecord;
use attest_core::history::{FinalJob, HistoryBatch, Role, SlashEntry};
use attest_core::store::{BlockIter, CommittedBlock, GenesisId, Store, StoreError, check_put_args};
use attest_protocol::{AccountId, JobId, TxHash};

/// The longest encoded [`GenesisId`]: a 32-byte chain id with its length and a 32-byte hash.
/// Anything longer in the meta tree is corrupt and is refused unread.
const MAX_GENESIS_ID_BYTES: usize = 128;

/// Length of an `own_votes` key: height, round, kind.
const VOTE_KEY_LEN: usize = 13;

/// Length of an `own_locks` key: height, round.
const LOCK_KEY_LEN: usize = 12;

/// How long [`SledStore::open`] waits for sled's lock on the database file. After a store is
/// dropped, sled's background I/O threads can keep the file (and its lock) open for a few
/// milliseconds, so reopening in the same process (a restart in tests or in the node) can
/// briefly find it locked; sled's own test build blocks on the lock for the same reason. A
/// lock still held after this long belongs to another live process and is reported.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The most bytes a history value may have (a final job, whose input is dropped, is far
/// smaller).
const MAX_HISTORY_VALUE: usize = 64 * 1024;

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Client => 0,
        Role::Provider => 1,
        Role::Checker => 2,
    }
}

fn role_of(byte: u8) -> Option<Role> {
    match byte {
        0 => Some(Role::Client),
        1 => Some(Role::Provider),
        2 => Some(Role::Checker),
        _ => None,
    }
}

/// sled's page cache. Its default (1 GiB) lets a node's memory grow with its database for a
/// long time; the node reads recent blocks and history look-ups, which this holds easily.
/// Measured in `attest bench` soaks (4 nodes, 2026-12-04): with 64 MiB, node RSS 175-193 MB
/// after 8-9 minutes; with 8 MiB, 119-152 MB at the same point and the same jobs/s (109.7
/// against 106.0).
const CACHE_BYTES: u64 = 8 << 20;

/// A [`Store`] in a sled database directory. See the module documentation for the layout.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    /// The blocks and certificates trees, shared with every [`BlockReader`].
    trees: BlockTrees,
    /// `base` and `latest` as readers off the node loop see them: set after each write.
    shown: Arc<Shown>,
    votes: sled::Tree,
    locks: sled::Tree,
    meta: sled::Tree,
    /// The history trees, shared with every [`HistoryReader`] handed out.
    history: HistoryReader,
    genesis: GenesisId,
    /// The last stored height, kept in memory because every `put_block` needs it; set from
    /// the trees on open and advanced only after a successful flush.
    latest: Height,
    /// The height blocks start after (0, or a state-synced snapshot's), from the meta tree.
    base: Height,
    /// Inside a group of writes ([`Store::begin_group`]): flushes and showing wait for its end.
    grouping: bool,
    /// A write of the current group skipped its flush.
    unflushed: std::cell::Cell<bool>,
    /// A block of the current group is not shown to readers yet.
    unshown: bool,
}

/// The `base` and `latest` heights of a [`SledStore`] as its readers see them: set after the
/// blocks up to them are durable, so a reader never looks above a block that is not there.
#[derive(Debug, Default)]
struct Shown {
    base: AtomicU64,
    latest: AtomicU64,
}

/// The blocks and certificates trees of a store, with its path for errors.
#[derive(Clone)]
struct BlockTrees {
    path: PathBuf,
    blocks: sled::Tree,
    certificates: sled::Tree,
}

impl BlockTrees {
    /// Reads and checks the block and certificate at `height`. A missing entry at or below
    /// `latest` is a gap, which is corruption.
    fn read_entry(
        &self,
        height: Height,
        base: Height,
        latest: Height,
    ) -> Result<Option<CommittedBlock>, StoreError> {
        let (blocks, certs) = (SledStore::BLOCKS_TREE, SledStore::CERTIFICATES_TREE);
        let key = height.0.to_be_bytes();
        let block = self.blocks.get(key).map_err(|e| io_error(&self.path, e))?;
        let cert = self
            .certificates
            .get(key)
            .map_err(|e| io_error(&self.path, e))?;
        let (block, cert) = match (block, cert) {
            (None, None) if height > base && height <= latest => {
                let detail = format!("no block at this height, below the latest height {latest}");
                return Err(corrupt_error(&self.path, blocks, Some(height), detail));
            }
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(corrupt_error(
                    &self.path,
                    certs,
                    Some(height),
                    "block without a certificate",
                ));
            }
            (None, Some(_)) => {
                return Err(corrupt_error(
                    &self.path,
                    blocks,
                    Some(height),
                    "certificate without a block",
                ));
            }
            (Some(b), Some(c)) => (b, c),
        };
        let block = Block::decode(&block)
            .map_err(|e| corrupt_error(&self.path, blocks, Some(height), e))?;
        if block.header.height != height {
            let detail = format!("holds the block of height {}", block.header.height);
            return Err(corrupt_error(&self.path, blocks, Some(height), detail));
        }
        let cert = CommitCertificate::decode(&cert)
            .map_err(|e| corrupt_error(&self.path, certs, Some(height), e))?;
        let hash = block.hash();
        if cert.height != height || cert.block != hash {
            let detail = format!(
                "certificate commits block {} at height {}, but the stored block is {hash}",
                cert.block, cert.height
            );
            return Err(corrupt_error(&self.path, certs, Some(height), detail));
        }
        Ok(Some((block, cert)))
    }

    /// The stored blocks of `range` above `base` and up to `latest`, in order.
    fn range(&self, range: RangeInclusive<Height>, base: Height, latest: Height) -> BlockIter<'_> {
        let end = (*range.end()).min(latest);
        let mut next = Some((*range.start()).max(base.next()));
        Box::new(std::iter::from_fn(move || {
            let height = next.filter(|h| *h <= end)?;
            next = height.0.checked_add(1).map(Height);
            match self.read_entry(height, base, latest) {
                Ok(Some(entry)) => Some(Ok(entry)),
                // Unreachable while `height <= latest` (a missing entry is a gap error), but
                // ending is the safe answer if it ever happens.
                Ok(None) => None,
                Err(e) => {
                    next = None;
                    Some(Err(e))
                }
            }
        }))
    }
}

/// A read-only handle on a [`SledStore`]'s committed blocks, cheap to clone and safe to use
/// from any thread while the node loop writes: blocks are never rewritten or deleted, and a
/// height is shown only after its block and certificate are durable.
#[derive(Clone)]
pub struct BlockReader {
    trees: BlockTrees,
    shown: Arc<Shown>,
}

impl fmt::Debug for BlockReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockReader")
            .field("path", &self.trees.path)
            .finish_non_exhaustive()
    }
}

impl BlockReader {
    /// The latest committed height stored.
    pub fn latest_height(&self) -> Height {
        Height(self.shown.latest.load(Ordering::Acquire))
    }

    /// The stored blocks of `range`, in order, with their certificates.
    pub fn blocks(&self, range: RangeInclusive<Height>) -> BlockIter<'_> {
        let base = Height(self.shown.base.load(Ordering::Acquire));
        self.trees.range(range, base, self.latest_height())
    }
}

/// Errors naming the store's directory, for the store and its readers.
trait NamesPath {
    fn path(&self) -> &Path;

    fn io(&self, source: sled::Error) -> StoreError {
        io_error(self.path(), source)
    }

    fn corrupt(
        &self,
        tree: &'static str,
        height: Option<Height>,
        detail: impl fmt::Display,
    ) -> StoreError {
        corrupt_error(self.path(), tree, height, detail)
    }
}

fn io_error(path: &Path, source: sled::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

fn corrupt_error(
    path: &Path,
    tree: &'static str,
    height: Option<Height>,
    detail: impl fmt::Display,
) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        tree,
        height,
        detail: detail.to_string(),
    }
}

impl fmt::Debug for SledStore {
    // sled's own `Debug` for a tree walks and prints every node, far too much for a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("genesis", &self.genesis)
            .field("latest", &self.latest)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Name of the tree holding blocks by height.
    pub const BLOCKS_TREE: &'static str = "blocks";
    /// Name of the tree holding commit certificates by height.
    pub const CERTIFICATES_TREE: &'static str = "certificates";
    /// Name of the tree holding the validator's own votes.
    pub const VOTES_TREE: &'static str = "own_votes";
    /// Name of the tree holding the validator's locks.
    pub const LOCKS_TREE: &'static str = "own_locks";
    /// Name of the tree holding the genesis identity.
    pub const META_TREE: &'static str = "meta";
    /// Name of the tree holding final jobs by id.
    pub const FINISHED_TREE: &'static str = "history_jobs";
    /// Name of the tree indexing each account's jobs.
    pub const PARTS_TREE: &'static str = "history_parts";
    /// Name of the tree holding each account's slashes.
    pub const SLASHES_TREE: &'static str = "history_slashes";
    /// Name of the tree indexing committed transactions by hash.
    pub const TXS_TREE: &'static str = "history_txs";
    /// Key of the genesis identity in the meta tree.
    pub const GENESIS_KEY: &'static [u8] = b"genesis";
    /// Key of the base height (8 bytes, big-endian) in the meta tree, for a store that began
    /// with a state-synced snapshot.
    pub const BASE_HEIGHT_KEY: &'static [u8] = b"base_height";
    /// Key of that snapshot's bytes in the meta tree.
    pub const BASE_SNAPSHOT_KEY: &'static [u8] = b"base_snapshot";

    /// Opens (or creates) the store in directory `path` for `genesis`.
    ///
    /// A new store records `genesis` durably before this returns. An existing store must have
    /// been created for the same `genesis` ([`StoreError::GenesisMismatch`]); its first and
    /// last heights and its latest block and certificate are checked here. A gap further down
    /// is reported when a read reaches it, which replay on start does.
    pub fn open(path: impl AsRef<Path>, genesis: &GenesisId) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = open_db(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Io {
                path: path.clone(),
                source: Box::new(source),
            })
        };
        let (blocks, certificates) = (tree(Self::BLOCKS_TREE)?, tree(Self::CERTIFICATES_TREE)?);
        let (votes, meta) = (tree(Self::VOTES_TREE)?, tree(Self::META_TREE)?);
        let locks = tree(Self::LOCKS_TREE)?;
        let (finished, parts) = (tree(Self::FINISHED_TREE)?, tree(Self::PARTS_TREE)?);
        let (slashes, txs) = (tree(Self::SLASHES_TREE)?, tree(Self::TXS_TREE)?);
        let trees = BlockTrees {
            path: path.clone(),
            blocks,
            certificates,
        };
        let history = HistoryReader {
            path: path.clone(),
            finished,
            parts,
            slashes,
            txs,
        };
        let mut store = Self {
            path,
            db,
            trees,
            shown: Arc::default(),
            votes,
            locks,
            meta,
            history,
            genesis: genesis.clone(),
            latest: Height(0),
            base: Height(0),
            grouping: false,
            unflushed: std::cell::Cell::new(false),
            unshown: false,
        };
        store.check_genesis()?;
        store.base = store.find_base()?;
        store.latest = store.find_latest()?;
        store.show();
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compares the recorded genesis identity with `self.genesis`, recording it in a new store.
    fn check_genesis(&self) -> Result<(), StoreError> {
        let meta = Self::META_TREE;
        match self.meta.get(Self::GENESIS_KEY).map_err(|e| self.io(e))? {
            Some(bytes) => {
                let stored: GenesisId =
                    decode_bounded(&bytes, "genesis identity", MAX_GENESIS_ID_BYTES)
                        .map_err(|e| self.corrupt(meta, None, format!("genesis record: {e}")))?;
                if stored != self.genesis {
                    return Err(StoreError::GenesisMismatch {
                        path: self.path.clone(),
                        stored: Box::new(stored),
                        expected: Box::new(self.genesis.clone()),
                    });
                }
                Ok(())
            }
            None => {
                // A store with data but no genesis record cannot be attributed to any chain;
                // adopting the caller's genesis would silently mix two chains.
                if !self.trees.blocks.is_empty()
                    || !self.trees.certificates.is_empty()
                    || !self.votes.is_empty()
                {
                    let detail = "no genesis record, yet the store holds blocks or votes";
                    return Err(self.corrupt(meta, None, detail));
                }
                self.meta
                    .insert(Self::GENESIS_KEY, encode(&self.genesis))
                    .map_err(|e| self.io(e))?;
                self.flush()
            }
        }
    }

    /// The base height recorded in the meta tree (0 if none).
    fn find_base(&self) -> Result<Height, StoreError> {
        match self
            .meta
            .get(Self::BASE_HEIGHT_KEY)
            .map_err(|e| self.io(e))?
        {
            None => Ok(Height(0)),
            Some(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
                Ok(b) => Ok(Height(u64::from_be_bytes(b))),
                Err(_) => Err(self.corrupt(
                    Self::META_TREE,
                    None,
                    format!("base height is {} bytes, not 8", bytes.len()),
                )),
            },
        }
    }

    /// The latest height, after checking that both trees start just above the base and end
    /// at the same height, and that the entry there reads back whole.
    fn find_latest(&self) -> Result<Height, StoreError> {
        let (blocks, certs) = (Self::BLOCKS_TREE, Self::CERTIFICATES_TREE);
        let last_block = self.trees.blocks.last().map_err(|e| self.io(e))?;
        let last_cert = self.trees.certificates.last().map_err(|e| self.io(e))?;
        let latest = match (last_block, last_cert) {
            (None, None) => return Ok(self.base),
            (Some((key, _)), None) => {
                let h = self.height_key(blocks, &key)?;
                return Err(self.corrupt(certs, Some(h), "certificates tree is empty"));
            }
            (None, Some((key, _))) => {
                let h = self.height_key(certs, &key)?;
                return Err(self.corrupt(blocks, Some(h), "blocks tree is empty"));
            }
            (Some((kb, _)), Some((kc, _))) => {
                let (hb, hc) = (self.height_key(blocks, &kb)?, self.height_key(certs, &kc)?);
                if hb != hc {
                    let detail = format!("certificates end at height {hc}, blocks at {hb}");
                    return Err(self.corrupt(certs, Some(hc), detail));
                }
                hb
            }
        };
        for (name, tree) in [
            (blocks, &self.trees.blocks),
            (certs, &self.trees.certificates),
        ] {
            if let Some((key, _)) = tree.first().map_err(|e| self.io(e))? {
                let first = self.height_key(name, &key)?;
                if first != self.base.next() {
                    let want = self.base.next();
                    let detail = format!("the first entry is at height {first}, not {want}");
                    return Err(self.corrupt(name, Some(first), detail));
                }
            }
        }
        self.read_entry(latest, latest)?;
        Ok(latest)
    }

    /// Reads and checks the block and certificate at `height`. A missing entry at or below
    /// `latest` is a gap, which is corruption.
    fn read_entry(
        &self,
        height: Height,
        latest: Height,
    ) -> Result<Option<CommittedBlock>, StoreError> {
        self.trees.read_entry(height, self.base, latest)
    }

    /// Shows readers off the loop the heights as they are now.
    fn show(&mut self) {
        if self.grouping {
            self.unshown = true;
            return;
        }
        self.shown.base.store(self.base.0, Ordering::Release);
        self.shown.latest.store(self.latest.0, Ordering::Release);
    }

    /// A read-only handle on the history trees, for readers off the node loop.
    pub fn history_reader(&self) -> HistoryReader {
        self.history.clone()
    }

    /// A read-only handle on the committed blocks, for readers off the node loop.
    pub fn reader(&self) -> BlockReader {
        BlockReader {
            trees: self.trees.clone(),
            shown: Arc::clone(&self.shown),
        }
    }

    /// Decodes and checks one own-vote entry.
    fn read_vote(&self, key: &[u8], value: &[u8]) -> Result<Signed<Vote>, StoreError> {
        let tree = Self::VOTES_TREE;
        // The height is the first 8 bytes of any well-formed prefix; name it if it is there.
        let height = key
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(|b| Height(u64::from_be_bytes(b)));
        if key.len() != VOTE_KEY_LEN {
            let detail = format!(
                "key {} is {} bytes, not {VOTE_KEY_LEN}",
                hex::encode(key),
                key.len()
            );
            return Err(self.corrupt(tree, height, detail));
        }
        let vote = Signed::<Vote>::decode(value).map_err(|e| self.corrupt(tree, height, e))?;
        if vote_key(&vote.body) != key {
            let detail = format!(
                "key {} holds a vote for another height, round or kind",
                hex::encode(key)
            );
            return Err(self.corrupt(tree, height, detail));
        }
        Ok(vote)
    }

    /// Decodes and checks one lock entry.
    fn read_lock(&self, key: &[u8], value: &[u8]) -> Result<LockRecord, StoreError> {
        let tree = Self::LOCKS_TREE;
        let height = key
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(|b| Height(u64::from_be_bytes(b)));
        let lock = LockRecord::decode(value).map_err(|e| self.corrupt(tree, height, e))?;
        if key != lock_key(&lock) {
            let detail = format!(
                "key {} holds a lock for another height or round",
                hex::encode(key)
            );
            return Err(self.corrupt(tree, height, detail));
        }
        Ok(lock)
    }

    /// Parses an 8-byte big-endian height key.
    fn height_key(&self, tree: &'static str, key: &[u8]) -> Result<Height, StoreError> {
        match <[u8; 8]>::try_from(key) {
            Ok(bytes) => Ok(Height(u64::from_be_bytes(bytes))),
            Err(_) => {
                let detail = format!(
                    "key {} is {} bytes, not an 8-byte height",
                    hex::encode(key),
                    key.len()
                );
                Err(self.corrupt(tree, None, detail))
            }
        }
    }

    /// Writes everything sled holds in memory to disk and fsyncs it.
    /// Writes a block and its certificate (with `base`, also the base height and snapshot)
    /// in one transaction, and flushes.
    fn write_block(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        base: Option<(Height, &[u8])>,
    ) -> Result<(), StoreError> {
        let key = block.header.height.0.to_be_bytes();
        let (block_bytes, cert_bytes) = (block.encode(), certificate.encode());
        // sled may run the closure more than once on conflict, so it copies from the slices.
        let written: Result<(), TransactionError<std::convert::Infallible>> =
            (&self.trees.blocks, &self.trees.certificates, &self.meta).transaction(
                |(blocks, certs, meta)| {
                    blocks.insert(&key, block_bytes.as_slice())?;
                    certs.insert(&key, cert_bytes.as_slice())?;
                    if let Some((height, snapshot)) = base {
                        meta.insert(Self::BASE_SNAPSHOT_KEY, snapshot)?;
                        meta.insert(Self::BASE_HEIGHT_KEY, &height.0.to_be_bytes())?;
                    }
                    Ok::<(), ConflictableTransactionError<std::convert::Infallible>>(())
                },
            );
        match written {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(self.io(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
        self.flush()
    }

    /// Writes everything sled holds in memory to disk and fsyncs it; inside a group, leaves
    /// that to the group's end.
    fn flush(&self) -> Result<(), StoreError> {
        if self.grouping {
            self.unflushed.set(true);
            return Ok(());
        }
        self.db.flush().map(drop).map_err(|e| self.io(e))
    }
}

impl NamesPath for SledStore {
    fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the sled database at `path`, retrying for up to [`LOCK_WAIT`] while its file lock is
/// held (sled 0.34.7 reports that as an `Io` error of kind `Other` naming the lock).
fn open_db(path: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES);
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            opened => return opened,
        }
    }
}

/// The `own_locks` key of `lock`: height and round, big-endian.
fn lock_key(lock: &LockRecord) -> [u8; LOCK_KEY_LEN] {
    let (height, round) = lock.slot();
    let mut key = [0u8; LOCK_KEY_LEN];
    key[..8].copy_from_slice(&height.0.to_be_bytes());
    key[8..].copy_from_slice(&round.0.to_be_bytes());
    key
}

/// The `own_votes` key of `vote`: height, round, kind, big-endian so byte order is the order
/// of [`Store::own_votes`].
fn vote_key(vote: &Vote) -> [u8; VOTE_KEY_LEN] {
    let mut key = [0u8; VOTE_KEY_LEN];
    key[..8].copy_from_slice(&vote.height.0.to_be_bytes());
    key[8..12].copy_from_slice(&vote.round.0.to_be_bytes());
    key[12] = match vote.kind {
        VoteKind::Prevote => 0,
        VoteKind::Precommit => 1,
    };
    key
}

impl Store for SledStore {
    fn genesis(&self) -> &GenesisId {
        &self.genesis
    }

    fn begin_group(&mut self) {
        self.grouping = true;
    }

    fn end_group(&mut self) -> Result<(), StoreError> {
        self.grouping = false;
        if self.unflushed.replace(false) {
            self.flush()?;
        }
        if std::mem::take(&mut self.unshown) {
            self.show();
        }
        Ok(())
    }

    fn put_block(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
    ) -> Result<(), StoreError> {
        check_put_args(&self.genesis, block, certificate)?;
        let height = block.header.height;
        if height.0 >= 1 && height <= self.base {
            // Committed before the synced snapshot: nothing here to compare it with.
            return Ok(());
        }
        if height.0 >= 1 && height <= self.latest {
            // `read_entry` reports a missing entry below `latest` as a gap.
            if let Some((stored, _)) = self.read_entry(height, self.latest)? {
                let (stored, offered) = (stored.hash(), block.hash());
                if stored != offered {
                    return Err(StoreError::ConflictingBlock {
                        height,
                        stored,
                        offered,
                    });
                }
            }
            return Ok(());
        }
        if height != self.latest.next() {
            return Err(StoreError::NotContiguous {
                height,
                latest: self.latest,
            });
        }
        self.write_block(block, certificate, None)?;
        self.latest = height;
        self.show();
        Ok(())
    }

    fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        Ok(self.read_entry(height, self.latest)?.map(|(b, _)| b))
    }

    fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, StoreError> {
        Ok(self.read_entry(height, self.latest)?.map(|(_, c)| c))
    }

    fn latest_height(&self) -> Height {
        self.latest
    }

    fn base_height(&self) -> Height {
        self.base
    }

    fn put_base(
        &mut self,
        height: Height,
        snapshot: &[u8],
        anchor: &Block,
        certificate: &CommitCertificate,
    ) -> Result<(), StoreError> {
        check_put_args(&self.genesis, anchor, certificate)?;
        if self.latest.0 != 0 || self.base.0 != 0 {
            return Err(StoreError::NotEmpty {
                height,
                latest: self.latest,
            });
        }
        let anchor_height = anchor.header.height;
        if anchor_height != height.next() {
            return Err(StoreError::NotContiguous {
                height: anchor_height,
                latest: height,
            });
        }
        self.write_block(anchor, certificate, Some((height, snapshot)))?;
        self.base = height;
        self.latest = anchor_height;
        self.show();
        Ok(())
    }

    fn base_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.base.0 == 0 {
            return Ok(None);
        }
        match self
            .meta
            .get(Self::BASE_SNAPSHOT_KEY)
            .map_err(|e| self.io(e))?
        {
            Some(bytes) => Ok(Some(bytes.to_vec())),
            None => Err(self.corrupt(
                Self::META_TREE,
                Some(self.base),
                "a base height without its snapshot",
            )),
        }
    }

    fn blocks(&self, range: RangeInclusive<Height>) -> BlockIter<'_> {
        self.trees.range(range, self.base, self.latest)
    }

    fn record_own_vote(&mut self, vote: &Signed<Vote>) -> Result<(), StoreError> {
        let key = vote_key(&vote.body);
        let bytes = vote.encode();
        // Insert only if the slot is empty, atomically, so two writers could not both win.
        let swapped = self
            .votes
            .compare_and_swap(key, None::<&[u8]>, Some(bytes.as_slice()))
            .map_err(|e| self.io(e))?;
        // A taken slot holding these exact bytes is this vote recorded before: not a conflict.
        if let Err(cas) = swapped
            && let Some(current) = cas.current.filter(|c| c.as_ref() != bytes.as_slice())
        {
            let stored = self.read_vote(&key, &current)?;
            return Err(StoreError::ConflictingOwnVote {
                height: vote.body.height,
                round: vote.body.round,
                kind: vote.body.kind,
                stored: stored.body.block,
                offered: vote.body.block,
            });
        }
        // Flush even for a vote already recorded: the caller is about to send it.
        self.flush()
    }

    fn own_votes(&self, height: Height) -> Result<Vec<Signed<Vote>>, StoreError> {
        let mut out = Vec::new();
        for entry in self.votes.scan_prefix(height.0.to_be_bytes()) {
            let (key, value) = entry.map_err(|e| self.io(e))?;
            out.push(self.read_vote(&key, &value)?);
        }
        Ok(out)
    }

    fn record_own_lock(&mut self, lock: &LockRecord) -> Result<(), StoreError> {
        let key = lock_key(lock);
        let bytes = lock.encode();
        // The first lock of a slot stays: a precommit is signed once per slot.
        let _ = self
            .locks
            .compare_and_swap(key, None::<&[u8]>, Some(bytes.as_slice()))
            .map_err(|e| self.io(e))?;
        self.flush()
    }

    fn own_locks(&self, height: Height) -> Result<Vec<LockRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.locks.scan_prefix(height.0.to_be_bytes()) {
            let (key, value) = entry.map_err(|e| self.io(e))?;
            out.push(self.read_lock(&key, &value)?);
        }
        Ok(out)
    }

    fn prune_own_votes_below(&mut self, height: Height) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for entry in self.votes.range(..height.0.to_be_bytes()) {
            let (key, value) = entry.map_err(|e| self.io(e))?;
            // Check each entry before deleting it: corrupt data is reported, not erased.
            self.read_vote(&key, &value)?;
            batch.remove(key);
        }
        self.votes.apply_batch(batch).map_err(|e| self.io(e))?;
        let mut batch = sled::Batch::default();
        for entry in self.locks.range(..height.0.to_be_bytes()) {
            let (key, value) = entry.map_err(|e| self.io(e))?;
            self.read_lock(&key, &value)?;
            batch.remove(key);
        }
        self.locks.apply_batch(batch).map_err(|e| self.io(e))
    }

    fn put_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        let height = batch.height.0.to_be_bytes();
        let mut jobs = sled::Batch::default();
        for (id, job) in &batch.finished {
            jobs.insert(&id.0[..], encode(job));
        }
        let mut parts = sled::Batch::default();
        for (who, role, job) in &batch.parts {
            let mut key = Vec::with_capacity(73);
            key.extend_from_slice(who.as_bytes());
            key.extend_from_slice(&height);
            key.push(role_byte(*role));
            key.extend_from_slice(&job.0);
            parts.insert(key, &[][..]);
        }
        let mut slashes = sled::Batch::default();
        for (i, (who, slash)) in batch.slashes.iter().enumerate() {
            let mut key = Vec::with_capacity(44);
            key.extend_from_slice(who.as_bytes());
            key.extend_from_slice(&height);
            key.extend_from_slice(&u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes());
            slashes.insert(key, encode(slash));
        }
        let mut txs = sled::Batch::default();
        for (i, tx) in batch.txs.iter().enumerate() {
            let mut value = [0u8; 12];
            value[..8].copy_from_slice(&height);
            value[8..].copy_from_slice(&u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes());
            txs.insert(&tx.0[..], &value[..]);
        }
        let h = &self.history;
        h.finished.apply_batch(jobs).map_err(|e| self.io(e))?;
        h.parts.apply_batch(parts).map_err(|e| self.io(e))?;
        h.slashes.apply_batch(slashes).map_err(|e| self.io(e))?;
        h.txs.apply_batch(txs).map_err(|e| self.io(e))
    }

    fn tx_location(&self, tx: &TxHash) -> Result<Option<(Height, u32)>, StoreError> {
        self.history.tx_location(tx)
    }

    fn final_job(&self, job: &JobId) -> Result<Option<FinalJob>, StoreError> {
        self.history.final_job(job)
    }

    fn account_jobs(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<(Height, Role, JobId)>, StoreError> {
        self.history.account_jobs(account, limit)
    }

    fn slashes_of(&self, account: &AccountId, limit: usize) -> Result<Vec<SlashEntry>, StoreError> {
        self.history.slashes_of(account, limit)
    }
}

/// A read-only handle on the history trees (final jobs, each account's parts and slashes,
/// the transaction index), for readers off the node loop: the API answers those reads on the
/// blocking pool and asks the loop only for the live state. The trees are written with each
/// block's history (in the block's group of writes); a reader sees a block's history no later
/// than the loop answers anything about the state after it.
#[derive(Clone)]
pub struct HistoryReader {
    path: PathBuf,
    /// Job id -> the job as it ended.
    finished: sled::Tree,
    /// Account | height (BE) | role | job -> empty.
    parts: sled::Tree,
    /// Account | height (BE) | index (BE u32) -> the slash.
    slashes: sled::Tree,
    /// Transaction hash -> height (BE u64) | index in the block (BE u32).
    txs: sled::Tree,
}

impl fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryReader")
            .field("path", &self.path)
            .finish()
    }
}

impl HistoryReader {
    /// Where the committed transaction `tx` is (see [`Store::tx_location`]).
    pub fn tx_location(&self, tx: &TxHash) -> Result<Option<(Height, u32)>, StoreError> {
        let Some(bytes) = self.txs.get(tx.0).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        let (height, index) = match (bytes.get(..8), bytes.get(8..)) {
            (Some(h), Some(i)) if bytes.len() == 12 => (h, i),
            _ => {
                let detail = format!("transaction {tx}: {} bytes, not 12", bytes.len());
                return Err(self.corrupt(SledStore::TXS_TREE, None, detail));
            }
        };
        let height = u64::from_be_bytes(height.try_into().unwrap_or_default());
        let index = u32::from_be_bytes(index.try_into().unwrap_or_default());
        Ok(Some((Height(height), index)))
    }

    /// A job that left the live state (see [`Store::final_job`]).
    pub fn final_job(&self, job: &JobId) -> Result<Option<FinalJob>, StoreError> {
        let Some(bytes) = self.finished.get(job.0).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        decode_bounded(&bytes, "a final job", MAX_HISTORY_VALUE)
            .map(Some)
            .map_err(|e| self.corrupt(SledStore::FINISHED_TREE, None, format!("job {job}: {e}")))
    }

    /// The newest `limit` parts `account` took in jobs (see [`Store::account_jobs`]).
    pub fn account_jobs(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<(Height, Role, JobId)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.parts.scan_prefix(account.as_bytes()).rev().take(limit) {
            let (key, _) = entry.map_err(|e| self.io(e))?;
            let parsed = (key.len() == 73)
                .then(|| {
                    let height = u64::from_be_bytes(key[32..40].try_into().ok()?);
                    let role = role_of(key[40])?;
                    let job: [u8; 32] = key[41..73].try_into().ok()?;
                    Some((Height(height), role, JobId(job)))
                })
                .flatten();
            match parsed {
                Some(part) => out.push(part),
                None => {
                    let detail = format!("malformed key {}", hex::encode(&key));
                    return Err(self.corrupt(SledStore::PARTS_TREE, None, detail));
                }
            }
        }
        Ok(out)
    }

    /// The newest `limit` slashes of `account` (see [`Store::slashes_of`]).
    pub fn slashes_of(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<SlashEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self
            .slashes
            .scan_prefix(account.as_bytes())
            .rev()
            .take(limit)
        {
            let (key, value) = entry.map_err(|e| self.io(e))?;
            let slash = decode_bounded(&value, "a slash", MAX_HISTORY_VALUE).map_err(|e| {
                let detail = format!("key {}: {e}", hex::encode(&key));
                self.corrupt(SledStore::SLASHES_TREE, None, detail)
            })?;
            out.push(slash);
        }
        Ok(out)
    }
}

impl NamesPath for HistoryReader {
    fn path(&self) -> &Path {
        &self.path
    }
}
