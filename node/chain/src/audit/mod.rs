//! The independent ledger audit (`attest audit`) and the verifiable export.
//!
//! [`audit`] takes a genesis and the committed blocks with their certificates, from wherever
//! they come (a node's API, a data directory's `SledStore`), and re-verifies all of it from
//! genesis: the hash chain, every commit certificate against the validator set of its height
//! (taken from the replayed state), every transaction signature under the protocol's rule, the
//! replay of every block through `attest-contracts-sim` with the state root each header
//! claims, the contract invariants after every block, and monotonic timestamps. It stops at
//! the first failure with an [`AuditError`] naming the height, the check and the reason, and
//! reports what it verified ([`AuditReport`], schema [`AUDIT_SCHEMA`]): counts, each
//! provider's record, validation and job latency distributions, slashes and its own speed.
//! [`export_jsonl`] writes the verified chain as JSON lines (schema [`EXPORT_SCHEMA`]) that a
//! third party can check with stock ed25519 and blake3 libraries (`docs/PROTOCOL.md`
//! section 12, `docs/reference/verify_export.py`).
//!
//! This module owns no ledger rule and must never grow one: each block goes through
//! [`Chain::check_committed`] and [`Chain::commit`], exactly the path a syncing node takes, so
//! the audit accepts precisely the chains nodes accept. It only feeds blocks in order, names
//! what failed, and tallies the replayed events. It never trusts its input: bad blocks are
//! errors, never panics.

mod export;
mod report;
mod stats;

use std::error::Error;
use std::fmt;
use std::time::Duration;

use attest_contracts_sim::InvariantViolation;
use attest_protocol::{
    Block, BlockHash, CommitCertificate, Hash, Height, Signed, Tx, TxHash, Verified,
};
use serde::{Deserialize, Serialize};

use crate::CommittedBlock;
use crate::chain::{BlockError, Chain, ChainError};
use crate::genesis::GenesisFile;
use crate::validators::ValidatorSetError;

pub use export::{
    BlockLine, CertificateLine, EXPORT_SCHEMA, EndLine, ExportError, ExportLine, ExportSummary,
    GenesisLine, SignatureLine, TxLine, ValidatorLine, ValidatorsLine, export_jsonl,
};
pub use report::{AuditFailure, AuditReport, Counts, Head, Replayed, Timing};
pub use stats::{Distribution, JobCounts, LatencyReport, ProviderRecord, SlashEntry};

/// A monotonic clock for the report's timing figures: the time since any fixed origin. The
/// audit reads no clock of its own (this crate is pure); `attest audit` passes the process's
/// monotonic clock, and [`no_clock`] makes every timing figure zero (a deterministic report).
pub type Clock = fn() -> Duration;

/// A clock that never advances.
pub fn no_clock() -> Duration {
    Duration::ZERO
}

/// The `schema` field of an [`AuditReport`].
pub const AUDIT_SCHEMA: &str = "attest.audit/1";

/// The heights a report covers: `from..=to` (`to: None` for "to the last block given").
///
/// State is only known by replaying from genesis, so every block from height 1 is verified
/// whatever the range; the range selects which verified blocks the report's counts, provider
/// table, latencies and slashes cover. Blocks after `to` are not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRange {
    /// The first height reported (at least 1).
    pub from: Height,
    /// The last height reported and verified, or `None` for every block given.
    pub to: Option<Height>,
}

impl AuditRange {
    /// Every block.
    pub const ALL: Self = Self {
        from: Height(1),
        to: None,
    };

    /// The range `--from`/`--to` ask for; `from` defaults to 1 and 0 means 1.
    pub fn new(from: Option<Height>, to: Option<Height>) -> Result<Self, AuditError> {
        let from = Height(from.map_or(1, |h| h.0.max(1)));
        if let Some(to) = to
            && to < from
        {
            return Err(AuditError::BadRange { from, to });
        }
        Ok(Self { from, to })
    }

    /// Whether the report covers `height`.
    pub fn contains(&self, height: Height) -> bool {
        height >= self.from && self.to.is_none_or(|to| height <= to)
    }
}

