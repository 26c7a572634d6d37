//! The deterministic simulator's test suite: a swarm of random seeds, and targeted runs for
//! message loss, partitions, crashes and each Byzantine behaviour.
//!
//! Every test runs several seeds (`ATTEST_SIM_SEEDS=N` runs N, `ATTEST_SIM_SEED=S` replays
//! one); a failure names its seed and the command that replays it. Each run checks the
//! invariants after every step (see `attest_tests::invariants`), liveness after its last
//! fault, and the honest nodes' agreement on every balance at the end.
//!
//! Tests that once caught a real failure of the node run the seed that showed it first
//! (`run_pinned`) and then more seeds; each says what went wrong and what fixed it.

use attest_contracts_sim::{SlashReason, StakeStatus};
use attest_tests::rng::Rng;
use attest_tests::runner::{run_pinned, run_seeds};
use attest_tests::scenario::{NetFaults, Role, Scenario};
use attest_tests::sim::{Outcome, run, validator_key};

/// Nodes for a targeted test's seed: 4 to 7.
fn nodes_for(seed: u64) -> usize {
    4 + Rng::fork(seed, 0xA11).index(4)
}

/// A lossy, duplicating, reordering network.
fn lossy() -> NetFaults {
    NetFaults {
        latency_ms: (1, 60),
        slow_ppm: 30_000,
        slow_extra_ms: 400,
        drop_ppm: 150_000,
        dup_ppm: 80_000,
        sync_timeout_ms: 1_000,
    }
}

fn transfers_committed(o: &Outcome) {
    let nonces: u64 = (0..3)
        .map(|c| {
            let account = attest_tests::clients::client_key(c).public();
            o.state.account(&account).nonce.0
        })
        .sum();
    assert!(
        nonces > 0,
        "no client transfer committed in {} blocks",
        o.height
    );
}

#[test]
fn swarm_of_random_seeds() {
    run_seeds("swarm_of_random_seeds", 200, Scenario::random, |_| {});
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    for seed in [3, 17, 29] {
        let mut scenario = Scenario::random(seed);
        if scenario.roles.iter().all(|r| r.is_honest()) {
            scenario = scenario.role(1, Role::Garbage);
        }
        let a = run(scenario.clone());
        let b = run(scenario);
        assert_eq!(
            a.chain_digest(),
            b.chain_digest(),
            "seed {seed}: chains differ"
        );
        assert_eq!(a.trace, b.trace, "seed {seed}: traces differ");
        assert_eq!(a.stats.steps, b.stats.steps, "seed {seed}");
    }
    let (a, b) = (run(Scenario::random(3)), run(Scenario::random(4)));
    assert_ne!(a.trace, b.trace, "different seeds, different runs");
}

#[test]
fn honest_nodes_agree_despite_message_loss() {
    run_seeds(
        "honest_nodes_agree_despite_message_loss",
        8,
        |seed| {
            let mut s = Scenario::honest(seed, nodes_for(seed));
            s.net = lossy();
            s.target_height = 10;
            s
        },
        transfers_committed,
    );
}

#[test]
fn partitions_heal_and_the_minority_catches_up() {
    run_seeds(
        "partitions_heal_and_the_minority_catches_up",
        8,
        |seed| {
            let n = nodes_for(seed);
            let mut rng = Rng::fork(seed, 0xBEEF);
            // A lone node cut off, then an even split nobody can decide in, then a random one.
            let lone = rng.index(n);
            let isolated = (0..n).map(|i| u8::from(i == lone)).collect();
            let halves = (0..n).map(|i| u8::from(i < n / 2)).collect();
            let random = attest_tests::scenario::random_groups(&mut rng, n);
            let mut s = Scenario::honest(seed, n)
                .partition(500, isolated, 3_000)
                .partition(4_000, halves, 2_000)
                .partition(6_500, random, rng.range(500, 3_000));
            s.net = NetFaults {
                drop_ppm: 50_000,
                ..lossy()
            };
            s.target_height = 10;
            s
        },
        transfers_committed,
    );
}

/// One node at a time crashes (some torn mid-effects, some down long enough to fall behind);
/// with `all_at_once`, every node crashes at 7 s as well.
fn crashes(seed: u64, all_at_once: bool) -> Scenario {
    let n = nodes_for(seed);
    let mut rng = Rng::fork(seed, 0xC4A5);
    let mut s = Scenario::honest(seed, n);
    for k in 0..4u64 {
        let torn = rng.chance(600_000).then(|| rng.below(4) as u8);
        s = s.crash(500 + k * 1_500, rng.index(n), torn, rng.range(30, 1_200));
    }
    if all_at_once {
        for i in 0..n {
            s = s.crash(7_000 + rng.below(50), i, None, rng.range(200, 600));
        }
    }
    s.net = NetFaults {
        drop_ppm: 30_000,
        ..lossy()
    };
    s.target_height = 10;
    // Snapshots every few blocks, so that restarts start from one.
    s.snapshot_interval_blocks = 3;
    s
}

