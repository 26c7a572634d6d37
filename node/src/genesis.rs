//! Genesis files on disk: reading, checking and writing the genesis document
//! (`attest_chain::GenesisFile`, whose rules and hash are the chain crate's).

use std::path::{Path, PathBuf};

use attest_chain::{GenesisFile, GenesisParseError};

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

/// Reads, parses and checks a genesis file (the contract must accept it).
pub fn load(path: &Path) -> Result<GenesisFile, GenesisFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| GenesisFileError::Io {
        path: path.to_owned(),
        error,
    })?;
    GenesisFile::parse(&text).map_err(|e| match e {
        GenesisParseError::Format(detail) => GenesisFileError::Parse {
            path: path.to_owned(),
            detail,
        },
        GenesisParseError::Invalid(error) => GenesisFileError::Invalid {
            path: path.to_owned(),
            error,
        },
    })
}

/// Writes `genesis` as pretty JSON to `path`, durably; refuses to replace an existing file.
pub fn write(genesis: &GenesisFile, path: &Path) -> Result<(), GenesisFileError> {
    let io = |error| GenesisFileError::Io {
        path: path.to_owned(),
        error,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    std::io::Write::write_all(&mut f, genesis.to_json().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest_chain::GenesisFile;
    use attest_contracts_sim::Params;
    use attest_protocol::{Amount, ChainId, SecretKey};

    fn sample() -> GenesisFile {
        let acct = SecretKey::from_seed([1; 32]).public();
        let node = SecretKey::from_seed([2; 32]).public();
        GenesisFile::new(
            ChainId::new("attest-test").unwrap(),
            1_700_000_000_000,
            Params::default(),
            vec![(acct, Amount::tokens(1_000).unwrap())],
            vec![(
                acct,
                node,
                Amount::tokens(500).unwrap(),
                attest_protocol::tx::Capability {
                    device: attest_protocol::DeviceName::new("cpu").unwrap(),
                    memory_bytes: 256_000_000_000,
                },
            )],
        )
    }

    #[test]
    fn written_genesis_loads_back_with_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        let g = sample();
        write(&g, &path).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded, g);
        assert_eq!(loaded.hash(), g.hash());
        assert!(
            matches!(write(&g, &path), Err(GenesisFileError::Io { .. })),
            "never replaced"
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        std::fs::write(&path, "{\"schema\": \"attest.genesis/9\"}").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("genesis.json"), "{err}");
        let mut dup = sample();
        dup.genesis.balances.push(dup.genesis.balances[0]);
        std::fs::remove_file(&path).unwrap();
        write(&dup, &path).unwrap();
        assert!(matches!(load(&path), Err(GenesisFileError::Invalid { .. })));
    }
}
