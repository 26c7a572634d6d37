//! Jobs: `GET /v1/jobs/{id}` (the ledger's record, its timeline from committed blocks, and
//! whether this node holds the output) and `GET /v1/jobs/{id}/output` (the verified output
//! bytes this node holds as the job's gateway).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use attest_contracts_sim::state::Fault;
use attest_contracts_sim::{Check, Committed, Dispute, JobPhase, Review};
use attest_protocol::tx::CheckLevel;
use attest_protocol::workload::output_hash;
use attest_protocol::{AccountId, Amount, DeviceName, Hash, Height, JobId, ModelId};

use attest_core::market::JobClock;

use super::{ApiError, ask, job_id, not_found, proof_asked};
use crate::shell::NodeHandle;
use crate::views::{JobSnapshot, ProofView, ReasonView};

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// The job id: the hash of the transaction that opened it.
    pub id: JobId,
    /// The client that opened it.
    pub client: AccountId,
    /// The provider it names.
    pub provider: AccountId,
    /// The model.
    pub model: ModelId,
    /// The advert's device.
    pub device: DeviceName,
    /// Tokens to generate.
    pub max_tokens: u32,
    /// The advert's price per token, in units.
    pub price_per_token: Amount,
    /// Length of the input, in bytes.
    pub input_bytes: usize,
    /// Steps in the job's trace.
    pub step_count: u64,
    /// Escrow still locked, in units (0 once the job is final).
    pub escrow: Amount,
    /// The block that opened it.
    pub opened_at: Height,
    /// Where it is: `open`, `committed`, `disputed`, `settled` or `refunded`.
    pub phase: String,
    /// The block time (ms since the Unix epoch) at which the phase times out, if it can: at
    /// the end of the first block whose time reaches it.
    pub deadline_ms: Option<u64>,
    /// The assurance the client bought: `random` (the chain's spot-check rate) or `always`.
    pub check_level: String,
    /// What stands behind the result: see [`Assurance`].
    pub assurance: Assurance,
    /// The committed result, while the ledger holds it (phases `committed` and `disputed`).
    pub result: Option<ResultView>,
    /// The spot-check of the result (phase `committed`).
    pub check: Option<CheckView>,
    /// The dispute in progress (phase `disputed`).
    pub dispute: Option<DisputeView>,
    /// Faults established on the job, each backing a slash.
    pub faults: Vec<FaultView>,
    /// Stage heights and block times, from the blocks this node committed since it started;
    /// `null` if it saw none of them.
    pub timeline: Option<TimelineView>,
    /// Whether this node holds the job's verified output (`GET /v1/jobs/{id}/output`).
    pub output_held: bool,
    /// With `?proof=true`: a proof of the job's entry in the live state (of its absence, once
    /// it left it and this answer comes from the node's history).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub proof: Option<ProofView>,
}

/// A committed result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultView {
    /// The output accumulator over the output bytes.
    pub output_hash: Hash,
    /// The Merkle root over the trace.
    pub trace_root: Hash,
    /// The trace's last leaf.
    pub final_leaf: Hash,
    /// Tokens generated.
    pub tokens: u32,
    /// The block of the commit.
    pub committed_at: Height,
    /// That block's time, ms since the Unix epoch.
    pub committed_at_ms: u64,
}

impl From<&Committed> for ResultView {
    fn from(c: &Committed) -> Self {
        Self {
            output_hash: c.output_hash,
            trace_root: c.trace_root,
            final_leaf: c.final_leaf,
            tokens: c.tokens,
            committed_at: c.committed_at,
            committed_at_ms: c.committed_at_ms,
        }
    }
}

/// A result's spot-check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CheckView {
    /// Not selected: settles at block time `settle_at_ms` unless challenged before.
    Unchecked {
        /// The settlement time.
        settle_at_ms: u64,
    },
    /// A checker owes a verdict.
    Pending {
        /// The checker.
        checker: AccountId,
        /// The latest block time for its verdict.
        deadline_ms: u64,
        /// Checkers redrawn so far.
        redraws: u32,
        /// Checkers that missed their window on this job.
        failed: Vec<AccountId>,
    },
}

impl From<&Check> for CheckView {
    fn from(c: &Check) -> Self {
        match c {
            Check::Unchecked { settle_at_ms } => Self::Unchecked {
                settle_at_ms: *settle_at_ms,
            },
            Check::Pending {
                checker,
                deadline_ms,
                redraws,
                failed,
            } => Self::Pending {
                checker: *checker,
                deadline_ms: *deadline_ms,
                redraws: *redraws,
                failed: failed.clone(),
            },
        }
    }
}

