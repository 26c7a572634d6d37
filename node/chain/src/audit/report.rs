//! The audit report: a versioned, serde-serializable summary of what was verified
//! (`attest audit --json` prints it on stdout).

use attest_protocol::{Block, BlockHash, ChainId, CommitCertificate, Hash, Height};
use serde::{Deserialize, Serialize};

use super::stats::{JobCounts, LatencyReport, ProviderRecord, SlashEntry};
use super::{AUDIT_SCHEMA, AuditError, AuditRange, Auditor, Check};
use crate::genesis::GenesisFile;

/// Blocks, transactions and signatures verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Blocks.
    pub blocks: u64,
    /// Transactions.
    pub txs: u64,
    /// `tx_signatures + certificate_signatures`.
    pub signatures_verified: u64,
    /// Transaction signatures (one per transaction).
    pub tx_signatures: u64,
    /// Precommit signatures: those of each block's own certificate, and those of the previous
    /// block's certificate it carries when that is not the one the previous block came with
    /// (the two may hold different precommits; the same certificate is verified once).
    pub certificate_signatures: u64,
}

impl Counts {
    /// What verifying `block` with `certificate` verified; `previous` is the certificate the
    /// previous block came with (verified then).
    pub(crate) fn of(
        block: &Block,
        certificate: &CommitCertificate,
        previous: Option<&CommitCertificate>,
    ) -> Self {
        let txs = block.txs.len() as u64;
        let last = block.last_commit.as_ref().filter(|c| Some(*c) != previous);
        let certs = certificate.signatures.len() + last.map_or(0, |c| c.signatures.len());
        Self {
            blocks: 1,
            txs,
            signatures_verified: txs + certs as u64,
            tx_signatures: txs,
            certificate_signatures: certs as u64,
        }
    }

    pub(crate) fn add(&mut self, other: &Counts) {
        self.blocks += other.blocks;
        self.txs += other.txs;
        self.signatures_verified += other.signatures_verified;
        self.tx_signatures += other.tx_signatures;
        self.certificate_signatures += other.certificate_signatures;
    }
}

/// Everything verified: always from height 1, whatever the range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// The last height verified (0 if none).
    pub to_height: Height,
    /// What was verified from height 1 to `to_height`.
    #[serde(flatten)]
    pub counts: Counts,
}

/// The last verified block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Its height.
    pub height: Height,
    /// Its hash.
    pub hash: BlockHash,
    /// The state root after it (the next block's header must claim it).
    pub state_root: Hash,
}

/// How fast the audit ran. Wall-clock figures: they vary between runs and machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// From the start of the audit to the report, reading blocks included.
    pub elapsed_ms: u64,
    /// Spent verifying and replaying (reading blocks excluded).
    pub verify_ms: u64,
    /// Signatures verified (all, from height 1) per second of `verify_ms`.
    pub signatures_per_sec: u64,
    /// Transactions verified and replayed per second of `verify_ms`.
    pub txs_per_sec: u64,
    /// Blocks verified per second of `verify_ms`.
    pub blocks_per_sec: u64,
}

/// Where and why an audit stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFailure {
    /// The height it stopped at (none for a bad range or genesis).
    pub height: Option<Height>,
    /// What failed.
    pub check: Check,
    /// Why, in words.
    pub reason: String,
}

impl From<&AuditError> for AuditFailure {
    fn from(error: &AuditError) -> Self {
        Self {
            height: error.height(),
            check: error.check(),
            reason: error.to_string(),
        }
    }
}

