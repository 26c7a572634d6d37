//! The node's HTTP JSON API (`docs/API.md` is the reference for clients): health, status,
//! committed blocks (one or a range), transaction submission, the advert book and the
//! gateway's quote, jobs with their timeline and output, accounts with their stake and
//! provider record, a server-sent event stream of committed blocks, and Prometheus metrics.
//!
//! One file per family: `chain` (blocks, transactions), `market` (adverts, quote), `jobs`,
//! `accounts`, `events` (the stream); `limits` admits the writes and the stream (a rate per
//! client address, a cap on writes in flight). This file holds the router, the error format and the
//! helpers every handler shares.
//!
//! This module only translates HTTP to [`NodeHandle`] commands and back. It never touches the
//! store or the core itself: every answer comes from the node loop over a bounded channel, so
//! the loop stays the single owner of both. Every error a client can see is JSON
//! `{"error": "<code>", "detail": "<text>"}` with a status that says whose fault it is (4xx:
//! the request; 5xx: the node), and nothing a client sends can panic the server.
//!
//! [`serve`] takes an already-bound listener (as mini-redis does), so the caller decides the
//! address and tests bind port 0.

pub mod accounts;
pub mod chain;
pub mod events;
pub mod explorer;
pub mod jobs;
pub mod limits;
pub mod market;
pub mod network;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use attest_protocol::{AccountId, JobId, ParseError};

use crate::shell::NodeHandle;
use crate::views::Status;

pub use limits::{Limits, LimitsConfig};

pub use chain::{BlockView, BlocksPage, CertificateView, MAX_BLOCKS_PER_PAGE, SubmitTx, Submitted};

/// The largest request body read. A transaction is at most `MAX_TX_BYTES` (8 KiB) encoded and
/// hex doubles it; 64 KiB leaves room for JSON framing without letting a client make the
/// node buffer megabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a request waits for the node loop. The loop answers in microseconds unless it is
/// overloaded or stopping; past this the client gets a 503 rather than a hung connection.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's routes over a running node, the writes and the event stream admitted through
/// `limits`.
pub fn router(node: NodeHandle, limits: Limits) -> Router {
    let write = axum::middleware::from_fn_with_state(limits.clone(), limits::admit_write);
    let stream = axum::middleware::from_fn_with_state(limits, limits::admit_stream);
    Router::new()
        .route("/", get(explorer::index))
        .route("/explorer/app.js", get(explorer::app))
        .route("/explorer/style.css", get(explorer::style))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/genesis", get(genesis))
        .route("/v1/params", get(params))
        .route("/v1/blocks", get(chain::blocks))
        .route("/v1/blocks/raw", get(chain::raw_blocks))
        .route("/v1/blocks/{height}", get(chain::block))
        .route("/v1/blocks/{height}/raw", get(chain::raw_block))
        .route("/v1/blocks/{height}/txs", get(network::txs))
        .route("/v1/blocks/{height}/txs/{index}", get(network::tx))
        .route("/v1/recent", get(network::recent).layer(write.clone()))
        .route("/v1/validators", get(network::validators))
        .route("/v1/audit", get(network::audit).layer(write.clone()))
        .route("/v1/txs", post(chain::submit_tx).layer(write.clone()))
        .route("/v1/txs/{hash}", get(chain::tx_state))
        .route("/v1/adverts", get(market::adverts))
        .route("/v1/adverts/{provider}/reach", get(market::reach))
        .route("/v1/quote", post(market::quote).layer(write))
        .route("/v1/jobs/{id}", get(jobs::job))
        .route("/v1/jobs/{id}/output", get(jobs::output))
        .route("/v1/accounts/{id}", get(accounts::account))
        .route("/v1/events", get(events::events).layer(stream))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// Serves the API on `listener` until `shutdown` resolves, then lets requests in flight finish.
/// Each request knows its client's address (for `limits`).
pub async fn serve(
    listener: TcpListener,
    node: NodeHandle,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(node, limits).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
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
    /// Seconds for a `Retry-After` header, if the client should wait.
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
            retry_after_s: None,
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
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            let (name, value) = limits::retry_after_header(seconds);
            response.headers_mut().insert(name, value);
        }
        response
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

/// `GET /v1/genesis`: the genesis document the node started from, as the genesis file holds
/// it. An auditor recomputes its hash (`attest_chain::GenesisFile::hash`) and compares it with
/// the one it pinned; the node's word for it is `genesis_hash` in `/v1/status`.
async fn genesis(State(node): State<NodeHandle>) -> Response {
    let text = node.genesis().to_json();
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// What `GET /v1/params` answers: the chain's identity and its contract parameters, which
/// clients read their fees and bonds from instead of compiling them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainParams {
    /// The chain id.
    pub chain_id: String,
    /// The hash of the genesis document.
    pub genesis_hash: attest_protocol::Hash,
    /// The contract parameters (fixed at genesis).
    pub params: attest_contracts_sim::Params,
}

/// `GET /v1/params`.
async fn params(State(node): State<NodeHandle>) -> Json<ChainParams> {
    let genesis = node.genesis();
    Json(ChainParams {
        chain_id: genesis.genesis.chain_id.to_string(),
        genesis_hash: node.genesis_hash(),
        params: genesis.genesis.params.clone(),
    })
}

/// `GET /metrics`: Prometheus (OpenMetrics) text. Encoded here, in the API task, from atomics
/// the loop updates: a scrape never waits for the loop.
async fn metrics(State(node): State<NodeHandle>) -> Response {
    let body = node.metrics().encode();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// The one path segment of a route like `/v1/jobs/{id}`, or why axum could not read it
/// (percent-encoding that is not UTF-8), in our error format.
fn segment(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match path {
        Ok(Path(s)) => Ok(s),
        Err(rejection) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            rejection.body_text(),
        )),
    }
}

/// `text` as a 32-byte hex id (`what` names it in the error): 400 `bad_hex` if it is not 64
/// hex characters.
fn parse_hex_id<T>(what: &str, text: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr<Err = ParseError>,
{
    text.parse().map_err(|e: ParseError| {
        let code = match e {
            ParseError::PublicKey(_) => "bad_account",
            _ => "bad_hex",
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{what} {text:?} is not valid: {e}"),
        )
    })
}

/// A job id from the path.
fn job_id(path: Result<Path<String>, PathRejection>) -> Result<JobId, ApiError> {
    parse_hex_id("job id", &segment(path)?)
}

/// An account id from the path: 64 hex characters that are an ed25519 public key.
fn account_id(path: Result<Path<String>, PathRejection>) -> Result<AccountId, ApiError> {
    parse_hex_id("account", &segment(path)?)
}

/// The 404 of something the node does not know.
/// Whether `?proof=true` was asked (the account and job routes' one query); anything else in
/// the query is a 400 that names it.
fn proof_asked(query: Option<&str>) -> Result<bool, ApiError> {
    match query.unwrap_or("") {
        "" | "proof=false" => Ok(false),
        "proof=true" => Ok(true),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("query `{other}`: the only query is proof=true or proof=false"),
        )),
    }
}

fn not_found(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
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
