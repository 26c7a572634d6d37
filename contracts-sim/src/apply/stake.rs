//! Rule "stake": bonding, unbonding, release, and the slashing every other family uses.

use attest_protocol::tx::{Stake, Unstake};
use attest_protocol::{AccountId, Amount};

use crate::error::TxError;
use crate::events::{Event, SlashReason};
use crate::params::{ppm_ceil, ppm_floor};
use crate::state::{Ctx, MAX_UNBONDING_ENTRIES, StakeEntry, StakeStatus, State, Unbond};

impl State {
    /// Rule "stake": locks balance as bonded stake, bound to a node that signed a binding to
    /// the sender, and records the node's device (replacing the one recorded before). One
    /// node per account and one account per node; a jailed or banned account may not add
    /// stake.
    pub(crate) fn stake_tokens(
        &mut self,
        who: AccountId,
        s: &Stake,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if s.amount.0 == 0 {
            return Err(TxError::ZeroAmount { what: "a stake" });
        }
        if !s.binding_is_valid(&self.chain_id, &who) {
            return Err(TxError::BadNodeBinding { node: s.node });
        }
        if let Some(account) = self.nodes.get(&s.node).filter(|a| **a != who) {
            return Err(TxError::NodeTaken {
                node: s.node,
                account: *account,
            });
        }
        let mut entry = match self.stakes.get(&who) {
            Some(e) if e.node != s.node => {
                return Err(TxError::NodeMismatch {
                    account: who,
                    bound: e.node,
                    offered: s.node,
                });
            }
            Some(e) if e.status != StakeStatus::Active => {
                return Err(TxError::Jailed { account: who });
            }
            Some(e) => e.clone(),
            None => StakeEntry {
                node: s.node,
                bonded: Amount::ZERO,
                unbonding: Vec::new(),
                status: StakeStatus::Active,
                disputes_lost: 0,
                probation_left: 0,
                capability: s.capability.clone(),
            },
        };
        entry.capability = s.capability.clone();
        self.debit(who, s.amount)?;
        entry.bonded = entry
            .bonded
            .checked_add(s.amount)
            .ok_or(TxError::Overflow { what: "a stake" })?;
        self.put_stake(who, entry);
        if !self.nodes.contains_key(&s.node) {
            self.bind_node(s.node, who);
        }
        events.push(Event::Staked {
            who,
            node: s.node,
            amount: s.amount,
        });
        Ok(())
    }

    /// Rule "unstake": moves bonded stake to an unbonding entry released at the end of the
    /// first block whose time reaches `time_ms + unbonding_ms`. It stays slashable until then.
    pub(crate) fn unstake(
        &mut self,
        ctx: &Ctx,
        who: AccountId,
        u: &Unstake,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if u.amount.0 == 0 {
            return Err(TxError::ZeroAmount { what: "an unstake" });
        }
        let mut entry = self
            .stakes
            .get(&who)
            .cloned()
            .ok_or(TxError::NotStaked { account: who })?;
        entry.bonded = entry
            .bonded
            .checked_sub(u.amount)
            .ok_or(TxError::InsufficientStake {
                account: who,
                have: entry.bonded,
                need: u.amount,
            })?;
        if entry.unbonding.len() >= MAX_UNBONDING_ENTRIES {
            return Err(TxError::TooManyUnbonding {
                account: who,
                max: MAX_UNBONDING_ENTRIES,
            });
        }
        let release_at_ms =
            ctx.time_ms
                .checked_add(self.params.unbonding_ms)
                .ok_or(TxError::Overflow {
                    what: "a release time",
                })?;
        entry.unbonding.push(Unbond {
            amount: u.amount,
            release_at_ms,
        });
        self.put_stake(who, entry);
        self.add_release(release_at_ms, who);
        events.push(Event::Unbonding {
            who,
            amount: u.amount,
            release_at_ms,
        });
        Ok(())
    }

