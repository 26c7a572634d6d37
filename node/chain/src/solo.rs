//! A chain decided by one validator alone: what tests, benches and tools use to build a chain
//! without running consensus. The certificate is real (the validator's own precommit), so the
//! blocks verify like any others.

use attest_protocol::VoteKind;
use attest_protocol::{Block, CommitCertificate, Round, SecretKey, Signed, Tx, Verified, Vote};

use crate::certificate::build_certificate;
use crate::chain::Chain;

/// The certificate of `block` at `chain`'s next height, signed by `validator` alone; `None`
/// unless `validator` alone is a quorum of the chain's validators.
pub fn solo_certificate(
    chain: &Chain,
    validator: &SecretKey,
    block: &Block,
) -> Option<CommitCertificate> {
    let vote = Vote {
        height: block.header.height,
        round: Round(0),
        kind: VoteKind::Precommit,
        block: Some(block.hash()),
    };
    build_certificate(
        chain.validators(),
        block.header.height,
        Round(0),
        block.hash(),
        [Signed::sign(chain.chain_id(), validator, vote)],
    )
}

/// Builds the next block from `txs` at `time_ms` with `validator` as proposer, certifies it
/// with `validator`'s precommit and commits it. Returns the block and its certificate; `None`
/// unless `validator` alone is a quorum and validators remain after the block.
pub fn commit_solo(
    chain: &mut Chain,
    validator: &SecretKey,
    time_ms: u64,
    txs: Vec<Verified<Tx>>,
) -> Option<(Block, CommitCertificate)> {
    let (block, applied) = chain.build_block(validator.public(), time_ms, txs);
    let cert = solo_certificate(chain, validator, &block)?;
    chain.commit(&block, cert.clone(), applied).ok()?;
    Some((block, cert))
}
