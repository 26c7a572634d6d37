//! State sync, the joining side: from a trusted block hash to a verified state, without
//! replaying the chain. Pure: it decides what to ask whom and what to believe; [`NodeCore`]
//! (`node::requests`) sends the requests and hands the answers in.
//!
//! 1. **Discover.** Every peer met is asked for its snapshot manifests. Offers are grouped by
//!    manifest id (honest nodes offer identical manifests for a height, see
//!    `attest_chain::statesync`). A short window after the first offer, the newest manifest
//!    below the trusted height is chosen, the one most peers offer among equals.
//! 2. **Anchor.** Blocks from the trusted height down to the manifest's height + 1 are fetched
//!    and linked by parent hash, newest first, starting from the trusted hash. Only the hash
//!    chain is checked here, which is what makes block `S + 1` (the anchor) trusted: its header
//!    carries the state root after `S`. A manifest whose head or root differs from the
//!    anchor's is refused before a chunk is fetched.
//! 3. **Chunks.** Chunks are fetched from the peers offering the manifest, a few at a time;
//!    each must hash to the manifest's hash for it. A peer that sends a wrong chunk is
//!    reported ([`Step::Misbehaved`]), never asked again, and the chunk is fetched from
//!    another peer.
//! 4. **Restore.** `attest_chain::statesync::restore` rebuilds the chain and checks the root,
//!    the anchor's certificate and the chain id. The core then commits the anchor as a normal
//!    block (its certificate checked under the restored validator set) and block-syncs the
//!    rest. A manifest whose chunks do not rebuild the root was a lie told by every peer that
//!    offered it: all of them are reported and the search starts again without it.
//!
//! Bounds: at most [`MAX_PEERS`] peers, [`MAX_TRACKED_OFFERS`] manifests and
//! [`MAX_REJECTED`] refused ids are remembered; chunks held are at most the chosen manifest's
//! (`attest_chain::statesync::MAX_CHUNKS` of at most 1 MiB).

use std::collections::{BTreeMap, BTreeSet};

use attest_chain::statesync::{Manifest, chunk_hash};
use attest_protocol::{Block, BlockHash, CommitCertificate, Hash, Height};

use crate::wire::{self, ChunkRequest, PeerKey, Request, SyncRequest};

/// The block a joining node trusts: given by its operator (`--trust-height`, `--trust-hash`),
/// read from a node they trust. It must be above some snapshot's height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    /// Its height.
    pub height: Height,
    /// Its hash.
    pub hash: BlockHash,
}

/// The most peers asked.
pub const MAX_PEERS: usize = 64;
/// The most distinct manifests remembered.
pub const MAX_TRACKED_OFFERS: usize = 16;
/// The most refused manifest ids remembered.
pub const MAX_REJECTED: usize = 64;
/// Chunk requests in flight at once (one per peer at most).
pub const MAX_IN_FLIGHT: usize = 4;
/// How long offers are collected after the first one (ms).
pub const DISCOVERY_MS: u64 = 1_000;
/// How long to wait before asking every peer again when nothing usable was offered (ms).
pub const RETRY_MS: u64 = 2_000;
/// Failed requests (no answer, or an answer that is no use) before a peer is dropped.
pub const MAX_STRIKES: u8 = 3;

/// What the core must do for the state sync.
#[derive(Debug)]
pub enum Step {
    /// Send `request` to `peer`.
    Ask(PeerKey, Request),
    /// `peer` sent something provably wrong.
    Misbehaved(PeerKey, String),
    /// Call [`StateSync::on_timer`] at this time (ms).
    Wake(u64),
    /// Every chunk is in and matches: restore from these (the core checks the rest).
    Ready(Box<Fetched>),
}

/// What a finished fetch hands the core.
#[derive(Debug)]
pub struct Fetched {
    /// The manifest.
    pub manifest: Manifest,
    /// Its chunks, each matching its hash.
    pub chunks: Vec<Vec<u8>>,
    /// Block `manifest.height + 1`, linked to the trusted hash, and its certificate.
    pub anchor: Block,
    /// The certificate the peer sent with it (checked when the anchor commits).
    pub certificate: CommitCertificate,
    /// The peer that sent the anchor and its certificate.
    pub anchor_from: PeerKey,
    /// The peers that offered the manifest, to block-sync from.
    pub peers: Vec<PeerKey>,
}

#[derive(Debug, Default)]
struct PeerState {
    asked: bool,
    strikes: u8,
    banned: bool,
    busy: bool,
}

