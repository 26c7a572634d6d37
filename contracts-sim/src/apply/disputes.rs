//! Rule "disputes": the bisection game over a trace and its one-step referee.
//!
//! # The game
//!
//! A trace has `L` steps (leaves `0..L`). The game takes exactly `R = ceil(log2 L)` rounds,
//! then a resolution phase (round number `R`). It bisects a virtual range of `2^R` indices
//! `-1..2^R - 1`, where index `-1` is the initial activation (agreed by definition) and the
//! virtual indices from `L - 1` up all stand for leaf `L - 1`, assumed disagreed because the
//! committed roots differ. Padding to a power of two is what makes every dispute take exactly
//! `R` rounds whatever the answers.
//!
//! The state is `lo` (the highest agreed virtual index, initially -1) and the round `r`; the
//! disagreed end is implied: `hi = lo + 2^(R - r)`. In round `r` both parties open the leaf at
//! `min(mid, L - 1)` with `mid = lo + 2^(R - 1 - r)`, each with a Merkle proof against its own
//! committed root (`MerkleProof::verify(root, L, index, leaf)`). Equal leaves set `lo = mid`;
//! different leaves set `hi = mid` (and remember both leaves). After round `R - 1`,
//! `hi = lo + 1`.
//!
//! # Resolution
//!
//! - If `lo >= L - 1`, both parties opened leaf `L - 1` and it was equal: the roots differ
//!   elsewhere, and the bisection cannot say who is wrong. The dispute is void: the client is
//!   refunded, nobody is slashed. (An honest provider is then unpaid but never slashed; an
//!   honest checker is never slashed for a trace the provider doctored off the bisection path.)
//! - Otherwise `hi <= L - 1` is the first divergent step. If it was never opened (only when
//!   `hi = L - 1 = 2^R - 1`), both parties open it in the resolution phase; equal leaves there
//!   void the dispute as above. If `lo >= 0`, the challenger supplies the activation of step
//!   `lo`, which must hash to the agreed leaf (`leaf_hash(lo, activation)`); for `lo = -1` the
//!   job's initial activation is used. The contract runs `workload::step(job, hi, previous)`
//!   once: the provider wins iff its leaf at `hi` is `leaf_hash(hi, result)`.
//! - A party that misses the deadline of a round (or of the resolution phase) loses. If both
//!   miss, the provider loses: its committed result is the claim under test.

use attest_protocol::tx::{DisputeMove, DisputeStep};
use attest_protocol::workload::{self, leaf_hash};
use attest_protocol::{AccountId, Hash, Height, JobId, Round};

use crate::error::TxError;
use crate::events::{DisputeEnd, Event, JailReason, RefundReason, SlashReason};
use crate::state::{Committed, Ctx, Dispute, Job, JobPhase, Side, StakeStatus, State};

/// `ceil(log2 steps)`: the rounds of a dispute over `steps` leaves. `None` for no steps.
pub fn rounds_for(steps: u64) -> Option<u32> {
    match steps {
        0 => None,
        1 => Some(0),
        n => Some(64 - (n - 1).leading_zeros()),
    }
}

/// The virtual midpoint of the current round (see the module docs).
pub fn round_mid(d: &Dispute) -> Option<u64> {
    let base = d.lo.map_or(Some(0), |l| l.checked_add(1))?;
    let exp = d.rounds.checked_sub(d.round.checked_add(1)?)?;
    let half = 1u64.checked_shl(exp)?;
    base.checked_add(half - 1)
}

/// The step index both parties must open in the current round (in the resolution phase: the
/// divergent step `lo + 1`).
pub fn round_index(d: &Dispute, steps: u64) -> Option<u64> {
    if d.round < d.rounds {
        Some(round_mid(d)?.min(steps.checked_sub(1)?))
    } else {
        d.lo.map_or(Some(0), |l| l.checked_add(1))
    }
}

/// Where a move left the dispute.
enum Progress {
    /// More moves are needed.
    Waiting,
    /// Decided.
    Resolved { winner: Side, end: DisputeEnd },
    /// Neither party can be proven wrong.
    Void { step: u64 },
}

