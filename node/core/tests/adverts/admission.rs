//! Admission: each refusal, its penalty flag, expiry and eviction when full.

use super::*;

#[test]
fn accepts_then_replaces_with_a_higher_seq() {
    let state = state();
    let mut book = book();
    assert_eq!(
        book.insert(NOW, verified(10, terms(10)), &state),
        Ok(Inserted::Added)
    );
    let newer = CapacityAdvert {
        seq: 5,
        price_per_token: Amount(900),
        ..terms(10)
    };
    assert_eq!(
        book.insert(NOW, verified(10, newer), &state),
        Ok(Inserted::Replaced { previous_seq: 1 })
    );
    assert_eq!(book.len(), 1);
    let held = book.get(&id(10)).expect("held");
    assert_eq!(held.advert().seq, 5);
    assert_eq!(held.provider(), &id(10));
    assert_eq!(book.next_expiry_ms(), Some(NOW + 30_000));
}

#[test]
fn bad_signature_is_refused_and_penalised() {
    let state = state();
    let mut book = book();
    let other_chain = ChainId::new("attest-other").expect("chain id");
    let wrong_chain = Signed::sign(&other_chain, &key(10), terms(10));
    let mut tampered = signed(10, terms(10));
    tampered.body.price_per_token = Amount(1);
    for s in [wrong_chain, tampered] {
        let err = book
            .verify_and_insert(NOW, &chain(), s, &state)
            .expect_err("bad signature");
        assert!(matches!(err, AdvertError::BadSignature(_)), "{err}");
        assert!(err.penalise());
    }
    assert!(book.is_empty());
    let ok = book.verify_and_insert(NOW, &chain(), signed(10, terms(10)), &state);
    assert_eq!(ok, Ok(Inserted::Added));
}

#[test]
fn expired_in_flight_is_refused_without_penalty() {
    let body = CapacityAdvert {
        expires_at_ms: NOW,
        ..terms(10)
    };
    let err = insert_err(&state(), 10, body);
    assert_eq!(
        err,
        AdvertError::Expired {
            provider: id(10),
            expires_at_ms: NOW,
            now_ms: NOW,
        }
    );
    assert!(!err.penalise());
}

#[test]
fn expiry_beyond_ttl_and_skew_is_refused_and_penalised() {
    let state = state();
    let latest_ms = NOW + MAX_ADVERT_TTL_MS + MAX_CLOCK_SKEW_MS;
    let at_limit = CapacityAdvert {
        expires_at_ms: latest_ms,
        ..terms(10)
    };
    assert!(book().insert(NOW, verified(10, at_limit), &state).is_ok());
    let beyond = CapacityAdvert {
        expires_at_ms: latest_ms + 1,
        ..terms(10)
    };
    let err = insert_err(&state, 10, beyond);
    assert_eq!(
        err,
        AdvertError::TooFarAhead {
            provider: id(10),
            expires_at_ms: latest_ms + 1,
            latest_ms,
        }
    );
    assert!(err.penalise());
}

#[test]
fn unknown_model_is_refused_and_penalised() {
    let body = CapacityAdvert {
        models: BoundedVec::new(vec![model(TINY), model("attest-huge-900b")]).expect("two"),
        ..terms(10)
    };
    let err = insert_err(&state(), 10, body);
    assert_eq!(
        err,
        AdvertError::UnknownModel {
            provider: id(10),
            model: model("attest-huge-900b"),
        }
    );
    assert!(err.penalise());
}

#[test]
fn unknown_device_is_refused_without_penalty() {
    let body = CapacityAdvert {
        device: DeviceName::new("tpu-v9").expect("device"),
        ..terms(10)
    };
    let err = insert_err(&state(), 10, body);
    assert!(
        matches!(err, AdvertError::UnknownDevice { ref device, .. } if device.as_str() == "tpu-v9")
    );
    assert!(!err.penalise());
}

