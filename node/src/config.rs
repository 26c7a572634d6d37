//! The node's configuration file (`HOME/config.toml`): parsed once into a trusted struct.
//!
//! Unknown keys, wrong types and out-of-range values are errors that name the file and the key;
//! a node never starts on a configuration it did not understand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use attest_core::accel::{Cheat, DeviceProfile, TimeScale};

use crate::api::LimitsConfig;

/// File names inside a node's home directory.
pub mod files {
    /// The configuration.
    pub const CONFIG: &str = "config.toml";
    /// The node's libp2p identity key (its PeerId).
    pub const NODE_KEY: &str = "node.key";
    /// The validator account key (signs transactions and votes).
    pub const ACCOUNT_KEY: &str = "account.key";
    /// The block store and vote log.
    pub const DATA: &str = "data";
}

/// A node's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// libp2p listen multiaddrs.
    pub listen: Vec<String>,
    /// Peers to dial at start: multiaddrs ending in `/p2p/<PeerId>`.
    pub bootnodes: Vec<String>,
    /// Address of the HTTP API.
    pub api: SocketAddr,
    /// Milliseconds after which an idle chain still makes a block, so that time-based
    /// windows (deadlines, verdict windows) advance. 10 to 60,000.
    pub idle_block_interval_ms: u64,
    /// The most transactions the mempool holds. 1 to 1,000,000.
    pub mempool_max_txs: usize,
    /// The most encoded bytes the mempool holds. 64 KiB to 1 GiB.
    pub mempool_max_bytes: usize,
    /// Milliseconds a transaction may wait in the mempool before it is dropped (with its
    /// sender's later nonces). 1,000 to 3,600,000.
    pub mempool_ttl_ms: u64,
    /// The simulated accelerator's device profile: `wse-3`, `h100-sxm`, `a100-80gb` or `cpu`.
    pub device: String,
    /// Simulated time per real time: 1.0 is real time, 0.01 runs jobs 100x faster.
    pub time_scale: TimeScale,
    /// Whether this node serves jobs assigned to its account.
    pub serve_jobs: bool,
    /// The price this node advertises per generated token, in micro-units (a token is
    /// 1,000,000). 1 to 1,000,000,000.
    pub price_per_token: u64,
    /// Blocks between state snapshots (a restart loads the newest and replays the blocks after
    /// it). 1 to 10,000,000.
    pub snapshot_interval_blocks: u64,
    /// Snapshots kept on disk, newest first. 1 to 100.
    pub snapshots_kept: usize,
    /// The share of other providers' results this node re-executes with spare capacity,
    /// challenging (with the chain's bond) any it finds wrong. 0.0 to 1.0.
    pub watch_rate: f64,
    /// Requests a second one client address may make on average to the API's writes
    /// (transactions, quotes) and event stream. 1 to 1,000,000.
    pub api_rate_per_s: u32,
    /// Requests one client address may make at once after a pause. 1 to 1,000,000.
    pub api_burst: u32,
    /// API write requests in progress at once, across all clients. 1 to 65,536.
    pub api_max_in_flight: u32,
    /// TEST ONLY: cheat on provided jobs, e.g. `"flip:0.1"` (`lazy`, `truncate`, `flip`). A
    /// build without the `cheats` feature refuses to start a node with either danger setting.
    pub danger_cheat: Option<Cheat>,
    /// TEST ONLY: give false verdicts on checks at this rate, e.g. `"flip:1.0"`.
    pub danger_false_verdicts: Option<Cheat>,
    /// TEST ONLY: run the node's clock this many milliseconds ahead (negative: behind) of the
    /// machine's, as a machine with a wrong clock would (the chaos test's clock-skew fault).
    /// At most a day either way; needs the `cheats` feature like the other danger settings.
    pub danger_clock_skew_ms: Option<i64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/26656".into()],
            bootnodes: Vec::new(),
            api: SocketAddr::from(([127, 0, 0, 1], 26657)),
            idle_block_interval_ms: 1_000,
            mempool_max_txs: 10_000,
            mempool_max_bytes: 32 * 1024 * 1024,
            mempool_ttl_ms: 60_000,
            device: "h100-sxm".into(),
            time_scale: TimeScale::HUNDREDTH,
            serve_jobs: true,
            price_per_token: 100,
            snapshot_interval_blocks: 1_000,
            snapshots_kept: 2,
            watch_rate: 0.0,
            api_rate_per_s: LimitsConfig::default().rate_per_s,
            api_burst: LimitsConfig::default().burst,
            api_max_in_flight: LimitsConfig::default().max_in_flight,
            danger_cheat: None,
            danger_false_verdicts: None,
            danger_clock_skew_ms: None,
        }
    }
}

/// The largest `danger_clock_skew_ms` either way: a day.
pub const MAX_CLOCK_SKEW_MS: u64 = 86_400_000;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("config file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML for this configuration (unknown key, wrong type).
    #[error("config file {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        detail: String,
    },
    /// A value is out of its range.
    #[error("config file {path}: {key} = {value}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        reason: &'static str,
    },
}

