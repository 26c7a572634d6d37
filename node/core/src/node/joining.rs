//! Joining by state sync, and offering snapshots to nodes that join: the glue between
//! [`crate::statesync::StateSync`] and the rest of the core.

use attest_chain::statesync::{Manifest, SyncSnapshot, restore};
use attest_protocol::{Bytes, Canonical};

use super::{Base, Effect, NodeCore, PeerKey, Persist, Timer};
use crate::statesync::{Fetched, Step};
use crate::wire::{ChunkRequest, ChunkResponse, MAX_OFFERS, Response};

impl NodeCore {
    /// Whether the node is still joining by state sync, and what it is doing.
    pub fn state_sync_phase(&self) -> Option<&'static str> {
        self.ledger.statesync.as_ref().map(|s| s.phase())
    }

    /// The newest snapshot this node offers, if any (a host may keep it as a restart point).
    pub fn served_snapshot(&self) -> Option<&SyncSnapshot> {
        self.ledger.served.back().map(|(_, s)| s)
    }

    /// The manifest of the newest snapshot this node offers, if any.
    pub fn offered_snapshot(&self) -> Option<&Manifest> {
        self.ledger.served.back().map(|(_, s)| &s.manifest)
    }

    /// A peer connected: a joining node asks it for snapshots.
    pub fn peer_connected(&mut self, now_ms: u64, peer: &PeerKey) {
        self.peer_met(now_ms, peer);
    }

    pub(super) fn peer_met(&mut self, now_ms: u64, peer: &PeerKey) {
        if let Some(sync) = &mut self.ledger.statesync {
            let steps = sync.on_peer(peer);
            self.run_sync_steps(now_ms, steps);
        }
    }

    pub(super) fn on_statesync_timer(&mut self, now_ms: u64) {
        if let Some(sync) = &mut self.ledger.statesync {
            let steps = sync.on_timer(now_ms);
            self.run_sync_steps(now_ms, steps);
        }
    }

    /// Routes a state-sync answer; `false` if the node is not joining.
    pub(super) fn on_sync_answer(
        &mut self,
        now_ms: u64,
        from: &PeerKey,
        answer: SyncAnswer,
    ) -> bool {
        let Some(sync) = &mut self.ledger.statesync else {
            return false;
        };
        let steps = match answer {
            SyncAnswer::Offers(offers) => sync.on_offers(now_ms, from, offers),
            SyncAnswer::Blocks(blocks) => sync.on_blocks(from, blocks),
            SyncAnswer::Chunk(c) => {
                let chunk = c.chunk.map(Bytes::into_vec);
                sync.on_chunk(from, c.manifest, c.index, chunk)
            }
            SyncAnswer::Failed => sync.on_failure(from),
        };
        self.run_sync_steps(now_ms, steps);
        true
    }

    fn run_sync_steps(&mut self, now_ms: u64, steps: Vec<Step>) {
        let mut queue = std::collections::VecDeque::from(steps);
        while let Some(step) = queue.pop_front() {
            match step {
                Step::Ask(peer, request) => self.effects.push_back(Effect::Request {
                    peer,
                    data: request.encode(),
                }),
                Step::Misbehaved(peer, reason) => {
                    tracing::warn!(peer = ?peer, %reason, "state sync: peer misbehaved");
                    self.effects.push_back(Effect::Misbehaved { peer, reason });
                }
                Step::Wake(at) => {
                    if let Some(old) = self.ledger.statesync_timer.take() {
                        self.timers.remove(&old);
                    }
                    self.ledger.statesync_timer = Some(self.arm(at, Timer::StateSync));
                }
                Step::Ready(fetched) => queue.extend(self.finish_sync(now_ms, *fetched)),
            }
        }
    }

    /// Restores the chain from a finished fetch and commits the anchor; on any failure the
    /// state sync goes on without what failed.
    fn finish_sync(&mut self, now_ms: u64, f: Fetched) -> Vec<Step> {
        let id = f.manifest.id();
        let chain_id = self.ledger.chain.chain_id().clone();
        let mut chain = match restore(&chain_id, &f.manifest, &f.chunks, &f.anchor) {
            Ok(chain) => chain,
            Err(e) => {
                let why = format!("its snapshot does not restore: {e}");
                return match &mut self.ledger.statesync {
                    Some(sync) => sync.on_restore_failed(now_ms, id, &why),
                    None => Vec::new(),
                };
            }
        };
        let applied = match chain.check_committed(&f.anchor, &f.certificate) {
            Ok(applied) => applied,
            Err(e) => {
                // The anchor is the trusted chain's block; only its certificate can be wrong,
                // and that came from the peer that sent the block.
                let why = format!("the anchor's certificate does not verify: {e}");
                return match &mut self.ledger.statesync {
                    Some(sync) => sync.on_bad_anchor(&f.anchor_from, &why),
                    None => Vec::new(),
                };
            }
        };
        let height = f.manifest.height;
        tracing::info!(
            height = height.0,
            "state sync: snapshot restored and anchored"
        );
        self.ledger.statesync = None;
        if let Some(old) = self.ledger.statesync_timer.take() {
            self.timers.remove(&old);
        }
        let snapshot = SyncSnapshot {
            manifest: f.manifest,
            chunks: f.chunks,
        };
        self.effects
            .push_back(Effect::Persist(Persist::Base(Box::new(Base {
                height,
                snapshot: snapshot.encode(),
                anchor: f.anchor.clone(),
                certificate: f.certificate.clone(),
            }))));
        self.ledger.offer(snapshot);
        self.ledger.chain = chain;
        let owed = self.market.duties.rescan(self.ledger.chain.state());
        self.carry_duties(now_ms, owed);
        self.commit(now_ms, f.anchor, f.certificate, applied);
        if let Some(peer) = f.peers.first() {
            self.request_sync(peer.clone());
        }
        Vec::new()
    }

    /// The answer to a request for our snapshot offers.
    pub(super) fn answer_offers(&self) -> Response {
        let offers = self
            .ledger
            .served
            .iter()
            .rev()
            .map(|(_, s)| s.manifest.clone())
            .take(MAX_OFFERS)
            .collect();
        Response::Snapshots(attest_protocol::BoundedVec::new(offers).unwrap_or_default())
    }

    /// The answer to a chunk request.
    pub(super) fn answer_chunk(&self, request: &ChunkRequest) -> Response {
        let chunk = self
            .ledger
            .served
            .iter()
            .find(|(id, _)| *id == request.manifest)
            .and_then(|(_, s)| s.chunks.get(request.index as usize))
            .and_then(|c| Bytes::new(c.clone()).ok());
        Response::Chunk(ChunkResponse {
            manifest: request.manifest,
            index: request.index,
            chunk,
        })
    }
}

/// A state-sync answer from a peer.
pub(super) enum SyncAnswer {
    Offers(Vec<Manifest>),
    Blocks(Vec<(attest_protocol::Block, attest_protocol::CommitCertificate)>),
    Chunk(ChunkResponse),
    Failed,
}
