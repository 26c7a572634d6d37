//! Validator sets: who decides a height, with what voting power, and who proposes each round.
//!
//! This module owns the rules that make a set (sorted by account key, bounded, positive stake,
//! a total the quorum arithmetic cannot overflow), the set of the height after a state (every
//! active stake, weighted by bonded stake) and proposer selection. It is pure arithmetic on
//! its inputs: every node computes the same set and the same proposer.

use std::sync::Arc;

use attest_contracts_sim::State;
use attest_protocol::limits::MAX_VALIDATORS;
use attest_protocol::{Amount, Height, PublicKey, Round};

/// The validators of the height after `state`: the `max_validators` active stakes with the
/// most bonded stake (ties by account key), each weighted by its bonded stake
/// (`State::validators`). Every other eligible stake provides and checks without validating.
pub fn validator_set(state: &State) -> Result<ValidatorSet, ValidatorSetError> {
    ValidatorSet::new(state.validators())
}

/// One validator: its account and its voting power, which is its stake in micro-units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    account: PublicKey,
    power: u64,
}

impl Validator {
    /// The validator's account key.
    pub fn account(&self) -> PublicKey {
        self.account
    }

    /// Its voting power (stake in micro-units).
    pub fn power(&self) -> u64 {
        self.power
    }
}

/// Why a validator set cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    /// No validators: nobody could ever decide.
    #[error("a validator set needs at least one validator")]
    Empty,
    /// More validators than a commit certificate can hold.
    #[error("{count} validators, at most {max}")]
    TooMany {
        /// How many were given.
        count: usize,
        /// [`MAX_VALIDATORS`].
        max: usize,
    },
    /// A validator with no stake would count in no quorum and only confuse proposer selection.
    #[error("validator {0} has zero stake")]
    ZeroStake(Box<PublicKey>),
    /// One account listed twice.
    #[error("validator {0} listed twice")]
    Duplicate(Box<PublicKey>),
    /// Total stake too large: the driver's quorum arithmetic multiplies it by 3 in a `u64`
    /// and panics on overflow.
    #[error("total stake overflows the quorum arithmetic (at most u64::MAX / 3 units)")]
    TotalTooLarge,
}

/// The validators of one height, sorted by account key (a fixed order every node agrees on),
/// with each validator's stake as its voting power. Cheap to clone: the driver clones it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Arc<[Validator]>,
    /// Total voting power.
    total: u64,
    /// `units[i]` is the stake of validators `0..i` divided by the gcd of all stakes (so equal
    /// stakes give one unit each); `units[n]` is the total number of units.
    units: Arc<[u64]>,
    /// The proposer-selection stride: coprime with the unit total, near it / golden ratio.
    stride: u64,
}

impl ValidatorSet {
    /// Builds a set from `(account, stake)` pairs in any order.
    pub fn new(
        members: impl IntoIterator<Item = (PublicKey, Amount)>,
    ) -> Result<Self, ValidatorSetError> {
        let mut validators: Vec<Validator> = members
            .into_iter()
            .map(|(k, a)| Validator {
                account: k,
                power: a.0,
            })
            .collect();
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > MAX_VALIDATORS {
            return Err(ValidatorSetError::TooMany {
                count: validators.len(),
                max: MAX_VALIDATORS,
            });
        }
        validators.sort_by_key(|v| v.account);
        let mut total = 0u64;
        let mut g = 0u64;
        for (i, v) in validators.iter().enumerate() {
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroStake(Box::new(v.account)));
            }
            if i > 0 && validators[i - 1].account == v.account {
                return Err(ValidatorSetError::Duplicate(Box::new(v.account)));
            }
            total = total
                .checked_add(v.power)
                .filter(|t| *t <= u64::MAX / 3)
                .ok_or(ValidatorSetError::TotalTooLarge)?;
            g = gcd(g, v.power);
        }
        let mut units = Vec::with_capacity(validators.len() + 1);
        units.push(0u64);
        for v in &validators {
            units.push(units[units.len() - 1] + v.power / g);
        }
        let unit_total = total / g;
        Ok(Self {
            validators: validators.into(),
            total,
            units: units.into(),
            stride: golden_stride(unit_total),
        })
    }

    /// The validators in key order.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// The total voting power.
    pub fn total_power(&self) -> u64 {
        self.total
    }

    /// The validator with account `key`, if it is one.
    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.validators
            .binary_search_by(|v| v.account.cmp(key))
            .ok()
            .map(|i| &self.validators[i])
    }

    /// The proposer of `round` at `height`: stake-weighted round robin.
    ///
    /// Stakes are first divided by their greatest common divisor, so that equal stakes give
    /// one unit each. Slot `k = height + round` (so a failed round hands over to the next
    /// validator in the rotation) is mapped to one unit, `u = (k mod T) * S mod T`, where `T`
    /// is the number of units and `S` a fixed stride coprime with `T`; the proposer is the validator owning
    /// unit `u` in key order. Because `S` is coprime with `T`, slots `k .. k+T` visit every unit
    /// exactly once: over any `T` consecutive slots each validator proposes exactly as often as
    /// it has stake units. `S` near `T / golden ratio` spreads one validator's turns out instead
    /// of bunching them. It is pure arithmetic on (set, height, round): every node agrees, and
    /// no state carries across heights.
    pub fn proposer(&self, height: Height, round: Round) -> &Validator {
        &self.validators[self.proposer_index(height, round)]
    }

    /// The position in [`ValidatorSet::validators`] of [`ValidatorSet::proposer`].
    pub fn proposer_index(&self, height: Height, round: Round) -> usize {
        let total = u128::from(self.units[self.units.len() - 1]);
        let slot = (u128::from(height.0) + u128::from(round.0)) % total;
        let unit = (slot * u128::from(self.stride)) % total;
        // `unit < total` fits in u64. The owner is the last validator whose prefix is <= unit.
        let unit = u64::try_from(unit).expect("unit < total <= u64::MAX");
        self.units.partition_point(|p| *p <= unit) - 1
    }
}

