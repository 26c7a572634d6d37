//! Journaled writes: every change to the state goes through these methods, which remember
//! the prior value so that a rejected transaction can be undone exactly.
//!
//! Validating a whole transaction before touching anything would mean computing every
//! balance twice, and a multi-party payout where one account plays two roles (the client is
//! the proposer) is easy to get wrong that way. Recording prior values and restoring them in
//! reverse order on error makes "a rejected transaction changes nothing" hold by construction.

use attest_protocol::{AccountId, Amount, Height, JobId, PublicKey};

use super::{Account, EvidenceKey, Job, SlashRecord, StakeEntry, State};
use crate::error::TxError;

/// One prior value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undo {
    Account(AccountId, Option<Account>),
    Stake(AccountId, Option<StakeEntry>),
    Node(PublicKey, Option<AccountId>),
    Job(JobId, Option<Box<Job>>),
    TimerAdded(Height, JobId),
    TimerRemoved(Height, JobId),
    ReleaseAdded(Height, AccountId),
    ReleaseRemoved(Height, AccountId),
    Treasury(Amount),
    Evidence(EvidenceKey),
    Slash,
}

impl State {
    /// Forgets the journal: the changes so far are kept.
    pub(crate) fn commit_journal(&mut self) {
        self.journal.clear();
    }

    /// Undoes every change since the last commit, newest first.
    pub(crate) fn rollback(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Account(id, old) => restore(&mut self.accounts, id, old),
                Undo::Stake(id, old) => restore(&mut self.stakes, id, old),
                Undo::Node(key, old) => restore(&mut self.nodes, key, old),
                Undo::Job(id, old) => restore(&mut self.jobs, id, old.map(|j| *j)),
                Undo::TimerAdded(h, j) => {
                    self.timers.remove(&(h, j));
                }
                Undo::TimerRemoved(h, j) => {
                    self.timers.insert((h, j));
                }
                Undo::ReleaseAdded(h, a) => {
                    self.releases.remove(&(h, a));
                }
                Undo::ReleaseRemoved(h, a) => {
                    self.releases.insert((h, a));
                }
                Undo::Treasury(old) => self.treasury = old,
                Undo::Evidence(key) => {
                    self.evidence.remove(&key);
                }
                Undo::Slash => {
                    self.slashes.pop();
                }
            }
        }
    }

    /// Writes an account.
    pub(crate) fn put_account(&mut self, id: AccountId, account: Account) {
        let old = self.accounts.insert(id, account);
        self.journal.push(Undo::Account(id, old));
    }

    /// Adds to an account's balance.
    pub(crate) fn credit(&mut self, id: AccountId, amount: Amount) -> Result<(), TxError> {
        let mut account = self.account(&id);
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or(TxError::Overflow { what: "a balance" })?;
        self.put_account(id, account);
        Ok(())
    }

    /// Takes from an account's balance.
    pub(crate) fn debit(&mut self, id: AccountId, amount: Amount) -> Result<(), TxError> {
        let mut account = self.account(&id);
        account.balance =
            account
                .balance
                .checked_sub(amount)
                .ok_or(TxError::InsufficientBalance {
                    account: id,
                    have: account.balance,
                    need: amount,
                })?;
        self.put_account(id, account);
        Ok(())
    }

    /// Writes a stake entry.
    pub(crate) fn put_stake(&mut self, id: AccountId, entry: StakeEntry) {
        let old = self.stakes.insert(id, entry);
        self.journal.push(Undo::Stake(id, old));
    }

    /// Binds a node key to an account.
    pub(crate) fn bind_node(&mut self, node: PublicKey, account: AccountId) {
        let old = self.nodes.insert(node, account);
        self.journal.push(Undo::Node(node, old));
    }

    /// Writes a job and moves its timer to the new phase's deadline.
    pub(crate) fn put_job(&mut self, id: JobId, job: Job) {
        let new_deadline = job.phase.deadline();
        let old = self.jobs.insert(id, job);
        let old_deadline = old.as_ref().and_then(|j| j.phase.deadline());
        if old_deadline != new_deadline {
            if let Some(h) = old_deadline
                && self.timers.remove(&(h, id))
            {
                self.journal.push(Undo::TimerRemoved(h, id));
            }
            if let Some(h) = new_deadline
                && self.timers.insert((h, id))
            {
                self.journal.push(Undo::TimerAdded(h, id));
            }
        }
        self.journal.push(Undo::Job(id, old.map(Box::new)));
    }

    /// Drops a fired timer.
    pub(crate) fn remove_timer(&mut self, height: Height, job: JobId) {
        if self.timers.remove(&(height, job)) {
            self.journal.push(Undo::TimerRemoved(height, job));
        }
    }

    /// Schedules a release check for `account` at the end of `height`.
    pub(crate) fn add_release(&mut self, height: Height, account: AccountId) {
        if self.releases.insert((height, account)) {
            self.journal.push(Undo::ReleaseAdded(height, account));
        }
    }

    /// Drops a fired release check.
    pub(crate) fn remove_release(&mut self, height: Height, account: AccountId) {
        if self.releases.remove(&(height, account)) {
            self.journal.push(Undo::ReleaseRemoved(height, account));
        }
    }

    /// Adds to the treasury.
    pub(crate) fn credit_treasury(&mut self, amount: Amount) -> Result<(), TxError> {
        let new = self.treasury.checked_add(amount).ok_or(TxError::Overflow {
            what: "the treasury",
        })?;
        self.journal.push(Undo::Treasury(self.treasury));
        self.treasury = new;
        Ok(())
    }

    /// Records an accepted equivocation evidence.
    pub(crate) fn insert_evidence(&mut self, key: EvidenceKey) {
        if self.evidence.insert(key) {
            self.journal.push(Undo::Evidence(key));
        }
    }

    /// Records a slash.
    pub(crate) fn push_slash(&mut self, record: SlashRecord) {
        self.slashes.push(record);
        self.journal.push(Undo::Slash);
    }
}

fn restore<K: Ord, V>(map: &mut std::collections::BTreeMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}
