//! Events: what a transition did, in enough detail for a user or auditor to follow a job and
//! every token without reading the state.

use attest_protocol::tx::CheckLevel;
use attest_protocol::{AccountId, Amount, DeviceName, Hash, Height, JobId, ModelId, PublicKey};
use attest_protocol::{Round, VoteKind};
use serde::{Deserialize, Serialize};

/// Why stake was slashed. Each reason names the record that backs it (see
/// [`crate::invariants`]): a fault recorded on the job, or an accepted equivocation evidence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SlashReason {
    /// The provider did not commit a result before the job's deadline.
    MissedCommit {
        /// The job.
        job: JobId,
    },
    /// The checker did not post a verdict within its window.
    MissedVerdict {
        /// The job.
        job: JobId,
    },
    /// The account lost the dispute over the job (by re-execution or by a missed round).
    DisputeLost {
        /// The job.
        job: JobId,
    },
    /// The validator signed two conflicting votes.
    Equivocation {
        /// The height of the votes.
        height: Height,
        /// The round of the votes.
        round: Round,
        /// Their kind.
        kind: VoteKind,
    },
}

/// Why a dispute ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeEnd {
    /// The contract re-executed the first divergent step.
    Reexecuted {
        /// The step it ran.
        step: u64,
    },
    /// The loser missed the deadline of a round.
    MissedRound {
        /// The round it missed (the resolution phase is round `rounds`).
        round: Round,
    },
}

/// Why a job's escrow went back to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundReason {
    /// The provider missed the commit deadline.
    MissedCommit,
    /// The provider lost the dispute.
    ProviderLost,
}

/// Why an account was jailed. Both are permanent in this version of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JailReason {
    /// It signed conflicting consensus votes.
    Equivocation,
    /// It lost a second dispute as a provider: banned.
    SecondLostDispute,
}

