//! What the host feeds [`super::Consensus`] and what it must do with what comes out.
//!
//! This module owns the vocabulary between the consensus wrapper and its host (`NodeCore`):
//! inputs, outputs with the host's duty spelled out on each, and the typed rejections. It never
//! holds state and never exposes a Malachite type, so the host does not depend on the driver.

use std::time::Duration;

use attest_protocol::consensus::BlockBodyError;
use attest_protocol::tx::EquivocationEvidence;
use attest_protocol::{
    Block, ChainId, CommitCertificate, Height, Proposal, PublicKey, Round, SignatureError, Signed,
    Verified, Vote,
};

use attest_chain::{CertError, ValidatorSet};

use super::polka::{LockRecord, PolkaCert};
use super::timeouts::TimeoutId;

/// The host's verdict on a proposed block, checked against its chain state (previous hash,
/// time, state root, transactions). Consensus cannot judge this itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockValidity {
    /// The block may be committed on top of the current chain.
    Valid,
    /// It may not; consensus prevotes nil for it.
    Invalid,
}

/// An input to [`super::Consensus::handle`].
#[derive(Debug, Clone)]
pub enum Input {
    /// Start consensus at `height` with that height's validator set. The first input; after a
    /// `Decided`, the host commits the block and then starts the next height (possibly later,
    /// to pace idle blocks; possibly higher, after sync). Heights only go up.
    StartHeight {
        /// The height to decide.
        height: Height,
        /// Its validators, from the state after the previous block.
        validators: ValidatorSet,
    },
    /// A proposal from the network, with the host's verdict on its block. For a proposal that
    /// is not at the current height the verdict is ignored: the proposal is buffered and handed
    /// back with [`Output::RecheckProposal`] when its height starts.
    Proposal {
        /// The signed proposal, unverified.
        proposal: Signed<Proposal>,
        /// The host's verdict on `proposal.body.block`.
        validity: BlockValidity,
    },
    /// A vote from the network, unverified.
    Vote(Signed<Vote>),
    /// A vote from the network whose signature the host already checked under this chain's
    /// id (off its loop); every other check runs as for [`Input::Vote`].
    VerifiedVote(Verified<Vote>),
    /// A timer from [`Output::ScheduleTimeout`] elapsed. Stale ones are dropped.
    TimeoutElapsed(TimeoutId),
    /// A polka certificate from the network, unverified: it lets the driver accept a
    /// proposal whose proof-of-lock round it cannot see a polka for in its own vote keeper
    /// (see `polka`).
    Polka(Box<PolkaCert>),
    /// The block asked for by [`Output::GetValue`].
    ProposeValue {
        /// The height of the request.
        height: Height,
        /// The round of the request.
        round: Round,
        /// The block to propose.
        block: Block,
    },
}

/// An effect the host must carry out. Carry them out in order: a vote is persisted before
/// anything that follows it in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Our own new vote. Write it to the write-ahead log and make the write durable, *then*
    /// broadcast it, never the other way round: after a crash the node restores its votes from
    /// the log (see [`super::Consensus::new`]), and a vote that left the node but not the log
    /// could be contradicted after the restart, which is slashable equivocation.
    PersistAndBroadcastVote(Signed<Vote>),
    /// Our own vote that is already in the write-ahead log (restored after a restart):
    /// broadcast it again. It must not be signed anew.
    BroadcastVote(Signed<Vote>),
    /// We are about to precommit a block: write the lock (the proposal and its polka) to the
    /// write-ahead log, durably, before the `PersistAndBroadcastVote` that follows. After a
    /// crash the restored lock gives the driver back the block it must stay locked on (and
    /// can re-propose).
    PersistLock(Box<LockRecord>),
    /// Broadcast this polka certificate: it backs a proposal of ours that names a
    /// proof-of-lock round.
    BroadcastPolka(Box<PolkaCert>),
    /// Our own new proposal: write it to the write-ahead log, then broadcast it. (A proposer
    /// that proposes two blocks in one round after a restart is not slashable, but it costs
    /// the round.)
    PersistAndBroadcastProposal(Signed<Proposal>),
    /// Our own proposal, already in the write-ahead log: broadcast it again.
    BroadcastProposal(Signed<Proposal>),
    /// Arm a timer for `duration` and feed `Input::TimeoutElapsed(id)` when it fires.
    /// Earlier timers need not be cancelled: stale ones are dropped on arrival.
    ScheduleTimeout {
        /// What to hand back.
        id: TimeoutId,
        /// How long to wait.
        duration: Duration,
    },
    /// We are the proposer of this round: build a block for `height` (proposer = our
    /// account) and answer with `Input::ProposeValue`. Answer well within `timeout`, or the
    /// other validators prevote nil.
    GetValue {
        /// The height to build for.
        height: Height,
        /// The round it is for.
        round: Round,
        /// The propose timeout of this round.
        timeout: Duration,
    },
    /// `block` is committed at its height: `certificate` holds precommits of more than 2/3 of
    /// the voting power, sorted by validator key. Store both durably, apply the block, then
    /// feed `Input::StartHeight` for the next height. Emitted once per height.
    Decided {
        /// The committed block.
        block: Block,
        /// Its commit certificate.
        certificate: CommitCertificate,
    },
    /// A validator signed two different votes for one height, round and kind. Both signatures
    /// have been verified. Submit it as a slashing transaction. Emitted at most once per
    /// validator per height.
    Equivocation(EquivocationEvidence),
    /// A proposal buffered before its height started, now at the current height: check its
    /// block against the chain state and feed it again as `Input::Proposal` with the verdict.
    RecheckProposal(Signed<Proposal>),
}

