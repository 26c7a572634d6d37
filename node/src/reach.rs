//! Advert reach probes: which connected peers hold a provider's advert in their book, asked
//! of each of them now over request-response (`Request::Advert`). It answers the question
//! "my node runs, why does nobody send it work?" with the peers' own word rather than this
//! node's guess. `GET /v1/adverts/{provider}/reach` starts one; the loop owns the probes.
//!
//! Bounded: at most [`MAX_PROBES`] probes at once, each over the peers connected when it
//! started; a probe answers when every peer answered or failed, or after [`PROBE_WAIT`],
//! counting the silent ones as not answering.

use std::collections::BTreeMap;

use libp2p::PeerId;
use libp2p::request_response::OutboundRequestId;
use tokio::sync::oneshot;

use attest_core::wire::Response;
use attest_protocol::{AccountId, Canonical};

use crate::views::AdvertReach;

/// Probes running at once; another is refused (the API answers 503 `busy`).
pub const MAX_PROBES: usize = 8;

/// How long a probe waits for its peers, in ms.
pub const PROBE_WAIT_MS: u64 = 3_000;

/// One probe in flight.
#[derive(Debug)]
struct Probe {
    reach: AdvertReach,
    waiting: usize,
    deadline_ms: u64,
    reply: oneshot::Sender<Option<AdvertReach>>,
}

/// The probes in flight and the requests that belong to them.
#[derive(Debug, Default)]
pub struct Probes {
    next: u64,
    open: BTreeMap<u64, Probe>,
    requests: BTreeMap<OutboundRequestId, (u64, PeerId)>,
}

impl Probes {
    /// Starts a probe of `provider`'s advert over `peers`, sending each request with `send`.
    /// Answers `None` at once when [`MAX_PROBES`] run already, and the empty reach with no
    /// peers.
    pub fn start(
        &mut self,
        provider: AccountId,
        peers: Vec<PeerId>,
        now_ms: u64,
        mut send: impl FnMut(&PeerId) -> OutboundRequestId,
        reply: oneshot::Sender<Option<AdvertReach>>,
    ) {
        if self.open.len() >= MAX_PROBES {
            let _ = reply.send(None);
            return;
        }
        let reach = AdvertReach {
            provider,
            asked: peers.len(),
            holding: Vec::new(),
            not_holding: Vec::new(),
            no_answer: Vec::new(),
        };
        if peers.is_empty() {
            let _ = reply.send(Some(reach));
            return;
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        for peer in &peers {
            self.requests.insert(send(peer), (id, *peer));
        }
        self.open.insert(
            id,
            Probe {
                reach,
                waiting: peers.len(),
                deadline_ms: now_ms.saturating_add(PROBE_WAIT_MS),
                reply,
            },
        );
    }

    /// An answer (`Some` bytes) or a failure (`None`) of request `request`. Answers whether
    /// it was a probe's: if not, it is someone else's to handle.
    pub fn answer(&mut self, request: &OutboundRequestId, data: Option<&[u8]>) -> bool {
        let Some((id, peer)) = self.requests.remove(request) else {
            return false;
        };
        let Some(probe) = self.open.get_mut(&id) else {
            return true;
        };
        let peer = peer.to_string();
        match data.map(Response::decode) {
            Some(Ok(Response::Advert(Some(_)))) => probe.reach.holding.push(peer),
            Some(Ok(Response::Advert(None))) => probe.reach.not_holding.push(peer),
            // A failed request, or an answer that is not one: no answer.
            _ => probe.reach.no_answer.push(peer),
        }
        probe.waiting = probe.waiting.saturating_sub(1);
        if probe.waiting == 0 {
            self.finish(id);
        }
        true
    }

    /// Answers every probe whose wait is over, its silent peers as not answering.
    pub fn expire(&mut self, now_ms: u64) {
        let due: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let silent: Vec<(OutboundRequestId, PeerId)> = self
                .requests
                .iter()
                .filter(|(_, (p, _))| *p == id)
                .map(|(r, (_, peer))| (*r, *peer))
                .collect();
            for (request, peer) in silent {
                self.requests.remove(&request);
                if let Some(probe) = self.open.get_mut(&id) {
                    probe.reach.no_answer.push(peer.to_string());
                }
            }
            self.finish(id);
        }
    }

    fn finish(&mut self, id: u64) {
        if let Some(probe) = self.open.remove(&id) {
            let _ = probe.reply.send(Some(probe.reach));
        }
    }
}
