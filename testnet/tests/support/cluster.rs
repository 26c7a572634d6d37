//! Helpers shared by the process-level tests (`tests/testnet_process.rs`, `tests/chaos.rs`,
//! `tests/netns.rs`, `tests/explorer.rs`, `tests/testnet_cli.rs`) and
//! the 4-process benchmark (`benches/testnet.rs`), each of which includes this file with
//! `#[path]`: picking ports, running `attest` for its JSON (a job asked of a provider by name
//! until its advert is there), bounded waits, a node's files and
//! process, the tail of a node's log, a cluster of four `attest node` processes made as an
//! operator makes them, and a steady load of transfers.

// Each includer uses a part of this file.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attest_cli::http::Client;
use attest_contracts_sim::Params;
use attest_node::api::BlockView;
use attest_node::api::chain::{SubmitTx, Submitted};
pub use attest_node::views::Status;
use attest_protocol::tx::Transfer;
use attest_protocol::{
    Action, Amount, Canonical, ChainId, Nonce, PublicKey, SecretKey, Signed, Tx, tx_hash,
};
use serde_json::Value;

/// The validators of a [`Cluster`].
pub const NODES: usize = 4;
/// The chain id of a [`Cluster`].
pub const CHAIN: &str = "process-test";

/// A port that was free a moment ago: bound on port 0, then released for the node to take.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("bound address").port()
}

/// The `attest` binary Cargo built for this test or bench; `ATTEST_BIN` names another (a bench
/// compares two builds of the node with the same harness that way).
pub fn attest() -> Command {
    match std::env::var_os("ATTEST_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_attest")),
    }
}

/// Runs `attest` to completion and parses its `--json` output.
pub fn attest_json(args: &[&str]) -> Value {
    let out = attest().args(args).output().expect("run attest");
    assert!(
        out.status.success(),
        "attest {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("attest --json prints JSON")
}

/// Runs `attest submit` with `args`, which name a provider (`--provider`), for its JSON. While
/// the node's advert book holds no unexpired advert of that provider (its first advert has
/// not reached the node yet: a provider's first one can go out before its gossip mesh is
/// formed, and the next follows 5 s later), `submit` refuses with nothing
/// sent; it is run again every 250 ms until it is taken, for at most `limit` (scaled by the
/// load). Any other failure panics at once.
pub fn submit_to_provider(args: &[&str], limit: Duration) -> Value {
    assert!(args.contains(&"--provider"), "{args:?} names no provider");
    let started = Instant::now();
    loop {
        let out = attest().args(args).output().expect("run attest");
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).expect("attest --json prints JSON");
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("holds no unexpired advert") && !guard_expired(started, limit),
            "attest {args:?} failed after {:?}: {stderr}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `attest submit` of a job of the tiny model through `node`, paid by `key`: `max_tokens`
/// tokens for `input`, with `--json` and `extra`; its JSON record. With `--provider` among
/// `extra`, it is asked again while the node holds no advert of that provider
/// ([`submit_to_provider`]).
pub fn submit_job(node: &str, key: &str, input: &str, max_tokens: u32, extra: &[&str]) -> Value {
    let max_tokens = max_tokens.to_string();
    let base = [
        "submit",
        "--node",
        node,
        "--key",
        key,
        "--model",
        "attest-tiny-1b",
        "--input",
        input,
        "--max-tokens",
        &max_tokens,
        "--json",
    ];
    let args = [&base[..], extra].concat();
    if extra.contains(&"--provider") {
        submit_to_provider(&args, Duration::from_secs(60))
    } else {
        attest_json(&args)
    }
}

/// How many times its nominal limit a hang guard waits now: the machine's one-minute load
/// average per core, at least 1 and at most 4 (a 2-core machine building and running debug
/// tests side by side is slow, not hung), times `ATTEST_HANG_SCALE` if that is set (a
/// number, e.g. 3 under valgrind). Read at each check, so a guard stretches while the load
/// lasts.
pub fn guard_scale() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let extra = std::env::var("ATTEST_HANG_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(1.0);
    (load / cores).clamp(1.0, 4.0) * extra
}

/// Whether a hang guard of nominal `limit` started at `started` has run out, scaled by
/// [`guard_scale`] now.
pub fn guard_expired(started: Instant, limit: Duration) -> bool {
    started.elapsed() > limit.mul_f64(guard_scale())
}

/// Polls `check` every 50 ms until it yields a value; panics with `what()` (the wait and what
/// was last seen) after `limit`, stretched by the machine's load ([`guard_scale`]). A hang
/// guard only: nothing measures time with it.
pub fn wait_for<T>(
    what: impl Fn() -> String,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            !guard_expired(started, limit),
            "hang guard: {} after {:?} (nominal {limit:?}, scaled by the load)",
            what(),
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One node's home, addresses and process.
pub struct NodeProc {
    /// Its home directory.
    pub home: PathBuf,
    /// Its libp2p port on 127.0.0.1.
    pub p2p: u16,
    /// Its API address.
    pub api: SocketAddr,
    /// Its PeerId.
    pub peer_id: String,
    /// Its log file.
    pub log: PathBuf,
    /// The running process, if any.
    pub child: Option<Child>,
}

/// Prints the last 40 lines of node `i`'s log to stderr.
pub fn print_tail(i: usize, log: &Path) {
    eprintln!("---- node {i}: the last lines of {}", log.display());
    eprintln!("{}", attest_cli::procs::log_tail(log, 40));
}

/// The four nodes. Dropping it kills every process still running, whatever happened.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    /// The genesis file.
    pub genesis: PathBuf,
    /// The nodes, by index.
    pub nodes: Vec<NodeProc>,
    started: Instant,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for (i, node) in self.nodes.iter().enumerate() {
                print_tail(i, &node.log);
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("test directory kept at {}", dir.keep().display());
            }
        }
    }
}

