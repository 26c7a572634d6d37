//! Invariants every reachable state satisfies. Tests check them after every transition;
//! auditors can check them after replaying a ledger.

use attest_protocol::{AccountId, Amount, JobId, PublicKey};

use crate::events::{Event, SlashReason};
use crate::state::keys::{Delta, Entry, Key};
use crate::state::{Fault, Job, StakeEntry, StakeStatus, State};

/// A broken invariant: a bug in the state machine, never a user error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    /// Balances, stakes, escrows and the treasury no longer add up to the genesis supply.
    #[error("supply is {found} units, genesis created {expected}")]
    SupplyChanged {
        /// The genesis supply.
        expected: Amount,
        /// What the state holds now (128 bits: it may exceed `u64`).
        found: u128,
    },
    /// A job's escrow is not what its phase implies: the full escrow while it runs, zero once
    /// final.
    #[error("job {job} holds escrow {found}, expected {expected}")]
    Escrow {
        /// The job.
        job: JobId,
        /// What its phase implies.
        expected: Amount,
        /// What it holds.
        found: Amount,
    },
    /// The timer index disagrees with a job's deadline.
    #[error("job {job}: the timer index disagrees with its deadline")]
    Timer {
        /// The job.
        job: JobId,
    },
    /// The validator ranking is not the active stakes ordered by bonded stake.
    #[error("the validator ranking does not match the active stakes")]
    Ranking,
    /// The node index disagrees with the stakes.
    #[error("node {node}: the node index disagrees with the stakes")]
    NodeIndex {
        /// The node.
        node: PublicKey,
    },
    /// A block moved tokens in or out of existence.
    #[error("a block changed the supply by {change} units")]
    SupplyMoved {
        /// Tokens after minus tokens before, over the entries the block changed.
        change: i128,
    },
    /// A slash has no fault or evidence behind it.
    #[error("slash number {index} of the block, of {who}, is not backed by a fault or evidence")]
    UnbackedSlash {
        /// Its position among the block's slashes.
        index: usize,
        /// The slashed account.
        who: AccountId,
    },
    /// An account is banned without two lost disputes.
    #[error("account {who} is banned without two lost disputes")]
    UnearnedBan {
        /// The account.
        who: AccountId,
    },
}

impl State {
    /// Checks every invariant of the whole state: a scan, for tests and for an auditor starting
    /// from a snapshot. A replay checks each block with [`State::check_block`] instead.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_supply()?;
        self.check_jobs()?;
        self.check_stakes()
    }

    /// Checks what a block (its `delta` on this state, and its `events`) did, at the cost of
    /// the block: it conserves the supply, every job and stake it wrote is consistent with the
    /// indexes, and every slash it made is backed by a fault on its job or by evidence. From a
    /// state that met [`State::check_invariants`], a chain of blocks that each pass this
    /// leads to a state that meets it.
    pub fn check_block(&self, delta: &Delta, events: &[Event]) -> Result<(), InvariantViolation> {
        let after = |key: &Key| match delta.new_value(key) {
            Some(new) => new.cloned(),
            None => self.entry(key),
        };
        let tokens = |e: &Option<Entry>| e.as_ref().map_or(0, Entry::tokens) as i128;
        let change: i128 = delta
            .changes()
            .iter()
            .map(|c| tokens(&c.new) - tokens(&c.old))
            .sum();
        if change != 0 {
            return Err(InvariantViolation::SupplyMoved { change });
        }
        for c in delta.changes() {
            match (&c.key, &c.new) {
                (Key::Job(id), Some(Entry::Job(job))) => {
                    self.check_job(id, job, |d| after(&Key::Timer(d, *id)).is_some())?;
                }
                (Key::Timer(d, id), Some(_)) => {
                    let matches = matches!(after(&Key::Job(*id)), Some(Entry::Job(j)) if j.phase.deadline_ms() == Some(*d));
                    if !matches {
                        return Err(InvariantViolation::Timer { job: *id });
                    }
                }
                (Key::Stake(who), Some(Entry::Stake(entry))) => {
                    check_stake(who, entry, after(&Key::Node(entry.node)))?;
                }
                (Key::Node(node), Some(Entry::Node(who))) => {
                    let bound = matches!(after(&Key::Stake(*who)), Some(Entry::Stake(s)) if s.node == *node);
                    if !bound {
                        return Err(InvariantViolation::NodeIndex { node: *node });
                    }
                }
                _ => {}
            }
        }
        let slashes = events.iter().filter_map(|e| match e {
            Event::Slashed { who, reason, .. } => Some((*who, reason)),
            _ => None,
        });
        for (index, (who, reason)) in slashes.enumerate() {
            let fault = Fault {
                who,
                reason: reason.clone(),
            };
            let backed = match reason {
                SlashReason::MissedCommit { job }
                | SlashReason::MissedVerdict { job }
                | SlashReason::DisputeLost { job } => {
                    matches!(after(&Key::Job(*job)), Some(Entry::Job(j)) if j.faults.contains(&fault))
                }
                SlashReason::Equivocation {
                    height,
                    round,
                    kind,
                } => after(&Key::Evidence(*height, who, *round, *kind)).is_some(),
            };
            if !backed {
                return Err(InvariantViolation::UnbackedSlash { index, who });
            }
        }
        Ok(())
    }

    /// Rule "escrow follows the phase" and "the timer index matches the deadline" for one job.
    fn check_job(
        &self,
        id: &JobId,
        job: &Job,
        timed: impl Fn(u64) -> bool,
    ) -> Result<(), InvariantViolation> {
        let expected = if job.phase.is_final() {
            Amount::ZERO
        } else {
            job.price_per_token
                .checked_mul(u64::from(job.max_tokens))
                .and_then(|p| p.checked_add(self.params.checker_fee))
                .unwrap_or(Amount(u64::MAX))
        };
        if job.escrow != expected {
            return Err(InvariantViolation::Escrow {
                job: *id,
                expected,
                found: job.escrow,
            });
        }
        if !job.phase.deadline_ms().is_none_or(timed) {
            return Err(InvariantViolation::Timer { job: *id });
        }
        Ok(())
    }

    /// Rule "supply is conserved": balances + stakes (bonded and unbonding) + escrows and
    /// challenge bonds + treasury = genesis supply. Amounts are unsigned, so "nothing is negative" reduces to
    /// "no debit went through unchecked", which this sum would reveal.
    fn check_supply(&self) -> Result<(), InvariantViolation> {
        let balances: u128 = self
            .accounts
            .values()
            .map(|a| u128::from(a.balance.0))
            .sum();
        let stakes: u128 = self
            .stakes
            .values()
            .map(|s| {
                u128::from(s.bonded.0)
                    + s.unbonding
                        .iter()
                        .map(|u| u128::from(u.amount.0))
                        .sum::<u128>()
            })
            .sum();
        let escrows: u128 = self.jobs.values().map(Job::locked).sum();
        let found = balances + stakes + escrows + u128::from(self.treasury.0);
        if found != u128::from(self.genesis_supply.0) {
            return Err(InvariantViolation::SupplyChanged {
                expected: self.genesis_supply,
                found,
            });
        }
        Ok(())
    }

    fn check_jobs(&self) -> Result<(), InvariantViolation> {
        for (id, job) in &self.jobs {
            self.check_job(id, job, |d| self.timers.contains(&(d, *id)))?;
        }
        for (deadline, id) in &self.timers {
            let matches = self
                .jobs
                .get(id)
                .is_some_and(|j| j.phase.deadline_ms() == Some(*deadline));
            if !matches {
                return Err(InvariantViolation::Timer { job: *id });
            }
        }
        Ok(())
    }

    fn check_stakes(&self) -> Result<(), InvariantViolation> {
        for (who, entry) in &self.stakes {
            check_stake(
                who,
                entry,
                self.nodes.get(&entry.node).map(|a| Entry::Node(*a)),
            )?;
        }
        for (node, who) in &self.nodes {
            if self.stakes.get(who).is_none_or(|e| e.node != *node) {
                return Err(InvariantViolation::NodeIndex { node: *node });
            }
        }
        let ranked: std::collections::BTreeSet<_> = self
            .stakes
            .iter()
            .filter(|(_, s)| s.status == StakeStatus::Active && s.bonded.0 > 0)
            .map(|(who, s)| (std::cmp::Reverse(s.bonded), *who))
            .collect();
        if ranked != self.ranked {
            return Err(InvariantViolation::Ranking);
        }
        Ok(())
    }
}