impl State {
    /// Rule "disagree opens a dispute" (called from the verdict rule).
    pub(crate) fn open_dispute(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        challenger: AccountId,
        challenger_root: Hash,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut job = self.job_or_err(id)?;
        let JobPhase::Committed { result, .. } = job.phase.clone() else {
            return Err(TxError::WrongPhase {
                job: id,
                expected: "committed",
                actual: job.phase.name(),
            });
        };
        let rounds = rounds_for(job.step_count).ok_or(TxError::Overflow {
            what: "the dispute rounds",
        })?;
        let deadline = self.round_deadline(ctx)?;
        let dispute = Dispute {
            challenger,
            challenger_root,
            rounds,
            round: 0,
            lo: None,
            agreed_leaf: None,
            hi_leaves: None,
            provider_leaf: None,
            challenger_leaf: None,
            witness: None,
            deadline,
        };
        events.push(Event::DisputeOpened {
            job: id,
            provider: job.provider,
            challenger,
            challenger_root,
            step_count: job.step_count,
            rounds,
            deadline,
        });
        job.phase = JobPhase::Disputed {
            result,
            dispute: Box::new(dispute),
        };
        self.put_job(id, job);
        Ok(())
    }

    fn round_deadline(&self, ctx: &Ctx) -> Result<Height, TxError> {
        ctx.height
            .0
            .checked_add(self.params.dispute_round_blocks)
            .map(Height)
            .ok_or(TxError::Overflow { what: "a deadline" })
    }

    /// Rule "dispute move": a party's opening or witness for the current round, before the
    /// round's deadline. The move that completes a round advances the game; the move that
    /// completes the resolution phase decides it.
    pub(crate) fn dispute_move(
        &mut self,
        ctx: &Ctx,
        signer: AccountId,
        mv: &DisputeMove,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut job = self.job_or_err(mv.job)?;
        let JobPhase::Disputed { result, dispute } = &job.phase else {
            return Err(TxError::WrongPhase {
                job: mv.job,
                expected: "disputed",
                actual: job.phase.name(),
            });
        };
        let (result, mut d) = (result.clone(), (**dispute).clone());
        let side = if signer == job.provider {
            Side::Provider
        } else if signer == d.challenger {
            Side::Challenger
        } else {
            return Err(TxError::NotDisputeParty {
                job: mv.job,
                signer,
            });
        };
        if ctx.height > d.deadline {
            return Err(TxError::DeadlinePassed {
                job: mv.job,
                deadline: d.deadline,
                height: ctx.height,
            });
        }
        if mv.round.0 != d.round {
            return Err(TxError::WrongRound {
                job: mv.job,
                expected: Round(d.round),
                got: mv.round,
            });
        }
        let mv_ctx = MoveCtx {
            id: mv.job,
            job: &job,
            result: &result,
            side,
            signer,
        };
        let progress = if d.round < d.rounds {
            self.bisection_move(ctx, &mv_ctx, &mut d, &mv.step, events)?
        } else {
            resolution_move(&mv_ctx, &mut d, &mv.step)?
        };
        job.phase = JobPhase::Disputed {
            result,
            dispute: Box::new(d),
        };
        self.put_job(mv.job, job);
        self.conclude(ctx, mv.job, progress, events)
    }

    /// Rule "bisection round": an opening at the round's index, proven against the mover's
    /// own root, once per party per round.
    fn bisection_move(
        &self,
        ctx: &Ctx,
        m: &MoveCtx<'_>,
        d: &mut Dispute,
        step: &DisputeStep,
        events: &mut Vec<Event>,
    ) -> Result<Progress, TxError> {
        let DisputeStep::Open { index, leaf, proof } = step else {
            return Err(TxError::UnexpectedMove {
                job: m.id,
                reason: "a witness is supplied only after the last bisection round",
            });
        };
        let overflow = TxError::Overflow {
            what: "a dispute index",
        };
        let mid = round_mid(d).ok_or(overflow.clone())?;
        let expected = round_index(d, m.job.step_count).ok_or(overflow)?;
        open_leaf(m, d, expected, *index, leaf, proof)?;
        let (Some(p), Some(c)) = (d.provider_leaf, d.challenger_leaf) else {
            return Ok(Progress::Waiting);
        };
        let agreed = p == c;
        if agreed {
            d.lo = Some(mid);
            d.agreed_leaf = Some(p);
        } else {
            d.hi_leaves = Some((p, c));
        }
        events.push(Event::DisputeRound {
            job: m.id,
            round: Round(d.round),
            index: expected,
            agreed,
        });
        d.round += 1;
        d.provider_leaf = None;
        d.challenger_leaf = None;
        d.deadline = self.round_deadline(ctx)?;
        try_resolve(m.job, d)
    }

