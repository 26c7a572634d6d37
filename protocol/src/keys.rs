//! ed25519 keys and signatures, with one strict verification rule.
//!
//! Text forms (documented in `docs/PROTOCOL.md`):
//! - a public key (an account): 64 lowercase hex characters of its 32 bytes;
//! - a secret key: `ed25519-seed:` followed by 64 hex characters of its 32-byte seed;
//! - a signature: 128 hex characters of its 64 bytes;
//! - a node's PeerId: base58btc of the libp2p identity multihash of the public key.
//!
//! Validity is decided by [`PublicKey::verify`] alone (`verify_strict`: canonical `s`, `R` and
//! the key not of small order). [`verify_batch`] may speed up audits; it agrees with the strict
//! rule because it checks the points the strict rule checks and falls back on failure.

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ParseError;
use crate::hash::parse_hex32;

/// Slots of the per-thread cache of decompressed keys.
const KEY_CACHE_SLOTS: usize = 256;

type KeyCache = [Option<([u8; 32], ed25519_dalek::VerifyingKey)>; KEY_CACHE_SLOTS];

thread_local! {
    /// Decompressed keys that passed [`PublicKey::from_bytes`], by their first byte
    /// (direct-mapped; a newer key takes the slot). A verifier meets the same few keys over
    /// and over (validators sign every certificate, a client many transactions), and
    /// decompressing one costs about as much as a fifth of a verification. What the cache
    /// holds is a pure function of the bytes, so it changes no answer, only the time; it is
    /// bounded (about 50 KiB a thread).
    static KEYS: std::cell::RefCell<KeyCache> = const { std::cell::RefCell::new([None; KEY_CACHE_SLOTS]) };
}

fn cached(bytes: &[u8; 32]) -> Option<ed25519_dalek::VerifyingKey> {
    KEYS.with(|keys| match &keys.borrow()[usize::from(bytes[0])] {
        Some((b, key)) if b == bytes => Some(*key),
        _ => None,
    })
}

fn remember(bytes: [u8; 32], key: ed25519_dalek::VerifyingKey) {
    KEYS.with(|keys| keys.borrow_mut()[usize::from(bytes[0])] = Some((bytes, key)));
}

/// Whether the `y` coordinate of an encoded point (its low 255 bits, little-endian) is below
/// `p = 2^255 - 19`.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    // p's bytes, little-endian: ed ff .. ff 7f. y >= p only if every byte from the top down is
    // at p's, and the lowest at least 0xed.
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// A valid ed25519 public key: a canonical curve point that is not of small order. Accounts,
/// validators and nodes are named by their public key.
///
/// It holds only the 32 checked bytes. Keys name accounts everywhere (map keys, events,
/// state), so keeping the ~160-byte decompressed point in each copy would bloat every type
/// that names one; verification takes the point from a small per-thread cache of checked
/// keys instead, and decompresses again only when the key is not there.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey {
    bytes: [u8; 32],
}

/// Accounts are named by the public key that signs for them.
pub type AccountId = PublicKey;