impl Default for AuditRange {
    fn default() -> Self {
        Self::ALL
    }
}

/// What an audit checks, as failures name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The requested range.
    Range,
    /// The genesis document.
    Genesis,
    /// Reading blocks from their source (store, API).
    Source,
    /// That the blocks reach the requested heights.
    Missing,
    /// That the block is for this chain.
    ChainId,
    /// That blocks come in height order, one per height, from 1.
    Order,
    /// That the block's `prev` is the hash of the block before it.
    HashChain,
    /// That the block's time is after its parent's.
    Timestamp,
    /// That the header's state root is the replayed state's.
    StateRoot,
    /// That the header's transaction root is the root over the block's transactions.
    TxRoot,
    /// The previous block's certificate the block carries, and its hash in the header.
    LastCommit,
    /// The block's own commit certificate: names it, signed by more than 2/3 of the stake.
    Certificate,
    /// A transaction's signature (the protocol's rule).
    TxSignature,
    /// That the contract accepts every transaction in the block.
    Replay,
    /// The block's size bound.
    Size,
    /// The contract invariants after the block.
    Invariant,
    /// That the state after the block yields a validator set.
    ValidatorSet,
}

impl Check {
    /// The check a chain rule's refusal belongs to.
    fn of(error: &BlockError) -> Self {
        use attest_protocol::consensus::BlockBodyError;
        match error {
            BlockError::WrongChain { .. } => Self::ChainId,
            BlockError::WrongHeight { .. } => Self::Order,
            BlockError::WrongParent { .. } => Self::HashChain,
            BlockError::BadTime { .. } => Self::Timestamp,
            BlockError::StateRoot { .. } => Self::StateRoot,
            BlockError::Body(BlockBodyError::TxRoot { .. }) => Self::TxRoot,
            BlockError::Body(BlockBodyError::LastCommit { .. })
            | BlockError::LastCommitPresence { .. }
            | BlockError::LastCommit { .. } => Self::LastCommit,
            BlockError::Certificate { .. } | BlockError::CertificateMismatch { .. } => {
                Self::Certificate
            }
            BlockError::TxSignature { .. } => Self::TxSignature,
            BlockError::TxRefused { .. } => Self::Replay,
            BlockError::TooLarge { .. } => Self::Size,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Range => "range",
            Self::Genesis => "genesis",
            Self::Source => "reading blocks",
            Self::Missing => "missing blocks",
            Self::ChainId => "chain id",
            Self::Order => "block order",
            Self::HashChain => "hash chain",
            Self::Timestamp => "timestamp",
            Self::StateRoot => "state root",
            Self::TxRoot => "transaction root",
            Self::LastCommit => "previous block's certificate",
            Self::Certificate => "commit certificate",
            Self::TxSignature => "transaction signature",
            Self::Replay => "replay",
            Self::Size => "block size",
            Self::Invariant => "contract invariant",
            Self::ValidatorSet => "validator set",
        })
    }
}

/// Why an audit stopped. Every variant after genesis names the height it stopped at: the
/// height the next block had to have.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `--from` is after `--to`.
    #[error("range: --from {from} is after --to {to}")]
    BadRange {
        /// The first height asked for.
        from: Height,
        /// The last height asked for.
        to: Height,
    },
    /// The contract refuses the genesis, or its stakes form no validator set.
    #[error("genesis: {0}")]
    Genesis(#[from] ChainError),
    /// Reading the block for `height` from its source failed.
    #[error("height {height}: reading blocks: {error}")]
    Source {
        /// The height that was being read.
        height: Height,
        /// The source's error.
        error: Box<dyn Error + Send + Sync>,
    },
    /// The blocks end before the range does.
    #[error(
        "height {height}: missing: the blocks end at height {last}, the range asks for {wanted}"
    )]
    Missing {
        /// The first height not given.
        height: Height,
        /// The last block given.
        last: Height,
        /// The height the range needs.
        wanted: Height,
    },
    /// The block for `height` breaks a chain rule.
    #[error("height {height}: {check}: {error}")]
    Block {
        /// The height being verified.
        height: Height,
        /// What failed.
        check: Check,
        /// Why (boxed: the rule's error carries hashes and ids).
        error: Box<BlockError>,
    },
    /// After the block at `height`, a contract invariant no longer holds.
    #[error("height {height}: contract invariant: {error}")]
    Invariant {
        /// The block after which it broke.
        height: Height,
        /// Which invariant.
        error: InvariantViolation,
    },
    /// The state after the block at `height` yields no validator set (no active stake left).
    #[error("height {height}: validator set after the block: {error}")]
    Validators {
        /// The block after which it happened.
        height: Height,
        /// Why.
        error: ValidatorSetError,
    },
}

