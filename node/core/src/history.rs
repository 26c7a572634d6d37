//! The ledger's history as a node indexes it: what left the live state (final jobs, slashes)
//! and which jobs each account had, so the API and the CLI answer by look-up after the
//! contract has forgotten a job (`retention_blocks` after it ended).
//!
//! [`HistoryBatch::of`] derives one block's entries from its events and the state after it,
//! in `O(events)`; the core hands the batch to the host ([`crate::node::Persist::History`]),
//! which writes it to its [`crate::store::Store`]. Writes are idempotent (keyed by job, or by
//! account, height and position), so a block indexed twice after a crash changes nothing.

use attest_contracts_sim::{Event, Job, SlashReason, State};
use attest_protocol::{AccountId, Amount, Height, JobId, TxHash};
use serde::{Deserialize, Serialize};

/// An account's part in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// It opened the job.
    Client,
    /// The job named it as provider.
    Provider,
    /// It was drawn to check the job's result.
    Checker,
}

impl Role {
    /// The role's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Provider => "provider",
            Role::Checker => "checker",
        }
    }
}

/// A job as it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalJob {
    /// The job at its end (its input dropped; the `OpenJob` transaction keeps it).
    pub job: Job,
    /// The block that ended it.
    pub closed_at: Height,
}

/// One slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashEntry {
    /// Stake taken.
    pub amount: Amount,
    /// Why.
    pub reason: SlashReason,
    /// The block that slashed it.
    pub height: Height,
}

/// What one block adds to the history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryBatch {
    /// The block's height.
    pub height: Height,
    /// Jobs that ended in it.
    pub finished: Vec<(JobId, FinalJob)>,
    /// `(account, role, job)` for every part an account took on in it.
    pub parts: Vec<(AccountId, Role, JobId)>,
    /// `(account, slash)` for its slashes, in event order.
    pub slashes: Vec<(AccountId, SlashEntry)>,
    /// Its transactions' hashes, in block order (the transaction index: where each
    /// committed transaction is).
    pub txs: Vec<TxHash>,
}

impl HistoryBatch {
    /// The entries the block at `height` adds, from its `events` and `state`, the state after
    /// it (a job that ended in the block is still in it: retention is at least one block).
    pub fn of(height: Height, events: &[Event], state: &State) -> HistoryBatch {
        let mut batch = HistoryBatch {
            height,
            ..HistoryBatch::default()
        };
        for event in events {
            match event {
                Event::JobOpened {
                    job,
                    client,
                    provider,
                    ..
                } => {
                    batch.parts.push((*client, Role::Client, *job));
                    batch.parts.push((*provider, Role::Provider, *job));
                }
                Event::CheckAssigned { job, checker, .. } => {
                    batch.parts.push((*checker, Role::Checker, *job));
                }
                Event::Settled { job, .. } | Event::Refunded { job, .. } => {
                    if let Some(j) = state.job(job).filter(|j| j.phase.is_final()) {
                        let entry = FinalJob {
                            job: j.clone(),
                            closed_at: height,
                        };
                        batch.finished.push((*job, entry));
                    }
                }
                Event::Slashed {
                    who,
                    amount,
                    reason,
                    ..
                } => batch.slashes.push((
                    *who,
                    SlashEntry {
                        amount: *amount,
                        reason: reason.clone(),
                        height,
                    },
                )),
                _ => {}
            }
        }
        batch
    }

    /// Whether the block added nothing.
    pub fn is_empty(&self) -> bool {
        self.finished.is_empty()
            && self.parts.is_empty()
            && self.slashes.is_empty()
            && self.txs.is_empty()
    }
}

/// The most entries one history query returns.
pub const MAX_HISTORY_PAGE: usize = 100;
