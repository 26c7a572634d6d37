//! Rule "spot-checks": the draw at commit, verdicts, and checkers that miss their window.

use attest_protocol::tx::{Verdict, VerdictOutcome};
use attest_protocol::{AccountId, Amount, Hash, Height, JobId};

use crate::draw::{draw_value, is_selected, pick_weighted};
use crate::error::TxError;
use crate::events::{Event, SlashReason};
use crate::state::{Check, Committed, Ctx, Job, JobPhase, State};

impl State {
    /// Rule "spot-check draw": a provider on probation is always checked (and uses up one
    /// probation job when a checker is found); otherwise the seed decides at rate `p`. A
    /// selected job with no eligible checker settles unchecked. Returns whether the job was
    /// selected, its check state, and the event that follows `ResultCommitted`.
    pub(crate) fn draw_check(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        job: &Job,
        result: &Committed,
    ) -> Result<(bool, Check, Option<Event>), TxError> {
        let window_end = self.window_end(ctx.height)?;
        let probation = self
            .stakes
            .get(&job.provider)
            .is_some_and(|s| s.probation_left > 0);
        let selected = probation || is_selected(&result.seed, self.params.check_probability_ppm);
        let unchecked = Check::Unchecked {
            settle_at: window_end,
        };
        if !selected {
            return Ok((false, unchecked, None));
        }
        let Some(checker) = self.pick_checker(&result.seed, 0, job, &[]) else {
            return Ok((true, unchecked, Some(Event::NoCheckerAvailable { job: id })));
        };
        if probation && let Some(mut entry) = self.stakes.get(&job.provider).cloned() {
            entry.probation_left -= 1;
            self.put_stake(job.provider, entry);
        }
        let check = Check::Pending {
            checker,
            deadline: window_end,
            redraws: 0,
            failed: Vec::new(),
        };
        let event = Event::CheckAssigned {
            job: id,
            checker,
            deadline: window_end,
        };
        Ok((true, check, Some(event)))
    }

    /// `height + W`.
    fn window_end(&self, height: Height) -> Result<Height, TxError> {
        height
            .0
            .checked_add(self.params.verdict_window_blocks)
            .map(Height)
            .ok_or(TxError::Overflow { what: "a window" })
    }

    /// Draw `k` among the eligible checkers of `job` (see [`crate::draw`]).
    fn pick_checker(
        &self,
        seed: &Hash,
        k: u32,
        job: &Job,
        failed: &[AccountId],
    ) -> Option<AccountId> {
        let candidates: Vec<(AccountId, Amount)> = self
            .stakes
            .iter()
            .filter(|(who, s)| {
                s.eligible(self.params.min_stake)
                    && **who != job.provider
                    && **who != job.client
                    && !failed.contains(who)
            })
            .map(|(who, s)| (*who, s.bonded))
            .collect();
        pick_weighted(&candidates, draw_value(seed, k))
    }

    /// Rule "verdict": only the assigned checker, within its window. `Agree` settles the job
    /// at once and pays the checker. `Disagree` shows the checker's own last leaf, proven
    /// against its own trace root: the root must differ from the provider's and the leaf from
    /// the provider's last leaf (a checker that reached the same last state reached the same
    /// output, and must agree). It opens a dispute between the agreed start and those two
    /// different last leaves.
    pub(crate) fn verdict(
        &mut self,
        ctx: &Ctx,
        signer: AccountId,
        v: &Verdict,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let job = self.job_or_err(v.job)?;
        let JobPhase::Committed {
            result,
            check: Check::Pending {
                checker, deadline, ..
            },
        } = &job.phase
        else {
            return Err(TxError::WrongPhase {
                job: v.job,
                expected: "awaiting a verdict",
                actual: job.phase.name(),
            });
        };
        if signer != *checker {
            return Err(TxError::NotChecker { job: v.job, signer });
        }
        if ctx.height > *deadline {
            return Err(TxError::DeadlinePassed {
                job: v.job,
                deadline: *deadline,
                height: ctx.height,
            });
        }
        match &v.outcome {
            VerdictOutcome::Agree => {
                events.push(Event::VerdictPosted {
                    job: v.job,
                    checker: signer,
                    agree: true,
                });
                self.settle(v.job, Some(signer), events)
            }
            VerdictOutcome::Disagree {
                trace_root,
                final_leaf,
                final_proof,
            } => {
                if *trace_root == result.trace_root {
                    return Err(TxError::DisagreeWithSameRoot { job: v.job });
                }
                let last = job.last_step();
                if !final_proof.verify(trace_root, job.step_count, last, final_leaf) {
                    return Err(TxError::BadFinalProof {
                        job: v.job,
                        index: last,
                    });
                }
                if *final_leaf == result.final_leaf {
                    return Err(TxError::DisagreementWithoutDifference { job: v.job });
                }
                events.push(Event::VerdictPosted {
                    job: v.job,
                    checker: signer,
                    agree: false,
                });
                self.open_dispute(ctx, v.job, signer, *trace_root, *final_leaf, events)
            }
        }
    }

    /// Rule "missed verdict": the checker is penalized and, up to `max_checker_redraws`
    /// times, replaced by the next draw from the same seed (never a checker that already
    /// failed this job); after that, or with nobody left to draw, the job settles unchecked.
    pub(crate) fn missed_verdict(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut job = self.job_or_err(id)?;
        let JobPhase::Committed {
            result,
            check:
                Check::Pending {
                    checker,
                    redraws,
                    mut failed,
                    ..
                },
        } = job.phase.clone()
        else {
            return Ok(());
        };
        events.push(Event::VerdictMissed { job: id, checker });
        let reason = SlashReason::MissedVerdict { job: id };
        self.record_fault(id, checker, reason.clone())?;
        self.penalize(checker, reason, events)?;
        failed.push(checker);
        let next = redraws + 1;
        let replacement = (redraws < self.params.max_checker_redraws)
            .then(|| self.pick_checker(&result.seed, next, &job, &failed))
            .flatten();
        let Some(new_checker) = replacement else {
            return self.settle(id, None, events);
        };
        let deadline = self.window_end(ctx.height)?;
        // Re-read the job: recording the fault changed it.
        job = self.job_or_err(id)?;
        job.phase = JobPhase::Committed {
            result,
            check: Check::Pending {
                checker: new_checker,
                deadline,
                redraws: next,
                failed,
            },
        };
        self.put_job(id, job);
        events.push(Event::CheckAssigned {
            job: id,
            checker: new_checker,
            deadline,
        });
        Ok(())
    }
}
