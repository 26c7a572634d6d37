//! `attest testnet up|down|status`: run the nodes of a testnet directory as detached
//! processes on loopback, stop them, and say how they are.
//!
//! `up` starts each node that is not already running as `attest node --home DIR/node-I
//! --genesis DIR/genesis.json` (the same binary), records its pid, and waits until every node
//! answers on its API and has committed a block since the wait began. `down` sends SIGTERM,
//! waits, then SIGKILL. Nothing here holds state between commands except the pid files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::{self, GENESIS_FILE, InitOptions, LAYOUT_FILE, LOG_FILE, Layout};
use crate::procs::{self, Signal};
use crate::report::{self, NodeRow, NodeState, Report};

/// Lines of a node's log shown when it fails to come up.
const TAIL_LINES: usize = 30;
/// How often `up` and `down` look again.
const POLL: Duration = Duration::from_millis(200);
/// How long `down` waits for a SIGKILLed process to disappear before reporting it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A command's report and, if it failed part-way, why (with the log tail that explains it).
/// The report is printed either way, so a failed `up` still shows which nodes run.
#[derive(Debug)]
pub struct Outcome {
    /// What to print.
    pub report: Report,
    /// What went wrong, if anything.
    pub failure: Option<String>,
}

/// `dir` made absolute (and canonical if it exists): node processes get absolute paths, and
/// reports name the directory whatever the working directory was.
pub fn absolute_dir(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .with_context(|| format!("resolving {}", dir.display()))
}

/// The options of `attest testnet init` with every default, for `up` on an empty directory.
pub fn default_init(dir: &Path) -> InitOptions {
    InitOptions {
        dir: dir.to_owned(),
        nodes: 4,
        seed: 0,
        base_port: 26_600,
        clients: 4,
        cheaters: Vec::new(),
        watch_rate: layout::DEFAULT_WATCH_RATE,
        force: false,
    }
}

/// `attest testnet init`.
pub fn init(opts: &InitOptions) -> Result<Report> {
    let dir = absolute_dir(&opts.dir)?;
    let opts = InitOptions {
        dir: dir.clone(),
        ..opts.clone()
    };
    let layout = layout::init(&opts, procs::running_nodes)?;
    tracing::info!(dir = %dir.display(), chain = %layout.chain_id, nodes = layout.nodes.len(),
        "testnet created");
    let rows = (0..layout.nodes.len())
        .map(|i| report::offline_row(&dir, &layout, i))
        .collect();
    Ok(Report::new("init", &dir, &layout, rows))
}

/// `attest testnet status`.
pub fn status(dir: &Path) -> Result<Report> {
    let dir = absolute_dir(dir)?;
    let layout = Layout::load(&dir)?;
    Ok(Report::new(
        "status",
        &dir,
        &layout,
        report::probe_all(&dir, &layout),
    ))
}

/// `attest testnet up`: starts what is not running, using the binary `exe`, and waits up to
/// `timeout` for every node to commit.
pub fn up(dir: &Path, timeout: Duration, exe: &Path) -> Result<Outcome> {
    let dir = absolute_dir(dir)?;
    if !dir.join(LAYOUT_FILE).exists() {
        tracing::info!(dir = %dir.display(), "no testnet here yet: creating one with the defaults");
        init(&default_init(&dir))?;
    }
    let dir = absolute_dir(&dir)?;
    let layout = Layout::load(&dir)?;
    let genesis = dir.join(GENESIS_FILE);
    if !genesis.exists() {
        bail!(
            "{} is missing; recreate the testnet with `attest testnet init --force`",
            genesis.display()
        );
    }
    let mut children = Vec::new();
    for row in report::probe_all(&dir, &layout) {
        let i = row.index;
        match row.state {
            NodeState::Up => tracing::info!(node = i, "already running: left alone"),
            NodeState::Starting => tracing::info!(node = i, "already starting: left alone"),
            NodeState::Removed => {
                tracing::info!(node = i, "removed from the testnet: left stopped")
            }
            NodeState::PortTaken => bail!(
                "node {i}'s API address {} answers for another node: stop whatever listens \
                 there, or init this testnet with another --base-port",
                layout.nodes[i].api
            ),
            NodeState::Down => {
                let launch = procs::Launch {
                    exe: exe.to_owned(),
                    home: layout.home(&dir, i),
                    genesis: genesis.clone(),
                    log: layout.home(&dir, i).join(LOG_FILE),
                    trust: None,
                };
                children.push((i, start(&layout, i, &launch)?));
            }
        }
    }
    let (rows, failure) = wait_ready(&dir, &layout, &mut children, timeout)?;
    Ok(Outcome {
        report: Report::new("up", &dir, &layout, rows),
        failure,
    })
}