    /// Rule "release": at the end of the first block whose time reaches its release time,
    /// unbonding stake returns to the balance (whatever slashes left of it).
    pub(crate) fn release_unbonded(
        &mut self,
        ctx: &Ctx,
        who: AccountId,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let Some(mut entry) = self.stakes.get(&who).cloned() else {
            return Ok(());
        };
        let mut released = Amount::ZERO;
        let mut kept = Vec::with_capacity(entry.unbonding.len());
        for u in entry.unbonding {
            if u.release_at_ms <= ctx.time_ms {
                released = released
                    .checked_add(u.amount)
                    .ok_or(TxError::Overflow { what: "a release" })?;
            } else {
                kept.push(u);
            }
        }
        entry.unbonding = kept;
        self.put_stake(who, entry);
        if released.0 > 0 {
            self.credit(who, released)?;
            events.push(Event::Released {
                who,
                amount: released,
            });
        }
        Ok(())
    }

    /// Takes up to `amount` from `who`'s stake: bonded first, then unbonding entries, newest
    /// first (the tokens closest to leaving are taken last). Returns what was taken.
    fn take_stake(&mut self, who: AccountId, amount: Amount) -> Amount {
        let Some(mut entry) = self.stakes.get(&who).cloned() else {
            return Amount::ZERO;
        };
        let mut left = amount;
        let from_bonded = Amount(entry.bonded.0.min(left.0));
        entry.bonded = Amount(entry.bonded.0 - from_bonded.0);
        left = Amount(left.0 - from_bonded.0);
        for u in entry.unbonding.iter_mut().rev() {
            let take = Amount(u.amount.0.min(left.0));
            u.amount = Amount(u.amount.0 - take.0);
            left = Amount(left.0 - take.0);
        }
        entry.unbonding.retain(|u| u.amount.0 > 0);
        self.put_stake(who, entry);
        Amount(amount.0 - left.0)
    }

    /// Slashes `slash_fraction` of `who`'s whole stake (bonded and unbonding) for a dispute
    /// loss or equivocation. At least `winner_share` of it (rounded up) goes to `winner` when
    /// there is one; the rest to the treasury.
    pub(crate) fn slash_fraction(
        &mut self,
        who: AccountId,
        reason: SlashReason,
        winner: Option<AccountId>,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let total = self
            .stakes
            .get(&who)
            .map(StakeEntry::total)
            .unwrap_or(Some(Amount::ZERO))
            .ok_or(TxError::Overflow { what: "a stake" })?;
        let amount = ppm_floor(total, self.params.slash_fraction_ppm);
        self.slash(who, amount, reason, winner, events)
    }

    /// Takes a flat penalty (capped at the stake) from `who` for a missed deadline; it all
    /// goes to the treasury.
    pub(crate) fn penalize(
        &mut self,
        who: AccountId,
        reason: SlashReason,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let penalty = self.params.missed_deadline_penalty;
        self.slash(who, penalty, reason, None, events)
    }

    fn slash(
        &mut self,
        who: AccountId,
        amount: Amount,
        reason: SlashReason,
        winner: Option<AccountId>,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let taken = self.take_stake(who, amount);
        let to_winner = match winner {
            Some(w) if w != who => {
                let share = ppm_ceil(taken, self.params.winner_share_ppm);
                self.credit(w, share)?;
                self.earn(w, share);
                Some((w, share))
            }
            _ => None,
        };
        let to_treasury = Amount(taken.0 - to_winner.map_or(0, |(_, a)| a.0));
        self.credit_treasury(to_treasury)?;
        self.update_record(who, |r| {
            r.slashes = r.slashes.saturating_add(1);
            r.slashed = Amount(r.slashed.0.saturating_add(taken.0));
        });
        events.push(Event::Slashed {
            who,
            amount: taken,
            reason,
            to_winner,
            to_treasury,
        });
        Ok(())
    }
}
