//! Polka certificates and locks: the proof that more than 2/3 of the voting power prevoted one
//! block in one round, and the record a validator keeps of the block it locked on.
//!
//! Two liveness gaps of the bare driver close here:
//! - Malachite's vote keeper counts one vote per validator, round and kind. When a Byzantine
//!   validator's two prevotes race, some validators see the polka (and lock) while others
//!   count the conflicting vote and never will. A proposer that re-proposes its locked block
//!   with a proof-of-lock round therefore also sends the polka's prevotes as a certificate,
//!   and the driver accepts a verified certificate in place of the votes it refused.
//! - A validator that precommitted a block is locked on it, but its driver forgets the lock
//!   (and the block) on a crash. Before the precommit leaves the node, the host writes a
//!   [`LockRecord`] (the proposal and the polka) to the write-ahead log; after a restart the
//!   wrapper replays it into the driver, which so regains its lock, its valid block, and a
//!   block it can re-propose.
//!
//! Nothing here trusts a certificate it did not verify: distinct members of the height's set,
//! prevotes for exactly this height, round and block, every signature valid, and together
//! more than 2/3 of the voting power.

use arc_malachitebft_core_driver::Driver;
use arc_malachitebft_core_types::{self as mal, NilOrVal, PolkaSignature, VoteType};
use attest_protocol::limits::{MAX_BLOCK_BYTES, MAX_VALIDATORS};
use attest_protocol::{
    BlockHash, BoundedVec, Canonical, ChainId, Height, Proposal, Round, Signed, Vote, VoteKind,
};
use serde::{Deserialize, Serialize};

use attest_chain::{CertError, ValidatorSet, is_quorum};

use super::context::{Address, AttestContext, ConsensusHeight, to_mal_round};

/// Prevotes of more than 2/3 of the voting power for `block` in `round` at `height`, one per
/// validator, in ascending key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolkaCert {
    /// The height.
    pub height: Height,
    /// The round of the prevotes.
    pub round: Round,
    /// The block they prevoted.
    pub block: BlockHash,
    /// The signed prevotes.
    pub prevotes: BoundedVec<Signed<Vote>, MAX_VALIDATORS>,
}

impl Canonical for PolkaCert {
    const NAME: &'static str = "polka certificate";
    // A signed vote is ~170 bytes; 256 of them fit well within this.
    const MAX_ENCODED_LEN: usize = 64 * 1024;
}

/// What a validator writes to its log before its precommit for a block leaves the node: the
/// proposal it precommitted and the polka that justified the precommit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// The proposal (signed by its proposer), which carries the block.
    pub proposal: Signed<Proposal>,
    /// The polka for the proposal's block in the proposal's round.
    pub polka: PolkaCert,
}

impl LockRecord {
    /// The height and round of the lock.
    pub fn slot(&self) -> (Height, Round) {
        (self.proposal.body.height, self.proposal.body.round)
    }
}

impl Canonical for LockRecord {
    const NAME: &'static str = "lock record";
    const MAX_ENCODED_LEN: usize = MAX_BLOCK_BYTES + 128 * 1024;
}

impl PolkaCert {
    /// Checks the certificate under `validators` (its height's set) on `chain`: prevotes for
    /// exactly this height, round and block; signers distinct members in ascending order;
    /// every signature valid; more than 2/3 of the voting power. Cheap checks come first.
    pub fn verify(&self, chain: &ChainId, validators: &ValidatorSet) -> Result<(), CertError> {
        let mut power = 0u64;
        let mut last = None;
        for v in self.prevotes.iter() {
            if last.is_some_and(|l| l >= v.signer) {
                return Err(CertError::DuplicateOrUnsorted(Box::new(v.signer)));
            }
            last = Some(v.signer);
            let b = &v.body;
            if b.kind != VoteKind::Prevote
                || b.height != self.height
                || b.round != self.round
                || b.block != Some(self.block)
            {
                return Err(CertError::BadSignature(Box::new(v.signer)));
            }
            let member = validators
                .get(&v.signer)
                .ok_or_else(|| CertError::NotAValidator(Box::new(v.signer)))?;
            power = power.saturating_add(member.power());
        }
        if !is_quorum(power, validators.total_power()) {
            return Err(CertError::InsufficientPower {
                have: power,
                total: validators.total_power(),
            });
        }
        for v in self.prevotes.iter() {
            v.check(chain)
                .map_err(|_| CertError::BadSignature(Box::new(v.signer)))?;
        }
        Ok(())
    }

    /// The certificate as the driver takes it.
    pub fn to_mal(&self) -> mal::PolkaCertificate<AttestContext> {
        mal::PolkaCertificate {
            height: ConsensusHeight(self.height),
            round: to_mal_round(self.round),
            value_id: self.block,
            polka_signatures: self
                .prevotes
                .iter()
                .map(|v| PolkaSignature::new(Address(v.signer), v.signature))
                .collect(),
        }
    }
}

