//! The advert book: a bounded, expiring set of verified capacity adverts, one per provider,
//! and the gateway's choice of a provider for a job.
//!
//! # Admission
//!
//! [`AdvertBook::insert`] takes an advert whose signature was already checked (a
//! [`Verified`]); [`AdvertBook::verify_and_insert`] checks it first. The rules run in this
//! order, and the first that fails names the [`AdvertError`]:
//!
//! 1. its encoding fits the protocol's bound, every model is in the catalogue and the device
//!    is one this node knows;
//! 2. its expiry is after `now_ms` and at most [`MAX_ADVERT_TTL_MS`] plus
//!    [`MAX_CLOCK_SKEW_MS`] after it;
//! 3. the signer has stake, is active, has at least `min_stake` bonded, and the advert's node
//!    key is the one bound to the signer on the ledger;
//! 4. its `seq` is above that of the live advert held for the same provider, if any.
//!
//! A refused advert changes nothing. Each error says, through [`AdvertError::penalise`],
//! whether the peer that relayed it misbehaved.
//!
//! # Bounds
//!
//! The book holds one advert per provider account (a newer `seq` replaces the older), so
//! staking, not message volume, decides how many entries can exist, and at most
//! [`MAX_PROVIDERS`] of them. When full, the entry closest to expiry makes room, unless the
//! newcomer would expire even sooner. Entries are kept in `BTreeMap`s, so iteration and
//! [`AdvertBook::pick`] are the same on every machine.
//!
//! # Matching
//!
//! [`AdvertBook::pick`] chooses among live adverts serving the model, whose provider is still
//! eligible in the state, with a free slot and a price within the cap. It ranks them by
//! [`Reputation::tier`] (higher first), then price (lower first), then measured speed
//! (higher first), then account bytes (lower first), so equal inputs give equal picks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use attest_contracts_sim::{StakeStatus, State};
use attest_protocol::encoding::{Canonical, encode};
use attest_protocol::workload::ModelSpec;
use attest_protocol::{
    AccountId, Amount, CapacityAdvert, ChainId, DeviceName, ModelId, PublicKey, SignatureError,
    Signed, Verified,
};

/// Providers the book holds at most, one advert each. A provider must hold `min_stake`, so a
/// real network has far fewer; 1,024 is well above any testnet, an entry is under 1 KiB (at
/// most 16 model ids of 48 bytes and a few fixed fields), so the book stays under ~1 MiB, and
/// a pick scans it in microseconds.
pub const MAX_PROVIDERS: usize = 1024;

/// The longest an advert may live: its expiry is at most this far after the time we receive
/// it. Free slots and prices go stale within seconds as jobs land; a provider that goes
/// offline should stop attracting jobs (which would then miss their deadline) within a
/// minute, and a replayed old advert should die as quickly. Providers are expected to
/// advertise with a shorter TTL (say 30 s) and refresh well before it ends.
pub const MAX_ADVERT_TTL_MS: u64 = 60_000;

/// Slack on [`MAX_ADVERT_TTL_MS`] for the provider's clock running ahead of ours. Only an
/// expiry beyond both is refused as too far ahead (and penalised), so an honest provider
/// with a few seconds of skew is never punished.
pub const MAX_CLOCK_SKEW_MS: u64 = 5_000;

/// Weight of one slash against one settled job in [`Reputation::score`]. A slash costs the
/// provider part of its stake and a client a missed deadline or a dispute, so one outweighs
/// several good jobs.
pub const SLASH_WEIGHT: u64 = 8;

/// What an accepted advert did to the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A provider the book did not hold; there was room.
    Added,
    /// The provider's held advert was replaced by this newer one (or by any live one, if
    /// the held advert had expired).
    Replaced {
        /// The `seq` of the advert it replaced.
        previous_seq: u64,
    },
    /// A provider the book did not hold; the book was full, so the advert closest to expiry
    /// was dropped to make room.
    AddedEvicting {
        /// The provider whose advert was dropped.
        evicted: AccountId,
    },
}

