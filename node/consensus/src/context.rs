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
use attest_chain::ValidatorSet;
use attest_protocol::{
    Block, BlockHash, Height, Proposal, PublicKey, Round, Signature, Vote, VoteKind,
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

/// One validator as the driver sees it: its address and voting power. The chain's
/// [`attest_chain::Validator`] names the account by key; the driver's trait returns its
/// address by reference, so the address newtype is stored here.
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

/// The chain's validator set of one height in the driver's terms: the same members in the
/// same order, proposer selection delegated to the chain's rule. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverValidators {
    set: ValidatorSet,
    members: Arc<[Validator]>,
}

impl DriverValidators {
    /// The driver's view of `set`.
    pub fn new(set: &ValidatorSet) -> Self {
        let members = set
            .validators()
            .iter()
            .map(|v| Validator {
                address: Address(v.account()),
                power: v.power(),
            })
            .collect();
        Self {
            set: set.clone(),
            members,
        }
    }

    /// The chain's set.
    pub fn set(&self) -> &ValidatorSet {
        &self.set
    }
}

impl mal::ValidatorSet<AttestContext> for DriverValidators {
    fn count(&self) -> usize {
        self.members.len()
    }

    fn total_voting_power(&self) -> u64 {
        self.set.total_power()
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.members
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .map(|i| &self.members[i])
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.members.get(index)
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
    type ValidatorSet = DriverValidators;
    type Timeouts = TimeoutConfig;
    type Value = BlockValue;
    type Vote = AttestVote;
    type Extension = ();
    type SigningScheme = Ed25519Scheme;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a DriverValidators,
        height: ConsensusHeight,
        round: MalRound,
    ) -> &'a Validator {
        let round = from_mal_round(round).unwrap_or(Round(0));
        &validator_set.members[validator_set.set.proposer_index(height.0, round)]
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
