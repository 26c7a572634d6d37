//! Attest's ledger rulebook: the deterministic state machine every node and auditor replays.
//! It owns accounts and fees, stake with unbonding and jailing, job escrow, the spot-check
//! draw, verdicts, the bisection dispute game with its one-step referee, slashing, settlement
//! and the invariants an auditor checks.
//!
//! It must never do I/O, read the clock or OS randomness, use floats or iterate a hash map:
//! the same genesis and blocks give the same state root on every machine. Everything from
//! outside comes in as a [`Ctx`] (header facts) or a [`Verified`](attest_protocol::Verified)
//! transaction, and it must never panic on a transaction: every refusal is a [`TxError`]
//! value, and a refused transaction changes nothing.
//!
//! Entry points: [`State::from_genesis`], [`State::apply`], [`State::end_block`],
//! [`State::state_root`], [`State::speculate`] and [`State::check_block`].
//!
//! # The rules at a glance
//!
//! - Every transaction: nonce = the account's nonce, fee >= `min_fee` (paid to the proposer);
//!   all or nothing ([`apply`]).
//! - Time: every deadline, window and release is in milliseconds of block time (the header's
//!   `time_ms`); a timeout fires at the end of the first block whose time reaches it.
//! - Stake: bound to a node key that signed a binding and to the node's device (which models
//!   it can hold); unbonding for `unbonding_ms`, still slashable; `min_stake` bonded to be
//!   assigned work or checks ([`apply::stake`]).
//! - Jobs: only with a provider whose device can run the model and at least one other account
//!   that can check it; escrow `price * max_tokens + checker_fee`; the result must carry the
//!   step and token counts the job implies and open its last leaf, whose activation ends in
//!   the output hash; a missed commit refunds the client and penalizes the provider
//!   ([`apply::jobs`]).
//! - Spot-checks: drawn from `H(block hash, job id)` at rate `p` (always on probation or
//!   when the client bought `Always`), checker drawn stake-weighted from the same seed among
//!   the accounts whose device can run the model; a disagreeing checker must show a
//!   different last leaf. Within the verdict window any staked account, or the job's client,
//!   may challenge the result with a bond ([`draw`], [`apply::checks`]).
//! - Disputes: from the agreed initial activation to the two different last leaves,
//!   `ceil(log2 L)` bisection rounds, one re-executed step, always a loser; a losing provider
//!   or assigned checker is slashed `slash_fraction` of its stake, at least 20% of it to the
//!   winner; a losing challenger forfeits its bond ([`apply::disputes`]).
//! - Equivocation evidence slashes and jails ([`apply::evidence`]).
//! - Settlement: the provider gets `price * tokens` less the protocol share, an agreeing
//!   checker its fee, the client the rest ([`apply::jobs`]).

pub mod apply;
pub mod draw;
pub mod error;
pub mod events;
pub mod invariants;
pub mod params;
pub mod state;

pub use error::{GenesisError, TxError};
pub use events::{DisputeEnd, Event, JailReason, RefundReason, SlashReason};
pub use invariants::InvariantViolation;
pub use params::Params;
pub use state::keys::{Change, Delta, Entry, Key};
pub use state::{
    Account, Check, Committed, Ctx, Dispute, Genesis, Job, JobCounts, JobPhase, Record, Review,
    Side, SnapshotError, StakeEntry, StakeStatus, State, StateProof, Unbond,
};

/// A device that holds every catalogue model, for unit tests.
#[cfg(test)]
pub(crate) fn test_capability() -> attest_protocol::tx::Capability {
    attest_protocol::tx::Capability {
        device: attest_protocol::DeviceName::new("cpu").expect("a device name"),
        memory_bytes: 256_000_000_000,
    }
}
