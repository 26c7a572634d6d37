//! Length-bounded containers: the only variable-length fields the wire types use.
//!
//! Every variable-length field in a message or transaction is one of these, so a decoder can
//! reject an oversized field by its length prefix, before it allocates or reads the body.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// A field or value longer than its bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("length {len} exceeds the limit of {max}")]
pub struct TooLong {
    /// The length that was offered.
    pub len: usize,
    /// The bound of the field.
    pub max: usize,
}

/// Bytes of at most `MAX` length. Encoded as a varint length and the raw bytes; shown as
/// lowercase hex in human-readable formats (JSON).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> Bytes<MAX> {
    /// Wraps `bytes`, refusing more than `MAX` of them.
    pub fn new(bytes: Vec<u8>) -> Result<Self, TooLong> {
        if bytes.len() > MAX {
            return Err(TooLong {
                len: bytes.len(),
                max: MAX,
            });
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The owned bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl<const MAX: usize> TryFrom<Vec<u8>> for Bytes<MAX> {
    type Error = TooLong;
    fn try_from(bytes: Vec<u8>) -> Result<Self, TooLong> {
        Self::new(bytes)
    }
}

impl<const MAX: usize> TryFrom<&[u8]> for Bytes<MAX> {
    type Error = TooLong;
    fn try_from(bytes: &[u8]) -> Result<Self, TooLong> {
        Self::new(bytes.to_vec())
    }
}

impl<const MAX: usize> Deref for Bytes<MAX> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for Bytes<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({})", hex::encode(&self.0))
    }
}

impl<const MAX: usize> Serialize for Bytes<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Bytes<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MAX: usize>;
        impl<const MAX: usize> Visitor<'_> for V<MAX> {
            type Value = Bytes<MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX} bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Bytes::new(v.to_vec()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                // Hex is twice as long as the bytes: check before decoding.
                if v.len() > MAX.saturating_mul(2) {
                    return Err(E::custom(TooLong {
                        len: v.len() / 2,
                        max: MAX,
                    }));
                }
                let bytes = hex::decode(v).map_err(|e| E::custom(format!("bad hex: {e}")))?;
                Bytes::new(bytes).map_err(E::custom)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V::<MAX>)
        } else {
            d.deserialize_bytes(V::<MAX>)
        }
    }
}

/// A vector of at most `MAX` elements. Encoded as a varint count and the elements.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    /// Wraps `items`, refusing more than `MAX` of them.
    pub fn new(items: Vec<T>) -> Result<Self, TooLong> {
        if items.len() > MAX {
            return Err(TooLong {
                len: items.len(),
                max: MAX,
            });
        }
        Ok(Self(items))
    }

    /// Appends `item` unless the vector is full; a full vector gives the item back.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.0.len() >= MAX {
            return Err(item);
        }
        self.0.push(item);
        Ok(())
    }

    /// The owned elements.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T, const MAX: usize> Deref for BoundedVec<T, MAX> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for BoundedVec<T, MAX> {
    type Error = TooLong;
    fn try_from(items: Vec<T>) -> Result<Self, TooLong> {
        Self::new(items)
    }
}

impl<T: fmt::Debug, const MAX: usize> fmt::Debug for BoundedVec<T, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<T: Serialize, const MAX: usize> Serialize for BoundedVec<T, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in &self.0 {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for BoundedVec<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const MAX: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for V<T, MAX> {
            type Value = BoundedVec<T, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a sequence of at most {MAX} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The declared count is checked before anything is allocated or read.
                let hint = seq.size_hint().unwrap_or(0);
                if hint > MAX {
                    return Err(de::Error::custom(TooLong {
                        len: hint,
                        max: MAX,
                    }));
                }
                let mut items = Vec::with_capacity(hint.min(1024));
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX {
                        return Err(de::Error::custom(TooLong {
                            len: MAX + 1,
                            max: MAX,
                        }));
                    }
                    items.push(item);
                }
                Ok(BoundedVec(items))
            }
        }
        d.deserialize_seq(V::<T, MAX>(PhantomData))
    }
}

/// Declares a validated identifier string: ASCII, bounded, from a fixed alphabet, starting with
/// a letter or digit. Encoded as a varint length and the UTF-8 bytes.
macro_rules! ident_string {
    ($(#[$meta:meta])* $name:ident, max = $max:expr, extra = $extra:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted identifier, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates `s`: 1 to `MAX_LEN` characters of `a-z`, `0-9` and the
            /// extra characters this type allows, starting with a letter or digit.
            pub fn new(s: &str) -> Result<Self, $crate::error::IdentError> {
                $crate::bounded::check_ident(stringify!($name), s, $max, $extra)?;
                Ok(Self(s.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::IdentError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a {} of at most {} characters", stringify!($name), $max)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::new(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use ident_string;

/// The shared validation of [`ident_string`] types.
pub(crate) fn check_ident(
    kind: &'static str,
    s: &str,
    max: usize,
    extra: &'static str,
) -> Result<(), crate::error::IdentError> {
    use crate::error::IdentError;
    if s.is_empty() {
        return Err(IdentError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdentError::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(IdentError::BadStart {
            kind,
            value: s.to_owned(),
        });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(*c)))
    {
        return Err(IdentError::BadChar {
            kind,
            value: s.to_owned(),
            c,
            allowed: extra,
        });
    }
    Ok(())
}