impl AuditError {
    /// The height the audit stopped at, if it got past genesis.
    pub fn height(&self) -> Option<Height> {
        match self {
            Self::BadRange { .. } | Self::Genesis(_) => None,
            Self::Source { height, .. }
            | Self::Missing { height, .. }
            | Self::Block { height, .. }
            | Self::Invariant { height, .. }
            | Self::Validators { height, .. } => Some(*height),
        }
    }

    /// What failed.
    pub fn check(&self) -> Check {
        match self {
            Self::BadRange { .. } => Check::Range,
            Self::Genesis(_) => Check::Genesis,
            Self::Source { .. } => Check::Source,
            Self::Missing { .. } => Check::Missing,
            Self::Block { check, .. } => *check,
            Self::Invariant { .. } => Check::Invariant,
            Self::Validators { .. } => Check::ValidatorSet,
        }
    }

    /// The chain rule's error, for a [`AuditError::Block`].
    pub fn block_error(&self) -> Option<&BlockError> {
        match self {
            Self::Block { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A failed audit: the error, and the report of everything verified before it (`ok` false,
/// `failure` set), which `attest audit --json` prints all the same.
#[derive(Debug, thiserror::Error)]
#[error("audit failed at {error}")]
pub struct AuditFailed {
    /// Why it stopped.
    pub error: AuditError,
    /// What was verified before.
    pub report: Box<AuditReport>,
}

/// Audits `blocks` (committed blocks with their certificates, in height order from 1) against
/// `genesis`, reporting on `range`. Every block from height 1 up to the range's end (or the
/// last block given) is verified; see [`AuditRange`].
///
/// `blocks` may come from a node's store, its API or any other source;
/// an `Err` item stops the audit with [`AuditError::Source`].
pub fn audit<I, E>(
    genesis: &GenesisFile,
    blocks: I,
    range: AuditRange,
    clock: Clock,
) -> Result<AuditReport, AuditFailed>
where
    I: IntoIterator<Item = Result<CommittedBlock, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    audit_preverified(genesis, plain(blocks), range, clock)
}

/// A committed block with what its source verified of it already (on a thread of its own,
/// with the same rule): the audit does not verify that again.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The block and its certificate.
    pub block: CommittedBlock,
    /// Those of its transactions whose signatures the source verified.
    pub verified_txs: Vec<Verified<Tx>>,
    /// Whether the source verified every signature of the certificate and of the block's
    /// `last_commit` ([`crate::verify_certificate_signatures`]); signers and power are
    /// checked by the audit either way.
    pub certificates_verified: bool,
}

impl Fetched {
    /// A block nothing was verified of.
    pub fn plain(block: CommittedBlock) -> Self {
        Self {
            block,
            verified_txs: Vec::new(),
            certificates_verified: false,
        }
    }

    /// Verifies what needs no state: every transaction's signature and both certificates'
    /// signatures. `last_commit_is_previous` says the block's `last_commit` is the very
    /// certificate the previous block came with (the usual case): the audit verifies that one
    /// with the previous block, so it is not verified twice. A signature that fails is left
    /// for the audit, which reports it.
    pub fn verify(
        block: CommittedBlock,
        chain: &attest_protocol::ChainId,
        last_commit_is_previous: bool,
    ) -> Self {
        let verified_txs = Signed::verify_all(chain, block.0.txs.to_vec())
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let own = crate::verify_certificate_signatures(chain, &block.1).is_ok();
        let last = last_commit_is_previous
            || block
                .0
                .last_commit
                .as_ref()
                .is_none_or(|c| crate::verify_certificate_signatures(chain, c).is_ok());
        Self {
            block,
            verified_txs,
            certificates_verified: own && last,
        }
    }
}

fn plain<I, E>(blocks: I) -> impl Iterator<Item = Result<Fetched, E>>
where
    I: IntoIterator<Item = Result<CommittedBlock, E>>,
{
    blocks.into_iter().map(|r| r.map(Fetched::plain))
}

/// [`audit`] over blocks whose source verified some signatures already ([`Fetched::verify`],
/// e.g. on threads of their own): those are not verified again; every other signature is.
pub fn audit_preverified<I, E>(
    genesis: &GenesisFile,
    blocks: I,
    range: AuditRange,
    clock: Clock,
) -> Result<AuditReport, AuditFailed>
where
    I: IntoIterator<Item = Result<Fetched, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    run_or_report(genesis, range, Auditor::new(genesis, range, clock), blocks)
}

/// Runs `auditor` over `blocks`, or reports why it could not start.
fn run_or_report<I, E>(
    genesis: &GenesisFile,
    range: AuditRange,
    auditor: Result<Auditor, AuditError>,
    blocks: I,
) -> Result<AuditReport, AuditFailed>
where
    I: IntoIterator<Item = Result<Fetched, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    match auditor {
        Ok(auditor) => finish(auditor, blocks),
        Err(error) => {
            let report = Box::new(AuditReport::unstarted(genesis, range, &error));
            Err(AuditFailed { error, report })
        }
    }
}

/// Audits `blocks` (from height `H + 1`) against `genesis`, starting from `chain`, a verified
/// snapshot's chain at height `H` ([`Chain::from_snapshot`]). The snapshot is a checkpoint:
/// its entries hash to its root and its certificate commits its head, and block `H + 1` must
/// name that head and claim that root, but the blocks up to `H` are not replayed. `range`
/// must start above `H`.
pub fn audit_from_snapshot<I, E>(
    genesis: &GenesisFile,
    chain: Chain,
    blocks: I,
    range: AuditRange,
    clock: Clock,
) -> Result<AuditReport, AuditFailed>
where
    I: IntoIterator<Item = Result<CommittedBlock, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    let start = chain.height();
    let auditor = Auditor::new(genesis, range, clock).and_then(|mut a| {
        if range.from <= start {
            return Err(AuditError::BadRange {
                from: range.from,
                to: start,
            });
        }
        a.chain = chain;
        a.snapshot = Some(start);
        Ok(a)
    });
    run_or_report(genesis, range, auditor, plain(blocks))
}