impl PublicKey {
    /// Parses 32 bytes, rejecting points that are not on the curve or of small order.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, ParseError> {
        if cached(&bytes).is_some() {
            // Only keys that passed every check below are cached.
            return Ok(Self { bytes });
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| ParseError::PublicKey("not a point on the curve"))?;
        if key.is_weak() {
            return Err(ParseError::PublicKey("a point of small order"));
        }
        // Non-canonical encodings of a point would give one key two names: `y >= p`, or a
        // sign bit set for `x = 0`. The points with `x = 0` are of small order (y = 1 or -1),
        // refused above, so only `y >= p` is left to refuse, which the bytes show without a
        // (costly) recompression (`protocol/tests/decode.rs` compares the two).
        if !y_is_canonical(&bytes) {
            return Err(ParseError::PublicKey("a non-canonical point encoding"));
        }
        remember(bytes, key);
        Ok(Self { bytes })
    }

    /// The dalek key. The bytes were checked at construction, so this cannot fail.
    fn dalek(&self) -> ed25519_dalek::VerifyingKey {
        if let Some(key) = cached(&self.bytes) {
            return key;
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.bytes)
            .expect("PublicKey holds only bytes that decompressed at construction");
        remember(self.bytes, key);
        key
    }

    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Verifies `signature` over `message` with the strict rule. This is the only rule that
    /// decides whether a signature is valid anywhere in Attest.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.dalek().verify_strict(message, &sig).is_ok()
    }

    /// The libp2p PeerId of a node whose identity key is this key, as bytes: the identity
    /// multihash (`0x00`, length `0x24`) of the protobuf `PublicKey { Type: Ed25519 (1), Data }`
    /// (`0x08 0x01 0x12 0x20` and the 32 key bytes).
    pub fn peer_id_bytes(&self) -> [u8; 38] {
        let mut out = [0u8; 38];
        out[..6].copy_from_slice(&PEER_ID_PREFIX);
        out[6..].copy_from_slice(&self.bytes);
        out
    }

    /// The PeerId in its usual text form (base58btc, starting `12D3KooW`).
    pub fn peer_id(&self) -> String {
        bs58::encode(self.peer_id_bytes()).into_string()
    }

    /// Parses a PeerId text back to the ed25519 key it names.
    pub fn from_peer_id(text: &str) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::PeerId {
            text: text.to_owned(),
            reason,
        };
        let mut buf = [0u8; 64];
        let n = bs58::decode(text)
            .onto(&mut buf[..])
            .map_err(|_| bad("not base58btc"))?;
        if n != 38 || buf[..6] != PEER_ID_PREFIX {
            return Err(bad("not the identity multihash of an ed25519 key"));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&buf[6..38]);
        Self::from_bytes(key).map_err(|_| bad("not a valid ed25519 public key"))
    }
}

/// Identity multihash header and protobuf header of an ed25519 libp2p public key.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.bytes))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.bytes))
    }
}

impl FromStr for PublicKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::from_bytes(parse_hex32("public key", s)?)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(self.bytes))
        } else {
            self.bytes.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Self::from_bytes(<[u8; 32]>::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }
}

/// An ed25519 secret key, built from a 32-byte seed the caller supplies (the node draws it from
/// the OS; this crate never reads randomness). Zeroed on drop; never printed by `Debug`.
#[derive(Clone)]
pub struct SecretKey {
    key: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl SecretKey {
    /// The text prefix of a secret key.
    pub const TEXT_PREFIX: &'static str = "ed25519-seed:";

    /// The key whose seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let bytes = key.verifying_key().to_bytes();
        // A key derived from a seed is a multiple of the base point: never weak, always canonical.
        let public = PublicKey::from_bytes(bytes).expect("derived public keys are valid");
        Self { key, public }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The 32-byte seed. Handle with care: it is the whole secret.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Signs `message` (ed25519, deterministic: the same key and message give the same bytes).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.key.sign(message).to_bytes())
    }

    /// The text form: `ed25519-seed:` and 64 hex characters.
    pub fn to_text(&self) -> String {
        format!("{}{}", Self::TEXT_PREFIX, hex::encode(self.seed()))
    }

    /// Parses the text form, ignoring surrounding whitespace (a trailing newline in a file).
    pub fn from_text(text: &str) -> Result<Self, ParseError> {
        let hex = text
            .trim()
            .strip_prefix(Self::TEXT_PREFIX)
            .ok_or(ParseError::Prefix {
                what: "secret key",
                prefix: Self::TEXT_PREFIX,
            })?;
        Ok(Self::from_seed(parse_hex32("secret key", hex)?))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public)
    }
}

