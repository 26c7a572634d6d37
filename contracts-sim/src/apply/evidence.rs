//! Rule "equivocation": two conflicting signed votes slash and jail their signer.

use attest_protocol::AccountId;
use attest_protocol::tx::EquivocationEvidence;

use crate::error::TxError;
use crate::events::{Event, JailReason, SlashReason};
use crate::state::{Ctx, StakeStatus, State};

impl State {
    /// Rule "equivocation evidence": the two votes must conflict (same signer, height, round
    /// and kind, different blocks), both signatures must verify on this chain, and the signer
    /// must have stake, and their height must be at most the block's and less than
    /// `evidence_blocks` below it. Its stake is slashed by `slash_fraction` (the reporter receiving the
    /// winner's share, unless it reports itself) and it is jailed. Each (signer, height,
    /// round, kind) is punished once, whichever pair of votes proves it.
    pub(crate) fn equivocation(
        &mut self,
        ctx: &Ctx,
        reporter: AccountId,
        ev: &EquivocationEvidence,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if !ev.is_conflicting() {
            return Err(TxError::NotConflicting);
        }
        for vote in [&ev.first, &ev.second] {
            vote.check(&self.chain_id)
                .map_err(|_| TxError::BadEvidenceSignature {
                    signer: vote.signer,
                })?;
        }
        let offender = ev.first.signer;
        let vote = &ev.first.body;
        let has_stake = self
            .stakes
            .get(&offender)
            .and_then(|s| s.total())
            .is_some_and(|t| t.0 > 0);
        if !has_stake {
            return Err(TxError::NotValidator { account: offender });
        }
        // Rule "evidence age": evidence is heard for `evidence_blocks` after its height; the
        // live state forgets it after that. (Stake stays slashable for `unbonding_ms` of block
        // time after an unstake; evidence gossips in well under that.)
        if vote.height > ctx.height {
            return Err(TxError::EvidenceFromTheFuture {
                height: vote.height,
                current: ctx.height,
            });
        }
        if vote.height.0.saturating_add(self.params.evidence_blocks) <= ctx.height.0 {
            return Err(TxError::EvidenceTooOld {
                height: vote.height,
                window: self.params.evidence_blocks,
            });
        }
        let key = (offender, vote.height, vote.round, vote.kind);
        if self
            .evidence
            .contains(&(vote.height, offender, vote.round, vote.kind))
        {
            return Err(TxError::DuplicateEvidence {
                signer: offender,
                height: vote.height,
                round: vote.round,
            });
        }
        self.insert_evidence(key);
        let reason = SlashReason::Equivocation {
            height: vote.height,
            round: vote.round,
            kind: vote.kind,
        };
        self.slash_fraction(offender, reason, Some(reporter), events)?;
        if let Some(mut entry) = self.stakes.get(&offender).cloned()
            && entry.status == StakeStatus::Active
        {
            entry.status = StakeStatus::Jailed;
            self.put_stake(offender, entry);
            events.push(Event::Jailed {
                who: offender,
                reason: JailReason::Equivocation,
            });
        }
        Ok(())
    }
}
