//! Attest's cross-crate tests: the deterministic many-node simulator (virtual clock, seeded
//! faulty network, crash/restart, Byzantine wrappers) and, later, process-level testnet tests.
//!
//! The simulator (TigerBeetle's VOPR idea) runs 4 to 10 real `NodeCore`s with in-memory
//! stores on a virtual clock, connects them through a seeded network that delays, drops,
//! duplicates, reorders and partitions messages, crashes and restarts nodes from their
//! stores, lets some nodes misbehave, and checks the ledger's invariants after every step.
//! A run is a pure function of its seed; a failing seed is printed with the command that
//! replays it.
//!
//! Environment: `ATTEST_SIM_SEEDS=N` runs N seeds per test instead of the default (from
//! `ATTEST_SIM_FIRST_SEED`, default 1), `ATTEST_SIM_SEED=S` runs only seed S (the replay),
//! `ATTEST_SIM_VERBOSE=1` prints every effect every node carries out, with its virtual time.
//!
//! - [`rng`]: the seeded generator, the only randomness;
//! - [`scenario`]: what a run does (roles, network faults, scheduled partitions and crashes);
//! - [`network`]: the event queue and the faulty links;
//! - [`sim`]: the run (nodes, main loop, lifecycle, end-of-run agreement);
//! - [`effects`]: one step in detail (deliveries, effects, faults, clients, garbage);
//! - [`byzantine`]: forged messages;
//! - [`clients`]: transfer traffic;
//! - [`invariants`]: the checks and the reference chain;
//! - [`runner`]: many seeds, environment variables, replay commands.

pub mod byzantine;
pub mod clients;
pub mod effects;
pub mod invariants;
pub mod network;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod sim;
