//! Every size bound of the protocol, in one place, with the reason for each.

/// Job input bytes. A prompt of a few thousand bytes covers the stand-in workload; the input
/// is stored on the ledger (the referee re-executes from it), so it must stay small.
pub const MAX_INPUT_BYTES: usize = 4096;

/// Output tokens a job may ask for. With the largest catalogue model (80 layers) and a full
/// input this keeps a trace under 420k steps: seconds of real work, a 13 MiB Merkle tree.
pub const MAX_OUTPUT_TOKENS: u32 = 1024;

/// Bytes of one activation (one step's hidden state). The widest catalogue model uses 128;
/// the bound leaves room for wider models without a format change.
pub const MAX_ACTIVATION_BYTES: usize = 1024;

/// Models one capacity advert may list. A node serves a handful; gossip messages stay small.
pub const MAX_ADVERT_MODELS: usize = 16;

/// Validators in a set, and so signatures in a commit certificate. Consensus traffic grows
/// with the square of this; 256 is far beyond a local testnet and keeps certificates ~25 KiB.
pub const MAX_VALIDATORS: usize = 256;

/// Bytes of one encoded signed transaction. The largest is an `OpenJob` with a full input
/// (about 4.3 KiB); the bound leaves headroom and caps what a peer can make us decode.
pub const MAX_TX_BYTES: usize = 8192;

/// The fewest bytes a signed transaction encodes to: its signer (32) and signature (64), and
/// at least one byte each for its nonce, fee and action tag.
pub const MIN_TX_BYTES: usize = 32 + 64 + 3;

/// Bytes of one encoded block: what bounds a block. A header and a full commit certificate
/// take well under 64 KiB; the rest is room for transactions (8 MiB).
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024 + 64 * 1024;

/// Transactions in one block: as many of the smallest as [`MAX_BLOCK_BYTES`] holds, so the
/// count never binds before the bytes do. It only bounds what a decoder will read.
pub const MAX_BLOCK_TXS: usize = MAX_BLOCK_BYTES / MIN_TX_BYTES;

/// Bytes of transactions a proposer puts in one block. A validator checks a proposal by
/// running it (and verifying the signatures of transactions it has not seen); 1 MiB holds at
/// most about 10,600 of the smallest transactions, about what the default mempool holds
/// (10,000), and even at 100 µs each that is checked in about a third of the round-0 propose
/// timeout (3 s). A fuller mempool makes fuller blocks, not more of them.
pub const MAX_PROPOSAL_BYTES: usize = 1024 * 1024;

/// Bytes of an encoded vote, advert or other small gossip message.
pub const MAX_SMALL_MESSAGE_BYTES: usize = 4096;
