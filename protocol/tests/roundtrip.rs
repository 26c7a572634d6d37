//! Every wire type and every text form round-trips: `decode(encode(v)) == v`, `parse(show(v))
//! == v`. JSON is not checked here: `serde_json` is not a dev-dependency of this crate.

mod common;

use attest_protocol::encoding::{decode_bounded, encode};
use attest_protocol::merkle::MAX_PROOF_DEPTH;
use attest_protocol::{
    Action, Amount, BlockHash, Canonical, ChainId, CommitCertificate, DeviceName, Hash, JobId,
    MerkleProof, ModelId, PublicKey, SecretKey, Signature, Signed, TxHash, tx_hash,
};
use common::*;
use proptest::prelude::*;

/// Asserts that `value` decodes back from its encoding, and that the encoding is within the
/// type's declared bound (so a valid value is never refused as too large).
fn assert_roundtrip<T: Canonical + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = value.encode();
    assert!(
        bytes.len() <= T::MAX_ENCODED_LEN,
        "{}: {} bytes exceed MAX_ENCODED_LEN {}",
        T::NAME,
        bytes.len(),
        T::MAX_ENCODED_LEN
    );
    assert_eq!(T::decode(&bytes).as_ref(), Ok(value), "{}", T::NAME);
    // The free function and the trait method are the same encoding.
    assert_eq!(encode(value), bytes);
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn tx_roundtrips(tx in tx()) {
        assert_roundtrip(&tx);
    }

    #[test]
    fn signed_tx_roundtrips_and_keeps_its_hash((chain, signed) in signed_tx()) {
        assert_roundtrip(&signed);
        let decoded = Signed::decode(&signed.encode()).expect("round trip");
        prop_assert_eq!(tx_hash(&decoded), tx_hash(&signed));
        // A decoded transaction is still validly signed: decoding loses nothing signed.
        prop_assert!(decoded.check(&chain).is_ok());
    }

    #[test]
    fn unchecked_signed_tx_roundtrips(signed in unchecked_signed(tx())) {
        assert_roundtrip(&signed);
    }

    #[test]
    fn vote_roundtrips(vote in vote()) {
        assert_roundtrip(&vote);
    }

    #[test]
    fn signed_vote_roundtrips((_, signed) in signed_vote()) {
        assert_roundtrip(&signed);
    }

    #[test]
    fn commit_certificate_roundtrips(cert in commit_certificate()) {
        assert_roundtrip(&cert);
        let decoded = CommitCertificate::decode(&cert.encode()).expect("round trip");
        prop_assert_eq!(decoded.hash(), cert.hash());
    }

    #[test]
    fn capacity_advert_roundtrips(advert in capacity_advert()) {
        assert_roundtrip(&advert);
    }

    #[test]
    fn signed_advert_roundtrips((_, signed) in signed_advert()) {
        assert_roundtrip(&signed);
    }

    #[test]
    fn merkle_proof_roundtrips(proof in merkle_proof()) {
        // MerkleProof travels inside a dispute move; it has no `Canonical` impl of its own, so
        // use the bounded decoder with the largest encoding a full proof can have.
        let max = 1 + MAX_PROOF_DEPTH * 32;
        let bytes = encode(&proof);
        prop_assert!(bytes.len() <= max);
        prop_assert_eq!(decode_bounded::<MerkleProof>(&bytes, "merkle proof", max), Ok(proof));
    }
}

proptest! {
    // Blocks and proposals hold several signed transactions: fewer, heavier cases.
    #![proptest_config(config(48))]

    #[test]
    fn block_roundtrips_and_keeps_its_hash(block in block()) {
        assert_roundtrip(&block);
        let decoded = attest_protocol::Block::decode(&block.encode()).expect("round trip");
        prop_assert_eq!(decoded.hash(), block.hash());
    }

    #[test]
    fn proposal_roundtrips(proposal in proposal()) {
        assert_roundtrip(&proposal);
    }

    #[test]
    fn signed_proposal_roundtrips(
        (chain, key, proposal) in (chain_id(), secret_key(), proposal())
    ) {
        let signed = Signed::sign(&chain, &key, proposal);
        assert_roundtrip(&signed);
    }
}