/// Our own signed messages as the write-ahead log keeps them, for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnMessage {
    /// A vote we signed.
    Vote(Signed<Vote>),
    /// A proposal we signed (boxed: it carries a block).
    Proposal(Box<Signed<Proposal>>),
    /// A block we precommitted, with its proposal and polka (restored, never re-broadcast).
    Lock(Box<LockRecord>),
}

/// Fixed settings of one consensus instance.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// The chain every signature must name.
    pub chain_id: ChainId,
    /// The timeout schedule.
    pub timeouts: super::TimeoutConfig,
}

/// Why an input was rejected. A rejected input has no effect on consensus state. (Keys are
/// boxed: a `PublicKey` holds its decompressed point, 224 bytes, and errors should stay small.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A message or timeout arrived before the first `StartHeight`.
    #[error("consensus has not started a height yet")]
    NotStarted,
    /// `StartHeight` for a height not above the current one.
    #[error("cannot start height {requested}: already at height {current}")]
    HeightNotAhead {
        /// The current height.
        current: Height,
        /// The height asked for.
        requested: Height,
    },
    /// A message for a height already decided.
    #[error("message for past height {height} (current {current})")]
    StaleHeight {
        /// The message's height.
        height: Height,
        /// The current height.
        current: Height,
    },
    /// A message for a height beyond the buffering window: we may be behind (sync).
    #[error("message for height {height}, too far ahead of {current}")]
    FarFutureHeight {
        /// The message's height.
        height: Height,
        /// The current height.
        current: Height,
    },
    /// A message for a round too far ahead of ours: accepting it would make the vote keeper
    /// allocate state for it.
    #[error("message for round {round}; at most {max} accepted now")]
    RoundTooFar {
        /// The message's round.
        round: Round,
        /// The highest round accepted now.
        max: Round,
    },
    /// The signer is not in the validator set.
    #[error("{0} is not a validator")]
    NotAValidator(Box<PublicKey>),
    /// A proposal signed by someone other than the round's proposer.
    #[error(
        "proposal for height {height} round {round} signed by {signer}, not the proposer {expected}"
    )]
    WrongProposer {
        /// The proposal's height.
        height: Height,
        /// Its round.
        round: Round,
        /// Who signed it.
        signer: Box<PublicKey>,
        /// Who should have.
        expected: Box<PublicKey>,
    },
    /// The signature does not verify.
    #[error(transparent)]
    BadSignature(#[from] SignatureError),
    /// A proposal whose proof-of-lock round is not below its round.
    #[error("proposal for round {round} names proof-of-lock round {pol_round}")]
    InvalidPolRound {
        /// The proposal's round.
        round: Round,
        /// Its proof-of-lock round.
        pol_round: Round,
    },
    /// The block's header names another height or chain than the proposal.
    #[error("proposed block is for {what} other than the proposal's")]
    BlockMismatch {
        /// `"a height"` or `"a chain"`.
        what: &'static str,
    },
    /// The block's body does not match its header.
    #[error(transparent)]
    BlockBody(#[from] BlockBodyError),
    /// The round's proposer already sent two different proposals; more teach nothing.
    #[error("already two different proposals for round {round}")]
    TooManyProposals {
        /// The round.
        round: Round,
    },
    /// The future-height buffer holds all this signer may have buffered.
    #[error("future-height buffer full for {signer} at height {height}")]
    BufferFull {
        /// The message's height.
        height: Height,
        /// Its signer.
        signer: Box<PublicKey>,
    },
    /// A `ProposeValue` that answers no pending `GetValue`.
    #[error("no block was requested for height {height} round {round}")]
    UnexpectedValue {
        /// The height given.
        height: Height,
        /// The round given.
        round: Round,
    },
    /// A polka certificate that does not prove a polka.
    #[error("polka certificate: {0}")]
    BadPolka(#[from] CertError),
    /// The driver refused the input (a bug in this wrapper, never a peer's doing).
    #[error("consensus driver: {0}")]
    Driver(String),
}

/// Why the write-ahead log cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Own messages were given but the node has no validator key.
    #[error("write-ahead log has votes but the node has no validator key")]
    NoKey,
    /// A message in the log is signed by another key.
    #[error("write-ahead log holds a message signed by {0}, not by this validator")]
    NotOurs(Box<PublicKey>),
    /// A message in the log does not verify (corrupt log or wrong chain).
    #[error(transparent)]
    BadSignature(#[from] SignatureError),
    /// The log holds two different messages for one slot: this node already equivocated.
    #[error("write-ahead log holds two different messages for height {height} round {round}")]
    Conflicting {
        /// The height.
        height: Height,
        /// The round.
        round: Round,
    },
}
