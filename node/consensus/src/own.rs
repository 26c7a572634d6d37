//! Our own signed votes and proposals, restored from the write-ahead log and added to as we
//! sign: the one record of what this validator already said in each slot.
//!
//! This module owns the rule that makes a restart safe: one message per (height, round, kind)
//! slot, and a slot once filled is never refilled with something else. It never writes the log
//! (the host does, before broadcasting) and never signs.

use std::collections::BTreeMap;

use attest_protocol::{
    BlockHash, ChainId, Height, Proposal, PublicKey, Round, Signed, Vote, VoteKind,
};

use super::io::{OwnMessage, RestoreError};
use super::polka::LockRecord;

/// A vote slot: height, round and kind.
pub type VoteSlot = (Height, Round, VoteKind);

/// Our messages for the current and later heights.
#[derive(Debug, Default)]
pub struct OwnLog {
    votes: BTreeMap<VoteSlot, Signed<Vote>>,
    proposals: BTreeMap<(Height, Round), Signed<Proposal>>,
    /// Blocks we precommitted, with proposal and polka, by height and round.
    locks: BTreeMap<(Height, Round), LockRecord>,
}

impl OwnLog {
    /// Rebuilds the record from the log of validator `me` on `chain`. Every entry must be ours
    /// and verify; two different entries for one slot mean we already equivocated, which an
    /// operator must look at rather than have us pick one.
    pub fn restore(
        chain: &ChainId,
        me: Option<PublicKey>,
        wal: impl IntoIterator<Item = OwnMessage>,
    ) -> Result<Self, RestoreError> {
        let mut log = Self::default();
        for msg in wal {
            let me = me.ok_or(RestoreError::NoKey)?;
            match msg {
                OwnMessage::Vote(v) => {
                    check_ours(chain, me, &v)?;
                    let slot = (v.body.height, v.body.round, v.body.kind);
                    insert_once(&mut log.votes, slot, v, |s| (s.0, s.1))?;
                }
                OwnMessage::Proposal(p) => {
                    check_ours(chain, me, &p)?;
                    let slot = (p.body.height, p.body.round);
                    insert_once(&mut log.proposals, slot, *p, |s| s)?;
                }
                // Someone else's proposal: only its signature can be checked now; the polka
                // is checked against the validator set when its height starts.
                OwnMessage::Lock(lock) => {
                    lock.proposal.check(chain)?;
                    log.locks.insert(lock.slot(), *lock);
                }
            }
        }
        Ok(log)
    }

    /// Forgets everything below `height` (decided, so never voted on again).
    pub fn prune_below(&mut self, height: Height) {
        self.votes = self.votes.split_off(&(height, Round(0), VoteKind::Prevote));
        self.proposals = self.proposals.split_off(&(height, Round(0)));
        self.locks = self.locks.split_off(&(height, Round(0)));
    }

    /// Records the lock for a precommit we are about to sign.
    pub fn insert_lock(&mut self, lock: LockRecord) {
        self.locks.entry(lock.slot()).or_insert(lock);
    }

    /// Our latest lock at `height`: the one of the highest round.
    pub fn lock_record(&self, height: Height) -> Option<&LockRecord> {
        self.locks
            .range((height, Round(0))..=(height, Round(u32::MAX)))
            .next_back()
            .map(|(_, l)| l)
    }

    /// Our vote in `slot`, if we cast one.
    pub fn vote(&self, slot: &VoteSlot) -> Option<&Signed<Vote>> {
        self.votes.get(slot)
    }

    /// Records a vote we just signed for an empty slot.
    pub fn insert_vote(&mut self, vote: Signed<Vote>) {
        let slot = (vote.body.height, vote.body.round, vote.body.kind);
        self.votes.entry(slot).or_insert(vote);
    }

    /// Our proposal for `height` and `round`, if we made one.
    pub fn proposal(&self, height: Height, round: Round) -> Option<&Signed<Proposal>> {
        self.proposals.get(&(height, round))
    }

