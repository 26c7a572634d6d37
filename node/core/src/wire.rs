//! The node's wire envelopes: what travels on the consensus topic and over sync requests.
//! Each has a canonical encoding with a size bound, like every protocol type.

use attest_protocol::limits::{MAX_BLOCK_BYTES, MAX_OUTPUT_TOKENS, MAX_SMALL_MESSAGE_BYTES};
use attest_protocol::{
    AccountId, Block, BoundedVec, Bytes, Canonical, CommitCertificate, Height, JobId, Proposal,
    Signed, SignedTx, Vote,
};
use serde::{Deserialize, Serialize};

use attest_chain::statesync::{CHUNK_BYTES, Manifest};
use attest_consensus::PolkaCert;
use attest_protocol::Hash;

use crate::store::CommittedBlock;

/// A peer, as the bytes of its libp2p PeerId: the core does not depend on libp2p.
pub type PeerKey = Vec<u8>;

/// A message on the consensus topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsensusMessage {
    /// A proposer's block for a round.
    Proposal(Box<Signed<Proposal>>),
    /// A validator's vote.
    Vote(Signed<Vote>),
    /// Prevotes of a quorum for one block in one round, backing a re-proposal.
    Polka(Box<PolkaCert>),
}

impl Canonical for ConsensusMessage {
    const NAME: &'static str = "consensus message";
    const MAX_ENCODED_LEN: usize = MAX_BLOCK_BYTES + 64 * 1024;
}

/// Transactions gossiped together (topic `attest/txs/2`). A node collects the transactions it
/// admits from its clients and its own duties for at most [`TX_BATCH_MS`] and publishes them
/// as one message, at once when [`TX_BATCH_FLUSH_BYTES`] or [`MAX_TX_BATCH`] is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBatch(pub BoundedVec<SignedTx, MAX_TX_BATCH>);

/// The most transactions in one batch.
pub const MAX_TX_BATCH: usize = 256;
/// A batch is published once it holds this many bytes of transactions (so it is at most this
/// plus one transaction).
pub const TX_BATCH_FLUSH_BYTES: usize = 64 * 1024;
/// The longest a transaction waits for its batch, in ms: small next to a block interval,
/// long enough to gather what arrives together under load.
pub const TX_BATCH_MS: u64 = 5;

impl Canonical for TxBatch {
    const NAME: &'static str = "transaction batch";
    // The flush threshold plus one transaction of the largest kind, with room.
    const MAX_ENCODED_LEN: usize = 1024 * 1024;
}

/// The most blocks one sync response carries. Blocks are usually small (a few KiB); a batch
/// bound keeps a response under the request-response limit even for full blocks, because
/// the responder also stops at [`SYNC_RESPONSE_BUDGET`] bytes.
pub const MAX_SYNC_BLOCKS: usize = 64;
/// The bytes a responder puts in one sync response at most (the request-response limit is
/// 16 MiB; a block at its limit is ~8 MiB, so one always fits).
pub const SYNC_RESPONSE_BUDGET: usize = 12 * 1024 * 1024;

/// A request over request-response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Committed blocks.
    Sync(SyncRequest),
    /// The output bytes of a job the peer provided.
    Output(JobId),
    /// The snapshots the peer offers for state sync.
    Snapshots,
    /// One chunk of a snapshot the peer offered.
    Chunk(ChunkRequest),
    /// The output bytes of several jobs the peer provided: what a gateway sends, one batch
    /// per provider at a time.
    Outputs(BoundedVec<JobId, MAX_OUTPUTS_PER_REQUEST>),
    /// Whether the peer's advert book holds this provider's advert: what
    /// `attest provider status` asks every peer of the provider's node.
    Advert(AccountId),
}

/// The most jobs one output request names: 64 ids fit the small-message bound (4 KiB) with
/// room, and 64 outputs of at most 1,024 bytes make an answer of about 66 KiB.
pub const MAX_OUTPUTS_PER_REQUEST: usize = 64;

impl Canonical for Request {
    const NAME: &'static str = "request";
    const MAX_ENCODED_LEN: usize = MAX_SMALL_MESSAGE_BYTES;
}

