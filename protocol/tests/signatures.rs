//! Signatures bind everything they should: the body, the signer, the chain and the kind of
//! object. Batch verification answers what single verification answers.

mod common;

use attest_protocol::tx::{EquivocationEvidence, NodeBinding, Stake, Transfer};
use attest_protocol::{
    Action, Amount, BlockHash, CapacityAdvert, ChainId, CommitCertificate, CommitSig, Height,
    Nonce, PublicKey, Round, SecretKey, Signable, Signature, SignatureError, Signed, Tx, Vote,
    VoteKind, signing_payload, verify_batch,
};
use attest_protocol::{BoundedVec, Canonical};
use common::*;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use proptest::prelude::*;

fn chain(s: &str) -> ChainId {
    ChainId::new(s).expect("valid chain id")
}

/// Checks that no single-bit change of `signed`'s encoding yields another object that passes
/// `check` on `chain`: the flipped bytes either fail to decode or fail verification.
fn flip_is_detected<T>(signed: &Signed<T>, chain: &ChainId, bit: usize) -> Result<(), TestCaseError>
where
    T: Canonical + Signable + PartialEq + std::fmt::Debug,
{
    let mut bytes = signed.encode();
    bytes[bit / 8] ^= 1 << (bit % 8);
    if let Ok(other) = Signed::<T>::decode(&bytes) {
        prop_assert_ne!(&other, signed, "bit {} changed nothing", bit);
        prop_assert!(
            other.check(chain).is_err(),
            "flipping bit {} gave a validly signed {:?}",
            bit,
            other
        );
    }
    Ok(())
}

fn every_flip_is_detected<T>(signed: &Signed<T>, chain: &ChainId) -> Result<(), TestCaseError>
where
    T: Canonical + Signable + PartialEq + std::fmt::Debug,
{
    prop_assert!(signed.check(chain).is_ok());
    for bit in 0..signed.encode().len() * 8 {
        flip_is_detected(signed, chain, bit)?;
    }
    Ok(())
}

fn verified_keeps_the_object<T>(signed: &Signed<T>, chain: &ChainId) -> Result<(), TestCaseError>
where
    T: Signable + Clone + PartialEq + std::fmt::Debug,
{
    prop_assert_eq!(signed.check(chain), Ok(()));
    let verified = signed.clone().verify(chain).expect("checked above");
    prop_assert_eq!(verified.signer(), &signed.signer);
    prop_assert_eq!(verified.body(), &signed.body);
    prop_assert_eq!(verified.signed(), signed);
    prop_assert_eq!(&verified.into_signed(), signed);
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn signed_objects_verify(
        (c1, tx) in signed_tx(),
        (c2, vote) in signed_vote(),
        (c3, advert) in signed_advert(),
    ) {
        verified_keeps_the_object(&tx, &c1)?;
        verified_keeps_the_object(&vote, &c2)?;
        verified_keeps_the_object(&advert, &c3)?;
    }

    #[test]
    fn sampled_bit_flips_are_detected(
        (c1, tx) in signed_tx(),
        (c2, vote) in signed_vote(),
        (c3, advert) in signed_advert(),
        bits in prop::collection::vec(any::<prop::sample::Index>(), 8),
    ) {
        for bit in &bits {
            flip_is_detected(&tx, &c1, bit.index(tx.encode().len() * 8))?;
            flip_is_detected(&vote, &c2, bit.index(vote.encode().len() * 8))?;
            flip_is_detected(&advert, &c3, bit.index(advert.encode().len() * 8))?;
        }
    }

    #[test]
    fn signatures_are_bound_to_their_chain(
        (a, tx) in signed_tx(),
        (_, vote) in signed_vote(),
        b in chain_id(),
    ) {
        prop_assume!(a != b);
        prop_assert_eq!(
            tx.check(&b),
            Err(SignatureError::Invalid { what: "attest/sig/tx/v1", signer: tx.signer.to_string() })
        );
        // The vote was signed for some chain; re-sign it for `a` and try it on `b`.
        let key = SecretKey::from_seed([9; 32]);
        let vote = Signed::sign(&a, &key, vote.body);
        prop_assert!(vote.check(&a).is_ok());
        prop_assert!(vote.check(&b).is_err());
    }

    #[test]
    fn signatures_are_bound_to_their_signer((c, tx) in signed_tx(), other in public_key()) {
        prop_assume!(other != tx.signer);
        let mut forged = tx.clone();
        forged.signer = other;
        prop_assert!(forged.check(&c).is_err());
    }

    #[test]
    fn signing_payload_is_tag_chain_body((c, tx) in signed_tx(), (_, vote) in signed_vote()) {
        // The documented layout: tag, NUL, encoded chain id, encoded body.
        fn expected<T: Canonical>(tag: &str, c: &ChainId, body: &T) -> Vec<u8> {
            let mut out = tag.as_bytes().to_vec();
            out.push(0);
            out.extend(encoded_ident(c.as_str()));
            out.extend(body.encode());
            out
        }
        prop_assert_eq!(signing_payload(&c, &tx.body), expected("attest/sig/tx/v1", &c, &tx.body));
        prop_assert_eq!(
            signing_payload(&c, &vote.body),
            expected("attest/sig/vote/v1", &c, &vote.body)
        );
        // The signature covers the tx tag and no other.
        for tag in [
            "attest/sig/vote/v1",
            "attest/sig/proposal/v1",
            "attest/sig/advert/v1",
            "attest/sig/node-binding/v1",
        ] {
            prop_assert!(!tx.signer.verify(&expected(tag, &c, &tx.body), &tx.signature));
        }
        prop_assert!(tx.signer.verify(&expected("attest/sig/tx/v1", &c, &tx.body), &tx.signature));
    }
}

