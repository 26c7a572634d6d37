//! Our types behind Malachite's `Context`: heights, blocks as values, proposals, votes,
//! stake-weighted validator sets, the signing scheme and proposer selection.
//!
//! This module owns the translation between `attest-protocol`'s consensus messages and the
//! driver's traits, and the validator-set rules (sorted by key, bounded, positive stake). It
//! never signs or verifies anything: the driver does no cryptography and neither does its
//! context; [`super::Consensus`] verifies before anything reaches the driver.

use std::fmt;
use std::sync::Arc;

use arc_malachitebft_core_types as mal;
use arc_malachitebft_core_types::{NilOrVal, Round as MalRound, VoteType};
use attest_protocol::limits::MAX_VALIDATORS;
use attest_protocol::{
    Amount, Block, BlockHash, Height, Proposal, PublicKey, Round, Signature, Vote, VoteKind,
};

use super::timeouts::TimeoutConfig;

/// The context: names our types for the driver. It carries no state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttestContext;

/// A validator's address: its account key. A newtype because Malachite's `Address` trait
/// cannot be implemented on a foreign type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub PublicKey);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.0)
    }
}

impl mal::Address for Address {}

/// A height for the driver: a newtype because the trait cannot be implemented on a foreign type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConsensusHeight(pub Height);

impl fmt::Display for ConsensusHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ConsensusHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "H{}", self.0.0)
    }
}

impl mal::Height for ConsensusHeight {
    const ZERO: Self = Self(Height(0));
    const INITIAL: Self = Self(Height(1));

    fn increment_by(&self, n: u64) -> Self {
        Self(Height(self.0.0.saturating_add(n)))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.0.checked_sub(n).map(|h| Self(Height(h)))
    }

    fn as_u64(&self) -> u64 {
        self.0.0
    }
}

/// The value consensus decides: a block, shared (a block can be megabytes and the driver clones
/// values freely), with its hash computed once.
///
/// Equality and order are by hash alone. That is sound because [`super::Consensus`] admits a
/// block only after `Block::check_body`, so two admitted blocks with one hash are the same block.
#[derive(Clone)]
pub struct BlockValue {
    block: Arc<Block>,
    hash: BlockHash,
}

impl BlockValue {
    /// Wraps `block`, hashing its header.
    pub fn new(block: Block) -> Self {
        let hash = block.hash();
        Self {
            block: Arc::new(block),
            hash,
        }
    }

    /// The block.
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// The block's hash.
    pub fn hash(&self) -> BlockHash {
        self.hash
    }
}

impl fmt::Debug for BlockValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({}@{})", self.hash, self.block.header.height)
    }
}

impl PartialEq for BlockValue {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}

impl Eq for BlockValue {}

impl PartialOrd for BlockValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BlockValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.hash.cmp(&other.hash)
    }
}

impl mal::Value for BlockValue {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        self.hash
    }
}

/// Converts our round to the driver's (ours cannot be nil).
pub fn to_mal_round(r: Round) -> MalRound {
    MalRound::new(r.0)
}

/// Converts a defined driver round to ours; `None` for the nil round.
pub fn from_mal_round(r: MalRound) -> Option<Round> {
    r.as_u32().map(Round)
}

/// A proposal as the driver sees it: the protocol proposal's fields plus its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestProposal {
    /// The proposer that signed it.
    pub proposer: Address,
    /// The height.
    pub height: ConsensusHeight,
    /// The round.
    pub round: MalRound,
    /// The proof-of-lock round, or nil.
    pub pol_round: MalRound,
    /// The proposed block.
    pub value: BlockValue,
}

impl AttestProposal {
    /// The driver's view of a protocol proposal signed by `signer`.
    pub fn from_protocol(signer: PublicKey, p: &Proposal) -> Self {
        Self {
            proposer: Address(signer),
            height: ConsensusHeight(p.height),
            round: to_mal_round(p.round),
            pol_round: p.pol_round.map_or(MalRound::Nil, to_mal_round),
            value: BlockValue::new(p.block.clone()),
        }
    }

    /// The protocol proposal to sign. The driver only builds proposals for defined rounds.
    pub fn to_protocol(&self) -> Proposal {
        Proposal {
            height: self.height.0,
            round: from_mal_round(self.round).unwrap_or(Round(0)),
            pol_round: from_mal_round(self.pol_round),
            block: self.value.block().clone(),
        }
    }
}

impl mal::Proposal<AttestContext> for AttestProposal {
    fn height(&self) -> ConsensusHeight {
        self.height
    }

    fn round(&self) -> MalRound {
        self.round
    }

    fn value(&self) -> &BlockValue {
        &self.value
    }

    fn take_value(self) -> BlockValue {
        self.value
    }

    fn pol_round(&self) -> MalRound {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A vote as the driver sees it: the protocol vote's fields plus its signer. Vote extensions
/// are not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestVote {
    /// The validator that cast it.
    pub validator: Address,
    /// The height.
    pub height: ConsensusHeight,
    /// The round.
    pub round: MalRound,
    /// Prevote or precommit.
    pub kind: VoteType,
    /// The block voted for, or nil.
    pub value: NilOrVal<BlockHash>,
}

impl AttestVote {
    /// The driver's view of a protocol vote signed by `signer`.
    pub fn from_protocol(signer: PublicKey, v: &Vote) -> Self {
        Self {
            validator: Address(signer),
            height: ConsensusHeight(v.height),
            round: to_mal_round(v.round),
            kind: match v.kind {
                VoteKind::Prevote => VoteType::Prevote,
                VoteKind::Precommit => VoteType::Precommit,
            },
            value: v.block.map_or(NilOrVal::Nil, NilOrVal::Val),
        }
    }

