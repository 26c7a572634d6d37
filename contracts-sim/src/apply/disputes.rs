//! Rule "disputes": the bisection game over a trace and its one-step referee.
//!
//! # What is disputed
//!
//! An activation ends with the output accumulator, so the last leaf of a trace commits to its
//! output. The provider's result opened its last leaf (`leaf_hash(L - 1, final_activation)`,
//! proven against its root, the accumulator equal to the output hash), and a disagreeing
//! checker showed its own last leaf, proven against its own root and different from the
//! provider's (see [`crate::apply::jobs`] and [`crate::apply::checks`]). Every dispute is
//! therefore between an agreed start, the initial activation (index -1, all zeros), and a
//! disagreed end, leaf `L - 1`, whose two versions are known from the commit and the verdict.
//! Between them lies a step whose previous leaf is agreed and whose own leaf is not, and one
//! step of re-execution there says who is wrong. There is no void outcome.
//!
//! # The game
//!
//! A trace has `L` steps (leaves `0..L`). The game takes exactly `R = ceil(log2 L)` bisection
//! rounds, then a resolution phase (round number `R`). It bisects a virtual range of `2^R`
//! indices `-1..2^R - 1`, where index `-1` is the initial activation and the virtual indices
//! from `L - 1` up all stand for leaf `L - 1`. Padding to a power of two is what makes every
//! dispute take exactly `R` rounds whatever the answers.
//!
//! The state is `lo` (the highest agreed virtual index, initially -1, with the leaf agreed
//! there), the round `r`, and the two leaves at the disagreed end, which is implied:
//! `hi = lo + 2^(R - r)` (initially `2^R - 1`, standing for `L - 1`, with the two last leaves).
//! In round `r` both parties open the leaf at `min(mid, L - 1)` with
//! `mid = lo + 2^(R - 1 - r)`, each with a Merkle proof against its own committed root
//! (`MerkleProof::verify(root, L, index, leaf)`). Equal leaves set `lo = mid`; different
//! leaves set `hi = mid` (and remember both leaves). A proof binds one leaf per root and
//! index, so an opening of leaf `L - 1` repeats the last leaf already proven and is a
//! disagreement: `lo` stays below `L - 1`. After round `R - 1`, `hi = lo + 1 <= L - 1` is a
//! real step, and both parties' leaves at `hi` are known (opened in a round, or the last
//! leaves when `hi = L - 1` was never opened).
//!
//! # Resolution
//!
//! The referee runs `workload::step(job, hi, previous)` once, from the activation of step
//! `lo`:
//!
//! - If `lo = -1`, that is the job's initial activation, and the move that completes the last
//!   bisection round decides the dispute (with `R = 0`, a one-step trace, the verdict that
//!   opens it does).
//! - If `lo >= 0`, the challenger supplies it in the resolution phase: `activation_len()`
//!   bytes whose `leaf_hash(lo, activation)` is the agreed leaf at `lo`. The witness decides
//!   the dispute.
//!
//! The provider wins iff its leaf at `hi` is `leaf_hash(hi, result)`; otherwise it loses, as
//! its committed result is the claim under test. (When the provider's leaf is wrong the
//! challenger wins even if its own is wrong too.)
//!
//! # Deadlines
//!
//! Every round, and the resolution phase, lasts `dispute_round_ms` of block time from the
//! block that started it. A party that has not made its move when a block's time reaches the
//! deadline loses at the end of that block: in a bisection round the provider if it has not
//! opened (so the provider if both missed), otherwise the challenger; in the resolution phase
//! only the challenger's witness is awaited, so the challenger.
//!
//! # Outcome
//!
//! A losing provider is slashed `slash_fraction_ppm` of its stake, `winner_share_ppm` of that
//! (at least 20%) to the challenger, refunds the client in full and goes on probation (banned
//! on a second loss); a challenger that wins gets its bond back. A losing assigned checker is
//! slashed the same way; a losing challenger (not the assigned checker) forfeits its bond
//! instead, the winner's share to the provider. Either way a job the provider won settles
//! without a checker fee.

use attest_protocol::tx::{DisputeMove, DisputeStep};
use attest_protocol::workload::{self, leaf_hash};
use attest_protocol::{AccountId, Amount, Hash, JobId, MerkleProof, Round};

use crate::apply::checks::Challenge;
use crate::error::TxError;
use crate::events::{DisputeEnd, Event, JailReason, RefundReason, SlashReason};
use crate::params::ppm_ceil;
use crate::state::{Committed, Ctx, Dispute, Job, JobPhase, Review, Side, StakeStatus, State};

