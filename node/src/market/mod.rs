//! The market: what this node knows of other providers' capacity, and how a gateway chooses
//! among them (DESIGN.md section 5).
//!
//! Everything here is pure and deterministic, like the ledger core: the time comes in as
//! `now_ms`, the ledger state as a `&State`, and results go out as values. It never does I/O,
//! never reads a clock and never iterates a hash map, so two nodes with the same adverts and
//! the same state pick the same provider. The shell feeds it gossip and acts on its answers.

pub mod adverts;
