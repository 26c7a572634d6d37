//! Domain-separated blake3 hashing and the 32-byte hash newtypes.
//!
//! Every hash in Attest is `blake3(tag || 0x00 || data)`, where `tag` is an ASCII string from
//! [`tag`] that names the kind of object and its version. Tags contain no NUL byte, so the
//! prefix is unambiguous and no two kinds of object can share a hash. `docs/PROTOCOL.md` lists
//! every tag.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ParseError;

/// The domain tags. Changing any of them changes every hash of that kind: bump the version.
pub mod tag {
    /// A transaction's hash: over the canonical encoding of the whole `Signed<Tx>`.
    pub const TX: &str = "attest/tx/v1";
    /// A block's hash: over the canonical encoding of its header.
    pub const BLOCK_HEADER: &str = "attest/block-header/v1";
    /// A commit certificate's hash, which the next block's header carries.
    pub const COMMIT: &str = "attest/commit/v1";
    /// A trace leaf: over the step index (u64 little-endian) and the step's activation.
    pub const TRACE_LEAF: &str = "attest/trace-leaf/v1";
    /// An inner Merkle node: over the left child's hash and the right child's hash.
    pub const MERKLE_NODE: &str = "attest/merkle-node/v1";
    /// The root of a Merkle tree with no leaves (over no data).
    pub const MERKLE_EMPTY: &str = "attest/merkle-empty/v1";
    /// A job's output: over the output bytes.
    pub const OUTPUT: &str = "attest/output/v1";
    /// A state tree leaf: over the leaf's key and value hash.
    pub const SMT_LEAF: &str = "attest/smt-leaf/v1";
    /// A state tree inner node: over the left child's hash and the right child's hash.
    pub const SMT_NODE: &str = "attest/smt-node/v1";
    /// A state entry's position in the state tree: over the canonical encoding of its key.
    pub const STATE_KEY: &str = "attest/state-key/v1";
    /// A state entry's value in the state tree: over the canonical encoding of its value.
    pub const STATE_VALUE: &str = "attest/state-value/v1";
    /// The spot-check draw: over a block hash and a job id.
    pub const SPOT_CHECK: &str = "attest/spot-check/v1";
    /// The seed of a model's weights (blake3 XOF): over the model id.
    pub const WEIGHTS: &str = "attest/weights/v1";
    /// The random weights of one batch verification (`keys::verify_batch`): drawn from every
    /// item of the batch, so they are fixed only once the batch is. Local to a verifier; never
    /// on the ledger.
    pub const BATCH_WEIGHTS: &str = "attest/batch-weights/v1";
}

/// Hashes `parts`, concatenated, under domain `tag`: `blake3(tag || 0x00 || parts...)`.
pub fn hash_tagged(tag: &str, parts: &[&[u8]]) -> Hash {
    let len = parts.iter().fold(tag.len().saturating_add(1), |n, p| {
        n.saturating_add(p.len())
    });
    if len <= SHORT_INPUT {
        // Short inputs (tree nodes and leaves, keys, small values) are laid out on the stack
        // and hashed in one call: the same bytes give the same hash, without building an
        // incremental hasher (about 2 KB of state) for two compressions.
        debug_assert!(!tag.as_bytes().contains(&0), "tags contain no NUL");
        let mut input = [0u8; SHORT_INPUT];
        let mut at = 0;
        for piece in [tag.as_bytes(), &[0]]
            .into_iter()
            .chain(parts.iter().copied())
        {
            input[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        return Hash(*blake3::hash(&input[..at]).as_bytes());
    }
    let mut h = tagged_hasher(tag);
    for p in parts {
        h.update(p);
    }
    Hash(*h.finalize().as_bytes())
}

/// The longest input (tag, NUL and parts) [`hash_tagged`] lays out on the stack.
const SHORT_INPUT: usize = 256;

/// A blake3 hasher already fed with the domain prefix of `tag`.
pub fn tagged_hasher(tag: &str) -> blake3::Hasher {
    debug_assert!(!tag.as_bytes().contains(&0), "tags contain no NUL");
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    h.update(&[0]);
    h
}

/// Declares a 32-byte hash newtype: raw bytes in binary encodings, lowercase hex in text.
macro_rules! hash_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Ok(Self(crate::hash::parse_hex32(stringify!($name), s)?))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    Ok(Self(<[u8; 32]>::deserialize(d)?))
                }
            }
        }
    };
}
pub(crate) use hash_newtype;

hash_newtype!(
    /// A blake3 hash of some tagged data.
    Hash
);

/// Parses exactly 64 hex characters into 32 bytes.
pub(crate) fn parse_hex32(what: &'static str, s: &str) -> Result<[u8; 32], ParseError> {
    if s.len() != 64 {
        return Err(ParseError::Length {
            what,
            expected: 64,
            got: s.len(),
            unit: "hex characters",
        });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| ParseError::Hex {
        what,
        detail: e.to_string(),
    })?;
    Ok(out)
}
