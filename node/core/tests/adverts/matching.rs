//! Matching: ranking, price cap, exclusion, eligibility and load spreading.

use super::*;

#[test]
fn pick_ranks_by_price_then_speed_then_account() {
    let state = state();
    let mut book = book();
    for (n, price, tps) in [(10, 1_000, 10_000), (11, 900, 10_000), (12, 900, 20_000)] {
        book.insert(NOW, priced(n, price, tps), &state)
            .expect("accepted");
    }
    let offer = pick(&book, &state, 10_000).expect("a provider");
    assert_eq!(
        offer,
        Offer {
            provider: id(12),
            node: node_key(12).public(),
            device: DeviceName::new("h100").expect("device"),
            price_per_token: Amount(900),
            tokens_per_sec_milli: 20_000,
            seq: 1,
            expires_at_ms: NOW + 30_000,
            reputation: Reputation::default(),
        }
    );
    // Equal terms: the lower account bytes win.
    let mut tie = self::book();
    for n in [13, 14, 15] {
        tie.insert(NOW, priced(n, 500, 1), &state)
            .expect("accepted");
    }
    let lowest = [13, 14, 15].map(id).into_iter().min().expect("three");
    assert_eq!(pick(&tie, &state, 500).map(|o| o.provider), Ok(lowest));
}

#[test]
fn pick_ranks_reputation_tier_before_price() {
    let mut ledger = Ledger::new(state());
    ledger.settle_job(10);
    ledger.miss_job(12);
    let state = &ledger.state;
    let settled = Reputation {
        settled: 1,
        slashes: 0,
    };
    assert_eq!(Reputation::of(state, &id(10)), settled);
    assert_eq!(
        Reputation::of(state, &id(12)),
        Reputation {
            settled: 0,
            slashes: 1
        }
    );
    let mut book = book();
    // 10: one settled job (tier 1), dearest; 11: newcomer (tier 0); 12: one slash (tier -4),
    // cheapest.
    for (n, price) in [(10, 3_000), (11, 2_000), (12, 1_000)] {
        book.insert(NOW, priced(n, price, 1_000), state)
            .expect("accepted");
    }
    let offer = pick(&book, state, 10_000).expect("a provider");
    assert_eq!((offer.provider, offer.reputation), (id(10), settled));
    assert_eq!(pick(&book, state, 2_999).map(|o| o.provider), Ok(id(11)));
    assert_eq!(pick(&book, state, 1_999).map(|o| o.provider), Ok(id(12)));
}

#[test]
fn pick_respects_the_price_cap_and_names_the_cheapest() {
    let state = state();
    let mut book = book();
    for (n, price) in [(10, 3_000), (11, 2_000)] {
        book.insert(NOW, priced(n, price, 1_000), &state)
            .expect("accepted");
    }
    assert_eq!(
        pick(&book, &state, 1_999),
        Err(NoProvider::OverPriceCap {
            model: model(TINY),
            cap: Amount(1_999),
            cheapest: Amount(2_000),
        })
    );
    assert_eq!(pick(&book, &state, 2_000).map(|o| o.provider), Ok(id(11)));
}

#[test]
fn pick_excludes_the_client_and_other_models() {
    // Account 11 is staked too, so a job between the client and 10 has a possible checker.
    let stakes = [(CLIENT, tokens(200)), (10, tokens(200)), (11, tokens(200))];
    let state = State::from_genesis(&genesis_with(Params::default(), &stakes)).expect("genesis");
    let mut book = book();
    book.insert(NOW, priced(CLIENT, 1, 1_000_000), &state)
        .expect("accepted");
    assert_eq!(
        pick(&book, &state, 10_000),
        Err(NoProvider::NoAdvert { model: model(TINY) })
    );
    book.insert(NOW, priced(10, 5_000, 1), &state)
        .expect("accepted");
    assert_eq!(pick(&book, &state, 10_000).map(|o| o.provider), Ok(id(10)));
    let other_model = Request {
        model: model(BASE),
        ..request(Amount(10_000))
    };
    assert_eq!(
        book.pick(NOW, &other_model, &state),
        Err(NoProvider::NoAdvert { model: model(BASE) })
    );
}

#[test]
fn pick_never_offers_a_job_nobody_else_could_check() {
    // Only the client and provider 10 are staked: no third account could check the job.
    let stakes = [(CLIENT, tokens(200)), (10, tokens(200))];
    let state = State::from_genesis(&genesis_with(Params::default(), &stakes)).expect("genesis");
    let mut book = book();
    book.insert(NOW, priced(10, 5_000, 1), &state)
        .expect("accepted");
    assert_eq!(
        pick(&book, &state, 10_000),
        Err(NoProvider::Uncheckable {
            model: model(TINY),
            adverts: 1
        })
    );
}