    /// Applies a decided or void dispute.
    fn conclude(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        progress: Progress,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        match progress {
            Progress::Waiting => Ok(()),
            Progress::Resolved { winner, end } => self.finish_dispute(ctx, id, winner, end, events),
            Progress::Void { step } => {
                events.push(Event::DisputeVoid { job: id, step });
                self.refund(id, RefundReason::DisputeVoid, events)
            }
        }
    }

    /// Rule "dispute outcome": the loser is slashed (a share to the winner). A losing
    /// provider refunds the client in full and goes on probation, or is banned on its second
    /// loss; a losing challenger (a false accusation) lets the job settle, without its fee.
    fn finish_dispute(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        winner: Side,
        end: DisputeEnd,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let job = self.job_or_err(id)?;
        let JobPhase::Disputed { dispute, .. } = &job.phase else {
            return Ok(());
        };
        let (w, l) = match winner {
            Side::Provider => (job.provider, dispute.challenger),
            Side::Challenger => (dispute.challenger, job.provider),
        };
        events.push(Event::DisputeResolved {
            job: id,
            winner: w,
            loser: l,
            end,
        });
        let reason = SlashReason::DisputeLost { job: id };
        self.record_fault(id, l, reason.clone())?;
        self.slash_fraction(ctx, l, reason, Some(w), events)?;
        match winner {
            Side::Provider => self.settle(id, None, events),
            Side::Challenger => {
                self.provider_lost(l, events);
                self.refund(id, RefundReason::ProviderLost, events)
            }
        }
    }

    /// Rule "probation and ban": a first loss puts the provider on probation for `K` jobs, a
    /// second bans it for good.
    fn provider_lost(&mut self, provider: AccountId, events: &mut Vec<Event>) {
        let Some(mut entry) = self.stakes.get(&provider).cloned() else {
            return;
        };
        entry.disputes_lost = entry.disputes_lost.saturating_add(1);
        if entry.disputes_lost >= 2 {
            entry.status = StakeStatus::Banned;
            events.push(Event::Jailed {
                who: provider,
                reason: JailReason::SecondLostDispute,
            });
        } else {
            entry.probation_left = self.params.probation_jobs;
            events.push(Event::ProbationStarted {
                who: provider,
                jobs: self.params.probation_jobs,
            });
        }
        self.put_stake(provider, entry);
    }

    /// Rule "missed dispute round": at the end of the deadline block, a party that has not
    /// made its move loses (the provider first if both missed).
    pub(crate) fn missed_dispute_round(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let job = self.job_or_err(id)?;
        let JobPhase::Disputed { dispute: d, .. } = &job.phase else {
            return Ok(());
        };
        let (provider_missing, challenger_missing) = if d.round < d.rounds {
            (d.provider_leaf.is_none(), d.challenger_leaf.is_none())
        } else {
            let needs_open = d.hi_leaves.is_none();
            let needs_witness = d.lo.is_some() && d.witness.is_none();
            (
                needs_open && d.provider_leaf.is_none(),
                (needs_open && d.challenger_leaf.is_none()) || needs_witness,
            )
        };
        let end = DisputeEnd::MissedRound {
            round: Round(d.round),
        };
        let progress = if provider_missing {
            Progress::Resolved {
                winner: Side::Challenger,
                end,
            }
        } else if challenger_missing {
            Progress::Resolved {
                winner: Side::Provider,
                end,
            }
        } else {
            // Every move was in, so the last one resolved the dispute; unreachable, but a
            // void outcome slashes nobody if it ever were reached.
            Progress::Void {
                step: round_index(d, job.step_count).unwrap_or(0),
            }
        };
        self.conclude(ctx, id, progress, events)
    }
}

/// What every move handler needs to know about the move.
struct MoveCtx<'a> {
    id: JobId,
    job: &'a Job,
    result: &'a Committed,
    side: Side,
    signer: AccountId,
}

