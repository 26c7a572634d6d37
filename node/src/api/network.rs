//! What the explorer reads besides the ledger's own routes: `GET /v1/recent` (the newest
//! blocks, jobs, validation latencies, disputes and slashes this node committed),
//! `GET /v1/validators` (the set that decides the next height), a block's transactions decoded
//! (`GET /v1/blocks/{height}/txs`, `.../txs/{index}`), and `GET /v1/audit` (this node
//! re-verifying its own stored blocks from genesis).
//!
//! The audit here is **the node's word about itself**: it reads the node's own store. An
//! auditor who does not trust the node runs `attest audit --node URL --genesis-hash H` on a
//! machine of their own; the answer says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use attest_chain::audit::{self, AuditRange, AuditReport};
use attest_protocol::{AccountId, Amount, Height, Nonce, Signature, TxHash, tx_hash};

use super::{ApiError, segment};
use crate::recent::{Parts, RecentView};
use crate::shell::{NodeHandle, monotonic};
use crate::views::ValidatorsView;

/// Transactions one `GET /v1/blocks/{height}/txs` page decodes at most: an `OpenJob` carries
/// up to 4 KiB of input (8 KiB of hex), so a page is at most ~600 KB of JSON.
pub const MAX_TXS_PER_PAGE: usize = 64;

/// The most blocks `GET /v1/audit` replays (from height 1, whatever the range). Past it the
/// node refuses and names the command that audits from elsewhere: a request must not cost
/// the node minutes of a core.
pub const MAX_NODE_AUDIT_BLOCKS: u64 = 20_000;

/// The most transactions `GET /v1/audit` replays: a few seconds of a core at the measured
/// audit rates, however full the blocks.
pub const MAX_NODE_AUDIT_TXS: u64 = 100_000;

/// Why the node's own audit stopped reading blocks early.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("the request ended")]
    Cancelled,
    #[error("over the node's audit budget of transactions")]
    TooLong,
    #[error("{0}")]
    Store(attest_core::store::StoreError),
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `GET /v1/recent[?parts=blocks,jobs,validation,disputes,slashes]`.
pub(super) async fn recent(
    State(node): State<NodeHandle>,
    RawQuery(query): RawQuery,
) -> Result<Json<RecentView>, ApiError> {
    let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", detail);
    let mut parts = Parts::ALL;
    for pair in query.as_deref().unwrap_or("").split('&') {
        match pair.split_once('=') {
            _ if pair.is_empty() => {}
            Some(("parts", list)) => parts = Parts::parse(list).map_err(bad)?,
            _ => return Err(bad(format!("query `{pair}`: the one filter is parts=a,b"))),
        }
    }
    Ok(Json(node.recent(parts)))
}

/// `GET /v1/validators`.
pub(super) async fn validators(State(node): State<NodeHandle>) -> Json<ValidatorsView> {
    Json(node.validators())
}

/// A transaction as `GET /v1/blocks/{height}/txs` decodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxView {
    /// The block's height.
    pub height: Height,
    /// Its place in the block, from 0.
    pub index: usize,
    /// Its hash (`attest/tx/v1`); an `OpenJob`'s hash is the job id.
    pub hash: TxHash,
    /// The signer.
    pub sender: AccountId,
    /// The signature (the block's certificate vouches that the validators checked it; the
    /// audit checks it again).
    pub signature: Signature,
    /// The sender's nonce.
    pub nonce: Nonce,
    /// The fee paid to the proposer.
    pub fee: Amount,
    /// `transfer`, `stake`, `unstake`, `open_job`, `commit_result`, `verdict`, `dispute` or
    /// `equivocation`.
    pub kind: String,
    /// The action's fields as the protocol names them (bytes as hex).
    pub action: Value,
}

/// A page of a block's transactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxPage {
    /// The block's height.
    pub height: Height,
    /// Transactions in the block.
    pub total: usize,
    /// The decoded transactions from `from`, at most [`MAX_TXS_PER_PAGE`].
    pub txs: Vec<TxView>,
    /// Where the next page starts, `null` after the last.
    pub next: Option<usize>,
}

/// `snake_case` of an action's variant name.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn tx_view(height: Height, index: usize, tx: &attest_protocol::SignedTx) -> TxView {
    // Every action serialises as `{"Variant": fields}`.
    let (kind, action) = match serde_json::to_value(&tx.body.action) {
        Ok(Value::Object(outer)) => match outer.into_iter().next() {
            Some((name, fields)) => (snake(&name), fields),
            None => ("unknown".to_owned(), Value::Null),
        },
        _ => ("unknown".to_owned(), Value::Null),
    };
    TxView {
        height,
        index,
        hash: tx_hash(tx),
        sender: tx.signer,
        signature: tx.signature,
        nonce: tx.body.nonce,
        fee: tx.body.fee,
        kind,
        action,
    }
}

/// The block at `height`'s transactions `from..` (a page), or a 404 naming the height.
async fn block_txs(node: &NodeHandle, height: u64, from: usize) -> Result<TxPage, ApiError> {
    let stored = super::ask(node.block(Height(height)))
        .await?
        .map_err(|e| super::chain::store_error(&e))?;
    let Some((block, _)) = stored else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no block is committed at height {height}"),
        ));
    };
    let total = block.txs.len();
    let end = from.saturating_add(MAX_TXS_PER_PAGE).min(total);
    let txs = block
        .txs
        .iter()
        .enumerate()
        .skip(from)
        .take(end.saturating_sub(from))
        .map(|(i, tx)| tx_view(Height(height), i, tx))
        .collect();
    Ok(TxPage {
        height: Height(height),
        total,
        txs,
        next: (end < total).then_some(end),
    })
}

