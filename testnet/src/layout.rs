//! A local testnet on disk: `attest testnet init` writes it, the launcher reads it.
//!
//! ```text
//! DIR/testnet.json            the layout (schema attest.testnet-layout/1), read by up/down/status
//! DIR/genesis.json            every node a staked validator; clients funded
//! DIR/node-I/config.toml      loopback listen and API ports, bootnodes, device, price
//! DIR/node-I/node.key         the node's libp2p identity (mode 0600)
//! DIR/node-I/account.key      its validator and provider account (mode 0600)
//! DIR/node-I/node.pid         while it runs (written by `up`)
//! DIR/node-I/node.log         its stdout and stderr, appended to on every start
//! DIR/clients/client-J.key    funded client accounts (mode 0600)
//! ```
//!
//! Every key is derived from the seed, so the same seed gives the same PeerIds and accounts
//! on every machine: a local testnet's keys are public by construction and worth nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use attest_chain::GenesisFile;
use attest_contracts_sim::Params;
use attest_core::accel::{Cheat, TimeScale};
use attest_node::config::{Config, files};
use attest_protocol::{Amount, ChainId, SecretKey, hash_tagged};
use serde::{Deserialize, Serialize};

/// The layout file in a testnet directory.
pub const LAYOUT_FILE: &str = "testnet.json";
/// The genesis file in a testnet directory.
pub const GENESIS_FILE: &str = "genesis.json";
/// The directory of client keys.
pub const CLIENTS_DIR: &str = "clients";
/// A node's pid file in its home, present while `up` believes it runs.
pub const PID_FILE: &str = "node.pid";
/// A node's log in its home.
pub const LOG_FILE: &str = "node.log";
/// The `schema` of [`LAYOUT_FILE`].
pub const LAYOUT_SCHEMA: &str = "attest.testnet-layout/1";
/// Where a testnet lives unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = ".attest/testnet";
/// The most nodes: every node runs its stand-in computations on this machine's cores, and ten
/// BFT validators on one laptop already spend more time voting than computing.
pub const MAX_NODES: usize = 10;
/// The most funded client accounts: enough for a load generator, small enough to list.
pub const MAX_CLIENTS: usize = 100;
/// The domain tag of every derived key.
const KEY_TAG: &str = "attest/testnet/v1";
/// The API rate (and burst) per client address of a testnet node: far above what the bench
/// sends, since all of its clients share 127.0.0.1.
const TESTNET_API_RATE: u32 = 100_000;
/// Device profiles dealt to nodes in turn, each with its advertised price per token in
/// micro-units: faster devices ask more, so a client's choice between them is a real one.
const DEVICES: [(&str, u64); 4] = [
    ("wse-3", 300),
    ("h100-sxm", 150),
    ("a100-80gb", 100),
    ("cpu", 20),
];
/// An idle local chain still makes four blocks a second, so time-based windows advance
/// quickly while the logs stay readable.
pub const IDLE_BLOCK_INTERVAL_MS: u64 = 250;
/// Each validator's bonded stake, in tokens: a hundred times the minimum, so a node that
/// loses a dispute (half its stake slashed) stays staked and the testnet keeps its validators.
pub const STAKE_TOKENS: u64 = 10_000;
/// Each validator's and each client's spendable balance, in tokens: no demo or load run on a
/// local testnet comes near spending it.
const BALANCE_TOKENS: u64 = 1_000_000;

/// A node told to cheat: `I:MODE:RATE`, e.g. `2:flip:0.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheaterSpec {
    /// The node's index.
    pub node: usize,
    /// How and how often it cheats (the node's `danger_cheat`).
    pub cheat: Cheat,
}

