//! Joining by state sync: a one-validator node whose store holds `ATTEST_SYNC_BLOCKS` blocks
//! (default 100,000) serves; a fresh node with an empty store is started with the serving
//! node's head as its trusted block, and the time from its `Node::start` to reaching that
//! head is measured (state sync of the newest snapshot below it, then block sync of the rest).
//! Both nodes run in this process on loopback. Prints the time. Asserts nothing.
//!
//! `cargo bench -p attest-node --bench statesync`

#[path = "common/mod.rs"]
mod common;
use common::{fill, now_ms};

use std::time::{Duration, Instant};

use attest_chain::GenesisFile;
use attest_contracts_sim::Params;
use attest_core::CoreConfig;
use attest_core::accel::{DeviceProfile, TimeScale};
use attest_core::statesync::Trust;
use attest_node::accel_pool::DeviceConfig;
use attest_node::shell::{Node, NodeSettings};
use attest_protocol::{Amount, ChainId, SecretKey};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    let blocks: u64 = std::env::var("ATTEST_SYNC_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let validator = SecretKey::from_seed([2; 32]);
    let genesis = GenesisFile::new(
        ChainId::new("statesync-bench").unwrap(),
        now_ms() - 10 * blocks - 60_000,
        Params::default(),
        vec![(validator.public(), Amount(1_000_000_000))],
        vec![(
            validator.public(),
            SecretKey::from_seed([1; 32]).public(),
            Amount(1_000_000_000),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        )],
    );
    let served = dir.path().join("served");
    fill(&served, &genesis, &validator, blocks);
    let port = free_port();
    let settings = |node_key: SecretKey, account: SecretKey, data, listen: u16| NodeSettings {
        node_key,
        account_key: account,
        genesis: genesis.clone(),
        data_dir: data,
        listen: vec![format!("/ip4/127.0.0.1/tcp/{listen}").parse().unwrap()],
        bootnodes: Vec::new(),
        core: CoreConfig {
            idle_block_interval_ms: 50,
            ..CoreConfig::default()
        },
        device: DeviceConfig::new(DeviceProfile::find("cpu").unwrap(), TimeScale::HUNDREDTH),
        snapshots: (1_000, 2),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let spawn = |node: Node| {
        let mut stopped = stopped.clone();
        tokio::spawn(node.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    };
    let (took, trusted, head) = runtime.block_on(async {
        let a = settings(
            SecretKey::from_seed([1; 32]),
            validator.clone(),
            served,
            port,
        );
        let (node, server) = Node::start(a).unwrap();
        let peer = node.peer_id();
        spawn(node);
        // The trusted block must be above the served snapshot (the stored head).
        let status = loop {
            let s = server.status().await.unwrap();
            if s.height.0 > blocks {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let trust = Trust {
            height: status.height,
            hash: status.latest_block_hash,
        };
        let mut b = settings(
            SecretKey::from_seed([7; 32]),
            SecretKey::from_seed([8; 32]),
            dir.path().join("joiner"),
            free_port(),
        );
        b.bootnodes = vec![
            format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
                .parse()
                .unwrap(),
        ];
        b.core.state_sync = Some(trust);
        let started = Instant::now();
        let (node, joiner) = Node::start(b).unwrap();
        spawn(node);
        loop {
            let s = joiner.status().await.unwrap();
            if s.height >= trust.height {
                let head = server.status().await.unwrap().height;
                break (started.elapsed(), trust.height, (s.height, head));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    stop.send_replace(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
    println!("chain of {blocks} blocks: a fresh node joins by state sync");
    println!("  trusted height {trusted}: reached in {took:?}");
    println!("  joiner at {}, server at {} when it did", head.0, head.1);
}
