//! Accounts: `GET /v1/accounts/{id}`: balance, nonce, stake, and a provider record computed
//! from the ledger state.

use super::{ApiError, account_id, ask, proof_asked};
use crate::shell::NodeHandle;
pub use crate::views::{
    AccountSnapshot, MAX_LISTED_SLASHES, PhaseCounts, ProviderRecord, ReasonView, SlashView,
    StakeView, UnbondView,
};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};

/// `GET /v1/accounts/{id}`.
pub(super) async fn account(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<AccountSnapshot>, ApiError> {
    let id = account_id(path)?;
    let proof = proof_asked(query.as_deref())?;
    Ok(Json(ask(node.account(id, proof)).await?))
}
