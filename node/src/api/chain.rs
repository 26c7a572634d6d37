//! Committed blocks and transaction submission: `GET /v1/blocks/{height}`,
//! `GET /v1/blocks?from=H&to=H` and `POST /v1/txs`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use attest_protocol::{
    AccountId, Block, BlockHash, Canonical, ChainId, CommitCertificate, Hash, Height, Round,
    SignedTx, TxHash, tx_hash,
};

use super::{ApiError, ask, json_rejection, segment};
use attest_core::mempool::AdmitError;

use crate::shell::NodeHandle;
use crate::views::TxStatus;

/// Blocks one `GET /v1/blocks?from=&to=` answers at most. Each block's view lists its
/// transaction hashes (up to 1,024, 66 bytes each in JSON), so a page is at most ~7 MB of
/// JSON; the node also stops reading past `shell::MAX_RANGE_BYTES` of blocks.
pub const MAX_BLOCKS_PER_PAGE: u64 = 100;

/// A committed block as `GET /v1/blocks/{height}` shows it: the header, the transactions by
/// hash, and who committed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// The block's height.
    pub height: Height,
    /// The block's hash.
    pub hash: BlockHash,
    /// The chain.
    pub chain_id: ChainId,
    /// The previous block's hash (zeros at height 1).
    pub prev: BlockHash,
    /// The proposer's account.
    pub proposer: AccountId,
    /// Block time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Merkle root over the transaction hashes.
    pub tx_root: Hash,
    /// State root after the previous block.
    pub state_root: Hash,
    /// Transaction hashes, in block order.
    pub txs: Vec<TxHash>,
    /// The certificate that committed this block.
    pub certificate: CertificateView,
}

/// A commit certificate, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    /// The round in which the block was committed.
    pub round: Round,
    /// How many validators' precommits it holds.
    pub signers: usize,
    /// Their accounts, in ascending key order.
    pub validators: Vec<AccountId>,
}

impl BlockView {
    /// The view of a committed block. Hashing happens here, in the API task, so the node loop
    /// only reads the store.
    pub fn new(block: &Block, certificate: &CommitCertificate) -> Self {
        let h = &block.header;
        Self {
            height: h.height,
            hash: block.hash(),
            chain_id: h.chain_id.clone(),
            prev: h.prev,
            proposer: h.proposer,
            time_ms: h.time_ms,
            tx_root: h.tx_root,
            state_root: h.state_root,
            txs: block.txs.iter().map(tx_hash).collect(),
            certificate: CertificateView {
                round: certificate.round,
                signers: certificate.signatures.len(),
                validators: certificate.signatures.iter().map(|s| s.validator).collect(),
            },
        }
    }
}

/// A height as text: 400 `bad_height` unless it is a non-negative 64-bit integer.
pub(super) fn parse_height(what: &str, text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_height",
            format!("{what} {text:?} is not a non-negative integer"),
        )
    })
}

/// A store failure: the node's problem, logged, and a 500.
pub(super) fn store_error(e: &attest_core::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "API: reading blocks");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string())
}

/// `GET /v1/blocks/{height}`. The height is parsed here, not by the `Path<u64>` extractor,
/// so a bad one gets the JSON error format too.
pub(super) async fn block(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockView>, ApiError> {
    let height = parse_height("height", &segment(path)?)?;
    let stored = ask(node.block(Height(height)))
        .await?
        .map_err(|e| store_error(&e))?;
    match stored {
        Some((block, certificate)) => Ok(Json(BlockView::new(&block, &certificate))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no block is committed at height {height}"),
        )),
    }
}

/// The answer to `GET /v1/blocks/{height}/raw`: the block and its certificate in their
/// canonical encodings, hex, so a client can verify them itself (`attest audit --node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawBlock {
    /// The block's height.
    pub height: Height,
    /// `encode(Block)`, hex.
    pub block: String,
    /// `encode(CommitCertificate)`, hex.
    pub certificate: String,
}

