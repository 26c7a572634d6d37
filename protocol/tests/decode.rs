//! Decoding is total and strict: any bytes give `Ok` or `Err` (never a panic), and only the one
//! canonical encoding of a valid value gives `Ok`. Text parsers reject every malformed form
//! with the matching error.

mod common;

use attest_protocol::Canonical;
use attest_protocol::encoding::{decode_bounded, encode};
use attest_protocol::merkle::MAX_PROOF_DEPTH;
use attest_protocol::tx::OpenJob;
use attest_protocol::{
    Action, Amount, Block, BlockHash, CapacityAdvert, ChainId, CommitCertificate, DecodeError,
    DeviceName, Hash, IdentError, JobId, MerkleProof, ModelId, Nonce, ParseError, Proposal,
    PublicKey, Round, SecretKey, Signature, Signed, Tx, TxHash, Vote,
};
use common::*;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use proptest::prelude::*;

/// Decodes `bytes` as a `T`. Whatever the answer, it must be consistent: `Ok` only for the
/// canonical encoding of the value returned, `TooLarge` exactly for oversized input.
fn decode_is_consistent<T: Canonical + std::fmt::Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    match T::decode(bytes) {
        Ok(value) => prop_assert_eq!(
            value.encode(),
            bytes,
            "{} accepted a non-canonical form",
            T::NAME
        ),
        Err(DecodeError::TooLarge { what, len, max }) => {
            prop_assert_eq!((what, len, max), (T::NAME, bytes.len(), T::MAX_ENCODED_LEN));
        }
        Err(e) => prop_assert!(bytes.len() <= T::MAX_ENCODED_LEN, "{}: {e}", T::NAME),
    }
    Ok(())
}

fn every_type_is_consistent(bytes: &[u8]) -> Result<(), TestCaseError> {
    decode_is_consistent::<Tx>(bytes)?;
    decode_is_consistent::<Signed<Tx>>(bytes)?;
    decode_is_consistent::<Vote>(bytes)?;
    decode_is_consistent::<Signed<Vote>>(bytes)?;
    decode_is_consistent::<CapacityAdvert>(bytes)?;
    decode_is_consistent::<Signed<CapacityAdvert>>(bytes)?;
    decode_is_consistent::<CommitCertificate>(bytes)?;
    decode_is_consistent::<Block>(bytes)?;
    decode_is_consistent::<Proposal>(bytes)?;
    decode_is_consistent::<Signed<Proposal>>(bytes)?;
    if let Ok(proof) = decode_bounded::<MerkleProof>(bytes, "merkle proof", 2048) {
        prop_assert_eq!(encode(&proof), bytes);
    }
    Ok(())
}

