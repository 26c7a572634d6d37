//! Restart time: a one-validator node whose store holds `ATTEST_RESTART_BLOCKS` blocks
//! (default 100,000) is started, and the time from `Node::start` to its first new commit is
//! measured, once from a snapshot at the last height and once with no snapshot (a replay from
//! genesis). Prints both and their ratio. Asserts nothing.
//!
//! `cargo bench -p attest-node --bench restart`

#[path = "common/mod.rs"]
mod common;
use common::{fill, now_ms};

use std::time::{Duration, Instant};

use attest_chain::GenesisFile;
use attest_contracts_sim::Params;
use attest_core::CoreConfig;
use attest_core::accel::{DeviceProfile, TimeScale};
use attest_node::accel_pool::DeviceConfig;
use attest_node::shell::{Node, NodeSettings};
use attest_protocol::{Amount, ChainId, SecretKey};

/// Starts the node on `data_dir` and waits for its first commit above `height`.
fn time_to_first_commit(settings: NodeSettings, height: u64) -> Duration {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let took = runtime.block_on(async {
        let started = Instant::now();
        let (node, handle) = Node::start(settings).unwrap();
        let mut stopped = stopped.clone();
        tokio::spawn(node.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        loop {
            if handle.status().await.unwrap().height.0 > height {
                break started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    stop.send_replace(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
    took
}

fn main() {
    let blocks: u64 = std::env::var("ATTEST_RESTART_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node_key = SecretKey::from_seed([1; 32]);
    let validator = SecretKey::from_seed([2; 32]);
    let genesis = GenesisFile::new(
        ChainId::new("restart-bench").unwrap(),
        now_ms() - 10 * blocks - 60_000,
        Params::default(),
        vec![(validator.public(), Amount(1_000_000_000))],
        vec![(
            validator.public(),
            node_key.public(),
            Amount(1_000_000_000),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        )],
    );
    fill(&data, &genesis, &validator, blocks);
    let settings = || NodeSettings {
        node_key: node_key.clone(),
        account_key: validator.clone(),
        genesis: genesis.clone(),
        data_dir: data.clone(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootnodes: Vec::new(),
        core: CoreConfig {
            idle_block_interval_ms: 10,
            ..CoreConfig::default()
        },
        device: DeviceConfig::new(DeviceProfile::find("cpu").unwrap(), TimeScale::HUNDREDTH),
        snapshots: (1_000_000, 2),
    };
    let from_snapshot = time_to_first_commit(settings(), blocks);
    std::fs::remove_dir_all(data.join(attest_node::snapshots::DIR)).unwrap();
    let replay = time_to_first_commit(settings(), blocks);
    println!("store of {blocks} blocks: first new commit after start");
    println!("  from the snapshot: {from_snapshot:?}");
    println!("  replaying from genesis: {replay:?}");
    println!(
        "  ratio: {:.1}",
        replay.as_secs_f64() / from_snapshot.as_secs_f64()
    );
}