#[test]
fn pick_never_offers_an_expired_advert() {
    let state = state();
    let mut book = book();
    book.insert(NOW, expiring(10, NOW + 1_000), &state)
        .expect("accepted");
    assert!(
        book.pick(NOW + 999, &request(Amount(10_000)), &state)
            .is_ok()
    );
    // Not yet dropped by `expire`, but no longer offered.
    assert_eq!(
        book.pick(NOW + 1_000, &request(Amount(10_000)), &state),
        Err(NoProvider::NoAdvert { model: model(TINY) })
    );
    assert_eq!(book.len(), 1);
}

#[test]
fn pick_skips_providers_that_became_ineligible() {
    let mut ledger = Ledger::new(state());
    let mut book = book();
    for (n, price) in [(10, 100), (11, 200), (12, 300)] {
        book.insert(NOW, priced(n, price, 1_000), &ledger.state)
            .expect("accepted");
    }
    assert_eq!(
        pick(&book, &ledger.state, 1_000).map(|o| o.provider),
        Ok(id(10))
    );
    // 10 unbonds below the minimum; 11 is jailed.
    ledger.send(
        10,
        Action::Unstake(Unstake {
            amount: tokens(150),
        }),
    );
    ledger.jail(11);
    assert_eq!(
        pick(&book, &ledger.state, 1_000).map(|o| o.provider),
        Ok(id(12))
    );
    ledger.jail(12);
    assert_eq!(
        pick(&book, &ledger.state, 1_000),
        Err(NoProvider::AllIneligible {
            model: model(TINY),
            adverts: 3,
        })
    );
}

#[test]
fn note_assigned_spreads_load_until_slots_run_out() {
    let state = state();
    let mut book = book();
    let two_slots = CapacityAdvert {
        free_slots: 2,
        price_per_token: Amount(100),
        ..terms(10)
    };
    book.insert(NOW, verified(10, two_slots), &state)
        .expect("accepted");
    book.insert(NOW, priced(11, 200, 1_000), &state)
        .expect("accepted");
    let mut picks = Vec::new();
    for _ in 0..3 {
        let offer = pick(&book, &state, 1_000).expect("a provider");
        assert!(book.note_assigned(&offer.provider));
        picks.push(offer.provider);
    }
    assert_eq!(picks, vec![id(10), id(10), id(11)]);
    assert_eq!(
        pick(&book, &state, 1_000),
        Err(NoProvider::NoFreeSlots {
            model: model(TINY),
            adverts: 2,
        })
    );
    assert!(!book.note_assigned(&id(UNSTAKED)));
    // A fresh advert restores the provider's own count.
    let refresh = CapacityAdvert {
        seq: 2,
        ..terms(11)
    };
    book.insert(NOW, verified(11, refresh), &state)
        .expect("accepted");
    assert_eq!(book.get(&id(11)).map(|h| h.free_slots()), Some(1));
}

#[test]
fn pick_does_not_depend_on_arrival_order() {
    let state = state();
    let adverts: Vec<_> = PROVIDERS.map(|n| priced(n, 1_000, 5_000)).collect();
    let mut forward = book();
    let mut backward = book();
    for a in &adverts {
        forward.insert(NOW, a.clone(), &state).expect("accepted");
    }
    for a in adverts.iter().rev() {
        backward.insert(NOW, a.clone(), &state).expect("accepted");
    }
    let order = |b: &AdvertBook| b.iter().map(|(a, _)| *a).collect::<Vec<_>>();
    assert_eq!(order(&forward), order(&backward));
    assert_eq!(
        pick(&forward, &state, 1_000),
        pick(&backward, &state, 1_000)
    );
}

#[test]
fn tiers_are_doubling_bands() {
    let tier = |settled, slashes| Reputation { settled, slashes }.tier();
    assert_eq!(tier(0, 0), 0);
    assert_eq!(tier(1, 0), 1);
    assert_eq!(tier(2, 0), 1);
    assert_eq!(tier(3, 0), 2);
    assert_eq!(tier(6, 0), 2);
    assert_eq!(tier(7, 0), 3);
    assert_eq!(tier(7, 1), -1);
    assert_eq!(tier(6, 1), -2);
    assert_eq!(tier(0, 1), -4);
    assert_eq!(tier(u64::MAX, 0), 63);
    assert_eq!(tier(0, u64::MAX), -64);
}
