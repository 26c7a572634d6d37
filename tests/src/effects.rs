//! What happens at each step of a run: an event is delivered or a node's effects are carried
//! out.
//!
//! This module owns the translation between cores and the network: gossip delivery, sync
//! requests served from the target's store and answered through the same faulty links (a
//! lost or unanswered request fails after the sync timeout, as in the shell), effects carried
//! out strictly in order per node (a vote or block is in the store before anything after it
//! happens), Byzantine tampering with what a node sends, scheduled faults, client traffic and
//! garbage. After every input to a node, the node's new height is checked.

use std::rc::Rc;

use attest_core::topic;
use attest_core::wire::ConsensusMessage;
use attest_core::{Effect, GossipVerdict, NodeCore, PeerKey, Persist, host};
use attest_protocol::{Canonical, Height};

use crate::byzantine;
use crate::network::{BOGUS_TOPIC, Event};
use crate::scenario::{Fault, Role};
use crate::sim::{Sim, peer};

/// Real messages a garbage node keeps to forge from.
const RECENT: usize = 16;

impl Sim {
    /// Handles the next queued event.
    pub(crate) fn on_event(&mut self) {
        let Some((_, event)) = self.queue.pop() else {
            return;
        };
        match event {
            Event::Gossip {
                to,
                from,
                topic,
                data,
                forged,
            } => self.deliver_gossip(to, from, topic, data, forged),
            Event::SyncRequest {
                to,
                from,
                epoch,
                data,
            } => self.serve_request(to, from, epoch, &data),
            Event::SyncResponse {
                to,
                from,
                epoch,
                data,
            } => self.deliver_response(to, from, epoch, data),
            Event::Fault(fault) => self.apply_fault(fault),
            Event::ClientTick => self.client_tick(),
            Event::JobTick => self.job_tick(),
            Event::JobDone {
                to,
                epoch,
                run,
                outcome,
            } => self.job_done(to, epoch, *run, outcome),
            Event::GarbageTick { node } => self.garbage_tick(node),
        }
    }

    fn deliver_gossip(
        &mut self,
        to: usize,
        from: usize,
        topic: &'static str,
        data: Rc<Vec<u8>>,
        forged: bool,
    ) {
        if !self.net.connected(from, to) {
            return;
        }
        let now = self.now;
        let node = &mut self.nodes[to];
        let Some(core) = node.core.as_mut() else {
            return;
        };
        self.trace.u64(((to as u64) << 8) | from as u64);
        self.trace.u64(data.len() as u64);
        let verdict = core.handle_gossip(now, &peer(from), topic, &data);
        self.stats.gossip_delivered += 1;
        if forged {
            self.stats.forged_delivered += 1;
            if verdict == GossipVerdict::Accept {
                self.stats.forged_accepted += 1;
                if self.verbose {
                    eprintln!(
                        "node {to} accepted forged {topic} {:?}",
                        ConsensusMessage::decode(&data)
                    );
                }
            }
        } else if node.role == Role::Garbage {
            if node.recent.len() == RECENT {
                node.recent.pop_front();
            }
            node.recent.push_back((topic, data));
        }
        self.after_input(to);
    }

    fn serve_request(&mut self, to: usize, from: usize, epoch: u64, data: &[u8]) {
        let fail = |sim: &mut Self| {
            sim.stats.sync_failures += 1;
            let at = sim.net.failure_at(sim.now);
            sim.queue.push(at, response(from, to, epoch, None));
        };
        let target = &self.nodes[to];
        if target.core.is_none() || target.role == Role::Silent || !self.net.connected(to, from) {
            return fail(self);
        }
        // The shell answers a malformed request with empty bytes.
        let real = target
            .core
            .as_ref()
            .and_then(|c| host::serve_request(c, &target.store, data))
            .unwrap_or_default();
        let answer = if target.role == Role::Garbage && self.rng.chance(600_000) {
            byzantine::forge_sync_response(&mut self.rng, Some(&real))
        } else if target.role == Role::BadChunks {
            byzantine::corrupt_chunk(real)
        } else {
            real
        };
        match self.net.request_arrival(self.now, to, from) {
            Some(at) => self.queue.push(at, response(from, to, epoch, Some(answer))),
            None => fail(self),
        }
    }

