//! The store's one error type. It owns only the variants and their messages; it must never
//! lose the context (path, tree, height, both sides of a mismatch) an operator needs to act.

use std::path::PathBuf;

use attest_protocol::{BlockHash, ChainId, Height, Round, VoteKind};

use super::GenesisId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (disk full, permission denied, a lock held by another
    /// process). Fatal: the node cannot promise durability and must stop.
    #[error("store {}: storage failure: {source}", path.display())]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// The engine's error (the store interface names no engine).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The store was created for another ledger than the one the node is starting.
    #[error(
        "store {} was created for {stored}, but this node was started with {expected}; \
         use a fresh home directory for the new chain",
        path.display()
    )]
    GenesisMismatch {
        /// The store's directory.
        path: PathBuf,
        /// The identity recorded in the store (boxed: two identities would make every
        /// `Result<_, StoreError>` twice as large for an error that happens once).
        stored: Box<GenesisId>,
        /// The identity the node was started with.
        expected: Box<GenesisId>,
    },

    /// Data in the store is not what was written: a value that does not decode canonically,
    /// a malformed key, a block under the wrong height, a certificate for another block, a
    /// gap in heights, a missing genesis record. Fatal; the data is left untouched.
    #[error("store {}: tree `{tree}` {}: corrupt: {detail}", path.display(), at(*height))]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// The sled tree the bad entry is in.
        tree: &'static str,
        /// The height the entry is stored under, when the key says one.
        height: Option<Height>,
        /// What is wrong, including the raw key when it names no height.
        detail: String,
    },

    /// `put_base` was called on a store that already holds blocks or a base.
    #[error(
        "a state-sync base at height {height} needs an empty store; this one holds blocks up to {latest}"
    )]
    NotEmpty {
        /// The offered base height.
        height: Height,
        /// The latest stored height.
        latest: Height,
    },

    /// `put_block` was given a block that is not at the next height.
    #[error("block at height {height} does not follow the latest stored height {latest}")]
    NotContiguous {
        /// The offered block's height.
        height: Height,
        /// The latest stored height.
        latest: Height,
    },

    /// `put_block` was given a block whose chain id is not the store's.
    #[error("block at height {height} is for chain {got}, this store is for chain {expected}")]
    WrongChain {
        /// The offered block's height.
        height: Height,
        /// The store's chain.
        expected: ChainId,
        /// The block's chain.
        got: ChainId,
    },

    /// `put_block` was given a certificate that does not commit the given block.
    #[error(
        "certificate for {certificate_block} at height {certificate_height} does not commit \
         block {block} at height {height}"
    )]
    CertificateMismatch {
        /// The block's height.
        height: Height,
        /// The block's hash.
        block: BlockHash,
        /// The height the certificate names.
        certificate_height: Height,
        /// The block hash the certificate names.
        certificate_block: BlockHash,
    },

    /// `put_block` was given a block at a stored height that differs from the stored block.
    #[error("height {height} already holds block {stored}; refusing block {offered}")]
    ConflictingBlock {
        /// The height.
        height: Height,
        /// The stored block's hash.
        stored: BlockHash,
        /// The offered block's hash.
        offered: BlockHash,
    },

    /// `record_own_vote` was given a vote that differs from the one already recorded for its
    /// height, round and kind: sending it would be equivocation.
    #[error(
        "own {kind:?} at height {height} round {round} already recorded for {stored:?}; \
         refusing a different vote for {offered:?}"
    )]
    ConflictingOwnVote {
        /// The vote's height.
        height: Height,
        /// The vote's round.
        round: Round,
        /// Prevote or precommit.
        kind: VoteKind,
        /// The block the recorded vote is for (`None` is nil).
        stored: Option<BlockHash>,
        /// The block the refused vote is for.
        offered: Option<BlockHash>,
    },
}

/// "at height 5" or "(no height)" for [`StoreError::Corrupt`] messages.
fn at(height: Option<Height>) -> String {
    match height {
        Some(h) => format!("at height {h}"),
        None => "(key names no height)".to_owned(),
    }
}
