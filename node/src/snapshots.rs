//! State snapshots on disk: `<data>/snapshots/snapshot-<height>.bin`, written every
//! `snapshot_interval_blocks` blocks, the newest `snapshots_kept` kept.
//!
//! A write goes to a temporary file in the same directory, is fsynced, renamed over the final
//! name and the directory fsynced, so a crash leaves either the old set of snapshots or the new
//! one, never a partial file under a snapshot's name. On start the newest snapshot at or below
//! the store's last height is loaded and checked ([`load_newest`]); a snapshot that fails any
//! check is reported with its path and skipped for an older one, and with none left the node
//! replays from genesis. A snapshot is never trusted: its entries must hash to its root, its
//! head must be the stored block at its height, and the stored block after it (when there is
//! one) must claim the same root.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use attest_chain::{Chain, GenesisFile, Snapshot};
use attest_core::store::Store;
use attest_protocol::Height;

/// The snapshot directory inside a node's data directory.
pub const DIR: &str = "snapshots";

/// Where a node keeps its snapshots, and how often it writes one.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    interval: u64,
    keep: usize,
}

impl Snapshots {
    /// Snapshots under `data_dir`, one every `interval` blocks, the newest `keep` kept.
    pub fn new(data_dir: &Path, interval: u64, keep: usize) -> Self {
        Self {
            dir: data_dir.join(DIR),
            interval: interval.max(1),
            keep: keep.max(1),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a snapshot is due after the block at `height`.
    pub fn due(&self, height: Height) -> bool {
        height.0 > 0 && height.0.is_multiple_of(self.interval)
    }

    /// The path of the snapshot at `height`.
    pub fn path(&self, height: Height) -> PathBuf {
        self.dir.join(format!("snapshot-{:020}.bin", height.0))
    }

    /// Writes `bytes`, the snapshot at `height`, atomically, then removes all but the newest
    /// `keep`.
    pub fn write(&self, height: Height, bytes: &[u8]) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.path(height);
        let tmp = self.dir.join(format!(".snapshot-{:020}.tmp", height.0));
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(file);
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            // Makes the rename durable; a filesystem that cannot fsync a directory still
            // renamed atomically.
            let _ = dir.sync_all();
        }
        for (_, old) in self.list()?.into_iter().skip(self.keep) {
            match std::fs::remove_file(&old) {
                // Another write's pruning got there first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.with_context(|| format!("removing {}", old.display()))?,
            }
        }
        Ok(path)
    }

    /// Every snapshot file, newest first.
    pub fn list(&self) -> Result<Vec<(Height, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", self.dir.display()))?;
            let name = entry.file_name();
            let height = name
                .to_str()
                .and_then(|n| n.strip_prefix("snapshot-"))
                .and_then(|n| n.strip_suffix(".bin"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(h) = height {
                out.push((Height(h), entry.path()));
            }
        }
        out.sort_by_key(|(h, _)| std::cmp::Reverse(*h));
        Ok(out)
    }
}

/// The chain of the newest usable snapshot at or below the store's last height, or `None`
/// (replay from genesis). Each unusable snapshot is logged with its path and why.
pub fn load_newest(
    snapshots: &Snapshots,
    genesis: &GenesisFile,
    store: &dyn Store,
) -> Option<Chain> {
    let latest = store.latest_height();
    let list = match snapshots.list() {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot list snapshots; replaying from genesis");
            return None;
        }
    };
    for (height, path) in list {
        if height > latest {
            tracing::warn!(path = %path.display(), height = height.0, latest = latest.0,
                "snapshot is above the stored blocks; skipped");
            continue;
        }
        match load(&path, genesis, store) {
            Ok(chain) => {
                tracing::info!(path = %path.display(), height = height.0, "starting from snapshot");
                return Some(chain);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                    "snapshot is unusable; trying an older one");
            }
        }
    }
    None
}

/// Reads and checks one snapshot against the store.
pub fn load(path: &Path, genesis: &GenesisFile, store: &dyn Store) -> Result<Chain> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let snapshot = Snapshot::decode(&bytes)?;
    let height = snapshot.header.height;
    let chain = Chain::from_snapshot(genesis, snapshot)?;
    if height.0 > 0 {
        let stored = store
            .block(height)?
            .with_context(|| format!("the store has no block {height}"))?;
        anyhow::ensure!(
            stored.hash() == chain.last_hash(),
            "its head {} is not the stored block {height} {}",
            chain.last_hash(),
            stored.hash()
        );
    }
    if let Some(next) = store.block(height.next())? {
        anyhow::ensure!(
            next.header.state_root == chain.state_root(),
            "its state root {} is not the root block {} claims, {}",
            chain.state_root(),
            height.next(),
            next.header.state_root
        );
    }
    Ok(chain)
}