/// Why an advert was refused. [`AdvertError::penalise`] says whether the relaying peer
/// misbehaved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// The signature does not verify for this chain ([`AdvertBook::verify_and_insert`] only).
    #[error("advert {0}")]
    BadSignature(#[from] SignatureError),
    /// The signed advert encodes to more bytes than the protocol allows. Decoding already
    /// bounds gossip, so this catches only adverts built locally under other limits.
    #[error("advert is {len} bytes encoded; the limit is {max}")]
    Oversized {
        /// Its encoded size.
        len: usize,
        /// The protocol's bound for a signed advert.
        max: usize,
    },
    /// The advert lists a model that is not in the catalogue.
    #[error("advert by {provider} lists model {model}, which is not in the catalogue")]
    UnknownModel {
        /// The signer.
        provider: AccountId,
        /// The first unknown model.
        model: ModelId,
    },
    /// The advert names a device profile this node does not know.
    #[error("advert by {provider} names device {device}, which this node does not know")]
    UnknownDevice {
        /// The signer.
        provider: AccountId,
        /// The device named.
        device: DeviceName,
    },
    /// The advert's expiry is not after `now_ms`.
    #[error("advert by {provider} expired at {expires_at_ms} ms; now is {now_ms} ms")]
    Expired {
        /// The signer.
        provider: AccountId,
        /// Its expiry.
        expires_at_ms: u64,
        /// The time it was offered.
        now_ms: u64,
    },
    /// The advert's expiry is more than [`MAX_ADVERT_TTL_MS`] plus [`MAX_CLOCK_SKEW_MS`]
    /// after `now_ms`.
    #[error(
        "advert by {provider} expires at {expires_at_ms} ms, after the latest allowed {latest_ms} ms"
    )]
    TooFarAhead {
        /// The signer.
        provider: AccountId,
        /// Its expiry.
        expires_at_ms: u64,
        /// The latest expiry accepted at the time it was offered.
        latest_ms: u64,
    },
    /// The signer has no stake entry on the ledger.
    #[error("advert signer {provider} has no stake")]
    Unstaked {
        /// The signer.
        provider: AccountId,
    },
    /// The signer is jailed or banned.
    #[error("advert signer {provider} is {status:?}")]
    NotActive {
        /// The signer.
        provider: AccountId,
        /// Its standing.
        status: StakeStatus,
    },
    /// The signer's bonded stake is below the chain's `min_stake` (for instance because it is
    /// unbonding).
    #[error("advert signer {provider} has {bonded} bonded; the minimum is {min}")]
    StakeBelowMinimum {
        /// The signer.
        provider: AccountId,
        /// Its bonded stake.
        bonded: Amount,
        /// The chain's `min_stake`.
        min: Amount,
    },
    /// The advert's node key is not the one bound to the signer on the ledger.
    #[error("advert by {provider} names node {node}, which is bound to {bound_to:?}")]
    NodeNotBound {
        /// The signer.
        provider: AccountId,
        /// The node key the advert names.
        node: PublicKey,
        /// The account that node key is bound to, if any.
        bound_to: Option<AccountId>,
    },
    /// The book already holds exactly this advert, live.
    #[error("advert by {provider} with seq {seq} is already held")]
    Duplicate {
        /// The signer.
        provider: AccountId,
        /// Its seq.
        seq: u64,
    },
    /// The book holds a live advert from the same provider with a `seq` at least as high (a
    /// different advert with the same `seq` is stale too: the first one seen stays).
    #[error("advert by {provider} has seq {seq}; the held one has seq {held}")]
    Stale {
        /// The signer.
        provider: AccountId,
        /// Its seq.
        seq: u64,
        /// The held advert's seq.
        held: u64,
    },
    /// The book is full of live adverts that all expire no sooner than this one.
    #[error(
        "advert book is full ({capacity}); this advert expires at {expires_at_ms} ms, the soonest held at {soonest_ms} ms"
    )]
    BookFull {
        /// The book's bound.
        capacity: usize,
        /// The refused advert's expiry.
        expires_at_ms: u64,
        /// The soonest expiry among held adverts.
        soonest_ms: u64,
    },
}

