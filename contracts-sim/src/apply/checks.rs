//! Rule "spot-checks": the draw at commit, verdicts and challenges, and checkers that miss
//! their window.

use attest_protocol::tx::{CheckLevel, Verdict, VerdictOutcome};
use attest_protocol::{AccountId, Amount, Hash, JobId};

use crate::draw::{draw_value, is_selected, pick_weighted};
use crate::error::TxError;
use crate::events::{Event, SlashReason};
use crate::state::{Check, Committed, Ctx, Job, JobPhase, Review, State};

impl State {
    /// Rule "spot-check draw": a job whose client bought `Always`, or whose provider is on
    /// probation, is always selected (a provider on probation uses up one probation job when
    /// a checker is found); otherwise the seed decides at rate `p`. A selected job with no
    /// eligible checker settles unchecked. Returns whether the job was selected, its check
    /// state, and the event that follows `ResultCommitted`.
    pub(crate) fn draw_check(
        &mut self,
        ctx: &Ctx,
        id: JobId,
        job: &Job,
        result: &Committed,
    ) -> Result<(bool, Check, Option<Event>), TxError> {
        let window_end = self.window_end(ctx.time_ms)?;
        let probation = self
            .stakes
            .get(&job.provider)
            .is_some_and(|s| s.probation_left > 0);
        let selected = probation
            || job.check == CheckLevel::Always
            || is_selected(&result.seed, self.params.check_probability_ppm);
        let unchecked = Check::Unchecked {
            settle_at_ms: window_end,
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
            deadline_ms: window_end,
            redraws: 0,
            failed: Vec::new(),
        };
        let event = Event::CheckAssigned {
            job: id,
            checker,
            deadline_ms: window_end,
        };
        Ok((true, check, Some(event)))
    }

    /// `time_ms + W`.
    fn window_end(&self, time_ms: u64) -> Result<u64, TxError> {
        time_ms
            .checked_add(self.params.verdict_window_ms)
            .ok_or(TxError::Overflow { what: "a window" })
    }

    /// Draw `k` among the eligible checkers of `job`: staked accounts that can serve its
    /// model (see [`crate::draw`]).
    fn pick_checker(
        &self,
        seed: &Hash,
        k: u32,
        job: &Job,
        failed: &[AccountId],
    ) -> Option<AccountId> {
        let model = job.model.as_str();
        let candidates: Vec<(AccountId, Amount)> = self
            .stakes
            .iter()
            .filter(|(who, s)| {
                s.can_serve(self.params.min_stake, model)
                    && **who != job.provider
                    && **who != job.client
                    && !failed.contains(who)
            })
            .map(|(who, s)| (*who, s.bonded))
            .collect();
        pick_weighted(&candidates, draw_value(seed, k))
    }