proptest! {
    // Every bit of the encoding, for a few objects of each kind.
    #![proptest_config(config(3))]

    #[test]
    fn every_bit_flip_of_a_tx_is_detected((c, tx) in signed_tx()) {
        every_flip_is_detected(&tx, &c)?;
    }

    #[test]
    fn every_bit_flip_of_a_vote_is_detected((c, vote) in signed_vote()) {
        every_flip_is_detected(&vote, &c)?;
    }

    #[test]
    fn every_bit_flip_of_an_advert_is_detected((c, advert) in signed_advert()) {
        every_flip_is_detected(&advert, &c)?;
    }
}

/// A key whose public key starts with byte 1, so a transfer to it encodes like `Some(block)`.
fn key_starting_with_one() -> SecretKey {
    (0u32..)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .find(|k| k.public().as_bytes()[0] == 1)
        .expect("one key in 256 starts with 1")
}

proptest! {
    #![proptest_config(config(32))]

    /// A transaction and a vote with byte-identical encodings: the signature over one is not a
    /// signature over the other, because the signing tag differs.
    #[test]
    fn a_tx_signature_does_not_sign_a_vote(
        c in chain_id(),
        signer in secret_key(),
        nonce in any::<u64>(),
        fee in 0..=u64::from(u32::MAX),
        amount in 0u64..128,
    ) {
        let to = key_starting_with_one().public();
        let tx = Tx {
            nonce: Nonce(nonce),
            fee: Amount(fee),
            action: Action::Transfer(Transfer { to, amount: Amount(amount) }),
        };
        let bytes = tx.encode();
        let vote = Vote::decode(&bytes).expect("the encodings coincide");
        let mut block = [0u8; 32];
        block[..31].copy_from_slice(&to.as_bytes()[1..]);
        block[31] = amount as u8;
        prop_assert_eq!(&vote, &Vote {
            height: Height(nonce),
            round: Round(fee as u32),
            kind: VoteKind::Prevote,
            block: Some(BlockHash(block)),
        });
        prop_assert_eq!(vote.encode(), bytes);

        let signed_tx = Signed::sign(&c, &signer, tx);
        prop_assert!(signed_tx.check(&c).is_ok());
        let relabelled = Signed { signer: signed_tx.signer, signature: signed_tx.signature, body: vote.clone() };
        prop_assert!(relabelled.check(&c).is_err());

        // And the other way round.
        let signed_vote = Signed::sign(&c, &signer, vote);
        prop_assert!(signed_vote.check(&c).is_ok());
        let relabelled = Signed {
            signer: signed_vote.signer,
            signature: signed_vote.signature,
            body: signed_tx.body.clone(),
        };
        prop_assert!(relabelled.check(&c).is_err());
    }

    #[test]
    fn stake_binding_names_one_account_on_one_chain(
        c in chain_id(),
        other_chain in chain_id(),
        node in secret_key(),
        account in public_key(),
        other in public_key(),
        amount in amount(),
    ) {
        let capability = attest_protocol::tx::Capability {
            device: attest_protocol::DeviceName::new("cpu").unwrap(),
            memory_bytes: 1,
        };
        let stake = Stake::new(&c, &node, account, amount, capability);
        prop_assert_eq!(stake.node, node.public());
        prop_assert_eq!(stake.amount, amount);
        prop_assert!(stake.binding_is_valid(&c, &account));
        prop_assert_eq!(
            signing_payload(&c, &NodeBinding { account }),
            {
                let mut p = b"attest/sig/node-binding/v1\0".to_vec();
                p.extend(encoded_ident(c.as_str()));
                p.extend(account.as_bytes());
                p
            }
        );
        if other != account {
            prop_assert!(!stake.binding_is_valid(&c, &other));
        }
        if other_chain != c {
            prop_assert!(!stake.binding_is_valid(&other_chain, &account));
        }
        // Someone else's node key cannot claim the binding.
        let mut stolen = stake.clone();
        stolen.node = other;
        prop_assert!(!stolen.binding_is_valid(&c, &account));
    }
}