/// The oversize rule is defence in depth: with today's limits even the largest advert the
/// types admit encodes well under the protocol's bound, so the rule cannot fire. This fails
/// if a limit change makes it reachable, so that a test for it gets written.
#[test]
fn largest_advert_fits_the_encoding_bound() {
    let long_model = model(&"m".repeat(ModelId::MAX_LEN));
    let body = CapacityAdvert {
        device: DeviceName::new(&"d".repeat(DeviceName::MAX_LEN)).expect("device"),
        models: BoundedVec::new(vec![long_model; 16]).expect("16 models"),
        free_slots: u32::MAX,
        price_per_token: Amount(u64::MAX),
        tokens_per_sec_milli: u64::MAX,
        expires_at_ms: u64::MAX,
        seq: u64::MAX,
        ..terms(10)
    };
    let len = encode(&signed(10, body)).len();
    assert!(
        len < <Signed<CapacityAdvert> as Canonical>::MAX_ENCODED_LEN,
        "{len}"
    );
    let err = AdvertError::Oversized {
        len: 5_000,
        max: 4_192,
    };
    assert!(err.penalise());
}

#[test]
fn unstaked_signer_is_refused_without_penalty() {
    let err = insert_err(&state(), UNSTAKED, terms(UNSTAKED));
    assert_eq!(
        err,
        AdvertError::Unstaked {
            provider: id(UNSTAKED)
        }
    );
    assert!(!err.penalise());
}

#[test]
fn stake_below_minimum_is_refused_without_penalty() {
    let state = State::from_genesis(&genesis_with(Params::default(), &[(10, tokens(50))]))
        .expect("valid genesis");
    let err = insert_err(&state, 10, terms(10));
    assert_eq!(
        err,
        AdvertError::StakeBelowMinimum {
            provider: id(10),
            bonded: tokens(50),
            min: tokens(100),
        }
    );
    assert!(!err.penalise());
}

#[test]
fn jailed_signer_is_refused_without_penalty() {
    let mut ledger = Ledger::new(state());
    ledger.jail(10);
    let err = insert_err(&ledger.state, 10, terms(10));
    assert_eq!(
        err,
        AdvertError::NotActive {
            provider: id(10),
            status: StakeStatus::Jailed,
        }
    );
    assert!(!err.penalise());
}

#[test]
fn node_not_bound_to_signer_is_refused_and_penalised() {
    let state = state();
    // Provider 11's node, claimed by provider 10.
    let theirs = CapacityAdvert {
        node: node_key(11).public(),
        ..terms(10)
    };
    let err = insert_err(&state, 10, theirs);
    assert_eq!(
        err,
        AdvertError::NodeNotBound {
            provider: id(10),
            node: node_key(11).public(),
            bound_to: Some(id(11)),
        }
    );
    assert!(err.penalise());
    // A node bound to nobody.
    let unbound = CapacityAdvert {
        node: node_key(UNSTAKED).public(),
        ..terms(10)
    };
    let err = insert_err(&state, 10, unbound);
    assert!(
        matches!(err, AdvertError::NodeNotBound { bound_to: None, .. }),
        "{err}"
    );
    assert!(err.penalise());
}

#[test]
fn duplicate_and_stale_are_told_apart_and_not_penalised() {
    let state = state();
    let mut book = book();
    let current = CapacityAdvert {
        seq: 7,
        ..terms(10)
    };
    book.insert(NOW, verified(10, current.clone()), &state)
        .expect("accepted");
    let err = book
        .insert(NOW + 1, verified(10, current.clone()), &state)
        .expect_err("repeat");
    assert_eq!(
        err,
        AdvertError::Duplicate {
            provider: id(10),
            seq: 7
        }
    );
    assert!(!err.penalise());
    for (seq, price) in [(6, 1_000), (7, 999)] {
        let older = CapacityAdvert {
            seq,
            price_per_token: Amount(price),
            ..current.clone()
        };
        let err = book
            .insert(NOW, verified(10, older), &state)
            .expect_err("stale");
        assert_eq!(
            err,
            AdvertError::Stale {
                provider: id(10),
                seq,
                held: 7,
            }
        );
        assert!(!err.penalise());
    }
    assert_eq!(book.get(&id(10)).map(|h| h.advert()), Some(&current));
}

