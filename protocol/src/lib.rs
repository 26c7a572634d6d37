//! Attest's protocol: identifiers, keys, the canonical encoding, signing, hashing, every
//! message and transaction, the trace Merkle tree and the deterministic workload.
//!
//! This crate is pure. It never does I/O, never reads the clock or OS randomness, and never
//! iterates a hash map: given the same inputs it gives the same bytes on every machine. Every
//! node, auditor and simulator relies on that, so anything impure belongs in the node shell (`attest-node`) or the CLI.
//! `docs/PROTOCOL.md` specifies everything here for third-party verifiers.

pub mod advert;
pub mod bounded;
pub mod consensus;
pub mod encoding;
pub mod error;
pub mod hash;
pub mod keys;
pub mod limits;
pub mod merkle;
pub mod signed;
pub mod smt;
pub mod tx;
pub mod types;
pub mod vote;
pub mod workload;

pub use advert::CapacityAdvert;
pub use bounded::{BoundedVec, Bytes, TooLong};
pub use consensus::{Block, BlockHeader, CommitCertificate, CommitSig, Proposal, Vote, VoteKind};
pub use encoding::Canonical;
pub use error::{DecodeError, IdentError, ParseError, SignatureError};
pub use hash::{Hash, hash_tagged};
pub use keys::{AccountId, PublicKey, SecretKey, Signature, verify_batch};
pub use merkle::{MerkleProof, MerkleTree};
pub use signed::{Signable, Signed, Verified, signing_payload};
pub use smt::{SmtProof, SparseMerkleTree};
pub use tx::{Action, SignedTx, Tx, tx_hash};
pub use types::{
    Amount, BlockHash, ChainId, DeviceName, Height, JobId, ModelId, Nonce, Round, TxHash,
};
