//! The gossip topics. Versioned: a node ignores topics of other protocol versions. Names only:
//! the shell subscribes to them and the core sorts what arrives by them.

/// Signed transactions for the mempool.
pub const TXS: &str = "attest/txs/1";
/// Consensus proposals and votes.
pub const CONSENSUS: &str = "attest/consensus/1";
/// Capacity adverts.
pub const ADVERTS: &str = "attest/adverts/1";
/// Every topic a node subscribes to.
pub const ALL: [&str; 3] = [TXS, CONSENSUS, ADVERTS];
