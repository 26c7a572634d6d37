//! ed25519 keys and signatures, with one verification rule.
//!
//! Text forms (documented in `docs/PROTOCOL.md`):
//! - a public key (an account): 64 lowercase hex characters of its 32 bytes;
//! - a secret key: `ed25519-seed:` followed by 64 hex characters of its 32-byte seed;
//! - a signature: 128 hex characters of its 64 bytes;
//! - a node's PeerId: base58btc of the libp2p identity multihash of the public key.
//!
//! Validity is decided by one rule, [`PublicKey::verify`] (`docs/PROTOCOL.md` section 1):
//! canonical `s`; `R` and the key canonical encodings of points not of small order; and the
//! **cofactored** equation `[8](sB - R - kA) = 0` with `k = SHA-512(R || A || M) mod L`. Signing
//! is standard ed25519, and every signature a standard signer makes satisfies it. The
//! cofactored equation is the one a batch can check exactly: [`verify_batch`] gives the same
//! answer as verifying each item, which lets nodes and auditors verify in batches.

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest;

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

    /// Verifies `signature` over `message` (the module's rule). This is the only rule that
    /// decides whether a signature is valid anywhere in Attest; [`verify_batch`] answers the
    /// same for many at once.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        Parsed::new(self, message, signature).is_some_and(|p| p.holds())
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
/// [`PublicKey::verify`] answers.
///
/// Items that fail the encoding checks are answered `false` at once. The rest go through one
/// equation: the sum over items of `z_i [8](s_i B - R_i - k_i A_i)`, which is the identity when
/// every item's cofactored equation holds (each term is); when one or more do not, it is the
/// identity only if the weights `z_i` happen to cancel their errors, a chance below 2^-125 per
/// batch since each nonzero 128-bit weight is fixed by a hash of the whole batch (so an item
/// cannot be chosen to fit them). Because the rule is the cofactored one, a torsion part of a
/// key or `R` vanishes in each single equation as it does in the sum: the two always agree,
/// which the strict, cofactorless rule did not allow. If the sum is not the identity, every
/// item is verified singly to find which failed. Keys repeating in a batch (a validator, a
/// client's many transactions) enter the sum once, with their weights added.
///
/// Pure and deterministic: the same items give the same answers and the same work.
pub fn verify_batch(items: &[(PublicKey, &[u8], Signature)]) -> Vec<bool> {
    let parsed: Vec<Option<Parsed>> = items
        .iter()
        .map(|(key, msg, sig)| Parsed::new(key, msg, sig))
        .collect();
    let mut answers = Vec::with_capacity(items.len());
    for chunk in parsed.chunks(BATCH_MAX) {
        let ready: Vec<&Parsed> = chunk.iter().flatten().collect();
        let all_hold = match ready.len() {
            0 => true,
            1 => ready[0].holds(),
            _ => batch_holds(&ready),
        };
        answers.extend(
            chunk
                .iter()
                .map(|p| p.as_ref().is_some_and(|p| all_hold || p.holds())),
        );
    }
    answers
}

/// The most items in one batch equation: a failed batch costs a single check of each of its
/// items, so a bad signature costs at most this many more checks; and past a few hundred
/// points the multiscalar multiplication gains little per point.
const BATCH_MAX: usize = 256;

/// One signature's parts, decoded for the verification equation.
struct Parsed {
    key: [u8; 32],
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    /// The signature's bytes and the challenge's, which the batch weights are drawn from.
    sig: [u8; 64],
}

impl Parsed {
    /// Decodes `signature` by `key` over `message`, or `None` if an encoding check fails:
    /// `s` not below `L`, or `R` not a canonical encoding of a point of large order. (The key
    /// was checked when it was made.)
    fn new(key: &PublicKey, message: &[u8], signature: &Signature) -> Option<Self> {
        let (r_bytes, s_bytes) = signature.0.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("64 = 32 + 32");
        let s_bytes: [u8; 32] = s_bytes.try_into().expect("64 = 32 + 32");
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
        // A small-order point with `x = 0` (y = 1 or -1) is refused below, so canonical `y`
        // is the whole canonicity check, as for keys.
        if !y_is_canonical(&r_bytes) {
            return None;
        }
        let r = CompressedEdwardsY(r_bytes).decompress()?;
        if r.is_small_order() {
            return None;
        }
        let mut h = sha2::Sha512::new();
        h.update(r_bytes);
        h.update(key.bytes);
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        Some(Self {
            key: key.bytes,
            a: key.dalek().to_edwards(),
            r,
            s,
            k,
            sig: signature.0,
        })
    }

    /// The cofactored equation `[8](sB - kA - R) = 0`.
    fn holds(&self) -> bool {
        let sb_minus_ka =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-self.a, &self.s);
        (sb_minus_ka - self.r).mul_by_cofactor().is_identity()
    }
}

/// Whether the weighted sum of every item's equation is the identity (see [`verify_batch`]).
fn batch_holds(items: &[&Parsed]) -> bool {
    let mut h = crate::hash::tagged_hasher(crate::hash::tag::BATCH_WEIGHTS);
    for p in items {
        h.update(&p.key);
        h.update(&p.sig);
        h.update(p.k.as_bytes());
    }
    let mut xof = h.finalize_xof();
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * items.len() + 1);
    let mut points = Vec::with_capacity(2 * items.len() + 1);
    // Keys in first-seen order with their summed coefficients, found by their bytes.
    let mut keys: Vec<(EdwardsPoint, Scalar)> = Vec::new();
    let mut key_index = std::collections::BTreeMap::new();
    for p in items {
        let mut w = [0u8; 16];
        xof.fill(&mut w);
        // Odd, so never zero: a zero weight would drop its item from the sum.
        let z = Scalar::from(u128::from_le_bytes(w) | 1);
        b_coefficient += z * p.s;
        scalars.push(-z);
        points.push(p.r);
        let zk = z * p.k;
        let slot = *key_index.entry(p.key).or_insert_with(|| {
            keys.push((p.a, Scalar::ZERO));
            keys.len() - 1
        });
        keys[slot].1 -= zk;
    }
    scalars.push(b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    for (a, c) in keys {
        scalars.push(c);
        points.push(a);
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}
