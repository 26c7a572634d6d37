//! Capacity adverts in the core: a provider signs and gossips its offer on a timer, every node
//! keeps a bounded, expiring advert book from what it hears, and a gateway quotes a job from
//! the book. Pure: the time comes in with each call.

use attest_protocol::advert::CapacityAdvert;
use attest_protocol::{Amount, BoundedVec, Canonical, DeviceName, ModelId, PublicKey, Signed};

use super::{Effect, GossipVerdict, NodeCore, Timer};
use crate::market::adverts::{AdvertBook, NoProvider, Offer, Request};
use crate::net::topic;

/// How often a provider sends its advert again (and the book drops expired ones).
pub const ADVERT_INTERVAL_MS: u64 = 5_000;
/// How long an advert is valid: a few intervals, so one lost advert does not empty the
/// book, and a provider that stops serving leaves it within 20 s.
pub const ADVERT_TTL_MS: u64 = 20_000;
/// The least time between two adverts sent for capacity changes (a busy provider would
/// otherwise advertise with every job).
pub const MIN_READVERTISE_MS: u64 = 1_000;

/// What a provider offers: fixed for the run, except free slots, counted live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertTerms {
    /// The node's identity key (its PeerId), bound to the account at staking.
    pub node: PublicKey,
    /// The device profile.
    pub device: DeviceName,
    /// The models the device holds.
    pub models: Vec<ModelId>,
    /// Jobs the device runs at once.
    pub slots: u32,
    /// Price per generated token.
    pub price_per_token: Amount,
    /// Decode speed, in thousandths of a token per second.
    pub tokens_per_sec_milli: u64,
}

/// The device names an advert book accepts: every profile this build knows.
pub fn known_devices() -> Vec<&'static str> {
    crate::accel::PROFILES.iter().map(|p| p.name).collect()
}

/// A new, empty advert book.
pub fn new_book() -> AdvertBook {
    AdvertBook::new(&known_devices())
}

impl NodeCore {
    /// The advert book (expired entries may linger until the next advert timer).
    pub fn adverts(&self) -> &AdvertBook {
        &self.book
    }

    /// The provider a gateway would name for `request` now: the best unexpired advert for
    /// the model under the price cap, or why there is none.
    pub fn quote(&self, now_ms: u64, request: &Request) -> Result<Offer, NoProvider> {
        self.book.pick(now_ms, request, self.chain.state())
    }

    /// The gateway named `offer`'s provider in a job: one slot fewer until its next advert.
    pub fn note_assigned(&mut self, offer: &Offer) {
        self.book.note_assigned(&offer.provider);
    }

    /// The advert timer: expire the book, and as a serving provider with stake, advertise.
    pub(super) fn on_advert_timer(&mut self, now_ms: u64) {
        self.arm(now_ms + ADVERT_INTERVAL_MS, Timer::Advert);
        self.book.expire(now_ms);
        self.advertise(now_ms);
    }

    /// After our running jobs changed: advertise at once if we just filled our last slot or
    /// freed the first one, so gateways stop or start sending work without waiting for the
    /// timer. At most one extra advert per [`MIN_READVERTISE_MS`].
    pub(super) fn on_capacity_change(&mut self, now_ms: u64) {
        let Some(terms) = &self.config.market.advert else {
            return;
        };
        let busy = u32::try_from(self.duties.providing()).unwrap_or(u32::MAX);
        let free = terms.slots.saturating_sub(busy);
        let (full_now, was_full) = (free == 0, self.advertised_free == Some(0));
        if full_now != was_full && now_ms >= self.last_advert_ms + MIN_READVERTISE_MS {
            self.advertise(now_ms);
        }
    }

    /// Signs and gossips our advert, if we serve, hold an eligible stake and have terms.
    fn advertise(&mut self, now_ms: u64) {
        let (Some(terms), Some(key)) = (self.config.market.advert.clone(), self.key.clone()) else {
            return;
        };
        if !self.config.market.serve {
            return;
        }
        let state = self.chain.state();
        let eligible = state
            .stake(&key.public())
            .is_some_and(|s| s.eligible(state.params().min_stake));
        if !eligible {
            return;
        }
        let busy = u32::try_from(self.duties.providing()).unwrap_or(u32::MAX);
        let Ok(models) = BoundedVec::new(terms.models.clone()) else {
            return;
        };
        let advert = CapacityAdvert {
            node: terms.node,
            device: terms.device.clone(),
            models,
            free_slots: terms.slots.saturating_sub(busy),
            price_per_token: terms.price_per_token,
            tokens_per_sec_milli: terms.tokens_per_sec_milli,
            expires_at_ms: now_ms + ADVERT_TTL_MS,
            // Wall-clock milliseconds only go up, also across a restart.
            seq: now_ms,
        };
        let signed = Signed::sign(self.chain.chain_id(), &key, advert);
        let data = signed.encode();
        // Gossip does not deliver our own message back: our own book takes it directly.
        if let Err(e) =
            self.book
                .verify_and_insert(now_ms, self.chain.chain_id(), signed, self.chain.state())
        {
            tracing::warn!(error = %e, "our own advert was refused");
            return;
        }
        self.effects.push_back(Effect::Broadcast {
            topic: topic::ADVERTS,
            data,
        });
        self.last_advert_ms = now_ms;
        self.advertised_free = Some(terms.slots.saturating_sub(busy));
    }

    /// An advert from gossip: kept if valid; a forged or malformed one costs its sender.
    pub(super) fn gossip_advert(&mut self, now_ms: u64, data: &[u8]) -> GossipVerdict {
        let signed = match Signed::<CapacityAdvert>::decode(data) {
            Ok(s) => s,
            Err(e) => return GossipVerdict::Reject(e.to_string()),
        };
        let chain = self.chain.chain_id().clone();
        match self
            .book
            .verify_and_insert(now_ms, &chain, signed, self.chain.state())
        {
            Ok(_) => GossipVerdict::Accept,
            Err(e) if e.penalise() => GossipVerdict::Reject(e.to_string()),
            Err(e) => GossipVerdict::Ignore(e.to_string()),
        }
    }
}
