//! Typed errors of the protocol crate, one enum per operation family.

/// A text or byte form that does not parse as the value it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// An identifier (chain id, model id, device name) was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// The kind of identifier.
        kind: &'static str,
    },
    /// An identifier was longer than its bound.
    #[error("{kind} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// The kind of identifier.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An identifier started with something other than `a-z` or `0-9`.
    #[error("{kind} {value:?} must start with a-z or 0-9")]
    BadStart {
        /// The kind of identifier.
        kind: &'static str,
        /// The rejected text.
        value: String,
    },
    /// An identifier held a character outside its alphabet.
    #[error("{kind} {value:?} contains {c:?}; allowed are a-z, 0-9 and {allowed:?}")]
    BadChar {
        /// The kind of identifier.
        kind: &'static str,
        /// The rejected text.
        value: String,
        /// The first character outside the alphabet.
        c: char,
        /// The characters allowed besides `a-z` and `0-9`.
        allowed: &'static str,
    },
}

/// A key, signature, hash or amount in text or bytes that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The value had the wrong number of bytes or characters.
    #[error("{what}: expected {expected} {unit}, got {got}")]
    Length {
        /// What was being parsed.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length offered.
        got: usize,
        /// `bytes` or `hex characters`.
        unit: &'static str,
    },
    /// The text lacked the required prefix (for example `ed25519-seed:`).
    #[error("{what}: expected the prefix {prefix:?}")]
    Prefix {
        /// What was being parsed.
        what: &'static str,
        /// The required prefix.
        prefix: &'static str,
    },
    /// The text was not lowercase or uppercase hexadecimal.
    #[error("{what}: not hexadecimal: {detail}")]
    Hex {
        /// What was being parsed.
        what: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// The bytes were not a valid ed25519 public key (not a curve point, or of small order).
    #[error("not a valid ed25519 public key: {0}")]
    PublicKey(&'static str),
    /// An amount was not a decimal number of units with at most six decimals.
    #[error("amount {text:?}: {reason}")]
    Amount {
        /// The rejected text.
        text: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A base58 PeerId did not decode to an ed25519 identity PeerId.
    #[error("peer id {text:?}: {reason}")]
    PeerId {
        /// The rejected text.
        text: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// Bytes that do not decode as the canonical encoding of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is longer than any valid encoding of the type.
    #[error("{what}: {len} bytes exceed the limit of {max}")]
    TooLarge {
        /// The type being decoded.
        what: &'static str,
        /// The input length.
        len: usize,
        /// The limit for this type.
        max: usize,
    },
    /// The input is malformed: truncated, a bad tag, a field over its bound, an invalid key.
    #[error("{what}: malformed: {detail}")]
    Malformed {
        /// The type being decoded.
        what: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// A valid value was followed by more bytes.
    #[error("{what}: {extra} trailing bytes after the value")]
    TrailingBytes {
        /// The type being decoded.
        what: &'static str,
        /// How many bytes followed.
        extra: usize,
    },
    /// The input decodes, but is not the one canonical encoding of its value (for example an
    /// over-long varint), so its hash would not be the value's hash.
    #[error("{what}: not the canonical encoding of its value")]
    NonCanonical {
        /// The type being decoded.
        what: &'static str,
    },
}

/// A signature that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not verify under the strict ed25519 rule for this signer and payload.
    #[error("{what}: ed25519 signature by {signer} does not verify")]
    Invalid {
        /// The kind of object signed.
        what: &'static str,
        /// The claimed signer, as hex.
        signer: String,
    },
}