/// An answer over request-response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Committed blocks.
    Sync(SyncResponse),
    /// A job's output, if the peer holds it.
    Output(OutputResponse),
    /// The snapshots the peer offers, newest first (none is an answer too).
    Snapshots(BoundedVec<Manifest, MAX_OFFERS>),
    /// A chunk, if the peer still offers its snapshot.
    Chunk(ChunkResponse),
    /// The answer to [`Request::Outputs`]: one entry per job asked, in the order asked.
    Outputs(BoundedVec<OutputResponse, MAX_OUTPUTS_PER_REQUEST>),
    /// The answer to [`Request::Advert`]: the advert the peer holds, if any.
    Advert(Option<AdvertHeld>),
}

/// What a peer holds of a provider's advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertHeld {
    /// The advert's sequence number (its signing time, ms).
    pub seq: u64,
    /// When it expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Free slots as the peer counts them.
    pub free_slots: u32,
}

/// The most snapshots one peer offers at once.
pub const MAX_OFFERS: usize = 4;

/// Asks for chunk `index` of the snapshot whose manifest has id `manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// The manifest's id ([`Manifest::id`]).
    pub manifest: Hash,
    /// The chunk's index.
    pub index: u32,
}

/// A chunk of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkResponse {
    /// The manifest's id.
    pub manifest: Hash,
    /// The chunk's index.
    pub index: u32,
    /// Its bytes, `None` if the peer no longer offers that snapshot.
    pub chunk: Option<Bytes<CHUNK_BYTES>>,
}

impl Canonical for Response {
    const NAME: &'static str = "response";
    const MAX_ENCODED_LEN: usize = SyncResponse::MAX_ENCODED_LEN + 16;
}

/// A provider's answer to an output request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputResponse {
    /// The job.
    pub job: JobId,
    /// Its output bytes, `None` if this node does not hold them.
    pub output: Option<Bytes<{ MAX_OUTPUT_TOKENS as usize }>>,
}

/// Asks a peer for committed blocks `from..=to` with their certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The first height wanted.
    pub from: Height,
    /// The last height wanted; a responder may send fewer.
    pub to: Height,
}

impl Canonical for SyncRequest {
    const NAME: &'static str = "sync request";
    const MAX_ENCODED_LEN: usize = MAX_SMALL_MESSAGE_BYTES;
}

/// Committed blocks with their certificates, in height order, and the responder's height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The responder's latest committed height.
    pub latest: Height,
    /// Blocks from the requested start, contiguous.
    pub blocks: BoundedVec<(Block, CommitCertificate), MAX_SYNC_BLOCKS>,
}

impl Canonical for SyncResponse {
    const NAME: &'static str = "sync response";
    const MAX_ENCODED_LEN: usize = 16 * 1024 * 1024;
}

/// The heights a responder reads for `request` when its latest block is `latest`: from the
/// first asked, within [`MAX_SYNC_BLOCKS`] and its own height; `None` if it has none of them.
pub fn sync_range(
    request: &SyncRequest,
    latest: Height,
) -> Option<std::ops::RangeInclusive<Height>> {
    let last_in_batch = request.from.0.saturating_add(MAX_SYNC_BLOCKS as u64 - 1);
    let to = Height(request.to.0.min(latest.0).min(last_in_batch));
    (request.from.0 >= 1 && request.from <= to).then_some(request.from..=to)
}

/// The encoded sync response carrying `blocks` (read for [`sync_range`], ascending) up to
/// [`SYNC_RESPONSE_BUDGET`] bytes (at least one block), with the responder's `latest` height.
/// A read error ends the blocks sent.
pub fn sync_response<E>(
    latest: Height,
    blocks: impl IntoIterator<Item = Result<CommittedBlock, E>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for item in blocks.into_iter().take(MAX_SYNC_BLOCKS) {
        let Ok(pair) = item else { break };
        bytes = bytes.saturating_add(pair.0.encode().len());
        if bytes > SYNC_RESPONSE_BUDGET && !out.is_empty() {
            break;
        }
        out.push(pair);
    }
    let response = Response::Sync(SyncResponse {
        latest,
        blocks: BoundedVec::new(out).ok()?,
    });
    Some(response.encode())
}