impl AdvertError {
    /// Whether the peer that relayed the advert should be penalised (a gossipsub `Reject`)
    /// rather than the advert merely dropped (`Ignore`). A relay must run these same checks
    /// before forwarding, so it is to blame for what any honest node would refuse whatever
    /// its clock and its view of the ledger.
    pub fn penalise(&self) -> bool {
        match self {
            // Anyone can check a signature; forwarding a bad one is misbehaviour.
            AdvertError::BadSignature(_) => true,
            // Both are fixed by the protocol crate every node shares.
            AdvertError::Oversized { .. } | AdvertError::UnknownModel { .. } => true,
            // Device profiles live in the node, not the protocol, so an honest peer running a
            // newer version may know a profile this one does not.
            AdvertError::UnknownDevice { .. } => false,
            // Gossip takes time and clocks differ: an advert can expire in flight.
            AdvertError::Expired { .. } => false,
            // The skew allowance already covers honest clocks; an expiry beyond it is an
            // attempt to outlive the TTL.
            AdvertError::TooFarAhead { .. } => true,
            // Our ledger view may lag or lead the relay's by a block: a stake, an unbond or a
            // jailing can be in a block one of us has not applied yet.
            AdvertError::Unstaked { .. }
            | AdvertError::NotActive { .. }
            | AdvertError::StakeBelowMinimum { .. } => false,
            // The signer has stake (checked first), and an account's node binding never
            // changes once made, so every node agrees this advert is forged or misdirected.
            AdvertError::NodeNotBound { .. } => true,
            // Gossip repeats messages and reorders them across mesh paths; a provider that
            // reuses a seq harms only its own advert.
            AdvertError::Duplicate { .. } | AdvertError::Stale { .. } => false,
            // A local resource limit, not the peer's doing.
            AdvertError::BookFull { .. } => false,
        }
    }
}

/// A provider's standing, derived from the ledger: the jobs it settled and the slashes it
/// took (as provider, checker or validator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reputation {
    /// Jobs naming it as provider that reached `Settled`.
    pub settled: u64,
    /// Slash records naming it.
    pub slashes: u64,
}

impl Reputation {
    /// `account`'s standing in `state`: its running record, one look-up.
    pub fn of(state: &State, account: &AccountId) -> Reputation {
        let record = state.record(account);
        Reputation {
            settled: record.provided.settled,
            slashes: record.slashes,
        }
    }

    /// `settled - SLASH_WEIGHT * slashes`, saturating at the ends of `i64`.
    pub fn score(&self) -> i64 {
        let s = i128::from(self.settled) - i128::from(SLASH_WEIGHT) * i128::from(self.slashes);
        i64::try_from(s).unwrap_or(if s < 0 { i64::MIN } else { i64::MAX })
    }

    /// The score in doubling bands: `floor(log2(score + 1))` for a score of zero or more (0
    /// for a newcomer, 1 for 1-2, 2 for 3-6, ...) and `-(floor(log2(-score)) + 1)` below zero
    /// (-1 for -1, -2 for -2..-3, ...). Ranking on bands rather than the raw score keeps
    /// reputation a coarse gate: with the raw score the provider with the most settled jobs
    /// would win every pick whatever its price, so price would never compete and newcomers
    /// would never get work.
    pub fn tier(&self) -> i32 {
        let s = self.score();
        // `ilog2` of a u64 is at most 63, so both casts are exact.
        if s >= 0 {
            (s.unsigned_abs() + 1).ilog2() as i32
        } else {
            -(s.unsigned_abs().ilog2() as i32) - 1
        }
    }
}

/// An advert the book holds, with the local view of its free slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAdvert {
    advert: Verified<CapacityAdvert>,
    free_slots: u32,
}