/// One transaction of each `Action` variant (and both sub-variants of `Verdict` and `Dispute`)
/// round-trips: the random strategy above covers them with high probability, this makes sure.
#[test]
fn every_action_variant_roundtrips() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let tx = tx().new_tree(&mut runner).expect("strategy").current();
        let name = match &tx.action {
            Action::Transfer(_) => "transfer",
            Action::Stake(_) => "stake",
            Action::Unstake(_) => "unstake",
            Action::OpenJob(_) => "open-job",
            Action::CommitResult(_) => "commit-result",
            Action::Verdict(v) => match v.outcome {
                attest_protocol::tx::VerdictOutcome::Agree => "verdict-agree",
                attest_protocol::tx::VerdictOutcome::Disagree { .. } => "verdict-disagree",
            },
            Action::Dispute(d) => match d.step {
                attest_protocol::tx::DisputeStep::Open { .. } => "dispute-open",
                attest_protocol::tx::DisputeStep::Witness { .. } => "dispute-witness",
            },
            Action::Equivocation(_) => "equivocation",
        };
        assert_roundtrip(&tx);
        seen.insert(name);
    }
    assert_eq!(seen.len(), 10, "variants generated: {seen:?}");
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn public_key_text_roundtrips(key in public_key()) {
        let text = key.to_string();
        prop_assert_eq!(text.len(), 64);
        prop_assert_eq!(&text, &text.to_lowercase());
        prop_assert_eq!(text.parse::<PublicKey>(), Ok(key));
        // Upper-case hex names the same key.
        prop_assert_eq!(text.to_uppercase().parse::<PublicKey>(), Ok(key));
    }

    #[test]
    fn secret_key_text_roundtrips(seed in any::<[u8; 32]>()) {
        let key = SecretKey::from_seed(seed);
        let text = key.to_text();
        prop_assert!(text.starts_with(SecretKey::TEXT_PREFIX));
        let parsed = SecretKey::from_text(&text).expect("own text form parses");
        prop_assert_eq!(parsed.seed(), seed);
        prop_assert_eq!(parsed.public(), key.public());
        // A trailing newline, as in a key file, is ignored.
        let parsed = SecretKey::from_text(&format!("  {text}\n")).expect("surrounding space");
        prop_assert_eq!(parsed.seed(), seed);
    }

    #[test]
    fn secret_key_debug_hides_the_seed(seed in any::<[u8; 32]>()) {
        let key = SecretKey::from_seed(seed);
        let debug = format!("{key:?}");
        prop_assert!(!debug.contains(&hex_lower(&seed)), "{}", debug);
    }

    #[test]
    fn signature_text_roundtrips(sig in signature()) {
        let text = sig.to_string();
        prop_assert_eq!(text.len(), 128);
        prop_assert_eq!(text.parse::<Signature>(), Ok(sig));
    }

    #[test]
    fn amount_text_roundtrips(units in any::<u64>()) {
        let amount = Amount(units);
        let text = amount.to_string();
        prop_assert_eq!(text.parse::<Amount>(), Ok(amount));
        // The shortest form: no trailing zeros after the point, no point for whole tokens.
        prop_assert!(!text.ends_with('0') || !text.contains('.'), "{}", text);
        prop_assert!(!text.ends_with('.'));
    }

    #[test]
    fn amount_text_is_tokens_and_micro_units(whole in 0u64..18_446_744_073_709, frac in 0u64..1_000_000) {
        let text = format!("{whole}.{frac:06}");
        prop_assert_eq!(text.parse::<Amount>(), Ok(Amount(whole * 1_000_000 + frac)));
    }

    #[test]
    fn hash_texts_roundtrip(bytes in any::<[u8; 32]>()) {
        let text = hex_lower(&bytes);
        prop_assert_eq!(Hash(bytes).to_string(), text.clone());
        prop_assert_eq!(text.parse::<Hash>(), Ok(Hash(bytes)));
        prop_assert_eq!(TxHash(bytes).to_string().parse::<TxHash>(), Ok(TxHash(bytes)));
        prop_assert_eq!(BlockHash(bytes).to_string().parse::<BlockHash>(), Ok(BlockHash(bytes)));
        prop_assert_eq!(JobId(bytes).to_string().parse::<JobId>(), Ok(JobId(bytes)));
    }

    #[test]
    fn peer_id_roundtrips(key in public_key()) {
        let text = key.peer_id();
        // Every ed25519 identity PeerId starts like this; libp2p users recognise it.
        prop_assert!(text.starts_with("12D3KooW"), "{}", text);
        prop_assert_eq!(PublicKey::from_peer_id(&text), Ok(key));
        prop_assert_eq!(&key.peer_id_bytes()[6..], key.as_bytes());
    }

    #[test]
    fn identifiers_roundtrip(
        chain in CHAIN_ID_RE,
        model in MODEL_ID_RE,
        device in DEVICE_NAME_RE,
    ) {
        let c: ChainId = chain.parse().expect("valid chain id");
        prop_assert_eq!(c.as_str(), chain.as_str());
        prop_assert_eq!(c.to_string().parse::<ChainId>(), Ok(c.clone()));
        prop_assert_eq!(decode_bounded::<ChainId>(&encode(&c), "chain id", 64), Ok(c));
        let m: ModelId = model.parse().expect("valid model id");
        prop_assert_eq!(m.to_string(), model);
        prop_assert_eq!(decode_bounded::<ModelId>(&encode(&m), "model id", 64), Ok(m));
        let d: DeviceName = device.parse().expect("valid device name");
        prop_assert_eq!(d.to_string(), device);
        prop_assert_eq!(decode_bounded::<DeviceName>(&encode(&d), "device", 64), Ok(d));
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The boundaries of the amount text form.
#[test]
fn amount_text_extremes() {
    assert_eq!(Amount(0).to_string(), "0");
    assert_eq!(Amount(1).to_string(), "0.000001");
    assert_eq!(Amount(1_500_000).to_string(), "1.5");
    assert_eq!(Amount(u64::MAX).to_string(), "18446744073709.551615");
    assert_eq!(
        "18446744073709.551615".parse::<Amount>(),
        Ok(Amount(u64::MAX))
    );
    assert_eq!("0.000001".parse::<Amount>(), Ok(Amount(1)));
    assert_eq!("12".parse::<Amount>(), Ok(Amount(12_000_000)));
}

/// The largest value of each kind (every bounded field full, every integer at its widest
/// varint) encodes within the type's bound and decodes: the bounds refuse nothing valid.
#[test]
fn largest_values_fit_their_bounds() {
    use attest_protocol::tx::{DisputeMove, DisputeStep, EquivocationEvidence, OpenJob};
    use attest_protocol::{
        Block, BoundedVec, Bytes, CapacityAdvert, CommitSig, Height, Nonce, Proposal, Round, Tx,
        Vote,
    };

    let key = SecretKey::from_seed([8; 32]);
    let chain = ChainId::new(&"c".repeat(32)).expect("valid");
    let model = ModelId::new(&"m".repeat(48)).expect("valid");
    let device = DeviceName::new(&"d".repeat(32)).expect("valid");
    let tx = |action| Tx {
        nonce: Nonce(u64::MAX),
        fee: Amount(u64::MAX),
        action,
    };
    let open_job = tx(Action::OpenJob(OpenJob {
        model: model.clone(),
        input: Bytes::new(vec![0xff; 4096]).expect("bound"),
        max_tokens: u32::MAX,
        provider: key.public(),
        device: device.clone(),
        price_per_token: Amount(u64::MAX),
        deadline_ms: u32::MAX,
        check: attest_protocol::tx::CheckLevel::Always,
    }));
    let vote = |b| Vote {
        height: Height(u64::MAX),
        round: Round(u32::MAX),
        kind: attest_protocol::VoteKind::Precommit,
        block: Some(BlockHash([b; 32])),
    };
    let dispute = |step| {
        tx(Action::Dispute(DisputeMove {
            job: JobId([1; 32]),
            round: Round(u32::MAX),
            step,
        }))
    };
    let txs = [
        open_job.clone(),
        dispute(DisputeStep::Open {
            index: u64::MAX,
            leaf: Hash([2; 32]),
            proof: MerkleProof {
                siblings: BoundedVec::new(vec![Hash([3; 32]); MAX_PROOF_DEPTH]).expect("bound"),
            },
        }),
        dispute(DisputeStep::Witness {
            activation: Bytes::new(vec![4; 1024]).expect("bound"),
        }),
        tx(Action::Equivocation(Box::new(EquivocationEvidence {
            first: Signed::sign(&chain, &key, vote(5)),
            second: Signed::sign(&chain, &key, vote(6)),
        }))),
    ];
    for body in txs {
        let signed = Signed::sign(&chain, &key, body);
        let bytes = signed.encode();
        assert!(bytes.len() <= <Signed<Tx>>::MAX_ENCODED_LEN);
        assert_eq!(Signed::<Tx>::decode(&bytes), Ok(signed));
    }

    let advert = CapacityAdvert {
        node: key.public(),
        device,
        models: BoundedVec::new(vec![model; 16]).expect("bound"),
        free_slots: u32::MAX,
        price_per_token: Amount(u64::MAX),
        tokens_per_sec_milli: u64::MAX,
        expires_at_ms: u64::MAX,
        seq: u64::MAX,
    };
    let advert = Signed::sign(&chain, &key, advert);
    assert_eq!(
        Signed::<CapacityAdvert>::decode(&advert.encode()),
        Ok(advert)
    );

    let cert = CommitCertificate {
        height: Height(u64::MAX),
        round: Round(u32::MAX),
        block: BlockHash([7; 32]),
        signatures: BoundedVec::new(vec![
            CommitSig {
                validator: key.public(),
                signature: Signature([0xff; 64]),
            };
            256
        ])
        .expect("bound"),
    };
    assert_eq!(CommitCertificate::decode(&cert.encode()), Ok(cert.clone()));

    // A full block: 1024 of the largest transaction (identical copies: decoding does not
    // check signatures or duplicates) and a full certificate.
    let signed = Signed::sign(&chain, &key, open_job);
    let block = Block {
        header: attest_protocol::BlockHeader {
            chain_id: chain,
            height: Height(u64::MAX),
            prev: BlockHash([1; 32]),
            proposer: key.public(),
            time_ms: u64::MAX,
            tx_root: Hash([2; 32]),
            state_root: Hash([3; 32]),
            last_commit: Hash([4; 32]),
        },
        txs: BoundedVec::new(vec![signed; 1024]).expect("bound"),
        last_commit: Some(cert),
    };
    let proposal = Proposal {
        height: Height(u64::MAX),
        round: Round(u32::MAX),
        pol_round: Some(Round(u32::MAX)),
        block,
    };
    let bytes = proposal.encode();
    assert!(bytes.len() <= Proposal::MAX_ENCODED_LEN);
    assert_eq!(Proposal::decode(&bytes), Ok(proposal));
}
