//! The committed chain as one node sees it: the contract state after the last block, the
//! block that got it there, and the rules a next block must meet.
//!
//! Pure: it builds, checks and applies blocks through `attest-contracts-sim`; it never does
//! I/O, and time comes in as an argument. A proposed block is run speculatively on the state
//! when it is checked (and taken back), so every transaction in a block is known to apply; its
//! [`Delta`] is kept and applied if that block commits, so no block is executed twice and no
//! step copies the state.

use attest_contracts_sim::{Ctx, Delta, Event, Key, State, StateProof, TxError};
use attest_protocol::consensus::BlockBodyError;
use attest_protocol::encoding::{encode, encoded_len};
use attest_protocol::limits::{MAX_BLOCK_BYTES, MAX_BLOCK_TXS, MAX_PROPOSAL_BYTES};
use attest_protocol::{
    Block, BlockHash, BlockHeader, BoundedVec, ChainId, CommitCertificate, Hash, Height, PublicKey,
    SignatureError, Signed, SignedTx, Tx, TxHash, Verified,
};

use crate::certificate::{CertError, check_quorum, verify_certificate};
use crate::genesis::GenesisFile;
use crate::validators::{ValidatorSet, ValidatorSetError, validator_set};

/// How far ahead of the local clock a proposed block's time may be. Clocks of honest nodes
/// agree within this on any sane machine; a larger lead would let a proposer push block time
/// (and everything timed by it) into the future.
pub const MAX_CLOCK_DRIFT_MS: u64 = 10_000;

/// A block that cannot follow the current chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The block names another chain.
    #[error("block for chain {got}, this is {expected}")]
    WrongChain {
        /// This chain.
        expected: ChainId,
        /// The block's.
        got: ChainId,
    },
    /// The block is not for the next height.
    #[error("block at height {got}, the next height is {expected}")]
    WrongHeight {
        /// The next height.
        expected: Height,
        /// The block's.
        got: Height,
    },
    /// The block does not extend the last committed block.
    #[error("block {height} extends {got}, not the committed {expected}")]
    WrongParent {
        /// The block's height.
        height: Height,
        /// The last committed block.
        expected: BlockHash,
        /// The parent it names.
        got: BlockHash,
    },
    /// The block's time is not after its parent's, or too far ahead of our clock.
    #[error("block {height} time {got} ms: must be after {after} and at most {latest}")]
    BadTime {
        /// The block's height.
        height: Height,
        /// The parent's time.
        after: u64,
        /// Our clock plus the allowed drift.
        latest: u64,
        /// The block's time.
        got: u64,
    },
    /// The header's state root is not the state after the parent.
    #[error("block {height} claims state root {got}, the state is {expected}")]
    StateRoot {
        /// The block's height.
        height: Height,
        /// Our state root.
        expected: Hash,
        /// The header's.
        got: Hash,
    },
    /// The body does not match the header.
    #[error("{0}")]
    Body(#[from] BlockBodyError),
    /// The block lacks the certificate of its parent, carries one it should not, or carries
    /// one for another block.
    #[error(
        "block {height}: the previous block's commit certificate is missing, unexpected or for another block"
    )]
    LastCommitPresence {
        /// The block's height.
        height: Height,
    },
    /// The parent's certificate in the block is not valid for the parent.
    #[error("block {height}: previous block's certificate: {error}")]
    LastCommit {
        /// The block's height.
        height: Height,
        /// Why it is invalid.
        error: CertError,
    },
    /// A certificate for this block is not valid.
    #[error("certificate of block {height}: {error}")]
    Certificate {
        /// The block's height.
        height: Height,
        /// Why it is invalid.
        error: CertError,
    },
    /// A certificate names another block.
    #[error("certificate of block {height} names another block")]
    CertificateMismatch {
        /// The block's height.
        height: Height,
    },
    /// A transaction's signature does not verify.
    #[error("block {height} transaction {index}: {error}")]
    TxSignature {
        /// The block's height.
        height: Height,
        /// The transaction's position.
        index: usize,
        /// Why.
        error: SignatureError,
    },
    /// A transaction is refused by the contract; blocks carry only transactions that apply.
    #[error("block {height} transaction {index} is refused: {error}")]
    TxRefused {
        /// The block's height.
        height: Height,
        /// The transaction's position.
        index: usize,
        /// The contract's reason.
        error: TxError,
    },
    /// The block is over the size bound.
    #[error("block {height} is {bytes} bytes; the limit is {max}")]
    TooLarge {
        /// The block's height.
        height: Height,
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// What a checked block does to the state, kept until the block commits or the height moves
/// on.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The block's hash.
    pub hash: BlockHash,
    /// Its changes to the state.
    pub delta: Delta,
    /// What it did.
    pub events: Vec<Event>,
}