    /// Rule "verdict": a committed result, in a block no later than the end of its verdict
    /// window (the assigned checker's deadline, or the unchecked result's settlement time).
    ///
    /// From the assigned checker: `Agree` settles the job at once and pays the checker;
    /// `Disagree` opens a dispute. From anyone else it is a challenge: only `Disagree`, only
    /// from an account that may challenge (see [`State::may_challenge`]), and it locks the
    /// chain's `challenge_bond` from the challenger's balance in the dispute.
    ///
    /// A `Disagree` shows the disagreeing party's own last leaf, proven against its own trace
    /// root: the root must differ from the provider's and the leaf from the provider's last
    /// leaf (a re-execution that reached the same last state reached the same output). It
    /// opens a dispute between the agreed start and those two different last leaves.
    pub(crate) fn verdict(
        &mut self,
        ctx: &Ctx,
        signer: AccountId,
        v: &Verdict,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let job = self.job_or_err(v.job)?;
        let JobPhase::Committed { result, check } = &job.phase else {
            return Err(TxError::WrongPhase {
                job: v.job,
                expected: "committed and in its verdict window",
                actual: job.phase.name(),
            });
        };
        let (window_end, assigned) = match check {
            Check::Unchecked { settle_at_ms } => (*settle_at_ms, false),
            Check::Pending {
                checker,
                deadline_ms,
                ..
            } => (*deadline_ms, *checker == signer),
        };
        if ctx.time_ms > window_end {
            return Err(TxError::DeadlinePassed {
                job: v.job,
                deadline_ms: window_end,
                time_ms: ctx.time_ms,
            });
        }
        if !assigned {
            if v.outcome == VerdictOutcome::Agree {
                return Err(TxError::NotChecker { job: v.job, signer });
            }
            self.may_challenge(v.job, &job, signer)?;
        }
        match &v.outcome {
            VerdictOutcome::Agree => {
                self.count_check(signer);
                events.push(Event::VerdictPosted {
                    job: v.job,
                    checker: signer,
                    agree: true,
                });
                let mut reviewed = job.clone();
                reviewed.review = Review::Agreed { checker: signer };
                self.put_job(v.job, reviewed);
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
                let bond = if assigned {
                    Amount::ZERO
                } else {
                    self.params.challenge_bond
                };
                if bond.0 > 0 {
                    self.debit(signer, bond)?;
                }
                if assigned {
                    self.count_check(signer);
                    events.push(Event::VerdictPosted {
                        job: v.job,
                        checker: signer,
                        agree: false,
                    });
                }
                let challenge = Challenge {
                    challenger: signer,
                    assigned,
                    bond,
                    root: *trace_root,
                    final_leaf: *final_leaf,
                };
                self.open_dispute(ctx, v.job, challenge, events)
            }
        }
    }

    /// Counts a verdict its drawn checker posted in the checker's record.
    fn count_check(&mut self, checker: AccountId) {
        self.update_record(checker, |r| r.checks = r.checks.saturating_add(1));
    }

    /// Rule "who may challenge": not the job's provider; its client, or any staked account
    /// that is active with at least `min_stake` bonded.
    pub fn may_challenge(&self, id: JobId, job: &Job, signer: AccountId) -> Result<(), TxError> {
        let refuse = |reason| TxError::MayNotChallenge {
            job: id,
            signer,
            reason,
        };
        if signer == job.provider {
            return Err(refuse("it is the job's provider"));
        }
        if signer == job.client {
            return Ok(());
        }
        match self.stakes.get(&signer) {
            Some(s) if s.eligible(self.params.min_stake) => Ok(()),
            Some(_) => Err(refuse("its stake is jailed or below the minimum")),
            None => Err(refuse("it is neither staked nor the job's client")),
        }
    }

    /// Rule "missed verdict": the checker is penalized and, up to `max_checker_redraws`
    /// times, replaced by the next draw from the same seed (never a checker that already
    /// failed this job) with a new window from this block's time; after that, or with nobody
    /// left to draw, the job settles unchecked.
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
        let deadline_ms = self.window_end(ctx.time_ms)?;
        // Re-read the job: recording the fault changed it.
        job = self.job_or_err(id)?;
        job.phase = JobPhase::Committed {
            result,
            check: Check::Pending {
                checker: new_checker,
                deadline_ms,
                redraws: next,
                failed,
            },
        };
        self.put_job(id, job);
        events.push(Event::CheckAssigned {
            job: id,
            checker: new_checker,
            deadline_ms,
        });
        Ok(())
    }
}

/// A disagreement that opens a dispute: who, what it locked, and its trace's root and last
/// leaf.
pub(crate) struct Challenge {
    /// The assigned checker or the challenger.
    pub challenger: AccountId,
    /// Whether it is the assigned checker.
    pub assigned: bool,
    /// What it locked (zero for the assigned checker).
    pub bond: Amount,
    /// Its trace root.
    pub root: Hash,
    /// Its last leaf.
    pub final_leaf: Hash,
}
