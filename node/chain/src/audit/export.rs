//! The verifiable ledger export: one JSON object per line, schema [`EXPORT_SCHEMA`], carrying
//! every byte string that is signed or hashed next to the fields it encodes, so a third party
//! can check the chain with stock ed25519 and blake3 (`docs/PROTOCOL.md` section 12).
//!
//! The export replays the chain through an [`Auditor`] while it writes: the validator set of
//! each height comes from the replayed state, and only verified blocks are written. A chain
//! that fails verification is written up to the block before the failure, then the export
//! fails with the audit's error and writes no `end` line.

use std::error::Error;
use std::io::Write;

use attest_protocol::encoding::encode;
use attest_protocol::tx::Action;
use attest_protocol::{
    AccountId, BlockHash, BlockHeader, ChainId, CommitCertificate, Hash, Height, PublicKey,
    Signature, Tx, TxHash, signing_payload, tx_hash,
};
use serde::{Deserialize, Serialize};

use super::{AuditError, AuditRange, Auditor};
use crate::CommittedBlock;
use crate::genesis::GenesisFile;
use crate::validators::ValidatorSet;

/// The `schema` field of the first line of an export.
pub const EXPORT_SCHEMA: &str = "attest.export/1";

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// The first line.
    Genesis(Box<GenesisLine>),
    /// One per block, in height order.
    Block(Box<BlockLine>),
    /// One per transaction, after its block's line, in block order.
    Tx(Box<TxLine>),
    /// The last line of a complete export.
    End(EndLine),
}

/// The chain's identity and its genesis document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisLine {
    /// Always [`EXPORT_SCHEMA`].
    pub schema: String,
    /// The chain id every signature covers.
    pub chain_id: ChainId,
    /// `H("attest/genesis/v1", hashed_bytes)`.
    pub genesis_hash: Hash,
    /// Hex of the bytes the genesis hash covers: `encode((genesis_time_ms, genesis))`.
    pub hashed_bytes: String,
    /// The genesis file as the node reads it.
    pub genesis: GenesisFile,
    /// The validators of height 1 (from the genesis stakes).
    pub validators: ValidatorsLine,
}

/// A validator set: who may sign a height's certificate, and with what power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorsLine {
    /// The sum of the members' power.
    pub total_power: u64,
    /// Members in ascending key order.
    pub members: Vec<ValidatorLine>,
}

/// One validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorLine {
    /// Its account key.
    pub account: AccountId,
    /// Its voting power: bonded stake in units.
    pub power: u64,
}

/// A block, its header bytes and the certificates it is checked with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockLine {
    /// The height.
    pub height: Height,
    /// `H("attest/block-header/v1", header_bytes)`.
    pub hash: BlockHash,
    /// The header's fields.
    pub header: BlockHeader,
    /// Hex of `encode(header)`, the bytes the block hash covers.
    pub header_bytes: String,
    /// How many `tx` lines follow.
    pub tx_count: u64,
    /// The validator set of this height, which signed `certificate`.
    pub validators: ValidatorsLine,
    /// The certificate that committed this block.
    pub certificate: CertificateLine,
    /// The previous block's certificate carried in this block (`null` at height 1); the
    /// header's `last_commit` is its hash. Signed by the previous height's validators.
    pub last_commit: Option<CertificateLine>,
}

/// A commit certificate with what each signature signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateLine {
    /// The committed block's height.
    pub height: Height,
    /// The round it was committed in.
    pub round: u32,
    /// The committed block's hash.
    pub block: BlockHash,
    /// `H("attest/commit/v1", bytes)`.
    pub hash: Hash,
    /// Hex of `encode(certificate)`.
    pub bytes: String,
    /// The precommit signatures in ascending validator order.
    pub signatures: Vec<SignatureLine>,
}

/// One precommit signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureLine {
    /// The validator's account key: the ed25519 public key.
    pub validator: PublicKey,
    /// The signature.
    pub signature: Signature,
    /// Hex of the signed bytes: the signing payload of
    /// `Vote { height, round, Precommit, Some(block) }`.
    pub signed_bytes: String,
}

/// A transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLine {
    /// Its block's height.
    pub height: Height,
    /// Its position in the block, from 0.
    pub index: u64,
    /// `H("attest/tx/v1", signer || signature || body_bytes)`.
    pub hash: TxHash,
    /// The sending account: the ed25519 public key.
    pub signer: AccountId,
    /// The signature over `signed_bytes`.
    pub signature: Signature,
    /// Hex of the signing payload: `"attest/sig/tx/v1" || 0x00 || encode(chain_id) || body_bytes`.
    pub signed_bytes: String,
    /// Hex of `encode(tx)`.
    pub body_bytes: String,
    /// The action's name (`transfer`, `open_job`, ...), for reading.
    pub action: String,
    /// The transaction, decoded, for reading.
    pub body: Tx,
}