pub use crate::params::rounds_for;

/// The virtual midpoint of the current round (see the module docs).
pub fn round_mid(d: &Dispute) -> Option<u64> {
    let base = d.lo.map_or(Some(0), |l| l.checked_add(1))?;
    let exp = d.rounds.checked_sub(d.round.checked_add(1)?)?;
    let half = 1u64.checked_shl(exp)?;
    base.checked_add(half - 1)
}

/// The step index both parties must open in the current round (in the resolution phase: the
/// divergent step `lo + 1`, which the referee runs).
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
}

impl State {
    /// Rule "disagree opens a dispute" (called from the verdict rule, which checked the
    /// challenger's last leaf and took its bond): the game starts between the initial
    /// activation and the two last leaves.
    pub(crate) fn open_dispute(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        challenge: Challenge,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let Challenge {
            challenger,
            assigned,
            bond,
            root: challenger_root,
            final_leaf: challenger_final_leaf,
        } = challenge;
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
        let deadline_ms = self.round_deadline(ctx)?;
        let dispute = Dispute {
            challenger,
            bond,
            challenger_root,
            rounds,
            round: 0,
            lo: None,
            agreed_leaf: None,
            hi_leaves: (result.final_leaf, challenger_final_leaf),
            provider_leaf: None,
            challenger_leaf: None,
            deadline_ms,
        };
        events.push(Event::DisputeOpened {
            job: id,
            provider: job.provider,
            challenger,
            bond,
            challenger_root,
            challenger_final_leaf,
            step_count: job.step_count,
            rounds,
            deadline_ms,
        });
        // A one-step trace has no round to play: the referee decides at once.
        let progress = try_resolve(&job, &dispute)?;
        job.review = Review::Disputed {
            challenger,
            assigned,
        };
        job.phase = JobPhase::Disputed {
            result,
            dispute: Box::new(dispute),
        };
        self.put_job(id, job);
        self.conclude(id, progress, events)
    }

    /// `time_ms + dispute_round_ms`: the end of a round that starts in this block.
    fn round_deadline(&self, ctx: &Ctx) -> Result<u64, TxError> {
        ctx.time_ms
            .checked_add(self.params.dispute_round_ms)
            .ok_or(TxError::Overflow { what: "a deadline" })
    }