#[derive(Debug)]
struct Offer {
    manifest: Manifest,
    peers: BTreeSet<PeerKey>,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for offers; `until` is the end of the window once one arrived.
    Discover { until: Option<u64> },
    /// Walking parent hashes down from the trusted block: the block at `expect.0` must hash
    /// to `expect.1`.
    Anchor {
        id: Hash,
        expect: (Height, BlockHash),
        asked: Option<PeerKey>,
    },
    /// Fetching chunks.
    Chunks {
        id: Hash,
        anchor: Box<(Block, CommitCertificate)>,
        anchor_from: PeerKey,
        chunks: Vec<Option<Vec<u8>>>,
        in_flight: BTreeMap<u32, PeerKey>,
    },
    /// Handed to the core.
    Done,
}

/// The joining side of state sync.
#[derive(Debug)]
pub struct StateSync {
    trust: Trust,
    peers: BTreeMap<PeerKey, PeerState>,
    offers: BTreeMap<Hash, Offer>,
    rejected: BTreeSet<Hash>,
    phase: Phase,
}

impl StateSync {
    /// Starts a sync towards `trust`.
    pub fn new(trust: Trust) -> Self {
        Self {
            trust,
            peers: BTreeMap::new(),
            offers: BTreeMap::new(),
            rejected: BTreeSet::new(),
            phase: Phase::Discover { until: None },
        }
    }

