//! Chaos of real processes on separate hosts: four `attest node` processes, each in a network
//! namespace of its own (`support/netns.rs`) with its data directory on a small tmpfs, under a
//! steady load of transfers and jobs, through a seeded schedule of faults:
//! - **kill**: SIGKILL, down for a while, restarted on its data;
//! - **pause**: SIGSTOP for longer than a round's propose timeout (3 s), then SIGCONT;
//! - **cut**: one host's link down (it reaches nobody), then up;
//! - **split**: hosts {0, 1} and {2, 3} on separate bridges (neither side has a quorum, so the
//!   chain stops), then joined;
//! - **disk**: the host's data tmpfs filled to the last byte by a file; the node must either
//!   stop with an error or go on, never corrupt its store; the file is removed and the node,
//!   restarted if it stopped, catches up;
//! - **skew**: the node restarted with its clock 30 s ahead (`danger_clock_skew_ms`, past the
//!   chain's 10 s drift bound): its proposals carry block times the others refuse, so every
//!   block committed meanwhile is someone else's and the heights it would have proposed take
//!   a later round; then restarted with its clock right.
//!
//! After each fault the test waits until every node is back at one height past the others'
//! and records that recovery time by kind. After the schedule: one chain (the same block hash
//! at every height on every node), every transfer the API accepted committed exactly once
//! (one a dying node accepted and lost is found missing by the load, which sends it again, as
//! a client must) and found by every node's transaction index (`GET /v1/txs/{hash}`),
//! every job `attest submit` got a result for settled or refunded, `attest audit` passes on
//! every node, the reference verifiers (`docs/reference/verify_export.py`, `replay.py`) pass
//! on the exported chain, and no slash says an honest node lied or double-signed
//! (`dispute_lost`, `equivocation`); missed-deadline penalties of crashed nodes are counted
//! and printed.
//!
//! The schedule comes from `ATTEST_CHAOS_SEED` (printed; default 1): each kind once in a
//! seeded order, then `ATTEST_CHAOS_EXTRA` (default 0) more seeded faults. Needs root (CI runs
//! as root); without it the test says so and does nothing.
//! Every wait is a hang guard only; nothing asserts speed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/netns.rs"]
mod netns;
use cluster::{CHAIN, Load, Rng, attest_json, env_u64};
use netns::{API_PORT, Net, is_root};
use serde_json::Value;

const HOSTS: usize = 4;
/// Each host's data tmpfs: far more than the run writes, small enough to fill at once.
const DISK_BYTES: u64 = 96 * 1024 * 1024;
/// How far ahead the skewed node's clock runs: past the chain's drift bound
/// (`attest_chain::MAX_CLOCK_DRIFT_MS`, 10 s).
const SKEW_MS: i64 = 30_000;
/// Blocks the others commit while one node's clock is skewed.
const SKEW_BLOCKS: u64 = 8;
/// Hang guard for one recovery.
const GUARD: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill { node: usize, down_ms: u64 },
    Pause { node: usize, ms: u64 },
    Cut { node: usize, ms: u64 },
    Split { ms: u64 },
    Disk { node: usize },
    Skew { node: usize },
}

impl Fault {
    fn kind(self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::Cut { .. } => "cut",
            Fault::Split { .. } => "split",
            Fault::Disk { .. } => "disk",
            Fault::Skew { .. } => "skew",
        }
    }
}

fn fault(rng: &mut Rng, kind: u64) -> Fault {
    let node = rng.range(0, HOSTS as u64 - 1) as usize;
    match kind {
        0 => Fault::Kill {
            node,
            down_ms: rng.range(1_000, 4_000),
        },
        1 => Fault::Pause {
            node,
            ms: rng.range(4_000, 6_000),
        },
        2 => Fault::Cut {
            node,
            ms: rng.range(3_000, 6_000),
        },
        3 => Fault::Split {
            ms: rng.range(3_000, 5_000),
        },
        4 => Fault::Disk { node },
        _ => Fault::Skew { node },
    }
}

/// Every kind once in a seeded order, then `extra` seeded faults of any kind.
fn schedule(seed: u64, extra: usize) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut kinds: Vec<u64> = (0..6).collect();
    for i in (1..kinds.len()).rev() {
        let j = rng.range(0, i as u64) as usize;
        kinds.swap(i, j);
    }
    let mut plan: Vec<Fault> = kinds.into_iter().map(|k| fault(&mut rng, k)).collect();
    for _ in 0..extra {
        let kind = rng.range(0, 5);
        plan.push(fault(&mut rng, kind));
    }
    plan
}

