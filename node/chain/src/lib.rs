//! Attest's chain rules, pure.
//!
//! This crate owns what makes a chain valid, apart from the contract itself
//! (`attest-contracts-sim`): block and header validity and how a block is built and applied
//! ([`Chain`]), the validator set of a height and its proposers ([`ValidatorSet`]), commit
//! certificates and the more-than-2/3 quorum ([`verify_certificate`]), the genesis document as
//! data ([`GenesisFile`]), and the independent audit and verifiable export of a chain
//! ([`audit`]). A node, the auditor and any third-party verifier link the same rules.
//!
//! It must never do I/O, read a clock, draw OS randomness, iterate a hash map, or depend on
//! tokio, libp2p, sled, axum or hyper (`.ci/run` checks the dependency tree): `attest audit`
//! and a third-party verifier link this crate and nothing impure.

pub mod audit;
pub mod certificate;
pub mod chain;
pub mod genesis;
pub mod light;
pub mod snapshot;
pub mod solo;
pub mod statesync;
pub mod validators;

pub use certificate::{
    CertError, build_certificate, check_quorum, is_quorum, verify_certificate,
    verify_certificate_signatures,
};
pub use chain::{Applied, BlockError, Chain, ChainError, MAX_CLOCK_DRIFT_MS};
pub use genesis::{GENESIS_TAG, GenesisFile, GenesisParseError, SCHEMA as GENESIS_SCHEMA};
pub use light::{LightError, LightProof, verify_light};
pub use snapshot::{Snapshot, SnapshotError, SnapshotHeader};
pub use solo::{commit_solo, solo_certificate};
pub use validators::{Validator, ValidatorSet, ValidatorSetError, validator_set};

/// A committed block and the certificate that committed it.
pub type CommittedBlock = (attest_protocol::Block, attest_protocol::CommitCertificate);
