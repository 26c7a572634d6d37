//! The genesis file: the contract genesis plus the chain's start time, as JSON.
//!
//! Every node of a chain must start from byte-identical genesis; its hash (over the canonical
//! encoding) is recorded in the store, so a data directory is never reused for another chain.

use std::path::{Path, PathBuf};

use attest_contracts_sim::{Genesis, Params};
use attest_protocol::encoding::encode;
use attest_protocol::{AccountId, Amount, ChainId, Hash, PublicKey, hash_tagged};
use serde::{Deserialize, Serialize};

/// The domain tag of the genesis hash.
pub const GENESIS_TAG: &str = "attest/genesis/v1";
/// The `schema` field of a genesis file.
pub const SCHEMA: &str = "attest.genesis/1";

/// A genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Milliseconds since the Unix epoch; the first block's time is later than this.
    pub genesis_time_ms: u64,
    /// The contract genesis: chain id, parameters, balances, stakes.
    pub genesis: Genesis,
}

/// A genesis file that cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum GenesisFileError {
    /// Reading or writing failed.
    #[error("genesis file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not a genesis file of this version.
    #[error("genesis file {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The contract refused the genesis (duplicates, overflow, bad parameters).
    #[error("genesis file {path}: {error}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The contract's reason.
        error: attest_contracts_sim::GenesisError,
    },
}

impl GenesisFile {
    /// A genesis for `chain_id` at `genesis_time_ms`.
    pub fn new(
        chain_id: ChainId,
        genesis_time_ms: u64,
        params: Params,
        balances: Vec<(AccountId, Amount)>,
        stakes: Vec<(AccountId, PublicKey, Amount)>,
    ) -> Self {
        Self {
            schema: SCHEMA.to_owned(),
            genesis_time_ms,
            genesis: Genesis {
                chain_id,
                params,
                balances,
                stakes,
            },
        }
    }

    /// `H("attest/genesis/v1", encode(genesis_time_ms, genesis))`.
    pub fn hash(&self) -> Hash {
        hash_tagged(
            GENESIS_TAG,
            &[&encode(&(self.genesis_time_ms, &self.genesis))],
        )
    }

    /// Reads, parses and checks `path` (the contract must accept it).
    pub fn load(path: &Path) -> Result<Self, GenesisFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| GenesisFileError::Io {
            path: path.to_owned(),
            error,
        })?;
        let file: GenesisFile =
            serde_json::from_str(&text).map_err(|e| GenesisFileError::Parse {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
        if file.schema != SCHEMA {
            return Err(GenesisFileError::Parse {
                path: path.to_owned(),
                detail: format!("schema {:?}; this node reads {SCHEMA:?}", file.schema),
            });
        }
        attest_contracts_sim::State::from_genesis(&file.genesis).map_err(|error| {
            GenesisFileError::Invalid {
                path: path.to_owned(),
                error,
            }
        })?;
        Ok(file)
    }

    /// Writes the file as pretty JSON; refuses to replace an existing file.
    pub fn write(&self, path: &Path) -> Result<(), GenesisFileError> {
        let io = |error| GenesisFileError::Io {
            path: path.to_owned(),
            error,
        };
        let json = serde_json::to_string_pretty(self).expect("genesis serializes");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        std::io::Write::write_all(&mut f, json.as_bytes()).map_err(io)?;
        std::io::Write::write_all(&mut f, b"\n").map_err(io)?;
        f.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest_protocol::SecretKey;

    fn sample() -> GenesisFile {
        let acct = SecretKey::from_seed([1; 32]).public();
        let node = SecretKey::from_seed([2; 32]).public();
        GenesisFile::new(
            ChainId::new("attest-test").unwrap(),
            1_700_000_000_000,
            Params::default(),
            vec![(acct, Amount::tokens(1_000).unwrap())],
            vec![(acct, node, Amount::tokens(500).unwrap())],
        )
    }

    #[test]
    fn written_genesis_loads_back_with_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        let g = sample();
        g.write(&path).unwrap();
        let loaded = GenesisFile::load(&path).unwrap();
        assert_eq!(loaded, g);
        assert_eq!(loaded.hash(), g.hash());
        assert!(
            matches!(g.write(&path), Err(GenesisFileError::Io { .. })),
            "never replaced"
        );
    }

    #[test]
    fn the_hash_covers_time_and_contents() {
        let g = sample();
        let mut later = g.clone();
        later.genesis_time_ms += 1;
        assert_ne!(g.hash(), later.hash());
        let mut richer = g.clone();
        richer.genesis.balances[0].1 = Amount(1);
        assert_ne!(g.hash(), richer.hash());
    }

    #[test]
    fn bad_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        std::fs::write(&path, "{\"schema\": \"attest.genesis/9\"}").unwrap();
        let err = GenesisFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("genesis.json"), "{err}");
        let mut dup = sample();
        dup.genesis.balances.push(dup.genesis.balances[0]);
        std::fs::remove_file(&path).unwrap();
        dup.write(&path).unwrap();
        assert!(matches!(
            GenesisFile::load(&path),
            Err(GenesisFileError::Invalid { .. })
        ));
    }
}