#[test]
fn crashed_nodes_restart_from_their_stores() {
    run_seeds(
        "crashed_nodes_restart_from_their_stores",
        8,
        |seed| crashes(seed, false),
        transfers_committed,
    );
}

/// Validators holding at least a third of the stake lock on a block (precommit it) and then
/// crash, one at a time, before it commits. Fixed bug (regression seed 68: nodes 0 and 1 once
/// stayed locked on round 0's block of height 2 for good): the lock came back from the vote
/// log but the block did not, so nobody could propose it again. A validator now logs the
/// proposal and its polka with its precommit, and replays both into the driver on restart.
fn locked_validators_crash_one_at_a_time(seed: u64) -> Scenario {
    let mut rng = Rng::fork(seed, 77);
    let mut s = Scenario::honest(seed, 4);
    for k in 0..8u64 {
        let torn = rng.chance(500_000).then(|| rng.below(4) as u8);
        s = s.crash(200 + k * 900, rng.index(4), torn, rng.range(20, 800));
    }
    s.net = NetFaults {
        latency_ms: (1, 60),
        drop_ppm: 50_000,
        ..NetFaults::default()
    };
    s
}

#[test]
fn locked_validators_that_crash_one_at_a_time_recover_their_lock() {
    let name = "locked_validators_that_crash_one_at_a_time_recover_their_lock";
    run_pinned(
        name,
        68,
        locked_validators_crash_one_at_a_time,
        transfers_committed,
    );
    run_seeds(
        name,
        8,
        locked_validators_crash_one_at_a_time,
        transfers_committed,
    );
}

/// The same, more directly: every node crashes at once while some are locked (regression seed
/// 2: six nodes once stayed at height 10).
#[test]
fn every_node_crashing_while_locked_recovers() {
    let name = "every_node_crashing_while_locked_recovers";
    // Every node restarts after 7 s, past the first snapshots: some start from one.
    let check = |o: &Outcome| {
        transfers_committed(o);
        assert!(o.stats.snapshot_restarts > 0, "no restart used a snapshot");
    };
    run_pinned(name, 2, |seed| crashes(seed, true), check);
    run_seeds(name, 8, |seed| crashes(seed, true), check);
}

#[test]
fn a_restart_in_the_middle_of_a_height_keeps_its_votes() {
    // Torn right after the first effect of the node's next batch: typically a vote is in the
    // log but not yet sent, and the node comes back while the others are still deciding.
    run_seeds(
        "a_restart_in_the_middle_of_a_height_keeps_its_votes",
        10,
        |seed| {
            let n = nodes_for(seed);
            let mut rng = Rng::fork(seed, 0x0DD);
            let mut s = Scenario::honest(seed, n);
            for k in 0..6u64 {
                let node = rng.index(n);
                s = s.crash(
                    300 + k * 700,
                    node,
                    Some(rng.below(2) as u8),
                    rng.range(5, 150),
                );
            }
            s.target_height = 8;
            s
        },
        |_| {},
    );
}

fn with_byzantine(seed: u64, role: Role) -> Scenario {
    let n = nodes_for(seed);
    let mut s = Scenario::honest(seed, n).role(0, role);
    if n >= 7 {
        // Two of seven may be faulty: add a second of the same kind.
        s = s.role(3, role);
    }
    s.net = NetFaults {
        drop_ppm: 50_000,
        dup_ppm: 50_000,
        ..lossy()
    };
    s.target_height = 10;
    s
}

#[test]
fn an_equivocating_proposer_cannot_split_the_chain() {
    run_seeds(
        "an_equivocating_proposer_cannot_split_the_chain",
        8,
        |seed| with_byzantine(seed, Role::EquivocatingProposer).crash(2_000, 1, None, 500),
        transfers_committed,
    );
}

#[test]
fn a_double_voter_is_slashed_and_jailed() {
    run_seeds(
        "a_double_voter_is_slashed_and_jailed",
        8,
        |seed| with_byzantine(seed, Role::DoubleVoter),
        |o| {
            let offender = validator_key(0).public();
            let stake = o
                .state
                .stake(&offender)
                .expect("the offender still has a stake entry");
            assert_eq!(stake.status, StakeStatus::Jailed, "double voter not jailed");
            assert!(
                o.slashes.iter().any(|(who, reason)| *who == offender
                    && matches!(reason, SlashReason::Equivocation { .. })),
                "no equivocation slash of the double voter"
            );
            assert!(o.stats.evidence_committed > 0 && o.stats.jailed > 0);
            transfers_committed(o);
        },
    );
}

#[test]
fn a_silent_validator_does_not_stop_the_others() {
    run_seeds(
        "a_silent_validator_does_not_stop_the_others",
        8,
        // While one honest node is down too, nobody decides; after its restart they must.
        |seed| with_byzantine(seed, Role::Silent).crash(2_000, 1, None, 800),
        transfers_committed,
    );
}

#[test]
fn garbage_and_forged_messages_change_nothing() {
    run_seeds(
        "garbage_and_forged_messages_change_nothing",
        8,
        |seed| with_byzantine(seed, Role::Garbage).crash(1_500, 2, None, 2_000),
        |o| {
            assert!(
                o.stats.forged_delivered > 10,
                "too little garbage: {:?}",
                o.stats
            );
            transfers_committed(o);
        },
    );
}