/// The encoding of an identifier: a length byte (all ours are under 128 bytes) and the text.
fn encoded_ident(s: &str) -> Vec<u8> {
    let mut out = vec![s.len() as u8];
    out.extend(s.as_bytes());
    out
}

// --- Batch verification ----------------------------------------------------------------------

/// The order of the base point, little-endian.
const ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The ways a batch item can be built.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// A valid signature.
    Valid,
    /// A valid signature with one bit flipped.
    FlippedBit(usize),
    /// A valid signature over a different message.
    OtherMessage,
    /// `R` replaced by the identity encoding (a point of small order).
    IdentityR,
    /// `R` replaced by another small-order point.
    TorsionR(usize),
    /// Signed with a torsion point added to the nonce point: valid under the cofactored rule.
    TorsionedR(usize),
    /// `s` replaced by `s + l`: the same scalar, not canonically encoded.
    UnreducedS,
    /// Random bytes.
    Random([u8; 64]),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        3 => Just(Item::Valid),
        1 => (0usize..512).prop_map(Item::FlippedBit),
        1 => Just(Item::OtherMessage),
        1 => Just(Item::IdentityR),
        1 => (0usize..8).prop_map(Item::TorsionR),
        1 => (0usize..8).prop_map(Item::TorsionedR),
        1 => Just(Item::UnreducedS),
        1 => any::<[u8; 64]>().prop_map(Item::Random),
    ]
}