fn finish<I, E>(mut auditor: Auditor, blocks: I) -> Result<AuditReport, AuditFailed>
where
    I: IntoIterator<Item = Result<Fetched, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    match auditor.run(blocks) {
        Ok(()) => Ok(auditor.report(None)),
        Err(error) => {
            let report = Box::new(auditor.report(Some(&error)));
            Err(AuditFailed { error, report })
        }
    }
}

/// The audit as a state machine: feed it blocks in order with [`Auditor::handle_block`], then
/// ask for the [`Auditor::report`]. [`audit`] and [`export_jsonl`] drive it.
#[derive(Debug)]
pub struct Auditor {
    chain: Chain,
    genesis_hash: Hash,
    range: AuditRange,
    stats: stats::Stats,
    /// Everything verified, from height 1.
    replayed: Counts,
    /// What the range covers.
    in_range: Counts,
    first_in_range: Option<Height>,
    last_hash: Option<BlockHash>,
    /// Time spent verifying and replaying, not reading.
    verify_time: Duration,
    clock: Clock,
    started: Duration,
    /// The snapshot height the audit started from (`None`: genesis).
    snapshot: Option<Height>,
}

impl Auditor {
    /// An audit at genesis.
    pub fn new(genesis: &GenesisFile, range: AuditRange, clock: Clock) -> Result<Self, AuditError> {
        if let Some(to) = range.to
            && to < range.from
        {
            return Err(AuditError::BadRange {
                from: range.from,
                to,
            });
        }
        Ok(Self {
            chain: Chain::new(genesis)?,
            genesis_hash: genesis.hash(),
            range,
            stats: stats::Stats::default(),
            replayed: Counts::default(),
            in_range: Counts::default(),
            first_in_range: None,
            last_hash: None,
            verify_time: Duration::ZERO,
            clock,
            started: clock(),
            snapshot: None,
        })
    }