    /// What it is doing, for logs and the API.
    pub fn phase(&self) -> &'static str {
        match self.phase {
            Phase::Discover { .. } => "discovering snapshots",
            Phase::Anchor { .. } => "linking the snapshot to the trusted block",
            Phase::Chunks { .. } => "fetching chunks",
            Phase::Done => "restoring",
        }
    }

    /// A peer was met (connected, or heard on gossip): it is asked for its offers.
    pub fn on_peer(&mut self, peer: &PeerKey) -> Vec<Step> {
        if !self.peers.contains_key(peer) {
            if self.peers.len() >= MAX_PEERS {
                return Vec::new();
            }
            self.peers.insert(peer.clone(), PeerState::default());
        }
        let mut steps = Vec::new();
        self.ask_offers(peer, &mut steps);
        steps
    }

    fn ask_offers(&mut self, peer: &PeerKey, steps: &mut Vec<Step>) {
        if let Some(state) = self.peers.get_mut(peer)
            && !state.asked
            && !state.banned
        {
            state.asked = true;
            steps.push(Step::Ask(peer.clone(), Request::Snapshots));
        }
    }

    /// `peer`'s offers arrived.
    pub fn on_offers(&mut self, now_ms: u64, peer: &PeerKey, offers: Vec<Manifest>) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.usable(peer).is_none() {
            return steps;
        }
        for manifest in offers {
            // The anchor must be at or below the trusted block, and a snapshot at genesis has
            // no anchor certificate to check.
            if manifest.height.0 == 0
                || manifest.height.next() > self.trust.height
                || manifest.chunks.is_empty()
            {
                continue;
            }
            let id = manifest.id();
            if self.rejected.contains(&id) {
                continue;
            }
            if !self.offers.contains_key(&id) && self.offers.len() >= MAX_TRACKED_OFFERS {
                continue;
            }
            self.offers
                .entry(id)
                .or_insert_with(|| Offer {
                    manifest,
                    peers: BTreeSet::new(),
                })
                .peers
                .insert(peer.clone());
        }
        if let Phase::Discover {
            until: until @ None,
        } = &mut self.phase
            && !self.offers.is_empty()
        {
            let at = now_ms.saturating_add(DISCOVERY_MS);
            *until = Some(at);
            steps.push(Step::Wake(at));
        }
        steps
    }

    /// A timer set with [`Step::Wake`] fired.
    pub fn on_timer(&mut self, now_ms: u64) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Phase::Discover { until } = self.phase {
            match until {
                Some(at) if at <= now_ms => self.choose(now_ms, &mut steps),
                Some(_) => {}
                None => self.ask_again(now_ms, &mut steps),
            }
        }
        steps
    }

    fn ask_again(&mut self, now_ms: u64, steps: &mut Vec<Step>) {
        let peers: Vec<PeerKey> = self.peers.keys().cloned().collect();
        for peer in peers {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.asked = false;
            }
            self.ask_offers(&peer, steps);
        }
        steps.push(Step::Wake(now_ms.saturating_add(RETRY_MS)));
    }

    /// Picks the newest offer (most peers among equals) and starts linking it.
    fn choose(&mut self, now_ms: u64, steps: &mut Vec<Step>) {
        let best = self
            .offers
            .iter()
            .filter(|(_, o)| o.peers.iter().any(|p| self.usable(p).is_some()))
            .max_by_key(|(id, o)| (o.manifest.height, o.peers.len(), **id))
            .map(|(id, _)| *id);
        let Some(id) = best else {
            self.phase = Phase::Discover { until: None };
            self.ask_again(now_ms, steps);
            return;
        };
        self.phase = Phase::Anchor {
            id,
            expect: (self.trust.height, self.trust.hash),
            asked: None,
        };
        self.ask_anchor(steps);
    }

    fn usable(&self, peer: &PeerKey) -> Option<&PeerState> {
        self.peers.get(peer).filter(|s| !s.banned)
    }

    /// The next peer to ask for `id`'s data: one offering it, not banned, not busy, fewest
    /// strikes first.
    fn pick(&self, id: &Hash) -> Option<PeerKey> {
        let offer = self.offers.get(id)?;
        offer
            .peers
            .iter()
            .filter_map(|p| self.usable(p).map(|s| (s, p)))
            .filter(|(s, _)| !s.busy)
            .min_by_key(|(s, p)| (s.strikes, *p))
            .map(|(_, p)| p.clone())
    }

    fn ask_anchor(&mut self, steps: &mut Vec<Step>) {
        let Phase::Anchor { id, expect, .. } = &self.phase else {
            return;
        };
        let (id, top) = (*id, expect.0);
        let Some(offer) = self.offers.get(&id) else {
            return;
        };
        let target = offer.manifest.height.next();
        let Some(peer) = self.pick(&id) else {
            self.give_up_on(id, steps);
            return;
        };
        let span = wire::MAX_SYNC_BLOCKS as u64 - 1;
        let from = Height(top.0.saturating_sub(span).max(target.0));
        if let Phase::Anchor { asked, .. } = &mut self.phase {
            *asked = Some(peer.clone());
        }
        steps.push(Step::Ask(
            peer,
            Request::Sync(SyncRequest { from, to: top }),
        ));
    }

    /// Blocks arrived from `peer` (an answer to a [`Request::Sync`] this machine sent).
    pub fn on_blocks(
        &mut self,
        peer: &PeerKey,
        blocks: Vec<(Block, CommitCertificate)>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let Phase::Anchor { id, expect, asked } = &mut self.phase else {
            return steps;
        };
        if asked.as_ref() != Some(peer) {
            return steps;
        }
        *asked = None;
        let id = *id;
        let Some(target) = self.offers.get(&id).map(|o| o.manifest.height.next()) else {
            return steps;
        };
        let mut progressed = false;
        let mut anchor = None;
        for (block, certificate) in blocks.into_iter().rev() {
            if block.header.height > expect.0 {
                continue;
            }
            if block.header.height < expect.0 {
                break;
            }
            if block.hash() != expect.1 {
                let why = format!(
                    "block {} is not the one the trusted hash links to",
                    block.header.height
                );
                self.ban(peer, why, &mut steps);
                self.ask_anchor(&mut steps);
                return steps;
            }
            progressed = true;
            if block.header.height == target {
                anchor = Some((block, certificate));
                break;
            }
            *expect = (Height(expect.0.0 - 1), block.header.prev);
        }
        if let Some(anchor) = anchor {
            self.start_chunks(id, anchor, peer.clone(), &mut steps);
        } else {
            if !progressed {
                self.strike(peer);
            }
            self.ask_anchor(&mut steps);
        }
        steps
    }

    fn start_chunks(
        &mut self,
        id: Hash,
        anchor: (Block, CommitCertificate),
        anchor_from: PeerKey,
        steps: &mut Vec<Step>,
    ) {
        let Some(offer) = self.offers.get(&id) else {
            return;
        };
        let m = &offer.manifest;
        let h = &anchor.0.header;
        if h.prev != m.last_hash || h.state_root != m.state_root {
            // Every peer that offered it claims a head or root the chain does not have.
            let why = format!(
                "offered a snapshot of height {} that block {} contradicts",
                m.height, h.height
            );
            self.reject(id, &why, steps);
            return;
        }
        let n = m.chunks.len();
        self.phase = Phase::Chunks {
            id,
            anchor: Box::new(anchor),
            anchor_from,
            chunks: vec![None; n],
            in_flight: BTreeMap::new(),
        };
        self.ask_chunks(steps);
    }

    fn ask_chunks(&mut self, steps: &mut Vec<Step>) {
        loop {
            let Phase::Chunks {
                id,
                chunks,
                in_flight,
                ..
            } = &self.phase
            else {
                return;
            };
            if in_flight.len() >= MAX_IN_FLIGHT {
                return;
            }
            let id = *id;
            let next = (0..chunks.len())
                .find(|&i| chunks[i].is_none() && !in_flight.contains_key(&(i as u32)));
            let Some(index) = next else { return };
            let Some(peer) = self.pick(&id) else {
                if in_flight.is_empty() {
                    self.give_up_on(id, steps);
                }
                return;
            };
            if let Some(state) = self.peers.get_mut(&peer) {
                state.busy = true;
            }
            if let Phase::Chunks { in_flight, .. } = &mut self.phase {
                in_flight.insert(index as u32, peer.clone());
            }
            let request = Request::Chunk(ChunkRequest {
                manifest: id,
                index: index as u32,
            });
            steps.push(Step::Ask(peer, request));
        }
    }

    /// A chunk (or `None`: the peer no longer has it) arrived from `peer`.
    pub fn on_chunk(
        &mut self,
        peer: &PeerKey,
        manifest: Hash,
        index: u32,
        chunk: Option<Vec<u8>>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let Phase::Chunks {
            id,
            chunks,
            in_flight,
            ..
        } = &mut self.phase
        else {
            return steps;
        };
        if *id != manifest || in_flight.get(&index) != Some(peer) {
            return steps;
        }
        in_flight.remove(&index);
        let expected = self
            .offers
            .get(id)
            .and_then(|o| o.manifest.chunks.get(index as usize).copied());
        match chunk {
            Some(bytes) if Some(chunk_hash(&bytes)) == expected => {
                chunks[index as usize] = Some(bytes);
                if let Some(state) = self.peers.get_mut(peer) {
                    state.busy = false;
                }
            }
            Some(_) => {
                self.ban(
                    peer,
                    format!("chunk {index} does not match its manifest"),
                    &mut steps,
                );
            }
            None => self.strike(peer),
        }
        self.after_chunk(&mut steps);
        steps
    }

    fn after_chunk(&mut self, steps: &mut Vec<Step>) {
        let complete = matches!(&self.phase, Phase::Chunks { chunks, .. } if chunks.iter().all(Option::is_some));
        if !complete {
            self.ask_chunks(steps);
            return;
        }
        let Phase::Chunks {
            id,
            anchor,
            anchor_from,
            chunks,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return;
        };
        let Some(offer) = self.offers.get(&id) else {
            return;
        };
        let (anchor, certificate) = *anchor;
        steps.push(Step::Ready(Box::new(Fetched {
            manifest: offer.manifest.clone(),
            chunks: chunks.into_iter().flatten().collect(),
            anchor,
            certificate,
            anchor_from,
            peers: offer.peers.iter().cloned().collect(),
        })));
    }

    /// A request to `peer` failed (no answer, or one that does not decode).
    pub fn on_failure(&mut self, peer: &PeerKey) -> Vec<Step> {
        let mut steps = Vec::new();
        self.strike(peer);
        match &mut self.phase {
            Phase::Anchor { asked, .. } if asked.as_ref() == Some(peer) => {
                *asked = None;
                self.ask_anchor(&mut steps);
            }
            Phase::Chunks { in_flight, .. } => {
                in_flight.retain(|_, p| p != peer);
                self.ask_chunks(&mut steps);
            }
            _ => {}
        }
        steps
    }

    /// The restore from a [`Step::Ready`] failed: the manifest lied.
    pub fn on_restore_failed(&mut self, now_ms: u64, manifest: Hash, why: &str) -> Vec<Step> {
        let mut steps = Vec::new();
        self.reject(manifest, why, &mut steps);
        if matches!(self.phase, Phase::Discover { until: None }) {
            self.ask_again(now_ms, &mut steps);
        }
        steps
    }

    /// The anchor's certificate from a [`Step::Ready`] did not verify: its sender lied, the
    /// manifest may be fine. The search starts again without that peer.
    pub fn on_bad_anchor(&mut self, peer: &PeerKey, why: &str) -> Vec<Step> {
        let mut steps = Vec::new();
        self.ban(peer, why.to_owned(), &mut steps);
        self.phase = Phase::Discover { until: None };
        steps.push(Step::Wake(0));
        steps
    }

    fn strike(&mut self, peer: &PeerKey) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.busy = false;
            state.strikes = state.strikes.saturating_add(1);
            if state.strikes >= MAX_STRIKES {
                state.banned = true;
            }
        }
    }

    fn ban(&mut self, peer: &PeerKey, why: String, steps: &mut Vec<Step>) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.banned = true;
            state.busy = false;
        }
        steps.push(Step::Misbehaved(peer.clone(), why));
    }

    /// No usable peer offers `id` any more: back to discovery without it (it may come back
    /// from new peers).
    fn give_up_on(&mut self, id: Hash, steps: &mut Vec<Step>) {
        self.offers.remove(&id);
        self.phase = Phase::Discover { until: None };
        steps.push(Step::Wake(0));
    }

    /// `id` is a lie: every peer that offered it is reported and banned.
    fn reject(&mut self, id: Hash, why: &str, steps: &mut Vec<Step>) {
        if let Some(offer) = self.offers.remove(&id) {
            for peer in offer.peers {
                self.ban(&peer, why.to_owned(), steps);
            }
        }
        if self.rejected.len() >= MAX_REJECTED {
            self.rejected.pop_first();
        }
        self.rejected.insert(id);
        self.phase = Phase::Discover { until: None };
        steps.push(Step::Wake(0));
    }
}
