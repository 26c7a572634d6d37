//! Durable storage: the genesis identity, committed blocks with their commit certificates, and
//! the validator's write-ahead log of its own votes and locks.
//!
//! This module owns the [`Store`] trait and [`MemStore`], an in-memory implementation for the
//! simulator, the local network and tests; the node shell implements it on disk with sled
//! (`attest_node::sled_store::SledStore`). `NodeCore` never calls a store: [`crate::host`]
//! does, the same way for every host. A store stores and returns what it is given; it never verifies signatures, never applies blocks to state
//! and never decides what is committed (that is the consensus core's job). It must never
//! silently overwrite, skip or repair data it finds corrupt: every such finding is a
//! [`StoreError::Corrupt`] naming the store, the tree and the height, and the bytes stay as
//! they were for an operator to inspect.
//!
//! Invariants every implementation keeps:
//! - blocks occupy heights `base_height() + 1..=latest_height()` with no gap, each with
//!   exactly one certificate that names that block's hash at that height; the base is 0 but
//!   for a node that joined by state sync, whose store starts with the snapshot it synced
//!   ([`Store::put_base`]) and the block after it;
//! - a method documented as durable has made its effect survive a crash of the process before
//!   it returns `Ok`, so the caller may acknowledge the block or send the vote;
//! - at most one own vote per (height, round, kind) is recorded: a different second vote is
//!   refused, which is the last line of defence against a restarted validator equivocating.

mod error;
mod mem;

use std::fmt;

use attest_protocol::{AccountId, Block, ChainId, CommitCertificate, Hash, Height, JobId};
use attest_protocol::{Signed, TxHash, Vote};

use crate::history::{FinalJob, HistoryBatch, Role, SlashEntry};

pub use attest_chain::CommittedBlock;
use attest_consensus::LockRecord;

pub use error::StoreError;
pub use mem::MemStore;

/// Which ledger a store belongs to: the chain id and the hash of the genesis document.
///
/// A store remembers the identity it was created with and refuses to open for any other, so
/// a node pointed at a new genesis cannot mix the old chain's blocks into the new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisId {
    /// The chain's name.
    pub chain_id: ChainId,
    /// The hash of the genesis document the node started from.
    pub hash: Hash,
}

impl fmt::Display for GenesisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chain {} genesis {}", self.chain_id, self.hash)
    }
}

/// Blocks in ascending height order, as [`Store::blocks`] returns them. After the first error
/// the iterator ends.
pub type BlockIter<'a> = Box<dyn Iterator<Item = Result<CommittedBlock, StoreError>> + 'a>;

/// What the node persists. Reads take `&self`; writes take `&mut self`, so one owner (the
/// shell's event loop, or a simulated node) serialises them and the contiguity check cannot
/// race with another writer.
///
/// Errors: an I/O failure ([`StoreError::Io`]) is fatal and the node must stop; corrupt data
/// ([`StoreError::Corrupt`]) is fatal too and is reported, never repaired; the remaining
/// variants are caller mistakes that leave the store unchanged.
pub trait Store {
    /// The genesis identity this store was created for. Durable since the store was opened.
    fn genesis(&self) -> &GenesisId;

    /// Starts a group of writes that share one flush. Until [`Store::end_group`], a write
    /// whose durability promise below says "flushed before this returns" may leave its flush
    /// to `end_group`, and a stored block may stay hidden from readers off the loop until
    /// then. So the caller must not act on any write of the group (send a vote, announce a
    /// block) before `end_group` returns `Ok`. The shell groups the writes the core asks for
    /// back to back (a block with its history, a lock with its precommit). A store without
    /// a flush of its own ignores groups.
    fn begin_group(&mut self) {}

