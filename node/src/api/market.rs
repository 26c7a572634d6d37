//! The market as this node sees it: `GET /v1/adverts` (the advert book) and `POST /v1/quote`
//! (the gateway's pick of a provider for a job, which `attest submit` turns into an `OpenJob`
//! for the client to sign).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use attest_protocol::workload::ModelSpec;
use attest_protocol::{AccountId, Amount, DeviceName, ModelId, PublicKey};

use super::{ApiError, account_id, ask, json_rejection, parse_hex_id};
use attest_core::market::{HeldAdvert, NoProvider, Offer, Request};

use crate::shell::NodeHandle;
pub use crate::views::{AdvertReach, ReputationView};

/// One advert as `GET /v1/adverts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertView {
    /// The provider's account (the advert's signer).
    pub provider: AccountId,
    /// The node that serves it: its identity key.
    pub node: PublicKey,
    /// The same node as a libp2p PeerId.
    pub node_peer_id: String,
    /// The device profile.
    pub device: DeviceName,
    /// The models it serves.
    pub models: Vec<ModelId>,
    /// Free slots as this node sees them: the advert's count less the jobs this node's
    /// gateway assigned to the provider since.
    pub free_slots: u32,
    /// Price per generated token, in units.
    pub price_per_token: Amount,
    /// Advertised speed, thousandths of a token per second.
    pub tokens_per_sec_milli: u64,
    /// When the advert expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The advert's sequence number (newer replaces older).
    pub seq: u64,
}

impl AdvertView {
    fn new(held: &HeldAdvert) -> Self {
        let a = held.advert();
        Self {
            provider: *held.provider(),
            node: a.node,
            node_peer_id: a.node.peer_id(),
            device: a.device.clone(),
            models: a.models.iter().cloned().collect(),
            free_slots: held.free_slots(),
            price_per_token: a.price_per_token,
            tokens_per_sec_milli: a.tokens_per_sec_milli,
            expires_at_ms: a.expires_at_ms,
            seq: a.seq,
        }
    }
}

/// The answer to `GET /v1/adverts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adverts {
    /// Every unexpired advert the node holds, by provider account.
    pub adverts: Vec<AdvertView>,
}

/// `GET /v1/adverts`: the unexpired adverts in this node's book (at most
/// `market::adverts::MAX_PROVIDERS`, one per provider).
pub(super) async fn adverts(State(node): State<NodeHandle>) -> Result<Json<Adverts>, ApiError> {
    let held = ask(node.adverts()).await?;
    Ok(Json(Adverts {
        adverts: held.iter().map(AdvertView::new).collect(),
    }))
}

/// The body of `POST /v1/quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// The model to run (a catalogue id).
    pub model: String,
    /// The highest price per token the client accepts, in units.
    pub max_price_per_token: u64,
    /// The client's account, hex: never picked as its own provider. Optional, but a client
    /// that leaves it out may be offered itself, which the ledger refuses.
    #[serde(default)]
    pub client: Option<String>,
}

/// The answer to `POST /v1/quote`: the provider to name in `OpenJob`, and the advert terms
/// to copy into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The model quoted for.
    pub model: ModelId,
    /// The provider's account: `OpenJob.provider`.
    pub provider: AccountId,
    /// The provider's node key.
    pub node: PublicKey,
    /// The same node as a libp2p PeerId.
    pub node_peer_id: String,
    /// `OpenJob.device`.
    pub device: DeviceName,
    /// `OpenJob.price_per_token`, in units.
    pub price_per_token: Amount,
    /// Advertised speed, thousandths of a token per second.
    pub tokens_per_sec_milli: u64,
    /// The advert's seq.
    pub seq: u64,
    /// The advert's expiry, ms since the Unix epoch: open the job before it.
    pub expires_at_ms: u64,
    /// The provider's standing when picked.
    pub reputation: ReputationView,
}

impl Quote {
    fn new(model: ModelId, offer: Offer) -> Self {
        Self {
            model,
            provider: offer.provider,
            node: offer.node,
            node_peer_id: offer.node.peer_id(),
            device: offer.device,
            price_per_token: offer.price_per_token,
            tokens_per_sec_milli: offer.tokens_per_sec_milli,
            seq: offer.seq,
            expires_at_ms: offer.expires_at_ms,
            reputation: offer.reputation.into(),
        }
    }
}

/// `POST /v1/quote`: the gateway's pick among live adverts for the model under the price
/// cap. A pick counts against the provider's free slots until its next advert, as the job
/// it is for will.
pub(super) async fn quote(
    State(node): State<NodeHandle>,
    body: Result<Json<QuoteRequest>, JsonRejection>,
) -> Result<Json<Quote>, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let unknown_model =
        |detail: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_model", detail);
    let model: ModelId = body
        .model
        .parse()
        .map_err(|e| unknown_model(format!("model {:?}: {e}", body.model)))?;
    ModelSpec::find(model.as_str()).map_err(|e| unknown_model(e.to_string()))?;
    let exclude = match &body.client {
        Some(client) => Some(parse_hex_id::<AccountId>("client", client)?),
        None => None,
    };
    let request = Request {
        model: model.clone(),
        max_price_per_token: Amount(body.max_price_per_token),
        exclude,
    };
    match ask(node.quote(request)).await? {
        Ok(offer) => Ok(Json(Quote::new(model, offer))),
        Err(e) => Err(no_provider(&e)),
    }
}

/// Why no provider was picked. 404: nobody advertises the model at all; 409: providers
/// exist, but the market's state (standing, slots, prices) rules them all out now.
fn no_provider(e: &NoProvider) -> ApiError {
    let (status, code) = match e {
        NoProvider::NoAdvert { .. } => (StatusCode::NOT_FOUND, "no_advert"),
        NoProvider::AllIneligible { .. } => (StatusCode::CONFLICT, "no_eligible_provider"),
        NoProvider::Uncheckable { .. } => (StatusCode::CONFLICT, "uncheckable"),
        NoProvider::NoFreeSlots { .. } => (StatusCode::CONFLICT, "no_free_slots"),
        NoProvider::OverPriceCap { .. } => (StatusCode::CONFLICT, "over_price_cap"),
    };
    ApiError::new(status, code, e.to_string())
}

/// `GET /v1/adverts/{provider}/reach`: which of this node's connected peers hold the
/// provider's advert, each asked now over request-response (answers within 3 s; a peer that
/// does not is listed as not answering). 503 `busy` while 8 such probes run.
pub(super) async fn reach(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AdvertReach>, ApiError> {
    let provider = account_id(path)?;
    match ask(node.advert_reach(provider)).await? {
        Some(reach) => Ok(Json(reach)),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{} advert probes are running; retry in a few seconds",
                crate::reach::MAX_PROBES
            ),
        )),
    }
}