/// Checks an opening (index, proof against the mover's root, first move of the mover this
/// round) and records it.
fn open_leaf(
    m: &MoveCtx<'_>,
    d: &mut Dispute,
    expected: u64,
    index: u64,
    leaf: &Hash,
    proof: &attest_protocol::MerkleProof,
) -> Result<(), TxError> {
    if index != expected {
        return Err(TxError::WrongIndex {
            job: m.id,
            expected,
            got: index,
        });
    }
    let root = match m.side {
        Side::Provider => m.result.trace_root,
        Side::Challenger => d.challenger_root,
    };
    if !proof.verify(&root, m.job.step_count, index, leaf) {
        return Err(TxError::BadProof { job: m.id, index });
    }
    let slot = match m.side {
        Side::Provider => &mut d.provider_leaf,
        Side::Challenger => &mut d.challenger_leaf,
    };
    if slot.is_some() {
        return Err(TxError::AlreadyMoved {
            job: m.id,
            who: m.signer,
            round: Round(d.round),
        });
    }
    *slot = Some(*leaf);
    Ok(())
}

/// Rule "resolution phase": the challenger's witness for `lo`, and both parties' openings of
/// the divergent step when no round opened it.
fn resolution_move(
    m: &MoveCtx<'_>,
    d: &mut Dispute,
    step: &DisputeStep,
) -> Result<Progress, TxError> {
    let unexpected = |reason| TxError::UnexpectedMove { job: m.id, reason };
    let hi = round_index(d, m.job.step_count).ok_or(TxError::Overflow {
        what: "a dispute index",
    })?;
    match step {
        DisputeStep::Witness { activation } => {
            if m.side != Side::Challenger {
                return Err(unexpected("only the challenger supplies the witness"));
            }
            let (Some(lo), Some(agreed)) = (d.lo, d.agreed_leaf) else {
                return Err(unexpected("step 0 needs no witness"));
            };
            if d.witness.is_some() {
                return Err(TxError::AlreadyMoved {
                    job: m.id,
                    who: m.signer,
                    round: Round(d.round),
                });
            }
            if leaf_hash(lo, activation) != agreed {
                return Err(TxError::WitnessMismatch {
                    job: m.id,
                    index: lo,
                });
            }
            // A witness the referee cannot run (wrong width) is refused now, so that the
            // resolution below cannot fail on it.
            let wjob = workload_job(m.job)?;
            workload::step(&wjob, hi, activation)?;
            d.witness = Some(activation.to_vec());
        }
        DisputeStep::Open { index, leaf, proof } => {
            if d.hi_leaves.is_some() {
                return Err(unexpected("the divergent step was opened in the bisection"));
            }
            open_leaf(m, d, hi, *index, leaf, proof)?;
        }
    }
    try_resolve(m.job, d)
}

/// The workload job a ledger job describes.
fn workload_job(job: &Job) -> Result<workload::Job<'_>, TxError> {
    Ok(workload::Job::new(
        job.model.as_str(),
        &job.input,
        job.max_tokens,
    )?)
}

/// Decides the dispute if the bisection is over and every needed move is in.
fn try_resolve(job: &Job, d: &Dispute) -> Result<Progress, TxError> {
    if d.round < d.rounds {
        return Ok(Progress::Waiting);
    }
    let last = job.step_count.saturating_sub(1);
    if d.lo.is_some_and(|l| l >= last) {
        return Ok(Progress::Void { step: last });
    }
    let hi = d.lo.map_or(0, |l| l + 1);
    let (p, c) = match (d.hi_leaves, d.provider_leaf, d.challenger_leaf) {
        (Some(leaves), _, _) => leaves,
        (None, Some(p), Some(c)) => (p, c),
        _ => return Ok(Progress::Waiting),
    };
    if p == c {
        return Ok(Progress::Void { step: hi });
    }
    let wjob = workload_job(job)?;
    let previous = match (d.lo, &d.witness) {
        (None, _) => wjob.initial_activation(),
        (Some(_), Some(w)) => w.clone(),
        (Some(_), None) => return Ok(Progress::Waiting),
    };
    let activation = workload::step(&wjob, hi, &previous)?;
    let winner = if p == leaf_hash(hi, &activation) {
        Side::Provider
    } else {
        Side::Challenger
    };
    Ok(Progress::Resolved {
        winner,
        end: DisputeEnd::Reexecuted { step: hi },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_ceil_log2() {
        let cases = [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (22, 5),
            (32, 5),
            (33, 6),
        ];
        for (steps, rounds) in cases {
            assert_eq!(rounds_for(steps), Some(rounds), "steps {steps}");
        }
        assert_eq!(rounds_for(0), None);
        assert_eq!(rounds_for(u64::MAX), Some(64));
    }
}
