//! State snapshots: the chain at one height, as bytes a node writes to disk and serves to
//! peers, and the checks that decide whether a snapshot can be trusted.
//!
//! A snapshot holds the head (height, hash, time), the certificate that committed it with the
//! validator set that signed it (the next block's `last_commit` is checked against them), the
//! state root and every state entry. [`Chain::from_snapshot`] trusts none of it: the entries
//! must hash to the root, the certificate must commit the head under the set. Whether the
//! root is the one the chain committed is the caller's check: against the next block's header
//! ([`Chain::check_committed`] does it on the first replayed block) or a trusted header.
//!
//! # Encoding
//!
//! `"attest-snapshot/v1\n"`, then `encode(SnapshotHeader)` with a varint length prefix, then
//! each entry as `varint(len) encode(key)` `varint(len) value`, then the 32-byte blake3 hash
//! of everything before it. Decoding checks the hash first, then every length and count
//! against its bound, so a truncated or corrupt file is an error, never a panic or a huge
//! allocation.

use attest_contracts_sim::{Key, SnapshotError as StateSnapshotError, State};
use attest_protocol::encoding::{decode_bounded, encode};
use attest_protocol::{Amount, BlockHash, CommitCertificate, Hash, Height, PublicKey};
use serde::{Deserialize, Serialize};

use crate::certificate::{CertError, verify_certificate};
use crate::chain::Chain;
use crate::genesis::GenesisFile;
use crate::validators::{ValidatorSet, ValidatorSetError};

/// The first bytes of every snapshot.
pub const MAGIC: &[u8] = b"attest-snapshot/v1\n";

/// The most entries a snapshot may hold (far above any live state a chain reaches).
pub const MAX_SNAPSHOT_ENTRIES: u64 = 100_000_000;

/// What a snapshot says about the head, before its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The chain's genesis hash: a snapshot of another chain is refused.
    pub genesis: Hash,
    /// The height the state is after.
    pub height: Height,
    /// That block's hash (zeros at height 0).
    pub last_hash: BlockHash,
    /// That block's time.
    pub last_time_ms: u64,
    /// The certificate that committed it (none at height 0).
    pub last_certificate: Option<CommitCertificate>,
    /// The validators (account, power) that decided it: they signed the certificate.
    pub previous_validators: Vec<(PublicKey, Amount)>,
    /// The state root after it.
    pub state_root: Hash,
    /// How many entries follow.
    pub entries: u64,
}

/// A chain at one height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The head and the root.
    pub header: SnapshotHeader,
    /// Every state entry, in key order: (key, the value's canonical bytes).
    pub entries: Vec<(Key, Vec<u8>)>,
}