/// Starts node `i` after checking that its ports are free, and records its pid.
pub(crate) fn start(layout: &Layout, i: usize, launch: &procs::Launch) -> Result<Child> {
    let node = &layout.nodes[i];
    procs::remove_pid(&launch.home)?;
    let p2p = p2p_addr(&node.listen);
    for (what, addr) in [("libp2p", p2p), ("HTTP API", Some(node.api))] {
        if let Some(addr) = addr
            && !procs::port_free(addr)
        {
            bail!(
                "node {i}'s {what} address {addr} is in use by another program: stop it, or \
                 init this testnet with another --base-port"
            );
        }
    }
    let child = procs::spawn_node(launch)?;
    procs::write_pid(&launch.home, child.id())?;
    tracing::info!(node = i, pid = child.id(), log = %launch.log.display(), "started");
    Ok(child)
}

/// The TCP address of a loopback `/ip4/A.B.C.D/tcp/PORT` multiaddr, if it is one.
fn p2p_addr(listen: &str) -> Option<SocketAddr> {
    let parts: Vec<&str> = listen.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", ip, "tcp", port] => format!("{ip}:{port}").parse().ok(),
        _ => None,
    }
}

/// Waits until every node is up and has committed a block since the wait began, a node
/// stops, or `timeout` passes; answers the last rows and, unless all went well, what went
/// wrong with the log tail of the node at fault.
fn wait_ready(
    dir: &Path,
    layout: &Layout,
    children: &mut [(usize, Child)],
    timeout: Duration,
) -> Result<(Vec<NodeRow>, Option<String>)> {
    let deadline = Instant::now() + timeout;
    // The first height each node reported: commits are proven by a later one.
    let mut first: Vec<Option<u64>> = vec![None; layout.nodes.len()];
    loop {
        if let Some(why) = exited_child(dir, layout, children)? {
            return Ok((report::probe_all(dir, layout), Some(why)));
        }
        let rows = report::probe_all(dir, layout);
        if let Some(why) = lost_node(dir, layout, &rows, children) {
            return Ok((rows, Some(why)));
        }
        for row in &rows {
            if let Some(h) = row.height {
                first[row.index].get_or_insert(h);
            }
        }
        let committing = |row: &NodeRow| {
            row.state == NodeState::Removed
                || (row.state == NodeState::Up && row.height > first[row.index])
        };
        let waiting: Vec<usize> = rows
            .iter()
            .filter(|r| !committing(r))
            .map(|r| r.index)
            .collect();
        if waiting.is_empty() {
            return Ok((rows, None));
        }
        if Instant::now() >= deadline {
            let why = not_ready(dir, layout, &rows, &waiting, timeout);
            return Ok((rows, Some(why)));
        }
        std::thread::sleep(POLL);
    }
}

/// Why a node started here has already exited, if one has (its pid file is removed).
fn exited_child(
    dir: &Path,
    layout: &Layout,
    children: &mut [(usize, Child)],
) -> Result<Option<String>> {
    for (i, child) in children.iter_mut() {
        if let Some(exit) = child.try_wait().context("checking a started node")? {
            procs::remove_pid(&layout.home(dir, *i))?;
            return Ok(Some(format!(
                "node {i} exited ({exit}) before it was ready; {}",
                tail_of(dir, layout, *i)
            )));
        }
    }
    Ok(None)
}

/// Why waiting is pointless, if it is: a node found running when `up` began (not a child
/// here, so its exit is seen this way) has stopped, or its API port now answers for another.
fn lost_node(
    dir: &Path,
    layout: &Layout,
    rows: &[NodeRow],
    children: &[(usize, Child)],
) -> Option<String> {
    let ours = |i: usize| children.iter().any(|(c, _)| *c == i);
    let row = rows.iter().find(|r| {
        r.state == NodeState::PortTaken || (r.state == NodeState::Down && !ours(r.index))
    })?;
    Some(format!(
        "node {} is {} while waiting for it; {}",
        row.index,
        row.state.name(),
        tail_of(dir, layout, row.index)
    ))
}

/// What a timed-out `up` says: the nodes not committing, and the log of the most telling one
/// (a node that does not even answer explains more than one that answers but waits).
fn not_ready(
    dir: &Path,
    layout: &Layout,
    rows: &[NodeRow],
    waiting: &[usize],
    timeout: Duration,
) -> String {
    let culprit = waiting
        .iter()
        .copied()
        .find(|i| rows[*i].state != NodeState::Up)
        .unwrap_or(waiting[0]);
    let row = &rows[culprit];
    format!(
        "nodes {waiting:?} not committing after {}s (node {culprit} is {}, height {}); the \
         nodes are left running (`attest testnet down --dir {}` stops them); {}",
        timeout.as_secs(),
        row.state.name(),
        row.height.map_or_else(|| "-".to_owned(), |h| h.to_string()),
        dir.display(),
        tail_of(dir, layout, culprit)
    )
}