impl Config {
    /// The API's admission limits.
    pub fn api_limits(&self) -> LimitsConfig {
        LimitsConfig {
            rate_per_s: self.api_rate_per_s,
            burst: self.api_burst,
            max_in_flight: self.api_max_in_flight,
        }
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates the text of a config file; `path` is the file the errors name.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks every range.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key, value: String, reason| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                key,
                value,
                reason,
            })
        };
        if !(10..=60_000).contains(&self.idle_block_interval_ms) {
            let v = self.idle_block_interval_ms.to_string();
            return bad("idle_block_interval_ms", v, "must be between 10 and 60000");
        }
        if !(1..=1_000_000).contains(&self.mempool_max_txs) {
            let v = self.mempool_max_txs.to_string();
            return bad("mempool_max_txs", v, "must be between 1 and 1000000");
        }
        if !(64 * 1024..=1 << 30).contains(&self.mempool_max_bytes) {
            let v = self.mempool_max_bytes.to_string();
            return bad(
                "mempool_max_bytes",
                v,
                "must be between 65536 and 1073741824",
            );
        }
        if !(1_000..=3_600_000).contains(&self.mempool_ttl_ms) {
            let v = self.mempool_ttl_ms.to_string();
            return bad("mempool_ttl_ms", v, "must be between 1000 and 3600000");
        }
        if !(1..=1_000_000_000).contains(&self.price_per_token) {
            let v = self.price_per_token.to_string();
            return bad("price_per_token", v, "must be between 1 and 1000000000");
        }
        if !(1..=10_000_000).contains(&self.snapshot_interval_blocks) {
            let v = self.snapshot_interval_blocks.to_string();
            return bad(
                "snapshot_interval_blocks",
                v,
                "must be between 1 and 10000000",
            );
        }
        if !(1..=100).contains(&self.snapshots_kept) {
            let v = self.snapshots_kept.to_string();
            return bad("snapshots_kept", v, "must be between 1 and 100");
        }
        if !(0.0..=1.0).contains(&self.watch_rate) {
            let v = self.watch_rate.to_string();
            return bad("watch_rate", v, "must be between 0.0 and 1.0");
        }
        if let Some(skew) = self.danger_clock_skew_ms
            && skew.unsigned_abs() > MAX_CLOCK_SKEW_MS
        {
            return bad(
                "danger_clock_skew_ms",
                skew.to_string(),
                "must be between -86400000 and 86400000 (a day)",
            );
        }
        for (key, value, max) in [
            ("api_rate_per_s", self.api_rate_per_s, 1_000_000),
            ("api_burst", self.api_burst, 1_000_000),
            ("api_max_in_flight", self.api_max_in_flight, 65_536),
        ] {
            if !(1..=max).contains(&value) {
                let reason = match max {
                    65_536 => "must be between 1 and 65536",
                    _ => "must be between 1 and 1000000",
                };
                return bad(key, value.to_string(), reason);
            }
        }
        if DeviceProfile::find(&self.device).is_err() {
            return bad(
                "device",
                self.device.clone(),
                "not a device profile: use wse-3, h100-sxm, a100-80gb or cpu",
            );
        }
        if self.listen.is_empty() {
            return bad(
                "listen",
                "[]".into(),
                "at least one listen address is needed",
            );
        }
        Ok(())
    }

    /// The file `attest init` writes: every key, each with a comment. It parses back to the
    /// same config (the danger settings are written only when set, else shown commented).
    pub fn to_commented_toml(&self) -> String {
        let danger = |key: &str, value: Option<Cheat>, example: &str| match value {
            Some(cheat) => format!("{key} = \"{cheat}\""),
            None => format!("# {key} = \"{example}\""),
        };
        // TOML's own quoting: Rust's `{:?}` escapes differ (`\u{8}` is not TOML), which the
        // fuzzer found.
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| quote(s)).collect();
            format!("[{}]", items.join(", "))
        };
        format!(
            "# Attest node configuration. `attest node` flags override these values.\n\
             \n\
             # libp2p listen multiaddrs.\n\
             listen = {listen}\n\
             \n\
             # Peers to dial at start: multiaddrs ending in /p2p/<PeerId>.\n\
             bootnodes = {bootnodes}\n\
             \n\
             # Address of the HTTP API (loopback unless you mean to expose it).\n\
             api = \"{api}\"\n\
             \n\
             # Milliseconds after which an idle chain still makes a block (10 to 60000).\n\
             idle_block_interval_ms = {idle}\n\
             \n\
             # The most transactions the mempool holds (1 to 1000000).\n\
             mempool_max_txs = {txs}\n\
             \n\
             # The most encoded bytes the mempool holds (65536 to 1073741824).\n\
             mempool_max_bytes = {bytes}\n\
             \n\
             # Milliseconds a transaction may wait in the mempool before it is dropped, with\n\
             # its sender's later nonces (1000 to 3600000).\n\
             mempool_ttl_ms = {ttl}\n\
             \n\
             # The simulated accelerator: wse-3, h100-sxm, a100-80gb or cpu.\n\
             device = {device}\n\
             \n\
             # Simulated time per real time (1.0 real time; 0.01 runs jobs 100x faster).\n\
             time_scale = {scale}\n\
             \n\
             # Whether this node serves jobs assigned to its account.\n\
             serve_jobs = {serve}\n\
             \n\
             # Advertised price per generated token, in micro-units (a token is 1000000).\n\
             price_per_token = {price}\n\
             \n\
             # Blocks between state snapshots; a restart loads the newest and replays the\n\
             # blocks after it (1 to 10000000).\n\
             snapshot_interval_blocks = {snap_every}\n\
             \n\
             # Snapshots kept on disk, newest first (1 to 100).\n\
             snapshots_kept = {snap_kept}\n\
             \n\
             # The share of other providers' results this node re-executes with spare\n\
             # capacity, challenging any it finds wrong with the chain's bond (0.0 to 1.0).\n\
             watch_rate = {watch:?}\n\
             \n\
             # Requests a second one client address may make on average to the API's writes\n\
             # (transactions, quotes) and event stream; past it, 429 (1 to 1000000).\n\
             api_rate_per_s = {rate}\n\
             \n\
             # Of those, requests one address may make at once after a pause (1 to 1000000).\n\
             api_burst = {burst}\n\
             \n\
             # API write requests in progress at once, across all clients; past it, 503\n\
             # (1 to 65536).\n\
             api_max_in_flight = {in_flight}\n\
             \n\
             # TEST ONLY, never on a real network, and only in a build with the `cheats`\n\
             # feature (others refuse to start): cheat on provided jobs at a rate, as\n\
             # \"MODE:RATE\" with MODE lazy, truncate or flip, e.g. \"flip:0.1\".\n\
             {cheat}\n\
             \n\
             # TEST ONLY: give false verdicts on checks at a rate, e.g. \"flip:1.0\".\n\
             {false_verdicts}\n\
             \n\
             # TEST ONLY: run this node's clock this many milliseconds ahead of the\n\
             # machine's (negative: behind), at most a day either way.\n\
             {skew}\n",
            cheat = danger("danger_cheat", self.danger_cheat, "flip:0.1"),
            false_verdicts = danger(
                "danger_false_verdicts",
                self.danger_false_verdicts,
                "flip:1.0"
            ),
            skew = self.danger_clock_skew_ms.map_or_else(
                || "# danger_clock_skew_ms = 30000".to_owned(),
                |ms| format!("danger_clock_skew_ms = {ms}")
            ),
            listen = list(&self.listen),
            bootnodes = list(&self.bootnodes),
            api = self.api,
            idle = self.idle_block_interval_ms,
            txs = self.mempool_max_txs,
            bytes = self.mempool_max_bytes,
            ttl = self.mempool_ttl_ms,
            device = quote(&self.device),
            scale = self.time_scale.factor(),
            serve = self.serve_jobs,
            price = self.price_per_token,
            snap_every = self.snapshot_interval_blocks,
            snap_kept = self.snapshots_kept,
            watch = self.watch_rate,
            rate = self.api_rate_per_s,
            burst = self.api_burst,
            in_flight = self.api_max_in_flight,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn the_commented_file_parses_back_to_the_same_config() {
        let config = Config {
            bootnodes: vec!["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWx".into()],
            api_rate_per_s: 7,
            api_burst: 9,
            api_max_in_flight: 11,
            ..Config::default()
        };
        assert_eq!(load_text(&config.to_commented_toml()).unwrap(), config);
        // Strings that need TOML's escapes (the fuzzer found Rust's written instead).
        let odd = Config {
            listen: vec!["/\\\u{8}\"\t\u{7f}é/".into()],
            bootnodes: vec!["'quoted' \"twice\"".into()],
            ..config.clone()
        };
        assert_eq!(load_text(&odd.to_commented_toml()).unwrap(), odd);
        // The danger settings too, when set (the fuzzer found them dropped).
        let cheating = Config {
            danger_cheat: Some("flip:0.1".parse().unwrap()),
            danger_false_verdicts: Some("flip:1.0".parse().unwrap()),
            danger_clock_skew_ms: Some(-30_000),
            ..config
        };
        assert_eq!(load_text(&cheating.to_commented_toml()).unwrap(), cheating);
    }

    #[test]
    fn every_key_is_commented() {
        let text = Config::default().to_commented_toml();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains(" = ") {
                assert!(lines[i - 1].starts_with('#'), "no comment above {line:?}");
            }
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = load_text("listn = []\n").unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
        let err = load_text("idle_block_interval_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle_block_interval_ms = 0"), "{err}");
        let err = load_text("api = \"nowhere\"\n").unwrap_err().to_string();
        assert!(err.contains("api"), "{err}");
        let err = load_text("danger_clock_skew_ms = 86400001\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("danger_clock_skew_ms = 86400001"), "{err}");
    }
}
