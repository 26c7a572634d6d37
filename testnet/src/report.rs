//! What every `attest testnet` command reports: one row per node, probed over its HTTP API,
//! as a table for a person or as one JSON object (schema `attest.testnet/1`) for a program.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use attest_node::views::Status;

use crate::http::ErrorKind;
use crate::layout::{ClientLayout, LOG_FILE, Layout};
use crate::procs;

/// The `schema` of every `attest testnet --json` object.
pub const SCHEMA: &str = "attest.testnet/1";

/// How long a probe waits for a node's status: loopback answers in milliseconds, and a node
/// that takes longer than this is too busy to count as ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a node is doing, as far as its pid file and its API say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Its API answers with its own PeerId.
    Up,
    /// Its process runs but its API does not answer (yet).
    Starting,
    /// No process and no answer.
    Down,
    /// Something else answers on its API port: another node (of another testnet) or program.
    PortTaken,
    /// `attest testnet remove-node` unstaked and stopped it; `up` leaves it stopped.
    Removed,
}

impl NodeState {
    /// The state's name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Starting => "starting",
            NodeState::Down => "down",
            NodeState::PortTaken => "port-taken",
            NodeState::Removed => "removed",
        }
    }
}

/// One node's row.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// Its index.
    pub index: usize,
    /// What it is doing.
    pub state: NodeState,
    /// Its process, if it runs.
    pub pid: Option<u32>,
    /// Its libp2p PeerId.
    pub peer_id: String,
    /// Its validator and provider account.
    pub account: String,
    /// Its device profile.
    pub device: String,
    /// Its advertised price per token, in micro-units.
    pub price_per_token: u64,
    /// `MODE:RATE` if it cheats on purpose.
    pub cheater: Option<String>,
    /// Its libp2p listen multiaddr.
    pub listen: String,
    /// Its HTTP API.
    pub api_url: String,
    /// Its metrics endpoint.
    pub metrics_url: String,
    /// The explorer it serves (its API's `/`).
    pub explorer_url: String,
    /// Its last committed height, while up.
    pub height: Option<u64>,
    /// Its connected peers, while up.
    pub peers: Option<u64>,
    /// Its home directory.
    pub home: String,
    /// Its log file.
    pub log: String,
    /// The signal `down` stopped it with (`TERM` or `KILL`), if it did.
    pub stopped_with: Option<&'static str>,
}

/// What `add-node` did and how long each part took (the `membership` field of its report).
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    /// The node.
    pub node: usize,
    /// Its account.
    pub account: String,
    /// `state sync from height H` or `block sync from genesis` (add-node); `unstaked`
    /// (remove-node).
    pub how: String,
    /// Height of the transaction that funded it (add-node) or unstaked it (remove-node).
    pub tx_height: Option<u64>,
    /// Height of its stake (add-node).
    pub staked_at: Option<u64>,
    /// Milliseconds from its start until it had caught up with node 0's height at the start.
    pub sync_ms: Option<u64>,
    /// Milliseconds from its stake's commit until its advert was in every running node's book.
    pub advert_ms: Option<u64>,
    /// Milliseconds for the whole command.
    pub total_ms: u64,
}

/// One `attest testnet` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// `init`, `up`, `down` or `status`.
    pub command: &'static str,
    /// The testnet directory.
    pub dir: String,
    /// The chain id.
    pub chain_id: String,
    /// The genesis hash.
    pub genesis_hash: String,
    /// Nodes whose API answers.
    pub nodes_up: usize,
    /// The nodes.
    pub nodes: Vec<NodeRow>,
    /// The funded clients.
    pub clients: Vec<ClientLayout>,
    /// Whether `down --purge` removed the directory.
    pub purged: bool,
    /// What `add-node` or `remove-node` did, and how long it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<Membership>,
}

impl Report {
    /// A report of `command` over `rows`.
    pub fn new(command: &'static str, dir: &Path, layout: &Layout, nodes: Vec<NodeRow>) -> Self {
        Self {
            schema: SCHEMA,
            command,
            dir: dir.display().to_string(),
            chain_id: layout.chain_id.clone(),
            genesis_hash: layout.genesis_hash.clone(),
            nodes_up: nodes.iter().filter(|n| n.state == NodeState::Up).count(),
            nodes,
            clients: layout.clients.clone(),
            purged: false,
            membership: None,
        }
    }
}

/// Node `i`'s row without asking it anything: as `init` leaves it.
pub fn offline_row(dir: &Path, layout: &Layout, i: usize) -> NodeRow {
    let node = &layout.nodes[i];
    let home = layout.home(dir, i);
    NodeRow {
        index: i,
        state: if node.removed {
            NodeState::Removed
        } else {
            NodeState::Down
        },
        pid: None,
        peer_id: node.peer_id.clone(),
        account: node.account.clone(),
        device: node.device.clone(),
        price_per_token: node.price_per_token,
        cheater: node.cheater.clone(),
        listen: node.listen.clone(),
        api_url: node.api_url.clone(),
        metrics_url: node.metrics_url.clone(),
        explorer_url: format!("{}/", node.api_url),
        height: None,
        peers: None,
        log: home.join(LOG_FILE).display().to_string(),
        home: home.display().to_string(),
        stopped_with: None,
    }
}