/// A bisection dispute in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeView {
    /// The checker that disagreed, or the account that challenged.
    pub challenger: AccountId,
    /// What the challenger locked (zero for the assigned checker).
    pub bond: Amount,
    /// Its trace root.
    pub challenger_root: Hash,
    /// The current round (from 0); round `rounds` is the resolution phase.
    pub round: u32,
    /// Bisection rounds in all.
    pub rounds: u32,
    /// The highest step both traces agree on (`null`: none yet, the initial activation).
    pub agreed_step: Option<u64>,
    /// The step index both parties open this round (`null` in the resolution phase, where
    /// the challenger supplies the activation of `agreed_step`).
    pub open_index: Option<u64>,
    /// Whether the provider made this round's move.
    pub provider_moved: bool,
    /// Whether the challenger made this round's move.
    pub challenger_moved: bool,
    /// The latest block time for this round's moves.
    pub deadline_ms: u64,
}

impl DisputeView {
    /// The view of `d`, a dispute over a trace of `steps` steps.
    fn new(d: &Dispute, steps: u64) -> Self {
        Self {
            challenger: d.challenger,
            bond: d.bond,
            challenger_root: d.challenger_root,
            round: d.round,
            rounds: d.rounds,
            agreed_step: d.lo,
            open_index: (d.round < d.rounds)
                .then(|| attest_contracts_sim::apply::disputes::round_index(d, steps))
                .flatten(),
            provider_moved: d.provider_leaf.is_some(),
            challenger_moved: d.challenger_leaf.is_some(),
            deadline_ms: d.deadline_ms,
        }
    }
}

/// A fault on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultView {
    /// Who was at fault.
    pub who: AccountId,
    /// Why.
    #[serde(flatten)]
    pub reason: ReasonView,
}

impl From<&Fault> for FaultView {
    fn from(f: &Fault) -> Self {
        Self {
            who: f.who,
            reason: ReasonView::new(&f.reason),
        }
    }
}

/// A stage of a job: the block that recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageView {
    /// The block's height.
    pub height: Height,
    /// The block's time, ms since the Unix epoch.
    pub time_ms: u64,
}

impl From<(Height, u64)> for StageView {
    fn from((height, time_ms): (Height, u64)) -> Self {
        Self { height, time_ms }
    }
}

/// The verdict stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictStageView {
    /// The block's height.
    pub height: Height,
    /// The block's time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Whether the checker agreed with the result.
    pub agree: bool,
}

/// A job's stages in committed blocks, and what they measure (ARCHITECTURE.md, "What is measured").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineView {
    /// Opened: escrow locked.
    pub opened: Option<StageView>,
    /// Result committed.
    pub committed: Option<StageView>,
    /// Checker assigned.
    pub check_assigned: Option<StageView>,
    /// Verdict posted.
    pub verdict: Option<VerdictStageView>,
    /// Dispute opened.
    pub dispute_opened: Option<StageView>,
    /// Dispute rounds completed.
    pub dispute_rounds: u32,
    /// Dispute resolved.
    pub dispute_resolved: Option<StageView>,
    /// Settled or refunded.
    pub closed: Option<StageView>,
    /// Block time of the verdict minus block time of the result.
    pub validation_latency_ms: Option<u64>,
    /// Blocks from the dispute's opening to its resolution.
    pub dispute_blocks: Option<u64>,
}

impl From<&JobClock> for TimelineView {
    fn from(c: &JobClock) -> Self {
        Self {
            opened: c.opened.map(StageView::from),
            committed: c.committed.map(StageView::from),
            check_assigned: c.check_assigned.map(StageView::from),
            verdict: c.verdict.map(|(height, time_ms, agree)| VerdictStageView {
                height,
                time_ms,
                agree,
            }),
            dispute_opened: c.dispute_opened.map(StageView::from),
            dispute_rounds: c.dispute_rounds,
            dispute_resolved: c.dispute_resolved.map(StageView::from),
            closed: c.closed.map(StageView::from),
            validation_latency_ms: c.validation_latency_ms(),
            dispute_blocks: c.dispute_blocks(),
        }
    }
}

