//! The Attest node shell: everything impure around the sans-IO core.
//!
//! It owns the tokio loop that drives `attest_core::NodeCore` (`shell`), libp2p (`net`), sled
//! storage with the vote and lock write-ahead log (`sled_store`), the accelerator pool that runs
//! jobs on blocking threads (`accel_pool`), the HTTP API (`api`) with its query types (`views`),
//! Prometheus metrics (`metrics`), node homes and config files (`config`), key files
//! (`keyfile`), reading and writing genesis files (`genesis`), and running a node process
//! (`process`: settings from a node home, the runtime, the API and signals). This crate is where I/O,
//! clocks and OS randomness enter; it decides nothing about the ledger or the market: chain
//! rules are `attest-chain`'s, consensus is `attest-consensus`'s, and every decision a node
//! makes is `attest-core`'s. The `attest` binary that runs it is `attest-cli` (`testnet/`).

pub mod accel_pool;
pub mod api;
pub mod config;
pub mod genesis;
pub mod keyfile;
pub mod metrics;
pub mod net;
pub mod process;
pub mod reach;
pub mod recent;
pub mod shell;
pub mod sled_store;
pub mod snapshots;
pub mod views;