fn add_order(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(ORDER[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "s + l fits in 256 bits");
    out
}

fn build(kind: Item, key: &SecretKey, msg: &[u8]) -> Signature {
    let mut sig = key.sign(msg).0;
    match kind {
        Item::Valid => {}
        Item::FlippedBit(bit) => sig[bit / 8] ^= 1 << (bit % 8),
        Item::OtherMessage => sig = key.sign(b"something else").0,
        Item::IdentityR => {
            sig[..32].fill(0);
            sig[0] = 1;
        }
        Item::TorsionR(i) => sig[..32].copy_from_slice(&EIGHT_TORSION[i].compress().to_bytes()),
        Item::TorsionedR(i) => {
            sig = sign_with_extra_r(&raw_key(key.seed()), msg, &EIGHT_TORSION[i]).0
        }
        Item::UnreducedS => {
            let s = add_order(&sig[32..]);
            sig[32..].copy_from_slice(&s);
        }
        Item::Random(bytes) => sig = bytes,
    }
    Signature(sig)
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn batch_agrees_with_single_verification(
        specs in prop::collection::vec(
            (secret_key(), prop::collection::vec(any::<u8>(), 0..64), item()),
            0..10,
        )
    ) {
        let owned: Vec<(PublicKey, Vec<u8>, Signature)> = specs
            .iter()
            .map(|(key, msg, kind)| (key.public(), msg.clone(), build(*kind, key, msg)))
            .collect();
        let items: Vec<(PublicKey, &[u8], Signature)> =
            owned.iter().map(|(k, m, s)| (*k, m.as_slice(), *s)).collect();
        let single: Vec<bool> = items.iter().map(|(k, m, s)| k.verify(m, s)).collect();
        prop_assert_eq!(verify_batch(&items), single.clone());
        // Items built valid verify; items built broken do not.
        for ((_, _, kind), ok) in specs.iter().zip(&single) {
            match kind {
                Item::Valid | Item::TorsionedR(_) => prop_assert!(*ok),
                Item::FlippedBit(_) | Item::IdentityR | Item::TorsionR(_) | Item::UnreducedS => {
                    prop_assert!(!*ok, "{:?} verified", kind)
                }
                Item::OtherMessage | Item::Random(_) => {}
            }
        }
    }
}

#[test]
fn batch_edge_cases() {
    assert!(verify_batch(&[]).is_empty());
    let key = SecretKey::from_seed([1; 32]);
    let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
    let valid: Vec<(PublicKey, &[u8], Signature)> = msgs
        .iter()
        .map(|m| (key.public(), m.as_slice(), key.sign(m)))
        .collect();
    assert_eq!(verify_batch(&valid), vec![true; 5]);

    // One corrupted signature among valid ones: only it is refused.
    let mut one_bad = valid.clone();
    one_bad[2].2.0[40] ^= 0x10;
    assert_eq!(verify_batch(&one_bad), [true, true, false, true, true]);

    // The identity as R, alone and in a batch.
    let mut identity_r = valid[0].2;
    identity_r.0[..32].fill(0);
    identity_r.0[0] = 1;
    assert!(!key.public().verify(&msgs[0], &identity_r));
    assert_eq!(
        verify_batch(&[(key.public(), &msgs[0], identity_r)]),
        [false]
    );
    let mut mixed = valid.clone();
    mixed[4].2 = identity_r;
    assert_eq!(verify_batch(&mixed), [true, true, true, true, false]);

    // All invalid.
    let all_bad: Vec<_> = valid
        .iter()
        .map(|(k, m, s)| {
            let mut s = *s;
            s.0[63] ^= 0x01;
            (*k, *m, s)
        })
        .collect();
    assert_eq!(verify_batch(&all_bad), vec![false; 5]);
}

// A self-contained SHA-512 (FIPS 180-4), only to build signatures `SecretKey::sign` will not
// make (with a chosen `R`). Checked against `SecretKey::sign` and RFC 8032 below.
mod sha512 {
    #[rustfmt::skip]
    const K: [u64; 80] = [
        0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
        0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
        0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
        0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
        0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
        0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
        0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
        0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
        0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
        0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
        0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
        0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
        0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
        0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
    ];

    pub fn digest(parts: &[&[u8]]) -> [u8; 64] {
        let mut msg: Vec<u8> = parts.concat();
        let bit_len = (msg.len() as u128) * 8;
        msg.push(0x80);
        while msg.len() % 128 != 112 {
            msg.push(0);
        }
        msg.extend(bit_len.to_be_bytes());
        let mut h: [u64; 8] = [
            0x6a09e667f3bcc908,
            0xbb67ae8584caa73b,
            0x3c6ef372fe94f82b,
            0xa54ff53a5f1d36f1,
            0x510e527fade682d1,
            0x9b05688c2b3e6c1f,
            0x1f83d9abfb41bd6b,
            0x5be0cd19137e2179,
        ];
        for block in msg.chunks(128) {
            let mut w = [0u64; 80];
            for (i, word) in block.chunks(8).enumerate() {
                w[i] = u64::from_be_bytes(word.try_into().expect("8 bytes"));
            }
            for i in 16..80 {
                let s0 = w[i - 15].rotate_right(1) ^ w[i - 15].rotate_right(8) ^ (w[i - 15] >> 7);
                let s1 = w[i - 2].rotate_right(19) ^ w[i - 2].rotate_right(61) ^ (w[i - 2] >> 6);
                w[i] = w[i - 16]
                    .wrapping_add(s0)
                    .wrapping_add(w[i - 7])
                    .wrapping_add(s1);
            }
            let mut v = h;
            for i in 0..80 {
                let [a, b, c, d, e, f, g, hh] = v;
                let s1 = e.rotate_right(14) ^ e.rotate_right(18) ^ e.rotate_right(41);
                let ch = (e & f) ^ (!e & g);
                let t1 = hh
                    .wrapping_add(s1)
                    .wrapping_add(ch)
                    .wrapping_add(K[i])
                    .wrapping_add(w[i]);
                let s0 = a.rotate_right(28) ^ a.rotate_right(34) ^ a.rotate_right(39);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                v = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
            }
            for (x, y) in h.iter_mut().zip(v) {
                *x = x.wrapping_add(y);
            }
        }
        let mut out = [0u8; 64];
        for (chunk, word) in out.chunks_mut(8).zip(h) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// The parts of an ed25519 key (RFC 8032 section 5.1.5).
struct RawKey {
    a: Scalar,
    public: [u8; 32],
    prefix: [u8; 32],
}

fn raw_key(seed: [u8; 32]) -> RawKey {
    let h = sha512::digest(&[&seed]);
    let a = Scalar::from_bytes_mod_order(clamp_integer(h[..32].try_into().expect("32")));
    RawKey {
        a,
        public: EdwardsPoint::mul_base(&a).compress().to_bytes(),
        prefix: h[32..].try_into().expect("32"),
    }
}

/// An ed25519 signature whose nonce point is `R + extra` (RFC 8032 signing when `extra` is
/// the identity): `s = r + H(R' || A || M) a` with `R' = rB + extra`.
fn sign_with_extra_r(key: &RawKey, msg: &[u8], extra: &EdwardsPoint) -> Signature {
    let r = Scalar::from_bytes_mod_order_wide(&sha512::digest(&[&key.prefix, msg]));
    let big_r = (EdwardsPoint::mul_base(&r) + extra).compress().to_bytes();
    let k = Scalar::from_bytes_mod_order_wide(&sha512::digest(&[&big_r, &key.public, msg]));
    let s = r + k * key.a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    Signature(sig)
}

fn identity() -> EdwardsPoint {
    CompressedEdwardsY({
        let mut b = [0; 32];
        b[0] = 1;
        b
    })
    .decompress()
    .expect("the identity decompresses")
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

#[test]
fn rfc8032_test_vector_1() {
    // RFC 8032 section 7.1, TEST 1: the empty message.
    let seed = unhex::<32>("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let sig = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    let key = SecretKey::from_seed(seed);
    assert_eq!(key.public().to_string(), public);
    assert_eq!(key.sign(b"").to_string(), sig);
    assert!(key.public().verify(b"", &sig.parse().expect("hex")));
    // The helper signer agrees, which checks the SHA-512 above.
    assert_eq!(raw_key(seed).public, *key.public().as_bytes());
    assert_eq!(
        sign_with_extra_r(&raw_key(seed), b"", &identity()).to_string(),
        sig
    );
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn helper_signer_matches_the_crate(
        seed in any::<[u8; 32]>(),
        msg in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let key = SecretKey::from_seed(seed);
        prop_assert_eq!(sign_with_extra_r(&raw_key(seed), &msg, &identity()), key.sign(&msg));
    }
}

/// A signature whose `R` carries a torsion component `T` (`R' = rB + T`, `s = r + H(R'||A||M) a`)
/// satisfies the cofactored equation (`sB - R' - kA = -T`, which `[8]` sends to zero) though
/// not the cofactorless one: the rule accepts it, singly and in a batch, alone or among other
/// items, for every torsion point that leaves `R'` of large order. (Under the strict rule used
/// before, single and batch verification could disagree on exactly these: a batch's weight
/// `z` kills an order-2 `T` whenever it is even.)
#[test]
fn torsion_in_r_is_accepted_singly_and_in_batches_alike() {
    let seed = [42; 32];
    let key = SecretKey::from_seed(seed);
    let raw = raw_key(seed);
    let plain = b"a plain one".to_vec();
    for (t, torsion) in EIGHT_TORSION.iter().enumerate() {
        for i in 0u8..8 {
            let msg = [i; 16];
            let sig = sign_with_extra_r(&raw, &msg, torsion);
            assert!(key.public().verify(&msg, &sig), "torsion {t}, message {i}");
            assert_eq!(verify_batch(&[(key.public(), &msg, sig)]), [true]);
            let mut broken = sig;
            broken.0[40] ^= 1;
            let items = [
                (key.public(), plain.as_slice(), key.sign(&plain)),
                (key.public(), &msg[..], sig),
                (key.public(), &msg[..], broken),
            ];
            assert_eq!(
                verify_batch(&items),
                [true, true, false],
                "torsion {t}, message {i}"
            );
        }
    }
}

/// A key with a torsion component (`A = aB + T`: canonical, of large order, so a valid key)
/// signs as any key does, and its signatures satisfy the cofactored equation (`kT` vanishes
/// under `[8]`) whatever `k` is; single and batch verification agree on them.
#[test]
fn keys_with_a_torsion_component_verify_singly_and_in_batches_alike() {
    let a = Scalar::from_bytes_mod_order([7; 32]);
    for (t, torsion) in EIGHT_TORSION.iter().enumerate() {
        let point = EdwardsPoint::mul_base(&a) + torsion;
        let Ok(public) = PublicKey::from_bytes(point.compress().to_bytes()) else {
            panic!("torsion {t}: a point of large order is a valid key");
        };
        let raw = RawKey {
            a,
            public: *public.as_bytes(),
            prefix: [t as u8; 32],
        };
        let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i, t as u8]).collect();
        let sigs: Vec<Signature> = msgs
            .iter()
            .map(|m| sign_with_extra_r(&raw, m, &identity()))
            .collect();
        let items: Vec<(PublicKey, &[u8], Signature)> = msgs
            .iter()
            .zip(&sigs)
            .map(|(m, s)| (public, m.as_slice(), *s))
            .collect();
        let single: Vec<bool> = items.iter().map(|(k, m, s)| k.verify(m, s)).collect();
        assert_eq!(single, vec![true; 6], "torsion {t}");
        assert_eq!(verify_batch(&items), single, "torsion {t}");
    }
}

/// Batches longer than one equation's bound are split, and a bad item in a later part is found.
#[test]
fn long_batches_are_split_and_still_agree() {
    let key = SecretKey::from_seed([3; 32]);
    let msgs: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let mut items: Vec<(PublicKey, &[u8], Signature)> = msgs
        .iter()
        .map(|m| (key.public(), m.as_slice(), key.sign(m)))
        .collect();
    assert_eq!(verify_batch(&items), vec![true; 600]);
    items[555].2.0[50] ^= 4;
    let answers = verify_batch(&items);
    assert!(!answers[555]);
    assert_eq!(answers.iter().filter(|ok| **ok).count(), 599);
}

// --- Equivocation ----------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn equivocation_needs_same_signer_height_round_kind_and_different_blocks(
        signers in (0usize..2, 0usize..2),
        heights in (0u64..2, 0u64..2),
        rounds in (0u32..2, 0u32..2),
        kinds in (vote_kind(), vote_kind()),
        blocks in (prop::option::of(0u8..2), prop::option::of(0u8..2)),
        sigs in (signature(), signature()),
    ) {
        let keys = [SecretKey::from_seed([1; 32]).public(), SecretKey::from_seed([2; 32]).public()];
        let vote = |h, r, k, b: Option<u8>| Vote {
            height: Height(h),
            round: Round(r),
            kind: k,
            block: b.map(|b| BlockHash([b; 32])),
        };
        let evidence = EquivocationEvidence {
            first: Signed { signer: keys[signers.0], signature: sigs.0, body: vote(heights.0, rounds.0, kinds.0, blocks.0) },
            second: Signed { signer: keys[signers.1], signature: sigs.1, body: vote(heights.1, rounds.1, kinds.1, blocks.1) },
        };
        let expected = signers.0 == signers.1
            && heights.0 == heights.1
            && rounds.0 == rounds.1
            && kinds.0 == kinds.1
            && blocks.0 != blocks.1;
        prop_assert_eq!(evidence.is_conflicting(), expected);
        // The relation is symmetric.
        let swapped = EquivocationEvidence { first: evidence.second.clone(), second: evidence.first.clone() };
        prop_assert_eq!(swapped.is_conflicting(), expected);
    }
}

#[test]
fn a_vote_does_not_conflict_with_itself() {
    let key = SecretKey::from_seed([3; 32]);
    let c = chain("attest-local");
    let vote = Vote {
        height: Height(5),
        round: Round(0),
        kind: VoteKind::Precommit,
        block: Some(BlockHash([1; 32])),
    };
    let signed = Signed::sign(&c, &key, vote.clone());
    let same = EquivocationEvidence {
        first: signed.clone(),
        second: signed.clone(),
    };
    assert!(!same.is_conflicting());
    let other = Signed::sign(
        &c,
        &key,
        Vote {
            block: Some(BlockHash([2; 32])),
            ..vote.clone()
        },
    );
    let real = EquivocationEvidence {
        first: signed.clone(),
        second: other,
    };
    assert!(real.is_conflicting());
    // A nil vote and a block vote in the same step also conflict.
    let nil = Signed::sign(
        &c,
        &key,
        Vote {
            block: None,
            ..vote
        },
    );
    assert!(
        EquivocationEvidence {
            first: signed,
            second: nil
        }
        .is_conflicting()
    );
}

// --- Commit certificates ---------------------------------------------------------------------

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn certificate_signatures_are_precommits(
        c in chain_id(),
        keys in prop::collection::vec(secret_key(), 1..6),
        height in height(),
        round in round(),
        block in block_hash(),
        wrong in 0usize..6,
    ) {
        let vote = Vote { height, round, kind: VoteKind::Precommit, block: Some(block) };
        let sigs: Vec<CommitSig> = keys
            .iter()
            .map(|k| CommitSig { validator: k.public(), signature: Signed::sign(&c, k, vote.clone()).signature })
            .collect();
        let mut cert = CommitCertificate {
            height,
            round,
            block,
            signatures: BoundedVec::new(sigs).expect("few validators"),
        };
        prop_assert_eq!(cert.vote(), vote);
        prop_assert!(cert.signed_votes().all(|v| v.check(&c).is_ok()));
        // A prevote signature does not count as a precommit.
        let prevote = Vote { kind: VoteKind::Prevote, ..cert.vote() };
        let i = wrong % keys.len();
        let mut sigs = cert.signatures.clone().into_vec();
        sigs[i].signature = Signed::sign(&c, &keys[i], prevote).signature;
        cert.signatures = BoundedVec::new(sigs).expect("same length");
        let results: Vec<bool> = cert.signed_votes().map(|v| v.check(&c).is_ok()).collect();
        prop_assert_eq!(results.iter().filter(|ok| !**ok).count(), 1);
        prop_assert!(!results[i]);
    }
}

