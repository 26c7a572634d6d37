//! The genesis document: the contract genesis plus the chain's start time, as JSON. Data and
//! its rules only; reading and writing the file is the node's (`attest_node::genesis`).
//!
//! Every node of a chain must start from byte-identical genesis; its hash (over the canonical
//! encoding) is recorded in the store, so a data directory is never reused for another chain.

use attest_contracts_sim::{Genesis, Params};
use attest_protocol::encoding::encode;
use attest_protocol::tx::Capability;
use attest_protocol::{AccountId, Amount, ChainId, Hash, PublicKey, hash_tagged};
use serde::{Deserialize, Serialize};

/// The domain tag of the genesis hash.
pub const GENESIS_TAG: &str = "attest/genesis/v1";
/// The `schema` field of a genesis file.
pub const SCHEMA: &str = "attest.genesis/2";

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

/// Genesis text that is not a usable genesis document.
#[derive(Debug, thiserror::Error)]
pub enum GenesisParseError {
    /// The text is not a genesis document of this version.
    #[error("{0}")]
    Format(String),
    /// The contract refused the genesis (duplicates, overflow, bad parameters).
    #[error("{0}")]
    Invalid(#[from] attest_contracts_sim::GenesisError),
}

impl GenesisFile {
    /// A genesis for `chain_id` at `genesis_time_ms`.
    pub fn new(
        chain_id: ChainId,
        genesis_time_ms: u64,
        params: Params,
        balances: Vec<(AccountId, Amount)>,
        stakes: Vec<(AccountId, PublicKey, Amount, Capability)>,
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

    /// Parses and checks genesis JSON text: the schema must be [`SCHEMA`], no field may be
    /// unknown, and the contract must accept the genesis.
    pub fn parse(text: &str) -> Result<Self, GenesisParseError> {
        let file: GenesisFile =
            serde_json::from_str(text).map_err(|e| GenesisParseError::Format(e.to_string()))?;
        if file.schema != SCHEMA {
            return Err(GenesisParseError::Format(format!(
                "schema {:?}; this node reads {SCHEMA:?}",
                file.schema
            )));
        }
        attest_contracts_sim::State::from_genesis(&file.genesis)?;
        Ok(file)
    }

    /// The file's text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("genesis serializes");
        json.push('\n');
        json
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
    fn text_round_trips_and_bad_text_names_the_problem() {
        let g = sample();
        assert_eq!(GenesisFile::parse(&g.to_json()).unwrap(), g);
        let err = GenesisFile::parse("{\"schema\": \"attest.genesis/9\"}").unwrap_err();
        assert!(matches!(err, GenesisParseError::Format(_)), "{err}");
        let mut dup = sample();
        dup.genesis.balances.push(dup.genesis.balances[0]);
        assert!(matches!(
            GenesisFile::parse(&dup.to_json()),
            Err(GenesisParseError::Invalid(_))
        ));
    }
}