pub(super) async fn raw_block(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RawBlock>, ApiError> {
    let height = parse_height("height", &segment(path)?)?;
    let stored = ask(node.block(Height(height)))
        .await?
        .map_err(|e| store_error(&e))?;
    match stored {
        Some((block, certificate)) => Ok(Json(RawBlock {
            height: Height(height),
            block: hex::encode(block.encode()),
            certificate: hex::encode(certificate.encode()),
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no block is committed at height {height}"),
        )),
    }
}

/// The answer to `GET /v1/blocks?from=&to=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksPage {
    /// The committed blocks in the range, ascending, each as `GET /v1/blocks/{height}`
    /// shows it. Empty if none of the range is committed yet.
    pub blocks: Vec<BlockView>,
    /// Where to ask from for the rest of the range, if this page stopped short of `to` (at
    /// [`MAX_BLOCKS_PER_PAGE`] blocks or the node's read budget) while more is committed.
    pub next: Option<Height>,
    /// The node's last committed height.
    pub latest: Height,
}

/// `from` and `to` of a block range query, checked: `from` is required, `to` defaults to
/// the end of a full page, and nothing else may be asked.
fn block_range(query: Option<&str>) -> Result<(u64, u64), ApiError> {
    let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", detail);
    let mut params = BTreeMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "from" && key != "to" {
            return Err(bad(format!(
                "unknown query parameter {key:?}; this route takes from and to"
            )));
        }
        if params.insert(key, value).is_some() {
            return Err(bad(format!("query parameter {key:?} is given twice")));
        }
    }
    let Some(from) = params.get("from") else {
        return Err(bad(
            "the query needs from=HEIGHT (and optionally to=HEIGHT)".into(),
        ));
    };
    let from = parse_height("from", from)?;
    let to = match params.get("to") {
        Some(to) => parse_height("to", to)?,
        None => from.saturating_add(MAX_BLOCKS_PER_PAGE - 1),
    };
    if to < from {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_range",
            format!("to ({to}) is below from ({from})"),
        ));
    }
    Ok((from, to))
}

/// A page of committed blocks for a `from`/`to` query: the blocks, where to continue, and
/// the node's latest height (see [`BlocksPage`]).
async fn read_page(
    node: &NodeHandle,
    query: Option<&str>,
) -> Result<(Vec<(Block, CommitCertificate)>, Option<Height>, Height), ApiError> {
    let (from, to) = block_range(query)?;
    // Height 0 is the genesis state and has no block: a range from 0 starts at 1.
    let from = from.max(1);
    let last = to.min(from.saturating_add(MAX_BLOCKS_PER_PAGE - 1));
    if from > to {
        // `from=0&to=0`: nothing to read.
        let status = ask(node.status()).await?;
        return Ok((Vec::new(), None, status.height));
    }
    let range = ask(node.blocks(Height(from), Height(last)))
        .await?
        .map_err(|e| store_error(&e))?;
    let after = range
        .blocks
        .last()
        .map_or(from, |(b, _)| b.header.height.0.saturating_add(1));
    let next = (after <= to && after <= range.latest.0 && after > from).then_some(Height(after));
    Ok((range.blocks, next, range.latest))
}

/// `GET /v1/blocks?from=H&to=H`: up to [`MAX_BLOCKS_PER_PAGE`] committed blocks from `from`
/// through `to` (inclusive); `next` says where to continue if the page stopped short.
pub(super) async fn blocks(
    State(node): State<NodeHandle>,
    RawQuery(query): RawQuery,
) -> Result<Json<BlocksPage>, ApiError> {
    let (blocks, next, latest) = read_page(&node, query.as_deref()).await?;
    Ok(Json(BlocksPage {
        blocks: blocks
            .iter()
            .map(|(block, certificate)| BlockView::new(block, certificate))
            .collect(),
        next,
        latest,
    }))
}

/// The answer to `GET /v1/blocks/raw?from=&to=`: [`BlocksPage`] with each block as
/// `GET /v1/blocks/{height}/raw` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawBlocksPage {
    /// The committed blocks in the range, ascending, in their canonical encodings.
    pub blocks: Vec<RawBlock>,
    /// Where to ask from for the rest of the range, as in [`BlocksPage`].
    pub next: Option<Height>,
    /// The node's last committed height.
    pub latest: Height,
}

/// `GET /v1/blocks/raw?from=H&to=H`: the page `GET /v1/blocks` gives, raw (what `attest
/// audit --node` reads, a page per request).
pub(super) async fn raw_blocks(
    State(node): State<NodeHandle>,
    RawQuery(query): RawQuery,
) -> Result<Json<RawBlocksPage>, ApiError> {
    let (blocks, next, latest) = read_page(&node, query.as_deref()).await?;
    Ok(Json(RawBlocksPage {
        blocks: blocks
            .iter()
            .map(|(block, certificate)| RawBlock {
                height: block.header.height,
                block: hex::encode(block.encode()),
                certificate: hex::encode(certificate.encode()),
            })
            .collect(),
        next,
        latest,
    }))
}