#[test]
fn advert_signature_covers_every_field() {
    let c = chain("attest-local");
    let key = SecretKey::from_seed([6; 32]);
    let advert = CapacityAdvert {
        node: SecretKey::from_seed([7; 32]).public(),
        device: "h100".parse().expect("valid"),
        models: BoundedVec::new(vec!["attest-tiny-1b".parse().expect("valid")]).expect("one"),
        free_slots: 2,
        price_per_token: Amount(10),
        tokens_per_sec_milli: 5_000,
        expires_at_ms: 1_000,
        seq: 1,
    };
    let signed = Signed::sign(&c, &key, advert.clone());
    assert!(signed.check(&c).is_ok());
    let changes: [fn(&mut CapacityAdvert); 8] = [
        |a| a.node = SecretKey::from_seed([8; 32]).public(),
        |a| a.device = "h200".parse().expect("valid"),
        |a| a.models = BoundedVec::default(),
        |a| a.free_slots += 1,
        |a| a.price_per_token = Amount(9),
        |a| a.tokens_per_sec_milli += 1,
        |a| a.expires_at_ms += 1,
        |a| a.seq += 1,
    ];
    for change in changes {
        let mut forged = signed.clone();
        change(&mut forged.body);
        assert_ne!(forged.body, advert);
        assert!(forged.check(&c).is_err(), "{:?}", forged.body);
    }
}

/// The example of `docs/PROTOCOL.md` section 1 of a signature that only the cofactored
/// equation accepts: RFC 8032's first key and (empty) message, signed with the order-2 point
/// added to the nonce point. Any implementation of the rule must accept it.
#[test]
fn the_protocol_documents_cofactored_example() {
    let seed = unhex::<32>("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    let sig = sign_with_extra_r(&raw_key(seed), b"", &EIGHT_TORSION[4]);
    println!("cofactored example: {sig}");
    let key = SecretKey::from_seed(seed).public();
    assert!(key.verify(b"", &sig));
    assert_eq!(verify_batch(&[(key, &b""[..], sig)]), [true]);
    let protocol = include_str!("../../docs/PROTOCOL.md");
    assert!(
        protocol.contains(&sig.to_string()),
        "docs/PROTOCOL.md lacks the example signature {sig}"
    );
}
