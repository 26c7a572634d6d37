//! Four `attest node` processes on 127.0.0.1, made and run the way an operator would (`attest
//! init`, `attest genesis`, `attest node`), under a steady stream of transfers sent through the
//! HTTP API. One node is killed with SIGKILL mid-load: the other three must keep committing.
//! It is restarted on the same home: it must start from its newest state snapshot, catch up, agree with the others on the block hash
//! at a common height, and every transfer the API accepted must end up in a committed block.
//!
//! Every wait is bounded as a hang guard only; no assertion is about speed. The node logs go to
//! files in the test's directory; on failure their tails are printed and the directory is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{Cluster, Load, NODES, Status, attest_json, wait_for};

/// The node that is killed and restarted. The load is sent to the others only, so a
/// transfer's acceptance never depends on a process that is about to die.
const VICTIM: usize = 3;

/// What the test remembers of the moment of the kill.
struct Kill {
    /// Transfers accepted before it.
    accepted: Vec<String>,
    /// The victim's last height it reported: blocks it had committed, which must survive.
    victim_height: u64,
    /// The lowest survivor height just after it.
    height: u64,
}

fn survivors() -> Vec<usize> {
    (0..NODES).filter(|i| *i != VICTIM).collect()
}

/// SIGKILLs the victim mid-load.
fn kill_victim(cluster: &mut Cluster, load: &Load) -> Kill {
    let before = cluster.heights(&(0..NODES).collect::<Vec<_>>()).unwrap();
    cluster.kill(VICTIM);
    let accepted = load.accepted();
    let height = cluster
        .heights(&survivors())
        .unwrap()
        .into_iter()
        .min()
        .unwrap();
    cluster.say(&format!(
        "killed node {VICTIM} (kill -9) at heights {before:?}, {} transfers accepted",
        accepted.len()
    ));
    Kill {
        accepted,
        victim_height: before[VICTIM],
        height,
    }
}

/// Waits for the survivors to commit nine heights past the kill and checks that some of them
/// needed a later round. With four equal stakes the proposer order (a golden-ratio stride over
/// stake) gives every validator a round-0 turn in any eight consecutive heights, so the
/// survivors must have got past at least one turn of the dead node. Answers their heights.
fn survivors_commit_past_the_dead(cluster: &Cluster, kill: &Kill) -> Vec<u64> {
    let past = kill.height + 9;
    let hs = cluster.wait_all_reach(&survivors(), past, Duration::from_secs(45));
    let later_rounds: Vec<u64> = (kill.height + 2..=past)
        .filter(|h| cluster.block(0, *h).certificate.round.0 != 0)
        .collect();
    assert!(
        !later_rounds.is_empty(),
        "no height after the kill needed a second round: was the dead node never proposer?"
    );
    cluster.say(&format!(
        "survivors kept committing: heights {hs:?}; heights {later_rounds:?} committed after \
         the dead proposer's round timed out"
    ));
    hs
}

/// Only back-pressure while commits stall (a dead proposer's round must time out) may refuse
/// a valid transfer; any other refusal is a bug in the API or the mempool. The load's own
/// recovery (`rewound`, `resent after stopping`: support/cluster.rs, `Load`) is counted in
/// the same map and is no refusal.
fn check_refusals(refused: &BTreeMap<String, usize>) {
    for reason in refused.keys() {
        let expected = [
            "422 nonce_too_far_ahead",
            "503 mempool_full",
            "409 duplicate",
            "409 stale_nonce",
            "rewound",
            "resent after stopping",
        ];
        assert!(
            expected.contains(&reason.as_str()),
            "unexpected refusal of a valid transfer: {reason} ({refused:?})"
        );
    }
}

/// Waits until no survivor holds a waiting transaction; answers the highest height then.
fn wait_drained(cluster: &Cluster) -> u64 {
    let seen = std::cell::RefCell::new(Vec::new());
    let what = || {
        format!(
            "survivors' mempools draining; last seen {:?}",
            seen.borrow()
        )
    };
    wait_for(what, Duration::from_secs(30), || {
        let statuses: Vec<Status> = survivors()
            .iter()
            .map(|i| cluster.status(*i))
            .collect::<Option<_>>()?;
        *seen.borrow_mut() = statuses
            .iter()
            .map(|s| (s.height.0, s.mempool))
            .collect::<Vec<_>>();
        let empty = statuses.iter().all(|s| s.mempool == 0);
        let highest = statuses.iter().map(|s| s.height.0).max()?;
        empty.then_some(highest)
    })
}

/// Every transaction hash in node `i`'s blocks `1..=up_to`.
fn committed_txs(cluster: &Cluster, i: usize, up_to: u64) -> BTreeSet<String> {
    let mut committed = BTreeSet::new();
    for height in 1..=up_to {
        for tx in cluster.block(i, height).txs {
            committed.insert(tx.to_string());
        }
    }
    committed
}

