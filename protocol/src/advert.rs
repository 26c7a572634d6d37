//! Capacity adverts: what a provider offers, signed by its account, short-lived.

use serde::{Deserialize, Serialize};

use crate::bounded::BoundedVec;
use crate::encoding::Canonical;
use crate::keys::PublicKey;
use crate::limits::{MAX_ADVERT_MODELS, MAX_SMALL_MESSAGE_BYTES};
use crate::signed::Signable;
use crate::types::{Amount, DeviceName, ModelId};

/// A provider's offer of capacity. The signer is the provider's account; `node` is the node
/// that serves it (its PeerId), which the ledger binds to the account at staking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityAdvert {
    /// The serving node's identity key.
    pub node: PublicKey,
    /// The accelerator profile.
    pub device: DeviceName,
    /// The models served.
    pub models: BoundedVec<ModelId, MAX_ADVERT_MODELS>,
    /// Jobs the provider can accept now.
    pub free_slots: u32,
    /// Price per generated token.
    pub price_per_token: Amount,
    /// Measured generation speed, in thousandths of a token per second.
    pub tokens_per_sec_milli: u64,
    /// When the advert stops being valid, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Increases with each advert from the same provider; a lower one is stale.
    pub seq: u64,
}

impl Signable for CapacityAdvert {
    const SIGNING_TAG: &'static str = "attest/sig/advert/v1";
}

impl Canonical for CapacityAdvert {
    const NAME: &'static str = "capacity advert";
    const MAX_ENCODED_LEN: usize = MAX_SMALL_MESSAGE_BYTES;
}
