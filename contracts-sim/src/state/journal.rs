//! Journaled writes: every change to the state goes through [`State::write`], which remembers
//! the entry's prior value so that a rejected transaction can be undone exactly, and so that a
//! whole block can be run speculatively and taken back ([`State::speculate`]).
//!
//! Validating a whole transaction before touching anything would mean computing every
//! balance twice, and a multi-party payout where one account plays two roles (the client is
//! the proposer) is easy to get wrong that way. Recording prior values and restoring them in
//! reverse order on error makes "a rejected transaction changes nothing" hold by construction.
//! The same journal, kept for a whole block, is the block's [`Delta`]: a proposal is checked
//! by running it on the state itself and rolling it back, never on a copy of the state.

use std::collections::BTreeMap;

use attest_protocol::{AccountId, Amount, Bytes, Height, JobId, PublicKey};

use super::keys::{Change, Delta, Entry, Key};
use super::{Account, EvidenceKey, Job, LiveEvidence, Record, StakeEntry, State};
use crate::error::TxError;

impl State {
    /// Runs `f` (which applies transactions and ends blocks) and takes everything it did back,
    /// returning what it did as a [`Delta`]: the state afterwards is exactly the state before.
    /// The cost is that of the changes, not of the state.
    pub fn speculate<R>(&mut self, f: impl FnOnce(&mut State) -> R) -> (R, Delta) {
        let clean = self.touched.is_empty();
        self.journal.clear();
        self.holding = true;
        let out = f(self);
        self.holding = false;
        // Each key's value before the block is the first one journaled for it. Restoring that
        // value key by key takes the block back exactly as undoing the journal newest first
        // would (every write is one key's, and `write_raw` keeps what derives from a key, the
        // validator ranking, in step with it), with one write per key instead of one per
        // journaled change, and the write hands back the value the block left.
        let mut journal = std::mem::take(&mut self.journal);
        let mut first: BTreeMap<Key, Option<Entry>> = BTreeMap::new();
        for (key, old) in journal.drain(..) {
            first.entry(key).or_insert(old);
        }
        self.journal = journal;
        let mut changes = Vec::with_capacity(first.len());
        for (key, old) in first {
            let new = self.write_raw(key, old.clone());
            if old != new {
                changes.push(Change { key, old, new });
            }
        }
        if clean {
            // Rolled back to the last root: nothing for the next root to rehash.
            self.touched.clear();
        }
        (out, Delta::new(changes))
    }

    /// Applies a delta that [`State::speculate`] produced on this same state.
    pub fn apply_delta(&mut self, delta: &Delta) {
        for c in delta.changes() {
            self.write_raw(c.key, c.new.clone());
        }
    }

    /// Takes back a delta just applied with [`State::apply_delta`].
    pub fn revert_delta(&mut self, delta: &Delta) {
        for c in delta.changes().iter().rev() {
            self.write_raw(c.key, c.old.clone());
        }
    }

    /// The journal position to roll back to if what follows fails.
    pub(crate) fn savepoint(&self) -> usize {
        self.journal.len()
    }

    /// Keeps the changes since `mark`: forgets them unless a block is being speculated.
    pub(crate) fn keep(&mut self) {
        if !self.holding {
            self.journal.clear();
        }
    }

    /// Undoes every change after `mark`, newest first.
    pub(crate) fn rollback_to(&mut self, mark: usize) {
        while self.journal.len() > mark {
            let Some((key, old)) = self.journal.pop() else {
                break;
            };
            self.write_raw(key, old);
        }
    }

    /// Writes (or with `None` removes) an entry, journaling its prior value.
    pub(crate) fn write(&mut self, key: Key, value: Option<Entry>) {
        let old = self.write_raw(key, value);
        self.journal.push((key, old));
    }

    /// Writes an account.
    pub(crate) fn put_account(&mut self, id: AccountId, account: Account) {
        self.write(Key::Account(id), Some(Entry::Account(account)));
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
        self.write(Key::Stake(id), Some(Entry::Stake(Box::new(entry))));
    }

    /// Binds a node key to an account.
    pub(crate) fn bind_node(&mut self, node: PublicKey, account: AccountId) {
        self.write(Key::Node(node), Some(Entry::Node(account)));
    }

