//! State sync: a snapshot cut into chunks a joining node fetches from several peers, and the
//! checks that let it trust the result without replaying the chain.
//!
//! A [`Manifest`] describes the state after height `S`: the head's hash and time, the state
//! root, the validators that decided `S`, and one hash per chunk. Everything in it is a
//! function of the committed chain, so every honest node that snapshots height `S` serves the
//! same manifest and the same chunks, and a chunk can come from any of them. A chunk is
//! entries in key order (`varint(len) encode(key)` `varint(len) value`, as in a snapshot
//! file), at most [`CHUNK_BYTES`] each.
//!
//! Nothing a peer sends is trusted. A chunk must hash to the manifest's chunk hash. The
//! manifest itself is trusted only through the **anchor**: block `S + 1`, whose header carries
//! the state root after `S` and whose hash the joining node has linked, header by header
//! through parent hashes, to a block hash it was given (`--trust-hash` at `--trust-height`).
//! [`restore`] checks the anchor against the manifest, the chunks against their hashes, the
//! entries against the root, and the anchor's `last_commit` against the named validators.

use attest_contracts_sim::{Key, State};
use attest_protocol::encoding::{decode_bounded, encode};
use attest_protocol::hash::hash_tagged;
use attest_protocol::limits::MAX_VALIDATORS;
use attest_protocol::{
    Amount, Block, BlockHash, BoundedVec, Canonical, ChainId, Hash, Height, PublicKey,
};
use serde::{Deserialize, Serialize};

use crate::certificate::verify_certificate;
use crate::chain::Chain;
use crate::snapshot::{SnapshotError, malformed, put_bytes, take_bytes};
use crate::validators::ValidatorSet;

/// The most bytes of entries in one chunk (a chunk is cut before the entry that would pass
/// it; one entry is far smaller).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The most chunks a manifest may list: a joining node holds every chunk until the state is
/// checked, so this bounds what a lying peer can make it download and hold (1 GiB).
pub const MAX_CHUNKS: usize = 1024;

/// Domain tag of a chunk's hash (over the chunk's bytes).
pub const CHUNK_TAG: &str = "attest/snapshot-chunk/v1";
/// Domain tag of a manifest's id (over its canonical encoding).
pub const MANIFEST_TAG: &str = "attest/snapshot-manifest/v1";

/// What a node offers for state sync at one height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The height the state is after.
    pub height: Height,
    /// That block's hash.
    pub last_hash: BlockHash,
    /// That block's time.
    pub last_time_ms: u64,
    /// The state root after it (block `height + 1` carries it).
    pub state_root: Hash,
    /// The validators (account, power) that decided `height`; they signed the certificate
    /// block `height + 1` carries as `last_commit`.
    pub previous_validators: BoundedVec<(PublicKey, Amount), MAX_VALIDATORS>,
    /// How many entries the chunks hold in all.
    pub entries: u64,
    /// The hash of each chunk, in order.
    pub chunks: BoundedVec<Hash, MAX_CHUNKS>,
}

impl Canonical for Manifest {
    const NAME: &'static str = "snapshot manifest";
    const MAX_ENCODED_LEN: usize = MAX_CHUNKS * 33 + MAX_VALIDATORS * 48 + 1024;
}

impl Manifest {
    /// The manifest's id: peers offering equal ids offer interchangeable chunks.
    pub fn id(&self) -> Hash {
        hash_tagged(MANIFEST_TAG, &[&encode(self)])
    }
}

/// A chunk's hash.
pub fn chunk_hash(bytes: &[u8]) -> Hash {
    hash_tagged(CHUNK_TAG, &[bytes])
}

/// A snapshot ready to serve: its manifest and chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSnapshot {
    /// The manifest.
    pub manifest: Manifest,
    /// The chunks, in the manifest's order.
    pub chunks: Vec<Vec<u8>>,
}

impl SyncSnapshot {
    /// The bytes it holds.
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The manifest's id.
    pub fn id(&self) -> Hash {
        self.manifest.id()
    }

    /// Its bytes: `varint(len) encode(manifest)`, then `varint(len) chunk` for each chunk.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes() + 64 * self.chunks.len() + 4096);
        put_bytes(&mut out, &encode(&self.manifest));
        for chunk in &self.chunks {
            put_bytes(&mut out, chunk);
        }
        out
    }

    /// Reads [`SyncSnapshot::encode`]'s bytes; checks the format only ([`restore`] checks
    /// the contents).
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut rest = bytes;
        let manifest: Manifest = decode_bounded(
            take_bytes(&mut rest, "manifest")?,
            Manifest::NAME,
            Manifest::MAX_ENCODED_LEN,
        )
        .map_err(|e| malformed("manifest", e))?;
        let mut chunks = Vec::with_capacity(manifest.chunks.len());
        for _ in 0..manifest.chunks.len() {
            chunks.push(take_bytes(&mut rest, "chunk")?.to_vec());
        }
        if !rest.is_empty() {
            return Err(malformed(
                "state-sync snapshot",
                "bytes after the last chunk",
            ));
        }
        Ok(Self { manifest, chunks })
    }
}