impl FromStr for CheaterSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        if !attest_core::accel::CHEATS_COMPILED {
            bail!(
                "--cheater {s:?}: this build has no cheat modes; they are compiled only with \
                 the `cheats` feature (cargo build --release --features cheats)"
            );
        }
        // Clap shows only the outermost message of a value parser's error: put it all there.
        let (node, cheat) = s
            .split_once(':')
            .ok_or_else(|| anyhow!("--cheater {s:?}: expected NODE:MODE:RATE, e.g. 1:flip:0.1"))?;
        let node = node
            .trim()
            .parse()
            .map_err(|_| anyhow!("--cheater {s:?}: node {node:?} is not a node index"))?;
        let cheat = cheat.parse().map_err(|e| anyhow!("--cheater {s:?}: {e}"))?;
        Ok(Self { node, cheat })
    }
}

/// What `attest testnet init` is asked for.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The testnet directory.
    pub dir: PathBuf,
    /// Validators, 1 to [`MAX_NODES`].
    pub nodes: usize,
    /// The seed every key and the chain id derive from.
    pub seed: u64,
    /// Node `i` listens on `base_port + 2i` (libp2p) and `base_port + 2i + 1` (HTTP API).
    pub base_port: u16,
    /// Funded client accounts, 0 to [`MAX_CLIENTS`].
    pub clients: usize,
    /// Nodes told to cheat.
    pub cheaters: Vec<CheaterSpec>,
    /// Every node's `watch_rate`: the share of others' results it re-executes and
    /// challenges if wrong.
    pub watch_rate: f64,
    /// Replace a testnet already in `dir`.
    pub force: bool,
}

/// The `watch_rate` of a testnet's nodes unless told otherwise: each re-executes a tenth of
/// the others' results, so with three honest nodes about a quarter of a cheater's results
/// are re-executed by a watcher on top of the random draw (1 - 0.9^3).
pub const DEFAULT_WATCH_RATE: f64 = 0.1;

/// One node of [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLayout {
    /// Its index, from 0.
    pub index: usize,
    /// Its home, relative to the testnet directory.
    pub home: PathBuf,
    /// Its libp2p PeerId.
    pub peer_id: String,
    /// Its validator and provider account.
    pub account: String,
    /// Its libp2p listen multiaddr.
    pub listen: String,
    /// Its HTTP API address.
    pub api: SocketAddr,
    /// Its HTTP API as a URL.
    pub api_url: String,
    /// Where its metrics are served.
    pub metrics_url: String,
    /// Its device profile.
    pub device: String,
    /// Its advertised price per token, in micro-units.
    pub price_per_token: u64,
    /// `MODE:RATE` if it cheats on purpose.
    pub cheater: Option<String>,
    /// Whether it joined the running chain (`attest testnet add-node`) rather than being
    /// staked at genesis.
    #[serde(default)]
    pub joined: bool,
    /// Whether `attest testnet remove-node` unstaked and stopped it: `up` leaves it stopped.
    #[serde(default)]
    pub removed: bool,
}

/// One funded client of [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLayout {
    /// Its index, from 0.
    pub index: usize,
    /// Its account.
    pub account: String,
    /// Its key file, relative to the testnet directory.
    pub key: PathBuf,
}

/// `DIR/testnet.json`: everything the launcher and clients need to find the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Always [`LAYOUT_SCHEMA`].
    pub schema: String,
    /// The chain id, `attest-testnet-<seed>`.
    pub chain_id: String,
    /// The seed the keys derive from.
    pub seed: u64,
    /// The first port.
    pub base_port: u16,
    /// The genesis hash.
    pub genesis_hash: String,
    /// The nodes, by index.
    pub nodes: Vec<NodeLayout>,
    /// The funded clients, by index.
    pub clients: Vec<ClientLayout>,
}