/// The last line: what a complete export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndLine {
    /// `block` lines written.
    pub blocks: u64,
    /// `tx` lines written.
    pub txs: u64,
    /// The last block's height (0 for none).
    pub last_height: Height,
    /// The last block's hash (`null` for none).
    pub last_hash: Option<BlockHash>,
    /// The state root after the last block, from the exporter's replay.
    pub state_root: Hash,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Blocks written.
    pub blocks: u64,
    /// Transactions written.
    pub txs: u64,
    /// The last height written.
    pub last_height: Height,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The chain failed verification; lines before the failing block were written.
    #[error("export stopped: audit failed at {0}")]
    Audit(#[from] AuditError),
    /// Writing failed.
    #[error("export: writing failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes `genesis` and `blocks` (in height order from 1) to `writer` as JSON lines, verifying
/// each block as it goes (see the module doc). Wrap a file in a `BufWriter`.
pub fn export_jsonl<I, E, W>(
    genesis: &GenesisFile,
    blocks: I,
    mut writer: W,
) -> Result<ExportSummary, ExportError>
where
    I: IntoIterator<Item = Result<CommittedBlock, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
    W: Write,
{
    let mut auditor = Auditor::new(genesis, AuditRange::ALL, super::no_clock)?;
    let chain = genesis.genesis.chain_id.clone();
    let first = GenesisLine {
        schema: EXPORT_SCHEMA.to_owned(),
        chain_id: chain.clone(),
        genesis_hash: genesis.hash(),
        hashed_bytes: hex::encode(encode(&(genesis.genesis_time_ms, &genesis.genesis))),
        genesis: genesis.clone(),
        validators: validators_line(auditor.chain().validators()),
    };
    write_line(&mut writer, &ExportLine::Genesis(Box::new(first)))?;
    let mut summary = ExportSummary {
        blocks: 0,
        txs: 0,
        last_height: Height(0),
    };
    let mut last_hash = None;
    for item in blocks {
        let (block, certificate) = item.map_err(|e| AuditError::Source {
            height: auditor.next_height(),
            error: e.into(),
        })?;
        let set = validators_line(auditor.chain().validators());
        auditor.handle_block(&block, &certificate)?;
        let height = block.header.height;
        let hash = block.hash();
        let line = BlockLine {
            height,
            hash,
            header: block.header.clone(),
            header_bytes: hex::encode(encode(&block.header)),
            tx_count: block.txs.len() as u64,
            validators: set,
            certificate: certificate_line(&chain, &certificate),
            last_commit: block
                .last_commit
                .as_ref()
                .map(|c| certificate_line(&chain, c)),
        };
        write_line(&mut writer, &ExportLine::Block(Box::new(line)))?;
        for (index, tx) in block.txs.iter().enumerate() {
            let line = TxLine {
                height,
                index: index as u64,
                hash: tx_hash(tx),
                signer: tx.signer,
                signature: tx.signature,
                signed_bytes: hex::encode(signing_payload(&chain, &tx.body)),
                body_bytes: hex::encode(encode(&tx.body)),
                action: action_name(&tx.body.action).to_owned(),
                body: tx.body.clone(),
            };
            write_line(&mut writer, &ExportLine::Tx(Box::new(line)))?;
        }
        summary.blocks += 1;
        summary.txs += block.txs.len() as u64;
        summary.last_height = height;
        last_hash = Some(hash);
    }
    let end = EndLine {
        blocks: summary.blocks,
        txs: summary.txs,
        last_height: summary.last_height,
        last_hash,
        state_root: auditor.chain().state_root(),
    };
    write_line(&mut writer, &ExportLine::End(end))?;
    writer.flush()?;
    Ok(summary)
}

fn write_line<W: Write>(writer: &mut W, line: &ExportLine) -> Result<(), ExportError> {
    // Every type in a line serializes to JSON (no maps with non-string keys, no floats).
    let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::from)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)?;
    Ok(())
}

fn validators_line(set: &ValidatorSet) -> ValidatorsLine {
    ValidatorsLine {
        total_power: set.total_power(),
        members: set
            .validators()
            .iter()
            .map(|v| ValidatorLine {
                account: v.account(),
                power: v.power(),
            })
            .collect(),
    }
}

fn certificate_line(chain: &ChainId, cert: &CommitCertificate) -> CertificateLine {
    let signed_bytes = hex::encode(signing_payload(chain, &cert.vote()));
    CertificateLine {
        height: cert.height,
        round: cert.round.0,
        block: cert.block,
        hash: cert.hash(),
        bytes: hex::encode(encode(cert)),
        signatures: cert
            .signatures
            .iter()
            .map(|s| SignatureLine {
                validator: s.validator,
                signature: s.signature,
                signed_bytes: signed_bytes.clone(),
            })
            .collect(),
    }
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Transfer(_) => "transfer",
        Action::Stake(_) => "stake",
        Action::Unstake(_) => "unstake",
        Action::OpenJob(_) => "open_job",
        Action::CommitResult(_) => "commit_result",
        Action::Verdict(_) => "verdict",
        Action::Dispute(_) => "dispute",
        Action::Equivocation(_) => "equivocation",
    }
}