    /// The protocol vote to sign. The driver only votes in defined rounds.
    pub fn to_protocol(&self) -> Vote {
        Vote {
            height: self.height.0,
            round: from_mal_round(self.round).unwrap_or(Round(0)),
            kind: match self.kind {
                VoteType::Prevote => VoteKind::Prevote,
                VoteType::Precommit => VoteKind::Precommit,
            },
            block: match self.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(h) => Some(h),
            },
        }
    }
}

impl mal::Vote<AttestContext> for AttestVote {
    fn height(&self) -> ConsensusHeight {
        self.height
    }

    fn round(&self) -> MalRound {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.kind
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    fn extension(&self) -> Option<&mal::SignedExtension<AttestContext>> {
        None
    }

    fn take_extension(&mut self) -> Option<mal::SignedExtension<AttestContext>> {
        None
    }

    fn extend(self, _extension: mal::SignedExtension<AttestContext>) -> Self {
        // Extensions are disabled for Attest; one arriving here is ignored, never signed.
        self
    }
}

/// Attest streams no proposal parts (the proposal carries the whole block): this type has no
/// values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoProposalParts {}

impl mal::ProposalPart<AttestContext> for NoProposalParts {
    fn is_first(&self) -> bool {
        match *self {}
    }

    fn is_last(&self) -> bool {
        match *self {}
    }
}

/// ed25519 with our key and signature types; Malachite only needs their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ed25519Scheme;

impl mal::SigningScheme for Ed25519Scheme {
    type DecodingError = String;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = attest_protocol::SecretKey;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, String> {
        let arr: [u8; 64] = bytes
            .try_into()
            .map_err(|_| format!("a signature is 64 bytes, got {}", bytes.len()))?;
        Ok(Signature(arr))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, String> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("a public key is 32 bytes, got {}", bytes.len()))?;
        PublicKey::from_bytes(arr).map_err(|e| e.to_string())
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.as_bytes().to_vec()
    }
}

/// One validator: its account and its voting power, which is its stake in micro-units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    address: Address,
    power: u64,
}

impl Validator {
    /// The validator's account key.
    pub fn account(&self) -> PublicKey {
        self.address.0
    }

    /// Its voting power (stake in micro-units).
    pub fn power(&self) -> u64 {
        self.power
    }
}

impl mal::Validator<AttestContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.address.0
    }

    fn voting_power(&self) -> u64 {
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
                address: Address(k),
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
        validators.sort_by_key(|v| v.address);
        let mut total = 0u64;
        let mut g = 0u64;
        for (i, v) in validators.iter().enumerate() {
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroStake(Box::new(v.address.0)));
            }
            if i > 0 && validators[i - 1].address == v.address {
                return Err(ValidatorSetError::Duplicate(Box::new(v.address.0)));
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
            .binary_search_by(|v| v.address.0.cmp(key))
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
        let total = u128::from(self.units[self.units.len() - 1]);
        let slot = (u128::from(height.0) + u128::from(round.0)) % total;
        let unit = (slot * u128::from(self.stride)) % total;
        // `unit < total` fits in u64. The owner is the last validator whose prefix is <= unit.
        let unit = u64::try_from(unit).expect("unit < total <= u64::MAX");
        let idx = self.units.partition_point(|p| *p <= unit) - 1;
        &self.validators[idx]
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

impl mal::ValidatorSet<AttestContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> u64 {
        self.total_power()
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.get(&address.0)
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

impl mal::Timeouts<AttestContext> for TimeoutConfig {
    fn duration_for(&self, timeout: mal::Timeout) -> std::time::Duration {
        let round = from_mal_round(timeout.round).unwrap_or(Round(0));
        match timeout.kind {
            mal::TimeoutKind::Propose => self.duration(super::TimeoutKind::Propose, round),
            mal::TimeoutKind::Prevote => self.duration(super::TimeoutKind::Prevote, round),
            mal::TimeoutKind::Precommit => self.duration(super::TimeoutKind::Precommit, round),
            // The driver never schedules these; the engine would use them, and we have none.
            mal::TimeoutKind::Rebroadcast => self.max,
            mal::TimeoutKind::FinalizeHeight(d) => d,
        }
    }
}

impl mal::Context for AttestContext {
    type Address = Address;
    type Height = ConsensusHeight;
    type ProposalPart = NoProposalParts;
    type Proposal = AttestProposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = TimeoutConfig;
    type Value = BlockValue;
    type Vote = AttestVote;
    type Extension = ();
    type SigningScheme = Ed25519Scheme;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: ConsensusHeight,
        round: MalRound,
    ) -> &'a Validator {
        validator_set.proposer(height.0, from_mal_round(round).unwrap_or(Round(0)))
    }

    fn new_proposal(
        &self,
        height: ConsensusHeight,
        round: MalRound,
        value: BlockValue,
        pol_round: MalRound,
        address: Address,
    ) -> AttestProposal {
        AttestProposal {
            proposer: address,
            height,
            round,
            pol_round,
            value,
        }
    }

    fn new_prevote(
        &self,
        height: ConsensusHeight,
        round: MalRound,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> AttestVote {
        AttestVote {
            validator: address,
            height,
            round,
            kind: VoteType::Prevote,
            value: value_id,
        }
    }

    fn new_precommit(
        &self,
        height: ConsensusHeight,
        round: MalRound,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> AttestVote {
        AttestVote {
            validator: address,
            height,
            round,
            kind: VoteType::Precommit,
            value: value_id,
        }
    }
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
