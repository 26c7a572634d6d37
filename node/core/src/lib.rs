//! Attest's sans-IO node core.
//!
//! [`NodeCore`] is one node: the ledger participant ([`node`]: the committed chain, the
//! mempool, consensus glue, sync) and the market participant ([`market`]: the advert book, the
//! duties a node owes as provider, checker and dispute party, the gateway's output delivery,
//! job measurements), with the deterministic half of the simulated accelerator ([`accel`]:
//! device profiles, roofline timing, and, with the `cheats` feature only, the test cheats).
//! It takes inputs with the time as an argument and emits [`Effect`]s; it never touches a
//! socket, a file, the clock or OS randomness.
//!
//! Hosts: the node shell (`attest-node`), the in-process [`localnet`] and the simulator
//! (`attest-tests`) all carry out effects through one [`host`] over the [`store::Store`]
//! interface, so persistence and pruning are written once.
//!
//! It must never depend on tokio, libp2p, sled, axum, hyper or getrandom (`.ci/run` checks the
//! dependency tree), iterate a hash map, or put a ledger rule anywhere but in
//! `attest-contracts-sim` and `attest-chain`.

pub mod accel;
pub mod bounded;
pub mod history;
pub mod host;
pub mod localnet;
pub mod market;
pub mod mempool;
pub mod node;
pub mod statesync;
pub mod store;
pub mod topic;
pub mod wire;

pub use node::requests::Answer;
pub use node::{CoreConfig, CoreError, Effect, GossipVerdict, NodeCore, PeerKey, Persist};