/// The body of `POST /v1/txs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTx {
    /// Hex of the canonical encoding of a `Signed<Tx>`.
    pub tx: String,
}

/// The answer to an accepted `POST /v1/txs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The transaction's hash.
    pub hash: TxHash,
}

/// `GET /v1/txs/{hash}`'s answer for a transaction this node knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxState {
    /// The transaction's hash.
    pub hash: TxHash,
    /// `committed` or `pending` (in this node's mempool).
    pub state: String,
    /// The block that holds it, once committed.
    pub height: Option<Height>,
    /// Its place in that block, from 0.
    pub index: Option<u32>,
}

/// `GET /v1/txs/{hash}`: committed (where), pending in this node's mempool, or a 404 that
/// says what an unknown transaction the client was told was accepted means.
pub(super) async fn tx_state(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TxState>, ApiError> {
    let hash: TxHash = super::parse_hex_id("transaction hash", &segment(path)?)?;
    let status = ask(node.tx(hash)).await?.map_err(|e| store_error(&e))?;
    let (state, height, index) = match status {
        TxStatus::Committed { height, index } => ("committed", Some(height), Some(index)),
        TxStatus::Pending => ("pending", None, None),
        TxStatus::Unknown => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "transaction {hash} is neither in this node's mempool nor in a block it \
                     indexed. If this node accepted it, it expired (the mempool keeps a \
                     transaction mempool_ttl_ms) or was lost when the node restarted: submit \
                     it again (of two transactions with the same nonce at most one commits)"
                ),
            ));
        }
    };
    Ok(Json(TxState {
        hash,
        state: state.to_owned(),
        height,
        index,
    }))
}

/// `POST /v1/txs`: decode, hand to the mempool, answer the hash or why it was refused.
/// Acceptance means admitted and gossiped, not committed: follow it with `GET /v1/txs/{hash}`.
pub(super) async fn submit_tx(
    State(node): State<NodeHandle>,
    body: Result<Json<SubmitTx>, JsonRejection>,
) -> Result<Json<Submitted>, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let bytes = hex::decode(&body.tx).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_hex",
            format!("tx is not hex: {e}"),
        )
    })?;
    let tx = SignedTx::decode(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "undecodable_tx",
            e.to_string(),
        )
    })?;
    match ask(node.submit(tx)).await? {
        Ok(hash) => Ok(Json(Submitted { hash })),
        Err(e) => Err(admit_error(&e)),
    }
}

/// Maps a mempool refusal to a status and code. 409: the transaction conflicts with what the
/// ledger or pool already holds; 422: it can never be admitted as it is; 503: the pool is
/// full, which is the node's condition, not the client's mistake, and may pass.
fn admit_error(e: &AdmitError) -> ApiError {
    use StatusCode as S;
    let (status, code) = match e {
        AdmitError::TooLarge { .. } => (S::UNPROCESSABLE_ENTITY, "tx_too_large"),
        AdmitError::BadSignature(_) => (S::UNPROCESSABLE_ENTITY, "bad_signature"),
        AdmitError::FeeTooLow { .. } => (S::UNPROCESSABLE_ENTITY, "fee_too_low"),
        AdmitError::CannotPayFee { .. } => (S::UNPROCESSABLE_ENTITY, "cannot_pay_fee"),
        AdmitError::NonceTooFarAhead { .. } => (S::UNPROCESSABLE_ENTITY, "nonce_too_far_ahead"),
        AdmitError::StaleNonce { .. } => (S::CONFLICT, "stale_nonce"),
        AdmitError::Duplicate(_) => (S::CONFLICT, "duplicate"),
        AdmitError::NonceTaken(_) => (S::CONFLICT, "nonce_taken"),
        AdmitError::Full { .. } => (S::SERVICE_UNAVAILABLE, "mempool_full"),
        AdmitError::GatewayFull { .. } => (S::SERVICE_UNAVAILABLE, "gateway_full"),
        AdmitError::Refused(_) => (S::UNPROCESSABLE_ENTITY, "refused_by_contract"),
    };
    ApiError::new(status, code, e.to_string())
}
