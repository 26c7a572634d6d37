//! Ledger throughput of 4 `attest node` processes on 127.0.0.1, made and run the way an
//! operator would (`attest init`, `attest genesis`, `attest node`) and loaded through the HTTP
//! API: pre-signed transfers from many funded clients are posted round-robin to the four nodes
//! as fast as a few keep-alive connections allow, and the clock runs from the first submission
//! until node 0 serves a block holding the last of them. Prints committed transfers per second,
//! the block time (consecutive block `time_ms`) p50 and p99 under load, the number of loaded
//! blocks, and the idle block time p50 before the load: the median of three runs, each on a
//! fresh testnet. Asserts nothing about speed; it panics only if the testnet breaks (never
//! starts, refuses valid transfers for good, stops committing).
//!
//! `cargo bench -p attest-cli --bench testnet`
//!
//! The node logs go to files in a temporary directory; on a panic their tails are printed and
//! the directory is kept (with `ATTEST_BENCH_KEEP=1` it is kept after every run). Every process is killed when a run ends, however it ends.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use attest_contracts_sim::Params;
use attest_node::api::BlockView;
use attest_node::api::chain::{SubmitTx, Submitted};
use attest_node::views::Status;
use attest_protocol::tx::Transfer;
use attest_protocol::{Action, Amount, Canonical, ChainId, Nonce, SecretKey, Signed, Tx, tx_hash};

#[path = "../tests/support/cluster.rs"]
mod cluster;
use attest_cli::demo::percentiles;
use attest_cli::http::Client;
use cluster::{NodeProc, attest, attest_json, free_port, print_tail, wait_for};

const NODES: usize = 4;
const CHAIN: &str = "testnet-bench";
/// Funded client accounts. With `PER_CLIENT` this makes 9,000 transfers, under the mempool's
/// default bound of 10,000 (every node ends up holding every waiting transfer), and enough
/// that most of a run is steady load rather than its ramp-up and drain.
const CLIENTS: usize = 150;
/// Transfers per client, nonces 0.. : the mempool admits at most 64 past an account's nonce,
/// so all of them can be waiting at once and none is refused for being too far ahead.
const PER_CLIENT: u64 = 60;
/// Sending threads. Jobs are dealt round-robin, so thread `t` talks only to node `t % 4`, over
/// one keep-alive connection, and waits for each answer: four requests in flight per node. The
/// nodes, not the client, are the bottleneck well before that (16 threads measured a little
/// faster than 8 here, within the noise).
const SENDERS: usize = 16;
/// Node 0's height at which the load starts: blocks 1 to this are the idle sample (the
/// default idle interval is 1 s, so this costs a few seconds and gives a few gaps).
const IDLE_HEIGHT: u64 = 5;
/// Set (to anything) to keep every run's directory with the node logs, for a look afterwards.
const KEEP_ENV: &str = "ATTEST_BENCH_KEEP";
/// Hang guard for the whole load: no transfer newly committed for this long means the
/// testnet stopped.
const STALL: Duration = Duration::from_secs(30);

/// The four nodes. Dropping it kills every process still running, whatever happened.
struct Cluster {
    dir: Option<tempfile::TempDir>,
    genesis: PathBuf,
    nodes: Vec<NodeProc>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let panicking = std::thread::panicking();
        if panicking {
            for (i, node) in self.nodes.iter().enumerate() {
                print_tail(i, &node.log);
            }
        }
        if (panicking || std::env::var_os(KEEP_ENV).is_some())
            && let Some(dir) = self.dir.take()
        {
            eprintln!("testnet directory kept at {}", dir.keep().display());
        }
    }
}