/// Something a transaction or the end of a block did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A transaction's fee went to the block proposer.
    FeePaid {
        /// The sender.
        payer: AccountId,
        /// The proposer.
        proposer: AccountId,
        /// The fee.
        fee: Amount,
    },
    /// Tokens moved between accounts.
    Transfer {
        /// The sender.
        from: AccountId,
        /// The receiver.
        to: AccountId,
        /// How much.
        amount: Amount,
    },
    /// Balance became bonded stake.
    Staked {
        /// The account.
        who: AccountId,
        /// Its node.
        node: PublicKey,
        /// How much was added.
        amount: Amount,
    },
    /// Bonded stake began unbonding.
    Unbonding {
        /// The account.
        who: AccountId,
        /// How much.
        amount: Amount,
        /// The block time at which it is released.
        release_at_ms: u64,
    },
    /// Unbonded stake went back to the balance.
    Released {
        /// The account.
        who: AccountId,
        /// How much.
        amount: Amount,
    },
    /// A job was opened and its escrow locked.
    JobOpened {
        /// The job id (the opening transaction's hash).
        job: JobId,
        /// The client.
        client: AccountId,
        /// The provider.
        provider: AccountId,
        /// The model.
        model: ModelId,
        /// The device of the advert.
        device: DeviceName,
        /// Tokens to generate.
        max_tokens: u32,
        /// The advert's price per token.
        price_per_token: Amount,
        /// The escrow locked: price times tokens plus the checker fee.
        escrow: Amount,
        /// The latest block time at which the result may be committed.
        commit_deadline_ms: u64,
        /// The assurance the client bought.
        check: CheckLevel,
    },
    /// The provider committed its result.
    ResultCommitted {
        /// The job.
        job: JobId,
        /// The provider.
        provider: AccountId,
        /// The output hash.
        output_hash: Hash,
        /// The trace root.
        trace_root: Hash,
        /// The trace's last leaf, proven against the root; its activation ends in the
        /// output hash.
        final_leaf: Hash,
        /// The trace's step count.
        step_count: u64,
        /// Tokens generated.
        tokens: u32,
        /// Whether the spot-check draw (or probation) selected the job for a check.
        selected: bool,
    },
    /// A checker was assigned.
    CheckAssigned {
        /// The job.
        job: JobId,
        /// The checker.
        checker: AccountId,
        /// The latest block time for its verdict.
        deadline_ms: u64,
    },
    /// A job selected for a check found no eligible checker and settles unchecked.
    NoCheckerAvailable {
        /// The job.
        job: JobId,
    },
    /// A checker posted its verdict.
    VerdictPosted {
        /// The job.
        job: JobId,
        /// The checker.
        checker: AccountId,
        /// Whether it agreed.
        agree: bool,
    },
    /// A checker missed its verdict window.
    VerdictMissed {
        /// The job.
        job: JobId,
        /// The checker.
        checker: AccountId,
    },
    /// A provider missed its commit deadline.
    CommitMissed {
        /// The job.
        job: JobId,
        /// The provider.
        provider: AccountId,
    },
    /// A disagreeing verdict opened a bisection dispute.
    DisputeOpened {
        /// The job.
        job: JobId,
        /// The provider.
        provider: AccountId,
        /// The checker that disagreed, or the account that challenged.
        challenger: AccountId,
        /// What the challenger locked (zero for the assigned checker).
        bond: Amount,
        /// The challenger's trace root.
        challenger_root: Hash,
        /// The challenger's last leaf, proven against its root; it differs from the
        /// provider's, which is where the bisection starts.
        challenger_final_leaf: Hash,
        /// Steps in the trace.
        step_count: u64,
        /// Bisection rounds the dispute takes: `ceil(log2 step_count)`.
        rounds: u32,
        /// The latest block time for round 0's moves.
        deadline_ms: u64,
    },
    /// A winning challenger got its bond back.
    BondReturned {
        /// The job.
        job: JobId,
        /// The challenger.
        who: AccountId,
        /// The bond.
        amount: Amount,
    },
    /// A losing challenger forfeited its bond.
    BondForfeited {
        /// The job.
        job: JobId,
        /// The challenger.
        who: AccountId,
        /// The bond.
        amount: Amount,
        /// The provider and its share.
        to_winner: (AccountId, Amount),
        /// The rest, to the treasury.
        to_treasury: Amount,
    },
    /// Both parties opened the round's step.
    DisputeRound {
        /// The job.
        job: JobId,
        /// The round completed.
        round: Round,
        /// The step opened.
        index: u64,
        /// Whether the two leaves were equal.
        agreed: bool,
    },
    /// A dispute was decided.
    DisputeResolved {
        /// The job.
        job: JobId,
        /// The winner.
        winner: AccountId,
        /// The loser.
        loser: AccountId,
        /// How it ended.
        end: DisputeEnd,
    },
    /// Stake was slashed.
    Slashed {
        /// The account.
        who: AccountId,
        /// The total taken from its stake.
        amount: Amount,
        /// Why.
        reason: SlashReason,
        /// The part paid to the winner or reporter (and who), if any.
        to_winner: Option<(AccountId, Amount)>,
        /// The part paid to the treasury.
        to_treasury: Amount,
    },
    /// A job settled: the provider paid, the checker paid if it agreed, the client refunded
    /// the rest of the escrow.
    Settled {
        /// The job.
        job: JobId,
        /// The provider.
        provider: AccountId,
        /// What the provider received.
        provider_paid: Amount,
        /// The treasury's cut of the provider's payment.
        protocol_fee: Amount,
        /// The checker and its fee, when a checker agreed.
        checker_paid: Option<(AccountId, Amount)>,
        /// The client.
        client: AccountId,
        /// What went back to the client.
        client_refund: Amount,
    },
    /// A job's whole escrow went back to its client.
    Refunded {
        /// The job.
        job: JobId,
        /// The client.
        client: AccountId,
        /// How much.
        amount: Amount,
        /// Why.
        reason: RefundReason,
    },
    /// A provider that lost a dispute is checked on its next jobs.
    ProbationStarted {
        /// The provider.
        who: AccountId,
        /// How many of its next jobs are checked.
        jobs: u32,
    },
    /// An account was jailed: it can no longer be assigned work or checks.
    Jailed {
        /// The account.
        who: AccountId,
        /// Why.
        reason: JailReason,
    },
}