impl Layout {
    /// Reads `DIR/testnet.json`, saying plainly when there is no testnet there.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(LAYOUT_FILE);
        if !path.exists() {
            bail!(
                "no testnet in {}: {} does not exist (create one with `attest testnet init \
                 --dir {}`)",
                dir.display(),
                path.display(),
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let layout: Layout = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a testnet layout", path.display()))?;
        if layout.schema != LAYOUT_SCHEMA {
            bail!(
                "{}: schema {:?}; this attest reads {LAYOUT_SCHEMA:?}",
                path.display(),
                layout.schema
            );
        }
        for (i, node) in layout.nodes.iter().enumerate() {
            if node.index != i || !node.api.ip().is_loopback() || node.home.is_absolute() {
                bail!(
                    "{}: node {i} is malformed (index {}, api {}, home {}): a local testnet \
                     lists its nodes in order, on loopback, with homes inside its directory",
                    path.display(),
                    node.index,
                    node.api,
                    node.home.display()
                );
            }
        }
        Ok(layout)
    }

    /// Node `i`'s home.
    pub fn home(&self, dir: &Path, i: usize) -> PathBuf {
        dir.join(&self.nodes[i].home)
    }

    /// Writes `DIR/testnet.json` atomically (a temporary file renamed over it), so a reader
    /// never sees half a layout.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(LAYOUT_FILE);
        let tmp = dir.join(format!("{LAYOUT_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self).context("encoding the layout")?;
        std::fs::write(&tmp, json + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }
}

/// A node added to the running testnet `layout` in `dir` as node `layout.nodes.len()`: its
/// home (keys derived from the seed as the others', a config whose bootnodes are every other
/// node, the testnet's watch rate) on the next two ports, on `device` (default: the next in
/// the cycle). Answers its layout and its device's capability; the caller adds it to the
/// layout.
pub fn new_node(
    dir: &Path,
    layout: &Layout,
    device: Option<&str>,
    watch_rate: f64,
) -> Result<NodeLayout> {
    let i = layout.nodes.len();
    if i >= MAX_NODES {
        bail!("the testnet already has {i} nodes; at most {MAX_NODES}");
    }
    let opts = InitOptions {
        dir: dir.to_owned(),
        nodes: i + 1,
        seed: layout.seed,
        base_port: layout.base_port,
        clients: 0,
        cheaters: Vec::new(),
        watch_rate,
        force: false,
    };
    let last = u32::from(layout.base_port) + 2 * i as u32 + 1;
    if last > u32::from(u16::MAX) {
        bail!("node {i}'s API port {last} is above 65535");
    }
    let mut node = node_layout(&opts, i);
    node.joined = true;
    if let Some(device) = device {
        let (name, price) = DEVICES
            .iter()
            .find(|(name, _)| *name == device)
            .ok_or_else(|| {
                let names: Vec<&str> = DEVICES.iter().map(|(n, _)| *n).collect();
                anyhow!("device {device:?}: use one of {}", names.join(", "))
            })?;
        node.device = (*name).to_owned();
        node.price_per_token = *price;
    }
    let home = dir.join(&node.home);
    if home.exists() {
        bail!(
            "{} already exists: a node once added there was not cleaned up; remove it first",
            home.display()
        );
    }
    let mut all = layout.nodes.clone();
    all.push(node.clone());
    write_home(&opts, &node, &all)?;
    Ok(node)
}

/// Writes `node`'s home in `opts.dir`: a private directory, its node and account keys
/// derived from the seed, and its config (every other node of `all` a bootnode). Answers
/// the two keys.
fn write_home(
    opts: &InitOptions,
    node: &NodeLayout,
    all: &[NodeLayout],
) -> Result<(SecretKey, SecretKey)> {
    let home = opts.dir.join(&node.home);
    private_dir(&home)?;
    let node_key = derived_key(opts.seed, "node", node.index);
    let account_key = derived_key(opts.seed, "account", node.index);
    attest_node::keyfile::write(&home.join(files::NODE_KEY), &node_key)?;
    attest_node::keyfile::write(&home.join(files::ACCOUNT_KEY), &account_key)?;
    write_config(&home, &node_config(opts, node, all)?)?;
    Ok((node_key, account_key))
}

/// The directory name of node `i`'s home.
fn home_name(i: usize) -> String {
    format!("node-{i}")
}

/// A key derived from the seed: `H("attest/testnet/v1", seed || role || index)` as an ed25519
/// seed. The seed and index have fixed widths, so distinct inputs never share a preimage.
pub fn derived_key(seed: u64, role: &str, index: usize) -> SecretKey {
    let index = index as u64;
    let h = hash_tagged(
        KEY_TAG,
        &[&seed.to_le_bytes(), role.as_bytes(), &index.to_le_bytes()],
    );
    SecretKey::from_seed(*h.as_bytes())
}

/// The chain parameters of a local testnet, and why. Windows are block time, so they last
/// as long under load as idle; they are sized for a busy machine (several nodes
/// re-executing jobs on one machine's cores, and watchers re-running others' results), and
/// everything economic keeps the contract's defaults:
/// - `verdict_window_ms` 10 s: for a checker to re-run a job and get its verdict committed,
///   and for a watcher or the client to challenge (the default 5 s is tight on 2 cores).
/// - `dispute_round_ms` 5 s for each bisection move.
/// - `max_deadline_ms` 60 s: a client may give a provider up to a minute.
/// - `unbonding_ms`: the contract requires it to outlast the longest job, which the windows
///   above lengthen; it is that bound rounded up to the next minute.
pub fn testnet_params() -> Result<Params> {
    let mut params = Params {
        verdict_window_ms: 10_000,
        dispute_round_ms: 5_000,
        max_deadline_ms: 60_000,
        ..Params::default()
    };
    let longest = params
        .longest_job_ms()
        .context("the testnet's windows overflow the longest-job bound")?;
    params.unbonding_ms = (longest / 60_000 + 1) * 60_000;
    Ok(params)
}

/// The entries of `dir` that a testnet owns and that exist now.
pub fn existing_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = read
        .filter_map(|entry| entry.ok())
        .filter(|entry| is_testnet_entry(&entry.file_name().to_string_lossy()))
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}

/// Whether a name in a testnet directory is one the testnet owns.
fn is_testnet_entry(name: &str) -> bool {
    let node_home = name
        .strip_prefix("node-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    node_home || [LAYOUT_FILE, GENESIS_FILE, CLIENTS_DIR].contains(&name)
}

/// Removes what a testnet owns in `dir` (never anything else), then `dir` itself if that left
/// it empty. Answers whether `dir` is gone.
pub fn remove_testnet(dir: &Path) -> Result<bool> {
    for path in existing_entries(dir) {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(std::fs::remove_dir(dir).is_ok())
}

/// Checks the options that clap cannot, before anything is written.
fn check(opts: &InitOptions) -> Result<ChainId> {
    if !(1..=MAX_NODES).contains(&opts.nodes) {
        bail!(
            "--nodes {}: a testnet has 1 to {MAX_NODES} nodes",
            opts.nodes
        );
    }
    if opts.clients > MAX_CLIENTS {
        bail!("--clients {}: at most {MAX_CLIENTS}", opts.clients);
    }
    let last = u32::from(opts.base_port) + 2 * opts.nodes as u32 - 1;
    if opts.base_port < 1024 || last > u32::from(u16::MAX) {
        bail!(
            "--base-port {}: {} nodes need ports {} to {last}, which must lie within 1024 to \
             65535",
            opts.base_port,
            opts.nodes,
            opts.base_port
        );
    }
    let mut seen = Vec::new();
    for c in &opts.cheaters {
        if c.node >= opts.nodes {
            bail!(
                "--cheater {}:{}: there is no node {} (nodes are 0 to {})",
                c.node,
                c.cheat,
                c.node,
                opts.nodes - 1
            );
        }
        if seen.contains(&c.node) {
            bail!("--cheater: node {} is given twice", c.node);
        }
        seen.push(c.node);
    }
    let id = format!("attest-testnet-{}", opts.seed);
    ChainId::new(&id).map_err(|e| anyhow!("--seed {}: chain id {id:?}: {e}", opts.seed))
}

/// Creates a testnet in `opts.dir`, or explains why not. On failure nothing half-written is
/// left behind. `running` names the node processes still running in a directory (the
/// launcher's `procs::running_nodes`): an existing testnet is replaced only when none is.
pub fn init(opts: &InitOptions, running: impl Fn(&Path) -> Vec<u32>) -> Result<Layout> {
    let chain_id = check(opts)?;
    let dir = &opts.dir;
    let existing = existing_entries(dir);
    if !existing.is_empty() {
        if !opts.force {
            let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "{} already holds a testnet ({}); pass --force to replace it, deleting its \
                 keys and chain data",
                dir.display(),
                names.join(", ")
            );
        }
        let running = running(dir);
        if !running.is_empty() {
            bail!(
                "{} holds a running testnet (pids {running:?}); stop it first with `attest \
                 testnet down --dir {}`",
                dir.display(),
                dir.display()
            );
        }
        tracing::info!(dir = %dir.display(), "--force: removing the existing testnet");
        remove_testnet(dir)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_all(opts, chain_id).inspect_err(|_| {
        // Best effort: what is left is reported by the next init, never silently reused.
        let _ = remove_testnet(dir);
    })
}

/// Writes homes, client keys, genesis and layout, in that order (the layout last, so a
/// directory with a layout is a complete testnet).
fn write_all(opts: &InitOptions, chain_id: ChainId) -> Result<Layout> {
    let dir = &opts.dir;
    let nodes: Vec<NodeLayout> = (0..opts.nodes).map(|i| node_layout(opts, i)).collect();
    let mut balances = Vec::new();
    let mut stakes = Vec::new();
    let stake = Amount::tokens(STAKE_TOKENS).context("stake overflows")?;
    let balance = Amount::tokens(BALANCE_TOKENS).context("balance overflows")?;
    for node in &nodes {
        let (node_key, account_key) = write_home(opts, node, &nodes)?;
        balances.push((account_key.public(), balance));
        let device = attest_core::accel::DeviceProfile::find(&node.device)
            .map_err(|e| anyhow!("node {}: {e}", node.index))?
            .capability();
        stakes.push((account_key.public(), node_key.public(), stake, device));
    }
    let mut clients = Vec::new();
    if opts.clients > 0 {
        private_dir(&dir.join(CLIENTS_DIR))?;
    }
    for j in 0..opts.clients {
        let key = derived_key(opts.seed, "client", j);
        let rel = Path::new(CLIENTS_DIR).join(format!("client-{j}.key"));
        attest_node::keyfile::write(&dir.join(&rel), &key)?;
        balances.push((key.public(), balance));
        clients.push(ClientLayout {
            index: j,
            account: key.public().to_string(),
            key: rel,
        });
    }
    let genesis = GenesisFile::new(
        chain_id.clone(),
        attest_node::shell::now_ms(),
        testnet_params()?,
        balances,
        stakes,
    );
    attest_contracts_sim::State::from_genesis(&genesis.genesis)
        .map_err(|e| anyhow!("the testnet genesis is refused by the contract: {e}"))?;
    attest_node::genesis::write(&genesis, &dir.join(GENESIS_FILE))?;
    let layout = Layout {
        schema: LAYOUT_SCHEMA.to_owned(),
        chain_id: chain_id.to_string(),
        seed: opts.seed,
        base_port: opts.base_port,
        genesis_hash: genesis.hash().to_string(),
        nodes,
        clients,
    };
    layout.save(dir)?;
    Ok(layout)
}

/// Node `i` as the layout describes it.
fn node_layout(opts: &InitOptions, i: usize) -> NodeLayout {
    let p2p = opts.base_port + 2 * i as u16;
    let api = SocketAddr::from(([127, 0, 0, 1], p2p + 1));
    let (device, price) = DEVICES[i % DEVICES.len()];
    NodeLayout {
        index: i,
        home: PathBuf::from(home_name(i)),
        peer_id: derived_key(opts.seed, "node", i).public().peer_id(),
        account: derived_key(opts.seed, "account", i).public().to_string(),
        listen: format!("/ip4/127.0.0.1/tcp/{p2p}"),
        api,
        api_url: format!("http://{api}"),
        metrics_url: format!("http://{api}/metrics"),
        device: device.to_owned(),
        price_per_token: price,
        cheater: opts
            .cheaters
            .iter()
            .find(|c| c.node == i)
            .map(|c| c.cheat.to_string()),
        joined: false,
        removed: false,
    }
}

/// Node `node`'s configuration: every other node is a bootnode, node 0 first, so the nodes
/// find each other whichever starts first.
fn node_config(opts: &InitOptions, node: &NodeLayout, all: &[NodeLayout]) -> Result<Config> {
    let bootnodes = all
        .iter()
        .filter(|other| other.index != node.index)
        .map(|other| format!("{}/p2p/{}", other.listen, other.peer_id))
        .collect();
    let danger_cheat = opts
        .cheaters
        .iter()
        .find(|c| c.node == node.index)
        .map(|c| c.cheat);
    let config = Config {
        listen: vec![node.listen.clone()],
        bootnodes,
        api: node.api,
        idle_block_interval_ms: IDLE_BLOCK_INTERVAL_MS,
        device: node.device.clone(),
        time_scale: TimeScale::HUNDREDTH,
        serve_jobs: true,
        price_per_token: node.price_per_token,
        watch_rate: opts.watch_rate,
        // Every client of a local testnet (the demo, the bench's 32 clients) comes from
        // 127.0.0.1: one address, so the per-address limit is the whole testnet's.
        api_rate_per_s: TESTNET_API_RATE,
        api_burst: TESTNET_API_RATE,
        danger_cheat,
        ..Config::default()
    };
    config
        .validate(Path::new(files::CONFIG))
        .with_context(|| format!("node {}'s configuration", node.index))?;
    Ok(config)
}

/// Writes `config` as the node's commented `config.toml`, then reads it back: the file must
/// say exactly what was meant, the cheat setting included.
fn write_config(home: &Path, config: &Config) -> Result<()> {
    let path = home.join(files::CONFIG);
    let text = config.to_commented_toml();
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let back = Config::load(&path)?;
    if &back != config {
        bail!(
            "{} does not read back as written; the node's config format changed",
            path.display()
        );
    }
    Ok(())
}

/// Creates `path` as a directory only its owner may enter: it holds keys.
fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheater_specs_parse_or_name_the_text() {
        let c: CheaterSpec = "2:flip:0.1".parse().unwrap();
        assert_eq!((c.node, c.cheat.to_string()), (2, "flip:0.1".to_owned()));
        for bad in ["", "flip:0.1", "x:flip:0.1", "1:fly:0.1", "1:flip:2", "1"] {
            let err = bad.parse::<CheaterSpec>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn keys_are_deterministic_and_distinct_by_role_and_index() {
        let a = derived_key(0, "node", 0).public();
        assert_eq!(a, derived_key(0, "node", 0).public());
        assert_ne!(a, derived_key(1, "node", 0).public());
        assert_ne!(a, derived_key(0, "account", 0).public());
        assert_ne!(a, derived_key(0, "node", 1).public());
    }

    #[test]
    fn the_testnet_params_are_valid() {
        let params = testnet_params().unwrap();
        assert_eq!(params.validate(), Ok(()));
        assert!(params.unbonding_ms > params.longest_job_ms().unwrap());
    }

    #[test]
    fn only_testnet_entries_are_owned() {
        for name in [
            "node-0",
            "node-12",
            "clients",
            "genesis.json",
            "testnet.json",
        ] {
            assert!(is_testnet_entry(name), "{name}");
        }
        for name in ["node-", "node-x", "notes.txt", "node0"] {
            assert!(!is_testnet_entry(name), "{name}");
        }
    }
}
