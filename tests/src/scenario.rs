//! What one simulator run does: how many nodes and which of them misbehave, how the network
//! misbehaves, which partitions and crashes happen when, how much client traffic flows, and
//! what the run must reach. A [`Scenario`] is plain data; [`Scenario::random`] draws one
//! from a seed for the swarm test, and the builder methods compose targeted ones.

use attest_contracts_sim::Params;
use attest_core::market::MarketConfig;
use attest_protocol::DeviceName;
use attest_protocol::tx::{Capability, CheckLevel};

use crate::rng::Rng;

/// The most nodes a run can have (the wide scenarios: 100 validators and 1,000 providers).
pub const MAX_SIM_NODES: usize = 1_200;

/// How a node behaves. Every role runs a real `NodeCore` underneath; the Byzantine ones
/// tamper with what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Everything it sends is dropped (gossip, sync requests and sync answers).
    Silent,
    /// When it proposes, it also signs and gossips a second block for the same height and
    /// round (same transactions, a later time), each peer getting one, the other or both.
    EquivocatingProposer,
    /// For each of its votes it also signs and gossips a conflicting one (nil for a block,
    /// a made-up block for nil). On every link the conflicting vote arrives after the real
    /// one, so every peer counts the real vote and holds the other as evidence.
    DoubleVoter,
    /// Like [`Role::DoubleVoter`], but the two votes race: some peers count the conflicting
    /// one. The vote keeper counts only a validator's first vote, so a polka some nodes locked
    /// on may be invisible to others; polka certificates sent with re-proposals keep the height
    /// live (see `a_racing_double_voter_does_not_stall_the_height`).
    RacingDoubleVoter,
    /// Behaves honestly, but flips a bit in every state-sync chunk it serves (its manifest is
    /// honest, so the joining node can tell, and must fetch the chunk elsewhere).
    BadChunks,
    /// Behaves honestly, and also sends random bytes on every topic, real messages with a
    /// flipped signature bit or a tampered body, far-future forged votes, junk sync requests,
    /// and answers sync requests with junk or forged blocks.
    Garbage,
}

impl Role {
    /// Whether the role follows the protocol.
    pub fn is_honest(self) -> bool {
        self == Role::Honest
    }
}

/// Message-level faults of the network, in effect for the whole run.
#[derive(Debug, Clone)]
pub struct NetFaults {
    /// Latency of a message, uniform in this range (ms).
    pub latency_ms: (u64, u64),
    /// Chance (ppm) that a message is slow: it gets up to `slow_extra_ms` more, which
    /// reorders it behind later ones.
    pub slow_ppm: u32,
    /// The most extra delay of a slow message (ms).
    pub slow_extra_ms: u64,
    /// Chance (ppm) that a message (gossip, sync request or sync answer) is lost.
    pub drop_ppm: u32,
    /// Chance (ppm) that a gossip message is delivered twice.
    pub dup_ppm: u32,
    /// A sync request with no answer fails after this long (the shell's request timeout).
    pub sync_timeout_ms: u64,
}

impl Default for NetFaults {
    fn default() -> Self {
        Self {
            latency_ms: (2, 40),
            slow_ppm: 0,
            slow_extra_ms: 0,
            drop_ppm: 0,
            dup_ppm: 0,
            sync_timeout_ms: 1_500,
        }
    }
}

/// A scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Split the nodes: `groups[i]` is node `i`'s group; only nodes of one group talk.
    Partition(Vec<u8>),
    /// Everyone talks again.
    Heal,
    /// The node loses its process and keeps only its store. A torn crash happens in the
    /// middle of carrying out the node's next batch of effects (after `torn` of them), e.g.
    /// after a vote is persisted but before it is sent.
    Crash {
        /// The node.
        node: usize,
        /// Crash after this many of the next effects, or at once if `None`.
        torn: Option<u8>,
    },
    /// The node opens its store again.
    Restart {
        /// The node.
        node: usize,
    },
    /// A node that was not started (see [`Scenario::join_late`]) starts with an empty store
    /// and joins by state sync, trusting the head of the highest honest node.
    Join {
        /// The node.
        node: usize,
    },
}

