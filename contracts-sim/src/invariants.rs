//! Invariants every reachable state satisfies. Tests check them after every transition;
//! auditors can check them after replaying a ledger.

use attest_protocol::{AccountId, Amount, JobId, PublicKey};

use crate::events::SlashReason;
use crate::state::{Fault, StakeStatus, State};

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
    /// The node index disagrees with the stakes.
    #[error("node {node}: the node index disagrees with the stakes")]
    NodeIndex {
        /// The node.
        node: PublicKey,
    },
    /// A slash has no fault or evidence behind it.
    #[error("slash number {index} of {who} is not backed by a fault or evidence")]
    UnbackedSlash {
        /// Its position in the slash log.
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
    /// Checks every invariant.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_supply()?;
        self.check_jobs()?;
        self.check_stakes()?;
        self.check_slashes()
    }

    /// Rule "supply is conserved": balances + stakes (bonded and unbonding) + escrows +
    /// treasury = genesis supply. Amounts are unsigned, so "nothing is negative" reduces to
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
        let escrows: u128 = self.jobs.values().map(|j| u128::from(j.escrow.0)).sum();
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
            let timed = job
                .phase
                .deadline()
                .is_none_or(|d| self.timers.contains(&(d, *id)));
            if !timed {
                return Err(InvariantViolation::Timer { job: *id });
            }
        }
        for (deadline, id) in &self.timers {
            let matches = self
                .jobs
                .get(id)
                .is_some_and(|j| j.phase.deadline() == Some(*deadline));
            if !matches {
                return Err(InvariantViolation::Timer { job: *id });
            }
        }
        Ok(())
    }

    fn check_stakes(&self) -> Result<(), InvariantViolation> {
        for (who, entry) in &self.stakes {
            if self.nodes.get(&entry.node) != Some(who) {
                return Err(InvariantViolation::NodeIndex { node: entry.node });
            }
            if entry.status == StakeStatus::Banned && entry.disputes_lost < 2 {
                return Err(InvariantViolation::UnearnedBan { who: *who });
            }
        }
        for (node, who) in &self.nodes {
            if self.stakes.get(who).is_none_or(|e| e.node != *node) {
                return Err(InvariantViolation::NodeIndex { node: *node });
            }
        }
        Ok(())
    }

    /// Rule "every slash is backed": by a fault recorded on its job (a missed commit, a missed
    /// verdict or a lost dispute) or by accepted equivocation evidence.
    fn check_slashes(&self) -> Result<(), InvariantViolation> {
        for (index, slash) in self.slashes.iter().enumerate() {
            let fault = Fault {
                who: slash.who,
                reason: slash.reason.clone(),
            };
            let backed = match &slash.reason {
                SlashReason::MissedCommit { job }
                | SlashReason::MissedVerdict { job }
                | SlashReason::DisputeLost { job } => self
                    .jobs
                    .get(job)
                    .is_some_and(|j| j.faults.contains(&fault)),
                SlashReason::Equivocation {
                    height,
                    round,
                    kind,
                } => self.evidence.contains(&(slash.who, *height, *round, *kind)),
            };
            if !backed {
                return Err(InvariantViolation::UnbackedSlash {
                    index,
                    who: slash.who,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use attest_protocol::{ChainId, Height, JobId, SecretKey};

    use super::*;
    use crate::state::{Genesis, SlashRecord};

    fn state() -> State {
        let a = SecretKey::from_seed([1; 32]).public();
        let node = SecretKey::from_seed([2; 32]).public();
        State::from_genesis(&Genesis {
            chain_id: ChainId::new("t").unwrap(),
            params: crate::Params::default(),
            balances: vec![(a, Amount(10))],
            stakes: vec![(a, node, Amount(5))],
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
        let mut s = state();
        let who = SecretKey::from_seed([1; 32]).public();
        s.slashes.push(SlashRecord {
            who,
            amount: Amount::ZERO,
            reason: SlashReason::MissedCommit {
                job: JobId([0; 32]),
            },
            height: Height(1),
        });
        assert!(matches!(
            s.check_invariants(),
            Err(InvariantViolation::UnbackedSlash { index: 0, .. })
        ));
    }
}
