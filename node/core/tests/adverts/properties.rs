//! Properties: the bound and freshness under random arrivals, time and picks.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        provider: u8,
        ttl_ms: u64,
        seq: u64,
        price: u64,
    },
    Advance(u64),
    Expire,
    Assign(u8),
    Pick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let provider = 0..8u8;
    // Times in whole seconds, so that picks and expiries often land exactly on an expiry.
    prop_oneof![
        4 => (provider.clone(), 0..70u64, 0..6u64, 1..2_000u64).prop_map(
            |(provider, ttl_s, seq, price)| Op::Insert { provider, ttl_ms: ttl_s * 1_000, seq, price }
        ),
        2 => (0..20u64).prop_map(|s| Op::Advance(s * 1_000)),
        1 => Just(Op::Expire),
        1 => provider.prop_map(Op::Assign),
        2 => (1..2_000u64).prop_map(Op::Pick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever arrives, the book never holds more than its bound, its expiry index agrees
    /// with its entries, `expire` leaves nothing expired, and `pick` never offers an expired
    /// or unheld advert.
    #[test]
    fn book_stays_bounded_and_never_offers_expired(ops in prop::collection::vec(op(), 1..60)) {
        let state = state();
        let mut book = AdvertBook::with_capacity(DEVICES, 4);
        let mut now = NOW;
        for op in ops {
            match op {
                Op::Insert { provider, ttl_ms, seq, price } => {
                    let n = 10 + provider;
                    let body = CapacityAdvert {
                        expires_at_ms: now + ttl_ms,
                        seq,
                        price_per_token: Amount(price),
                        free_slots: 2,
                        ..terms(n)
                    };
                    let _ = book.insert(now, verified(n, body), &state);
                }
                Op::Advance(ms) => now += ms,
                Op::Expire => {
                    book.expire(now);
                    prop_assert!(book.iter().all(|(_, h)| h.advert().expires_at_ms > now));
                }
                Op::Assign(provider) => {
                    book.note_assigned(&id(10 + provider));
                }
                Op::Pick(cap) => {
                    if let Ok(offer) = book.pick(now, &request(Amount(cap)), &state) {
                        prop_assert!(offer.expires_at_ms > now);
                        prop_assert!(offer.price_per_token <= Amount(cap));
                        let held = book.get(&offer.provider).map(|h| h.advert().seq);
                        prop_assert_eq!(held, Some(offer.seq));
                        prop_assert!(book.get(&offer.provider).is_some_and(|h| h.free_slots() > 0));
                    }
                }
            }
            prop_assert!(book.len() <= book.capacity());
            let soonest = book.iter().map(|(_, h)| h.advert().expires_at_ms).min();
            prop_assert_eq!(book.next_expiry_ms(), soonest);
        }
    }
}
