//! Typed errors: why a genesis or a transaction was refused.

use attest_protocol::workload::WorkloadError;
use attest_protocol::{AccountId, Amount, Hash, Height, JobId, Nonce, PublicKey, Round};

/// A genesis that cannot start a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// A parameter is out of its bounds.
    #[error("genesis parameter {field}: {reason}")]
    BadParam {
        /// The parameter.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An account is listed twice among the balances.
    #[error("account {account} has two genesis balances")]
    DuplicateBalance {
        /// The account.
        account: AccountId,
    },
    /// An account is listed twice among the stakes.
    #[error("account {account} has two genesis stakes")]
    DuplicateStake {
        /// The account.
        account: AccountId,
    },
    /// One node key is bound to two accounts.
    #[error("node {node} is bound to two genesis accounts")]
    DuplicateNode {
        /// The node key.
        node: PublicKey,
    },
    /// The genesis amounts add up to more than `u64::MAX` units.
    #[error("the genesis supply overflows")]
    SupplyOverflow,
}

/// Why a transaction was refused. A refused transaction changes nothing, not even the nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The nonce is not the account's next one (replayed or out of order).
    #[error("account {account}: nonce {got}, expected {expected}")]
    BadNonce {
        /// The sender.
        account: AccountId,
        /// The account's current nonce.
        expected: Nonce,
        /// The transaction's nonce.
        got: Nonce,
    },
    /// The account has used every nonce (2^64 transactions); it can send no more.
    #[error("account {account} has no nonce left")]
    NonceExhausted {
        /// The sender.
        account: AccountId,
    },
    /// The fee is below the chain's minimum.
    #[error("fee {fee} is below the minimum {min}")]
    FeeTooLow {
        /// The fee offered.
        fee: Amount,
        /// The chain's minimum fee.
        min: Amount,
    },
    /// The account cannot pay the fee and what the action needs.
    #[error("account {account} has {have}, needs {need}")]
    InsufficientBalance {
        /// The paying account.
        account: AccountId,
        /// Its balance (after any earlier debit of the same transaction).
        have: Amount,
        /// What this debit needs.
        need: Amount,
    },
    /// An amount that must be positive is zero.
    #[error("{what} must be positive")]
    ZeroAmount {
        /// Which amount.
        what: &'static str,
    },
    /// A sum or product of amounts overflows. Genesis bounds the supply, so this only meets
    /// absurd prices or amounts in a transaction.
    #[error("{what} overflows")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
    /// The node key's signature binding it to the sender does not verify.
    #[error("node {node} did not sign a binding to this account")]
    BadNodeBinding {
        /// The node key.
        node: PublicKey,
    },
    /// The node is already bound to another account.
    #[error("node {node} is already bound to account {account}")]
    NodeTaken {
        /// The node key.
        node: PublicKey,
        /// The account it is bound to.
        account: AccountId,
    },
    /// The account already stakes for a different node (one node per account).
    #[error("account {account} stakes for node {bound}, not {offered}")]
    NodeMismatch {
        /// The account.
        account: AccountId,
        /// The node it is bound to.
        bound: PublicKey,
        /// The node the transaction names.
        offered: PublicKey,
    },
    /// The account is jailed or banned and may not stake.
    #[error("account {account} is jailed")]
    Jailed {
        /// The account.
        account: AccountId,
    },
    /// The account has no stake.
    #[error("account {account} has no stake")]
    NotStaked {
        /// The account.
        account: AccountId,
    },
    /// The account has less bonded stake than the operation needs.
    #[error("account {account} has {have} bonded, needs {need}")]
    InsufficientStake {
        /// The account.
        account: AccountId,
        /// Its bonded stake.
        have: Amount,
        /// What is needed.
        need: Amount,
    },
    /// The account already has the most unbonding entries allowed.
    #[error("account {account} already has {max} unbonding entries")]
    TooManyUnbonding {
        /// The account.
        account: AccountId,
        /// The bound.
        max: usize,
    },
    /// A client named itself as the provider.
    #[error("account {account} cannot open a job with itself")]
    SelfDeal {
        /// The account.
        account: AccountId,
    },
    /// The job cannot run: unknown model, too many tokens, or similar.
    #[error("job cannot run: {0}")]
    Workload(#[from] WorkloadError),
    /// The input is longer than the chain allows.
    #[error("input is {len} bytes; the chain allows {max}")]
    InputTooLong {
        /// The input length.
        len: usize,
        /// The chain's bound.
        max: u32,
    },
    /// The commit deadline is zero or beyond the chain's bound.
    #[error("deadline of {got} ms; it must be between 1 and {max}")]
    BadDeadline {
        /// The deadline asked for.
        got: u32,
        /// The chain's bound.
        max: u32,
    },
    /// The named provider may not be assigned work.
    #[error("provider {provider} is not eligible: {reason}")]
    ProviderNotEligible {
        /// The provider.
        provider: AccountId,
        /// Why.
        reason: &'static str,
    },
    /// A job with this id exists already.
    #[error("job {job} already exists")]
    DuplicateJob {
        /// The job.
        job: JobId,
    },
    /// No job has this id.
    #[error("no job {job}")]
    UnknownJob {
        /// The job.
        job: JobId,
    },
    /// The job is not in the phase this transaction needs.
    #[error("job {job} is {actual}; this needs it {expected}")]
    WrongPhase {
        /// The job.
        job: JobId,
        /// The phase the transaction needs.
        expected: &'static str,
        /// The job's phase.
        actual: &'static str,
    },
    /// The sender is not the job's provider.
    #[error("{signer} is not the provider of job {job}")]
    NotProvider {
        /// The job.
        job: JobId,
        /// The sender.
        signer: AccountId,
    },
    /// The sender is not the job's assigned checker.
    #[error("{signer} is not the checker of job {job}")]
    NotChecker {
        /// The job.
        job: JobId,
        /// The sender.
        signer: AccountId,
    },
    /// The sender is neither party of the job's dispute.
    #[error("{signer} is not a party of the dispute over job {job}")]
    NotDisputeParty {
        /// The job.
        job: JobId,
        /// The sender.
        signer: AccountId,
    },
    /// The deadline for this move has passed.
    #[error(
        "job {job}: the deadline was block time {deadline_ms} ms, this block's time is {time_ms} ms"
    )]
    DeadlinePassed {
        /// The job.
        job: JobId,
        /// The latest block time the move could land at.
        deadline_ms: u64,
        /// The current block's time.
        time_ms: u64,
    },
    /// No account other than the provider and the client can check a job of this model:
    /// its result could never be checked, so the job is refused.
    #[error(
        "no staked account other than the provider and the client can run model {model}, so no result of it could be checked"
    )]
    NoCapableChecker {
        /// The model.
        model: String,
    },
    /// This account may not challenge the job's result: it is its provider, or neither an
    /// eligible staked account nor the job's client.
    #[error("{signer} may not challenge job {job}: {reason}")]
    MayNotChallenge {
        /// The job.
        job: JobId,
        /// The sender.
        signer: AccountId,
        /// Why.
        reason: &'static str,
    },
    /// The step count is not the one the job's model, input and token count give.
    #[error("job {job}: step count {got}, the job has {expected}")]
    WrongStepCount {
        /// The job.
        job: JobId,
        /// The job's step count.
        expected: u64,
        /// The step count offered.
        got: u64,
    },
    /// The token count is not the job's `max_tokens` (the workload always generates them all).
    #[error("job {job}: {got} tokens, the job generates {expected}")]
    WrongTokens {
        /// The job.
        job: JobId,
        /// The job's `max_tokens`.
        expected: u32,
        /// The count offered.
        got: u32,
    },
    /// The result's final activation is not as wide as the job's activations (the model's
    /// hidden lanes, then the 32-byte output accumulator).
    #[error("job {job}: the final activation is {got} bytes, the job's activations are {expected}")]
    FinalActivationWidth {
        /// The job.
        job: JobId,
        /// The job's activation width.
        expected: usize,
        /// The width offered.
        got: usize,
    },
    /// The result's output hash is not the accumulator its final activation ends with: the
    /// trace it commits did not produce the output it claims.
    #[error(
        "job {job}: output hash {output_hash}, the final activation's accumulator is {accumulator}"
    )]
    OutputHashMismatch {
        /// The job.
        job: JobId,
        /// The output hash committed.
        output_hash: Hash,
        /// The accumulator at the end of the final activation.
        accumulator: Hash,
    },
    /// The proof of a last leaf (a result's, or a disagreeing verdict's) does not verify
    /// against the trace root it comes with.
    #[error("job {job}: the last leaf's proof (step {index}) does not verify against its root")]
    BadFinalProof {
        /// The job.
        job: JobId,
        /// The last step's index.
        index: u64,
    },
    /// A disagreeing verdict names the provider's own trace root.
    #[error("job {job}: a disagreeing verdict must name a different trace root")]
    DisagreeWithSameRoot {
        /// The job.
        job: JobId,
    },
    /// A disagreeing verdict shows the provider's own last leaf: the checker reached the same
    /// last state, and so the same output, so it must agree.
    #[error("job {job}: the disagreeing verdict shows the provider's own last leaf; it must agree")]
    DisagreementWithoutDifference {
        /// The job.
        job: JobId,
    },
    /// A dispute move for another round than the current one.
    #[error("job {job}: move for round {got}, the dispute is in round {expected}")]
    WrongRound {
        /// The job.
        job: JobId,
        /// The current round.
        expected: Round,
        /// The move's round.
        got: Round,
    },
    /// A dispute opening at another index than the round asks for.
    #[error("job {job}: opened step {got}, the round asks for step {expected}")]
    WrongIndex {
        /// The job.
        job: JobId,
        /// The index the round asks for.
        expected: u64,
        /// The index opened.
        got: u64,
    },
    /// An inclusion proof does not verify against the mover's committed root.
    #[error("job {job}: the proof of step {index} does not verify against the committed root")]
    BadProof {
        /// The job.
        job: JobId,
        /// The index opened.
        index: u64,
    },
    /// The party has already made its move this round.
    #[error("job {job}: {who} already moved in round {round}")]
    AlreadyMoved {
        /// The job.
        job: JobId,
        /// The party.
        who: AccountId,
        /// The round.
        round: Round,
    },
    /// A move of a kind the dispute does not need now (a witness during bisection, a witness
    /// from the provider, an opening after the bisection).
    #[error("job {job}: unexpected move: {reason}")]
    UnexpectedMove {
        /// The job.
        job: JobId,
        /// Why the move is not expected.
        reason: &'static str,
    },
    /// The witness activation is not as wide as the job's activations.
    #[error("job {job}: the witness is {got} bytes, the job's activations are {expected}")]
    WitnessWidth {
        /// The job.
        job: JobId,
        /// The job's activation width.
        expected: usize,
        /// The width offered.
        got: usize,
    },
    /// The witness activation does not hash to the agreed leaf.
    #[error("job {job}: the witness does not hash to the agreed leaf of step {index}")]
    WitnessMismatch {
        /// The job.
        job: JobId,
        /// The agreed step.
        index: u64,
    },
    /// The two votes of an equivocation evidence do not conflict.
    #[error("the evidence's votes do not conflict")]
    NotConflicting,
    /// A vote of an equivocation evidence has a bad signature.
    #[error("an evidence vote by {signer} has a bad signature")]
    BadEvidenceSignature {
        /// The claimed signer.
        signer: AccountId,
    },
    /// The equivocating signer has no stake to slash.
    #[error("{account} is not a staked validator")]
    NotValidator {
        /// The signer.
        account: AccountId,
    },
    /// The evidence's votes are older than `evidence_blocks`.
    #[error("equivocation at height {height} is too old: evidence is heard for {window} blocks")]
    EvidenceTooOld {
        /// The votes' height.
        height: Height,
        /// The window (`evidence_blocks`).
        window: u64,
    },
    /// The evidence's votes are for a height above the block's: no such height has been voted
    /// on, and its evidence would stay in the live state until that height.
    #[error("equivocation at height {height} is from the future: this block is at {current}")]
    EvidenceFromTheFuture {
        /// The votes' height.
        height: Height,
        /// The block's height.
        current: Height,
    },
    /// This equivocation (signer, height, round, kind) has already been punished.
    #[error("equivocation by {signer} at height {height} round {round} was already reported")]
    DuplicateEvidence {
        /// The signer.
        signer: AccountId,
        /// The height.
        height: Height,
        /// The round.
        round: Round,
    },
}
