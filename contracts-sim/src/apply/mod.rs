//! The transitions: `apply` for one verified transaction and `end_block` for timeouts,
//! settlement and releases. One file per transaction family.

pub mod accounts;
pub mod checks;
pub mod disputes;
pub mod evidence;
pub mod jobs;
pub mod stake;

use attest_protocol::tx::Action;
use attest_protocol::{AccountId, Amount, Height, JobId, Nonce, Tx, Verified, tx_hash};

use crate::error::TxError;
use crate::events::Event;
use crate::state::{Check, Ctx, JobPhase, State};

impl State {
    /// Applies one transaction whose signature was checked.
    ///
    /// On success the sender's nonce is incremented, the fee is paid to `ctx.proposer` and the
    /// action's events are returned (the fee event first). On failure nothing changes: not the
    /// nonce, not the fee, not [`State::state_root`].
    pub fn apply(&mut self, ctx: &Ctx, tx: &Verified<Tx>) -> Result<Vec<Event>, TxError> {
        self.at = ctx.height;
        let mark = self.savepoint();
        let mut events = Vec::new();
        match self.apply_inner(ctx, tx, &mut events) {
            Ok(()) => {
                self.keep();
                Ok(events)
            }
            Err(e) => {
                self.rollback_to(mark);
                Err(e)
            }
        }
    }

    fn apply_inner(
        &mut self,
        ctx: &Ctx,
        tx: &Verified<Tx>,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let signer = *tx.signer();
        let body = tx.body();
        self.pay_fee_and_nonce(ctx, signer, body.nonce, body.fee, events)?;
        match &body.action {
            Action::Transfer(t) => self.transfer(signer, t, events),
            Action::Stake(s) => self.stake_tokens(signer, s, events),
            Action::Unstake(u) => self.unstake(ctx, signer, u, events),
            Action::OpenJob(open) => {
                let job = JobId::from(tx_hash(tx.signed()));
                self.open_job(ctx, signer, job, open, events)
            }
            Action::CommitResult(c) => self.commit_result(ctx, signer, c, events),
            Action::Verdict(v) => self.verdict(ctx, signer, v, events),
            Action::Dispute(m) => self.dispute_move(ctx, signer, m, events),
            Action::Equivocation(ev) => self.equivocation(ctx, signer, ev, events),
        }
    }

    /// Rule "accounts and fees": the nonce must be the account's next one and the fee at least
    /// the minimum; the fee goes to the proposer.
    fn pay_fee_and_nonce(
        &mut self,
        ctx: &Ctx,
        signer: AccountId,
        nonce: Nonce,
        fee: Amount,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut account = self.account(&signer);
        if nonce != account.nonce {
            return Err(TxError::BadNonce {
                account: signer,
                expected: account.nonce,
                got: nonce,
            });
        }
        if fee < self.params.min_fee {
            return Err(TxError::FeeTooLow {
                fee,
                min: self.params.min_fee,
            });
        }
        account.nonce = Nonce(
            account
                .nonce
                .0
                .checked_add(1)
                .ok_or(TxError::NonceExhausted { account: signer })?,
        );
        self.put_account(signer, account);
        self.debit(signer, fee)?;
        self.credit(ctx.proposer, fee)?;
        events.push(Event::FeePaid {
            payer: signer,
            proposer: ctx.proposer,
            fee,
        });
        Ok(())
    }

    /// Runs the timeouts due at the end of the block (deadlines at or before its time
    /// `ctx.time_ms`), in (deadline, job id) order, then releases unbonded stake due by its
    /// time, then prunes: final jobs past their retention leave the
    /// live state, and evidence past the unbonding period is dropped. Never fails: each
    /// timeout is applied whole or, if it could not be (an arithmetic overflow the supply
    /// bound rules out), left for the next block untouched. Its work is what came due, never
    /// a scan.
    pub fn end_block(&mut self, ctx: &Ctx) -> Vec<Event> {
        self.at = ctx.height;
        let mut events = Vec::new();
        let due: Vec<(u64, JobId)> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= ctx.time_ms)
            .copied()
            .collect();
        for (deadline, job) in due {
            let mut local = Vec::new();
            let mark = self.savepoint();
            self.remove_timer(deadline, job);
            match self.on_timeout(ctx, job, &mut local) {
                Ok(()) => {
                    self.keep();
                    events.append(&mut local);
                }
                Err(_) => self.rollback_to(mark),
            }
        }
        let releases: Vec<_> = self
            .releases
            .iter()
            .take_while(|(t, _)| *t <= ctx.time_ms)
            .copied()
            .collect();
        for (at_ms, who) in releases {
            let mut local = Vec::new();
            let mark = self.savepoint();
            self.remove_release(at_ms, who);
            match self.release_unbonded(ctx, who, &mut local) {
                Ok(()) => {
                    self.keep();
                    events.append(&mut local);
                }
                Err(_) => self.rollback_to(mark),
            }
        }
        self.prune(ctx.height);
        events
    }

    /// Rule "retention": a job final for `retention_blocks` leaves the live state (its record
    /// counts stay; hosts keep its history), and equivocation evidence for a height at least
    /// `evidence_blocks` old is dropped: no one can submit it again.
    fn prune(&mut self, height: Height) {
        let retiring: Vec<(Height, JobId)> = self
            .retire
            .iter()
            .take_while(|(h, _)| *h <= height)
            .copied()
            .collect();
        for (at, job) in retiring {
            self.retire_job(at, job);
        }
        if let Some(horizon) = height.0.checked_sub(self.params.evidence_blocks) {
            let stale: Vec<_> = self
                .evidence
                .iter()
                .take_while(|(h, ..)| h.0 <= horizon)
                .copied()
                .collect();
            for key in stale {
                self.remove_evidence(key);
            }
        }
        self.keep();
    }

    /// Dispatches a job's timeout by its phase.
    fn on_timeout(&mut self, ctx: &Ctx, id: JobId, events: &mut Vec<Event>) -> Result<(), TxError> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        if job.phase.deadline_ms().is_none_or(|d| d > ctx.time_ms) {
            // A stale timer: the phase moved on. `put_job` removes those, so this is only a
            // guard.
            return Ok(());
        }
        match &job.phase {
            JobPhase::Open { .. } => self.missed_commit(id, events),
            JobPhase::Committed { check, .. } => match check {
                Check::Unchecked { .. } => self.settle(id, None, events),
                Check::Pending { .. } => self.missed_verdict(ctx, id, events),
            },
            JobPhase::Disputed { .. } => self.missed_dispute_round(id, events),
            JobPhase::Settled | JobPhase::Refunded => Ok(()),
        }
    }
}
