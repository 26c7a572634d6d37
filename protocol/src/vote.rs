//! Consensus votes: a validator's prevote or precommit for a block (or nil) in one round.
//! Blocks and certificates carry them (`crate::consensus`), and so does equivocation
//! evidence (`crate::tx`).

use serde::{Deserialize, Serialize};

use crate::encoding::Canonical;
use crate::limits::MAX_SMALL_MESSAGE_BYTES;
use crate::signed::Signable;
use crate::types::{BlockHash, Height, Round};

/// The two voting steps of a Tendermint round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// The first vote of a round.
    Prevote,
    /// The second vote; more than 2/3 of stake precommitting a block commits it.
    Precommit,
}

/// A validator's vote, signed with its account key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// The height voted on.
    pub height: Height,
    /// The round within the height.
    pub round: Round,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The block voted for, or `None` for nil.
    pub block: Option<BlockHash>,
}

impl Signable for Vote {
    const SIGNING_TAG: &'static str = "attest/sig/vote/v1";
}

impl Canonical for Vote {
    const NAME: &'static str = "vote";
    const MAX_ENCODED_LEN: usize = MAX_SMALL_MESSAGE_BYTES;
}