/// `GET /v1/blocks/{height}/txs[?from=I]`.
pub(super) async fn txs(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<TxPage>, ApiError> {
    let height = super::chain::parse_height("height", &segment(path)?)?;
    let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", detail);
    let mut from = 0;
    for pair in query.as_deref().unwrap_or("").split('&') {
        match pair.split_once('=') {
            _ if pair.is_empty() => {}
            Some(("from", i)) => {
                from = i.parse().map_err(|_| {
                    bad(format!("from {i:?} is not a transaction index (0 or more)"))
                })?;
            }
            _ => {
                return Err(bad(format!(
                    "query `{pair}`: the one parameter is from=INDEX"
                )));
            }
        }
    }
    Ok(Json(block_txs(&node, height, from).await?))
}

/// `GET /v1/blocks/{height}/txs/{index}`.
pub(super) async fn tx(
    State(node): State<NodeHandle>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<TxView>, ApiError> {
    let (height, index) = path.map(|Path(p)| p).map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_path", rejection.body_text())
    })?;
    let height = super::chain::parse_height("height", &height)?;
    let index: usize = index.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_index",
            format!("transaction index {index:?} is not a non-negative integer"),
        )
    })?;
    let page = block_txs(&node, height, index).await?;
    page.txs
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "block {height} has {} transactions; there is none at index {index}",
                    page.total
                ),
            )
        })
        .map(Json)
}

/// `GET /v1/audit`'s answer: the report, and who ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAudit {
    /// Always `"this node, over its own store"`: the node's word about itself.
    pub run_by: String,
    /// How to audit without trusting this node.
    pub independent: String,
    /// The audit report (`attest.audit/1`, as `attest audit --json` prints it).
    pub report: AuditReport,
}

/// `GET /v1/audit[?from=H][&to=H]`: replays this node's stored blocks from height 1 to `to`
/// (its height by default) against its genesis, reporting on `from..=to`. One runs at a time.
pub(super) async fn audit(
    State(node): State<NodeHandle>,
    RawQuery(query): RawQuery,
) -> Result<Json<NodeAudit>, ApiError> {
    let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", detail);
    let (mut from, mut to) = (None, None);
    for pair in query.as_deref().unwrap_or("").split('&') {
        let slot = match pair.split_once('=') {
            _ if pair.is_empty() => continue,
            Some(("from", h)) => (&mut from, h),
            Some(("to", h)) => (&mut to, h),
            _ => {
                return Err(bad(format!(
                    "query `{pair}`: the parameters are from and to"
                )));
            }
        };
        *slot.0 = Some(Height(super::chain::parse_height(
            if pair.starts_with("from") {
                "from"
            } else {
                "to"
            },
            slot.1,
        )?));
    }
    let status = node.status().await.map_err(ApiError::unavailable)?;
    if status.base_height > Height(0) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_history",
            format!(
                "this node joined by state sync at height {}, so it holds no blocks before it \
                 and cannot replay from genesis; audit against a node that has every block",
                status.base_height
            ),
        ));
    }
    if status.height == Height(0) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_blocks",
            "no block is committed yet: there is nothing to audit",
        ));
    }
    let to = to.unwrap_or(status.height).min(status.height);
    let range = AuditRange::new(from, Some(to)).map_err(|e| bad(e.to_string()))?;
    let too_long = |what: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "audit_too_long",
            format!(
                "an audit replays every block from height 1; {what}. Run `attest audit --node \
                 URL --from {} --to {to}` on your own machine",
                range.from
            ),
        )
    };
    if to.0 > MAX_NODE_AUDIT_BLOCKS {
        return Err(too_long(format!(
            "this node replays at most {MAX_NODE_AUDIT_BLOCKS} blocks for a request (asked {to})"
        )));
    }
    let Ok(permit) = Arc::clone(node.audit_gate()).try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_busy",
            "this node runs one audit at a time and one is running; ask again when it ends",
        ));
    };
    let genesis = node.genesis().clone();
    let reader = node.block_reader();
    // Dropped with this handler (the client went away, or the server is stopping): the
    // audit stops at its next block instead of holding a core and the permit.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let cancelled = Arc::clone(&stop.0);
    let over = Arc::new(AtomicBool::new(false));
    let over_budget = Arc::clone(&over);
    let report = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut txs: u64 = 0;
        let blocks = reader.blocks(Height(1)..=to).map(move |item| {
            if cancelled.load(Ordering::Relaxed) {
                return Err(Stopped::Cancelled);
            }
            let block = item.map_err(Stopped::Store)?;
            txs = txs.saturating_add(block.0.txs.len() as u64);
            if txs > MAX_NODE_AUDIT_TXS {
                over_budget.store(true, Ordering::Relaxed);
                return Err(Stopped::TooLong);
            }
            Ok(block)
        });
        match audit::audit(&genesis, blocks, range, monotonic) {
            Ok(report) => report,
            Err(failed) => *failed.report,
        }
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("the audit stopped: {e}")))?;
    drop(stop);
    if over.load(Ordering::Relaxed) {
        return Err(too_long(format!(
            "this node replays at most {MAX_NODE_AUDIT_TXS} transactions for a request"
        )));
    }
    Ok(Json(NodeAudit {
        run_by: "this node, over its own store".to_owned(),
        independent: format!(
            "attest audit --node URL --genesis-hash {} --from {} --to {to}",
            status.genesis_hash, range.from
        ),
        report,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_variants_are_named_in_snake_case() {
        assert_eq!(snake("OpenJob"), "open_job");
        assert_eq!(snake("CommitResult"), "commit_result");
        assert_eq!(snake("Transfer"), "transfer");
    }
}
