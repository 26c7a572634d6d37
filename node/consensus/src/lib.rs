//! Tendermint consensus through the Malachite core driver.
//!
//! This crate owns one node's part in ordering the ledger: it runs the pure driver
//! (`arc-malachitebft-core-driver`) with our types behind its `Context`, and does everything the
//! driver does not (signatures, membership, bounds, buffering, timeouts tagged with heights,
//! restart safety, commit certificates, equivocation evidence). It is sans-IO: [`Consensus`]
//! takes [`Input`]s and returns [`Output`]s; the host (`NodeCore` in `attest-core`) persists,
//! broadcasts and arms timers. The chain's rules it relies on (validator sets, proposers,
//! the certificate quorum) are `attest-chain`'s; it must not restate them. It must never do I/O, read a clock, draw randomness or iterate a hash map, and
//! nothing a peer sends may make it panic. It must never let a message reach the driver
//! unverified: the driver does no cryptography and trusts every input. It depends on no
//! tokio, libp2p, sled, axum, hyper or getrandom (`.ci/run` checks).
//!
//! How a host drives it:
//! 1. `Consensus::new(config, key, wal)` with the validator's own messages from its
//!    write-ahead log, then `Input::StartHeight` with the height after the last committed
//!    block and that height's [`attest_chain::ValidatorSet`].
//! 2. Feed every gossiped vote and proposal (a proposal with the host's verdict on its block;
//!    [`Consensus::precheck_proposal`] first avoids judging junk), every elapsed timer, and
//!    the block for each `GetValue`. Carry out the outputs in order: persist own votes before
//!    sending them.
//! 3. On `Decided`, store the block and certificate, apply the block, start the next height.
//!    Messages for the next two heights are buffered meanwhile; anything further ahead is a
//!    `FarFutureHeight` error, the host's cue to sync.
//! 4. Re-broadcast [`Consensus::own_messages`] on a timer: gossip may lose messages, and
//!    Tendermint is only live if they eventually arrive.

mod buffer;
mod context;
mod engine;
mod io;
mod own;
mod polka;
mod timeouts;

pub use buffer::{FUTURE_HEIGHTS, MAX_PROPOSALS, MAX_PROPOSALS_PER_SIGNER, MAX_VOTES_PER_SIGNER};
pub use context::{
    Address, AttestContext, AttestProposal, AttestVote, BlockValue, ConsensusHeight,
    DriverValidators, Ed25519Scheme, Validator,
};
pub use engine::{Consensus, MAX_PROPOSALS_PER_ROUND, MAX_ROUND_AHEAD};
pub use io::{BlockValidity, ConsensusConfig, Input, InputError, Output, OwnMessage, RestoreError};
pub use polka::{LockRecord, PolkaCert};
pub use timeouts::{TimeoutConfig, TimeoutId, TimeoutKind};