    fn deliver_response(&mut self, to: usize, from: usize, epoch: u64, data: Option<Vec<u8>>) {
        let now = self.now;
        let node = &mut self.nodes[to];
        if node.epoch != epoch {
            return;
        }
        let Some(core) = node.core.as_mut() else {
            return;
        };
        self.trace
            .u64(0x5E + data.as_ref().map_or(0, |d| d.len() as u64));
        core.handle_response(now, &peer(from), data.as_deref());
        self.after_input(to);
    }

    /// After an input to node `i`: its effects, then the checks of its new state.
    pub(crate) fn after_input(&mut self, i: usize) {
        self.drain(i);
        self.check_node(i);
    }

    fn drain(&mut self, i: usize) {
        while let Some(effect) = self.nodes[i].core.as_mut().and_then(NodeCore::poll_effect) {
            if let Some(k) = self.nodes[i].torn {
                if k == 0 {
                    self.crash(i);
                    return;
                }
                self.nodes[i].torn = Some(k - 1);
            }
            self.carry_out(i, effect);
        }
    }

    fn check_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(core) = node.core.as_ref() else {
            return;
        };
        let chain = core.chain();
        let height = chain.height();
        if node.height == Some(height) {
            return;
        }
        if height.0 > 0 {
            self.checker.on_height(i, height, chain.state_root());
        }
        if let Err(e) = chain.state().check_invariants() {
            panic!("node {i}: contract invariant broken at height {height}: {e:?}");
        }
        node.height = Some(height);
        node.set = Some((height.next(), chain.validators().clone()));
    }

    fn carry_out(&mut self, i: usize, effect: Effect) {
        if self.verbose {
            eprintln!(
                "{:>7} node {i}: {}",
                self.now - crate::sim::START_MS,
                describe(&effect)
            );
        }
        // The checker sees what is made durable; the one effects host the node shell uses
        // makes it durable.
        match effect {
            Effect::Persist(what) => {
                match &what {
                    Persist::Vote(vote) => self.checker.on_persist_vote(i, vote),
                    Persist::Block(pair) => self.check_persisted_block(i, &pair.0, &pair.1),
                    Persist::Base(base) => {
                        self.check_persisted_block(i, &base.anchor, &base.certificate)
                    }
                    Persist::Lock(_) | Persist::History(_) => {}
                }
                if let Err(e) = host::persist(&mut self.nodes[i].store, &what) {
                    panic!("node {i}: persisting failed: {e}");
                }
            }
            Effect::Broadcast { topic, data } => self.broadcast(i, topic, data),
            // The accelerator computes now and answers after a simulated latency.
            Effect::RunJob(run) => {
                let outcome = run.execute().map_err(|e| e.to_string());
                let at = self.now + self.rng.range(20, 250);
                let epoch = self.nodes[i].epoch;
                self.queue.push(
                    at,
                    Event::JobDone {
                        to: i,
                        epoch,
                        run,
                        outcome,
                    },
                );
            }
            Effect::Request { peer, data } => self.request(i, &peer, data),
            Effect::Halt { reason, .. } => {
                // A halted node stops, as the real one does; every run asserts none did.
                self.stats.halts.push((i, reason));
                self.nodes[i].core = None;
            }
            Effect::Misbehaved { peer, .. } => {
                let accused = crate::sim::node_of(&peer, self.nodes.len());
                self.stats.misbehaviour_reports.push((i, accused));
            }
            Effect::Committed {
                height,
                hash,
                events,
                ..
            } => {
                self.checker.on_committed(i, height, hash);
                let every = self.scenario.snapshot_interval_blocks.max(1);
                if height.0.is_multiple_of(every) {
                    self.write_snapshot(i);
                }
                self.trace.u64(height.0);
                self.trace.bytes(hash.as_bytes());
                self.count_events(height, &events);
            }
        }
    }

    fn check_persisted_block(
        &mut self,
        i: usize,
        block: &attest_protocol::Block,
        cert: &attest_protocol::CommitCertificate,
    ) {
        let height = block.header.height;
        let own_set = self.nodes[i]
            .set
            .as_ref()
            .filter(|(h, _)| *h == height)
            .map(|(_, s)| s.clone());
        self.checker
            .on_persist_block(i, block, cert, own_set.as_ref());
    }

    /// Counts slashing events once per height (the first node to commit it reports them).
    fn count_events(&mut self, height: Height, events: &[attest_contracts_sim::Event]) {
        if self.counted_height >= height.0 {
            return;
        }
        self.counted_height = height.0;
        for e in events {
            match e {
                attest_contracts_sim::Event::Slashed {
                    reason: attest_contracts_sim::SlashReason::Equivocation { .. },
                    ..
                } => self.stats.evidence_committed += 1,
                attest_contracts_sim::Event::Jailed { .. } => self.stats.jailed += 1,
                _ => {}
            }
        }
    }

    fn broadcast(&mut self, i: usize, topic: &'static str, data: Vec<u8>) {
        let role = self.nodes[i].role;
        if role.is_honest()
            && topic == attest_core::topic::CONSENSUS
            && let Ok(ConsensusMessage::Vote(vote)) = ConsensusMessage::decode(&data)
        {
            self.checker.on_send_vote(i, &vote);
        }
        let chain = self.genesis.genesis.chain_id.clone();
        let key = self.nodes[i].key.clone();
        let extra = match role {
            Role::Silent => return,
            Role::EquivocatingProposer => byzantine::twin_proposal(&chain, &key, &data),
            Role::DoubleVoter | Role::RacingDoubleVoter => {
                byzantine::conflicting_vote(&chain, &key, &data)
            }
            Role::Honest | Role::Garbage | Role::BadChunks => None,
        };
        let data = Rc::new(data);
        let extra = extra.map(Rc::new);
        for to in (0..self.nodes.len()).filter(|to| *to != i) {
            match (&extra, role) {
                (None, _) => self.send_gossip(i, to, topic, data.clone(), false),
                (Some(other), Role::DoubleVoter) => {
                    // The conflicting vote follows the real one on the link.
                    for at in self.net.gossip_arrivals(self.now, i, to) {
                        let later = at + self.net.latency();
                        self.queue.push(at, gossip(to, i, topic, data.clone()));
                        self.queue.push(later, gossip(to, i, topic, other.clone()));
                    }
                }
                (Some(other), Role::RacingDoubleVoter) => {
                    self.send_gossip(i, to, topic, data.clone(), false);
                    self.send_gossip(i, to, topic, other.clone(), false);
                }
                (Some(other), _) => {
                    // An equivocating proposer shows some peers one block, some the other,
                    // some both.
                    let pick = self.rng.below(3);
                    if pick != 1 {
                        self.send_gossip(i, to, topic, data.clone(), false);
                    }
                    if pick != 0 {
                        self.send_gossip(i, to, topic, other.clone(), false);
                    }
                }
            }
        }
    }

    /// Sends one gossip message through the faulty network.
    pub(crate) fn send_gossip(
        &mut self,
        from: usize,
        to: usize,
        topic: &'static str,
        data: Rc<Vec<u8>>,
        forged: bool,
    ) {
        for at in self.net.gossip_arrivals(self.now, from, to) {
            let event = Event::Gossip {
                to,
                from,
                topic,
                data: data.clone(),
                forged,
            };
            self.queue.push(at, event);
        }
    }

    fn request(&mut self, i: usize, target: &PeerKey, data: Vec<u8>) {
        self.stats.sync_requests += 1;
        let epoch = self.nodes[i].epoch;
        let Some(to) = crate::sim::node_of(target, self.nodes.len()) else {
            panic!("node {i} asked an unknown peer {target:?}");
        };
        let arrival = if self.nodes[i].role == Role::Silent {
            None
        } else {
            self.net.request_arrival(self.now, i, to)
        };
        match arrival {
            Some(at) => {
                let event = Event::SyncRequest {
                    to,
                    from: i,
                    epoch,
                    data,
                };
                self.queue.push(at, event);
            }
            None => {
                self.stats.sync_failures += 1;
                let at = self.net.failure_at(self.now);
                self.queue.push(at, response(i, to, epoch, None));
            }
        }
    }

    fn apply_fault(&mut self, fault: Fault) {
        self.trace.bytes(format!("{fault:?}").as_bytes());
        match fault {
            Fault::Partition(groups) => self.net.partition(groups),
            Fault::Heal => self.net.heal(),
            Fault::Crash { node, torn: None } => self.crash(node),
            Fault::Crash {
                node,
                torn: Some(k),
            } => {
                if self.nodes[node].core.is_some() {
                    self.nodes[node].torn = Some(k);
                }
            }
            Fault::Join { node } => self.join(node),
            Fault::Restart { node } => {
                // A torn crash still waiting for effects happens now.
                if self.nodes[node].torn.is_some() {
                    self.crash(node);
                }
                if self.nodes[node].core.is_none() {
                    self.stats.restarts += 1;
                    self.open(node);
                }
            }
        }
    }

    /// A random running honest node, if any.
    fn random_honest(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].role.is_honest() && self.nodes[*i].core.is_some())
            .collect();
        (!up.is_empty()).then(|| up[self.rng.index(up.len())])
    }

    fn client_tick(&mut self) {
        let Some((lo, hi)) = self.scenario.tx_interval_ms else {
            return;
        };
        let next = self.now + self.rng.range(lo, hi);
        self.queue.push(next, Event::ClientTick);
        let Some(target) = self.random_honest() else {
            return;
        };
        let txs = self
            .clients
            .tick(self.now, &mut self.rng, self.checker.oracle().state());
        self.submit_to(target, txs);
    }

    /// A client's transactions handed to node `target`, then its effects.
    fn submit_to(&mut self, target: usize, txs: Vec<attest_protocol::SignedTx>) {
        let now = self.now;
        for tx in txs {
            self.stats.tx_submissions += 1;
            if let Some(core) = self.nodes[target].core.as_mut() {
                // Refusals (a duplicate, a stale nonce) are the client's problem, not a fault.
                let _ = core.submit_tx(now, tx);
            }
        }
        self.after_input(target);
    }

    /// A client opens a job with a random staked provider, through a random live node.
    fn job_tick(&mut self) {
        let Some(jobs) = self.scenario.jobs.clone() else {
            return;
        };
        if self.clients.jobs_opened() >= jobs.count {
            return;
        }
        let next = self.now + self.rng.range(jobs.interval_ms.0, jobs.interval_ms.1);
        self.queue.push(next, Event::JobTick);
        let Some(target) = self.random_honest() else {
            return;
        };
        let state = self.checker.oracle().state();
        // The node the client talks to is its gateway: it names a provider from its advert
        // book, whose terms go into the job.
        let now = self.now;
        let gateway = self.nodes[target].core.as_mut();
        let mut pick = self.rng.next_u64();
        let quote = |client| {
            if !jobs.via_gateway {
                let eligible: Vec<_> = state
                    .stakes()
                    .filter(|(a, s)| {
                        **a != client && s.can_serve(state.params().min_stake, jobs.model)
                    })
                    .map(|(a, _)| *a)
                    .collect();
                pick %= eligible.len().max(1) as u64;
                let provider = *eligible.get(pick as usize)?;
                let device = attest_protocol::DeviceName::new("h100-sxm").ok()?;
                return Some((provider, device, attest_protocol::Amount(100)));
            }
            let core = gateway?;
            let request = attest_core::market::Request {
                model: attest_protocol::ModelId::new(jobs.model).ok()?,
                max_price_per_token: attest_protocol::Amount(1_000),
                exclude: Some(client),
            };
            // The job's admission (`submit_tx`) takes the provider's slot, not the quote.
            let offer = core.quote(now, &request).ok()?;
            Some((offer.provider, offer.device, offer.price_per_token))
        };
        let txs = self
            .clients
            .tick_job(self.now, &mut self.rng, state, quote, &jobs);
        self.submit_to(target, txs);
    }

    /// A node's accelerator hands back a job, unless the node crashed since it started.
    fn job_done(
        &mut self,
        to: usize,
        epoch: u64,
        run: attest_core::market::JobRun,
        outcome: Result<attest_protocol::workload::Execution, String>,
    ) {
        let now = self.now;
        let node = &mut self.nodes[to];
        if node.epoch != epoch {
            return;
        }
        let Some(core) = node.core.as_mut() else {
            return;
        };
        self.trace.bytes(run.job.as_bytes());
        core.handle_job_done(now, run.job, run.purpose, outcome);
        self.after_input(to);
    }

    fn garbage_tick(&mut self, node: usize) {
        let next = self.now + self.rng.range(20, 150);
        self.queue.push(next, Event::GarbageTick { node });
        if self.nodes[node].core.is_none() {
            return;
        }
        let n = self.nodes.len();
        let to = (node + 1 + self.rng.index(n - 1)) % n;
        let recent = &self.nodes[node].recent;
        let real = (!recent.is_empty()).then(|| recent[self.rng.index(recent.len())].clone());
        let topics = [
            topic::TXS,
            topic::TX_BATCHES,
            topic::CONSENSUS,
            topic::ADVERTS,
            BOGUS_TOPIC,
        ];
        let rng = &mut self.rng;
        let forged = match (rng.below(6), real) {
            (1, Some((t, d))) => byzantine::flip_signature(rng, t, &d).map(|f| (t, f)),
            (2, Some((t, d))) => byzantine::tamper_body(rng, t, &d).map(|f| (t, f)),
            (3, Some((t, d))) => byzantine::far_future_vote(rng, &d).map(|f| (t, f)),
            (4, Some((t, d))) => Some((t, byzantine::mangle_length(rng, &d))),
            (5, _) => {
                // A junk sync request, answered straight from the target's store.
                let junk = byzantine::junk(rng);
                let node = &self.nodes[to];
                if let Some(core) = node.core.as_ref() {
                    let _ = host::serve_request(core, &node.store, &junk);
                }
                None
            }
            _ => Some((topics[rng.index(topics.len())], byzantine::junk(rng))),
        };
        if let Some((t, data)) = forged {
            self.send_gossip(node, to, t, Rc::new(data), true);
        }
    }
}