impl Cluster {
    /// `attest init` for each node (distinct libp2p and API ports), then `attest genesis` over
    /// all homes, funding every client.
    fn init(clients: &[SecretKey]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let home = dir.path().join(format!("node{i}"));
            let p2p = free_port();
            let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let (listen, api_arg) = (format!("/ip4/127.0.0.1/tcp/{p2p}"), api.to_string());
            let home_arg = home.display().to_string();
            let init = [
                "init", "--home", &home_arg, "--listen", &listen, "--api", &api_arg,
            ];
            let report = attest_json(&[&init[..], &["--json"]].concat());
            allow_every_client(&home);
            nodes.push(NodeProc {
                log: dir.path().join(format!("node{i}.log")),
                home,
                p2p,
                api,
                peer_id: report["peer_id"].as_str().expect("peer_id").to_owned(),
                child: None,
            });
        }
        let genesis = dir.path().join("genesis.json");
        let mut args = vec!["genesis".to_owned(), "--chain-id".into(), CHAIN.into()];
        args.extend([
            "--out".into(),
            genesis.display().to_string(),
            "--json".into(),
        ]);
        for node in &nodes {
            args.extend(["--validator".into(), node.home.display().to_string()]);
        }
        for client in clients {
            // In tokens: far more than 60 transfers of 1 unit plus their fees.
            args.extend(["--fund".into(), format!("{}=1000", client.public())]);
        }
        attest_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
        Self {
            dir: Some(dir),
            genesis,
            nodes,
        }
    }

    /// Starts node `i` with every other node as a bootnode; its log goes to a file.
    fn start(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = std::fs::File::create(&node.log).expect("create the node log");
        let mut command = attest();
        command
            .args(["node", "--home"])
            .arg(&node.home)
            .arg("--genesis")
            .arg(&self.genesis)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let others = self.nodes.iter().enumerate();
        for other in others.filter_map(|(j, n)| (j != i).then_some(n)) {
            let addr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", other.p2p, other.peer_id);
            command.args(["--bootnode", &addr]);
        }
        self.nodes[i].child = Some(command.spawn().expect("spawn attest node"));
    }

    fn height(&self, i: usize) -> Option<u64> {
        let status: Status = Client::local(self.nodes[i].api).get("/v1/status").ok()?;
        Some(status.height.0)
    }
}

/// A committed block as the bench needs it.
struct BlockSeen {
    height: u64,
    time_ms: u64,
    /// The consensus round that committed it: above 0 means a round timed out.
    round: u64,
    /// Transfers of this run in it.
    ours: usize,
}

/// Node 0's block at `height`: its time, certificate round and transaction hashes.
fn block(conn: &Client, height: u64) -> (u64, u64, Vec<String>) {
    let path = format!("/v1/blocks/{height}");
    let block: BlockView = conn.get(&path).unwrap_or_else(|e| panic!("node 0: {e}"));
    let txs = block.txs.iter().map(ToString::to_string);
    (
        block.time_ms,
        u64::from(block.certificate.round.0),
        txs.collect(),
    )
}

/// A pre-signed transfer: the node it goes to and the request body.
struct Job {
    node: usize,
    body: SubmitTx,
}

/// Signs every transfer before the clock starts (signing is the clients' cost, not the
/// ledger's), nonce-major so each account's nonces arrive roughly in order, round-robin over
/// the nodes. Answers the jobs of each sending thread and every hash.
fn presign(clients: &[SecretKey]) -> (Vec<Vec<Job>>, HashSet<String>) {
    let chain: ChainId = CHAIN.parse().expect("valid chain id");
    let to = SecretKey::from_seed([201; 32]).public();
    let fee = Params::default().min_fee;
    let mut jobs: Vec<Vec<Job>> = (0..SENDERS).map(|_| Vec::new()).collect();
    let mut hashes = HashSet::new();
    let pairs = (0..PER_CLIENT).flat_map(|n| clients.iter().map(move |c| (c, n)));
    for (i, (client, nonce)) in pairs.enumerate() {
        let body = Tx {
            nonce: Nonce(nonce),
            fee,
            action: Action::Transfer(Transfer {
                to,
                amount: Amount(1),
            }),
        };
        let tx = Signed::sign(&chain, client, body);
        hashes.insert(tx_hash(&tx).to_string());
        let body = SubmitTx {
            tx: hex::encode(tx.encode()),
        };
        jobs[i % SENDERS].push(Job {
            node: i % NODES,
            body,
        });
    }
    (jobs, hashes)
}

