//! The Attest node and the `attest` command-line tool.
//!
//! Today it runs the deterministic workload from the command line (`attest run`) and lists
//! the model catalogue (`attest models`). The sans-IO node core, the libp2p/tokio shell,
//! storage and the HTTP API arrive with the ledger issue. This crate is the only place where
//! I/O, clocks and OS randomness may enter; it must keep `attest-protocol` and
//! `attest-contracts-sim` free of them.

pub mod cli;
pub mod config;
pub mod consensus;
pub mod core;
pub mod genesis;
pub mod keyfile;
pub mod mempool;
pub mod net;
pub mod shell;
pub mod store;
pub mod localnet;