/// A stride near `total / phi` that is coprime with `total`.
fn golden_stride(total: u64) -> u64 {
    // 2^64 / phi, the fractional part of the golden ratio in 64-bit fixed point.
    const INV_PHI: u128 = 0x9E37_79B9_7F4A_7C15;
    let mut s = ((u128::from(total) * INV_PHI) >> 64) as u64;
    s = s.max(1);
    // Coprimes are dense (at least ~1/(2 ln ln T) of integers), so this ends within a few steps.
    while gcd(s, total) != 1 {
        s += 1;
    }
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest_protocol::SecretKey;

    fn key(i: u8) -> PublicKey {
        SecretKey::from_seed([i; 32]).public()
    }

    #[test]
    fn validator_set_is_sorted_and_rejects_bad_members() {
        let set = ValidatorSet::new((1..=4).map(|i| (key(i), Amount(10)))).expect("valid set");
        let keys: Vec<_> = set.validators().iter().map(Validator::account).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(set.total_power(), 40);
        assert!(set.get(&key(3)).is_some());
        assert!(set.get(&key(9)).is_none());

        assert_eq!(ValidatorSet::new([]), Err(ValidatorSetError::Empty));
        assert_eq!(
            ValidatorSet::new([(key(1), Amount(0))]),
            Err(ValidatorSetError::ZeroStake(Box::new(key(1))))
        );
        assert_eq!(
            ValidatorSet::new([(key(1), Amount(1)), (key(1), Amount(2))]),
            Err(ValidatorSetError::Duplicate(Box::new(key(1))))
        );
        assert_eq!(
            ValidatorSet::new([(key(1), Amount(u64::MAX / 2))]),
            Err(ValidatorSetError::TotalTooLarge)
        );
    }

    #[test]
    fn proposer_rotation_is_stake_weighted_over_a_cycle() {
        let stakes = [1u64, 2, 3, 7];
        let set = ValidatorSet::new((1..=4).map(|i| (key(i), Amount(stakes[usize::from(i) - 1]))))
            .expect("valid set");
        let total = set.total_power();
        // Any window of `total` consecutive slots gives each validator exactly its stake.
        for start in [0u64, 5, 1_000_003] {
            let mut counts = std::collections::BTreeMap::new();
            for k in start..start + total {
                *counts
                    .entry(set.proposer(Height(k), Round(0)).account())
                    .or_insert(0u64) += 1;
            }
            for v in set.validators() {
                assert_eq!(counts[&v.account()], v.power());
            }
        }
        // Equal stakes: plain round robin, every validator once in any four slots.
        let eq = ValidatorSet::new((1..=4).map(|i| (key(i), Amount(5)))).expect("valid set");
        let four: std::collections::BTreeSet<_> = (0..4)
            .map(|r| eq.proposer(Height(10), Round(r)).account())
            .collect();
        assert_eq!(four.len(), 4);
    }
}
