//! The Attest node and the `attest` command-line tool.
//!
//! It owns everything impure: the sans-IO ledger core (`core`: chain, mempool and consensus
//! glue) and the Tendermint wrapper around Malachite's driver (`consensus`), the simulated
//! accelerator (`accel`: device profiles, roofline timing, test-only cheats, the job pool),
//! the libp2p/tokio shell (`net`, `shell`), sled storage with the vote write-ahead log
//! (`store`), the HTTP API (`api`), node homes, keys and genesis files, and the CLI.
//! `localnet` runs several cores in one process for tests and benchmarks. This crate is the
//! only place where I/O, clocks and OS randomness may enter; it must keep `attest-protocol`
//! and `attest-contracts-sim` free of them, and put no ledger rule anywhere but in those two
//! crates.

pub mod accel;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod consensus;
pub mod core;
pub mod genesis;
pub mod keyfile;
pub mod localnet;
pub mod market;
pub mod mempool;
pub mod metrics;
pub mod net;
pub mod shell;
pub mod store;
