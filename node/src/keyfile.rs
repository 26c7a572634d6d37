//! Key files: a secret key per file, created with mode 0600 and refused when others can read it.
//!
//! The file holds the key's text form (`ed25519-seed:` and 64 hex characters, see
//! `docs/PROTOCOL.md`) and a newline. New keys come from OS randomness, which only this crate
//! may read.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use attest_protocol::SecretKey;

/// A key file that cannot be created or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading, creating or writing the file failed.
    #[error("key file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file already exists; keys are never overwritten.
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may access the file, so the key may have leaked.
    #[error(
        "key file {path} has mode {mode:04o}: group and others must have no access \
         (run: chmod 600 {path})"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not a secret key.
    #[error("key file {path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with the text.
        error: attest_protocol::ParseError,
    },
    /// The OS could not supply randomness for a new key.
    #[error("drawing a new key from the OS random source: {0}")]
    Random(String),
}

/// Draws a new secret key from the OS random source.
pub fn generate() -> Result<SecretKey, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
    Ok(SecretKey::from_seed(seed))
}

/// Writes `key` to a new file at `path` with mode 0600. An existing file is never replaced.
pub fn write(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let io = |error| KeyFileError::Io {
        path: path.to_owned(),
        error,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                path: path.to_owned(),
            },
            _ => io(e),
        })?;
    file.write_all(format!("{}\n", key.to_text()).as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads the key at `path`, refusing a file that group or others may access.
pub fn read(path: &Path) -> Result<SecretKey, KeyFileError> {
    let io = |error| KeyFileError::Io {
        path: path.to_owned(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    // A key file is ~78 bytes; refuse to read anything large into memory.
    if meta.len() > 4096 {
        return Err(KeyFileError::Parse {
            path: path.to_owned(),
            error: attest_protocol::ParseError::Length {
                what: "key file",
                expected: 78,
                got: meta.len() as usize,
                unit: "bytes",
            },
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    SecretKey::from_text(&text).map_err(|error| KeyFileError::Parse {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_read_back_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = generate().unwrap();
        write(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap().public(), key.public());
        assert!(matches!(
            write(&path, &key),
            Err(KeyFileError::Exists { .. })
        ));
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(generate().unwrap().public(), generate().unwrap().public());
    }

    #[test]
    fn readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write(&path, &generate().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        std::fs::write(&path, "not a key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Parse { .. }));
        assert!(err.to_string().contains("k.key"), "{err}");
    }
}