/// "the last lines of LOG:" and those lines.
pub(crate) fn tail_of(dir: &Path, layout: &Layout, i: usize) -> String {
    let log = layout.home(dir, i).join(LOG_FILE);
    format!(
        "the last lines of {}:\n{}",
        log.display(),
        procs::log_tail(&log, TAIL_LINES)
    )
}

/// A node `down` signalled.
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) index: usize,
    pub(crate) pid: u32,
    /// The last signal sent.
    pub(crate) signal: Signal,
}

/// `attest testnet down`: SIGTERM every node started by `up`, SIGKILL those still running
/// after `grace`, remove the pid files, and with `purge` remove the testnet.
pub fn down(dir: &Path, grace: Duration, purge: bool) -> Result<Outcome> {
    let dir = absolute_dir(dir)?;
    let layout = Layout::load(&dir)?;
    let (stopped, mut survivors) = stop(&dir, &layout, grace, |_| true)?;
    let mut rows = report::probe_all(&dir, &layout);
    for s in &stopped {
        rows[s.index].stopped_with = Some(s.signal.name());
        if procs::alive(s.pid) {
            survivors.push(s.pid);
        } else {
            procs::remove_pid(&layout.home(&dir, s.index))?;
        }
    }
    for row in rows
        .iter()
        .filter(|r| r.state == NodeState::Up && r.pid.is_none())
    {
        tracing::warn!(node = row.index, api = %row.api_url,
            "answers on its API but was not started by `attest testnet up`: left running");
    }
    let mut report = Report::new("down", &dir, &layout, rows);
    if !survivors.is_empty() {
        let why = format!("processes {survivors:?} could not be stopped; nothing was removed");
        return Ok(Outcome {
            report,
            failure: Some(why),
        });
    }
    if purge {
        report.purged = layout::remove_testnet(&dir)?;
        if !report.purged {
            tracing::warn!(dir = %dir.display(),
                "the testnet is removed; the directory holds other files and is kept");
        }
    }
    Ok(Outcome {
        report,
        failure: None,
    })
}

/// Signals every running node `which` picks: SIGTERM, then SIGKILL for those left after
/// `grace`. Answers the nodes signalled and the pids no signal could reach. Stale pid files
/// are removed.
pub(crate) fn stop(
    dir: &Path,
    layout: &Layout,
    grace: Duration,
    which: impl Fn(usize) -> bool,
) -> Result<(Vec<Stopped>, Vec<u32>)> {
    let mut stopped = Vec::new();
    let mut unreachable = Vec::new();
    for index in (0..layout.nodes.len()).filter(|i| which(*i)) {
        let home = layout.home(dir, index);
        match procs::running_pid(&home) {
            Some(pid) if procs::signal(pid, Signal::Term) => {
                tracing::info!(node = index, pid, "sent SIGTERM");
                stopped.push(Stopped {
                    index,
                    pid,
                    signal: Signal::Term,
                });
            }
            Some(pid) => {
                tracing::warn!(node = index, pid, "SIGTERM was not delivered");
                unreachable.push(pid);
            }
            None => procs::remove_pid(&home)?,
        }
    }
    let all_gone = |stopped: &[Stopped]| stopped.iter().all(|s| !procs::alive(s.pid));
    wait_until(grace, || all_gone(&stopped));
    for s in &mut stopped {
        if procs::alive(s.pid) {
            let grace_s = grace.as_secs();
            tracing::warn!(
                node = s.index,
                pid = s.pid,
                grace_s,
                "still running: SIGKILL"
            );
            procs::signal(s.pid, Signal::Kill);
            s.signal = Signal::Kill;
        }
    }
    wait_until(KILL_WAIT, || all_gone(&stopped));
    Ok((stopped, unreachable))
}

/// Polls `done` until it holds or `limit` passes.
pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2p_addresses_are_read_from_loopback_multiaddrs_only() {
        assert_eq!(
            p2p_addr("/ip4/127.0.0.1/tcp/26600"),
            Some(SocketAddr::from(([127, 0, 0, 1], 26_600)))
        );
        assert_eq!(p2p_addr("/ip4/127.0.0.1/udp/1/quic"), None);
        assert_eq!(p2p_addr("/dns/localhost/tcp/1"), None);
    }

    #[test]
    fn down_and_status_without_a_testnet_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = down(dir.path(), Duration::ZERO, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no testnet in") && err.contains(LAYOUT_FILE),
            "{err}"
        );
        assert!(status(dir.path()).is_err());
    }
}