/// Posts `jobs` in order over one keep-alive connection per node. Back-pressure refusals
/// (`mempool_full`, `nonce_too_far_ahead`, a failed connection) are retried after a pause; a
/// 409 `duplicate` or `stale_nonce` means an earlier attempt got through. Answers the
/// refusals by status and code, and when the last job was accepted.
fn send(apis: Vec<SocketAddr>, jobs: Vec<Job>) -> (BTreeMap<String, usize>, Instant) {
    let conns: Vec<Client> = apis.into_iter().map(Client::local).collect();
    let mut refused = BTreeMap::new();
    for job in jobs {
        let deadline = Instant::now() + STALL;
        loop {
            let reason = match conns[job.node].post::<_, Submitted>("/v1/txs", &job.body) {
                Ok(_) => break,
                Err(e) => match e.status() {
                    Some(status) => format!("{status} {}", e.code().unwrap_or("?")),
                    None => "connection failed".to_owned(),
                },
            };
            *refused.entry(reason.clone()).or_insert(0) += 1;
            match reason.as_str() {
                "409 duplicate" | "409 stale_nonce" => break,
                "503 mempool_full"
                | "422 nonce_too_far_ahead"
                | "503 unavailable"
                | "connection failed" => {}
                _ => panic!("node {} refused a valid transfer: {reason}", job.node),
            }
            assert!(
                Instant::now() < deadline,
                "hang guard: node {} refused a transfer for {STALL:?}: {reason}",
                job.node
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (refused, Instant::now())
}

/// One run's figures.
struct Run {
    txs_per_sec: f64,
    load_p50_ms: u64,
    load_p99_ms: u64,
    blocks: usize,
    idle_p50_ms: u64,
}

/// The median and 99th percentile of the gaps between consecutive block times, in ms (0 when
/// there are none).
fn gap_percentiles(times_ms: &[u64]) -> (u64, u64) {
    let gaps = percentiles(times_ms.windows(2).map(|w| w[1].saturating_sub(w[0])));
    (gaps.p50.unwrap_or_default(), gaps.p99.unwrap_or_default())
}

/// Follows node 0's blocks from `from + 1` until every hash in `ours` is committed; answers
/// the blocks seen and the moment the last one was seen.
fn follow(conn: &Client, from: u64, ours: &HashSet<String>) -> (Vec<BlockSeen>, Instant) {
    let (mut seen, mut next, mut committed) = (Vec::new(), from + 1, 0);
    let mut progress = Instant::now();
    loop {
        let status: Status = conn
            .get("/v1/status")
            .unwrap_or_else(|e| panic!("node 0: {e}"));
        let height = status.height.0;
        while next <= height {
            let (time_ms, round, txs) = block(conn, next);
            let n = txs.iter().filter(|t| ours.contains(*t)).count();
            seen.push(BlockSeen {
                height: next,
                time_ms,
                round,
                ours: n,
            });
            committed += n;
            next += 1;
            if n > 0 {
                progress = Instant::now();
            }
            if committed == ours.len() {
                return (seen, Instant::now());
            }
        }
        assert!(
            progress.elapsed() < STALL,
            "hang guard: {committed} of {} transfers committed, none more for {STALL:?} \
             (node 0 at height {height}, mempool {})",
            ours.len(),
            status.mempool
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Client `i`'s key: a fixed seed, distinct per client and from the receiver's.
fn client_key(i: usize) -> SecretKey {
    let mut seed = [0xc1; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SecretKey::from_seed(seed)
}

fn one_run(run: usize) -> Run {
    let clients: Vec<SecretKey> = (0..CLIENTS).map(client_key).collect();
    let mut cluster = Cluster::init(&clients);
    for i in 0..NODES {
        cluster.start(i);
    }
    wait_for(
        || "4 nodes reaching height 2".into(),
        Duration::from_secs(30),
        || {
            (0..NODES)
                .all(|i| cluster.height(i).is_some_and(|h| h >= 2))
                .then_some(())
        },
    );
    let (jobs, ours) = presign(&clients);
    let idle_to = wait_for(
        || "node 0 reaching the idle sample".into(),
        Duration::from_secs(30),
        || cluster.height(0).filter(|h| *h >= IDLE_HEIGHT),
    );
    let conn = Client::local(cluster.nodes[0].api);
    let idle: Vec<u64> = (1..=idle_to).map(|h| block(&conn, h).0).collect();
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let load = load(&apis, jobs, &conn, idle_to, &ours);
    summarise(run, &load, &idle)
}

/// What a run's load did.
struct Load {
    /// Node 0's blocks from the start of the load to the one holding the last transfer.
    seen: Vec<BlockSeen>,
    transfers: usize,
    /// From the first submission until every transfer was accepted.
    accepted: Duration,
    /// From the first submission until node 0 served the last transfer's block.
    committed: Duration,
    refused: BTreeMap<String, usize>,
}

/// Starts the clock and the senders, and follows node 0's blocks from `from + 1` until every
/// transfer is committed.
fn load(
    apis: &[SocketAddr],
    jobs: Vec<Vec<Job>>,
    conn: &Client,
    from: u64,
    ours: &HashSet<String>,
) -> Load {
    let start = Instant::now();
    let senders: Vec<_> = jobs
        .into_iter()
        .map(|jobs| {
            let apis = apis.to_vec();
            std::thread::spawn(move || send(apis, jobs))
        })
        .collect();
    let (seen, done) = follow(conn, from, ours);
    let (mut refused, mut sent) = (BTreeMap::new(), start);
    for sender in senders {
        let (reasons, at) = sender.join().expect("a sender panicked");
        sent = sent.max(at);
        for (reason, n) in reasons {
            *refused.entry(reason).or_insert(0) += n;
        }
    }
    Load {
        seen,
        transfers: ours.len(),
        accepted: sent - start,
        committed: done - start,
        refused,
    }
}

/// The run's figures from its load and its idle block times; prints them on stderr.
fn summarise(run: usize, load: &Load, idle: &[u64]) -> Run {
    // The loaded period: from the first block holding one of our transfers to the last.
    let first = load
        .seen
        .iter()
        .position(|b| b.ours > 0)
        .expect("transfers were committed");
    let loaded = &load.seen[first..];
    let times: Vec<u64> = loaded.iter().map(|b| b.time_ms).collect();
    let (load_p50_ms, load_p99_ms) = gap_percentiles(&times);
    let r = Run {
        txs_per_sec: load.transfers as f64 / load.committed.as_secs_f64(),
        load_p50_ms,
        load_p99_ms,
        blocks: loaded.len(),
        idle_p50_ms: gap_percentiles(idle).0,
    };
    let largest = loaded.iter().map(|b| b.ours).max().unwrap_or(0);
    let late: Vec<(u64, u64)> = loaded
        .iter()
        .filter(|b| b.round > 0)
        .map(|b| (b.height, b.round))
        .collect();
    eprintln!(
        "run {run}: {} transfers accepted in {:.2} s, committed in {:.2} s ({:.0} tx/s), \
         heights {}..={} ({} blocks, largest {largest} transfers), block time p50 {} ms, \
         p99 {} ms; idle p50 {} ms; (height, round) committed past round 0: {late:?}; \
         refusals {:?}",
        load.transfers,
        load.accepted.as_secs_f64(),
        load.committed.as_secs_f64(),
        r.txs_per_sec,
        loaded[0].height,
        loaded[loaded.len() - 1].height,
        r.blocks,
        r.load_p50_ms,
        r.load_p99_ms,
        r.idle_p50_ms,
        load.refused,
    );
    r
}

/// Lifts the node's per-address API rate limit (50 writes/s by default) as `attest testnet`
/// does: every client of this bench posts from 127.0.0.1, one address.
fn allow_every_client(home: &std::path::Path) {
    let path = home.join(attest_node::config::files::CONFIG);
    let text = std::fs::read_to_string(&path).expect("the node's config");
    let mut config = attest_node::config::Config::parse(&text, &path).expect("a valid config");
    config.api_rate_per_s = 100_000;
    config.api_burst = 100_000;
    std::fs::write(&path, config.to_commented_toml()).expect("write the node's config");
}

fn main() {
    // `cargo bench` passes flags such as --bench; this harness takes none.
    let mut runs: Vec<Run> = (1..=3).map(one_run).collect();
    runs.sort_by(|a, b| a.txs_per_sec.total_cmp(&b.txs_per_sec));
    let m = &runs[1];
    println!(
        "testnet/4 processes: {} transfers, median of 3 runs: {:.0} committed tx/s, {} blocks, \
         block time p50 {} ms, p99 {} ms under load; idle block time p50 {} ms",
        CLIENTS as u64 * PER_CLIENT,
        m.txs_per_sec,
        m.blocks,
        m.load_p50_ms,
        m.load_p99_ms,
        m.idle_p50_ms,
    );
}