impl HeldAdvert {
    /// The advert's terms.
    pub fn advert(&self) -> &CapacityAdvert {
        self.advert.body()
    }

    /// The signed advert, as received (to serve or re-gossip it).
    pub fn signed(&self) -> &Signed<CapacityAdvert> {
        self.advert.signed()
    }

    /// The provider: the advert's signer.
    pub fn provider(&self) -> &AccountId {
        self.advert.signer()
    }

    /// Free slots as this node sees them: the advert's count less the jobs assigned here
    /// since ([`AdvertBook::note_assigned`]), plus those whose results committed since.
    pub fn free_slots(&self) -> u32 {
        self.free_slots
    }
}

/// What a gateway asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The model to run.
    pub model: ModelId,
    /// The highest price per token the client accepts.
    pub max_price_per_token: Amount,
    /// An account never to pick: the client itself, which cannot check its own job.
    pub exclude: Option<AccountId>,
}

/// The provider chosen for a job, with the advert terms to copy into `OpenJob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The provider's account.
    pub provider: AccountId,
    /// The node that serves it.
    pub node: PublicKey,
    /// The advertised device profile.
    pub device: DeviceName,
    /// The advertised price per token.
    pub price_per_token: Amount,
    /// The advertised speed, in thousandths of a token per second.
    pub tokens_per_sec_milli: u64,
    /// The advert's seq.
    pub seq: u64,
    /// The advert's expiry.
    pub expires_at_ms: u64,
    /// The provider's standing when picked.
    pub reputation: Reputation,
}

/// Why [`AdvertBook::pick`] found nobody. Each stage narrows the previous one, and the error
/// names the first stage that left no candidate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoProvider {
    /// No live advert, other than the excluded account's, serves the model.
    #[error("no live advert serves model {model}")]
    NoAdvert {
        /// The model asked for.
        model: ModelId,
    },
    /// Adverts serve the model, but no provider is eligible any more (unstaked, jailed,
    /// banned, below `min_stake`, or its node key no longer bound to it).
    #[error("{adverts} adverts serve model {model}, but none of their providers is eligible")]
    AllIneligible {
        /// The model asked for.
        model: ModelId,
        /// Live adverts for the model.
        adverts: usize,
    },
    /// Eligible providers serve the model, but no job of it with any of them could be
    /// checked: no other staked account's device holds the model (the contract refuses such
    /// a job at open).
    #[error(
        "{adverts} eligible providers serve model {model}, but no other staked account's device can hold it, so no result could be checked"
    )]
    Uncheckable {
        /// The model asked for.
        model: ModelId,
        /// Eligible adverts for the model.
        adverts: usize,
    },
    /// Eligible providers serve the model, but none has a free slot.
    #[error("{adverts} eligible providers serve model {model}, but none has a free slot")]
    NoFreeSlots {
        /// The model asked for.
        model: ModelId,
        /// Eligible adverts for the model.
        adverts: usize,
    },
    /// Eligible providers with free slots serve the model, but all above the price cap.
    #[error(
        "every provider of model {model} asks more than {cap} per token; the cheapest asks {cheapest}"
    )]
    OverPriceCap {
        /// The model asked for.
        model: ModelId,
        /// The client's cap.
        cap: Amount,
        /// The lowest price among eligible providers with a free slot.
        cheapest: Amount,
    },
}

/// The bounded, expiring advert book. See the module documentation for its rules.
#[derive(Debug, Clone)]
pub struct AdvertBook {
    capacity: usize,
    devices: BTreeSet<String>,
    entries: BTreeMap<AccountId, HeldAdvert>,
    /// `(expires_at_ms, provider)` for every entry: expiry and eviction pop from the front.
    by_expiry: BTreeSet<(u64, AccountId)>,
}