/// An ed25519 signature: 64 bytes, `R` then `s`. Ordered by bytes so it can key sorted maps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// The 64 bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl FromStr for Signature {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.len() != 128 {
            return Err(ParseError::Length {
                what: "signature",
                expected: 128,
                got: s.len(),
                unit: "hex characters",
            });
        }
        let mut out = [0u8; 64];
        hex::decode_to_slice(s, &mut out).map_err(|e| ParseError::Hex {
            what: "signature",
            detail: e.to_string(),
        })?;
        Ok(Signature(out))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(self.0))
        } else {
            // Serde has no impl for [u8; 64]: two 32-byte halves encode as the same 64 bytes.
            let (r, sc) = self.0.split_at(32);
            let r: [u8; 32] = r.try_into().expect("64 = 32 + 32");
            let sc: [u8; 32] = sc.try_into().expect("64 = 32 + 32");
            (r, sc).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let (r, sc) = <([u8; 32], [u8; 32])>::deserialize(d)?;
            let mut out = [0u8; 64];
            out[..32].copy_from_slice(&r);
            out[32..].copy_from_slice(&sc);
            Ok(Signature(out))
        }
    }
}

/// Verifies many `(key, message, signature)` triples at once and answers, for each, what
/// [`PublicKey::verify`] would answer.
///
/// The batch equation (cofactorless, random 128-bit weights) agrees with the strict rule only
/// for items whose `R` and key have no torsion component: a torsion part of order 2 vanishes
/// under an even weight, so a signature the strict rule rejects could pass a batch. So each
/// item is sorted first: an `R` that is not a canonical point of large order is answered
/// `false` at once (the strict rule rejects it); an item whose `R` or key has a torsion part
/// is verified singly; the rest go through one deterministic batch equation, and if that
/// fails, through single verification too. Admission and consensus use [`PublicKey::verify`].
///
/// Measured here (release, 64 signatures, `cargo bench -p attest-protocol`): the torsion check
/// of every `R` costs more than the batch saves, so this is slower per signature than
/// [`PublicKey::verify`]. It exists so that a faster batch rule can be measured against the
/// strict one; an auditor that wants speed should verify singly on every core.
pub fn verify_batch(items: &[(PublicKey, &[u8], Signature)]) -> Vec<bool> {
    let mut answers = vec![false; items.len()];
    let mut idx = Vec::with_capacity(items.len());
    // Keys repeat within a batch (one account signs many transactions): check each once.
    let mut key_torsion_free = std::collections::BTreeMap::new();
    for (i, (key, msg, sig)) in items.iter().enumerate() {
        match r_point(sig) {
            RPoint::Rejected => {}
            RPoint::TorsionFree
                if *key_torsion_free
                    .entry(key.bytes)
                    .or_insert_with(|| key.dalek().to_edwards().is_torsion_free()) =>
            {
                idx.push(i)
            }
            RPoint::TorsionFree | RPoint::MixedOrder => answers[i] = key.verify(msg, sig),
        }
    }
    if idx.is_empty() {
        return answers;
    }
    let msgs: Vec<&[u8]> = idx.iter().map(|&i| items[i].1).collect();
    let sigs: Vec<ed25519_dalek::Signature> = idx
        .iter()
        .map(|&i| ed25519_dalek::Signature::from_bytes(&items[i].2.0))
        .collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = idx.iter().map(|&i| items[i].0.dalek()).collect();
    let batch_ok = ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok();
    for &i in &idx {
        let (key, msg, sig) = &items[i];
        answers[i] = batch_ok || key.verify(msg, sig);
    }
    answers
}

/// What the `R` half of a signature is, as far as batching cares.
enum RPoint {
    /// Not a canonical encoding of a point of large order: the strict rule rejects it.
    Rejected,
    /// A canonical point in the prime-order subgroup: safe to batch.
    TorsionFree,
    /// A canonical point of large order with a torsion component: verify singly.
    MixedOrder,
}

fn r_point(sig: &Signature) -> RPoint {
    let r: [u8; 32] = sig.0[..32].try_into().expect("64 = 32 + 32");
    match CompressedEdwardsY(r).decompress() {
        Some(p) if !p.is_small_order() && p.compress().to_bytes() == r => {
            if p.is_torsion_free() {
                RPoint::TorsionFree
            } else {
                RPoint::MixedOrder
            }
        }
        _ => RPoint::Rejected,
    }
}
