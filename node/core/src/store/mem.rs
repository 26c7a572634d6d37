//! [`MemStore`]: the in-memory twin of the sled store, for the simulator and tests.
//!
//! It keeps the same rules as the sled store (contiguity, certificate match, one own vote
//! per height, round and kind) so code tested against it behaves the same on disk. Every write
//! is "durable" the moment it returns, so a clone is exactly what a crash would leave behind:
//! the simulator crashes a node by keeping a clone and calling [`MemStore::reopen`] on it. It
//! must never hold anything that a real store would lose on a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use attest_protocol::{AccountId, Height, JobId, Round, Signed, TxHash, Vote, VoteKind};

use attest_consensus::LockRecord;

use super::{BlockIter, CommittedBlock, GenesisId, Store, StoreError, check_put_args};
use crate::history::{FinalJob, HistoryBatch, Role, SlashEntry};

/// The path [`MemStore`] gives in errors, which must name some store.
const MEMORY_PATH: &str = "<memory>";

/// An in-memory [`Store`]. `Clone` snapshots everything written so far.
#[derive(Debug, Clone)]
pub struct MemStore {
    genesis: GenesisId,
    blocks: BTreeMap<Height, CommittedBlock>,
    votes: BTreeMap<(Height, Round, VoteKind), Signed<Vote>>,
    locks: BTreeMap<(Height, Round), LockRecord>,
    finished: BTreeMap<JobId, FinalJob>,
    parts: BTreeSet<(AccountId, Height, Role, JobId)>,
    slashes: BTreeMap<(AccountId, Height, u32), SlashEntry>,
    txs: BTreeMap<TxHash, (Height, u32)>,
    base: Option<(Height, Vec<u8>)>,
}

impl MemStore {
    /// An empty store for `genesis`.
    pub fn new(genesis: GenesisId) -> Self {
        Self {
            genesis,
            blocks: BTreeMap::new(),
            votes: BTreeMap::new(),
            locks: BTreeMap::new(),
            finished: BTreeMap::new(),
            parts: BTreeSet::new(),
            slashes: BTreeMap::new(),
            txs: BTreeMap::new(),
            base: None,
        }
    }

    /// Opens a snapshot again, as a restarted node opens its directory: it fails with
    /// [`StoreError::GenesisMismatch`] if the snapshot was made for another `genesis`.
    pub fn reopen(self, genesis: &GenesisId) -> Result<Self, StoreError> {
        if &self.genesis != genesis {
            return Err(StoreError::GenesisMismatch {
                path: PathBuf::from(MEMORY_PATH),
                stored: Box::new(self.genesis),
                expected: Box::new(genesis.clone()),
            });
        }
        Ok(self)
    }
}

impl Store for MemStore {
    fn genesis(&self) -> &GenesisId {
        &self.genesis
    }

    fn put_block(
        &mut self,
        block: &attest_protocol::Block,
        certificate: &attest_protocol::CommitCertificate,
    ) -> Result<(), StoreError> {
        check_put_args(&self.genesis, block, certificate)?;
        let height = block.header.height;
        let latest = self.latest_height();
        if height.0 >= 1 && height <= self.base_height() {
            // Committed before the synced snapshot: nothing here to compare it with.
            return Ok(());
        }
        if let Some((stored, _)) = self.blocks.get(&height) {
            let (stored, offered) = (stored.hash(), block.hash());
            return if stored == offered {
                Ok(())
            } else {
                Err(StoreError::ConflictingBlock {
                    height,
                    stored,
                    offered,
                })
            };
        }
        if height != latest.next() {
            return Err(StoreError::NotContiguous { height, latest });
        }
        self.blocks
            .insert(height, (block.clone(), certificate.clone()));
        Ok(())
    }

    fn block(&self, height: Height) -> Result<Option<attest_protocol::Block>, StoreError> {
        Ok(self.blocks.get(&height).map(|(b, _)| b.clone()))
    }

    fn certificate(
        &self,
        height: Height,
    ) -> Result<Option<attest_protocol::CommitCertificate>, StoreError> {
        Ok(self.blocks.get(&height).map(|(_, c)| c.clone()))
    }

    fn latest_height(&self) -> Height {
        self.blocks
            .keys()
            .next_back()
            .copied()
            .unwrap_or_else(|| self.base_height())
    }

    fn base_height(&self) -> Height {
        self.base.as_ref().map(|(h, _)| *h).unwrap_or_default()
    }

