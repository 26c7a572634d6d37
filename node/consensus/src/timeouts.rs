//! Consensus timeouts: their kinds, the height-tagged id the host hands back, and the durations.
//!
//! This module owns the per-round timeout schedule. It never reads a clock or arms a timer:
//! the host does, and hands the [`TimeoutId`] back when the duration has passed.

use std::time::Duration;

use attest_protocol::{Height, Round};

/// The three Tendermint timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeoutKind {
    /// Waiting for the round's proposal; on expiry, prevote nil.
    Propose,
    /// Waiting after seeing prevotes of > 2/3 for different things; on expiry, precommit nil.
    Prevote,
    /// Waiting after seeing precommits of > 2/3 for different things; on expiry, next round.
    Precommit,
}

/// Which timeout elapsed. Tagged with the height, because the driver's timeouts name only a
/// round and kind: a timer armed at height `h` that fires at `h + 1` must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeoutId {
    /// The height it was scheduled at.
    pub height: Height,
    /// The round it was scheduled for.
    pub round: Round,
    /// Which step it guards.
    pub kind: TimeoutKind,
}

/// Timeout durations: Tendermint's linear schedule, `base + round * delta`, capped at `max`.
///
/// The per-round increase is what makes Tendermint live after the network stabilises: once
/// the timeouts exceed the real message delay, some round completes. Timeouts only cost time
/// when something fails (a crashed proposer, a partition); in the normal case a round ends as
/// soon as the votes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// Propose timeout in round 0.
    pub propose: Duration,
    /// Added to the propose timeout per round.
    pub propose_delta: Duration,
    /// Prevote timeout in round 0.
    pub prevote: Duration,
    /// Added to the prevote timeout per round.
    pub prevote_delta: Duration,
    /// Precommit timeout in round 0.
    pub precommit: Duration,
    /// Added to the precommit timeout per round.
    pub precommit_delta: Duration,
    /// No timeout is ever longer than this.
    pub max: Duration,
}

impl Default for TimeoutConfig {
    /// CometBFT's defaults (3 s / 1 s / 1 s, +0.5 s per round). The propose timeout must
    /// exceed the time a proposer takes to build a block: a host that paces idle blocks should
    /// delay starting the next height (like CometBFT's `timeout_commit`), not its answer to
    /// `GetValue`, or the other validators will prevote nil before the block arrives.
    fn default() -> Self {
        Self {
            propose: Duration::from_millis(3000),
            propose_delta: Duration::from_millis(500),
            prevote: Duration::from_millis(1000),
            prevote_delta: Duration::from_millis(500),
            precommit: Duration::from_millis(1000),
            precommit_delta: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl TimeoutConfig {
    /// How long the `kind` timeout of `round` lasts.
    pub fn duration(&self, kind: TimeoutKind, round: Round) -> Duration {
        let (base, delta) = match kind {
            TimeoutKind::Propose => (self.propose, self.propose_delta),
            TimeoutKind::Prevote => (self.prevote, self.prevote_delta),
            TimeoutKind::Precommit => (self.precommit, self.precommit_delta),
        };
        base.saturating_add(delta.saturating_mul(round.0))
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_grow_linearly_and_are_capped() {
        let t = TimeoutConfig::default();
        assert_eq!(
            t.duration(TimeoutKind::Propose, Round(0)),
            Duration::from_secs(3)
        );
        assert_eq!(
            t.duration(TimeoutKind::Propose, Round(2)),
            Duration::from_secs(4)
        );
        assert_eq!(
            t.duration(TimeoutKind::Prevote, Round(1)),
            Duration::from_millis(1500)
        );
        assert_eq!(t.duration(TimeoutKind::Precommit, Round(u32::MAX)), t.max);
    }
}
