//! Nodes on separate hosts, as far as one machine can show it: four `attest node` processes,
//! each in a Linux network namespace of its own with its own address on a virtual bridge
//! (`ip netns`, `veth`), made as an operator makes them (`attest init`, `attest genesis`).
//! Every node but node 0 is given node 0 alone as its bootnode: they must find each other
//! (Kademlia, identify). Then a fifth host joins (block sync), is funded and stakes
//! (`attest transfer`, `attest stake` over its own API), its advert reaches every host's
//! market and a job asked of it is provided there, checked and settled; one host is cut off
//! (its link down) while the rest go on, and healed (link up) after which it catches up; the
//! chain is one chain on every host and `attest audit` passes; the fifth host unstakes and
//! leaves, and the rest go on.
//!
//! Needs root (namespaces); CI runs as root. Without it the test says so and does nothing.
//! Addresses are 10.77.N.0/24 with N from the process id, on interfaces and namespaces the
//! test creates and removes (also when it fails). Waits are hang guards only.

use std::time::Duration;

use attest_cli::http::Client;
use serde_json::Value;

const HOSTS: usize = 4;

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/netns.rs"]
mod netns;
use cluster::attest_json;
use netns::{Net, audit_passes, ip, is_root};

#[test]
fn nodes_on_separate_hosts_find_each_other_join_partition_and_heal() {
    if !is_root() {
        eprintln!("SKIPPED: network namespaces need root (CI runs this as root)");
        return;
    }
    let mut net = Net::new();
    for _ in 0..HOSTS {
        net.add_host();
    }
    let dir = net.dir.as_ref().unwrap().path().to_owned();
    let client_key = dir.join("client.key");
    let client = attest_json(&["keys", "new", &client_key.display().to_string(), "--json"]);
    let client = client["account"].as_str().unwrap().to_owned();
    let genesis = net.start_chain("netns-test", &[format!("{client}=100000")]);
    net.say("four hosts started, each knowing host 0 alone");
    // Every host finds every other through host 0, and blocks are made.
    net.wait(
        "every host connected to the 3 others",
        Duration::from_secs(60),
        || {
            (0..HOSTS)
                .all(|i| {
                    net.status(i)
                        .is_some_and(|s| s.peers >= HOSTS - 1 && s.height.0 >= 2)
                })
                .then_some(())
        },
    );
    net.say("every host has the other three as peers");

    // A fifth host joins, is funded, stakes from its own API and advertises.
    let joiner = net.add_host();
    net.start(joiner, &genesis);
    let head = net.status(0).unwrap().height.0;
    net.wait(
        "the fifth host catching up",
        Duration::from_secs(60),
        || {
            net.status(joiner)
                .filter(|s| s.height.0 >= head && s.peers >= HOSTS)
                .map(|_| ())
        },
    );
    net.say("the fifth host caught up by block sync");
    let home = net.hosts[joiner].home.display().to_string();
    let account = attest_json(&[
        "keys",
        "show",
        &net.hosts[joiner]
            .home
            .join("account.key")
            .display()
            .to_string(),
        "--json",
    ])["account"]
        .as_str()
        .unwrap()
        .to_owned();
    let node0 = net.url(0);
    let own = net.url(joiner);
    attest_json(&[
        "transfer",
        "--to",
        &account,
        "--amount",
        "2000",
        "--key",
        &client_key.display().to_string(),
        "--node",
        &node0,
        "--json",
    ]);
    let staked = attest_json(&[
        "stake", "--amount", "1000", "--home", &home, "--node", &own, "--json",
    ]);
    assert_eq!(staked["bonded_after"], 1_000_000_000u64, "{staked}");
    net.wait(
        "the new provider in every host's market",
        Duration::from_secs(30),
        || {
            (0..=joiner)
                .all(|i| {
                    let market = attest_json(&["market", "--node", &net.url(i), "--json"]);
                    market["adverts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|a| a["provider"] == account.as_str()))
                })
                .then_some(())
        },
    );
    net.say("the fifth host staked; its advert is in every host's market");
    // A job asked of it through host 0 is provided on the fifth host, checked and settled.
    let always = ["--check", "always", "--wait", "settled", "--timeout", "120"];
    let job = cluster::submit_job(
        &node0,
        &client_key.display().to_string(),
        "across hosts",
        8,
        &[&["--provider", &account][..], &always].concat(),
    );
    assert_eq!(job["phase"], "settled", "{job}");
    let earned = attest_json(&["account", &account, "--node", &own, "--json"]);
    assert!(
        earned["account"]["earned"].as_u64().is_some_and(|e| e > 0),
        "{earned}"
    );
    net.say("a job on the fifth host settled after its check; it earned");

    // Cut host 3 off; the other four (4 of 5 equal stakes) go on without it.
    let cut = 3;
    ip(&["link", "set", &net.hosts[cut].link, "down"]);
    let at_cut = net.status(0).unwrap().height.0;
    let live = [0, 1, 2, joiner];
    net.wait_heights("the others committing without host 3", &live, at_cut + 3);
    net.say("the four others made 3 blocks with host 3 cut off");
    ip(&["link", "set", &net.hosts[cut].link, "up"]);
    let target = net.status(0).unwrap().height.0;
    net.wait(
        "host 3 catching up after the heal",
        Duration::from_secs(60),
        || net.status(cut).filter(|s| s.height.0 >= target).map(|_| ()),
    );
    net.say("host 3 healed and caught up");

    // One chain on every host, and an audit from genesis through host 0.
    let common = (0..=joiner)
        .map(|i| net.status(i).unwrap().height.0)
        .min()
        .unwrap();
    let hash_at = |i: usize, h: u64| -> String {
        let client = Client::new(&net.url(i)).unwrap();
        let block: Value = client.get(&format!("/v1/blocks/{h}")).unwrap();
        block["hash"].as_str().unwrap().to_owned()
    };
    for h in [1, common / 2, common] {
        let want = hash_at(0, h.max(1));
        for i in 1..=joiner {
            assert_eq!(hash_at(i, h.max(1)), want, "host {i} differs at height {h}");
        }
    }
    audit_passes(&node0, &genesis);
    net.say(&format!("one chain to height {common}; the audit passes"));

    // The fifth host leaves: it unstakes from its own API and stops; the others go on.
    let left = attest_json(&[
        "unstake", "--amount", "1000", "--home", &home, "--node", &own, "--json",
    ]);
    assert_eq!(left["bonded_after"], 0, "{left}");
    if let Some(mut child) = net.hosts[joiner].child.take() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let after = net.status(0).unwrap().height.0;
    let four: Vec<usize> = (0..HOSTS).collect();
    net.wait_heights(
        "the four hosts going on without the fifth",
        &four,
        after + 3,
    );
    audit_passes(&node0, &genesis);
    net.say("the fifth host unstaked and left; the others go on; the audit passes");
}