/// Node `i`'s row: its pid file checked against the running processes, its API asked for
/// `/v1/status`.
pub fn probe(dir: &Path, layout: &Layout, i: usize) -> NodeRow {
    let mut row = offline_row(dir, layout, i);
    row.pid = procs::running_pid(&layout.home(dir, i));
    let answer = node_status(layout.nodes[i].api);
    row.state = match &answer {
        Answer::Status(s) if s.peer_id == layout.nodes[i].peer_id => NodeState::Up,
        Answer::Status(_) | Answer::Other => NodeState::PortTaken,
        Answer::None if row.pid.is_some() => NodeState::Starting,
        Answer::None if layout.nodes[i].removed => NodeState::Removed,
        Answer::None => NodeState::Down,
    };
    if row.state == NodeState::Up
        && let Answer::Status(s) = answer
    {
        row.height = Some(s.height.0);
        row.peers = u64::try_from(s.peers).ok();
    }
    row
}

/// Every node's row, probed at once so that one slow node does not delay the others.
pub fn probe_all(dir: &Path, layout: &Layout) -> Vec<NodeRow> {
    std::thread::scope(|scope| {
        let probes: Vec<_> = (0..layout.nodes.len())
            .map(|i| scope.spawn(move || probe(dir, layout, i)))
            .collect();
        probes
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.join().unwrap_or_else(|_| offline_row(dir, layout, i)))
            .collect()
    })
}

/// What answers `GET /v1/status` on a node's API address.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A node, with its status.
    Status(Box<Status>),
    /// Something that answers 200 with a body that is not a node's status.
    Other,
    /// Nothing, an error status, or not in time.
    None,
}

/// What answers `GET /v1/status` at `api`.
pub fn node_status(api: SocketAddr) -> Answer {
    let client = crate::http::Client::local(api).with_timeouts(PROBE_TIMEOUT, PROBE_TIMEOUT);
    match client.get("/v1/status") {
        Ok(status) => Answer::Status(Box::new(status)),
        Err(e) if matches!(e.kind(), ErrorKind::BadBody { status: 200, .. }) => Answer::Other,
        Err(_) => Answer::None,
    }
}

/// The table a person reads: one line per node, then where the files are.
pub fn print_table(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    let total = report.nodes.len();
    writeln!(
        out,
        "testnet {} in {}: {} of {total} nodes up",
        report.chain_id, report.dir, report.nodes_up
    )?;
    writeln!(
        out,
        "genesis hash {} (pin it: attest audit --genesis-hash ...)",
        report.genesis_hash
    )?;
    if let Some(up) = report.nodes.iter().find(|n| n.state == NodeState::Up) {
        writeln!(
            out,
            "explorer {} (every node serves one at its API URL)",
            up.explorer_url
        )?;
    }
    if let Some(m) = &report.membership {
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        match report.command {
            "add-node" => writeln!(
                out,
                "node {} joined ({}): funded at height {}, caught up in {}, staked at height {}, \
                 advert in every book {} later; {} ms in all",
                m.node,
                m.how,
                m.tx_height.unwrap_or(0),
                ms(m.sync_ms),
                m.staked_at.unwrap_or(0),
                ms(m.advert_ms),
                m.total_ms
            )?,
            _ => writeln!(
                out,
                "node {} removed: {}, stopped; {} ms in all",
                m.node,
                m.tx_height.map_or_else(
                    || "it had no bonded stake".to_owned(),
                    |h| format!("its stake unbonds from height {h}")
                ),
                m.total_ms
            )?,
        }
    }
    writeln!(
        out,
        "{:<4} {:<10} {:<52} {:>7} {:>5}  {:<9} {:<22} {:<30} cheat",
        "node", "state", "PeerId", "height", "peers", "device", "API URL", "metrics URL"
    )?;
    let dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for n in &report.nodes {
        let state = match n.stopped_with {
            Some(signal) => format!("down:{}", signal.to_lowercase()),
            None => n.state.name().to_owned(),
        };
        writeln!(
            out,
            "{:<4} {:<10} {:<52} {:>7} {:>5}  {:<9} {:<22} {:<30} {}",
            n.index,
            state,
            n.peer_id,
            dash(n.height),
            dash(n.peers),
            n.device,
            n.api_url,
            n.metrics_url,
            n.cheater.as_deref().unwrap_or("-"),
        )?;
    }
    if report.purged {
        writeln!(out, "removed {}", report.dir)?;
    } else {
        writeln!(out, "logs: {}/node-*/{LOG_FILE}", report.dir)?;
    }
    Ok(())
}