/// The polka for `block` in `round` that `driver` holds, from a certificate it was given or
/// from the prevotes its vote keeper counted; `None` if it holds no quorum for it.
pub fn polka_from_driver(
    driver: &Driver<AttestContext>,
    round: Round,
    block: BlockHash,
) -> Option<PolkaCert> {
    let height = driver.height().0;
    let mal_round = to_mal_round(round);
    let mut prevotes: Vec<Signed<Vote>> = match driver.polka_certificate(mal_round, &block) {
        Some(cert) => cert
            .polka_signatures
            .iter()
            .map(|s| Signed {
                signer: s.address.0,
                signature: s.signature,
                body: prevote(height, round, block),
            })
            .collect(),
        None => driver
            .votes()
            .per_round(mal_round)?
            .received_votes()
            .iter()
            .filter(|v| {
                v.message.kind == VoteType::Prevote && v.message.value == NilOrVal::Val(block)
            })
            .map(|v| Signed {
                signer: v.message.validator.0,
                signature: v.signature,
                body: v.message.to_protocol(),
            })
            .collect(),
    };
    prevotes.sort_by_key(|v| v.signer);
    prevotes.dedup_by_key(|v| v.signer);
    let power: u64 = prevotes
        .iter()
        .filter_map(|v| driver.validator_set().set().get(&v.signer))
        .map(|v| v.power())
        .sum();
    if !is_quorum(power, driver.validator_set().set().total_power()) {
        return None;
    }
    Some(PolkaCert {
        height,
        round,
        block,
        prevotes: BoundedVec::new(prevotes).ok()?,
    })
}

/// The lock for our precommit of `block` in `round`: the proposal the driver holds for it and
/// the polka; `None` if the driver lacks either (then there is nothing to restore from).
pub fn lock_from_driver(
    driver: &Driver<AttestContext>,
    round: Round,
    block: BlockHash,
) -> Option<LockRecord> {
    let (proposal, _) =
        driver.proposal_and_validity_for_round_and_value(to_mal_round(round), block)?;
    let polka = polka_from_driver(driver, round, block)?;
    Some(LockRecord {
        proposal: Signed {
            signer: proposal.message.proposer.0,
            signature: proposal.signature,
            body: proposal.message.to_protocol(),
        },
        polka,
    })
}

/// Whether `driver` holds a verified polka certificate for `block` in `round`.
pub fn has_polka_certificate(
    driver: &Driver<AttestContext>,
    round: Round,
    block: BlockHash,
) -> bool {
    driver
        .polka_certificate(to_mal_round(round), &block)
        .is_some()
}

fn prevote(height: Height, round: Round, block: BlockHash) -> Vote {
    Vote {
        height,
        round,
        kind: VoteKind::Prevote,
        block: Some(block),
    }
}

#[cfg(test)]
mod tests {
    use attest_protocol::{Amount, SecretKey};

    use super::*;

    fn chain() -> ChainId {
        ChainId::new("polka-test").expect("valid chain id")
    }

    fn keys() -> Vec<SecretKey> {
        (1..=4u8).map(|i| SecretKey::from_seed([i; 32])).collect()
    }

    fn set() -> ValidatorSet {
        ValidatorSet::new(keys().iter().map(|k| (k.public(), Amount(100))))
            .expect("four equal validators")
    }

    fn cert(signers: &[usize], block: BlockHash) -> PolkaCert {
        let keys = keys();
        let mut prevotes: Vec<Signed<Vote>> = signers
            .iter()
            .map(|&i| Signed::sign(&chain(), &keys[i], prevote(Height(3), Round(1), block)))
            .collect();
        prevotes.sort_by_key(|v| v.signer);
        PolkaCert {
            height: Height(3),
            round: Round(1),
            block,
            prevotes: BoundedVec::new(prevotes).expect("at most four"),
        }
    }

    #[test]
    fn a_quorum_of_valid_prevotes_verifies_and_nothing_less_does() {
        let b = BlockHash([7; 32]);
        assert_eq!(cert(&[0, 1, 2], b).verify(&chain(), &set()), Ok(()));
        assert!(matches!(
            cert(&[0, 1], b).verify(&chain(), &set()),
            Err(CertError::InsufficientPower {
                have: 200,
                total: 400
            })
        ));
        // A prevote for another block, round or kind does not count for this one.
        let mut c = cert(&[0, 1, 2], b);
        c.block = BlockHash([8; 32]);
        assert!(matches!(
            c.verify(&chain(), &set()),
            Err(CertError::BadSignature(_))
        ));
        // Duplicates and disorder are refused before any signature is checked.
        let mut votes = cert(&[0, 1, 2], b).prevotes.into_vec();
        votes.push(votes[0].clone());
        let dup = PolkaCert {
            prevotes: BoundedVec::new(votes).expect("four"),
            ..cert(&[0], b)
        };
        assert!(matches!(
            dup.verify(&chain(), &set()),
            Err(CertError::DuplicateOrUnsorted(_))
        ));
        // A flipped signature bit, and a signer outside the set.
        let mut votes = cert(&[0, 1, 2], b).prevotes.into_vec();
        votes[1].signature.0[0] ^= 1;
        let forged = PolkaCert {
            prevotes: BoundedVec::new(votes).expect("three"),
            ..cert(&[0], b)
        };
        assert!(matches!(
            forged.verify(&chain(), &set()),
            Err(CertError::BadSignature(_))
        ));
        let small = ValidatorSet::new(keys()[..2].iter().map(|k| (k.public(), Amount(100))))
            .expect("two validators");
        assert!(matches!(
            cert(&[0, 1, 2], b).verify(&chain(), &small),
            Err(CertError::NotAValidator(_))
        ));
    }

    #[test]
    fn certificates_and_locks_round_trip_canonically() {
        let c = cert(&[0, 1, 2, 3], BlockHash([5; 32]));
        assert_eq!(PolkaCert::decode(&c.encode()), Ok(c));
    }
}
