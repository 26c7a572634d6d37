//! Rule "jobs": opening with escrow, committing a result, settlement and refunds.

use attest_protocol::tx::{CommitResult, OpenJob};
use attest_protocol::workload;
use attest_protocol::{AccountId, Amount, Hash, JobId};

use crate::error::TxError;
use crate::events::{Event, RefundReason, SlashReason};
use crate::params::ppm_floor;
use crate::state::{Committed, Ctx, Fault, Job, JobPhase, Review, State};

impl State {
    /// Rule "open job": the job must be runnable (known model, input within the chain's cap,
    /// 1..=limit tokens), the deadline within bounds, the provider eligible (active, at least
    /// `min_stake` bonded, its device able to run the model) and not the client, and at least
    /// one other account able to check it. The client escrows `price * max_tokens +
    /// checker_fee`; the job id is the transaction's hash; the result is due by the block time
    /// `time_ms + deadline_ms`.
    pub(crate) fn open_job(
        &mut self,
        ctx: &Ctx,
        client: AccountId,
        id: JobId,
        open: &OpenJob,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let step_count = self.check_open(client, open)?;
        if self.jobs.contains_key(&id) {
            return Err(TxError::DuplicateJob { job: id });
        }
        let escrow = open
            .price_per_token
            .checked_mul(u64::from(open.max_tokens))
            .and_then(|p| p.checked_add(self.params.checker_fee))
            .ok_or(TxError::Overflow { what: "the escrow" })?;
        let deadline_ms = ctx
            .time_ms
            .checked_add(u64::from(open.deadline_ms))
            .ok_or(TxError::Overflow { what: "a deadline" })?;
        self.debit(client, escrow)?;
        let job = Job {
            client,
            provider: open.provider,
            model: open.model.clone(),
            input: open.input.clone(),
            max_tokens: open.max_tokens,
            device: open.device.clone(),
            price_per_token: open.price_per_token,
            step_count,
            escrow,
            opened_at: ctx.height,
            check: open.check,
            phase: JobPhase::Open { deadline_ms },
            faults: Vec::new(),
            review: Review::None,
        };
        self.put_job(id, job);
        events.push(Event::JobOpened {
            job: id,
            client,
            provider: open.provider,
            model: open.model.clone(),
            device: open.device.clone(),
            max_tokens: open.max_tokens,
            price_per_token: open.price_per_token,
            escrow,
            commit_deadline_ms: deadline_ms,
            check: open.check,
        });
        Ok(())
    }

    /// The stateless and stake checks of "open job"; returns the job's step count. A read-only
    /// check a gateway may run before submitting (escrow is checked when the job applies).
    pub fn check_open(&self, client: AccountId, open: &OpenJob) -> Result<u64, TxError> {
        if open.provider == client {
            return Err(TxError::SelfDeal { account: client });
        }
        if open.input.len() > self.params.max_input_bytes as usize {
            return Err(TxError::InputTooLong {
                len: open.input.len(),
                max: self.params.max_input_bytes,
            });
        }
        let step_count =
            workload::Job::new(open.model.as_str(), &open.input, open.max_tokens)?.step_count();
        let max = self.params.max_deadline_ms;
        if open.deadline_ms == 0 || open.deadline_ms > max {
            return Err(TxError::BadDeadline {
                got: open.deadline_ms,
                max,
            });
        }
        let not_eligible = |reason| TxError::ProviderNotEligible {
            provider: open.provider,
            reason,
        };
        let stake = self
            .stakes
            .get(&open.provider)
            .ok_or(not_eligible("not staked"))?;
        if !stake.eligible(self.params.min_stake) {
            return Err(not_eligible("jailed, or bonded stake below the minimum"));
        }
        if !stake.capability.can_run(open.model.as_str()) {
            return Err(not_eligible("its device cannot hold the model's weights"));
        }
        if !self.has_capable_checker(open.model.as_str(), &open.provider, &client) {
            return Err(TxError::NoCapableChecker {
                model: open.model.as_str().to_owned(),
            });
        }
        Ok(step_count)
    }

    /// The job, or `UnknownJob`.
    pub(crate) fn job_or_err(&self, id: JobId) -> Result<Job, TxError> {
        self.jobs
            .get(&id)
            .cloned()
            .ok_or(TxError::UnknownJob { job: id })
    }

    /// Rule "commit result": only the assigned provider, only while the job is open and in a
    /// block whose time is no later than its deadline. The contract knows the model, input and token count, so the
    /// step count and token count must be the ones they give: a dispute is then only about
    /// the trace's content. The result opens its last leaf (see [`check_final_leaf`]), so the
    /// committed output is the one the committed trace ends in. The spot-check draw runs here
    /// (see `checks`).
    pub(crate) fn commit_result(
        &mut self,
        ctx: &Ctx,
        signer: AccountId,
        c: &CommitResult,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut job = self.job_or_err(c.job)?;
        let JobPhase::Open { deadline_ms } = job.phase else {
            return Err(TxError::WrongPhase {
                job: c.job,
                expected: "open",
                actual: job.phase.name(),
            });
        };
        if signer != job.provider {
            return Err(TxError::NotProvider { job: c.job, signer });
        }
        if ctx.time_ms > deadline_ms {
            return Err(TxError::DeadlinePassed {
                job: c.job,
                deadline_ms,
                time_ms: ctx.time_ms,
            });
        }
        if c.step_count != job.step_count {
            return Err(TxError::WrongStepCount {
                job: c.job,
                expected: job.step_count,
                got: c.step_count,
            });
        }
        if c.tokens != job.max_tokens {
            return Err(TxError::WrongTokens {
                job: c.job,
                expected: job.max_tokens,
                got: c.tokens,
            });
        }
        let final_leaf = check_final_leaf(&job, c)?;
        let result = Committed {
            output_hash: c.output_hash,
            trace_root: c.trace_root,
            final_leaf,
            tokens: c.tokens,
            committed_at: ctx.height,
            committed_at_ms: ctx.time_ms,
            seed: crate::draw::spot_check_seed(&ctx.block_hash, &c.job),
        };
        let (selected, check, follow_up) = self.draw_check(ctx, c.job, &job, &result)?;
        events.push(Event::ResultCommitted {
            job: c.job,
            provider: signer,
            output_hash: c.output_hash,
            trace_root: c.trace_root,
            final_leaf,
            step_count: c.step_count,
            tokens: c.tokens,
            selected,
        });
        events.extend(follow_up);
        job.phase = JobPhase::Committed { result, check };
        self.put_job(c.job, job);
        Ok(())
    }