    fn put_base(
        &mut self,
        height: Height,
        snapshot: &[u8],
        anchor: &attest_protocol::Block,
        certificate: &attest_protocol::CommitCertificate,
    ) -> Result<(), StoreError> {
        check_put_args(&self.genesis, anchor, certificate)?;
        let latest = self.latest_height();
        if latest.0 != 0 {
            return Err(StoreError::NotEmpty { height, latest });
        }
        if anchor.header.height != height.next() {
            return Err(StoreError::NotContiguous {
                height: anchor.header.height,
                latest: height,
            });
        }
        self.base = Some((height, snapshot.to_vec()));
        self.blocks
            .insert(height.next(), (anchor.clone(), certificate.clone()));
        Ok(())
    }

    fn base_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.base.as_ref().map(|(_, bytes)| bytes.clone()))
    }

    fn blocks(&self, range: RangeInclusive<Height>) -> BlockIter<'_> {
        // `BTreeMap::range` panics on a reversed range; an empty answer is what a caller means.
        if range.start() > range.end() {
            return Box::new(std::iter::empty());
        }
        Box::new(self.blocks.range(range).map(|(_, entry)| Ok(entry.clone())))
    }

    fn record_own_vote(&mut self, vote: &Signed<Vote>) -> Result<(), StoreError> {
        let v = &vote.body;
        let key = (v.height, v.round, v.kind);
        match self.votes.get(&key) {
            Some(stored) if stored == vote => Ok(()),
            Some(stored) => Err(StoreError::ConflictingOwnVote {
                height: v.height,
                round: v.round,
                kind: v.kind,
                stored: stored.body.block,
                offered: v.block,
            }),
            None => {
                self.votes.insert(key, vote.clone());
                Ok(())
            }
        }
    }

    fn own_votes(&self, height: Height) -> Result<Vec<Signed<Vote>>, StoreError> {
        let from = (height, Round(0), VoteKind::Prevote);
        let to = (height, Round(u32::MAX), VoteKind::Precommit);
        Ok(self
            .votes
            .range(from..=to)
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn record_own_lock(&mut self, lock: &LockRecord) -> Result<(), StoreError> {
        self.locks
            .entry(lock.slot())
            .or_insert_with(|| lock.clone());
        Ok(())
    }

    fn own_locks(&self, height: Height) -> Result<Vec<LockRecord>, StoreError> {
        let range = (height, Round(0))..=(height, Round(u32::MAX));
        Ok(self.locks.range(range).map(|(_, l)| l.clone()).collect())
    }

    fn prune_own_votes_below(&mut self, height: Height) -> Result<(), StoreError> {
        self.votes = self.votes.split_off(&(height, Round(0), VoteKind::Prevote));
        self.locks = self.locks.split_off(&(height, Round(0)));
        Ok(())
    }

    fn put_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        for (id, job) in &batch.finished {
            self.finished.insert(*id, job.clone());
        }
        for (who, role, job) in &batch.parts {
            self.parts.insert((*who, batch.height, *role, *job));
        }
        for (i, (who, slash)) in batch.slashes.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            self.slashes.insert((*who, batch.height, i), slash.clone());
        }
        for (i, tx) in batch.txs.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            self.txs.insert(*tx, (batch.height, i));
        }
        Ok(())
    }

    fn tx_location(&self, tx: &TxHash) -> Result<Option<(Height, u32)>, StoreError> {
        Ok(self.txs.get(tx).copied())
    }

    fn final_job(&self, job: &JobId) -> Result<Option<FinalJob>, StoreError> {
        Ok(self.finished.get(job).cloned())
    }

    fn account_jobs(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<(Height, Role, JobId)>, StoreError> {
        let lo = (*account, Height(0), Role::Client, JobId([0; 32]));
        let hi = (*account, Height(u64::MAX), Role::Checker, JobId([0xff; 32]));
        Ok(self
            .parts
            .range(lo..=hi)
            .rev()
            .take(limit)
            .map(|(_, h, r, j)| (*h, *r, *j))
            .collect())
    }

    fn slashes_of(&self, account: &AccountId, limit: usize) -> Result<Vec<SlashEntry>, StoreError> {
        let range = (*account, Height(0), 0)..=(*account, Height(u64::MAX), u32::MAX);
        Ok(self
            .slashes
            .range(range)
            .rev()
            .take(limit)
            .map(|(_, s)| s.clone())
            .collect())
    }
}
