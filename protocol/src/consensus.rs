//! Blocks, proposals and commit certificates (votes are `crate::vote`).

use serde::{Deserialize, Serialize};

use crate::bounded::BoundedVec;
use crate::encoding::{Canonical, encode};
use crate::hash::{Hash, hash_tagged, tag};
use crate::keys::{PublicKey, Signature};
use crate::limits::{MAX_BLOCK_BYTES, MAX_BLOCK_TXS, MAX_VALIDATORS};
use crate::merkle;
use crate::signed::{Signable, Signed};
use crate::tx::{SignedTx, tx_hash};
use crate::types::{BlockHash, ChainId, Height, Round};
pub use crate::vote::{Vote, VoteKind};

/// A proposer's block for a round, signed with its account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The height proposed for.
    pub height: Height,
    /// The round of the proposal.
    pub round: Round,
    /// The round in which this block was locked (Tendermint's proof-of-lock round), if any.
    pub pol_round: Option<Round>,
    /// The proposed block.
    pub block: Block,
}

impl Signable for Proposal {
    const SIGNING_TAG: &'static str = "attest/sig/proposal/v1";
}

impl Canonical for Proposal {
    const NAME: &'static str = "proposal";
    const MAX_ENCODED_LEN: usize = MAX_BLOCK_BYTES + 64;
}

/// One validator's precommit signature inside a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSig {
    /// The validator's account key.
    pub validator: PublicKey,
    /// Its signature over `Vote { height, round, Precommit, Some(block) }`.
    pub signature: Signature,
}

/// Precommits of more than 2/3 of stake for one block: proof that the block is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    /// The committed block's height.
    pub height: Height,
    /// The round in which it was committed.
    pub round: Round,
    /// The committed block.
    pub block: BlockHash,
    /// The precommit signatures, in ascending validator key order, no validator twice.
    pub signatures: BoundedVec<CommitSig, MAX_VALIDATORS>,
}

impl CommitCertificate {
    /// The vote every signature in this certificate signs.
    pub fn vote(&self) -> Vote {
        Vote {
            height: self.height,
            round: self.round,
            kind: VoteKind::Precommit,
            block: Some(self.block),
        }
    }

    /// Each signature as the signed vote it is, for verification.
    pub fn signed_votes(&self) -> impl Iterator<Item = Signed<Vote>> + '_ {
        let vote = self.vote();
        self.signatures.iter().map(move |s| Signed {
            signer: s.validator,
            signature: s.signature,
            body: vote.clone(),
        })
    }

    /// `H("attest/commit/v1", encode(certificate))`, which the next block's header carries.
    pub fn hash(&self) -> Hash {
        hash_tagged(tag::COMMIT, &[&encode(self)])
    }
}

impl Canonical for CommitCertificate {
    const NAME: &'static str = "commit certificate";
    const MAX_ENCODED_LEN: usize = MAX_VALIDATORS * 96 + 128;
}

/// What a block's hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The chain this block belongs to.
    pub chain_id: ChainId,
    /// The block's height (the first block is 1).
    pub height: Height,
    /// The previous block's hash (all zeros for height 1).
    pub prev: BlockHash,
    /// The proposer's account key.
    pub proposer: PublicKey,
    /// Milliseconds since the Unix epoch; strictly greater than the previous block's.
    pub time_ms: u64,
    /// The Merkle root over the transaction hashes, in block order.
    pub tx_root: Hash,
    /// The contract state root after applying the previous block.
    pub state_root: Hash,
    /// The hash of the previous block's commit certificate (the empty-tree root for height 1).
    pub last_commit: Hash,
}

/// A block: header, transactions, and the certificate that committed the previous block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header, which the block hash covers.
    pub header: BlockHeader,
    /// The transactions, applied in this order.
    pub txs: BoundedVec<SignedTx, MAX_BLOCK_TXS>,
    /// The previous block's commit certificate (`None` only at height 1).
    pub last_commit: Option<CommitCertificate>,
}

impl Canonical for Block {
    const NAME: &'static str = "block";
    const MAX_ENCODED_LEN: usize = MAX_BLOCK_BYTES;
}

/// A block body that does not match its header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockBodyError {
    /// The header's transaction root is not the root over the block's transactions.
    #[error("block {height}: transaction root {header} in the header, {body} from the body")]
    TxRoot {
        /// The block's height.
        height: Height,
        /// The root the header claims.
        header: Hash,
        /// The root of the transactions carried.
        body: Hash,
    },
    /// The header's `last_commit` is not the hash of the certificate carried.
    #[error("block {height}: last-commit hash in the header does not match the certificate")]
    LastCommit {
        /// The block's height.
        height: Height,
    },
}

impl Block {
    /// The block's hash: `H("attest/block-header/v1", encode(header))`.
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// The transaction root over `txs`.
    pub fn tx_root(txs: &[SignedTx]) -> Hash {
        let leaves: Vec<Hash> = txs.iter().map(|t| Hash(tx_hash(t).0)).collect();
        merkle::root(&leaves)
    }

    /// The `last_commit` header field for `certificate`.
    pub fn last_commit_hash(certificate: Option<&CommitCertificate>) -> Hash {
        certificate.map_or_else(merkle::empty_root, CommitCertificate::hash)
    }

    /// Checks that the transactions and certificate are those the header commits to.
    pub fn check_body(&self) -> Result<(), BlockBodyError> {
        let body = Self::tx_root(&self.txs);
        if body != self.header.tx_root {
            return Err(BlockBodyError::TxRoot {
                height: self.header.height,
                header: self.header.tx_root,
                body,
            });
        }
        if Self::last_commit_hash(self.last_commit.as_ref()) != self.header.last_commit {
            return Err(BlockBodyError::LastCommit {
                height: self.header.height,
            });
        }
        Ok(())
    }
}

impl BlockHeader {
    /// The block hash.
    pub fn hash(&self) -> BlockHash {
        hash_tagged(tag::BLOCK_HEADER, &[&encode(self)]).into()
    }
}