// --- Expiry and eviction ---

#[test]
fn expire_drops_exactly_the_expired() {
    let state = state();
    let mut book = book();
    for (n, ttl) in [(10, 10_000), (11, 20_000), (12, 30_000)] {
        book.insert(NOW, expiring(n, NOW + ttl), &state)
            .expect("accepted");
    }
    assert_eq!(book.next_expiry_ms(), Some(NOW + 10_000));
    assert_eq!(book.expire(NOW + 9_999), 0);
    assert_eq!(book.expire(NOW + 20_000), 2);
    assert_eq!(book.len(), 1);
    assert!(book.get(&id(10)).is_none() && book.get(&id(11)).is_none());
    assert_eq!(book.next_expiry_ms(), Some(NOW + 30_000));
    assert_eq!(book.expire(NOW + 30_000), 1);
    assert!(book.is_empty());
    assert_eq!(book.next_expiry_ms(), None);
}

#[test]
fn full_book_evicts_the_soonest_to_expire_or_refuses() {
    let state = state();
    let mut book = AdvertBook::with_capacity(DEVICES, 2);
    book.insert(NOW, expiring(10, NOW + 10_000), &state)
        .expect("room");
    book.insert(NOW, expiring(11, NOW + 20_000), &state)
        .expect("room");
    assert_eq!(
        book.insert(NOW, expiring(12, NOW + 30_000), &state),
        Ok(Inserted::AddedEvicting { evicted: id(10) })
    );
    // Sooner than, or as soon as, the soonest held (11's): refused, the book unchanged.
    for at in [NOW + 5_000, NOW + 20_000] {
        let err = book
            .insert(NOW, expiring(13, at), &state)
            .expect_err("full");
        assert_eq!(
            err,
            AdvertError::BookFull {
                capacity: 2,
                expires_at_ms: at,
                soonest_ms: NOW + 20_000,
            }
        );
        assert!(!err.penalise());
    }
    let held: Vec<AccountId> = book.iter().map(|(a, _)| *a).collect();
    let mut want = vec![id(11), id(12)];
    want.sort();
    assert_eq!(held, want);
    // A replacement from a held provider never needs room.
    let refresh = CapacityAdvert {
        seq: 2,
        expires_at_ms: NOW + 25_000,
        ..terms(11)
    };
    assert_eq!(
        book.insert(NOW, verified(11, refresh), &state),
        Ok(Inserted::Replaced { previous_seq: 1 })
    );
    // Once 11 and 12 have expired, a newcomer finds room without evicting anyone live.
    let later = NOW + 30_000;
    assert_eq!(
        book.insert(later, expiring(13, later + 1_000), &state),
        Ok(Inserted::Added)
    );
    assert_eq!(book.len(), 1);
}

#[test]
fn default_bound_is_max_providers() {
    assert_eq!(book().capacity(), MAX_PROVIDERS);
    assert_eq!(AdvertBook::with_capacity(DEVICES, 0).capacity(), 1);
}

#[test]
fn a_restarted_provider_is_heard_once_its_old_advert_expired() {
    let state = state();
    let mut book = book();
    let before = CapacityAdvert {
        seq: 7,
        expires_at_ms: NOW + 10_000,
        ..terms(10)
    };
    book.insert(NOW, verified(10, before), &state)
        .expect("accepted");
    let later = NOW + 10_000;
    let restarted = CapacityAdvert {
        seq: 1,
        expires_at_ms: later + 30_000,
        ..terms(10)
    };
    // Still live one millisecond earlier: stale.
    let err = book
        .insert(later - 1, verified(10, restarted.clone()), &state)
        .expect_err("stale");
    assert!(
        matches!(
            err,
            AdvertError::Stale {
                seq: 1,
                held: 7,
                ..
            }
        ),
        "{err}"
    );
    // Expired, though `expire` has not run: replaced.
    assert_eq!(
        book.insert(later, verified(10, restarted), &state),
        Ok(Inserted::Replaced { previous_seq: 7 })
    );
    assert_eq!(book.next_expiry_ms(), Some(later + 30_000));
}