/// One simulator run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Each node's role; the length is the number of nodes (all of them validators with
    /// equal stake).
    pub roles: Vec<Role>,
    /// Message-level faults.
    pub net: NetFaults,
    /// Faults at times (ms after the start), in time order.
    pub faults: Vec<(u64, Fault)>,
    /// Funded client accounts sending transfers.
    pub clients: usize,
    /// Time between client submissions, uniform in this range (ms); `None` for no traffic.
    pub tx_interval_ms: Option<(u64, u64)>,
    /// Every honest node must reach at least this height.
    pub target_height: u64,
    /// After the last fault, honest nodes must each commit this many more blocks ...
    pub liveness_blocks: u64,
    /// ... within this much virtual time (ms).
    pub liveness_budget_ms: u64,
    /// The contract parameters of the genesis.
    pub params: Params,
    /// Each node's market settings (its cheats, in the market scenarios).
    pub markets: Vec<MarketConfig>,
    /// Jobs the clients open, if any.
    pub jobs: Option<JobTraffic>,
    /// Nodes not started at the start: each joins by state sync at its [`Fault::Join`].
    pub late: Vec<usize>,
    /// Blocks between the snapshots nodes offer for state sync.
    pub snapshot_interval_blocks: u64,
    /// The device each node's stake binds (nodes past the list's end: [`big_device`]).
    pub devices: Vec<Capability>,
    /// The nodes' idle block interval, if not the simulator's default (800 ms).
    pub idle_block_interval_ms: Option<u64>,
}

/// A device whose memory holds every catalogue model (a 256 GB server).
pub fn big_device() -> Capability {
    Capability {
        device: DeviceName::new("cpu").expect("a device name"),
        memory_bytes: 256_000_000_000,
    }
}

/// An 80 GB device: the 1B and 8B models fit, the 70B one does not.
pub fn small_device() -> Capability {
    Capability {
        device: DeviceName::new("h100-sxm").expect("a device name"),
        memory_bytes: 80_000_000_000,
    }
}

/// A stream of jobs from the clients to random providers.
#[derive(Debug, Clone)]
pub struct JobTraffic {
    /// Time between job openings, uniform in this range (ms).
    pub interval_ms: (u64, u64),
    /// How many jobs to open in all.
    pub count: u64,
    /// The model.
    pub model: &'static str,
    /// Input bytes per job, uniform in this range.
    pub input_len: (u64, u64),
    /// Tokens per job.
    pub max_tokens: u32,
    /// Milliseconds of block time the provider has to commit.
    pub deadline_ms: u32,
    /// The assurance the clients buy.
    pub check: CheckLevel,
    /// Whether the client's gateway picks the provider from its advert book (best reputation
    /// and price first), or the client picks any eligible provider at random (so a cheater
    /// that the market would shun still gets work, and can be caught again).
    pub via_gateway: bool,
}

impl Default for JobTraffic {
    fn default() -> Self {
        Self {
            interval_ms: (100, 400),
            count: 40,
            model: "attest-tiny-1b",
            input_len: (4, 24),
            max_tokens: 8,
            deadline_ms: 15_000,
            check: CheckLevel::Random,
            via_gateway: true,
        }
    }
}

impl Scenario {
    /// `n` honest validators on a slightly slow but lossless network, with client traffic.
    pub fn honest(seed: u64, n: usize) -> Self {
        assert!((4..=10).contains(&n), "4 to 10 nodes");
        Self {
            seed,
            roles: vec![Role::Honest; n],
            net: NetFaults::default(),
            faults: Vec::new(),
            clients: 3,
            tx_interval_ms: Some((200, 1_200)),
            target_height: 8,
            liveness_blocks: 4,
            liveness_budget_ms: 60_000,
            params: Params::default(),
            markets: vec![
                MarketConfig {
                    serve: true,
                    ..MarketConfig::default()
                };
                n
            ],
            jobs: None,
            late: Vec::new(),
            snapshot_interval_blocks: 10,
            devices: Vec::new(),
            idle_block_interval_ms: None,
        }
    }

    /// A wide network: `validators` validators and `providers` more staked nodes outside the
    /// validator set (`max_validators`), every one serving jobs, on a WAN: each message takes
    /// 50 to 150 ms. Client transfers flow; no faults.
    pub fn wide(seed: u64, validators: usize, providers: usize) -> Self {
        let n = validators + providers;
        assert!(
            (4..=MAX_SIM_NODES).contains(&n) && validators >= 4,
            "4 to {} nodes, at least 4 validators",
            MAX_SIM_NODES
        );
        let mut s = Self::honest(seed, 4);
        s.roles = vec![Role::Honest; n];
        s.markets = vec![
            MarketConfig {
                serve: true,
                ..MarketConfig::default()
            };
            n
        ];
        s.params.max_validators = u32::try_from(validators).expect("validators fit the parameter");
        s.net.latency_ms = (50, 150);
        s
    }