impl AdvertBook {
    /// An empty book of [`MAX_PROVIDERS`] entries accepting adverts for `known_devices`
    /// (the names of the node's device profiles).
    pub fn new(known_devices: &[&str]) -> Self {
        Self::with_capacity(known_devices, MAX_PROVIDERS)
    }

    /// An empty book of `capacity` entries (at least one).
    pub fn with_capacity(known_devices: &[&str], capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            devices: known_devices.iter().map(|d| (*d).to_owned()).collect(),
            entries: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// The bound on entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held, expired ones included until [`AdvertBook::expire`] runs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The provider's held advert. It may have expired since the last
    /// [`AdvertBook::expire`]; compare its `expires_at_ms` with the time if that matters.
    pub fn get(&self, provider: &AccountId) -> Option<&HeldAdvert> {
        self.entries.get(provider)
    }

    /// Every held advert, by provider account bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&AccountId, &HeldAdvert)> {
        self.entries.iter()
    }

    /// The soonest expiry held: when the shell should next call [`AdvertBook::expire`].
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    /// Checks `signed` for `chain`, then inserts it as [`AdvertBook::insert`] does.
    pub fn verify_and_insert(
        &mut self,
        now_ms: u64,
        chain: &ChainId,
        signed: Signed<CapacityAdvert>,
        state: &State,
    ) -> Result<Inserted, AdvertError> {
        let advert = signed.verify(chain)?;
        self.insert(now_ms, advert, state)
    }

    /// Admits a verified advert received at `now_ms`, checked against the ledger `state`.
    /// On refusal the book is unchanged.
    pub fn insert(
        &mut self,
        now_ms: u64,
        advert: Verified<CapacityAdvert>,
        state: &State,
    ) -> Result<Inserted, AdvertError> {
        let provider = *advert.signer();
        self.check_terms(&advert)?;
        check_expiry(now_ms, &provider, advert.body().expires_at_ms)?;
        check_provider(state, &provider, &advert.body().node)?;
        let body = advert.body();
        if let Some(held) = self.entries.get(&provider) {
            // Only a live held advert orders seqs: once it has expired, a provider that
            // restarted and counts again from a low seq is heard at once.
            let live = held.advert().expires_at_ms > now_ms;
            if live && held.advert == advert {
                return Err(AdvertError::Duplicate {
                    provider,
                    seq: body.seq,
                });
            }
            let held_seq = held.advert().seq;
            if live && body.seq <= held_seq {
                return Err(AdvertError::Stale {
                    provider,
                    seq: body.seq,
                    held: held_seq,
                });
            }
            self.remove(&provider);
            self.put(advert);
            return Ok(Inserted::Replaced {
                previous_seq: held_seq,
            });
        }
        let mut evicted = None;
        if self.entries.len() >= self.capacity {
            self.expire(now_ms);
        }
        if self.entries.len() >= self.capacity
            && let Some(&(soonest_ms, victim)) = self.by_expiry.first()
        {
            // Rule "evict the soonest to expire": it has the least life left to be useful.
            // A newcomer expiring no later would be the next victim itself, so it is refused
            // instead, which also stops two adverts from evicting each other in turn.
            if body.expires_at_ms <= soonest_ms {
                return Err(AdvertError::BookFull {
                    capacity: self.capacity,
                    expires_at_ms: body.expires_at_ms,
                    soonest_ms,
                });
            }
            self.remove(&victim);
            evicted = Some(victim);
        }
        self.put(advert);
        Ok(match evicted {
            Some(evicted) => Inserted::AddedEvicting { evicted },
            None => Inserted::Added,
        })
    }

    /// Drops the provider's advert (for instance after its node failed to serve a job).
    pub fn remove(&mut self, provider: &AccountId) -> Option<HeldAdvert> {
        let held = self.entries.remove(provider)?;
        self.by_expiry
            .remove(&(held.advert().expires_at_ms, *provider));
        Some(held)
    }