    /// Records a proposal we just signed for an empty slot.
    pub fn insert_proposal(&mut self, proposal: Signed<Proposal>) {
        let slot = (proposal.body.height, proposal.body.round);
        self.proposals.entry(slot).or_insert(proposal);
    }

    /// Our votes at `height`, in slot order.
    pub fn votes_at(&self, height: Height) -> impl Iterator<Item = &Signed<Vote>> {
        self.votes
            .range((height, Round(0), VoteKind::Prevote)..)
            .take_while(move |((h, _, _), _)| *h == height)
            .map(|(_, v)| v)
    }

    /// Tendermint's lock at `height`: the round and block of our highest-round precommit for
    /// a block. Rebuilt from our own votes, so it survives a restart, which the driver's state
    /// does not.
    pub fn lock(&self, height: Height) -> Option<(Round, BlockHash)> {
        self.votes_at(height)
            .filter(|v| v.body.kind == VoteKind::Precommit)
            .filter_map(|v| v.body.block.map(|b| (v.body.round, b)))
            .max_by_key(|(r, _)| *r)
    }

    /// Our proposals, then our votes, at `height`.
    pub fn messages_at(&self, height: Height) -> Vec<OwnMessage> {
        let proposals = self
            .proposals
            .range((height, Round(0))..)
            .take_while(|((h, _), _)| *h == height)
            .map(|(_, p)| OwnMessage::Proposal(Box::new(p.clone())));
        let votes = self.votes_at(height).cloned().map(OwnMessage::Vote);
        proposals.chain(votes).collect()
    }
}

fn check_ours<T: attest_protocol::Signable>(
    chain: &ChainId,
    me: PublicKey,
    msg: &Signed<T>,
) -> Result<(), RestoreError> {
    if msg.signer != me {
        return Err(RestoreError::NotOurs(Box::new(msg.signer)));
    }
    msg.check(chain)?;
    Ok(())
}

/// Inserts `msg` into an empty slot; the same message again is fine, a different one is not.
fn insert_once<K: Ord + Copy, T: PartialEq>(
    map: &mut BTreeMap<K, Signed<T>>,
    slot: K,
    msg: Signed<T>,
    height_round: impl Fn(K) -> (Height, Round),
) -> Result<(), RestoreError> {
    match map.get(&slot) {
        Some(prev) if prev.body != msg.body => {
            let (height, round) = height_round(slot);
            Err(RestoreError::Conflicting { height, round })
        }
        Some(_) => Ok(()),
        None => {
            map.insert(slot, msg);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest_protocol::SecretKey;

    fn vote(key: &SecretKey, h: u64, r: u32, kind: VoteKind, b: Option<u8>) -> OwnMessage {
        let body = Vote {
            height: Height(h),
            round: Round(r),
            kind,
            block: b.map(|x| BlockHash([x; 32])),
        };
        OwnMessage::Vote(Signed::sign(&chain(), key, body))
    }

    fn chain() -> ChainId {
        ChainId::new("attest-test").expect("valid")
    }

    #[test]
    fn lock_is_the_highest_precommit_for_a_block_and_pruning_forgets_old_heights() {
        let key = SecretKey::from_seed([3; 32]);
        let wal = [
            vote(&key, 4, 0, VoteKind::Precommit, Some(1)),
            vote(&key, 4, 2, VoteKind::Precommit, Some(2)),
            vote(&key, 4, 3, VoteKind::Precommit, None),
            vote(&key, 4, 3, VoteKind::Prevote, Some(5)),
            vote(&key, 4, 3, VoteKind::Prevote, Some(5)),
            vote(&key, 5, 0, VoteKind::Prevote, None),
        ];
        let mut log = OwnLog::restore(&chain(), Some(key.public()), wal).expect("restores");
        assert_eq!(log.lock(Height(4)), Some((Round(2), BlockHash([2; 32]))));
        assert_eq!(log.lock(Height(5)), None);
        assert_eq!(log.votes_at(Height(4)).count(), 4);
        log.prune_below(Height(5));
        assert_eq!(log.votes_at(Height(4)).count(), 0);
        assert_eq!(log.messages_at(Height(5)).len(), 1);
    }
}