/// A double voter whose two votes race to its peers. Fixed bug (regression seed 5): the
/// driver's vote keeper counts only the first vote of a validator per round and kind, so
/// nodes that got the conflicting vote first never saw the polka others locked on, and the
/// height never ended. A proposer that re-proposes its locked block now sends the polka's
/// prevotes as a certificate, which the driver accepts in place of the votes it refused.
#[test]
fn a_racing_double_voter_does_not_stall_the_height() {
    let name = "a_racing_double_voter_does_not_stall_the_height";
    let make = |seed| with_byzantine(seed, Role::RacingDoubleVoter);
    run_pinned(name, 5, make, transfers_committed);
    run_seeds(name, 8, make, transfers_committed);
}

#[test]
fn ten_validators_with_three_byzantine_and_a_partition() {
    run_seeds(
        "ten_validators_with_three_byzantine_and_a_partition",
        2,
        |seed| {
            let mut rng = Rng::fork(seed, 0x10);
            let groups = attest_tests::scenario::random_groups(&mut rng, 10);
            let mut s = Scenario::honest(seed, 10)
                .role(2, Role::EquivocatingProposer)
                .role(5, Role::DoubleVoter)
                .role(8, Role::Garbage)
                .partition(1_000, groups, 1_500)
                .crash(3_000, 0, Some(1), 300);
            s.net = NetFaults {
                drop_ppm: 50_000,
                ..lossy()
            };
            s.target_height = 6;
            s
        },
        transfers_committed,
    );
}

/// Every honest validator that sees a double vote submits evidence; the first commits and the
/// contract refuses the rest as duplicates. NodeCore evicts, after each commit, every waiting
/// transaction the new state refuses (with its sender's later nonces), paces idle blocks by
/// what is ready for a block, and expires what no block takes (a nonce gap left behind by an
/// evicted predecessor). Fixed bug (regression seed 2): such leftovers once stayed forever.
#[test]
fn refused_evidence_leaves_the_mempools() {
    let name = "refused_evidence_leaves_the_mempools";
    let make = |seed| {
        let mut s = Scenario::honest(seed, 4).role(0, Role::DoubleVoter);
        s.tx_interval_ms = None;
        // Long enough past the last evidence for the simulator's 3 s mempool expiry.
        s.target_height = 16;
        s
    };
    let check = |o: &Outcome| {
        assert!(o.stats.evidence_committed > 0, "no evidence committed");
        assert!(
            o.mempools.iter().flatten().all(|n| *n == 0),
            "transactions left in mempools without any client traffic: {:?}",
            o.mempools
        );
    };
    run_pinned(name, 2, make, check);
    run_seeds(name, 6, make, check);
}
/// A copy of a vote a node already holds, with a flipped signature bit, must be refused, not
/// accepted as a duplicate: the shell's gossipsub forwards what is accepted, and peers that
/// verify it would penalise the honest forwarder. (A regression test: the duplicate check once
/// skipped verification.)
#[test]
fn forged_copies_of_known_votes_are_refused() {
    run_pinned(
        "forged_copies_of_known_votes_are_refused",
        1,
        |seed| with_byzantine(seed, Role::Garbage),
        |o| {
            assert_eq!(
                o.stats.forged_accepted, 0,
                "forged messages accepted: {:?}",
                o.stats
            )
        },
    );
}

/// A fifth validator starts late with an empty store and joins by state sync (trusting an
/// honest node's head), while the peer it asks first serves chunks with a flipped bit: it
/// reports that peer, fetches the chunk from another, restores the state, and keeps up with
/// the chain from then on (the liveness and agreement checks cover it like any honest node).
#[test]
fn a_late_node_joins_by_state_sync_despite_a_peer_serving_bad_chunks() {
    use attest_tests::sim::peer;
    let joiner = 4;
    // Chunks go to the peer with the smallest key first: make that one the liar.
    let bad = (0..joiner).min_by_key(|&i| peer(i)).unwrap();
    run_seeds(
        "a_late_node_joins_by_state_sync_despite_a_peer_serving_bad_chunks",
        6,
        |seed| {
            let mut s = Scenario::honest(seed, 5)
                .role(bad, Role::BadChunks)
                .join_late(12_000, joiner);
            s.snapshot_interval_blocks = 5;
            s.target_height = 20;
            s
        },
        |o| {
            assert!(
                o.bases[joiner] > 0,
                "the joiner's store starts at genesis: it did not state-sync"
            );
            assert!(
                o.stats.misbehaviour_reports.contains(&(joiner, Some(bad))),
                "the bad chunk server was not reported: {:?}",
                o.stats.misbehaviour_reports
            );
            assert!(
                o.stats
                    .misbehaviour_reports
                    .iter()
                    .all(|(_, accused)| *accused == Some(bad)),
                "an honest peer was reported: {:?}",
                o.stats.misbehaviour_reports
            );
            assert!(
                o.heights[joiner].unwrap_or(0) >= o.height,
                "the joiner lags"
            );
        },
    );
}