/// A one-line account of an effect, for verbose runs.
fn describe(effect: &Effect) -> String {
    match effect {
        Effect::Persist(Persist::Vote(v)) => format!("persist vote {:?}", v.body),
        Effect::Persist(Persist::Lock(l)) => format!("persist lock {:?}", l.slot()),
        Effect::Persist(Persist::Block(b)) => format!("persist block {}", b.0.header.height),
        Effect::Persist(Persist::History(h)) => format!("index history of {}", h.height),
        Effect::Persist(Persist::Base(b)) => format!("persist state-sync base {}", b.height),
        Effect::Misbehaved { peer, reason } => format!("report {peer:?}: {reason}"),
        Effect::Halt { reason, .. } => format!("halt: {reason}"),
        Effect::RunJob(r) => format!("run job {} for {:?}", r.job, r.purpose),
        Effect::Broadcast { topic, data } => match ConsensusMessage::decode(data) {
            Ok(ConsensusMessage::Vote(v)) => format!("send vote {:?}", v.body),
            Ok(ConsensusMessage::Proposal(p)) => {
                format!(
                    "send proposal h{} r{} {}",
                    p.body.height,
                    p.body.round,
                    p.body.block.hash()
                )
            }
            Ok(ConsensusMessage::Polka(c)) => {
                format!("send polka h{} r{} {}", c.height, c.round, c.block)
            }
            Err(_) => format!("send {} bytes on {topic}", data.len()),
        },
        Effect::Request { peer, .. } => format!("sync request to {peer:?}"),
        Effect::Committed {
            height, hash, txs, ..
        } => format!("committed {height} {hash} ({txs} txs)"),
    }
}

fn gossip(to: usize, from: usize, topic: &'static str, data: Rc<Vec<u8>>) -> Event {
    Event::Gossip {
        to,
        from,
        topic,
        data,
        forged: false,
    }
}

fn response(to: usize, from: usize, epoch: u64, data: Option<Vec<u8>>) -> Event {
    Event::SyncResponse {
        to,
        from,
        epoch,
        data,
    }
}