    /// Rule "dispute move": a party's opening for the current round, or the challenger's
    /// witness in the resolution phase, before the deadline. The move that completes a round
    /// advances the game; the move that completes the last round with `lo = -1`, or the
    /// witness, decides it.
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
        if ctx.time_ms > d.deadline_ms {
            return Err(TxError::DeadlinePassed {
                job: mv.job,
                deadline_ms: d.deadline_ms,
                time_ms: ctx.time_ms,
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
            resolution_move(&mv_ctx, &d, &mv.step)?
        };
        job.phase = JobPhase::Disputed {
            result,
            dispute: Box::new(d),
        };
        self.put_job(mv.job, job);
        self.conclude(mv.job, progress, events)
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
            d.hi_leaves = (p, c);
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
        d.deadline_ms = self.round_deadline(ctx)?;
        try_resolve(m.job, d)
    }

    /// Applies a decided dispute.
    fn conclude(
        &mut self,
        id: JobId,
        progress: Progress,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        match progress {
            Progress::Waiting => Ok(()),
            Progress::Resolved { winner, end } => self.finish_dispute(id, winner, end, events),
        }
    }

    /// Rule "dispute outcome": the loser pays. A losing provider is slashed (a share to the
    /// winner), refunds the client in full and goes on probation, or is banned on its second
    /// loss; a winning challenger also gets its bond back. A losing assigned checker (a false
    /// accusation) is slashed the same way; a losing challenger forfeits its bond instead (the
    /// winner's share to the provider, the rest to the treasury); either way the job settles,
    /// without a checker fee.
    fn finish_dispute(
        &mut self,
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
        self.update_record(w, |r| r.disputes_won = r.disputes_won.saturating_add(1));
        self.update_record(l, |r| r.disputes_lost = r.disputes_lost.saturating_add(1));
        let bond = dispute.bond;
        let reason = SlashReason::DisputeLost { job: id };
        match winner {
            Side::Provider if bond.0 > 0 => {
                self.forfeit_bond(id, l, bond, w, events)?;
                self.settle(id, None, events)
            }
            Side::Provider => {
                self.record_fault(id, l, reason.clone())?;
                self.slash_fraction(l, reason, Some(w), events)?;
                self.settle(id, None, events)
            }
            Side::Challenger => {
                self.record_fault(id, l, reason.clone())?;
                self.slash_fraction(l, reason, Some(w), events)?;
                if bond.0 > 0 {
                    self.credit(w, bond)?;
                    events.push(Event::BondReturned {
                        job: id,
                        who: w,
                        amount: bond,
                    });
                }
                self.provider_lost(l, events);
                self.refund(id, RefundReason::ProviderLost, events)
            }
        }
    }

    /// A losing challenger's bond: `winner_share` of it (rounded up) to the provider, the
    /// rest to the treasury.
    fn forfeit_bond(
        &mut self,
        id: JobId,
        who: AccountId,
        bond: Amount,
        provider: AccountId,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let share = ppm_ceil(bond, self.params.winner_share_ppm);
        let to_treasury = Amount(bond.0 - share.0);
        self.credit(provider, share)?;
        self.earn(provider, share);
        self.credit_treasury(to_treasury)?;
        events.push(Event::BondForfeited {
            job: id,
            who,
            amount: bond,
            to_winner: (provider, share),
            to_treasury,
        });
        Ok(())
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
    /// made its move loses. In a bisection round that is the provider if it has not opened
    /// (the provider first if both missed), otherwise the challenger: the move that completes
    /// a round advances it, so a round still waiting lacks at least one opening. In the
    /// resolution phase only the challenger's witness is awaited.
    pub(crate) fn missed_dispute_round(
        &mut self,
        id: JobId,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let job = self.job_or_err(id)?;
        let JobPhase::Disputed { dispute: d, .. } = &job.phase else {
            return Ok(());
        };
        let provider_missing = d.round < d.rounds && d.provider_leaf.is_none();
        let winner = if provider_missing {
            Side::Challenger
        } else {
            Side::Provider
        };
        let end = DisputeEnd::MissedRound {
            round: Round(d.round),
        };
        self.finish_dispute(id, winner, end, events)
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
    proof: &MerkleProof,
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

/// Rule "resolution phase": the challenger's witness, the activation of step `lo`, which must
/// be as wide as the job's activations and hash to the agreed leaf. It decides the dispute.
fn resolution_move(m: &MoveCtx<'_>, d: &Dispute, step: &DisputeStep) -> Result<Progress, TxError> {
    let unexpected = |reason| TxError::UnexpectedMove { job: m.id, reason };
    let DisputeStep::Witness { activation } = step else {
        return Err(unexpected(
            "the bisection is over: only the challenger's witness is awaited",
        ));
    };
    if m.side != Side::Challenger {
        return Err(unexpected("only the challenger supplies the witness"));
    }
    let (Some(lo), Some(agreed)) = (d.lo, d.agreed_leaf) else {
        // With lo = -1 the last bisection move decided the dispute; only a guard.
        return Err(unexpected("step 0 needs no witness"));
    };
    let wjob = m.job.workload()?;
    let expected = wjob.activation_len();
    if activation.len() != expected {
        return Err(TxError::WitnessWidth {
            job: m.id,
            expected,
            got: activation.len(),
        });
    }
    if leaf_hash(lo, activation) != agreed {
        return Err(TxError::WitnessMismatch {
            job: m.id,
            index: lo,
        });
    }
    referee(m.job, &wjob, d, activation)
}

/// Decides a dispute whose bisection is over with `lo = -1`: the referee starts from the
/// job's initial activation, so no witness is needed. Anything else is still waiting.
fn try_resolve(job: &Job, d: &Dispute) -> Result<Progress, TxError> {
    if d.round < d.rounds || d.lo.is_some() {
        return Ok(Progress::Waiting);
    }
    let wjob = job.workload()?;
    referee(job, &wjob, d, &wjob.initial_activation())
}

/// Rule "one-step referee": runs step `hi = lo + 1` once from `previous` (the activation of
/// step `lo`); the provider wins iff its leaf at `hi` is the leaf of the result.
fn referee(
    job: &Job,
    wjob: &workload::Job<'_>,
    d: &Dispute,
    previous: &[u8],
) -> Result<Progress, TxError> {
    let hi = round_index(d, job.step_count).ok_or(TxError::Overflow {
        what: "a dispute index",
    })?;
    let activation = workload::step(wjob, hi, previous)?;
    let winner = if d.hi_leaves.0 == leaf_hash(hi, &activation) {
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