impl Applied {
    /// What holding it costs, in bytes (its delta and events, roughly).
    pub fn bytes(&self) -> usize {
        self.delta
            .bytes()
            .saturating_add(self.events.len().saturating_mul(160))
    }
}

/// The committed chain.
#[derive(Debug, Clone)]
pub struct Chain {
    chain_id: ChainId,
    state: State,
    state_root: Hash,
    height: Height,
    last_hash: BlockHash,
    last_time_ms: u64,
    last_certificate: Option<CommitCertificate>,
    /// The set that decides the next height (from the current state).
    validators: ValidatorSet,
    /// The set that decided the current height, which signed `last_certificate`.
    previous_validators: Option<ValidatorSet>,
}

/// A genesis this node cannot start from.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The contract refused the genesis.
    #[error("genesis: {0}")]
    Genesis(#[from] attest_contracts_sim::GenesisError),
    /// The staked accounts do not form a validator set.
    #[error("genesis validators: {0}")]
    Validators(#[from] ValidatorSetError),
}

impl Chain {
    /// The chain at genesis (height 0).
    pub fn new(genesis: &GenesisFile) -> Result<Self, ChainError> {
        let mut state = State::from_genesis(&genesis.genesis)?;
        let validators = validator_set(&state)?;
        Ok(Self {
            chain_id: genesis.genesis.chain_id.clone(),
            state_root: state.state_root(),
            state,
            height: Height(0),
            last_hash: BlockHash::default(),
            last_time_ms: genesis.genesis_time_ms,
            last_certificate: None,
            validators,
            previous_validators: None,
        })
    }

    /// A chain at a height other than genesis, from its parts (a snapshot's, checked by the
    /// caller): the next validators come from the state.
    pub(crate) fn restore(
        mut state: State,
        height: Height,
        last_hash: BlockHash,
        last_time_ms: u64,
        last_certificate: Option<CommitCertificate>,
        previous_validators: Option<ValidatorSet>,
    ) -> Result<Self, ValidatorSetError> {
        let validators = validator_set(&state)?;
        Ok(Self {
            chain_id: state.chain_id().clone(),
            state_root: state.state_root(),
            state,
            height,
            last_hash,
            last_time_ms,
            last_certificate,
            validators,
            previous_validators,
        })
    }

    /// The certificate that committed the head (none at genesis).
    pub fn last_certificate(&self) -> Option<&CommitCertificate> {
        self.last_certificate.as_ref()
    }

    /// The validators that decided the head (none at genesis).
    pub fn previous_validators(&self) -> Option<&ValidatorSet> {
        self.previous_validators.as_ref()
    }

    /// The chain id.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The last committed height (0 before the first block).
    pub fn height(&self) -> Height {
        self.height
    }

    /// The last committed block's hash (zeros before the first block).
    pub fn last_hash(&self) -> BlockHash {
        self.last_hash
    }

    /// The last committed block's time (the genesis time before the first block).
    pub fn last_time_ms(&self) -> u64 {
        self.last_time_ms
    }

    /// The contract state after the last committed block.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Its root.
    pub fn state_root(&self) -> Hash {
        self.state_root
    }

    /// The validators of the next height.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// A proof of the entry under `key` against the current state root (the root the next
    /// block's header carries).
    pub fn prove(&self, key: Key) -> StateProof {
        self.state.prove(key)
    }

    /// Which of `txs` (in order, as one block would carry them) the state after the head
    /// accepts, tried speculatively: nothing changes.
    pub fn trial(&mut self, proposer: PublicKey, txs: &[Verified<Tx>]) -> Vec<bool> {
        let ctx = self.next_ctx(proposer);
        let (accepted, _) = self
            .state
            .speculate(|s| txs.iter().map(|tx| s.apply(&ctx, tx).is_ok()).collect());
        accepted
    }

    /// Whether the state after the head accepts `tx` as the next block's first transaction
    /// under `proposer`, and the contract's reason if not; tried speculatively: nothing
    /// changes.
    pub fn try_tx(&mut self, proposer: PublicKey, tx: &Verified<Tx>) -> Result<(), TxError> {
        let ctx = self.next_ctx(proposer);
        let (result, _) = self.state.speculate(|s| s.apply(&ctx, tx).map(|_| ()));
        result
    }

    /// The context of a speculative next block by `proposer`.
    fn next_ctx(&self, proposer: PublicKey) -> Ctx {
        Ctx {
            height: self.height.next(),
            time_ms: self.last_time_ms.saturating_add(1),
            block_hash: BlockHash::default(),
            proposer,
        }
    }

    /// A block for the next height from `candidates` (in order): each is tried speculatively
    /// and left out if the contract refuses it, so the block carries only transactions that
    /// apply. Returns the block and what it does.
    pub fn build_block(
        &mut self,
        proposer: PublicKey,
        now_ms: u64,
        candidates: Vec<Verified<Tx>>,
    ) -> (Block, Applied) {
        let height = self.height.next();
        let time_ms = now_ms.max(self.last_time_ms + 1);
        // The block hash is not known until the transactions are chosen, and `apply` reads it
        // (spot-check seeds). So choose with a provisional context, then apply for real.
        let provisional = Ctx {
            height,
            time_ms,
            block_hash: BlockHash::default(),
            proposer,
        };
        let (mut txs, _) = self.state.speculate(|scratch| {
            let mut txs = Vec::new();
            let mut bytes = 0;
            for tx in candidates {
                let size = encode(tx.signed()).len();
                if txs.len() == MAX_BLOCK_TXS || bytes + size > MAX_PROPOSAL_BYTES {
                    break;
                }
                if scratch.apply(&provisional, &tx).is_ok() {
                    bytes += size;
                    txs.push(tx);
                }
            }
            txs
        });
        // The real block hash can change what a transaction does (spot-check draws), and so
        // whether a later one applies (a verdict after the commit in the same block names the
        // checker the draw picked); should one be refused, drop it and build again.
        loop {
            let block = self.assemble(proposer, time_ms, &txs);
            match self.run(&block, txs.clone()) {
                Ok(applied) => return (block, applied),
                Err(BlockError::TxRefused { index, .. }) if index < txs.len() => {
                    txs.remove(index);
                }
                Err(e) => unreachable!("a block assembled from the chain head is valid: {e}"),
            }
        }
    }

    fn assemble(&self, proposer: PublicKey, time_ms: u64, txs: &[Verified<Tx>]) -> Block {
        let signed: Vec<_> = txs.iter().map(|t| t.signed().clone()).collect();
        let header = BlockHeader {
            chain_id: self.chain_id.clone(),
            height: self.height.next(),
            prev: self.last_hash,
            proposer,
            time_ms,
            tx_root: Block::tx_root(&signed),
            state_root: self.state_root,
            last_commit: Block::last_commit_hash(self.last_certificate.as_ref()),
        };
        Block {
            header,
            txs: BoundedVec::new(signed).expect("at most MAX_BLOCK_TXS chosen"),
            last_commit: self.last_certificate.clone(),
        }
    }

    /// Checks a proposed block against the chain, `now_ms` bounding its time, and runs it
    /// speculatively. Everything but the proposer's identity, which consensus checks.
    /// `known` gives transactions whose signatures were already verified (the mempool's), so
    /// each signature is verified once per node.
    pub fn check_proposal(
        &mut self,
        block: &Block,
        now_ms: u64,
        known: &dyn Fn(&TxHash) -> Option<Verified<Tx>>,
    ) -> Result<Applied, BlockError> {
        let latest = now_ms.saturating_add(MAX_CLOCK_DRIFT_MS);
        if block.header.time_ms > latest {
            return Err(BlockError::BadTime {
                height: block.header.height,
                after: self.last_time_ms,
                latest,
                got: block.header.time_ms,
            });
        }
        self.check_block(block, known, false)
    }

    /// Checks a committed block with its certificate (from sync or the store) and runs it
    /// speculatively. Its time is not held against our clock: it is committed.
    pub fn check_committed(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
    ) -> Result<Applied, BlockError> {
        self.check_committed_known(block, certificate, &|_| None, false)
    }

    /// [`Chain::check_committed`], with `known` giving transactions whose signatures the
    /// caller already verified (an auditor verifying on another thread), and
    /// `certificates_verified` saying that the caller verified every signature of
    /// `certificate` and of the block's `last_commit` with
    /// [`crate::certificate::verify_certificate_signatures`]: then only their signers and
    /// power are checked here.
    pub fn check_committed_known(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
        known: &dyn Fn(&TxHash) -> Option<Verified<Tx>>,
        certificates_verified: bool,
    ) -> Result<Applied, BlockError> {
        let height = block.header.height;
        if certificate.height != height || certificate.block != block.hash() {
            return Err(BlockError::CertificateMismatch { height });
        }
        self.check_certificate(certificate, certificates_verified)
            .map_err(|error| BlockError::Certificate { height, error })?;
        self.check_block(block, known, certificates_verified)
    }

    /// Checks `cert` against the validators of the next height; its signatures only unless
    /// `signatures_verified`.
    fn check_certificate(
        &self,
        cert: &CommitCertificate,
        signatures_verified: bool,
    ) -> Result<(), CertError> {
        if signatures_verified {
            check_quorum(&self.validators, cert)
        } else {
            verify_certificate(&self.chain_id, &self.validators, cert)
        }
    }

    fn check_block(
        &mut self,
        block: &Block,
        known: &dyn Fn(&TxHash) -> Option<Verified<Tx>>,
        last_commit_verified: bool,
    ) -> Result<Applied, BlockError> {
        let h = &block.header;
        let height = h.height;
        if h.chain_id != self.chain_id {
            let got = h.chain_id.clone();
            return Err(BlockError::WrongChain {
                expected: self.chain_id.clone(),
                got,
            });
        }
        if height != self.height.next() {
            return Err(BlockError::WrongHeight {
                expected: self.height.next(),
                got: height,
            });
        }
        if h.prev != self.last_hash {
            return Err(BlockError::WrongParent {
                height,
                expected: self.last_hash,
                got: h.prev,
            });
        }
        if h.time_ms <= self.last_time_ms {
            let (after, got) = (self.last_time_ms, h.time_ms);
            return Err(BlockError::BadTime {
                height,
                after,
                latest: u64::MAX,
                got,
            });
        }
        if h.state_root != self.state_root {
            let (expected, got) = (self.state_root, h.state_root);
            return Err(BlockError::StateRoot {
                height,
                expected,
                got,
            });
        }
        let bytes = encoded_len(block);
        if bytes > MAX_BLOCK_BYTES {
            return Err(BlockError::TooLarge {
                height,
                bytes,
                max: MAX_BLOCK_BYTES,
            });
        }
        block.check_body()?;
        self.check_last_commit(block, last_commit_verified)?;
        // Equal hashes mean equal bytes: a known transaction's signature was verified. The
        // others are verified together, in batches.
        let known: Vec<Option<Verified<Tx>>> = block
            .txs
            .iter()
            .map(|tx| known(&attest_protocol::tx_hash(tx)))
            .collect();
        let unknown: Vec<SignedTx> = block
            .txs
            .iter()
            .zip(&known)
            .filter(|(_, k)| k.is_none())
            .map(|(tx, _)| tx.clone())
            .collect();
        let mut checked = Signed::verify_all(&self.chain_id, unknown).into_iter();
        let mut txs = Vec::with_capacity(block.txs.len());
        for (index, known) in known.into_iter().enumerate() {
            let verified = match known {
                Some(verified) => verified,
                None => checked
                    .next()
                    .expect("one answer per unknown transaction")
                    .map_err(|error| BlockError::TxSignature {
                        height,
                        index,
                        error,
                    })?,
            };
            txs.push(verified);
        }
        self.run(block, txs)
    }

    fn check_last_commit(&self, block: &Block, verified: bool) -> Result<(), BlockError> {
        let height = block.header.height;
        match (&block.last_commit, &self.previous_validators) {
            (None, None) => Ok(()),
            (Some(cert), Some(set)) => {
                if cert.height != self.height || cert.block != self.last_hash {
                    return Err(BlockError::LastCommitPresence { height });
                }
                // The certificate that committed the head was verified when it did: a block
                // that carries that same one needs its signatures checked no second time.
                let known = verified || self.last_certificate.as_ref() == Some(cert);
                let checked = if known {
                    check_quorum(set, cert)
                } else {
                    verify_certificate(&self.chain_id, set, cert)
                };
                checked.map_err(|error| BlockError::LastCommit { height, error })
            }
            _ => Err(BlockError::LastCommitPresence { height }),
        }
    }

    /// Runs `block` on the state speculatively: the state is left as it was.
    fn run(&mut self, block: &Block, txs: Vec<Verified<Tx>>) -> Result<Applied, BlockError> {
        let hash = block.hash();
        let h = &block.header;
        let ctx = Ctx {
            height: h.height,
            time_ms: h.time_ms,
            block_hash: hash,
            proposer: h.proposer,
        };
        let (events, delta) = self.state.speculate(|state| {
            let mut events = Vec::new();
            for (index, tx) in txs.iter().enumerate() {
                let mut e = state
                    .apply(&ctx, tx)
                    .map_err(|error| BlockError::TxRefused {
                        height: h.height,
                        index,
                        error,
                    })?;
                events.append(&mut e);
            }
            events.extend(state.end_block(&ctx));
            Ok::<_, BlockError>(events)
        });
        Ok(Applied {
            hash,
            delta,
            events: events?,
        })
    }

    /// Makes `block`, checked into `applied`, the new head. `certificate` commits it.
    pub fn commit(
        &mut self,
        block: &Block,
        certificate: CommitCertificate,
        applied: Applied,
    ) -> Result<(), ValidatorSetError> {
        debug_assert_eq!(applied.hash, block.hash(), "applied state of another block");
        self.state.apply_delta(&applied.delta);
        let validators = match validator_set(&self.state) {
            Ok(v) => v,
            Err(e) => {
                self.state.revert_delta(&applied.delta);
                return Err(e);
            }
        };
        self.state_root = self.state.state_root();
        self.height = block.header.height;
        self.last_hash = applied.hash;
        self.last_time_ms = block.header.time_ms;
        self.last_certificate = Some(certificate);
        self.previous_validators = Some(std::mem::replace(&mut self.validators, validators));
        Ok(())
    }
}