    /// Node `node` starts only at `at`, with an empty store, and joins by state sync.
    pub fn join_late(mut self, at: u64, node: usize) -> Self {
        self.late.push(node);
        self.fault(at, Fault::Join { node })
    }

    /// Gives node `i` a role.
    pub fn role(mut self, i: usize, role: Role) -> Self {
        self.roles[i] = role;
        self
    }

    /// Adds a fault at `at` ms.
    pub fn fault(mut self, at: u64, fault: Fault) -> Self {
        self.faults.push((at, fault));
        self.faults.sort_by_key(|(t, _)| *t);
        self
    }

    /// Partitions into `groups` at `at` for `duration` ms.
    pub fn partition(self, at: u64, groups: Vec<u8>, duration: u64) -> Self {
        self.fault(at, Fault::Partition(groups))
            .fault(at + duration, Fault::Heal)
    }

    /// Crashes `node` at `at` (torn after `torn` effects if given) and restarts it `down` ms
    /// later.
    pub fn crash(self, at: u64, node: usize, torn: Option<u8>, down: u64) -> Self {
        self.fault(at, Fault::Crash { node, torn })
            .fault(at + down, Fault::Restart { node })
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.roles.len()
    }

    /// Whether there are no nodes (never, for a valid scenario).
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// The most nodes that may be faulty: fewer than a third of the (equal) stake.
    pub fn max_faulty(&self) -> usize {
        (self.len() - 1) / 3
    }

    /// When the last scheduled fault happens (ms after the start).
    pub fn calm_at(&self) -> u64 {
        self.faults.last().map_or(0, |(t, _)| *t)
    }

    /// A random scenario for `seed`: 4 to 7 nodes, up to a third of them Byzantine (any role
    /// but [`Role::RacingDoubleVoter`], which stalls the chain: a known bug), random message
    /// loss, duplication and reordering, and a few partitions and crashes (each healed or
    /// restarted) within the first 6 s.
    pub fn random(seed: u64) -> Self {
        let mut rng = Rng::fork(seed, 0x5CE7);
        let n = [4, 4, 4, 4, 5, 5, 6, 7][rng.index(8)];
        let mut s = Self::honest(seed, n);
        s.net = random_net(&mut rng);
        let byzantine = rng.index(s.max_faulty() + 1);
        for _ in 0..byzantine {
            let i = rng.index(n);
            let role = [
                Role::Silent,
                Role::EquivocatingProposer,
                Role::DoubleVoter,
                Role::Garbage,
            ][rng.index(4)];
            s.roles[i] = role;
        }
        let phase = rng.range(1_000, 6_000);
        for _ in 0..rng.index(3) {
            let at = rng.below(phase);
            let groups = random_groups(&mut rng, n);
            s = s.partition(at, groups, rng.range(200, 4_000));
        }
        for _ in 0..rng.index(3) {
            let at = rng.below(phase);
            let torn = rng.chance(500_000).then(|| rng.below(4) as u8);
            s = s.crash(at, rng.index(n), torn, rng.range(50, 4_000));
        }
        s.target_height = rng.range(3, 8);
        s.liveness_blocks = 3;
        s
    }
}

fn random_net(rng: &mut Rng) -> NetFaults {
    let lo = rng.range(1, 10);
    NetFaults {
        latency_ms: (lo, lo + rng.range(5, 80)),
        slow_ppm: rng.below(50_000) as u32,
        slow_extra_ms: rng.range(50, 600),
        drop_ppm: rng.below(200_000) as u32,
        dup_ppm: rng.below(100_000) as u32,
        sync_timeout_ms: rng.range(500, 2_000),
    }
}

/// Two groups, or a single isolated node, or three groups; never all in one group.
pub fn random_groups(rng: &mut Rng, n: usize) -> Vec<u8> {
    loop {
        let groups: Vec<u8> = match rng.below(3) {
            0 => {
                let lone = rng.index(n);
                (0..n).map(|i| u8::from(i == lone)).collect()
            }
            1 => (0..n).map(|_| rng.below(2) as u8).collect(),
            _ => (0..n).map(|_| rng.below(3) as u8).collect(),
        };
        if groups.iter().any(|g| *g != groups[0]) {
            return groups;
        }
    }
}
