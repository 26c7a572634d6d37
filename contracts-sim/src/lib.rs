//! Attest's ledger rulebook: the deterministic state machine every node and auditor replays
//! (accounts, stake, escrow, jobs, spot-checks, disputes, slashing).
//!
//! It must never do I/O, read the clock or OS randomness, or iterate a hash map: the same
//! blocks give the same state root on every machine. The state machine itself is the subject
//! of the contracts-sim issue; this crate holds nothing yet.
