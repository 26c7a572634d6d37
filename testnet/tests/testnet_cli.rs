//! `attest testnet init|up|down|status` run as a user runs them: the built binary, a
//! temporary directory and a free range of loopback ports. One test drives a real four-node
//! testnet through its life (init, up, status, down, up again on the same data, down --purge);
//! the other feeds bad input and checks each error names what was wrong.
//!
//! Waits are bounded by the commands' own `--timeout`; nothing here measures speed. On failure
//! the node logs' tails are printed, every node still running is killed and the directory is
//! kept.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attest_cli::procs;
use serde_json::Value;

#[path = "support/cluster.rs"]
mod cluster;

const NODES: usize = 4;

fn attest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attest"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("attest runs")
}

/// Runs `attest ARGS`, which must succeed, and parses the one JSON object it prints.
fn attest_json(args: &[&str]) -> Value {
    let out = attest(args);
    assert!(
        out.status.success(),
        "attest {args:?} failed:\n{}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `attest testnet ARGS --dir DIR --json`, which must succeed, and parses its object.
fn testnet_json(dir: &Path, args: &[&str]) -> Value {
    let dir = dir.display().to_string();
    let args = [&["testnet"], args, &["--dir", &dir, "--json"]].concat();
    let out = attest(&args);
    assert!(
        out.status.success(),
        "attest {args:?} failed:\n{}",
        stderr(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(report["schema"], "attest.testnet/1");
    assert_eq!(report["command"], args[1]);
    assert_eq!(report["nodes"].as_array().map(Vec::len), Some(NODES));
    report
}

/// Runs `attest testnet ARGS`, which must fail; answers its stderr.
fn testnet_fails(args: &[&str]) -> String {
    let args = [&["testnet"], args].concat();
    let out = attest(&args);
    assert!(!out.status.success(), "attest {args:?} succeeded");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A base port with `2 * NODES` free ports above it: random, so parallel runs rarely meet,
/// below the usual ephemeral range, and checked by binding each port.
fn free_base() -> u16 {
    for _ in 0..200 {
        let random = RandomState::new().build_hasher().finish();
        let base = 20_000 + (random % 5_000) as u16 * 2;
        // Room for one node more than the testnet starts with (`add-node`).
        let free =
            (0..2 * (NODES as u16 + 1)).all(|p| TcpListener::bind(("127.0.0.1", base + p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free range of {} loopback ports found", 2 * NODES);
}

fn pids(report: &Value) -> Vec<u32> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_u64().expect("a running node has a pid") as u32)
        .collect()
}

fn heights(report: &Value) -> Vec<u64> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["height"].as_u64().expect("an up node has a height"))
        .collect()
}

/// Stops whatever is left and keeps the directory when the test fails.
struct Guard {
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Every node there is, the ones `add-node` added included.
        for i in (0..attest_cli::layout::MAX_NODES)
            .filter(|i| self.dir.join(format!("node-{i}")).exists())
        {
            let home = self.dir.join(format!("node-{i}"));
            let log = home.join("node.log");
            eprintln!("---- node {i}: the last lines of {}", log.display());
            eprintln!("{}", procs::log_tail(&log, 30));
            if let Some(pid) = procs::running_pid(&home) {
                procs::signal(pid, procs::Signal::Kill);
            }
        }
        if let Some(tmp) = self.tmp.take() {
            eprintln!("test directory kept at {}", tmp.keep().display());
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// What `init` wrote: private keys matching the report, a genesis the node accepts, configs
/// on the chosen ports, the cheater's setting.
fn check_init_files(dir: &Path, report: &Value, base: u16) {
    let genesis = attest_node::genesis::load(&dir.join("genesis.json")).unwrap();
    assert_eq!(genesis.genesis.chain_id.to_string(), "attest-testnet-7");
    assert_eq!(genesis.genesis.stakes.len(), NODES);
    assert_eq!(
        genesis.genesis.balances.len(),
        NODES + 2,
        "validators and 2 clients"
    );
    assert_eq!(report["genesis_hash"], genesis.hash().to_string());
    let layout: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    assert_eq!(layout["chain_id"], "attest-testnet-7");
    for (i, node) in report["nodes"].as_array().unwrap().iter().enumerate() {
        let home = dir.join(format!("node-{i}"));
        for key in ["node.key", "account.key"] {
            assert_eq!(mode(&home.join(key)), 0o600, "node {i} {key}");
        }
        let node_key = attest_node::keyfile::read(&home.join("node.key")).unwrap();
        assert_eq!(node["peer_id"], node_key.public().peer_id());
        assert_eq!(node["state"], "down");
        let api = format!("http://127.0.0.1:{}", base + 2 * i as u16 + 1);
        assert_eq!(node["api_url"], api);
        assert_eq!(node["metrics_url"], format!("{api}/metrics"));
        let config = attest_node::config::Config::load(&home.join("config.toml")).unwrap();
        assert_eq!(
            config.listen,
            [format!("/ip4/127.0.0.1/tcp/{}", base + 2 * i as u16)]
        );
        assert_eq!(config.bootnodes.len(), NODES - 1);
        assert_eq!(config.danger_cheat.is_some(), i == 3, "node {i}");
    }
    assert_eq!(report["nodes"][3]["cheater"], "flip:0.5");
    for j in 0..2 {
        assert_eq!(mode(&dir.join(format!("clients/client-{j}.key"))), 0o600);
    }
}

#[test]
fn a_testnet_comes_up_goes_down_restarts_on_its_data_and_is_purged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let _guard = Guard {
        tmp: Some(tmp),
        dir: dir.clone(),
    };
    let base = free_base().to_string();
    let init = [
        "init",
        "--seed",
        "7",
        "--clients",
        "2",
        "--base-port",
        &base,
        "--cheater",
        "3:flip:0.5",
        // No watchers: the client's own challenge below must find the wrong result
        // unchallenged.
        "--watch-rate",
        "0",
    ];
    let report = testnet_json(&dir, &init);
    check_init_files(&dir, &report, base.parse().unwrap());

    let up = testnet_json(&dir, &["up", "--timeout", "45"]);
    assert_eq!(up["nodes_up"], NODES);
    let first_pids = pids(&up);
    assert!(heights(&up).iter().all(|h| *h > 0), "{up}");
    assert!(first_pids.iter().all(|p| procs::alive(*p)));

    let status = testnet_json(&dir, &["status"]);
    assert_eq!(status["nodes_up"], NODES);
    assert_eq!(pids(&status), first_pids);
    for node in status["nodes"].as_array().unwrap() {
        assert_eq!(node["state"], "up");
        assert!(node["peers"].as_u64().unwrap() >= 1, "{node}");
    }
    // The table names every node, its PeerId and its URLs.
    let table = attest(&["testnet", "status", "--dir", &dir.display().to_string()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("4 of 4 nodes up"), "{table}");
    for node in status["nodes"].as_array().unwrap() {
        assert!(table.contains(node["peer_id"].as_str().unwrap()), "{table}");
        assert!(
            table.contains(node["metrics_url"].as_str().unwrap()),
            "{table}"
        );
    }
    client_commands_work_against_the_testnet(&dir, &status);
    account_commands_work_against_the_testnet(&dir, &status);
    // `up` again leaves running nodes alone.
    let again = testnet_json(&dir, &["up", "--timeout", "45"]);
    assert_eq!(pids(&again), first_pids);

    let before_down = testnet_json(&dir, &["status"]);
    let down = testnet_json(&dir, &["down"]);
    for node in down["nodes"].as_array().unwrap() {
        assert_eq!(node["state"], "down", "{node}");
        assert!(node["stopped_with"].is_string(), "{node}");
    }
    assert!(
        first_pids.iter().all(|p| !procs::alive(*p)),
        "a node survived down"
    );
    for i in 0..NODES {
        let home = dir.join(format!("node-{i}"));
        assert!(!home.join("node.pid").exists() && home.join("data").exists());
    }
    let status = testnet_json(&dir, &["status"]);
    assert_eq!(status["nodes_up"], 0);
    // A stopped node's data directory audits from genesis (read ahead and its signatures
    // verified on threads of their own, as over the API): every block the node holds.
    let audit = attest_json(&[
        "audit",
        "--data-dir",
        &dir.join("node-0/data").display().to_string(),
        "--genesis",
        &dir.join("genesis.json").display().to_string(),
        "--json",
    ]);
    assert_eq!(audit["ok"], true, "{audit}");
    assert!(
        audit["blocks"].as_u64() >= before_down["nodes"][0]["height"].as_u64(),
        "{audit}"
    );
    assert!(
        audit["signatures_verified"].as_u64() > audit["txs"].as_u64(),
        "{audit}"
    );

    // Restarted on the same data, every node carries on from where it stopped.
    let up = testnet_json(&dir, &["up", "--timeout", "45"]);
    for (i, (after, before)) in heights(&up).iter().zip(heights(&before_down)).enumerate() {
        assert!(
            *after > before,
            "node {i}: height {after} after restart, {before} before"
        );
    }
    let last_pids = pids(&up);
    let purge = testnet_json(&dir, &["down", "--purge"]);
    assert_eq!(purge["purged"], true);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        last_pids.iter().all(|p| !procs::alive(*p)),
        "a node survived down"
    );
}

#[test]
fn bad_input_gets_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let d = dir.display().to_string();
    let base = free_base().to_string();

    let err = testnet_fails(&["down", "--dir", &d]);
    assert!(
        err.contains("no testnet in") && err.contains("testnet.json"),
        "{err}"
    );
    let err = testnet_fails(&["status", "--dir", &d]);
    assert!(err.contains("no testnet in"), "{err}");

    let init = ["init", "--dir", &d, "--base-port", &base, "--json"];
    assert!(attest(&[&["testnet"], &init[..]].concat()).status.success());
    let err = testnet_fails(&init);
    assert!(err.contains(&d) && err.contains("--force"), "{err}");
    let forced = attest(&[&["testnet"], &init[..], &["--force", "--seed", "1"]].concat());
    assert!(forced.status.success(), "{}", stderr(&forced));
    let report: Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(report["chain_id"], "attest-testnet-1");

    let other = tmp.path().join("other").display().to_string();
    for (cheater, named) in [
        ("1:fly:0.1", "1:fly:0.1"),
        ("x:flip:0.1", "x:flip:0.1"),
        ("1:flip:7", "1:flip:7"),
        ("9:flip:0.1", "no node 9"),
    ] {
        let err = testnet_fails(&["init", "--dir", &other, "--cheater", cheater]);
        assert!(err.contains(named), "{cheater}: {err}");
    }
    let err = testnet_fails(&["init", "--dir", &other, "--nodes", "11"]);
    assert!(err.contains("--nodes") && err.contains("11"), "{err}");
    let err = testnet_fails(&["init", "--dir", &other, "--base-port", "65530"]);
    assert!(err.contains("--base-port 65530"), "{err}");
    assert!(
        !Path::new(&other).exists(),
        "a refused init left files behind"
    );
}

/// Node 3 cheats on half its jobs. Jobs are sent to it until one has a wrong result that no
/// checker was drawn for; `attest challenge` re-executes it, challenges it, plays the dispute
/// and wins: the job is refunded to the client and the cheater slashed. A right result on
/// the way is left alone (`agrees`).
fn challenge_a_wrong_result(
    node: &str,
    key: &str,
    status: &Value,
    run: &dyn Fn(&[&str]) -> Vec<u8>,
) {
    let cheater = status["nodes"][3]["account"].as_str().unwrap().to_owned();
    let json = |bytes: Vec<u8>| -> Value { serde_json::from_slice(&bytes).unwrap() };
    for attempt in 0..16 {
        // A wrong result the random draw gave a checker is disputed by it; one lost dispute
        // puts the cheater on probation (every later result checked), so no unchecked wrong
        // result can come any more (about one run in ten). That path is then what is checked:
        // the drawn checker won and the cheater was slashed for it.
        let account = json(run(&["account", &cheater, "--node", node, "--json"]));
        let stake = &account["account"]["stake"];
        if stake["disputes_lost"].as_u64().unwrap_or(0) > 0 {
            assert!(
                stake["probation_left"].as_u64().unwrap_or(0) > 0 || stake["status"] == "banned",
                "a lost dispute puts the provider on probation: {account}"
            );
            eprintln!(
                "attest challenge: a drawn checker caught the cheater first (attempt {attempt}): \
                 {stake}; the client's challenge is not exercised in this run"
            );
            return;
        }
        let input = format!("challenge me {attempt}");
        let wait = ["--wait", "result", "--timeout", "60"];
        let record = cluster::submit_job(
            node,
            key,
            &input,
            4,
            &[&["--provider", &cheater][..], &wait].concat(),
        );
        let job = record["job"].as_str().unwrap().to_owned();
        let shown = json(run(&["job", "show", &job, "--node", node, "--json"]));
        assert_eq!(shown["job"]["provider"], cheater.as_str(), "{shown}");
        if shown["job"]["assurance"]["state"] != "unchecked" {
            continue; // a drawn checker handles this one
        }
        let report = json(run(&[
            "challenge",
            &job,
            "--node",
            node,
            "--key",
            key,
            "--timeout",
            "120",
            "--json",
        ]));
        assert_eq!(report["schema"], "attest.challenge/1");
        match report["outcome"].as_str() {
            Some("agrees") => {
                assert_eq!(report["local_final_leaf"], report["committed_final_leaf"]);
                continue;
            }
            Some("won") => {}
            other => panic!("challenge of job {job}: {other:?} in {report}"),
        }
        assert!(report["moves"].as_u64().unwrap() >= 1, "{report}");
        eprintln!(
            "attest challenge: job {job} won after {} moves (attempt {attempt})",
            report["moves"]
        );
        let shown = json(run(&["job", "show", &job, "--node", node, "--json"]));
        let shown = &shown["job"];
        assert_eq!(shown["phase"], "refunded", "{shown}");
        assert_eq!(shown["assurance"]["state"], "overturned", "{shown}");
        assert_eq!(shown["assurance"]["challenger"], report["challenger"]);
        assert!(
            shown["faults"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["who"] == cheater.as_str() && f["reason"] == "dispute_lost"),
            "{shown}"
        );
        return;
    }
    panic!("16 jobs to the half-time cheater and no unchecked wrong result to challenge");
}

/// The client commands as a user runs them against the running testnet: a job submitted and
/// followed to its verified output, the market, the job's record, an audit from genesis, and
/// an export; then bad input, each failing with an error that names the problem.
fn client_commands_work_against_the_testnet(dir: &Path, status: &Value) {
    let node = status["nodes"][0]["api_url"]
        .as_str()
        .expect("node 0 has an API URL")
        .to_owned();
    let genesis = dir.join("genesis.json").display().to_string();
    let key = dir.join("clients/client-0.key").display().to_string();
    let run = |args: &[&str]| {
        let out = attest(args);
        assert!(
            out.status.success(),
            "attest {args:?} failed:\n{}",
            stderr(&out)
        );
        out.stdout
    };
    // Adverts reach the gateway's book within a couple of advert intervals.
    let mut adverts = 0;
    for _ in 0..60 {
        let market: Value =
            serde_json::from_slice(&run(&["market", "--node", &node, "--json"])).unwrap();
        assert_eq!(market["schema"], "attest.market/1");
        adverts = market["adverts"].as_array().map_or(0, Vec::len);
        if adverts == NODES {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(adverts, NODES, "not every provider advertised");
    let submit = [
        "submit",
        "--node",
        &node,
        "--key",
        &key,
        "--model",
        "attest-tiny-1b",
        "--input",
        "hello, testnet",
        "--max-tokens",
        "8",
        "--wait",
        "result",
        "--timeout",
        "60",
        "--json",
    ];
    let record: Value = serde_json::from_slice(&run(&submit)).unwrap();
    assert_eq!(record["schema"], "attest.submit/1");
    let w = attest_protocol::workload::Job::new("attest-tiny-1b", b"hello, testnet", 8).unwrap();
    let honest = String::from_utf8(attest_protocol::workload::execute(&w).output).unwrap();
    // Node 3 cheats on half its jobs; an honest provider's output is the honest one.
    let job = record["job"].as_str().unwrap().to_owned();
    let shown: Value =
        serde_json::from_slice(&run(&["job", "show", &job, "--node", &node, "--json"])).unwrap();
    assert_eq!(shown["schema"], "attest.job/1");
    let shown = &shown["job"];
    if shown["faults"].as_array().is_some_and(Vec::is_empty) && record["output"].is_string() {
        let provider_is_cheater = shown["provider"] == status["nodes"][3]["account"];
        if !provider_is_cheater {
            assert_eq!(record["output"].as_str(), Some(honest.as_str()), "{record}");
        }
    }
    challenge_a_wrong_result(&node, &key, status, &run);
    let audit: Value = serde_json::from_slice(&run(&[
        "audit",
        "--node",
        &node,
        "--genesis",
        &genesis,
        "--json",
    ]))
    .unwrap();
    assert_eq!(audit["schema"], "attest.audit/1");
    assert_eq!(audit["ok"], true, "{audit}");
    assert!(audit["txs"].as_u64().unwrap() >= 1);
    // The node's event stream (SSE over a chunked body) reads line by line through the
    // client: a `block` event comes within a few blocks.
    let events = attest_cli::http::Client::new(&node)
        .unwrap()
        .events("/v1/events")
        .unwrap();
    let block = events
        .take(100)
        .map(|line| line.expect("the event stream reads"))
        .find(|line| line.event == "block")
        .expect("a block event");
    let block: Value = serde_json::from_str(&block.data).unwrap();
    assert!(block["height"].as_u64().is_some_and(|h| h > 0), "{block}");
    let export = run(&["ledger", "export", "--node", &node, "--genesis", &genesis]);
    let lines = String::from_utf8(export).unwrap();
    assert!(lines.lines().count() as u64 > audit["blocks"].as_u64().unwrap());
    assert!(
        lines
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );

    // Bad input: each error names the problem, and nothing panics.
    let fails = |args: &[&str], needle: &str| {
        let out = attest(args);
        assert!(!out.status.success(), "attest {args:?} succeeded");
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains(needle),
            "attest {args:?}: {err:?} does not name {needle:?}"
        );
    };
    let base = ["submit", "--node", node.as_str(), "--key", key.as_str()];
    fails(
        &[&base[..], &["--model", "attest-huge-9t", "--input", "x"]].concat(),
        "attest-huge-9t",
    );
    fails(
        &[
            "submit",
            "--node",
            &node,
            "--key",
            "/nonexistent/k.key",
            "--model",
            "attest-tiny-1b",
            "--input",
            "x",
        ],
        "/nonexistent/k.key",
    );
    fails(
        &[
            "submit",
            "--node",
            "http://127.0.0.1:1",
            "--key",
            &key,
            "--model",
            "attest-tiny-1b",
            "--input",
            "x",
        ],
        "unreachable",
    );
    fails(
        &[
            &base[..],
            &[
                "--model",
                "attest-tiny-1b",
                "--input",
                "@/nonexistent/input.txt",
            ],
        ]
        .concat(),
        "/nonexistent/input.txt",
    );
    fails(&["submit", "--no-such-flag"], "--no-such-flag");
    fails(
        &[
            "audit",
            "--node",
            &node,
            "--genesis",
            "/nonexistent/genesis.json",
        ],
        "genesis",
    );
}

/// The account commands with the global flags on either side of the subcommand: a transfer
/// to a new key, a stake from it that binds a new node home, an unstake, an unstake beyond the
/// bonded stake refused with the contract's reason; then an audit that takes the genesis from
/// the node, pinned to the testnet's genesis hash, and refuses another hash.
fn account_commands_work_against_the_testnet(dir: &Path, status: &Value) {
    let node = status["nodes"][0]["api_url"].as_str().unwrap().to_owned();
    let client = dir.join("clients/client-0.key").display().to_string();
    // Beside the testnet's directory, which `down --purge` removes only if it holds nothing else.
    let beside = dir.parent().unwrap();
    let me = beside.join("me.key").display().to_string();
    let home = beside.join("joiner").display().to_string();
    let json = attest_json;
    let fails = |args: &[&str], needle: &str| {
        let out = attest(args);
        assert!(!out.status.success(), "attest {args:?} succeeded");
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && err.contains(needle),
            "attest {args:?}: {err}"
        );
    };
    let account = json(&["--json", "keys", "new", &me])["account"]
        .as_str()
        .unwrap()
        .to_owned();
    fails(&["--node", &node, "keys", "show", &me], "talks to no node");
    // A job asked of an account that advertises nothing is refused before anything is signed
    // or sent, naming the provider: it never goes to another provider instead.
    let asked = |provider: &str| {
        let args = [
            "submit",
            "--node",
            &node,
            "--key",
            &client,
            "--model",
            "attest-tiny-1b",
            "--input",
            "for nobody",
            "--provider",
            provider,
        ];
        let out = attest(&args);
        (out.status.success(), stderr(&out))
    };
    let (taken, err) = asked(&account);
    assert!(
        !taken && err.contains(&format!("--provider {account}")),
        "{err}"
    );
    assert!(err.contains("holds no unexpired advert"), "{err}");

    let sent = json(&[
        "--node", &node, "--json", "transfer", "--to", &account, "--amount", "300", "--key",
        &client,
    ]);
    assert_eq!(sent["schema"], "attest.transfer/1");
    assert!(
        sent["tx"]["height"].as_u64().is_some_and(|h| h > 0),
        "{sent}"
    );
    assert!(sent["tx"]["fee"].as_u64().is_some_and(|f| f > 0), "{sent}");
    let shown = json(&["account", &account, "--node", &node, "--json"]);
    assert_eq!(shown["schema"], "attest.account/1");
    assert_eq!(shown["account"]["balance"], 300_000_000u64, "{shown}");
    // `provider status` names each state the account is in on its way to work.
    let problems = |account: &str| {
        json(&["provider", "status", account, "--node", &node, "--json"])["problems"].to_string()
    };
    assert!(
        problems(&account).contains("not staked"),
        "{}",
        problems(&account)
    );

    let init = json(&["init", "--home", &home, "--json"]);
    let staked = json(&[
        "stake", "--amount", "200", "--home", &home, "--key", &me, "--node", &node, "--json",
    ]);
    assert_eq!(staked["schema"], "attest.stake/1");
    assert_eq!(staked["bonded_after"], 200_000_000u64, "{staked}");
    assert_eq!(staked["node_peer_id"], init["peer_id"], "{staked}");
    let after = &staked["account_after"];
    assert_eq!(after["stake"]["node_peer_id"], init["peer_id"], "{staked}");
    assert_eq!(after["stake"]["device"], "h100-sxm", "{staked}");
    assert_eq!(after["stake"]["eligible"], true, "{staked}");
    // The text form names the role.
    // Staked, but bound to a node that is not the one asked (and not running).
    let staked_problems = problems(&account);
    assert!(
        staked_problems.contains("the stake binds node"),
        "{staked_problems}"
    );
    assert!(!staked_problems.contains("not staked"), "{staked_problems}");
    let text = attest(&["--node", &node, "account", "--key", &me]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("provider and checker on h100-sxm"), "{text}");

    let unstaked = json(&[
        "--json", "unstake", "--amount", "200", "--key", &me, "--node", &node,
    ]);
    assert_eq!(unstaked["schema"], "attest.unstake/1");
    assert_eq!(unstaked["bonded_after"], 0, "{unstaked}");
    assert!(
        unstaked["release_at_ms"].as_u64().is_some_and(|t| t > 0),
        "{unstaked}"
    );
    fails(
        &["unstake", "--amount", "1", "--key", &me, "--node", &node],
        "refused_by_contract",
    );

    let hash = status["genesis_hash"].as_str().unwrap();
    let audit = json(&[
        "audit",
        "--node",
        &node,
        "--genesis-hash",
        hash,
        "--to",
        "3",
        "--json",
    ]);
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(audit["genesis"]["pinned"], true, "{audit}");
    assert_eq!(audit["genesis"]["hash"], hash, "{audit}");
    assert!(
        audit["genesis"]["source"]
            .as_str()
            .unwrap()
            .starts_with("node "),
        "{audit}"
    );
    let other = "00".repeat(32);
    fails(
        &["audit", "--node", &node, "--genesis-hash", &other],
        "hashes to",
    );
}

/// A provider joins the running testnet (`add-node`): its advert reaches every node's market,
/// a job asked of it settles, its account shows the work; it leaves (`remove-node`): unstaked,
/// stopped, left stopped by `up`; the audit passes after both.
#[test]
fn a_provider_joins_the_running_testnet_works_and_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let _guard = Guard {
        tmp: Some(tmp),
        dir: dir.clone(),
    };
    let d = dir.display().to_string();
    let base = free_base().to_string();
    let json = attest_json;
    testnet_json(
        &dir,
        &[
            "init",
            "--seed",
            "11",
            "--clients",
            "1",
            "--base-port",
            &base,
            "--watch-rate",
            "0",
        ],
    );
    let up = testnet_json(&dir, &["up", "--timeout", "45"]);
    assert_eq!(up["nodes_up"], NODES);
    let node = up["nodes"][0]["api_url"].as_str().unwrap().to_owned();

    let added = json(&[
        "testnet",
        "add-node",
        "--dir",
        &d,
        "--device",
        "cpu",
        "--timeout",
        "90",
        "--json",
    ]);
    assert_eq!(added["command"], "add-node");
    assert_eq!(added["nodes_up"], NODES + 1, "{added}");
    let joined = &added["nodes"][NODES];
    assert_eq!(joined["device"], "cpu", "{added}");
    let m = &added["membership"];
    assert_eq!(m["node"], NODES, "{added}");
    assert!(m["staked_at"].as_u64() > m["tx_height"].as_u64(), "{added}");
    let account = joined["account"].as_str().unwrap().to_owned();
    for i in 0..NODES {
        let api = added["nodes"][i]["api_url"].as_str().unwrap();
        let market = json(&["market", "--node", api, "--json"]);
        let listed = market["adverts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["provider"] == account.as_str());
        assert!(listed, "node {i}'s market lacks the new provider: {market}");
    }
    // Its own node answers "why no work": nothing; every peer holds its advert.
    let own = joined["api_url"].as_str().unwrap();
    let standing = json(&["provider", "status", "--node", own, "--json"]);
    assert_eq!(standing["schema"], "attest.provider-status/1");
    assert_eq!(standing["account"], account.as_str(), "{standing}");
    assert_eq!(standing["problems"], serde_json::json!([]), "{standing}");
    assert_eq!(standing["bound_to_this_node"], true, "{standing}");
    assert_eq!(standing["reach"]["asked"], NODES, "{standing}");
    assert_eq!(
        standing["reach"]["holding"].as_array().map(Vec::len),
        Some(NODES),
        "{standing}"
    );
    let key = dir.join("clients/client-0.key").display().to_string();
    let always = ["--check", "always", "--wait", "settled", "--timeout", "90"];
    let job = cluster::submit_job(
        &node,
        &key,
        "a new provider",
        8,
        &[&["--provider", &account][..], &always].concat(),
    );
    assert_eq!(job["view"]["provider"], account.as_str(), "{job}");
    assert_eq!(job["phase"], "settled", "{job}");
    let record = json(&["account", &account, "--node", &node, "--json"]);
    let record = &record["account"];
    assert!(
        record["provider"]["jobs"]["settled"].as_u64() >= Some(1),
        "{record}"
    );
    assert!(record["validator_power"].as_u64().is_some(), "{record}");
    // The node's history lists the job among the provider's recent parts.
    let part = serde_json::json!([job["view"]["opened_at"], "provider", job["job"]]);
    assert!(
        record["recent_jobs"].as_array().unwrap().contains(&part),
        "{record}"
    );
    assert!(record["earned"].as_u64().is_some_and(|e| e > 0), "{record}");

    let removed = json(&["testnet", "remove-node", "4", "--dir", &d, "--json"]);
    assert_eq!(removed["nodes"][NODES]["state"], "removed", "{removed}");
    assert_eq!(removed["nodes_up"], NODES, "{removed}");
    let record = json(&["account", &account, "--node", &node, "--json"]);
    let stake = &record["account"]["stake"];
    assert_eq!(stake["bonded"], 0, "{record}");
    assert_eq!(
        stake["unbonding"].as_array().map(Vec::len),
        Some(1),
        "{record}"
    );
    assert!(record["account"]["validator_power"].is_null(), "{record}");
    let standing = json(&["provider", "status", &account, "--node", &node, "--json"]);
    let problems = standing["problems"].to_string();
    assert!(
        problems.contains("below the chain's min_stake"),
        "{standing}"
    );
    let hash = up["genesis_hash"].as_str().unwrap();
    let audit = json(&["audit", "--node", &node, "--genesis-hash", hash, "--json"]);
    assert_eq!(audit["ok"], true, "{audit}");
    // `up` leaves the removed node stopped and waits only for the others.
    let again = json(&["testnet", "up", "--dir", &d, "--timeout", "45", "--json"]);
    assert_eq!(again["nodes"][NODES]["state"], "removed", "{again}");
    assert_eq!(again["nodes_up"], NODES, "{again}");
    let purge = json(&["testnet", "down", "--purge", "--dir", &d, "--json"]);
    assert_eq!(purge["purged"], true);
}