    /// Rule "settlement": the provider is paid `price * tokens` less the protocol share (to
    /// the treasury), the checker its fee if it agreed, and the client the rest of the escrow.
    pub(crate) fn settle(
        &mut self,
        id: JobId,
        checker: Option<AccountId>,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut job = self.job_or_err(id)?;
        let tokens = match &job.phase {
            JobPhase::Committed { result, .. } | JobPhase::Disputed { result, .. } => result.tokens,
            _ => job.max_tokens,
        };
        let overflow = TxError::Overflow {
            what: "a settlement",
        };
        let payment = job
            .price_per_token
            .checked_mul(u64::from(tokens))
            .ok_or(overflow.clone())?;
        let protocol_fee = ppm_floor(payment, self.params.protocol_share_ppm);
        let provider_paid = Amount(payment.0 - protocol_fee.0);
        let checker_paid = checker.map(|c| (c, self.params.checker_fee));
        let paid_out = payment
            .checked_add(checker_paid.map_or(Amount::ZERO, |(_, f)| f))
            .ok_or(overflow.clone())?;
        let client_refund = job.escrow.checked_sub(paid_out).ok_or(overflow)?;
        self.credit(job.provider, provider_paid)?;
        self.earn(job.provider, provider_paid);
        self.credit_treasury(protocol_fee)?;
        if let Some((c, fee)) = checker_paid {
            self.credit(c, fee)?;
            self.earn(c, fee);
        }
        self.credit(job.client, client_refund)?;
        job.escrow = Amount::ZERO;
        job.phase = JobPhase::Settled;
        events.push(Event::Settled {
            job: id,
            provider: job.provider,
            provider_paid,
            protocol_fee,
            checker_paid,
            client: job.client,
            client_refund,
        });
        self.put_job(id, job);
        Ok(())
    }

    /// Returns a job's whole escrow to its client and closes it.
    pub(crate) fn refund(
        &mut self,
        id: JobId,
        reason: RefundReason,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut job = self.job_or_err(id)?;
        let amount = job.escrow;
        self.credit(job.client, amount)?;
        job.escrow = Amount::ZERO;
        job.phase = JobPhase::Refunded;
        events.push(Event::Refunded {
            job: id,
            client: job.client,
            amount,
            reason,
        });
        self.put_job(id, job);
        Ok(())
    }

    /// Records a fault on a job (the record that backs the slash that follows).
    pub(crate) fn record_fault(
        &mut self,
        id: JobId,
        who: AccountId,
        reason: SlashReason,
    ) -> Result<(), TxError> {
        let mut job = self.job_or_err(id)?;
        job.faults.push(Fault { who, reason });
        self.put_job(id, job);
        Ok(())
    }

    /// Rule "missed commit": at the end of the first block whose time reaches the deadline
    /// with no result, the client is refunded in full and the provider penalized.
    pub(crate) fn missed_commit(
        &mut self,
        id: JobId,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let provider = self.job_or_err(id)?.provider;
        events.push(Event::CommitMissed { job: id, provider });
        let reason = SlashReason::MissedCommit { job: id };
        self.record_fault(id, provider, reason.clone())?;
        self.penalize(provider, reason, events)?;
        self.refund(id, RefundReason::MissedCommit, events)
    }
}

/// Rule "commit result", the last leaf: the final activation is as wide as the job's
/// activations, ends in the committed output hash (its accumulator), and is the last leaf of
/// the committed trace. Returns that leaf, which is what a disagreeing checker must differ
/// from. The step count was checked first: the committed trace has the job's leaf count.
fn check_final_leaf(job: &Job, c: &CommitResult) -> Result<Hash, TxError> {
    let expected = job.workload()?.activation_len();
    let activation = c.final_activation.as_slice();
    if activation.len() != expected {
        return Err(TxError::FinalActivationWidth {
            job: c.job,
            expected,
            got: activation.len(),
        });
    }
    // The width is at least the accumulator's, so there is one.
    let accumulator = workload::accumulator(activation).unwrap_or_default();
    if accumulator != c.output_hash {
        return Err(TxError::OutputHashMismatch {
            job: c.job,
            output_hash: c.output_hash,
            accumulator,
        });
    }
    let last = job.last_step();
    let leaf = workload::leaf_hash(last, activation);
    if !c
        .final_proof
        .verify(&c.trace_root, job.step_count, last, &leaf)
    {
        return Err(TxError::BadFinalProof {
            job: c.job,
            index: last,
        });
    }
    Ok(leaf)
}