/// Rules "the node index matches the stakes" and "a ban is earned" for one stake; `node` is
/// the entry under the stake's node key.
fn check_stake(
    who: &AccountId,
    entry: &StakeEntry,
    node: Option<Entry>,
) -> Result<(), InvariantViolation> {
    if node != Some(Entry::Node(*who)) {
        return Err(InvariantViolation::NodeIndex { node: entry.node });
    }
    if entry.status == StakeStatus::Banned && entry.disputes_lost < 2 {
        return Err(InvariantViolation::UnearnedBan { who: *who });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use attest_protocol::{ChainId, JobId, SecretKey};

    use super::*;
    use crate::state::Genesis;

    fn state() -> State {
        let a = SecretKey::from_seed([1; 32]).public();
        let node = SecretKey::from_seed([2; 32]).public();
        State::from_genesis(&Genesis {
            chain_id: ChainId::new("t").unwrap(),
            params: crate::Params::default(),
            balances: vec![(a, Amount(10))],
            stakes: vec![(a, node, Amount(5), crate::test_capability())],
        })
        .unwrap()
    }

    #[test]
    fn a_genesis_state_holds() {
        assert_eq!(state().check_invariants(), Ok(()));
    }

    #[test]
    fn minted_tokens_are_caught() {
        let mut s = state();
        s.treasury = Amount(1);
        assert!(matches!(
            s.check_invariants(),
            Err(InvariantViolation::SupplyChanged { found: 16, .. })
        ));
    }

    #[test]
    fn an_unbacked_slash_is_caught() {
        let s = state();
        let who = SecretKey::from_seed([1; 32]).public();
        let events = [Event::Slashed {
            who,
            amount: Amount::ZERO,
            reason: SlashReason::MissedCommit {
                job: JobId([0; 32]),
            },
            to_winner: None,
            to_treasury: Amount::ZERO,
        }];
        assert!(matches!(
            s.check_block(&Delta::default(), &events),
            Err(InvariantViolation::UnbackedSlash { index: 0, .. })
        ));
    }

    #[test]
    fn a_block_that_mints_is_caught() {
        let mut s = state();
        let (_, delta) = s.speculate(|s| s.credit_treasury(Amount(3)));
        assert!(matches!(
            s.check_block(&delta, &[]),
            Err(InvariantViolation::SupplyMoved { change: 3 })
        ));
    }
}