    /// Updates an account's record.
    pub(crate) fn update_record(&mut self, id: AccountId, f: impl FnOnce(&mut Record)) {
        let mut record = self.records.get(&id).copied().unwrap_or_default();
        f(&mut record);
        self.write(Key::Record(id), Some(Entry::Record(Box::new(record))));
    }

    /// Counts `amount` the protocol paid `who` for its work in its record (saturating: a
    /// running total for people, never spent).
    pub(crate) fn earn(&mut self, who: AccountId, amount: Amount) {
        if amount.0 > 0 {
            self.update_record(who, |r| {
                r.earned = Amount(r.earned.0.saturating_add(amount.0))
            });
        }
    }

    /// Writes a job: moves its timer to the new phase's deadline, counts a phase change in
    /// the client's and provider's records, and once it is final drops its input (no check or
    /// dispute can need it; the `OpenJob` transaction on the ledger keeps it) and schedules
    /// it to leave the live state `retention_blocks` later.
    pub(crate) fn put_job(&mut self, id: JobId, mut job: Job) {
        let new_deadline = job.phase.deadline_ms();
        let (old_deadline, old_phase) = match self.jobs.get(&id) {
            Some(old) => (old.phase.deadline_ms(), Some(old.phase.name())),
            None => (None, None),
        };
        if old_deadline != new_deadline {
            if let Some(h) = old_deadline
                && self.timers.contains(&(h, id))
            {
                self.write(Key::Timer(h, id), None);
            }
            if let Some(h) = new_deadline {
                self.write(Key::Timer(h, id), Some(Entry::Member));
            }
        }
        let new_phase = job.phase.name();
        if old_phase != Some(new_phase) {
            for (who, as_provider) in [(job.provider, true), (job.client, false)] {
                self.update_record(who, |r| {
                    let counts = if as_provider {
                        &mut r.provided
                    } else {
                        &mut r.opened
                    };
                    if let Some(old) = old_phase {
                        counts.add(old, -1);
                    }
                    counts.add(new_phase, 1);
                });
            }
            if job.phase.is_final() {
                let at = Height(self.at.0.saturating_add(self.params.retention_blocks));
                self.write(Key::Retire(at, id), Some(Entry::Member));
            }
        }
        if job.phase.is_final() && !job.input.is_empty() {
            job.input = Bytes::default();
        }
        self.write(Key::Job(id), Some(Entry::Job(Box::new(job))));
    }

    /// Takes a final job out of the live state (its retirement came due). Its record counts
    /// stay: they count every job the account ever had.
    pub(crate) fn retire_job(&mut self, at: Height, id: JobId) {
        self.write(Key::Retire(at, id), None);
        if self.jobs.get(&id).is_some_and(|j| j.phase.is_final()) {
            self.write(Key::Job(id), None);
        }
    }

    /// Drops a fired timer.
    pub(crate) fn remove_timer(&mut self, at_ms: u64, job: JobId) {
        if self.timers.contains(&(at_ms, job)) {
            self.write(Key::Timer(at_ms, job), None);
        }
    }

    /// Schedules a release check for `account` at the block time `at_ms`.
    pub(crate) fn add_release(&mut self, at_ms: u64, account: AccountId) {
        if !self.releases.contains(&(at_ms, account)) {
            self.write(Key::Release(at_ms, account), Some(Entry::Member));
        }
    }

    /// Drops a fired release check.
    pub(crate) fn remove_release(&mut self, at_ms: u64, account: AccountId) {
        if self.releases.contains(&(at_ms, account)) {
            self.write(Key::Release(at_ms, account), None);
        }
    }

    /// Adds to the treasury.
    pub(crate) fn credit_treasury(&mut self, amount: Amount) -> Result<(), TxError> {
        let new = self.treasury.checked_add(amount).ok_or(TxError::Overflow {
            what: "the treasury",
        })?;
        self.write(Key::Treasury, Some(Entry::Amount(new)));
        Ok(())
    }

    /// Records an accepted equivocation evidence.
    pub(crate) fn insert_evidence(&mut self, key: EvidenceKey) {
        let (who, height, round, kind) = key;
        self.write(Key::Evidence(height, who, round, kind), Some(Entry::Member));
    }

    /// Drops evidence no one can submit again (its height is past `evidence_blocks`).
    pub(crate) fn remove_evidence(&mut self, (height, who, round, kind): LiveEvidence) {
        self.write(Key::Evidence(height, who, round, kind), None);
    }
}