    /// Drops every advert whose expiry is at or before `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(at, provider)) = self.by_expiry.first() {
            if at > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&provider);
            dropped += 1;
        }
        dropped
    }

    /// Records that a job was assigned to `provider`, so the next picks see one slot fewer
    /// until its next advert. Returns whether the book holds the provider.
    pub fn note_assigned(&mut self, provider: &AccountId) -> bool {
        match self.entries.get_mut(provider) {
            Some(held) => {
                held.free_slots = held.free_slots.saturating_sub(1);
                true
            }
            None => false,
        }
    }

    /// Records that a job assigned to `provider` here is done with its slot (its result is
    /// committed, or it ended): one slot back, never more than the advert announced.
    pub fn note_released(&mut self, provider: &AccountId) {
        if let Some(held) = self.entries.get_mut(provider) {
            held.free_slots = held
                .free_slots
                .saturating_add(1)
                .min(held.advert().free_slots);
        }
    }

    /// The best provider for `request` at `now_ms` under `state`; see the module
    /// documentation for the ranking. `O(adverts)`: each provider's reputation is one look-up
    /// of its record in the state.
    pub fn pick(&self, now_ms: u64, request: &Request, state: &State) -> Result<Offer, NoProvider> {
        let affordable = self.affordable(now_ms, request, state)?;
        let reputation = |h: &HeldAdvert| Reputation::of(state, h.provider());
        let best = affordable.into_iter().min_by_key(|h| {
            let a = h.advert();
            (
                Reverse(reputation(h).tier()),
                a.price_per_token,
                Reverse(a.tokens_per_sec_milli),
                *h.provider(),
            )
        });
        let Some(best) = best else {
            // `affordable` returns a non-empty list or an error; this only satisfies types.
            return Err(NoProvider::NoAdvert {
                model: request.model.clone(),
            });
        };
        let a = best.advert();
        Ok(Offer {
            provider: *best.provider(),
            node: a.node,
            device: a.device.clone(),
            price_per_token: a.price_per_token,
            tokens_per_sec_milli: a.tokens_per_sec_milli,
            seq: a.seq,
            expires_at_ms: a.expires_at_ms,
            reputation: reputation(best),
        })
    }

    /// The adverts `pick` ranks: live, serving the model, not the excluded account's, whose
    /// provider is eligible with a bound device that holds the model, whose job another
    /// account could check (the contract's rule at open), with a free slot, within the price
    /// cap. Never empty on success; otherwise the error names the first stage that left
    /// nobody.
    fn affordable(
        &self,
        now_ms: u64,
        request: &Request,
        state: &State,
    ) -> Result<Vec<&HeldAdvert>, NoProvider> {
        let model = &request.model;
        let serving: Vec<&HeldAdvert> = self
            .entries
            .values()
            .filter(|h| h.advert().expires_at_ms > now_ms)
            .filter(|h| request.exclude.as_ref() != Some(h.provider()))
            .filter(|h| h.advert().models.contains(model))
            .collect();
        if serving.is_empty() {
            return Err(NoProvider::NoAdvert {
                model: model.clone(),
            });
        }
        let min_stake = state.params().min_stake;
        let eligible: Vec<&HeldAdvert> = serving
            .iter()
            .copied()
            .filter(|h| {
                state.node_account(&h.advert().node) == Some(h.provider())
                    && state
                        .stake(h.provider())
                        .is_some_and(|s| s.can_serve(min_stake, model.as_str()))
            })
            .collect();
        if eligible.is_empty() {
            return Err(NoProvider::AllIneligible {
                model: model.clone(),
                adverts: serving.len(),
            });
        }
        let checkable: Vec<&HeldAdvert> = eligible
            .iter()
            .copied()
            .filter(|h| {
                let client = request.exclude.unwrap_or(*h.provider());
                state.has_capable_checker(model.as_str(), h.provider(), &client)
            })
            .collect();
        if checkable.is_empty() {
            return Err(NoProvider::Uncheckable {
                model: model.clone(),
                adverts: eligible.len(),
            });
        }
        let free: Vec<&HeldAdvert> = checkable
            .iter()
            .copied()
            .filter(|h| h.free_slots > 0)
            .collect();
        let Some(cheapest) = free.iter().map(|h| h.advert().price_per_token).min() else {
            return Err(NoProvider::NoFreeSlots {
                model: model.clone(),
                adverts: checkable.len(),
            });
        };
        let affordable: Vec<&HeldAdvert> = free
            .into_iter()
            .filter(|h| h.advert().price_per_token <= request.max_price_per_token)
            .collect();
        if affordable.is_empty() {
            return Err(NoProvider::OverPriceCap {
                model: model.clone(),
                cap: request.max_price_per_token,
                cheapest,
            });
        }
        Ok(affordable)
    }

    /// Rule "terms": the encoding is within the protocol's bound, every model is in the
    /// catalogue, and the device is one this node knows.
    fn check_terms(&self, advert: &Verified<CapacityAdvert>) -> Result<(), AdvertError> {
        let provider = *advert.signer();
        let max = <Signed<CapacityAdvert> as Canonical>::MAX_ENCODED_LEN;
        let len = encode(advert.signed()).len();
        if len > max {
            return Err(AdvertError::Oversized { len, max });
        }
        let body = advert.body();
        if let Some(model) = body
            .models
            .iter()
            .find(|m| ModelSpec::find(m.as_str()).is_err())
        {
            return Err(AdvertError::UnknownModel {
                provider,
                model: model.clone(),
            });
        }
        if !self.devices.contains(body.device.as_str()) {
            return Err(AdvertError::UnknownDevice {
                provider,
                device: body.device.clone(),
            });
        }
        Ok(())
    }

    /// Holds `advert` (the caller made room and removed any older one).
    fn put(&mut self, advert: Verified<CapacityAdvert>) {
        let provider = *advert.signer();
        let body = advert.body();
        self.by_expiry.insert((body.expires_at_ms, provider));
        let free_slots = body.free_slots;
        self.entries
            .insert(provider, HeldAdvert { advert, free_slots });
    }
}

