//! Accounts: `GET /v1/accounts/{id}`: balance, nonce, stake, and a provider record computed
//! from the ledger state.

use super::{ApiError, account_id, ask};
use crate::shell::NodeHandle;
pub use crate::views::{
    AccountSnapshot, MAX_LISTED_SLASHES, PhaseCounts, ProviderRecord, ReasonView, SlashView,
    StakeView, UnbondView,
};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};

/// `GET /v1/accounts/{id}`.
pub(super) async fn account(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountSnapshot>, ApiError> {
    let id = account_id(path)?;
    Ok(Json(ask(node.account(id)).await?))
}
