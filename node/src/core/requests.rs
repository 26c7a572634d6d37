//! Request-response for the core: sync (committed blocks with certificates) and output
//! delivery (a provider's output bytes to the gateway that opened the job). Both directions:
//! serving requests from the store and the core, and handling the answers.

use attest_protocol::{BoundedVec, Bytes, Canonical, Height, JobId};

use super::wire::{self, OutputResponse, Request, Response, SyncRequest, SyncResponse};
use super::{Effect, NodeCore, PeerKey};
use crate::store::Store;

impl NodeCore {
    /// The answer to a request this node sent to `from` (or `None` if the request failed):
    /// sync blocks are checked against their certificates and applied, output bytes are
    /// checked against the ledger.
    pub fn handle_response(&mut self, now_ms: u64, from: &PeerKey, data: Option<&[u8]>) {
        let response = data.and_then(|d| Response::decode(d).ok());
        match response {
            Some(Response::Sync(r)) => self.on_sync_response(now_ms, from, r),
            Some(Response::Output(r)) => {
                self.gateway
                    .on_output(r.job, r.output.as_ref().map(Bytes::as_slice));
            }
            None => {
                if self.syncing.as_ref() == Some(from) {
                    self.syncing = None;
                }
                self.gateway.on_failure(from);
            }
        }
    }

    fn on_sync_response(&mut self, now_ms: u64, from: &PeerKey, response: SyncResponse) {
        if self.syncing.as_ref() != Some(from) {
            return;
        }
        self.syncing = None;
        let mut advanced = false;
        for (block, certificate) in response.blocks.into_vec() {
            if block.header.height != self.chain.height().next() {
                break;
            }
            match self.chain.check_committed(&block, &certificate) {
                Ok(applied) => {
                    self.commit(now_ms, block, certificate, applied);
                    advanced = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sync: peer sent a block that does not verify");
                    return;
                }
            }
        }
        if advanced && response.latest > self.chain.height() {
            self.request_sync(from.clone());
        } else if advanced {
            self.start_height(now_ms);
        }
    }

    /// Answers a request from a peer: blocks from `store`, or an output this node provided.
    /// `None` for a malformed request.
    pub fn serve_request(&self, store: &dyn Store, data: &[u8]) -> Option<Vec<u8>> {
        let response = match Request::decode(data).ok()? {
            Request::Sync(r) => Response::Sync(serve_sync(store, &r)?),
            Request::Output(job) => Response::Output(OutputResponse {
                job,
                output: self
                    .duties
                    .output(&job)
                    .and_then(|o| Bytes::new(o.to_vec()).ok()),
            }),
        };
        Some(response.encode())
    }

    pub(super) fn request_sync(&mut self, peer: PeerKey) {
        if self.syncing.is_some() {
            return;
        }
        let from = self.chain.height().next();
        let to = Height(from.0 + wire::MAX_SYNC_BLOCKS as u64 - 1);
        self.syncing = Some(peer.clone());
        self.effects.push_back(Effect::Request {
            peer,
            data: Request::Sync(SyncRequest { from, to }).encode(),
        });
    }

    /// Sends the gateway's output fetches; a job we provided ourselves is delivered at once.
    pub(super) fn fetch_outputs(&mut self, fetches: Vec<(PeerKey, JobId)>) {
        let me = self.key.as_ref().map(|k| k.public());
        for (peer, job) in fetches {
            let ours = self
                .chain
                .state()
                .job(&job)
                .is_some_and(|j| Some(j.provider) == me);
            if ours {
                let output = self.duties.output(&job).map(<[u8]>::to_vec);
                self.gateway.on_output(job, output.as_deref());
            } else {
                self.effects.push_back(Effect::Request {
                    peer,
                    data: Request::Output(job).encode(),
                });
            }
        }
    }
}

/// Blocks `request.from..=request.to` (within the batch and byte bounds) from `store`.
fn serve_sync(store: &dyn Store, request: &SyncRequest) -> Option<SyncResponse> {
    let latest = store.latest_height();
    let to = Height(
        request
            .to
            .0
            .min(latest.0)
            .min(request.from.0 + wire::MAX_SYNC_BLOCKS as u64 - 1),
    );
    let mut blocks = Vec::new();
    let mut bytes = 0;
    if request.from.0 >= 1 && request.from <= to {
        for item in store.blocks(request.from..=to) {
            let Ok(pair) = item else { break };
            bytes += pair.0.encode().len();
            if bytes > wire::SYNC_RESPONSE_BUDGET && !blocks.is_empty() {
                break;
            }
            blocks.push(pair);
        }
    }
    Some(SyncResponse {
        latest,
        blocks: BoundedVec::new(blocks).ok()?,
    })
}
