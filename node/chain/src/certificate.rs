//! Commit certificates: building one from the precommits consensus collected, and verifying
//! one received from anyone (sync, audits, the next block's `last_commit`).
//!
//! This module owns the certificate rule: distinct members of the height's validator set,
//! every signature valid under the protocol's rule, more than 2/3 of the total voting power. It
//! never trusts a certificate it did not verify and never consults the driver.

use attest_protocol::{
    BlockHash, BoundedVec, ChainId, CommitCertificate, CommitSig, Height, PublicKey, Round, Signed,
    Vote,
};

use crate::validators::ValidatorSet;

/// Why a commit certificate is not proof of a commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// A signer is not in the validator set of the certificate's height.
    #[error("certificate signer {0} is not a validator")]
    NotAValidator(Box<PublicKey>),
    /// One validator signs twice, or the signatures are not in ascending key order (the
    /// canonical form, which also makes a duplicate easy to see).
    #[error("certificate signer {0} is duplicated or out of order")]
    DuplicateOrUnsorted(Box<PublicKey>),
    /// A precommit signature does not verify.
    #[error("certificate signature by {0} does not verify")]
    BadSignature(Box<PublicKey>),
    /// The signers hold no more than 2/3 of the voting power.
    #[error("certificate signers hold {have} of {total} voting power; more than 2/3 is needed")]
    InsufficientPower {
        /// The signers' total power.
        have: u64,
        /// The set's total power.
        total: u64,
    },
}

/// Whether `power` is more than 2/3 of `total`. `ValidatorSet` bounds totals to
/// `u64::MAX / 3`, but use u128 anyway so this never overflows.
pub fn is_quorum(power: u64, total: u64) -> bool {
    u128::from(power) * 3 > u128::from(total) * 2
}

/// Checks that `cert` proves a commit under `validators` (the set of the certificate's height)
/// on `chain`: signers distinct, in ascending key order, all members, every signature valid,
/// and together more than 2/3 of the voting power.
pub fn verify_certificate(
    chain: &ChainId,
    validators: &ValidatorSet,
    cert: &CommitCertificate,
) -> Result<(), CertError> {
    check_quorum(validators, cert)?;
    verify_certificate_signatures(chain, cert)
}

/// The half of [`verify_certificate`] that needs the validator set: the signers are distinct
/// members, in ascending order, with more than 2/3 of the power. Their signatures are not
/// checked: only with [`verify_certificate_signatures`] of the same certificate (e.g. by an
/// auditor's reader thread) does this make a commit proven.
pub fn check_quorum(validators: &ValidatorSet, cert: &CommitCertificate) -> Result<(), CertError> {
    let mut power = 0u64;
    let mut last: Option<PublicKey> = None;
    // Membership and order first: they are cheap, and an unknown signer needs no verification.
    for sig in cert.signatures.iter() {
        if last.is_some_and(|l| l >= sig.validator) {
            return Err(CertError::DuplicateOrUnsorted(Box::new(sig.validator)));
        }
        last = Some(sig.validator);
        let v = validators
            .get(&sig.validator)
            .ok_or_else(|| CertError::NotAValidator(Box::new(sig.validator)))?;
        power = power.saturating_add(v.power());
    }
    if !is_quorum(power, validators.total_power()) {
        return Err(CertError::InsufficientPower {
            have: power,
            total: validators.total_power(),
        });
    }
    Ok(())
}

/// The half of [`verify_certificate`] that needs no validator set: every signature is valid
/// (the protocol's rule, in one batch) over the precommit it stands for.
pub fn verify_certificate_signatures(
    chain: &ChainId,
    cert: &CommitCertificate,
) -> Result<(), CertError> {
    let votes: Vec<Signed<Vote>> = cert.signed_votes().collect();
    let checks = Signed::check_all(chain, &votes);
    match votes.iter().zip(checks).find(|(_, ok)| !ok) {
        Some((bad, _)) => Err(CertError::BadSignature(Box::new(bad.signer))),
        None => Ok(()),
    }
}

/// Builds the certificate for `block` decided in `round` at `height` from verified precommits
/// for it. Signatures are sorted by validator key; a validator appears once. `None` if the
/// signers do not reach a quorum (the caller's bug: the driver decided without one).
pub fn build_certificate(
    validators: &ValidatorSet,
    height: Height,
    round: Round,
    block: BlockHash,
    precommits: impl IntoIterator<Item = Signed<Vote>>,
) -> Option<CommitCertificate> {
    let mut sigs: Vec<CommitSig> = precommits
        .into_iter()
        .filter(|s| s.body.height == height && s.body.round == round && s.body.block == Some(block))
        .filter(|s| validators.get(&s.signer).is_some())
        .map(|s| CommitSig {
            validator: s.signer,
            signature: s.signature,
        })
        .collect();
    sigs.sort_by_key(|s| s.validator);
    sigs.dedup_by(|a, b| a.validator == b.validator);
    let power: u64 = sigs
        .iter()
        .filter_map(|s| validators.get(&s.validator))
        .map(|v| v.power())
        .sum();
    if !is_quorum(power, validators.total_power()) {
        return None;
    }
    Some(CommitCertificate {
        height,
        round,
        block,
        // The set holds at most MAX_VALIDATORS members and each appears once.
        signatures: BoundedVec::new(sigs).ok()?,
    })
}