/// A valid encoding with a few bytes overwritten, so decoding gets deep into the structure
/// before it meets something wrong (random bytes mostly fail at the first field).
fn mutated(valid: Vec<u8>, edits: Vec<(prop::sample::Index, u8)>) -> Vec<u8> {
    let mut bytes = valid;
    if bytes.is_empty() {
        return bytes;
    }
    for (i, b) in edits {
        let i = i.index(bytes.len());
        bytes[i] = b;
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        every_type_is_consistent(&bytes)?;
    }

    #[test]
    fn short_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        // Short inputs decode as votes and small messages far more often than long ones.
        every_type_is_consistent(&bytes)?;
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn mutated_signed_tx_decodes_consistently((_, tx) in signed_tx(), edits in edits()) {
        every_type_is_consistent(&mutated(tx.encode(), edits))?;
    }

    /// The block's transaction count bound is implied by its byte bound only if no
    /// transaction encodes shorter than `MIN_TX_BYTES`.
    #[test]
    fn no_transaction_is_shorter_than_the_minimum((_, tx) in signed_tx()) {
        prop_assert!(tx.encode().len() >= attest_protocol::limits::MIN_TX_BYTES);
    }

    #[test]
    fn mutated_vote_decodes_consistently((_, vote) in signed_vote(), edits in edits()) {
        every_type_is_consistent(&mutated(vote.encode(), edits))?;
    }

    #[test]
    fn mutated_advert_decodes_consistently((_, advert) in signed_advert(), edits in edits()) {
        every_type_is_consistent(&mutated(advert.encode(), edits))?;
    }

    #[test]
    fn mutated_certificate_decodes_consistently(cert in commit_certificate(), edits in edits()) {
        every_type_is_consistent(&mutated(cert.encode(), edits))?;
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn mutated_block_decodes_consistently(block in block(), edits in edits()) {
        every_type_is_consistent(&mutated(block.encode(), edits))?;
    }
}

/// Every strict prefix of `value`'s encoding is refused as malformed (truncated), and so is the
/// encoding with one byte appended (trailing bytes).
fn truncation_and_extension_fail<T: Canonical + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = value.encode();
    for len in 0..bytes.len() {
        let r = T::decode(&bytes[..len]);
        prop_assert!(
            matches!(r, Err(DecodeError::Malformed { .. })),
            "{}: prefix of {len}/{} bytes gave {r:?}",
            T::NAME,
            bytes.len()
        );
    }
    for extra in [0u8, 1, 0xff] {
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert_eq!(
            T::decode(&longer).map(|_| ()),
            Err(DecodeError::TrailingBytes {
                what: T::NAME,
                extra: 1
            })
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn truncated_or_extended_tx_fails((_, tx) in signed_tx()) {
        truncation_and_extension_fail(&tx)?;
        truncation_and_extension_fail(&tx.body)?;
    }

    #[test]
    fn truncated_or_extended_vote_fails((_, vote) in signed_vote()) {
        truncation_and_extension_fail(&vote)?;
        truncation_and_extension_fail(&vote.body)?;
    }

    #[test]
    fn truncated_or_extended_advert_fails((_, advert) in signed_advert()) {
        truncation_and_extension_fail(&advert)?;
        truncation_and_extension_fail(&advert.body)?;
    }

    #[test]
    fn truncated_or_extended_certificate_fails(cert in commit_certificate()) {
        truncation_and_extension_fail(&cert)?;
    }
}

proptest! {
    #![proptest_config(config(12))]

    #[test]
    fn truncated_or_extended_block_fails(proposal in proposal()) {
        truncation_and_extension_fail(&proposal.block)?;
        truncation_and_extension_fail(&proposal)?;
    }
}

/// A non-minimal varint decodes to the same number but is not the canonical encoding.
fn assert_overlong_rejected(r: Result<impl std::fmt::Debug, DecodeError>) {
    assert!(
        matches!(
            r,
            Err(DecodeError::NonCanonical { .. } | DecodeError::Malformed { .. })
        ),
        "an over-long varint gave {r:?}"
    );
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn overlong_nonce_is_rejected((_, signed) in signed_tx(), pad in 1usize..=10) {
        let nonce = signed.body.nonce.0;
        let minimal = encode(&Nonce(nonce));
        prop_assume!(minimal.len() + pad <= 11);
        let overlong = varint(nonce, minimal.len() + pad);
        // The body alone: the nonce is its first field.
        let body = signed.body.encode();
        let mut bad = overlong.clone();
        bad.extend_from_slice(&body[minimal.len()..]);
        assert_overlong_rejected(Tx::decode(&bad));
        // Inside the signed object: after the 32-byte signer and 64-byte signature.
        let whole = signed.encode();
        let mut bad = whole[..96].to_vec();
        bad.extend_from_slice(&overlong);
        bad.extend_from_slice(&whole[96 + minimal.len()..]);
        assert_overlong_rejected(Signed::<Tx>::decode(&bad));
    }

    #[test]
    fn overlong_vote_fields_are_rejected(vote in vote(), pad in 1usize..=4) {
        // Height (u64) first, then round (u32): pad each in turn.
        let h = encode(&vote.height);
        let r = encode(&vote.round);
        let rest = &vote.encode()[h.len() + r.len()..];
        let mut bad = varint(vote.height.0, h.len() + pad);
        bad.extend_from_slice(&r);
        bad.extend_from_slice(rest);
        assert_overlong_rejected(Vote::decode(&bad));
        let mut bad = h.clone();
        bad.extend_from_slice(&varint(u64::from(vote.round.0), r.len() + pad));
        bad.extend_from_slice(rest);
        assert_overlong_rejected(Vote::decode(&bad));
    }
}

#[test]
fn overlong_zero_nonce_is_non_canonical() {
    // Nonce 0 as [0x80, 0x00]: postcard reads it as 0, and only the re-encoding check refuses
    // it. This pins that check down.
    let tx = Tx {
        nonce: Nonce(0),
        fee: Amount(1),
        action: Action::Unstake(attest_protocol::tx::Unstake { amount: Amount(5) }),
    };
    let mut bad = vec![0x80, 0x00];
    bad.extend_from_slice(&tx.encode()[1..]);
    assert_eq!(
        Tx::decode(&bad),
        Err(DecodeError::NonCanonical { what: Tx::NAME })
    );
}

#[test]
fn bad_tags_are_rejected() {
    let vote = Vote {
        height: attest_protocol::Height(3),
        round: Round(1),
        kind: attest_protocol::VoteKind::Prevote,
        block: None,
    };
    let good = vote.encode();
    assert_eq!(good, [3, 1, 0, 0]);
    assert_eq!(Vote::decode(&good), Ok(vote));
    // Vote kind 2 does not exist; an Option tag of 2 is neither None nor Some.
    assert!(matches!(
        Vote::decode(&[3, 1, 2, 0]),
        Err(DecodeError::Malformed { .. })
    ));
    assert!(matches!(
        Vote::decode(&[3, 1, 0, 2]),
        Err(DecodeError::Malformed { .. })
    ));
    // Action variant 8 does not exist.
    assert!(matches!(
        Tx::decode(&[0, 0, 8, 0]),
        Err(DecodeError::Malformed { .. })
    ));
}

/// Input longer than a type's bound is refused before it is read, whatever it holds.
fn assert_too_large<T: Canonical + std::fmt::Debug>() {
    let bytes = vec![0u8; T::MAX_ENCODED_LEN + 1];
    assert_eq!(
        T::decode(&bytes).map(|_| ()),
        Err(DecodeError::TooLarge {
            what: T::NAME,
            len: T::MAX_ENCODED_LEN + 1,
            max: T::MAX_ENCODED_LEN
        })
    );
}

#[test]
fn oversized_input_is_too_large() {
    assert_too_large::<Tx>();
    assert_too_large::<Signed<Tx>>();
    assert_too_large::<Vote>();
    assert_too_large::<Signed<Vote>>();
    assert_too_large::<CapacityAdvert>();
    assert_too_large::<Signed<CapacityAdvert>>();
    assert_too_large::<CommitCertificate>();
    assert_too_large::<Block>();
    assert_too_large::<Proposal>();
    assert_too_large::<Signed<Proposal>>();
}

// --- Length prefixes over their bounds -----------------------------------------------------

fn open_job_tx(input_len: usize) -> (Tx, OpenJob) {
    let job = OpenJob {
        model: ModelId::new("attest-tiny-1b").expect("valid"),
        input: attest_protocol::Bytes::new(vec![0x41; input_len.min(4096)]).expect("in bound"),
        max_tokens: 7,
        provider: SecretKey::from_seed([7; 32]).public(),
        device: DeviceName::new("h100").expect("valid"),
        price_per_token: Amount(11),
        deadline_ms: 20_000,
        check: attest_protocol::tx::CheckLevel::Always,
    };
    let tx = Tx {
        nonce: Nonce(300),
        fee: Amount(1_000),
        action: Action::OpenJob(job.clone()),
    };
    (tx, job)
}

/// The encoding of an `OpenJob` transaction whose input has `input_len` bytes, built field by
/// field so the length can exceed the bound the typed value enforces.
fn open_job_encoding(input_len: usize) -> Vec<u8> {
    let (tx, job) = open_job_tx(0);
    let mut out = encode(&tx.nonce);
    out.extend(encode(&tx.fee));
    out.push(3); // Action::OpenJob
    out.extend(encode(&job.model));
    out.extend(encode(&vec![0x41u8; input_len]));
    out.extend(encode(&job.max_tokens));
    out.extend(encode(&job.provider));
    out.extend(encode(&job.device));
    out.extend(encode(&job.price_per_token));
    out.extend(encode(&job.deadline_ms));
    out.extend(encode(&job.check));
    out
}

#[test]
fn bytes_field_over_its_bound_is_rejected() {
    // At the bound: the hand-built encoding is the real one and decodes.
    let (tx, _) = open_job_tx(4096);
    assert_eq!(open_job_encoding(4096), tx.encode());
    assert_eq!(Tx::decode(&open_job_encoding(4096)), Ok(tx));
    // One byte over, with the byte present: refused although the whole fits in a transaction.
    let over = open_job_encoding(4097);
    assert!(over.len() <= Tx::MAX_ENCODED_LEN);
    assert!(matches!(
        Tx::decode(&over),
        Err(DecodeError::Malformed { .. })
    ));
}

fn witness_encoding(activation_len: usize) -> Vec<u8> {
    let mut out = encode(&Nonce(1));
    out.extend(encode(&Amount(2)));
    out.push(6); // Action::Dispute
    out.extend(encode(&JobId([9; 32])));
    out.extend(encode(&Round(4)));
    out.push(1); // DisputeStep::Witness
    out.extend(encode(&vec![0x5au8; activation_len]));
    out
}

#[test]
fn activation_over_its_bound_is_rejected() {
    let ok = Tx::decode(&witness_encoding(1024)).expect("an activation at the bound");
    let Action::Dispute(d) = &ok.action else {
        panic!("decoded {ok:?}");
    };
    assert!(
        matches!(&d.step, attest_protocol::tx::DisputeStep::Witness { activation } if activation.len() == 1024)
    );
    assert!(matches!(
        Tx::decode(&witness_encoding(1025)),
        Err(DecodeError::Malformed { .. })
    ));
}

fn advert_encoding(model_count: usize, declared: usize) -> Vec<u8> {
    let mut out = encode(&SecretKey::from_seed([3; 32]).public());
    out.extend(encode(&DeviceName::new("wse-3").expect("valid")));
    out.extend(encode(&(declared as u64)));
    for i in 0..model_count {
        out.extend(encode(&ModelId::new(&format!("m{i}")).expect("valid")));
    }
    for field in [5u64, 6, 7, 8, 9] {
        // free_slots, price, speed, expiry, seq: all small varints.
        out.extend(encode(&field));
    }
    out
}

#[test]
fn vec_field_over_its_bound_is_rejected() {
    let ok = CapacityAdvert::decode(&advert_encoding(16, 16)).expect("16 models is the bound");
    assert_eq!(ok.models.len(), 16);
    // 17 models, all present.
    assert!(matches!(
        CapacityAdvert::decode(&advert_encoding(17, 17)),
        Err(DecodeError::Malformed { .. })
    ));
    // A count over the bound is refused from the prefix alone.
    assert!(matches!(
        CapacityAdvert::decode(&advert_encoding(0, 1_000_000)),
        Err(DecodeError::Malformed { .. })
    ));

    // A proof of 48 siblings decodes, 49 does not.
    let proof = |n: usize| {
        let mut out = encode(&(n as u64));
        for _ in 0..n {
            out.extend([0xab; 32]);
        }
        out
    };
    let ok = decode_bounded::<MerkleProof>(&proof(MAX_PROOF_DEPTH), "proof", 4096).expect("48");
    assert_eq!(ok.siblings.len(), MAX_PROOF_DEPTH);
    assert!(decode_bounded::<MerkleProof>(&proof(MAX_PROOF_DEPTH + 1), "proof", 4096).is_err());

    // A certificate claiming 257 signatures (one more than validators may exist).
    let mut cert = encode(&attest_protocol::Height(1));
    cert.extend(encode(&Round(0)));
    cert.extend([0x11; 32]);
    cert.extend(encode(&257u64));
    assert!(matches!(
        CommitCertificate::decode(&cert),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn block_with_too_many_txs_is_rejected() {
    let header = attest_protocol::BlockHeader {
        chain_id: ChainId::new("attest-local").expect("valid"),
        height: attest_protocol::Height(2),
        prev: BlockHash([1; 32]),
        proposer: SecretKey::from_seed([5; 32]).public(),
        time_ms: 1,
        tx_root: Hash([2; 32]),
        state_root: Hash([3; 32]),
        last_commit: Hash([4; 32]),
    };
    let mut bytes = encode(&header);
    bytes.extend(encode(&1025u64));
    assert!(matches!(
        Block::decode(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

// --- Public keys -----------------------------------------------------------------------------

/// The 32 bytes of the field element `p + k`, `p = 2^255 - 19` (`k <= 18`): a non-canonical
/// y coordinate, equal to `k` modulo p.
fn p_plus(k: u8) -> [u8; 32] {
    let mut b = [0xff; 32];
    b[0] = 0xed + k;
    b[31] = 0x7f;
    b
}

/// An encoding that is not the y coordinate of any curve point.
fn off_curve() -> [u8; 32] {
    (2u8..=255)
        .map(|y| {
            let mut b = [0; 32];
            b[0] = y;
            b
        })
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .expect("about half of all y are off the curve")
}

/// Every encoding of a point of small order: the eight torsion points, with and without the
/// sign bit, and the non-canonical forms of the small y values.
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for t in EIGHT_TORSION {
        let b = t.compress().to_bytes();
        out.push(b);
        let mut signed = b;
        signed[31] ^= 0x80;
        out.push(signed);
    }
    // The identity as p + 1, and the order-4 point with y = 0 as p.
    out.push(p_plus(1));
    out.push(p_plus(0));
    let mut identity = [0; 32];
    identity[0] = 1;
    assert!(out.contains(&identity));
    out
}

#[test]
fn invalid_public_keys_are_rejected() {
    for b in small_order_encodings() {
        let r = PublicKey::from_bytes(b);
        // Some of these are also not valid encodings at all (sign bit on x = 0).
        assert!(
            matches!(r, Err(ParseError::PublicKey(_))),
            "{}: {r:?}",
            hex_lower(&b)
        );
    }
    assert_eq!(
        PublicKey::from_bytes(off_curve()),
        Err(ParseError::PublicKey("not a point on the curve"))
    );
    let mut identity = [0; 32];
    identity[0] = 1;
    assert_eq!(
        PublicKey::from_bytes(identity),
        Err(ParseError::PublicKey("a point of small order"))
    );
}

/// `signed`'s encoding with the signer replaced by `key`.
fn with_signer(signed: &Signed<Tx>, key: [u8; 32]) -> Vec<u8> {
    let mut bytes = signed.encode();
    bytes[..32].copy_from_slice(&key);
    bytes
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn signed_tx_with_invalid_signer_is_rejected((_, signed) in signed_tx()) {
        let mut bad_keys = small_order_encodings();
        bad_keys.push(off_curve());
        for key in bad_keys {
            let r = Signed::<Tx>::decode(&with_signer(&signed, key));
            prop_assert!(matches!(r, Err(DecodeError::Malformed { .. })), "{}: {:?}", hex_lower(&key), r);
        }
    }

    #[test]
    fn transfer_to_invalid_key_is_rejected(nonce in any::<u64>(), fee in any::<u64>()) {
        let mut identity = [0; 32];
        identity[0] = 1;
        for key in [identity, off_curve()] {
            let mut bytes = encode(&Nonce(nonce));
            bytes.extend(encode(&Amount(fee)));
            bytes.push(0); // Action::Transfer
            bytes.extend(key);
            bytes.push(1); // amount
            let r = Tx::decode(&bytes);
            prop_assert!(matches!(r, Err(DecodeError::Malformed { .. })), "{:?}", r);
        }
    }
}

/// Large-order points whose y has a second, non-canonical encoding `p + y` (y <= 18).
fn non_canonical_large_order_encodings() -> Vec<[u8; 32]> {
    (2u8..=18)
        .flat_map(|k| {
            let b = p_plus(k);
            let mut neg = b;
            neg[31] |= 0x80;
            [b, neg]
        })
        .filter(|b| {
            CompressedEdwardsY(*b)
                .decompress()
                .is_some_and(|p| !p.is_small_order() && p.compress().to_bytes() != *b)
        })
        .collect()
}

/// `p + y` names the same point as `y`; accepting it would give one key two names. (A
/// regression test: the check once compared `VerifyingKey::to_bytes()`, which returns the
/// input bytes unchanged, so it never fired.)
#[test]
fn non_canonical_public_keys_are_rejected() {
    let encodings = non_canonical_large_order_encodings();
    assert!(!encodings.is_empty(), "some y <= 18 lies on the curve");
    let signed = Signed::sign(
        &ChainId::new("c").expect("valid"),
        &SecretKey::from_seed([1; 32]),
        Tx {
            nonce: Nonce(0),
            fee: Amount(0),
            action: Action::Unstake(attest_protocol::tx::Unstake { amount: Amount(1) }),
        },
    );
    for b in encodings {
        assert!(
            PublicKey::from_bytes(b).is_err(),
            "{} is accepted",
            hex_lower(&b)
        );
        assert!(matches!(
            Signed::<Tx>::decode(&with_signer(&signed, b)),
            Err(DecodeError::Malformed { .. })
        ));
    }
}

/// The key rule by its definition: a point on the curve, not of small order, whose
/// compression gives the same bytes back.
fn key_ok_by_definition(b: [u8; 32]) -> bool {
    CompressedEdwardsY(b)
        .decompress()
        .is_some_and(|p| !p.is_small_order() && p.compress().to_bytes() == b)
}

proptest! {
    #![proptest_config(config(2048))]

    /// `PublicKey::from_bytes` checks canonical `y` from the bytes instead of recompressing:
    /// it must agree with the definition on any bytes, and near `p` in particular.
    #[test]
    fn the_key_check_agrees_with_the_definition(
        mut b in any::<[u8; 32]>(),
        near_p in any::<bool>(),
        low in 0xe0u8..=0xff,
    ) {
        if near_p {
            b[1..31].fill(0xff);
            b[31] |= 0x7f;
            b[0] = low;
        }
        prop_assert_eq!(PublicKey::from_bytes(b).is_ok(), key_ok_by_definition(b), "{}", hex_lower(&b));
    }
}

#[test]
fn the_key_check_agrees_with_the_definition_on_every_special_encoding() {
    let mut all = small_order_encodings();
    all.extend(non_canonical_large_order_encodings());
    all.extend((0..=18).map(p_plus));
    all.push(off_curve());
    for b in all {
        assert_eq!(
            PublicKey::from_bytes(b).is_ok(),
            key_ok_by_definition(b),
            "{}",
            hex_lower(&b)
        );
    }
}

// --- Identifiers -----------------------------------------------------------------------------

/// The identifier rule, written independently: 1..=max bytes, first `a-z0-9`, the rest
/// `a-z0-9` or one of `extra`.
fn ident_ok(s: &str, max: usize, extra: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= max
        && s.chars().next().is_some_and(ok)
        && s.chars().all(|c| ok(c) || extra.contains(c))
}

/// A capacity advert whose device name is the raw bytes `name`.
fn advert_with_device(name: &[u8]) -> Vec<u8> {
    let mut out = encode(&SecretKey::from_seed([3; 32]).public());
    out.extend(encode(&name.to_vec()));
    out.extend([0, 1, 2, 3, 4, 5]); // no models, then five small integers
    out
}

/// A block header's worth of block whose chain id is the raw bytes `name`.
fn block_with_chain_id(name: &[u8]) -> Vec<u8> {
    let mut out = encode(&name.to_vec());
    out.push(1); // height
    out.extend([0; 32]); // prev
    out.extend(encode(&SecretKey::from_seed([5; 32]).public()));
    out.push(9); // time
    out.extend([0; 96]); // three hashes
    out.extend([0, 0]); // no transactions, no certificate
    out
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn identifiers_follow_their_alphabet(s in "[a-zA-Z0-9._ /é~-]{0,50}") {
        prop_assert_eq!(ChainId::new(&s).is_ok(), ident_ok(&s, 32, "-"));
        prop_assert_eq!(ModelId::new(&s).is_ok(), ident_ok(&s, 48, "-."));
        prop_assert_eq!(DeviceName::new(&s).is_ok(), ident_ok(&s, 32, "-._"));
        prop_assert_eq!(s.parse::<ChainId>().is_ok(), ident_ok(&s, 32, "-"));
        // The decoder applies the same rule.
        prop_assert_eq!(
            CapacityAdvert::decode(&advert_with_device(s.as_bytes())).is_ok(),
            ident_ok(&s, 32, "-._")
        );
        prop_assert_eq!(
            Block::decode(&block_with_chain_id(s.as_bytes())).is_ok(),
            ident_ok(&s, 32, "-")
        );
    }

    #[test]
    fn non_utf8_identifiers_are_rejected(mut name in prop::collection::vec(any::<u8>(), 1..32)) {
        name[0] = 0xff; // never valid UTF-8
        let r = CapacityAdvert::decode(&advert_with_device(&name));
        prop_assert!(matches!(r, Err(DecodeError::Malformed { .. })), "{:?}", r);
    }
}

#[test]
fn identifier_errors_name_the_problem() {
    assert_eq!(ChainId::new(""), Err(IdentError::Empty { kind: "ChainId" }));
    assert_eq!(
        ChainId::new(&"a".repeat(33)),
        Err(IdentError::TooLong {
            kind: "ChainId",
            len: 33,
            max: 32
        })
    );
    assert!(ChainId::new(&"a".repeat(32)).is_ok());
    assert!(ModelId::new(&"a".repeat(48)).is_ok());
    assert!(matches!(
        ModelId::new(&"a".repeat(49)),
        Err(IdentError::TooLong {
            len: 49,
            max: 48,
            ..
        })
    ));
    assert!(matches!(
        DeviceName::new("-h100"),
        Err(IdentError::BadStart { .. })
    ));
    assert!(matches!(
        ChainId::new("Attest"),
        Err(IdentError::BadStart { .. })
    ));
    assert!(matches!(
        ChainId::new("éa"),
        Err(IdentError::BadStart { .. })
    ));
    assert!(matches!(
        ChainId::new("attest.local"),
        Err(IdentError::BadChar { c: '.', .. })
    ));
    assert!(ModelId::new("attest.local").is_ok());
    assert!(matches!(
        ModelId::new("a_b"),
        Err(IdentError::BadChar { c: '_', .. })
    ));
    assert!(DeviceName::new("a_b").is_ok());
    assert!(matches!(
        DeviceName::new("aBc"),
        Err(IdentError::BadChar { c: 'B', .. })
    ));
    assert!(matches!(
        DeviceName::new("a é"),
        Err(IdentError::BadChar { c: ' ', .. })
    ));

    // Empty and too long are refused by the decoder too.
    assert!(CapacityAdvert::decode(&advert_with_device(b"h100")).is_ok());
    assert!(CapacityAdvert::decode(&advert_with_device(b"")).is_err());
    assert!(CapacityAdvert::decode(&advert_with_device(&[b'a'; 33])).is_err());
    assert!(CapacityAdvert::decode(&advert_with_device(&[b'a'; 32])).is_ok());
}

// --- Text forms ------------------------------------------------------------------------------

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn public_key_text_errors() {
    let good = SecretKey::from_seed([2; 32]).public().to_string();
    assert_eq!(
        good[..63].parse::<PublicKey>(),
        Err(ParseError::Length {
            what: "public key",
            expected: 64,
            got: 63,
            unit: "hex characters"
        })
    );
    assert!(matches!(
        format!("{good}0").parse::<PublicKey>(),
        Err(ParseError::Length { got: 65, .. })
    ));
    assert!(matches!(
        "".parse::<PublicKey>(),
        Err(ParseError::Length { got: 0, .. })
    ));
    let not_hex = format!("g{}", &good[1..]);
    assert!(matches!(
        not_hex.parse::<PublicKey>(),
        Err(ParseError::Hex {
            what: "public key",
            ..
        })
    ));
    let mut identity = "01".to_string();
    identity.push_str(&"0".repeat(62));
    assert_eq!(
        identity.parse::<PublicKey>(),
        Err(ParseError::PublicKey("a point of small order"))
    );
    assert_eq!(
        hex_lower(&off_curve()).parse::<PublicKey>(),
        Err(ParseError::PublicKey("not a point on the curve"))
    );
}

#[test]
fn secret_key_text_errors() {
    let hex64 = "ab".repeat(32);
    assert_eq!(
        SecretKey::from_text(&hex64).map(|k| k.public()),
        Err(ParseError::Prefix {
            what: "secret key",
            prefix: "ed25519-seed:"
        })
    );
    assert!(matches!(
        SecretKey::from_text(&format!("ed25519-key:{hex64}")),
        Err(ParseError::Prefix { .. })
    ));
    assert!(matches!(
        SecretKey::from_text(&format!("ed25519-seed:{}", &hex64[..62])),
        Err(ParseError::Length {
            what: "secret key",
            expected: 64,
            got: 62,
            ..
        })
    ));
    assert!(matches!(
        SecretKey::from_text(&format!("ed25519-seed:{}zz", &hex64[..62])),
        Err(ParseError::Hex {
            what: "secret key",
            ..
        })
    ));
    assert!(SecretKey::from_text(&format!("ed25519-seed:{hex64}")).is_ok());
}

#[test]
fn signature_text_errors() {
    assert!(matches!(
        "ab".repeat(63).parse::<Signature>(),
        Err(ParseError::Length {
            what: "signature",
            expected: 128,
            got: 126,
            ..
        })
    ));
    assert!(matches!(
        format!("{}xy", "ab".repeat(63)).parse::<Signature>(),
        Err(ParseError::Hex {
            what: "signature",
            ..
        })
    ));
    assert_eq!(
        "ab".repeat(64).parse::<Signature>(),
        Ok(Signature([0xab; 64]))
    );
}

#[test]
fn hash_text_errors() {
    assert!(matches!(
        "00".repeat(31).parse::<Hash>(),
        Err(ParseError::Length {
            what: "Hash",
            got: 62,
            ..
        })
    ));
    assert!(matches!(
        "0".repeat(65).parse::<TxHash>(),
        Err(ParseError::Length { what: "TxHash", .. })
    ));
    assert!(matches!(
        format!("{}-", "0".repeat(63)).parse::<BlockHash>(),
        Err(ParseError::Hex {
            what: "BlockHash",
            ..
        })
    ));
    // 64 bytes of text that are 63 characters: one of them two bytes long.
    assert!(matches!(
        format!("é{}", "0".repeat(62)).parse::<JobId>(),
        Err(ParseError::Hex { what: "JobId", .. })
    ));
}

#[test]
fn amount_text_errors() {
    let reason = |s: &str| match s.parse::<Amount>() {
        Err(ParseError::Amount { text, reason }) => {
            assert_eq!(text, s);
            reason
        }
        other => panic!("{s:?} parsed as {other:?}"),
    };
    assert_eq!(
        reason("1.0000001"),
        "more than six decimals (the unit is 0.000001)"
    );
    assert_eq!(
        reason("0.1234567"),
        "more than six decimals (the unit is 0.000001)"
    );
    for s in ["", ".5", "-1", "+1", " 1", "1e6", "a", "١"] {
        assert_eq!(
            reason(s),
            "expected decimal digits before the point",
            "{s:?}"
        );
    }
    for s in ["1.", "1.-5", "1.5.5", "1. 5", "1.e"] {
        assert_eq!(
            reason(s),
            "expected decimal digits after the point",
            "{s:?}"
        );
    }
    for s in [
        "18446744073709.551616",
        "18446744073710",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        assert_eq!(reason(s), "too large", "{s:?}");
    }
}

#[test]
fn peer_id_text_errors() {
    let key = SecretKey::from_seed([4; 32]).public();
    let good = key.peer_id();
    assert_eq!(PublicKey::from_peer_id(&good), Ok(key));
    let reason = |s: &str| match PublicKey::from_peer_id(s) {
        Err(ParseError::PeerId { text, reason }) => {
            assert_eq!(text, s);
            reason
        }
        other => panic!("{s:?} parsed as {other:?}"),
    };
    // '0', 'O', 'I' and 'l' are not in the base58 alphabet.
    assert_eq!(reason(&format!("0{}", &good[1..])), "not base58btc");
    assert_eq!(reason(""), "not the identity multihash of an ed25519 key");
    assert_eq!(
        reason(&good[..good.len() - 1]),
        "not the identity multihash of an ed25519 key"
    );
    // Far too long for the decoding buffer.
    assert_eq!(reason(&"z".repeat(200)), "not base58btc");
    // A well-formed PeerId of an invalid key.
    let mut bytes = key.peer_id_bytes();
    bytes[6..].copy_from_slice(&{
        let mut identity = [0; 32];
        identity[0] = 1;
        identity
    });
    assert_eq!(
        reason(&bs58::encode(bytes).into_string()),
        "not a valid ed25519 public key"
    );
}

/// The smallest transaction there is (an unstake of nothing at nonce 0 and fee 0) is one byte
/// over the minimum: its amount.
#[test]
fn the_smallest_transaction_is_one_byte_over_the_minimum() {
    let chain = ChainId::new("c").unwrap();
    let key = SecretKey::from_seed([7; 32]);
    let body = Tx {
        nonce: Nonce(0),
        fee: Amount(0),
        action: Action::Unstake(attest_protocol::tx::Unstake { amount: Amount(0) }),
    };
    let len = Signed::sign(&chain, &key, body).encode().len();
    assert_eq!(len, attest_protocol::limits::MIN_TX_BYTES + 1);
    assert_eq!(
        attest_protocol::limits::MAX_BLOCK_TXS,
        attest_protocol::limits::MAX_BLOCK_BYTES / attest_protocol::limits::MIN_TX_BYTES
    );
}
