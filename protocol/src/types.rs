//! Validated newtypes: identifiers, counters, amounts and the named hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bounded::ident_string;
use crate::error::ParseError;
use crate::hash::{Hash, hash_newtype};

ident_string!(
    /// The name of one ledger (`attest-local`, `attest-testnet-3`). Every signature covers it,
    /// so a transaction signed for one chain is invalid on every other.
    ChainId, max = 32, extra = "-"
);

ident_string!(
    /// A model's name and version in the catalogue (`attest-base-8b`).
    ModelId, max = 48, extra = "-."
);

ident_string!(
    /// An accelerator profile's name (`h100`, `wse-3`).
    DeviceName, max = 32, extra = "-._"
);

/// Declares a transparent integer newtype.
macro_rules! int_newtype {
    ($(#[$meta:meta])* $name:ident($int:ty)) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

int_newtype!(
    /// A block height. The genesis state is height 0; the first block is height 1.
    Height(u64)
);
int_newtype!(
    /// A consensus round within a height, from 0.
    Round(u32)
);
int_newtype!(
    /// An account's transaction sequence number: the next transaction must carry exactly the
    /// account's current nonce, which then increments.
    Nonce(u64)
);

impl Height {
    /// The next height. Heights never reach `u64::MAX` (one block per nanosecond would take
    /// 584 years), so this saturates rather than wraps.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

/// An amount of the ledger's token in integer micro-units (1 token = 1,000,000 units).
///
/// Arithmetic is checked: an overflow or underflow is an error the caller must handle, never a
/// wrap. Text form: a decimal number of tokens with at most six decimals (`12.5`, `0.000001`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(pub u64);

impl Amount {
    /// Units per token.
    pub const UNITS_PER_TOKEN: u64 = 1_000_000;
    /// No value.
    pub const ZERO: Amount = Amount(0);

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul(self, n: u64) -> Option<Amount> {
        self.0.checked_mul(n).map(Amount)
    }

    /// A whole number of tokens, or `None` on overflow.
    pub fn tokens(n: u64) -> Option<Amount> {
        n.checked_mul(Self::UNITS_PER_TOKEN).map(Amount)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::UNITS_PER_TOKEN;
        let frac = self.0 % Self::UNITS_PER_TOKEN;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

impl FromStr for Amount {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::Amount {
            text: s.to_owned(),
            reason,
        };
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected decimal digits before the point"));
        }
        if s.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad("expected decimal digits after the point"));
        }
        if frac.len() > 6 {
            return Err(bad("more than six decimals (the unit is 0.000001)"));
        }
        let whole: u64 = whole.parse().map_err(|_| bad("too large"))?;
        let frac_units: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}")
                .parse()
                .map_err(|_| bad("bad decimals"))?
        };
        whole
            .checked_mul(Self::UNITS_PER_TOKEN)
            .and_then(|u| u.checked_add(frac_units))
            .map(Amount)
            .ok_or_else(|| bad("too large"))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Units as an integer in every format: JSON readers must not meet rounding.
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Amount)
    }
}

hash_newtype!(
    /// A transaction's hash (tag `attest/tx/v1` over the encoded `Signed<Tx>`).
    TxHash
);
hash_newtype!(
    /// A block's hash (tag `attest/block-header/v1` over the encoded header).
    BlockHash
);
hash_newtype!(
    /// A job's id: the hash of the transaction that opened the job.
    JobId
);

impl From<TxHash> for JobId {
    fn from(h: TxHash) -> Self {
        JobId(h.0)
    }
}

impl From<Hash> for TxHash {
    fn from(h: Hash) -> Self {
        TxHash(h.0)
    }
}

impl From<Hash> for BlockHash {
    fn from(h: Hash) -> Self {
        BlockHash(h.0)
    }
}
