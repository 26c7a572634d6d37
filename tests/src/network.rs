//! The simulated network: a virtual-time event queue and the faults between nodes.
//!
//! This module owns when a message arrives, if at all: every gossip message, sync request and
//! sync answer gets its own random latency (a few are slow, which reorders them), may be lost
//! or (gossip only) delivered twice, and never crosses a partition (checked when it is sent
//! and again when it would arrive). It decides nothing about what messages mean.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::rng::Rng;
use crate::scenario::{Fault, NetFaults};

/// A topic no node handles, for garbage.
pub const BOGUS_TOPIC: &str = "attest/bogus/1";

/// Something that happens at a virtual time.
#[derive(Debug, Clone)]
pub enum Event {
    /// A gossip message arrives at `to`.
    Gossip {
        /// The receiver.
        to: usize,
        /// The sender.
        from: usize,
        /// The topic.
        topic: &'static str,
        /// The bytes, shared between the copies sent to each peer.
        data: Rc<Vec<u8>>,
        /// Made up by a Byzantine node (tallied separately).
        forged: bool,
    },
    /// A sync request arrives at `to`.
    SyncRequest {
        /// The node asked.
        to: usize,
        /// The node asking.
        from: usize,
        /// The asker's incarnation: answers to an earlier process are not delivered.
        epoch: u64,
        /// The request bytes.
        data: Vec<u8>,
    },
    /// The outcome of a sync request arrives at `to`: an answer, or `None` if it failed.
    SyncResponse {
        /// The node that asked.
        to: usize,
        /// The node asked.
        from: usize,
        /// The asker's incarnation when it asked.
        epoch: u64,
        /// The answer.
        data: Option<Vec<u8>>,
    },
    /// A scheduled fault.
    Fault(Fault),
    /// A client submits a transaction.
    ClientTick,
    /// A client opens a job.
    JobTick,
    /// A node's accelerator finished a job.
    JobDone {
        /// The node.
        to: usize,
        /// Its incarnation when the job started: a crash loses the job.
        epoch: u64,
        /// The run.
        run: Box<attest_core::market::JobRun>,
        /// What it computed.
        outcome: Result<attest_protocol::workload::Execution, String>,
    },
    /// A garbage node sends some junk.
    GarbageTick {
        /// The garbage node.
        node: usize,
    },
}

/// Events ordered by (time, insertion order).
#[derive(Debug, Default)]
pub struct Queue {
    events: BTreeMap<(u64, u64), Event>,
    seq: u64,
}

impl Queue {
    /// Schedules `event` at `at`.
    pub fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    /// The time of the next event.
    pub fn next_at(&self) -> Option<u64> {
        self.events.keys().next().map(|(at, _)| *at)
    }

    /// Takes the next event.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        self.events.pop_first().map(|((at, _), e)| (at, e))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// The links between nodes: faults and the current partition.
#[derive(Debug)]
pub struct Network {
    faults: NetFaults,
    /// Each node's group; all zeros when healed.
    groups: Vec<u8>,
    rng: Rng,
}

impl Network {
    /// A healed network of `n` nodes.
    pub fn new(faults: NetFaults, n: usize, rng: Rng) -> Self {
        Self {
            faults,
            groups: vec![0; n],
            rng,
        }
    }

    /// The fault settings.
    pub fn faults(&self) -> &NetFaults {
        &self.faults
    }

    /// Partitions the nodes into `groups`.
    pub fn partition(&mut self, groups: Vec<u8>) {
        assert_eq!(groups.len(), self.groups.len(), "a group for every node");
        self.groups = groups;
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
    }

    /// Whether `a` and `b` can talk now.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.groups[a] == self.groups[b]
    }

    /// Whether the network is partitioned now.
    pub fn is_partitioned(&self) -> bool {
        self.groups.iter().any(|g| *g != self.groups[0])
    }

    /// One message's latency.
    pub fn latency(&mut self) -> u64 {
        let (lo, hi) = self.faults.latency_ms;
        let mut ms = self.rng.range(lo, hi);
        if self.rng.chance(self.faults.slow_ppm) {
            ms += self.rng.range(0, self.faults.slow_extra_ms);
        }
        ms.max(1)
    }

    /// Whether the next message is lost.
    pub fn lost(&mut self) -> bool {
        self.rng.chance(self.faults.drop_ppm)
    }

    /// When a gossip message sent now from `from` to `to` arrives: not at all, once or twice.
    pub fn gossip_arrivals(&mut self, now: u64, from: usize, to: usize) -> Vec<u64> {
        if !self.connected(from, to) || self.lost() {
            return Vec::new();
        }
        let mut out = vec![now + self.latency()];
        if self.rng.chance(self.faults.dup_ppm) {
            out.push(now + self.latency());
        }
        out
    }

    /// When a request or answer sent now from `from` to `to` arrives, or `None` if lost.
    pub fn request_arrival(&mut self, now: u64, from: usize, to: usize) -> Option<u64> {
        if !self.connected(from, to) || self.lost() {
            return None;
        }
        Some(now + self.latency())
    }

    /// When a failed request is reported to its sender.
    pub fn failure_at(&self, now: u64) -> u64 {
        now + self.faults.sync_timeout_ms
    }
}
