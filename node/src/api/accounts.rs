//! Accounts: `GET /v1/accounts/{id}`: balance, nonce, stake, and a provider record computed
//! from the ledger state.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use attest_contracts_sim::{JobPhase, SlashReason, StakeStatus, State as Ledger};
use attest_protocol::{AccountId, Amount, Height, JobId, Nonce, PublicKey, Round, VoteKind};

use super::market::ReputationView;
use super::{ApiError, account_id, ask};
use crate::market::adverts::Reputation;
use crate::shell::NodeHandle;

/// The most slash records an account answer lists, newest last; `slashes_total` counts all.
pub const MAX_LISTED_SLASHES: usize = 100;

/// An account as `GET /v1/accounts/{id}` shows it. Built by the node loop from the state
/// ([`AccountSnapshot::of`]); serialised by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// The account.
    pub account: AccountId,
    /// Spendable balance, in units (0 for an account never seen).
    pub balance: Amount,
    /// The nonce its next transaction must carry.
    pub nonce: Nonce,
    /// Its stake, if it ever staked.
    pub stake: Option<StakeView>,
    /// Its record as a provider.
    pub provider: ProviderRecord,
    /// Jobs it opened as a client, by phase.
    pub client_jobs: PhaseCounts,
}

/// An account's stake and standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeView {
    /// Bonded stake, in units.
    pub bonded: Amount,
    /// Stake on its way out, oldest first: still slashable until released.
    pub unbonding: Vec<UnbondView>,
    /// `active`, `jailed` or `banned`.
    pub status: String,
    /// Whether it may be assigned jobs and checks now (active, with `min_stake` bonded).
    pub eligible: bool,
    /// Disputes lost as a provider.
    pub disputes_lost: u32,
    /// Jobs left that are always checked (probation after a lost dispute).
    pub probation_left: u32,
    /// The node bound to the account: its identity key.
    pub node: PublicKey,
    /// The same node as a libp2p PeerId.
    pub node_peer_id: String,
}

/// Stake unbonding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbondView {
    /// How much, in units.
    pub amount: Amount,
    /// The height at whose end it returns to the balance.
    pub release_at: Height,
}

/// Jobs by phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCounts {
    /// Waiting for the provider's result.
    pub open: u64,
    /// Result committed, being checked or waiting to settle.
    pub committed: u64,
    /// In dispute.
    pub disputed: u64,
    /// Paid out.
    pub settled: u64,
    /// Escrow returned to the client.
    pub refunded: u64,
}

impl PhaseCounts {
    fn count(&mut self, phase: &JobPhase) {
        let n = match phase {
            JobPhase::Open { .. } => &mut self.open,
            JobPhase::Committed { .. } => &mut self.committed,
            JobPhase::Disputed { .. } => &mut self.disputed,
            JobPhase::Settled => &mut self.settled,
            JobPhase::Refunded => &mut self.refunded,
        };
        *n = n.saturating_add(1);
    }
}

/// An account's record as a provider, from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// Jobs naming it as provider, by phase.
    pub jobs: PhaseCounts,
    /// Its standing, as the gateway ranks it.
    pub reputation: ReputationView,
    /// Slashes naming it (as provider, checker or validator).
    pub slashes_total: u64,
    /// The newest of them, at most [`MAX_LISTED_SLASHES`], oldest first.
    pub slashes: Vec<SlashView>,
}

/// One slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashView {
    /// Stake taken, in units.
    pub amount: Amount,
    /// The block that slashed it.
    pub height: Height,
    /// Why.
    #[serde(flatten)]
    pub reason: ReasonView,
}

/// A slash reason: its name and what it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonView {
    /// `missed_commit`, `missed_verdict`, `dispute_lost` or `equivocation`.
    pub reason: String,
    /// The job, for the job faults.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub job: Option<JobId>,
    /// The votes' height, round and kind (`prevote` or `precommit`), for equivocation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vote: Option<(Height, Round, String)>,
}

impl ReasonView {
    /// The view of `reason`.
    pub fn new(reason: &SlashReason) -> Self {
        let (job, vote) = match reason {
            SlashReason::MissedCommit { job }
            | SlashReason::MissedVerdict { job }
            | SlashReason::DisputeLost { job } => (Some(*job), None),
            SlashReason::Equivocation {
                height,
                round,
                kind,
            } => {
                let kind = match kind {
                    VoteKind::Prevote => "prevote",
                    VoteKind::Precommit => "precommit",
                };
                (None, Some((*height, *round, kind.to_owned())))
            }
        };
        Self {
            reason: crate::metrics::slash_reason(reason).to_owned(),
            job,
            vote,
        }
    }
}

fn status_name(status: StakeStatus) -> &'static str {
    match status {
        StakeStatus::Active => "active",
        StakeStatus::Jailed => "jailed",
        StakeStatus::Banned => "banned",
    }
}

impl AccountSnapshot {
    /// `id` in `state`. One pass over the jobs and one over the slashes: `O(jobs + slashes)`,
    /// microseconds per thousand jobs, run in the node loop.
    pub fn of(state: &Ledger, id: &AccountId) -> Self {
        let account = state.account(id);
        let stake = state.stake(id).map(|s| StakeView {
            bonded: s.bonded,
            unbonding: s
                .unbonding
                .iter()
                .map(|u| UnbondView {
                    amount: u.amount,
                    release_at: u.release_at,
                })
                .collect(),
            status: status_name(s.status).to_owned(),
            eligible: s.eligible(state.params().min_stake),
            disputes_lost: s.disputes_lost,
            probation_left: s.probation_left,
            node: s.node,
            node_peer_id: s.node.peer_id(),
        });
        let mut provided = PhaseCounts::default();
        let mut opened = PhaseCounts::default();
        for (_, job) in state.jobs() {
            if job.provider == *id {
                provided.count(&job.phase);
            }
            if job.client == *id {
                opened.count(&job.phase);
            }
        }
        let mine: Vec<_> = state.slashes().iter().filter(|s| s.who == *id).collect();
        let slashes_total = u64::try_from(mine.len()).unwrap_or(u64::MAX);
        let slashes = mine[mine.len().saturating_sub(MAX_LISTED_SLASHES)..]
            .iter()
            .map(|s| SlashView {
                amount: s.amount,
                height: s.height,
                reason: ReasonView::new(&s.reason),
            })
            .collect();
        let reputation = Reputation {
            settled: provided.settled,
            slashes: slashes_total,
        };
        Self {
            account: *id,
            balance: account.balance,
            nonce: account.nonce,
            stake,
            provider: ProviderRecord {
                jobs: provided,
                reputation: reputation.into(),
                slashes_total,
                slashes,
            },
            client_jobs: opened,
        }
    }
}

/// `GET /v1/accounts/{id}`.
pub(super) async fn account(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountSnapshot>, ApiError> {
    let id = account_id(path)?;
    Ok(Json(ask(node.account(id)).await?))
}