impl JobView {
    /// The view of `snapshot`, the job with id `id`.
    pub fn new(id: JobId, snapshot: &JobSnapshot) -> Self {
        let job = &snapshot.job;
        let (result, check, dispute) = match &job.phase {
            JobPhase::Committed { result, check } => {
                (Some(result.into()), Some(check.into()), None)
            }
            JobPhase::Disputed { result, dispute } => {
                let view = DisputeView::new(dispute, job.step_count);
                (Some(result.into()), None, Some(view))
            }
            JobPhase::Open { .. } | JobPhase::Settled | JobPhase::Refunded => (None, None, None),
        };
        Self {
            id,
            client: job.client,
            provider: job.provider,
            model: job.model.clone(),
            device: job.device.clone(),
            max_tokens: job.max_tokens,
            price_per_token: job.price_per_token,
            input_bytes: job.input.len(),
            step_count: job.step_count,
            escrow: job.escrow,
            opened_at: job.opened_at,
            phase: job.phase.name().to_owned(),
            deadline_ms: job.phase.deadline_ms(),
            check_level: check_level_name(job.check).to_owned(),
            assurance: Assurance::of(job),
            result,
            check,
            dispute,
            faults: job.faults.iter().map(FaultView::from).collect(),
            timeline: snapshot.clock.as_ref().map(TimelineView::from),
            output_held: snapshot.output.is_some(),
            proof: snapshot.proof.clone(),
        }
    }
}

/// Asks the node for job `id` (with a proof of its entry if `proof`): 404 if the ledger has
/// none.
async fn snapshot(node: &NodeHandle, id: JobId, proof: bool) -> Result<JobSnapshot, ApiError> {
    ask(node.job(id, proof))
        .await?
        .ok_or_else(|| not_found(format!("no job {id} is on the ledger")))
}

/// `GET /v1/jobs/{id}`.
pub(super) async fn job(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(path)?;
    let proof = proof_asked(query.as_deref())?;
    let snapshot = snapshot(&node, id, proof).await?;
    Ok(Json(JobView::new(id, &snapshot)))
}

/// The name of a check level in the API and CLI.
pub fn check_level_name(level: CheckLevel) -> &'static str {
    match level {
        CheckLevel::Random => "random",
        CheckLevel::Always => "always",
    }
}

/// What stands behind a job's result, from the ledger alone. A result matching the
/// provider's commitment (its output hash) is not a checked result: only an assigned
/// checker's agreement, or a dispute the provider won, re-executed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Assurance {
    /// No result yet.
    NoResult,
    /// A result nobody has checked; it settles at `settles_at_ms` unless someone challenges
    /// it before.
    Unchecked {
        /// Its settlement time.
        settles_at_ms: u64,
    },
    /// A checker was drawn and owes a verdict by `deadline_ms`.
    CheckPending {
        /// The checker.
        checker: AccountId,
        /// Its deadline.
        deadline_ms: u64,
    },
    /// The drawn checker re-executed the job and agreed.
    Checked {
        /// The checker.
        checker: AccountId,
    },
    /// A dispute over the result is running.
    Challenged {
        /// The disagreeing checker or challenger.
        challenger: AccountId,
        /// Whether it is the drawn checker.
        assigned_checker: bool,
    },
    /// The provider won a dispute over the result: one step re-executed by the contract
    /// decided for it.
    UpheldInDispute {
        /// Who disputed it.
        challenger: AccountId,
        /// Whether it was the drawn checker.
        assigned_checker: bool,
    },
    /// The provider lost a dispute: the result was wrong and the client was refunded.
    Overturned {
        /// Who disputed it.
        challenger: AccountId,
        /// Whether it was the drawn checker.
        assigned_checker: bool,
    },
    /// Settled without anyone checking it.
    SettledUnchecked,
    /// Refunded without a result (the provider missed its deadline).
    NoResultRefunded,
}

