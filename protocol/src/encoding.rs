//! The canonical binary encoding: postcard 1.x, checked to be canonical on decode.
//!
//! postcard's wire format is specified and stable: fields in declaration order, unsigned
//! integers as LEB128 varints (u8 as one raw byte), signed integers zigzag-encoded, `bool` as
//! one byte 0 or 1, `Option` as a tag byte 0/1 and the value, enums as a varint variant index
//! and the fields, byte strings and sequences as a varint length and the elements, fixed-size
//! arrays as their elements with no length. Our types use no maps and no floats.
//!
//! Every value has exactly one accepted encoding: [`decode`] re-encodes what it read and
//! rejects the input unless the bytes are identical (this rules out over-long varints) and
//! rejects trailing bytes. So hashes and signatures over encodings are hashes and signatures
//! over values.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DecodeError;

/// A type with a canonical encoding and a bound on its encoded size.
pub trait Canonical: Serialize + DeserializeOwned {
    /// The type's name in errors.
    const NAME: &'static str;
    /// No valid encoding of the type is longer than this; longer input is refused unread.
    const MAX_ENCODED_LEN: usize;

    /// The canonical encoding.
    fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes the one canonical encoding of a value; any other input is an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_bounded(bytes, Self::NAME, Self::MAX_ENCODED_LEN)
    }
}

/// The canonical encoding of `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard fails only for sequences of unknown length and for serializer errors raised by
    // a type's own impl; none of ours does either.
    postcard::to_stdvec(value).expect("protocol types always encode")
}

/// The length of [`encode`]`(value)`, computed without building the bytes.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).expect("protocol types always encode")
}

/// Decodes `bytes` as the canonical encoding of a `T` of at most `max` bytes.
pub fn decode_bounded<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed {
            what,
            detail: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: rest.len(),
        });
    }
    if encode(&value) != bytes {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok(value)
}