#[test]
fn four_processes_survive_a_kill_and_lose_nothing() {
    let client = attest_node::keyfile::generate().unwrap();
    let mut cluster = Cluster::init(&client.public());
    let all: Vec<usize> = (0..NODES).collect();
    for i in 0..NODES {
        cluster.start(i);
    }
    let hs = cluster.wait_all_reach(&all, 2, Duration::from_secs(30));
    cluster.say(&format!("4 nodes committing, heights {hs:?}"));
    for i in 0..NODES {
        let peers = cluster.status(i).unwrap().peers;
        assert!(peers >= 1, "node {i} has no peers");
    }

    let apis = survivors().iter().map(|i| cluster.nodes[*i].api).collect();
    let load = Load::start(apis, client);
    wait_for(
        || "50 transfers accepted".into(),
        Duration::from_secs(20),
        || (load.accepted().len() >= 50).then_some(()),
    );
    let kill = kill_victim(&mut cluster, &load);
    let hs = survivors_commit_past_the_dead(&cluster, &kill);

    cluster.start(VICTIM);
    let target = hs.into_iter().max().unwrap();
    let h = cluster.wait_all_reach(&[VICTIM], target, Duration::from_secs(30));
    // It started from its newest snapshot, not from genesis.
    let log = std::fs::read_to_string(&cluster.nodes[VICTIM].log).unwrap();
    assert!(
        log.contains("starting from snapshot"),
        "node {VICTIM} did not start from a snapshot"
    );
    cluster.say(&format!(
        "node {VICTIM} restarted, caught up to height {}",
        h[0]
    ));

    let (accepted, refused) = load.finish();
    let n = accepted.len();
    cluster.say(&format!("load stopped: {n} accepted; refusals {refused:?}"));
    check_refusals(&refused);
    let drained = wait_drained(&cluster);
    let hs = cluster.wait_all_reach(&all, drained, Duration::from_secs(30));
    let common = hs.iter().copied().min().unwrap();
    cluster.say(&format!(
        "mempools empty at height {drained}; heights {hs:?}"
    ));

    // One chain: all four agree at the common height, at the kill, and at the last height the
    // victim had committed before it died (its own durable blocks survived the crash).
    for height in [kill.victim_height, kill.height, common] {
        let hashes: Vec<_> = all.iter().map(|i| cluster.block(*i, height).hash).collect();
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "height {height}: {hashes:?}"
        );
    }

    // Nothing lost: every transfer accepted, before the kill or after, is in a block that the
    // restarted node serves.
    let committed = committed_txs(&cluster, VICTIM, common);
    let lost = |hashes: &[String]| -> Vec<String> {
        hashes
            .iter()
            .filter(|h| !committed.contains(*h))
            .cloned()
            .collect()
    };
    assert_eq!(
        lost(&kill.accepted),
        Vec::<String>::new(),
        "accepted before the kill, lost"
    );
    assert_eq!(
        lost(&accepted),
        Vec::<String>::new(),
        "accepted, never committed"
    );
    cluster.say(&format!(
        "all four agree at heights {:?}; {n} transfers committed ({} accepted before the kill), \
         none lost",
        [kill.victim_height, kill.height, common],
        kill.accepted.len()
    ));

    join_by_state_sync(&mut cluster);
}

/// A fifth node with an empty store joins the running chain by state sync, trusting node 0's
/// head: it restores a snapshot below that block without the blocks under it, catches up,
/// agrees with the others, and the full chain still audits from genesis on node 0.
fn join_by_state_sync(cluster: &mut Cluster) {
    let head = cluster.status(0).unwrap();
    let (trust_height, trust_hash) = (head.height.0, head.latest_block_hash);
    let joiner = cluster.add_follower();
    let args = [
        "--trust-height".to_owned(),
        trust_height.to_string(),
        "--trust-hash".to_owned(),
        trust_hash.to_string(),
    ];
    cluster.start_with(joiner, &args);
    let target = cluster.height(0).unwrap();
    let h = cluster.wait_all_reach(&[joiner], target, Duration::from_secs(60));
    let status = cluster.status(joiner).unwrap();
    assert!(status.state_sync.is_none(), "{:?}", status.state_sync);
    assert!(
        status.base_height.0 > 0 && status.base_height.0 < trust_height,
        "base {} for trusted height {trust_height}",
        status.base_height
    );
    let log = std::fs::read_to_string(&cluster.nodes[joiner].log).unwrap();
    assert!(
        log.contains("snapshot restored and anchored"),
        "no state sync in the log"
    );
    let common = h[0].min(cluster.height(0).unwrap());
    assert_eq!(
        cluster.block(joiner, common).hash,
        cluster.block(0, common).hash
    );
    cluster.say(&format!(
        "node {joiner} joined by state sync from snapshot {} (trusted {trust_height}), at {}",
        status.base_height, h[0]
    ));
    let genesis = cluster.genesis.display().to_string();
    let api = format!("http://{}", cluster.nodes[0].api);
    let audit = attest_json(&["audit", "--node", &api, "--genesis", &genesis, "--json"]);
    assert_eq!(audit["ok"], true, "{audit}");
}
