//! The bounded buffer of messages for heights that have not started yet.
//!
//! A validator that is a little behind (still collecting precommits for `h` while the others
//! already propose `h + 1`) would otherwise drop the first messages of the next height and wait
//! for a round timeout. This module owns the bounds; it never verifies anything itself (its
//! caller admits only messages whose signature verified, from members of the current set).

use std::collections::BTreeMap;

use attest_protocol::{Height, Proposal, PublicKey, Signed, Vote};

/// Heights ahead of the current one that are buffered: `h + 1` and `h + 2`. Messages further
/// ahead mean we are behind by whole blocks, which sync (not buffering) must fix.
pub const FUTURE_HEIGHTS: u64 = 2;

/// Votes kept per signer per future height: a prevote and a precommit for four rounds, which
/// covers a next height that starts with a few failed rounds.
pub const MAX_VOTES_PER_SIGNER: usize = 8;

/// Proposals kept per signer per future height: one, and one more to expose an equivocation.
pub const MAX_PROPOSALS_PER_SIGNER: usize = 2;

/// Proposals kept in all. A block can be ~8 MiB, so this bounds the buffer near 64 MiB
/// whatever the validator count.
pub const MAX_PROPOSALS: usize = 8;

/// A message whose signature has been verified, waiting for its height.
#[derive(Debug, Clone)]
pub enum Buffered {
    /// A vote.
    Vote(Signed<Vote>),
    /// A proposal (its block is re-judged by the host when the height starts).
    Proposal(Box<Signed<Proposal>>),
}

/// Messages for the next [`FUTURE_HEIGHTS`] heights, bounded per signer.
#[derive(Debug, Default)]
pub struct FutureBuffer {
    by_height: BTreeMap<Height, Vec<Buffered>>,
    /// (height, signer) -> (votes, proposals) held.
    counts: BTreeMap<(Height, PublicKey), (usize, usize)>,
    proposals: usize,
}

impl FutureBuffer {
    /// Whether `height` is within the window above `current`.
    pub fn in_window(current: Height, height: Height) -> bool {
        height > current && height.0 - current.0 <= FUTURE_HEIGHTS
    }

    /// Keeps `msg` for `height`; `false` if the signer's quota (or the proposal total) is full.
    pub fn push(&mut self, height: Height, signer: PublicKey, msg: Buffered) -> bool {
        let (votes, proposals) = self.counts.entry((height, signer)).or_default();
        match &msg {
            Buffered::Vote(_) if *votes >= MAX_VOTES_PER_SIGNER => return false,
            Buffered::Vote(_) => *votes += 1,
            Buffered::Proposal(_)
                if *proposals >= MAX_PROPOSALS_PER_SIGNER || self.proposals >= MAX_PROPOSALS =>
            {
                return false;
            }
            Buffered::Proposal(_) => {
                *proposals += 1;
                self.proposals += 1;
            }
        }
        self.by_height.entry(height).or_default().push(msg);
        true
    }

    /// Removes and returns the messages for `height`, dropping those for lower heights.
    pub fn take(&mut self, height: Height) -> Vec<Buffered> {
        let keep = self.by_height.split_off(&height.next());
        let mut lower = std::mem::replace(&mut self.by_height, keep);
        let taken = lower.remove(&height).unwrap_or_default();
        self.counts.retain(|(h, _), _| *h > height);
        self.proposals = self
            .by_height
            .values()
            .flatten()
            .filter(|m| matches!(m, Buffered::Proposal(_)))
            .count();
        taken
    }

    /// How many messages are held.
    pub fn len(&self) -> usize {
        self.by_height.values().map(Vec::len).sum()
    }
}