/// Why a snapshot cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot, or another version.
    #[error("not an attest snapshot (the file does not start with the v1 magic)")]
    Magic,
    /// The bytes end early or the checksum does not match: a partial write or corruption.
    #[error("the checksum does not match: the snapshot is truncated or corrupt")]
    Checksum,
    /// Something inside does not decode.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The snapshot is of another chain.
    #[error("the snapshot is of genesis {got}, this chain's is {expected}")]
    WrongGenesis {
        /// This chain's genesis hash.
        expected: Hash,
        /// The snapshot's.
        got: Hash,
    },
    /// The entries do not rebuild the state with the claimed root.
    #[error("state: {0}")]
    State(#[from] StateSnapshotError),
    /// The certificate does not commit the head.
    #[error("the certificate does not commit block {height}")]
    CertificateMismatch {
        /// The head's height.
        height: Height,
    },
    /// The certificate is not valid under the validators the snapshot names.
    #[error("the head's certificate: {0}")]
    Certificate(#[from] CertError),
    /// The validator sets cannot be rebuilt.
    #[error("validators: {0}")]
    Validators(#[from] ValidatorSetError),
}

pub(crate) fn malformed(what: &'static str, detail: impl ToString) -> SnapshotError {
    SnapshotError::Malformed {
        what,
        detail: detail.to_string(),
    }
}

impl Snapshot {
    /// The snapshot's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put_bytes(&mut out, &encode(&self.header));
        for (key, value) in &self.entries {
            put_bytes(&mut out, &encode(key));
            put_bytes(&mut out, value);
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Reads a snapshot from its bytes. Checks the format only; [`Chain::from_snapshot`]
    /// checks the contents.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        if !bytes.starts_with(MAGIC) {
            return Err(SnapshotError::Magic);
        }
        let Some(body_len) = bytes.len().checked_sub(32) else {
            return Err(SnapshotError::Checksum);
        };
        if body_len < MAGIC.len()
            || blake3::hash(&bytes[..body_len]).as_bytes() != &bytes[body_len..]
        {
            return Err(SnapshotError::Checksum);
        }
        let mut rest = &bytes[MAGIC.len()..body_len];
        let header_bytes = take_bytes(&mut rest, "header")?;
        let header: SnapshotHeader = decode_bounded(header_bytes, "snapshot header", 1 << 20)
            .map_err(|e| malformed("header", e))?;
        if header.entries > MAX_SNAPSHOT_ENTRIES {
            return Err(malformed("header", "too many entries"));
        }
        // Each entry takes at least 2 bytes: the count cannot exceed what the bytes hold.
        let room = u64::try_from(rest.len() / 2).unwrap_or(u64::MAX);
        let mut entries =
            Vec::with_capacity(usize::try_from(header.entries.min(room)).unwrap_or(0));
        for _ in 0..header.entries {
            let key: Key = decode_bounded(take_bytes(&mut rest, "key")?, "state key", 256)
                .map_err(|e| malformed("entry key", e))?;
            let value = take_bytes(&mut rest, "value")?.to_vec();
            entries.push((key, value));
        }
        if !rest.is_empty() {
            return Err(malformed("snapshot", "bytes after the last entry"));
        }
        Ok(Snapshot { header, entries })
    }
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut n = bytes.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(bytes);
}

pub(crate) fn take_bytes<'a>(
    rest: &mut &'a [u8],
    what: &'static str,
) -> Result<&'a [u8], SnapshotError> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, tail) = rest
            .split_first()
            .ok_or_else(|| malformed(what, "ends inside a length"))?;
        *rest = tail;
        if shift > 56 {
            return Err(malformed(what, "length too long"));
        }
        len |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let len = usize::try_from(len).map_err(|_| malformed(what, "length too large"))?;
    if len > rest.len() {
        return Err(malformed(what, "ends inside its bytes"));
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    Ok(bytes)
}

impl Chain {
    /// A snapshot of the chain at its head.
    pub fn snapshot(&self, genesis_hash: Hash) -> Snapshot {
        let entries: Vec<_> = self.state().export().collect();
        let previous_validators = self
            .previous_validators()
            .map(|set| {
                set.validators()
                    .iter()
                    .map(|v| (v.account(), Amount(v.power())))
                    .collect()
            })
            .unwrap_or_default();
        Snapshot {
            header: SnapshotHeader {
                genesis: genesis_hash,
                height: self.height(),
                last_hash: self.last_hash(),
                last_time_ms: self.last_time_ms(),
                last_certificate: self.last_certificate().cloned(),
                previous_validators,
                state_root: self.state_root(),
                entries: entries.len() as u64,
            },
            entries,
        }
    }

    /// The chain a snapshot describes, once its entries hash to its root and its certificate
    /// commits its head under the validators it names.
    pub fn from_snapshot(
        genesis: &GenesisFile,
        snapshot: Snapshot,
    ) -> Result<Chain, SnapshotError> {
        let h = snapshot.header;
        if h.genesis != genesis.hash() {
            return Err(SnapshotError::WrongGenesis {
                expected: genesis.hash(),
                got: h.genesis,
            });
        }
        let state = State::import(snapshot.entries, &h.state_root)?;
        if state.chain_id() != &genesis.genesis.chain_id {
            return Err(malformed("state", "the meta entry names another chain"));
        }
        let previous = match (&h.last_certificate, h.height.0) {
            (None, 0) => None,
            (Some(cert), _) if h.height.0 > 0 => {
                if cert.height != h.height || cert.block != h.last_hash {
                    return Err(SnapshotError::CertificateMismatch { height: h.height });
                }
                let set = ValidatorSet::new(h.previous_validators.iter().copied())?;
                verify_certificate(&genesis.genesis.chain_id, &set, cert)?;
                Some(set)
            }
            _ => return Err(SnapshotError::CertificateMismatch { height: h.height }),
        };
        Ok(Chain::restore(
            state,
            h.height,
            h.last_hash,
            h.last_time_ms,
            h.last_certificate,
            previous,
        )?)
    }
}