    /// The verified chain so far: its height, state, and the validators of the next height.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The height the next block must have.
    pub fn next_height(&self) -> Height {
        self.chain.height().next()
    }

    /// Whether the range's last height is verified (the next block is not needed).
    pub fn is_done(&self) -> bool {
        self.range.to.is_some_and(|to| self.chain.height() >= to)
    }

    /// Verifies the next block and its certificate, replays it and checks the invariants. On
    /// an error nothing changes, and the audit should stop: later blocks cannot be checked.
    pub fn handle_block(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
    ) -> Result<(), AuditError> {
        self.handle_block_known(block, certificate, &[], false)
    }

    /// [`Auditor::handle_block`], with `verified`: some of the block's transactions whose
    /// signatures the caller verified already (with the same rule, on another thread);
    /// the others are verified here.
    pub fn handle_block_known(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
        verified: &[Verified<Tx>],
        certificates_verified: bool,
    ) -> Result<(), AuditError> {
        let by_hash: std::collections::BTreeMap<TxHash, &Verified<Tx>> = verified
            .iter()
            .map(|v| (attest_protocol::tx_hash(v.signed()), v))
            .collect();
        let known = |h: &TxHash| by_hash.get(h).map(|v| (*v).clone());
        let height = self.next_height();
        let counts = Counts::of(block, certificate, self.chain.last_certificate());
        let started = (self.clock)();
        let mut applied = self
            .chain
            .check_committed_known(block, certificate, &known, certificates_verified)
            .map_err(|error| AuditError::Block {
                height,
                check: Check::of(&error),
                error: Box::new(error),
            })?;
        self.chain
            .state()
            .check_block(&applied.delta, &applied.events)
            .map_err(|error| AuditError::Invariant { height, error })?;
        let events = std::mem::take(&mut applied.events);
        let hash = applied.hash;
        // `commit` fails only before it changes anything (it builds the next set first).
        self.chain
            .commit(block, certificate.clone(), applied)
            .map_err(|error| AuditError::Validators { height, error })?;
        self.verify_time += (self.clock)().saturating_sub(started);

        self.replayed.add(&counts);
        let in_range = self.range.contains(height);
        if in_range {
            self.in_range.add(&counts);
            self.first_in_range.get_or_insert(height);
        }
        self.last_hash = Some(hash);
        self.stats
            .handle_block(height, block.header.time_ms, &events, in_range);
        Ok(())
    }

    /// Feeds `blocks` until they end or the range is done, then checks the range was reached.
    fn run<I, E>(&mut self, blocks: I) -> Result<(), AuditError>
    where
        I: IntoIterator<Item = Result<Fetched, E>>,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        let mut blocks = blocks.into_iter();
        while !self.is_done() {
            let Some(item) = blocks.next() else { break };
            let fetched = item.map_err(|e| AuditError::Source {
                height: self.next_height(),
                error: e.into(),
            })?;
            let (block, certificate) = &fetched.block;
            self.handle_block_known(
                block,
                certificate,
                &fetched.verified_txs,
                fetched.certificates_verified,
            )?;
        }
        self.check_reached()
    }

    /// The blocks given must reach `to`, and `from` when it was asked for explicitly.
    fn check_reached(&self) -> Result<(), AuditError> {
        let last = self.chain.height();
        let wanted = match self.range.to {
            Some(to) => to,
            None if self.range.from > Height(1) => self.range.from,
            None => return Ok(()),
        };
        if last < wanted {
            return Err(AuditError::Missing {
                height: last.next(),
                last,
                wanted,
            });
        }
        Ok(())
    }

    /// The report of what has been verified; `failure` is the error that stopped the audit.
    pub fn report(&self, failure: Option<&AuditError>) -> AuditReport {
        AuditReport::build(self, failure)
    }
}
