//! Wide networks in the deterministic simulator: validators chosen as the top
//! `max_validators` stakes, many more staked providers outside the set, every message 50 to
//! 150 ms (a WAN). The short run (CI) checks that such a network stays live, agrees, and
//! keeps its validator set at the bound while the providers work; the long run
//! (`scaling_table`, ignored: `cargo test --release -p attest-tests --test scaling -- --ignored
//! --nocapture`, sizes from `ATTEST_SCALE`, e.g. `4:0,25:0,100:0,100:1000`) prints block time
//! and validation latency by size for docs/SCALING.md. Times are the simulation's virtual
//! block times, deterministic for a seed; nothing here measures the machine.

use attest_contracts_sim::Params;
use attest_tests::scenario::{JobTraffic, Scenario};
use attest_tests::sim::{Outcome, run};

/// `validators` + `providers` nodes, jobs checked always (so every job has a validation
/// latency), windows long enough for WAN blocks.
fn wide(seed: u64, validators: usize, providers: usize, jobs: u64, height: u64) -> Scenario {
    let mut s = Scenario::wide(seed, validators, providers);
    s.params = Params {
        max_validators: s.params.max_validators,
        check_probability_ppm: 1_000_000,
        verdict_window_ms: 20_000,
        dispute_round_ms: 20_000,
        ..Params::default()
    };
    s.jobs = Some(JobTraffic {
        count: jobs,
        via_gateway: false,
        ..JobTraffic::default()
    });
    s.tx_interval_ms = Some((500, 1_500));
    s.target_height = height;
    s.liveness_budget_ms = 600_000;
    s
}

/// The p-th percentile (0-100) of `v`, sorted here.
fn percentile(v: &mut [u64], p: usize) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) * p / 100]
}

/// Block intervals (ms) of a run, the first block left out (it waits for the start).
fn intervals(o: &Outcome) -> Vec<u64> {
    o.block_times_ms
        .windows(2)
        .skip(1)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect()
}

fn validation_latencies(o: &Outcome) -> Vec<u64> {
    o.job_clocks
        .iter()
        .filter_map(|(_, c)| c.validation_latency_ms())
        .collect()
}

#[test]
fn a_wide_network_on_a_wan_stays_live_with_a_bounded_validator_set() {
    let o = run(wide(7, 7, 9, 12, 25));
    // The simulator already failed the run on a fork, a halt or a stalled honest node.
    assert_eq!(o.state.validators().count(), 7);
    assert!(o.state.stakes().count() >= 16);
    let mut blocks = intervals(&o);
    assert!(!blocks.is_empty());
    // Each block needs a WAN round trip or more: no interval is below the latency floor.
    assert!(blocks.iter().all(|ms| *ms >= 50), "{blocks:?}");
    let p50 = percentile(&mut blocks, 50);
    let latencies = validation_latencies(&o);
    assert!(!latencies.is_empty(), "no job was checked");
    eprintln!(
        "7 validators + 9 providers: {} blocks, block time p50 {p50} ms, {} validation latencies",
        o.height,
        latencies.len()
    );
}

/// The bytes of one gossiped advert: a signed `CapacityAdvert` of a provider serving two
/// models, with realistic figures.
fn advert_bytes() -> usize {
    use attest_protocol::advert::CapacityAdvert;
    use attest_protocol::{
        Amount, BoundedVec, Canonical, ChainId, DeviceName, ModelId, SecretKey, Signed,
    };
    let key = SecretKey::from_seed([9; 32]);
    let models = ["attest-tiny-1b", "attest-base-8b"].map(|m| ModelId::new(m).unwrap());
    let advert = CapacityAdvert {
        node: SecretKey::from_seed([10; 32]).public(),
        device: DeviceName::new("h100-sxm").unwrap(),
        models: BoundedVec::new(models.to_vec()).unwrap(),
        free_slots: 91,
        price_per_token: Amount(150),
        tokens_per_sec_milli: 3_333_200,
        expires_at_ms: 1_796_490_506_768,
        seq: 1_796_490_486_768,
    };
    let chain = ChainId::new("attest-mainnet").unwrap();
    Signed::sign(&chain, &key, advert).encode().len()
}

#[test]
#[ignore = "minutes in release: the scaling table for docs/SCALING.md"]
fn scaling_table() {
    eprintln!("one signed advert: {} bytes", advert_bytes());
    let sizes = std::env::var("ATTEST_SCALE").unwrap_or_else(|_| "4:0,25:0,50:0,100:0".into());
    eprintln!(
        "| validators | providers | blocks | block time p50 | p90 | validation latency p50 | p90 | gossip deliveries per block |"
    );
    eprintln!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for size in sizes.split(',') {
        let (v, p) = size.split_once(':').expect("V:P");
        let (v, p): (usize, usize) = (v.parse().unwrap(), p.parse().unwrap());
        let started = std::time::Instant::now();
        let o = run(wide(11, v, p, 20, 20));
        let mut blocks = intervals(&o);
        let mut latencies = validation_latencies(&o);
        eprintln!(
            "| {v} | {p} | {} | {} ms | {} ms | {} ms | {} ms | {} |   ({:.0} s to simulate)",
            o.height,
            percentile(&mut blocks, 50),
            percentile(&mut blocks, 90),
            percentile(&mut latencies, 50),
            percentile(&mut latencies, 90),
            o.stats.gossip_delivered / o.height.max(1),
            started.elapsed().as_secs_f64()
        );
    }
}
