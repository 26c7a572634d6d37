//! The gossip topics. Versioned: a node ignores topics of other protocol versions. Names only:
//! the shell subscribes to them and the core sorts what arrives by them.

/// Signed transactions for the mempool, one per message (still accepted; nodes publish
/// [`TX_BATCHES`]).
pub const TXS: &str = "attest/txs/1";
/// Signed transactions for the mempool, a [`crate::wire::TxBatch`] per message: what a node
/// publishes, so the per-message costs of gossip are paid per batch, not per transaction.
pub const TX_BATCHES: &str = "attest/txs/2";
/// Consensus proposals and votes.
pub const CONSENSUS: &str = "attest/consensus/1";
/// Capacity adverts.
pub const ADVERTS: &str = "attest/adverts/1";
/// Every topic a node subscribes to.
pub const ALL: [&str; 4] = [TXS, TX_BATCHES, CONSENSUS, ADVERTS];