/// Jobs submitted through `attest submit` in a loop, each to a host not faulted, until
/// stopped; answers the ids of those it got a result for.
struct Jobs {
    stop: Arc<AtomicBool>,
    avoid: Arc<Mutex<Vec<usize>>>,
    thread: Option<std::thread::JoinHandle<(Vec<String>, usize)>>,
}

impl Jobs {
    fn start(urls: Vec<String>, key: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let avoid = Arc::new(Mutex::new(Vec::new()));
        let (stop2, avoid2) = (stop.clone(), avoid.clone());
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed) = (Vec::new(), 0);
            let mut n = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                let avoided = avoid2.lock().unwrap().clone();
                let Some(url) = (0..urls.len())
                    .map(|k| (n + k) % urls.len())
                    .find(|k| !avoided.contains(k))
                    .map(|k| urls[k].clone())
                else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let out = cluster::attest()
                    .args(["submit", "--node", &url, "--key", &key, "--model"])
                    .args(["attest-tiny-1b", "--max-tokens", "8", "--wait", "result"])
                    .args(["--timeout", "20", "--json", "--input"])
                    .arg(format!("chaos job {n}"))
                    .output()
                    .expect("run attest submit");
                let record: Option<Value> = serde_json::from_slice(&out.stdout).ok();
                match record.and_then(|r| r["job"].as_str().map(str::to_owned)) {
                    Some(job) if out.status.success() => ok.push(job),
                    _ => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            (ok, failed)
        });
        Self {
            stop,
            avoid,
            thread: Some(thread),
        }
    }

    fn avoid(&self, i: usize) {
        self.avoid.lock().unwrap().push(i);
    }

    fn allow(&self, i: usize) {
        self.avoid.lock().unwrap().retain(|k| *k != i);
    }

    fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Exports the chain `node` serves and runs `docs/reference/verify_export.py` and
/// `replay.py` on it, which must pass; answers what they said, or why they were not run
/// (python3 without blake3 and cryptography: `.ci/run` installs them).
fn reference_verifiers(node: &str, genesis: &Path, dir: &Path) -> String {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import blake3, cryptography"])
        .output();
    if !probe.is_ok_and(|p| p.status.success()) {
        return "not run (python3 with blake3 and cryptography is not available)".into();
    }
    let export = cluster::attest()
        .args([
            "ledger",
            "export",
            "--format",
            "jsonl",
            "--node",
            node,
            "--genesis",
        ])
        .arg(genesis)
        .output()
        .expect("run attest ledger export");
    assert!(
        export.status.success(),
        "ledger export: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let chain = dir.join("chain.jsonl");
    std::fs::write(&chain, &export.stdout).unwrap();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference");
    let mut said = Vec::new();
    for script in ["verify_export.py", "replay.py"] {
        let run = std::process::Command::new("python3")
            .arg(scripts.join(script))
            .arg(&chain)
            .output()
            .expect("run python3");
        let out = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "{script} refused the chain:\n{out}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let verdict = out.lines().find(|l| l.starts_with("OK"));
        said.push(
            verdict
                .or(out.lines().last())
                .unwrap_or_default()
                .to_owned(),
        );
    }
    said.join("; ")
}

/// Fills the filesystem holding `dir` with one file, to its last byte; answers the file.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0u8; 1 << 20];
    loop {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    // The last partial chunk: byte by byte is too slow; a few halvings reach the end.
    let mut size = chunk.len() / 2;
    while size > 0 {
        if file.write_all(&chunk[..size]).is_err() {
            size /= 2;
        }
    }
    let _ = file.sync_all();
    path
}

/// The highest height any of `hosts` has, asking until each answers (a hang guard).
fn side_top(net: &Net, hosts: &[usize]) -> u64 {
    net.wait("hosts answering their status", GUARD, || {
        let hs: Option<Vec<u64>> = hosts
            .iter()
            .map(|i| net.status(*i).map(|s| s.height.0))
            .collect();
        hs.and_then(|hs| hs.into_iter().max())
    })
}

fn heights(net: &Net) -> Vec<Option<u64>> {
    (0..HOSTS)
        .map(|i| net.status(i).map(|s| s.height.0))
        .collect()
}

/// Waits until every host is at least one block past the highest height any host had when
/// the fault ended (the chain moves again and every host follows it); answers the wait.
fn recovered(net: &Net, what: &str) -> Duration {
    let ended = Instant::now();
    let top = heights(net).into_iter().flatten().max().unwrap_or(0);
    net.wait(what, GUARD, || {
        (0..HOSTS)
            .all(|i| net.status(i).is_some_and(|s| s.height.0 > top))
            .then_some(())
    });
    ended.elapsed()
}

struct Run<'a> {
    net: &'a mut Net,
    load: &'a Load,
    jobs: &'a Jobs,
    genesis: &'a Path,
    disk_stops: usize,
    /// Heights committed in a later round because the skewed node's proposal was refused.
    skew_refusals: u64,
}