/// Rule "lifetime": live now, and not meant to outlive [`MAX_ADVERT_TTL_MS`] plus
/// [`MAX_CLOCK_SKEW_MS`].
fn check_expiry(now_ms: u64, provider: &AccountId, expires_at_ms: u64) -> Result<(), AdvertError> {
    if expires_at_ms <= now_ms {
        return Err(AdvertError::Expired {
            provider: *provider,
            expires_at_ms,
            now_ms,
        });
    }
    let latest_ms = now_ms.saturating_add(MAX_ADVERT_TTL_MS + MAX_CLOCK_SKEW_MS);
    if expires_at_ms > latest_ms {
        return Err(AdvertError::TooFarAhead {
            provider: *provider,
            expires_at_ms,
            latest_ms,
        });
    }
    Ok(())
}

/// Rule "staked provider": the signer has stake, is active, has `min_stake` bonded, and the
/// advert's node is the one bound to it. Stake is checked first, so that an unbound node is
/// reported (and penalised) only when the signer's binding is known.
fn check_provider(
    state: &State,
    provider: &AccountId,
    node: &PublicKey,
) -> Result<(), AdvertError> {
    let Some(stake) = state.stake(provider) else {
        return Err(AdvertError::Unstaked {
            provider: *provider,
        });
    };
    if stake.status != StakeStatus::Active {
        return Err(AdvertError::NotActive {
            provider: *provider,
            status: stake.status,
        });
    }
    let min = state.params().min_stake;
    if !stake.eligible(min) {
        return Err(AdvertError::StakeBelowMinimum {
            provider: *provider,
            bonded: stake.bonded,
            min,
        });
    }
    let bound_to = state.node_account(node);
    if bound_to != Some(provider) {
        return Err(AdvertError::NodeNotBound {
            provider: *provider,
            node: *node,
            bound_to: bound_to.copied(),
        });
    }
    Ok(())
}

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
