//! Attest's cross-crate tests: the deterministic many-node simulator (virtual clock, seeded
//! faulty network, crash/restart, Byzantine wrappers) and process-level testnet tests.
//!
//! The simulator drives `NodeCore` from `attest-node`, which arrives with the ledger issue;
//! until then this crate holds nothing. It may use every other crate and may be impure, but a
//! simulator run must depend on its seed alone.