/// What an audit verified and what the ledger says, schema [`AUDIT_SCHEMA`].
///
/// `blocks`, `txs`, the signature counts, `jobs`, `providers`, the latencies and `slashes`
/// cover the blocks of `range` that were verified (a latency counts when its ending event, the
/// verdict or the settlement, is in the range); `replayed` covers everything verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Always [`AUDIT_SCHEMA`].
    pub schema: String,
    /// Whether every block verified and the range was reached.
    pub ok: bool,
    /// The chain.
    pub chain_id: ChainId,
    /// The hash of the genesis document audited against.
    pub genesis_hash: Hash,
    /// The range asked for.
    pub range: AuditRange,
    /// The snapshot the audit started from (`--from-snapshot`); blocks up to it were not
    /// replayed. Absent when it replayed from genesis.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_snapshot: Option<Height>,
    /// The first height of the range that was verified.
    pub first_height: Option<Height>,
    /// The last height of the range that was verified.
    pub last_height: Option<Height>,
    /// Counts over the range.
    #[serde(flatten)]
    pub counts: Counts,
    /// Counts over everything verified, from height 1.
    pub replayed: Replayed,
    /// The last verified block.
    pub head: Option<Head>,
    /// Jobs over the range.
    pub jobs: JobCounts,
    /// Every account that provided, checked, disputed or was slashed in the range, by key.
    pub providers: Vec<ProviderRecord>,
    /// Result committed to verdict posted, in block time.
    pub validation_latency_ms: LatencyReport,
    /// Job opened to job settled, in block time.
    pub job_latency_ms: LatencyReport,
    /// Every slash in the range, in ledger order.
    pub slashes: Vec<SlashEntry>,
    /// How fast the audit ran.
    pub timing: Timing,
    /// Why the audit stopped, if it failed.
    pub failure: Option<AuditFailure>,
}

impl AuditReport {
    pub(crate) fn build(auditor: &Auditor, failure: Option<&AuditError>) -> Self {
        let chain = &auditor.chain;
        let last_in_range = auditor
            .first_in_range
            .map(|first| Height(first.0 + auditor.in_range.blocks - 1));
        let head = auditor.last_hash.map(|hash| Head {
            height: chain.height(),
            hash,
            state_root: chain.state_root(),
        });
        Self {
            schema: AUDIT_SCHEMA.to_owned(),
            ok: failure.is_none(),
            chain_id: chain.chain_id().clone(),
            genesis_hash: auditor.genesis_hash,
            range: auditor.range,
            from_snapshot: auditor.snapshot,
            first_height: auditor.first_in_range,
            last_height: last_in_range,
            counts: auditor.in_range,
            replayed: Replayed {
                to_height: chain.height(),
                counts: auditor.replayed,
            },
            head,
            jobs: auditor.stats.jobs(),
            providers: auditor.stats.providers(),
            validation_latency_ms: auditor.stats.validation_latency(),
            job_latency_ms: auditor.stats.job_latency(),
            slashes: auditor.stats.slashes(),
            timing: timing(auditor),
            failure: failure.map(AuditFailure::from),
        }
    }

    /// The report of an audit that could not start (bad range, refused genesis).
    pub(crate) fn unstarted(genesis: &GenesisFile, range: AuditRange, error: &AuditError) -> Self {
        Self {
            schema: AUDIT_SCHEMA.to_owned(),
            ok: false,
            chain_id: genesis.genesis.chain_id.clone(),
            genesis_hash: genesis.hash(),
            range,
            from_snapshot: None,
            first_height: None,
            last_height: None,
            counts: Counts::default(),
            replayed: Replayed::default(),
            head: None,
            jobs: JobCounts::default(),
            providers: Vec::new(),
            validation_latency_ms: LatencyReport::default(),
            job_latency_ms: LatencyReport::default(),
            slashes: Vec::new(),
            timing: Timing::default(),
            failure: Some(AuditFailure::from(error)),
        }
    }
}

fn timing(auditor: &Auditor) -> Timing {
    let verify_us = auditor.verify_time.as_micros().max(1);
    let per_sec = |n: u64| -> u64 {
        let rate = u128::from(n) * 1_000_000 / verify_us;
        u64::try_from(rate).unwrap_or(u64::MAX)
    };
    let all = &auditor.replayed;
    Timing {
        elapsed_ms: millis((auditor.clock)().saturating_sub(auditor.started)),
        verify_ms: millis(auditor.verify_time),
        signatures_per_sec: per_sec(all.signatures_verified),
        txs_per_sec: per_sec(all.txs),
        blocks_per_sec: per_sec(all.blocks),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
