//! Stage times of every job from committed blocks: opened, result committed, verdict, dispute,
//! closed, by block time. Pure: block times come in with each block.

use std::collections::VecDeque;

use attest_contracts_sim::Event;
use attest_protocol::{AccountId, Amount, Height, JobId};

use crate::bounded::BoundedMap;

/// The most jobs [`Measurements`] keeps: the oldest go first. 10,000 jobs cost ~1 MB.
pub const MAX_MEASURED_JOBS: usize = 10_000;

/// One job's stages, as block heights and block times (ms) of the blocks that committed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobClock {
    /// Opened: escrow locked.
    pub opened: Option<(Height, u64)>,
    /// Result committed.
    pub committed: Option<(Height, u64)>,
    /// Check assigned.
    pub check_assigned: Option<(Height, u64)>,
    /// Verdict posted (and whether it agreed).
    pub verdict: Option<(Height, u64, bool)>,
    /// Dispute opened.
    pub dispute_opened: Option<(Height, u64)>,
    /// Dispute rounds completed.
    pub dispute_rounds: u32,
    /// Dispute resolved.
    pub dispute_resolved: Option<(Height, u64)>,
    /// Settled or refunded.
    pub closed: Option<(Height, u64)>,
}

impl JobClock {
    /// Validation latency: block time of the verdict minus block time of the result.
    pub fn validation_latency_ms(&self) -> Option<u64> {
        Some(self.verdict?.1.saturating_sub(self.committed?.1))
    }

    /// Blocks from the dispute's opening to its resolution.
    pub fn dispute_blocks(&self) -> Option<u64> {
        Some(
            self.dispute_resolved?
                .0
                .0
                .saturating_sub(self.dispute_opened?.0.0),
        )
    }
}

/// What every node measures of every job from committed blocks, and
/// the slashes. Bounded: the oldest jobs go past [`MAX_MEASURED_JOBS`].
#[derive(Debug)]
pub struct Measurements {
    jobs: BoundedMap<JobId, JobClock>,
    /// Slashes seen: (account, amount, reason as text), the newest last; at most
    /// [`MAX_MEASURED_JOBS`] kept.
    pub slashes: VecDeque<(AccountId, Amount, String)>,
}

impl Default for Measurements {
    fn default() -> Self {
        Self {
            jobs: BoundedMap::new(MAX_MEASURED_JOBS),
            slashes: VecDeque::new(),
        }
    }
}

impl Measurements {
    /// Records the events of the block at `height` with block time `time_ms`.
    pub fn observe(&mut self, height: Height, time_ms: u64, events: &[Event]) {
        let at = (height, time_ms);
        for e in events {
            match e {
                Event::JobOpened { job, .. } => self.clock(job).opened = Some(at),
                Event::ResultCommitted { job, .. } => self.clock(job).committed = Some(at),
                Event::CheckAssigned { job, .. } => self.clock(job).check_assigned = Some(at),
                Event::VerdictPosted { job, agree, .. } => {
                    self.clock(job).verdict = Some((height, time_ms, *agree))
                }
                Event::DisputeOpened { job, .. } => self.clock(job).dispute_opened = Some(at),
                Event::DisputeRound { job, .. } => self.clock(job).dispute_rounds += 1,
                Event::DisputeResolved { job, .. } => self.clock(job).dispute_resolved = Some(at),
                Event::Settled { job, .. } | Event::Refunded { job, .. } => {
                    self.clock(job).closed = Some(at)
                }
                Event::Slashed {
                    who,
                    amount,
                    reason,
                    ..
                } => {
                    if self.slashes.len() >= MAX_MEASURED_JOBS {
                        self.slashes.pop_front();
                    }
                    self.slashes
                        .push_back((*who, *amount, format!("{reason:?}")));
                }
                _ => {}
            }
        }
    }

    /// One job's clock, if measured.
    pub fn job(&self, id: &JobId) -> Option<&JobClock> {
        self.jobs.get(id)
    }

    /// Every measured job, by id.
    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &JobClock)> {
        self.jobs.iter()
    }

    fn clock(&mut self, id: &JobId) -> &mut JobClock {
        self.jobs.get_or_insert_with(*id, JobClock::default)
    }
}