    /// Ends the group begun by [`Store::begin_group`]: flushes once whatever its writes left
    /// unflushed, then shows stored blocks to readers. After an error the group's writes may
    /// not be durable, and the node must stop (as for any I/O failure).
    fn end_group(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Stores the block at the next height with the certificate that committed it.
    ///
    /// `block` must be at height `latest_height() + 1` ([`StoreError::NotContiguous`]), on
    /// this store's chain ([`StoreError::WrongChain`]), and `certificate` must name its height
    /// and hash ([`StoreError::CertificateMismatch`]). Offering a block already stored at its
    /// height is a no-op that keeps the stored certificate (several valid certificates can
    /// commit one block); a different block there is [`StoreError::ConflictingBlock`].
    ///
    /// Durability: block and certificate are written atomically (both or neither) and flushed
    /// to disk before this returns `Ok`.
    fn put_block(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
    ) -> Result<(), StoreError>;

    /// The block at `height`, or `None` above [`Store::latest_height`] (and at height 0, the
    /// genesis state, which has no block). Reads only durable data.
    fn block(&self, height: Height) -> Result<Option<Block>, StoreError>;

    /// The certificate that committed the block at `height`, or `None` where there is no block.
    /// Reads only durable data.
    fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, StoreError>;

    /// The height of the last stored block; the base height when there is none.
    fn latest_height(&self) -> Height;

    /// The height the stored blocks start after: 0, or the height of the state-synced
    /// snapshot the store began with. Blocks at or below it are not stored.
    fn base_height(&self) -> Height;

    /// Starts an empty store from a state-synced snapshot: `snapshot` (the encoded
    /// `attest_chain::statesync::SyncSnapshot` of the state after `height`) and the block after
    /// it with its certificate, which anchors the snapshot's root. [`StoreError::NotEmpty`] if
    /// the store holds a block or a base already.
    ///
    /// Durability: all of it is written atomically and flushed before this returns `Ok`.
    fn put_base(
        &mut self,
        height: Height,
        snapshot: &[u8],
        anchor: &Block,
        certificate: &CommitCertificate,
    ) -> Result<(), StoreError>;

    /// The base snapshot's bytes, if the store began with one.
    fn base_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// The blocks and certificates at the heights in `range` that are stored, in ascending
    /// order, read lazily one height at a time so replaying a long chain or serving a sync
    /// request holds one block in memory. Heights above `latest_height()` are not yielded.
    fn blocks(&self, range: std::ops::RangeInclusive<Height>) -> BlockIter<'_>;

    /// Appends the validator's own signed vote to the write-ahead log.
    ///
    /// Recording the identical vote again is a no-op. A different vote for the same height,
    /// round and kind is refused with [`StoreError::ConflictingOwnVote`]: signing it would be
    /// equivocation.
    ///
    /// Durability: flushed to disk before this returns `Ok`, so the caller may send the vote.
    fn record_own_vote(&mut self, vote: &Signed<Vote>) -> Result<(), StoreError>;

    /// Every own vote recorded for `height`, all rounds, ordered by round then kind (prevote
    /// before precommit). Reads only durable data.
    fn own_votes(&self, height: Height) -> Result<Vec<Signed<Vote>>, StoreError>;

    /// Records the lock the validator takes with a precommit (the proposal and its polka),
    /// keyed by height and round; a second record for the same slot is a no-op.
    ///
    /// Durability: flushed to disk before this returns `Ok`, so the caller may send the
    /// precommit.
    fn record_own_lock(&mut self, lock: &LockRecord) -> Result<(), StoreError>;

    /// Every lock recorded for `height`, ordered by round. Reads only durable data.
    fn own_locks(&self, height: Height) -> Result<Vec<LockRecord>, StoreError>;

    /// Removes own votes and locks for heights below `height`; call it once those heights are
    /// committed.
    ///
    /// Durability: not flushed by itself; it becomes durable with the next durable write. A
    /// crash before then brings pruned votes back, which is harmless: they are for committed
    /// heights, where the validator votes no more, and the next prune removes them again.
    fn prune_own_votes_below(&mut self, height: Height) -> Result<(), StoreError>;

    /// Indexes one block's history. Idempotent: writing a batch twice changes nothing.
    ///
    /// Durability: becomes durable with the next durable write (the block's own); a crash
    /// in between loses the batch with the block, which is re-indexed when the block commits
    /// again.
    fn put_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError>;

    /// A job that ended, as it ended.
    fn final_job(&self, job: &JobId) -> Result<Option<FinalJob>, StoreError>;

    /// The newest `limit` parts `account` took in jobs: (height, role, job), newest first.
    fn account_jobs(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<(Height, Role, JobId)>, StoreError>;

    /// The newest `limit` slashes of `account`, newest first.
    fn slashes_of(&self, account: &AccountId, limit: usize) -> Result<Vec<SlashEntry>, StoreError>;

    /// Where the committed transaction `tx` is: its block's height and its index in it, if a
    /// block this store indexed holds it.
    fn tx_location(&self, tx: &TxHash) -> Result<Option<(Height, u32)>, StoreError>;
}

/// Checks what [`Store::put_block`] requires of its arguments that does not depend on the
/// stored data: the chain, and that the certificate commits this block at this height.
pub fn check_put_args(
    genesis: &GenesisId,
    block: &Block,
    certificate: &CommitCertificate,
) -> Result<(), StoreError> {
    let height = block.header.height;
    if block.header.chain_id != genesis.chain_id {
        return Err(StoreError::WrongChain {
            height,
            expected: genesis.chain_id.clone(),
            got: block.header.chain_id.clone(),
        });
    }
    let hash = block.hash();
    if certificate.height != height || certificate.block != hash {
        return Err(StoreError::CertificateMismatch {
            height,
            block: hash,
            certificate_height: certificate.height,
            certificate_block: certificate.block,
        });
    }
    Ok(())
}