impl Run<'_> {
    /// Sends nothing more to `node`. No grace period: a transfer the node accepted just
    /// before it dies may be lost with its mempool, and the load finds that out as a client
    /// does (`support/cluster.rs`, `Load`: it rewinds to the committed nonce).
    fn avoid(&self, node: usize) {
        self.load.avoid(node);
        self.jobs.avoid(node);
    }

    fn allow(&self, node: usize) {
        self.load.allow(node);
        self.jobs.allow(node);
    }

    fn inflict(&mut self, fault: Fault) -> Duration {
        let took = match fault {
            Fault::Kill { node, down_ms } => {
                self.avoid(node);
                self.net.kill(node);
                std::thread::sleep(Duration::from_millis(down_ms));
                self.net.start(node, self.genesis);
                recovered(self.net, "recovery after a kill")
            }
            Fault::Pause { node, ms } => {
                self.avoid(node);
                self.net.signal(node, "STOP");
                std::thread::sleep(Duration::from_millis(ms));
                self.net.signal(node, "CONT");
                recovered(self.net, "recovery after a pause")
            }
            Fault::Cut { node, ms } => {
                self.avoid(node);
                self.net.cut(node);
                std::thread::sleep(Duration::from_millis(ms));
                self.net.heal(node);
                recovered(self.net, "recovery after a cut")
            }
            Fault::Split { ms } => {
                let before = heights(self.net);
                self.net.split(&[2, 3]);
                // A block decided as the split began may still land; after a second nothing
                // can: two of four validators are no quorum on either side. (Host 1 may still
                // fetch a block host 0 has, so the side's highest height is what counts.)
                std::thread::sleep(Duration::from_millis(1_000));
                let settled = side_top(self.net, &[0, 1]);
                std::thread::sleep(Duration::from_millis(ms));
                let during = side_top(self.net, &[0, 1]);
                self.net.join_all();
                assert_eq!(
                    during, settled,
                    "hosts 0 and 1 committed without a quorum during the split"
                );
                self.net.say(&format!(
                    "split for {} ms: heights {before:?} before, {during} on hosts 0 and 1 \
                     from its first second to its end (no progress without a quorum)",
                    ms + 1_000
                ));
                recovered(self.net, "recovery after a split")
            }
            Fault::Disk { node } => {
                self.avoid(node);
                let data = self.net.hosts[node].home.join("data");
                let filler = fill(&data);
                // The node writes every block: it meets the full disk at once. Either it stops
                // with an error, or it goes on (sled may still have room in its own files).
                let stopped = (0..40).any(|_| {
                    std::thread::sleep(Duration::from_millis(250));
                    !self.net.running(node)
                });
                std::fs::remove_file(&filler).expect("remove filler");
                // It may also meet the full disk just after the window: the same as stopping.
                std::thread::sleep(Duration::from_millis(500));
                let stopped = stopped || !self.net.running(node);
                let log = attest_cli::procs::log_tail(&self.net.hosts[node].log, 6);
                if stopped {
                    self.disk_stops += 1;
                    self.net.say(&format!(
                        "disk full: node {node} stopped; its log ends:\n{log}"
                    ));
                    self.net.start(node, self.genesis);
                } else {
                    self.net
                        .say(&format!("disk full: node {node} went on for 10 s"));
                }
                recovered(self.net, "recovery after a full disk")
            }
            Fault::Skew { node } => {
                self.avoid(node);
                let account = self.net.status(node).expect("up").account;
                let config = self.net.hosts[node].home.join("config.toml");
                let original = std::fs::read_to_string(&config).unwrap();
                let others: Vec<usize> = (0..HOSTS).filter(|i| *i != node).collect();
                self.net.kill(node);
                // A proposal it broadcast just before the kill may still commit: let the
                // others pass that height before any block is held against the skewed clock.
                let at_kill = heights(self.net).into_iter().flatten().max().unwrap_or(0);
                self.net
                    .wait_heights("the others past the kill", &others, at_kill + 2);
                std::fs::write(
                    &config,
                    format!("{original}\ndanger_clock_skew_ms = {SKEW_MS}\n"),
                )
                .unwrap();
                self.net.start(node, self.genesis);
                // It must run and follow the chain (a build that refuses the setting would
                // leave it down, and its turns would go to later rounds all the same).
                let head = heights(self.net).into_iter().flatten().max().unwrap_or(0);
                let from = self.net.wait("the skewed node caught up", GUARD, || {
                    let s = self.net.status(node)?;
                    (s.height.0 >= head).then_some(s.height.0)
                });
                let to = from + SKEW_BLOCKS;
                self.net
                    .wait_heights("blocks with a skewed clock", &others, to);
                let peer = attest_cli::http::Client::new(&self.net.url(others[0])).unwrap();
                let mut refused = 0;
                for height in from + 1..=to {
                    let block: Value = peer.get(&format!("/v1/blocks/{height}")).unwrap();
                    assert_ne!(
                        block["proposer"].as_str(),
                        Some(account.as_str()),
                        "block {height} was proposed by the node whose clock is {SKEW_MS} ms ahead"
                    );
                    if block["certificate"]["round"].as_u64() > Some(0) {
                        refused += 1;
                    }
                }
                assert!(
                    self.net.running(node),
                    "the skewed node stopped; its log ends:\n{}",
                    attest_cli::procs::log_tail(&self.net.hosts[node].log, 10)
                );
                assert!(
                    refused > 0,
                    "no height of {from}..{to} needed a later round: the skewed node, running \
                     and caught up, never proposed"
                );
                self.skew_refusals += refused;
                self.net.say(&format!(
                    "clock {SKEW_MS} ms ahead on node {node}: heights {}..={to} all proposed by \
                     others, {refused} of them in a later round",
                    from + 1
                ));
                self.net.kill(node);
                std::fs::write(&config, original).unwrap();
                self.net.start(node, self.genesis);
                recovered(self.net, "recovery after a skewed clock")
            }
        };
        for node in 0..HOSTS {
            self.allow(node);
        }
        self.net.say(&format!(
            "{fault:?}: every host past the others' height {} ms after",
            took.as_millis()
        ));
        took
    }
}

