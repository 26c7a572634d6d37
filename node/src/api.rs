//! The node's HTTP JSON API, first slice: health, status, committed blocks and transaction
//! submission (`docs/API.md` is the reference for clients).
//!
//! This module only translates HTTP to [`NodeHandle`] commands and back. It never touches the
//! store or the core itself: every answer comes from the node loop over a bounded channel, so
//! the loop stays the single owner of both. Every error a client can see is JSON
//! `{"error": "<code>", "detail": "<text>"}` with a status that says whose fault it is (4xx:
//! the request; 5xx: the node), and nothing a client sends can panic the server.
//!
//! [`serve`] takes an already-bound listener (as mini-redis does), so the caller decides the
//! address and tests bind port 0.

use std::future::Future;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use attest_protocol::{
    AccountId, Block, BlockHash, Canonical, ChainId, CommitCertificate, Hash, Height, Round,
    SignedTx, TxHash, tx_hash,
};

use crate::mempool::AdmitError;
use crate::shell::{NodeHandle, Status};

/// The largest request body read. A transaction is at most `MAX_TX_BYTES` (8 KiB) encoded and
/// hex doubles it; 64 KiB leaves room for JSON framing without letting a client make the
/// node buffer megabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a request waits for the node loop. The loop answers in microseconds unless it is
/// overloaded or stopping; past this the client gets a 503 rather than a hung connection.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's routes over a running node.
pub fn router(node: NodeHandle) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/txs", post(submit_tx))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// Serves the API on `listener` until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    node: NodeHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code (`bad_hex`, `stale_nonce`, ...).
    pub error: String,
    /// A sentence for a person, naming what was wrong.
    pub detail: String,
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
        }
    }

    /// The node loop is gone (shutting down) or did not answer in time.
    fn unavailable(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            detail.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error.to_owned(),
            detail: self.detail,
        };
        (self.status, Json(body)).into_response()
    }
}

/// Waits for the node loop's answer, bounded by [`NODE_TIMEOUT`].
async fn ask<T>(answer: impl Future<Output = anyhow::Result<T>>) -> Result<T, ApiError> {
    match tokio::time::timeout(NODE_TIMEOUT, answer).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ApiError::unavailable(format!("{e:#}"))),
        Err(_) => Err(ApiError::unavailable(format!(
            "the node did not answer within {} s",
            NODE_TIMEOUT.as_secs()
        ))),
    }
}

/// `GET /health`: the server is up. Says nothing about consensus; use `/v1/status` for that.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

/// `GET /v1/status`.
async fn status(State(node): State<NodeHandle>) -> Result<Json<Status>, ApiError> {
    Ok(Json(ask(node.status()).await?))
}

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

/// `GET /v1/blocks/{height}`. The height is parsed here, not by the `Path<u64>` extractor,
/// so a bad one gets the JSON error format too.
async fn block(
    State(node): State<NodeHandle>,
    Path(height): Path<String>,
) -> Result<Json<BlockView>, ApiError> {
    let height: u64 = height.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_height",
            format!("height {height:?} is not a non-negative integer"),
        )
    })?;
    let stored = ask(node.block(Height(height))).await?.map_err(|e| {
        tracing::error!(height, error = %e, "API: reading a block");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string())
    })?;
    match stored {
        Some((block, certificate)) => Ok(Json(BlockView::new(&block, &certificate))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no block is committed at height {height}"),
        )),
    }
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

/// `POST /v1/txs`: decode, hand to the mempool, answer the hash or why it was refused.
/// Acceptance means admitted and gossiped, not committed: poll the blocks for that.
async fn submit_tx(
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
        AdmitError::Refused(_) => (S::UNPROCESSABLE_ENTITY, "refused_by_contract"),
    };
    ApiError::new(status, code, e.to_string())
}

/// A body axum could not read as JSON: keep its status (400 syntax, 413 too large, 415 wrong
/// content type, 422 wrong shape) and its message, in our error format.
fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "bad_content_type",
        _ => "bad_json",
    };
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes")
        }
        _ => rejection.body_text(),
    };
    ApiError::new(status, code, detail)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