/// Why a state-synced snapshot cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The anchor block is not the block after the manifest's head.
    #[error("anchor block {got} does not follow the manifest's head {height} {hash}")]
    Anchor {
        /// The manifest's height.
        height: Height,
        /// The manifest's head hash.
        hash: BlockHash,
        /// The anchor's height.
        got: Height,
    },
    /// The anchor carries another state root than the manifest claims: the manifest lies.
    #[error("the manifest claims state root {claimed}, block {height} carries {anchored}")]
    Root {
        /// The anchor's height.
        height: Height,
        /// The manifest's root.
        claimed: Hash,
        /// The anchor's.
        anchored: Hash,
    },
    /// A chunk does not hash to the manifest's hash for it.
    #[error("chunk {index} does not match the manifest")]
    Chunk {
        /// Which chunk.
        index: usize,
    },
    /// Too many or too few chunks.
    #[error("{got} chunks for a manifest of {expected}")]
    ChunkCount {
        /// The manifest's count.
        expected: usize,
        /// The chunks given.
        got: usize,
    },
    /// The chunks do not rebuild the state the root commits to, or the head's certificate
    /// does not verify.
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
}

impl Chain {
    /// The state at the head as a manifest and chunks, or `None` at genesis (a node there
    /// has nothing to offer) or for a state past [`MAX_CHUNKS`].
    pub fn sync_snapshot(&self) -> Option<SyncSnapshot> {
        let previous = self.previous_validators()?;
        let mut chunks = Vec::new();
        let mut chunk = Vec::new();
        let mut entries = 0u64;
        for (key, value) in self.state().export() {
            let len = value.len() + 256 + 20;
            if !chunk.is_empty() && chunk.len() + len > CHUNK_BYTES {
                chunks.push(std::mem::take(&mut chunk));
            }
            put_entry(&mut chunk, &key, &value);
            entries += 1;
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        let validators = previous
            .validators()
            .iter()
            .map(|v| (v.account(), Amount(v.power())))
            .collect();
        let manifest = Manifest {
            height: self.height(),
            last_hash: self.last_hash(),
            last_time_ms: self.last_time_ms(),
            state_root: self.state_root(),
            previous_validators: BoundedVec::new(validators).ok()?,
            entries,
            chunks: BoundedVec::new(chunks.iter().map(|c| chunk_hash(c)).collect()).ok()?,
        };
        Some(SyncSnapshot { manifest, chunks })
    }
}

/// Appends one entry to a chunk.
pub fn put_entry(chunk: &mut Vec<u8>, key: &Key, value: &[u8]) {
    put_bytes(chunk, &encode(key));
    put_bytes(chunk, value);
}

/// Decodes the entries of one chunk.
pub fn chunk_entries(bytes: &[u8]) -> Result<Vec<(Key, Vec<u8>)>, SnapshotError> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let key: Key = decode_bounded(take_bytes(&mut rest, "key")?, "state key", 256)
            .map_err(|e| malformed("chunk key", e))?;
        let value = take_bytes(&mut rest, "value")?.to_vec();
        out.push((key, value));
    }
    Ok(out)
}

/// The chain after `manifest.height`, from its chunks, trusted through `anchor` (block
/// `manifest.height + 1`, which the caller has linked to a trusted hash). Checks everything
/// else: see the module documentation.
pub fn restore(
    chain_id: &ChainId,
    manifest: &Manifest,
    chunks: &[Vec<u8>],
    anchor: &Block,
) -> Result<Chain, RestoreError> {
    let h = &anchor.header;
    if h.height != manifest.height.next() || h.prev != manifest.last_hash {
        return Err(RestoreError::Anchor {
            height: manifest.height,
            hash: manifest.last_hash,
            got: h.height,
        });
    }
    if h.state_root != manifest.state_root {
        return Err(RestoreError::Root {
            height: h.height,
            claimed: manifest.state_root,
            anchored: h.state_root,
        });
    }
    if chunks.len() != manifest.chunks.len() {
        return Err(RestoreError::ChunkCount {
            expected: manifest.chunks.len(),
            got: chunks.len(),
        });
    }
    let mut entries = Vec::new();
    for (index, (chunk, hash)) in chunks.iter().zip(manifest.chunks.iter()).enumerate() {
        if chunk_hash(chunk) != *hash {
            return Err(RestoreError::Chunk { index });
        }
        entries.extend(chunk_entries(chunk)?);
    }
    if entries.len() as u64 != manifest.entries {
        return Err(malformed("manifest", "entry count does not match the chunks").into());
    }
    let state = State::import(entries, &manifest.state_root).map_err(SnapshotError::from)?;
    if state.chain_id() != chain_id {
        return Err(malformed("state", "the meta entry names another chain").into());
    }
    let Some(certificate) = anchor.last_commit.clone() else {
        return Err(malformed("anchor", "block has no last commit").into());
    };
    if certificate.height != manifest.height || certificate.block != manifest.last_hash {
        return Err(SnapshotError::CertificateMismatch {
            height: manifest.height,
        }
        .into());
    }
    let set = ValidatorSet::new(manifest.previous_validators.iter().copied())
        .map_err(SnapshotError::from)?;
    verify_certificate(chain_id, &set, &certificate).map_err(SnapshotError::from)?;
    Chain::restore(
        state,
        manifest.height,
        manifest.last_hash,
        manifest.last_time_ms,
        Some(certificate),
        Some(set),
    )
    .map_err(|e| RestoreError::Snapshot(e.into()))
}