impl Cluster {
    /// `attest init` for each node and `attest genesis` over all homes, funding `client`.
    pub fn init(client: &PublicKey) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let home = dir.path().join(format!("node{i}"));
            let p2p = free_port();
            let listen = format!("/ip4/127.0.0.1/tcp/{p2p}");
            let home_arg = home.display().to_string();
            let report = attest_json(&["init", "--home", &home_arg, "--listen", &listen, "--json"]);
            // Snapshots every few blocks, so the restarted node starts from one.
            let config = home.join("config.toml");
            let text = std::fs::read_to_string(&config).unwrap();
            let text = text.replace(
                "snapshot_interval_blocks = 1000",
                "snapshot_interval_blocks = 4",
            );
            assert!(text.contains("snapshot_interval_blocks = 4"), "{text}");
            std::fs::write(&config, text).unwrap();
            nodes.push(NodeProc {
                log: dir.path().join(format!("node{i}.log")),
                home,
                p2p,
                // The config keeps the default API port, the same for all four: only the
                // `--api` flag given at start keeps them apart, so the flag is tested too.
                api: SocketAddr::from(([127, 0, 0, 1], free_port())),
                peer_id: report["peer_id"].as_str().unwrap().to_owned(),
                child: None,
            });
        }
        let genesis = dir.path().join("genesis.json");
        let mut args = vec![
            "genesis".to_owned(),
            "--chain-id".into(),
            CHAIN.into(),
            "--out".into(),
            genesis.display().to_string(),
            "--fund".into(),
            format!("{client}=1000000"),
            "--json".into(),
        ];
        for node in &nodes {
            args.extend(["--validator".into(), node.home.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        attest_json(&args);
        Self {
            dir: Some(dir),
            genesis,
            nodes,
            started: Instant::now(),
        }
    }

    /// A fifth home (`attest init`; its account is in no genesis, so it only follows) with
    /// the same snapshot interval as the others.
    pub fn add_follower(&mut self) -> usize {
        let dir = self.dir.as_ref().unwrap().path().to_owned();
        let i = self.nodes.len();
        let home = dir.join(format!("node{i}"));
        let p2p = free_port();
        let listen = format!("/ip4/127.0.0.1/tcp/{p2p}");
        let home_arg = home.display().to_string();
        let report = attest_json(&["init", "--home", &home_arg, "--listen", &listen, "--json"]);
        self.nodes.push(NodeProc {
            log: dir.join(format!("node{i}.log")),
            home,
            p2p,
            api: SocketAddr::from(([127, 0, 0, 1], free_port())),
            peer_id: report["peer_id"].as_str().unwrap().to_owned(),
            child: None,
        });
        i
    }

    pub fn say(&self, what: &str) {
        eprintln!("[{:6.2}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// Starts node `i` with every other node as a bootnode; its log is appended to.
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// [`Cluster::start`] with extra arguments to `attest node`.
    pub fn start_with(&mut self, i: usize, extra: &[String]) {
        let bootnodes: Vec<String> = (0..NODES)
            .filter(|j| *j != i)
            .map(|j| {
                let n = &self.nodes[j];
                format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", n.p2p, n.peer_id)
            })
            .collect();
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut command = attest();
        command
            .args(["node", "--home"])
            .arg(&node.home)
            .arg("--genesis")
            .arg(&self.genesis)
            .args(["--api", &node.api.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for b in &bootnodes {
            command.args(["--bootnode", b]);
        }
        command.args(extra);
        self.nodes[i].child = Some(command.spawn().unwrap());
    }

    /// SIGKILL: no shutdown path runs, the store is left as the crash left it.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Node `i`'s status, or `None` if it does not answer (a dead node is expected here).
    /// Each call has a client, and so a connection, of its own.
    pub fn status(&self, i: usize) -> Option<Status> {
        Client::local(self.nodes[i].api).get("/v1/status").ok()
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        Some(self.status(i)?.height.0)
    }

    /// Heights of `nodes`, or `None` while any of them does not answer.
    pub fn heights(&self, nodes: &[usize]) -> Option<Vec<u64>> {
        nodes.iter().map(|i| self.height(*i)).collect()
    }

    pub fn block(&self, i: usize, height: u64) -> BlockView {
        let path = format!("/v1/blocks/{height}");
        Client::local(self.nodes[i].api)
            .get(&path)
            .unwrap_or_else(|e| panic!("node {i}: {e}"))
    }

    /// Waits until every node in `nodes` is at `height` or above.
    pub fn wait_all_reach(&self, nodes: &[usize], height: u64, limit: Duration) -> Vec<u64> {
        // What every node last answered (None: down or not answering), for a failure.
        let seen = std::cell::RefCell::new(Vec::new());
        let what = || {
            format!(
                "nodes {nodes:?} reaching height {height}; last seen {:?}",
                seen.borrow()
            )
        };
        wait_for(what, limit, || {
            *seen.borrow_mut() = (0..NODES).map(|i| self.height(i)).collect();
            self.heights(nodes)
                .filter(|hs| hs.iter().all(|h| *h >= height))
        })
    }
}

/// Refusals in a row for a nonce too far ahead after which a [`Load`] rewinds to the
/// account's committed nonce (a transfer before it was lost): about 5 s of refusals, longer
/// than a stalled round (a dead proposer's 3 s timeout), so back-pressure alone rarely
/// triggers it.
pub const REWIND_AFTER: usize = 100;

/// Transfers sent one after another from the funded client, spread over the given APIs.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Indexes (into the APIs it was given) of nodes it sends nothing to for now.
    avoid: Arc<Mutex<Vec<usize>>>,
    /// Hashes of transfers a node accepted, in nonce order.
    accepted: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<BTreeMap<String, usize>>>,
}

impl Drop for Load {
    /// Stops the sender even when the test fails half-way.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn transfer(chain: &ChainId, client: &SecretKey, to: PublicKey, nonce: u64) -> Signed<Tx> {
    let tx = Tx {
        nonce: Nonce(nonce),
        fee: Params::default().min_fee,
        action: Action::Transfer(Transfer {
            to,
            amount: Amount(1),
        }),
    };
    Signed::sign(chain, client, tx)
}

impl Load {
    /// Sends transfers until stopped. A refused or failed submission is retried with the same
    /// nonce, so the account's nonces have no gaps; a 409 `duplicate` or `stale_nonce` means an
    /// earlier attempt got through after all (the transfer for a nonce is always the same).
    ///
    /// A node that accepted a transfer and died before gossiping it loses it (a mempool is not
    /// durable; `GET /v1/txs/{hash}` then answers 404 everywhere), and every later nonce waits
    /// behind the gap. The sender does what a client must: after [`REWIND_AFTER`] refusals in a
    /// row for a nonce too far ahead, it asks the account's committed nonce and sends again
    /// from there (the same bytes, so the same hashes), counted as `rewound` in the refusals
    /// map (with `resent after stopping`, the same recovery at the end: neither is a refusal).
    pub fn start(apis: Vec<SocketAddr>, client: SecretKey) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let avoid = Arc::new(Mutex::new(Vec::new()));
        let (stop2, accepted2, avoid2) = (stop.clone(), accepted.clone(), avoid.clone());
        let thread = std::thread::spawn(move || {
            // One keep-alive client per node.
            let apis: Vec<Client> = apis.into_iter().map(Client::local).collect();
            let chain: ChainId = CHAIN.parse().unwrap();
            let to = SecretKey::from_seed([7; 32]).public();
            let mut nonce = 0;
            let mut refused = BTreeMap::new();
            let mut ahead_in_row = 0;
            let account = format!("/v1/accounts/{}", client.public());
            while !stop2.load(Ordering::Relaxed) {
                let tx = transfer(&chain, &client, to, nonce);
                let body = SubmitTx {
                    tx: hex::encode(tx.encode()),
                };
                let avoided = avoid2.lock().unwrap().clone();
                let Some(api) = (0..apis.len())
                    .map(|k| (nonce as usize + k) % apis.len())
                    .find(|k| !avoided.contains(k))
                    .map(|k| &apis[k])
                else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let ok = match api.post::<_, Submitted>("/v1/txs", &body) {
                    Ok(_) => true,
                    Err(e) => match e.status() {
                        Some(status) => {
                            let code = e.code().unwrap_or("?");
                            let got_through = matches!(code, "duplicate" | "stale_nonce");
                            *refused.entry(format!("{status} {code}")).or_insert(0) += 1;
                            if code == "nonce_too_far_ahead" {
                                ahead_in_row += 1;
                            }
                            got_through
                        }
                        None => {
                            *refused.entry("connection failed".into()).or_insert(0) += 1;
                            false
                        }
                    },
                };
                if ahead_in_row >= REWIND_AFTER
                    && let Ok(view) = api.get::<Value>(&account)
                    && let Some(committed) = view["nonce"].as_u64()
                    && committed < nonce
                {
                    *refused.entry("rewound".into()).or_insert(0) += 1;
                    nonce = committed;
                    ahead_in_row = 0;
                    continue;
                }
                if ok {
                    ahead_in_row = 0;
                    let hash = tx_hash(&tx).to_string();
                    let mut accepted = accepted2.lock().unwrap();
                    // A rewound nonce sends the same bytes again: one hash, listed once.
                    if !accepted.contains(&hash) {
                        accepted.push(hash);
                    }
                    drop(accepted);
                    nonce += 1;
                    std::thread::sleep(Duration::from_millis(5));
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            // Stopped: make sure nothing accepted stays behind a lost nonce. Until the
            // account's committed nonce reaches ours, resend what is missing whenever it stops
            // moving for two seconds (a hang guard bounds the whole wait).
            let deadline = Instant::now() + Duration::from_secs(60);
            let (mut last, mut since) = (None, Instant::now());
            while Instant::now() < deadline {
                let committed = apis
                    .iter()
                    .find_map(|a| a.get::<Value>(&account).ok()?["nonce"].as_u64());
                match committed {
                    Some(c) if c >= nonce => break,
                    Some(c) if last != Some(c) => (last, since) = (Some(c), Instant::now()),
                    Some(c) if since.elapsed() > Duration::from_secs(2) => {
                        for n in c..nonce {
                            let body = SubmitTx {
                                tx: hex::encode(transfer(&chain, &client, to, n).encode()),
                            };
                            let api = &apis[n as usize % apis.len()];
                            let _ = api.post::<_, Submitted>("/v1/txs", &body);
                        }
                        *refused.entry("resent after stopping".into()).or_insert(0) += 1;
                        since = Instant::now();
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            refused
        });
        Self {
            stop,
            avoid,
            accepted,
            thread: Some(thread),
        }
    }

    /// From now on, sends nothing to the `i`th API it was given (until [`Load::allow`]).
    pub fn avoid(&self, i: usize) {
        self.avoid.lock().unwrap().push(i);
    }

    /// Sends to the `i`th API again.
    pub fn allow(&self, i: usize) {
        self.avoid.lock().unwrap().retain(|k| *k != i);
    }

    pub fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }

    /// Stops sending; answers every accepted hash and the refusals by status and code.
    pub fn finish(mut self) -> (Vec<String>, BTreeMap<String, usize>) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("finished once");
        let refused = thread.join().unwrap();
        let accepted = self.accepted.lock().unwrap().clone();
        (accepted, refused)
    }
}

/// A seeded generator (xorshift64*), for the chaos tests' schedules: they depend on the seed
/// alone.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The number in environment variable `name`, or `default` if it is unset; anything else
/// than a number fails the test, naming it.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// One line per fault kind: how many, and the recovery p50 and max in ms (the chaos tests'
/// summaries).
pub fn recovery_summary(recoveries: &BTreeMap<&str, Vec<u128>>) -> String {
    let kinds: Vec<String> = recoveries
        .iter()
        .map(|(kind, ms)| {
            let mut ms = ms.clone();
            ms.sort_unstable();
            format!(
                "{kind} {} (recovery p50 {} ms, max {} ms)",
                ms.len(),
                ms[ms.len() / 2],
                ms[ms.len() - 1]
            )
        })
        .collect();
    kinds.join(", ")
}