impl Assurance {
    /// What stands behind `job`'s result now.
    pub fn of(job: &attest_contracts_sim::Job) -> Self {
        match (&job.phase, job.review) {
            (JobPhase::Open { .. }, _) => Self::NoResult,
            (JobPhase::Committed { check, .. }, _) => match check {
                Check::Unchecked { settle_at_ms } => Self::Unchecked {
                    settles_at_ms: *settle_at_ms,
                },
                Check::Pending {
                    checker,
                    deadline_ms,
                    ..
                } => Self::CheckPending {
                    checker: *checker,
                    deadline_ms: *deadline_ms,
                },
            },
            (
                JobPhase::Disputed { .. },
                Review::Disputed {
                    challenger,
                    assigned,
                },
            ) => Self::Challenged {
                challenger,
                assigned_checker: assigned,
            },
            (JobPhase::Disputed { dispute, .. }, _) => Self::Challenged {
                challenger: dispute.challenger,
                assigned_checker: dispute.bond.0 == 0,
            },
            (JobPhase::Settled, Review::Agreed { checker }) => Self::Checked { checker },
            (
                JobPhase::Settled,
                Review::Disputed {
                    challenger,
                    assigned,
                },
            ) => Self::UpheldInDispute {
                challenger,
                assigned_checker: assigned,
            },
            (JobPhase::Settled, Review::None) => Self::SettledUnchecked,
            (
                JobPhase::Refunded,
                Review::Disputed {
                    challenger,
                    assigned,
                },
            ) => Self::Overturned {
                challenger,
                assigned_checker: assigned,
            },
            (JobPhase::Refunded, _) => Self::NoResultRefunded,
        }
    }

    /// Whether it is final: checked, disputed to the end, or settled or refunded. An
    /// unchecked result may still be challenged until it settles.
    pub fn is_decided(&self) -> bool {
        !matches!(
            self,
            Self::NoResult
                | Self::Unchecked { .. }
                | Self::CheckPending { .. }
                | Self::Challenged { .. }
        )
    }

    /// The sentence the CLI prints for it (times as UTC).
    pub fn describe(&self) -> String {
        match self {
            Self::NoResult => "no result yet".into(),
            Self::Unchecked { settles_at_ms } => format!(
                "unchecked; settles at {} unless challenged before",
                format_ms(*settles_at_ms)
            ),
            Self::CheckPending {
                checker,
                deadline_ms,
            } => format!(
                "check pending: checker {checker} owes a verdict by {}",
                format_ms(*deadline_ms)
            ),
            Self::Checked { checker } => format!("checked by {checker}: agrees"),
            Self::Challenged {
                challenger,
                assigned_checker: true,
            } => format!("challenged: checker {challenger} disagrees; dispute running"),
            Self::Challenged { challenger, .. } => {
                format!("challenged by {challenger}; dispute running")
            }
            Self::UpheldInDispute { challenger, .. } => {
                format!("challenged by {challenger}; upheld: the provider won the dispute")
            }
            Self::Overturned { challenger, .. } => format!(
                "challenged by {challenger}; wrong: the provider lost the dispute, the client was refunded"
            ),
            Self::SettledUnchecked => "unchecked; settled".into(),
            Self::NoResultRefunded => {
                "no result: the provider missed its deadline, the client was refunded".into()
            }
        }
    }
}

/// A block time (ms since the Unix epoch) as UTC `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        ms % 1_000
    )
}

/// The answer to `GET /v1/jobs/{id}/output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputView {
    /// The job.
    pub job: JobId,
    /// The job's phase now: the output is final once it is `settled`; before that a checker
    /// may still dispute the result it hashes to.
    pub phase: String,
    /// The output as text, if it is UTF-8.
    pub output: Option<String>,
    /// The output bytes, hex.
    pub output_hex: String,
    /// The output accumulator over the bytes: the `output_hash` the provider committed.
    pub output_hash: Hash,
}

/// `GET /v1/jobs/{id}/output`: the output this node fetched from the provider as the job's
/// gateway and checked against the committed output hash.
pub(super) async fn output(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<OutputView>, ApiError> {
    let id = job_id(path)?;
    let snapshot = snapshot(&node, id, false).await?;
    let phase = &snapshot.job.phase;
    let unavailable = |code: &'static str, detail: String| {
        Err(ApiError::new(StatusCode::NOT_FOUND, code, detail))
    };
    if let JobPhase::Open { deadline_ms } = phase {
        return unavailable(
            "no_result",
            format!(
                "job {id} has no result yet; the provider has until block time {deadline_ms} ms"
            ),
        );
    }
    if *phase == JobPhase::Refunded {
        return unavailable(
            "refunded",
            format!(
                "job {id} was refunded (its result was missed or lost a dispute): it has no \
                 verified output"
            ),
        );
    }
    let Some(bytes) = snapshot.output else {
        return unavailable(
            "output_not_held",
            format!(
                "this node holds no output of job {id}: only the node a job was submitted \
                 through fetches it, shortly after the result commits"
            ),
        );
    };
    Ok(Json(OutputView {
        job: id,
        phase: phase.name().to_owned(),
        output_hash: output_hash(&bytes),
        output_hex: hex::encode(&bytes),
        output: String::from_utf8(bytes).ok(),
    }))
}
