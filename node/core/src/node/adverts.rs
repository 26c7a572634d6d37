//! Capacity adverts in the core: a provider signs and gossips its offer on a timer, every node
//! keeps a bounded, expiring advert book from what it hears, and a gateway quotes a job from
//! the book. Pure: the time comes in with each call.

use attest_protocol::advert::CapacityAdvert;
use attest_protocol::{BoundedVec, Canonical, Signed};

use super::{Effect, GossipVerdict, NodeCore, Timer};
use crate::market::{AdvertBook, NoProvider, Offer, Request};
use crate::topic;

/// How often a provider sends its advert again (and the book drops expired ones).
pub const ADVERT_INTERVAL_MS: u64 = 5_000;
/// How long an advert is valid: a few intervals, so one lost advert does not empty the
/// book, and a provider that stops serving leaves it within 20 s.
pub const ADVERT_TTL_MS: u64 = 20_000;
/// The least time between two adverts sent for capacity changes (a busy provider would
/// otherwise advertise with every job).
pub const MIN_READVERTISE_MS: u64 = 1_000;

pub use crate::market::book::{AdvertTerms, known_devices, new_book};

impl NodeCore {
    /// The advert book (expired entries may linger until the next advert timer).
    pub fn adverts(&self) -> &AdvertBook {
        &self.market.book
    }

    /// The provider a gateway would name for `request` now: the best unexpired advert for
    /// the model under the price cap, or why there is none.
    pub fn quote(&self, now_ms: u64, request: &Request) -> Result<Offer, NoProvider> {
        self.market
            .book
            .pick(now_ms, request, self.ledger.chain.state())
    }

    /// The advert timer: expire the book, and as a serving provider with stake, advertise.
    pub(super) fn on_advert_timer(&mut self, now_ms: u64) {
        self.arm(now_ms + ADVERT_INTERVAL_MS, Timer::Advert);
        self.market.book.expire(now_ms);
        self.advertise(now_ms);
    }

    /// After our running jobs changed: advertise at once if we just filled our last slot or
    /// freed the first one, so gateways stop or start sending work without waiting for the
    /// timer. At most one extra advert per [`MIN_READVERTISE_MS`].
    pub(super) fn on_capacity_change(&mut self, now_ms: u64) {
        let Some(terms) = &self.config.market.advert else {
            return;
        };
        let busy = u32::try_from(self.market.duties.providing()).unwrap_or(u32::MAX);
        let free = terms.slots.saturating_sub(busy);
        let (full_now, was_full) = (free == 0, self.market.advertised_free == Some(0));
        if full_now != was_full && now_ms >= self.market.last_advert_ms + MIN_READVERTISE_MS {
            self.advertise(now_ms);
        }
    }

    /// Signs and gossips our advert, if we serve, hold an eligible stake and have terms. It
    /// lists only the models both our device and the device our stake binds on the ledger can
    /// hold: the contract assigns by the bound one, the accelerator runs on ours.
    fn advertise(&mut self, now_ms: u64) {
        let (Some(terms), Some(key)) = (self.config.market.advert.clone(), self.key.clone()) else {
            return;
        };
        if !self.config.market.serve {
            return;
        }
        let state = self.ledger.chain.state();
        let Some(stake) = state
            .stake(&key.public())
            .filter(|s| s.eligible(state.params().min_stake))
        else {
            return;
        };
        let servable: Vec<_> = terms
            .models
            .iter()
            .filter(|m| stake.capability.can_run(m.as_str()))
            .cloned()
            .collect();
        if servable.len() < terms.models.len() && !self.market.warned_device {
            self.market.warned_device = true;
            tracing::warn!(
                bound = %stake.capability.device,
                bound_memory_bytes = stake.capability.memory_bytes,
                configured = %terms.device,
                "our stake binds a device that holds fewer models than the configured one; \
                 only those are advertised (restake to bind this device)"
            );
        }
        let busy = u32::try_from(self.market.duties.providing()).unwrap_or(u32::MAX);
        let Ok(models) = BoundedVec::new(servable) else {
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
        let signed = Signed::sign(self.ledger.chain.chain_id(), &key, advert);
        let data = signed.encode();
        // Gossip does not deliver our own message back: our own book takes it directly.
        if let Err(e) = self.market.book.verify_and_insert(
            now_ms,
            self.ledger.chain.chain_id(),
            signed,
            self.ledger.chain.state(),
        ) {
            tracing::warn!(error = %e, "our own advert was refused");
            return;
        }
        self.effects.push_back(Effect::Broadcast {
            topic: topic::ADVERTS,
            data,
        });
        self.market.last_advert_ms = now_ms;
        self.market.advertised_free = Some(terms.slots.saturating_sub(busy));
    }

    /// An advert from gossip: kept if valid; a forged or malformed one costs its sender.
    pub(super) fn gossip_advert(&mut self, now_ms: u64, data: &[u8]) -> GossipVerdict {
        let signed = match Signed::<CapacityAdvert>::decode(data) {
            Ok(s) => s,
            Err(e) => return GossipVerdict::Reject(e.to_string()),
        };
        let chain = self.ledger.chain.chain_id().clone();
        match self
            .market
            .book
            .verify_and_insert(now_ms, &chain, signed, self.ledger.chain.state())
        {
            Ok(_) => GossipVerdict::Accept,
            Err(e) if e.penalise() => GossipVerdict::Reject(e.to_string()),
            Err(e) => GossipVerdict::Ignore(e.to_string()),
        }
    }
}