#[test]
fn seeded_kills_pauses_partitions_and_a_full_disk_leave_one_chain_and_lose_nothing() {
    if !is_root() {
        eprintln!("SKIPPED: network namespaces and tmpfs mounts need root (CI runs this as root)");
        return;
    }
    let seed = env_u64("ATTEST_CHAOS_SEED", 1);
    let extra = usize::try_from(env_u64("ATTEST_CHAOS_EXTRA", 0)).expect("a small number");
    let plan = schedule(seed, extra);
    eprintln!("chaos: seed {seed} (ATTEST_CHAOS_SEED={seed} replays it): {plan:?}");

    let mut net = Net::new();
    for i in 0..HOSTS {
        net.add_host();
        net.small_disk(i, DISK_BYTES);
    }
    let dir = net.dir.as_ref().unwrap().path().to_owned();
    let transfer_client = attest_node::keyfile::generate().unwrap();
    let job_key = dir.join("jobs.key");
    let job_client = attest_json(&["keys", "new", &job_key.display().to_string(), "--json"]);
    let job_client = job_client["account"].as_str().unwrap().to_owned();
    let genesis = net.start_chain(
        CHAIN,
        &[
            format!("{}=1000000", transfer_client.public()),
            format!("{job_client}=1000000"),
        ],
    );
    net.wait("every host connected and blocks made", GUARD, || {
        (0..HOSTS)
            .all(|i| {
                net.status(i)
                    .is_some_and(|s| s.peers >= HOSTS - 1 && s.height.0 >= 2)
            })
            .then_some(())
    });
    net.say("four hosts up, each on its own namespace and tmpfs");
    let apis: Vec<SocketAddr> = net
        .hosts
        .iter()
        .map(|h| format!("{}:{API_PORT}", h.addr).parse().unwrap())
        .collect();
    let urls: Vec<String> = (0..HOSTS).map(|i| net.url(i)).collect();
    let load = Load::start(apis, transfer_client);
    let jobs = Jobs::start(urls, job_key.display().to_string());
    // Some work before the first fault.
    std::thread::sleep(Duration::from_secs(3));

    let mut run = Run {
        net: &mut net,
        load: &load,
        jobs: &jobs,
        genesis: &genesis,
        disk_stops: 0,
        skew_refusals: 0,
    };
    let mut recoveries: BTreeMap<&str, Vec<u128>> = BTreeMap::new();
    for fault in &plan {
        let took = run.inflict(*fault);
        recoveries
            .entry(fault.kind())
            .or_default()
            .push(took.as_millis());
    }
    let (disk_stops, skew_refusals) = (run.disk_stops, run.skew_refusals);

    let (accepted, refused) = load.finish();
    let (job_ids, jobs_failed) = jobs.finish();
    net.say(&format!(
        "load stopped: {} transfers accepted (refusals {refused:?}); {} jobs with a result, {} \
         submissions gave up",
        accepted.len(),
        job_ids.len(),
        jobs_failed
    ));
    assert!(!accepted.is_empty(), "no transfer was accepted");
    assert!(!job_ids.is_empty(), "no job got a result");

    // Every job with a result ends: settled, or refunded.
    let client = attest_cli::http::Client::new(&net.url(0)).unwrap();
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    for job in &job_ids {
        let phase = net.wait(&format!("job {job} final"), GUARD, || {
            let view: Value = client.get(&format!("/v1/jobs/{job}")).ok()?;
            let phase = view["phase"].as_str()?.to_owned();
            matches!(phase.as_str(), "settled" | "refunded").then_some(phase)
        });
        *phases.entry(phase).or_default() += 1;
    }

    // Settle: nothing in any mempool, then every node two blocks past that.
    let drained = net.wait("every mempool drained", GUARD, || {
        let statuses: Vec<_> = (0..HOSTS).map(|i| net.status(i)).collect::<Option<_>>()?;
        statuses
            .iter()
            .all(|s| s.mempool == 0)
            .then(|| statuses.iter().map(|s| s.height.0).max().unwrap_or(1))
    });
    net.wait_heights("every host two blocks on", &[0, 1, 2, 3], drained + 2);
    let common = heights(&net).into_iter().flatten().min().unwrap();

    // One chain, every accepted transfer in exactly one block of it.
    let clients: Vec<_> = (0..HOSTS)
        .map(|i| attest_cli::http::Client::new(&net.url(i)).unwrap())
        .collect();
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for height in 1..=common {
        let blocks: Vec<Value> = clients
            .iter()
            .map(|c| c.get(&format!("/v1/blocks/{height}")).unwrap())
            .collect();
        assert!(
            blocks.iter().all(|b| b["hash"] == blocks[0]["hash"]),
            "fork at height {height}: {:?}",
            blocks.iter().map(|b| &b["hash"]).collect::<Vec<_>>()
        );
        for tx in blocks[0]["txs"].as_array().unwrap() {
            seen.entry(tx.as_str().unwrap().to_owned())
                .or_default()
                .push(height);
        }
    }
    let lost: Vec<&String> = accepted.iter().filter(|h| !seen.contains_key(*h)).collect();
    assert!(lost.is_empty(), "accepted, never committed: {lost:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, hs)| hs.len() > 1).collect();
    assert!(twice.is_empty(), "committed more than once: {twice:?}");
    // Every node's transaction index, restarts and the full disk included, says where.
    for (i, c) in clients.iter().enumerate() {
        for hash in accepted.iter().skip(i).step_by(7) {
            let at: Value = c.get(&format!("/v1/txs/{hash}")).unwrap();
            assert_eq!(at["state"], "committed", "host {i}: {hash}: {at}");
            assert_eq!(
                at["height"].as_u64(),
                seen[hash].first().copied(),
                "host {i}: {hash}"
            );
        }
    }

    // Every node's chain audits, and no slash says an honest node lied or double-signed.
    let mut penalties = 0;
    for i in 0..HOSTS {
        let g = genesis.display().to_string();
        let audit = attest_json(&["audit", "--node", &net.url(i), "--genesis", &g, "--json"]);
        assert_eq!(audit["ok"], true, "host {i}: {audit}");
        let slashes = audit["slashes"].as_array().unwrap();
        let bad: Vec<&Value> = slashes
            .iter()
            .filter(|s| {
                let text = s.to_string();
                text.contains("dispute_lost") || text.contains("equivocation")
            })
            .collect();
        assert!(
            bad.is_empty(),
            "host {i}: an honest node was slashed: {bad:?}"
        );
        penalties = slashes.len();
    }

    // The reference verifiers, written from the protocol document alone, agree: every
    // signature (verify_export.py) and every state root after every block (replay.py).
    let reference = reference_verifiers(&net.url(0), &genesis, &dir);

    let summary = cluster::recovery_summary(&recoveries);
    net.say(&format!(
        "chaos seed {seed}: {} faults: {}; full disk stopped the node {disk_stops} time(s); the skewed clock's \
         proposals refused at {skew_refusals} height(s); {} \
         transfers accepted, all committed once; jobs {phases:?}; missed-deadline penalties \
         {penalties}; {common} blocks identical on all {HOSTS} hosts; audit OK on each; \
         reference verifiers: {reference}",
        plan.len(),
        summary,
        accepted.len(),
    ));
}
