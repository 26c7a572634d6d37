//! Light-client checks: an answer about a few state entries, proven against the state root
//! of a certified block, checked with one header, its certificate and one proof per entry.
//!
//! The root after height `H` is carried by the header of block `H + 1`, and that block's
//! certificate makes it certified: more than 2/3 of the power of the validator set that
//! decided `H + 1` signed it. That set is what the answer names; a client that trusts a set
//! (from genesis, or checked earlier) compares it. Everything else is checked here.

use attest_contracts_sim::state::StateProofError;
use attest_contracts_sim::{Entry, Key, StateProof};
use attest_protocol::encoding::decode_bounded;
use attest_protocol::{Amount, Block, ChainId, CommitCertificate, Height, PublicKey};
use serde::{Deserialize, Serialize};

use crate::certificate::{CertError, verify_certificate};
use crate::validators::{ValidatorSet, ValidatorSetError};

/// Proofs of some entries of the state after `height`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightProof {
    /// The state's height; block `height + 1` certifies its root.
    pub height: Height,
    /// One proof per entry.
    pub proofs: Vec<StateProof>,
    /// The validators (account, power) that decide `height + 1`.
    pub validators: Vec<(PublicKey, Amount)>,
}

impl LightProof {
    /// Decodes one proof from its canonical bytes.
    pub fn decode_proof(bytes: &[u8]) -> Result<StateProof, LightError> {
        decode_bounded(bytes, "state proof", 1 << 20)
            .map_err(|e| LightError::Malformed(e.to_string()))
    }
}

/// Why a light proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    /// The block is not the one after the proven state, or not of this chain.
    #[error("block {got} of chain {chain} does not certify the state after height {height}")]
    WrongBlock {
        /// The proven state's height.
        height: Height,
        /// The block's height.
        got: Height,
        /// The block's chain.
        chain: ChainId,
    },
    /// The certificate is for another block.
    #[error("the certificate is for another block than the header")]
    CertificateMismatch,
    /// The certificate does not reach a quorum of the named set.
    #[error("certificate: {0}")]
    Certificate(#[from] CertError),
    /// The named set is not a validator set.
    #[error("validators: {0}")]
    Validators(#[from] ValidatorSetError),
    /// A proof does not hold against the header's state root.
    #[error("entry {key:?}: {error}")]
    Proof {
        /// The entry.
        key: Key,
        /// Why.
        error: StateProofError,
    },
    /// A proof does not decode.
    #[error("malformed proof: {0}")]
    Malformed(String),
}

/// Checks `proof` against `block` (the block after the proven state) and its certificate;
/// returns each proven entry (`None`: proven absent), in the proof's order.
pub fn verify_light(
    chain_id: &ChainId,
    proof: &LightProof,
    block: &Block,
    certificate: &CommitCertificate,
) -> Result<Vec<(Key, Option<Entry>)>, LightError> {
    let h = &block.header;
    if h.chain_id != *chain_id || h.height != proof.height.next() {
        return Err(LightError::WrongBlock {
            height: proof.height,
            got: h.height,
            chain: h.chain_id.clone(),
        });
    }
    if certificate.height != h.height || certificate.block != block.hash() {
        return Err(LightError::CertificateMismatch);
    }
    let set = ValidatorSet::new(proof.validators.iter().copied())?;
    verify_certificate(chain_id, &set, certificate)?;
    proof
        .proofs
        .iter()
        .map(|p| {
            p.verify(&h.state_root)
                .map(|entry| (p.key, entry))
                .map_err(|error| LightError::Proof { key: p.key, error })
        })
        .collect()
}
