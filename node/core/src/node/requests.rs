//! Request-response for the core: sync (committed blocks with certificates) and output
//! delivery (a provider's output bytes to the gateway that opened the job). Both directions:
//! answering requests (an output from the core; blocks the host reads from its store, see
//! [`crate::host::serve_request`]), and handling the answers.

use attest_protocol::{BoundedVec, Bytes, Canonical, Height, JobId};

use super::joining::SyncAnswer;
use super::{Effect, NodeCore, PeerKey};
use crate::wire::{self, OutputResponse, Request, Response, SyncRequest, SyncResponse};

/// How to answer a peer's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These bytes, ready.
    Ready(Vec<u8>),
    /// Committed blocks: the host reads them from its store and encodes them with
    /// [`wire::sync_response`].
    Sync(SyncRequest),
}

impl NodeCore {
    /// The answer to a request this node sent to `from` (or `None` if the request failed):
    /// sync blocks are checked against their certificates and applied, output bytes are
    /// checked against the ledger.
    pub fn handle_response(&mut self, now_ms: u64, from: &PeerKey, data: Option<&[u8]>) {
        let response = data.and_then(|d| Response::decode(d).ok());
        if self.ledger.statesync.is_some() {
            let answer = match response {
                Some(Response::Snapshots(offers)) => SyncAnswer::Offers(offers.into_vec()),
                Some(Response::Sync(r)) => SyncAnswer::Blocks(r.blocks.into_vec()),
                Some(Response::Chunk(c)) => SyncAnswer::Chunk(c),
                Some(Response::Output(_) | Response::Outputs(_) | Response::Advert(_)) | None => {
                    SyncAnswer::Failed
                }
            };
            self.on_sync_answer(now_ms, from, answer);
            return;
        }
        match response {
            Some(Response::Sync(r)) => self.on_sync_response(now_ms, from, r),
            // Answers to a state sync that finished; advert probes are the host's own.
            Some(Response::Snapshots(_) | Response::Chunk(_) | Response::Advert(_)) => {}
            Some(Response::Output(r)) => {
                self.market
                    .gateway
                    .on_output(r.job, r.output.as_ref().map(Bytes::as_slice));
            }
            Some(Response::Outputs(answers)) => {
                for r in answers.iter() {
                    self.market
                        .gateway
                        .on_output(r.job, r.output.as_ref().map(Bytes::as_slice));
                }
                // Jobs of the batch the peer left out may go again.
                self.market.gateway.on_failure(from);
            }
            None => {
                if self.ledger.syncing.as_ref() == Some(from) {
                    self.ledger.syncing = None;
                }
                self.market.gateway.on_failure(from);
            }
        }
    }

    fn on_sync_response(&mut self, now_ms: u64, from: &PeerKey, response: SyncResponse) {
        if self.ledger.syncing.as_ref() != Some(from) {
            return;
        }
        self.ledger.syncing = None;
        let mut advanced = false;
        for (block, certificate) in response.blocks.into_vec() {
            if block.header.height != self.ledger.chain.height().next() {
                break;
            }
            match self.ledger.chain.check_committed(&block, &certificate) {
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
        if advanced && response.latest > self.ledger.chain.height() {
            self.request_sync(from.clone());
        } else if advanced {
            self.start_height(now_ms);
        }
    }

    /// How to answer a request from a peer: an output this node provided, or which blocks
    /// to read. `None` for a malformed request.
    pub fn answer_request(&self, data: &[u8]) -> Option<Answer> {
        match Request::decode(data).ok()? {
            Request::Sync(r) => Some(Answer::Sync(r)),
            Request::Output(job) => {
                let response = Response::Output(self.output_response(job));
                Some(Answer::Ready(response.encode()))
            }
            Request::Outputs(jobs) => {
                let answers: Vec<OutputResponse> =
                    jobs.iter().map(|job| self.output_response(*job)).collect();
                let response = Response::Outputs(BoundedVec::new(answers).ok()?);
                Some(Answer::Ready(response.encode()))
            }
            Request::Advert(provider) => {
                let held = self.market.book.get(&provider).map(|h| wire::AdvertHeld {
                    seq: h.advert().seq,
                    expires_at_ms: h.advert().expires_at_ms,
                    free_slots: h.free_slots(),
                });
                Some(Answer::Ready(Response::Advert(held).encode()))
            }
            Request::Snapshots => Some(Answer::Ready(self.answer_offers().encode())),
            Request::Chunk(c) => Some(Answer::Ready(self.answer_chunk(&c).encode())),
        }
    }

    /// Our answer for one job's output.
    fn output_response(&self, job: JobId) -> OutputResponse {
        OutputResponse {
            job,
            output: self
                .market
                .duties
                .output(&job)
                .and_then(|o| Bytes::new(o.to_vec()).ok()),
        }
    }

    pub(super) fn request_sync(&mut self, peer: PeerKey) {
        if self.ledger.syncing.is_some() {
            return;
        }
        let from = self.ledger.chain.height().next();
        let to = Height(from.0 + wire::MAX_SYNC_BLOCKS as u64 - 1);
        self.ledger.syncing = Some(peer.clone());
        self.effects.push_back(Effect::Request {
            peer,
            data: Request::Sync(SyncRequest { from, to }).encode(),
        });
    }

    /// Sends the gateway's output fetches, one request per provider's batch; a job we
    /// provided ourselves is delivered at once.
    pub(super) fn fetch_outputs(&mut self, fetches: Vec<(PeerKey, Vec<JobId>)>) {
        let me = self.key.as_ref().map(|k| k.public());
        for (peer, jobs) in fetches {
            let mut remote = Vec::with_capacity(jobs.len());
            for job in jobs {
                let ours = self
                    .ledger
                    .chain
                    .state()
                    .job(&job)
                    .is_some_and(|j| Some(j.provider) == me);
                if ours {
                    let output = self.market.duties.output(&job).map(<[u8]>::to_vec);
                    self.market.gateway.on_output(job, output.as_deref());
                } else {
                    remote.push(job);
                }
            }
            if remote.is_empty() {
                continue;
            }
            // The gateway batches at most `MAX_OUTPUTS_PER_REQUEST` per peer.
            let Ok(batch) = BoundedVec::new(remote) else {
                continue;
            };
            self.effects.push_back(Effect::Request {
                peer,
                data: Request::Outputs(batch).encode(),
            });
        }
    }
}
