//! The mempool: verified transactions waiting for a block. Pure and deterministic.
//!
//! A transaction is admitted only if it decodes within the size bound, its signature verifies
//! under the protocol's rule, it is for this chain, its fee is at least the chain's minimum, its
//! nonce is the sender's next one or at most [`MAX_NONCE_AHEAD`] beyond it, and the sender can
//! pay the fee. The pool is bounded in count and in bytes and deduplicates by hash. When full it
//! refuses newcomers rather than evicting: eviction by fee would let a spammer push out honest
//! transactions, and refusing keeps the rule simple and the order deterministic.
//!
//! Reaping for a block takes, in arrival order, each sender's transactions whose nonces run on
//! from the sender's current nonce, so a block never holds a transaction whose predecessor is
//! missing. Each signature is verified once, on admission (signature checks are
//! the throughput limit); the block path reuses the `Verified` value.

use std::collections::{BTreeMap, BTreeSet};

use attest_protocol::encoding::encode;
use attest_protocol::limits::MAX_TX_BYTES;
use attest_protocol::{AccountId, Amount, ChainId, Nonce, SignedTx, TxHash, Verified, tx_hash};

/// How far beyond the sender's current nonce a transaction may be admitted. A client may
/// pipeline this many transactions before the first commits; beyond it a gap would hold pool
/// space that can never be reaped.
pub const MAX_NONCE_AHEAD: u64 = 64;

/// What the mempool needs to know of committed state.
pub trait AccountView {
    /// The sender's next nonce.
    fn nonce(&self, account: &AccountId) -> Nonce;
    /// The sender's spendable balance.
    fn balance(&self, account: &AccountId) -> Amount;
    /// The least fee a transaction may pay.
    fn min_fee(&self) -> Amount;
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The encoded transaction is larger than the protocol allows.
    #[error("transaction is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Its encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The signature does not verify for this chain.
    #[error("{0}")]
    BadSignature(#[from] attest_protocol::SignatureError),
    /// The fee is below the chain's minimum.
    #[error("fee {fee} is below the minimum {min}")]
    FeeTooLow {
        /// The fee offered.
        fee: Amount,
        /// The chain's minimum.
        min: Amount,
    },
    /// The nonce was already used.
    #[error("nonce {got} is stale; the account's next nonce is {next}")]
    StaleNonce {
        /// The nonce offered.
        got: Nonce,
        /// The account's next nonce.
        next: Nonce,
    },
    /// The nonce is too far ahead of the account's next nonce.
    #[error("nonce {got} is too far ahead; the account's next nonce is {next}")]
    NonceTooFarAhead {
        /// The nonce offered.
        got: Nonce,
        /// The account's next nonce.
        next: Nonce,
    },
    /// The sender cannot pay the fee.
    #[error("balance {balance} cannot pay the fee {fee}")]
    CannotPayFee {
        /// The sender's balance.
        balance: Amount,
        /// The fee.
        fee: Amount,
    },
    /// The same transaction is already waiting.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(TxHash),
    /// Another transaction from the same sender with the same nonce is already waiting.
    #[error("another transaction with nonce {0} from this sender is already waiting")]
    NonceTaken(Nonce),
    /// The pool is at its count or byte bound.
    #[error("mempool is full ({txs} transactions, {bytes} bytes)")]
    Full {
        /// Transactions held.
        txs: usize,
        /// Bytes held.
        bytes: usize,
    },
    /// A local client's job that this node could not deliver: its gateway already waits for
    /// the outputs of as many jobs as it tracks. Another node, or a later try, can take it.
    #[error(
        "this node's gateway is waiting for the outputs of {jobs} jobs, its bound; retry later or use another node"
    )]
    GatewayFull {
        /// The gateway's bound.
        jobs: usize,
    },
    /// A local client's transaction that the contract would refuse now (a job with an
    /// unknown model, an input over the cap, an ineligible provider): refused at once with the
    /// contract's reason rather than admitted and dropped at block time.
    #[error("the contract refuses it: {0}")]
    Refused(String),
}

struct Entry {
    tx: Verified<attest_protocol::Tx>,
    hash: TxHash,
    bytes: usize,
    /// When it was admitted, for [`Mempool::expire`].
    admitted_ms: u64,
}

/// The pool.
pub struct Mempool {
    chain: ChainId,
    max_txs: usize,
    max_bytes: usize,
    bytes: usize,
    next_seq: u64,
    /// Arrival sequence number -> entry: arrival order is the reaping order.
    by_seq: BTreeMap<u64, Entry>,
    by_hash: BTreeMap<TxHash, u64>,
    by_sender: BTreeMap<(AccountId, Nonce), u64>,
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("txs", &self.by_seq.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Mempool {
    /// An empty pool for `chain` holding at most `max_txs` transactions and `max_bytes`.
    pub fn new(chain: ChainId, max_txs: usize, max_bytes: usize) -> Self {
        Self {
            chain,
            max_txs,
            max_bytes,
            bytes: 0,
            next_seq: 0,
            by_seq: BTreeMap::new(),
            by_hash: BTreeMap::new(),
            by_sender: BTreeMap::new(),
        }
    }

    /// Transactions waiting.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Encoded bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `hash` is waiting.
    pub fn contains(&self, hash: &TxHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// The waiting transaction with hash `hash`, already verified: a block carrying it need
    /// not verify its signature again.
    pub fn verified(&self, hash: &TxHash) -> Option<Verified<attest_protocol::Tx>> {
        let seq = self.by_hash.get(hash)?;
        self.by_seq.get(seq).map(|e| e.tx.clone())
    }

    /// Whether a transaction from `sender` with `nonce` is waiting.
    pub fn has_sender_nonce(&self, sender: &AccountId, nonce: Nonce) -> bool {
        self.by_sender.contains_key(&(*sender, nonce))
    }

    /// Checks and admits `tx` at time `now_ms`, returning its hash. Cheap checks run before the
    /// signature.
    pub fn admit(
        &mut self,
        tx: SignedTx,
        state: &impl AccountView,
        now_ms: u64,
    ) -> Result<TxHash, AdmitError> {
        let (hash, len) = self.check(&tx, state)?;
        let tx = tx.verify(&self.chain)?;
        Ok(self.insert(tx, hash, len, now_ms))
    }

    /// [`Mempool::admit`] for a transaction whose signature the caller already checked under
    /// this pool's chain (off the node loop, as the API does).
    pub fn admit_verified(
        &mut self,
        tx: Verified<attest_protocol::Tx>,
        state: &impl AccountView,
        now_ms: u64,
    ) -> Result<TxHash, AdmitError> {
        let (hash, len) = self.check(tx.signed(), state)?;
        Ok(self.insert(tx, hash, len, now_ms))
    }

    /// Everything but the signature: size, duplicate, fee, nonce, balance, room. Returns the
    /// transaction's hash and encoded length.
    fn check(
        &self,
        tx: &SignedTx,
        state: &impl AccountView,
    ) -> Result<(TxHash, usize), AdmitError> {
        let len = encode(tx).len();
        if len > MAX_TX_BYTES {
            return Err(AdmitError::TooLarge {
                len,
                max: MAX_TX_BYTES,
            });
        }
        let hash = tx_hash(tx);
        if self.by_hash.contains_key(&hash) {
            return Err(AdmitError::Duplicate(hash));
        }
        let (sender, nonce, fee) = (tx.signer, tx.body.nonce, tx.body.fee);
        let min = state.min_fee();
        if fee < min {
            return Err(AdmitError::FeeTooLow { fee, min });
        }
        let next = state.nonce(&sender);
        if nonce < next {
            return Err(AdmitError::StaleNonce { got: nonce, next });
        }
        if nonce.0 - next.0 > MAX_NONCE_AHEAD {
            return Err(AdmitError::NonceTooFarAhead { got: nonce, next });
        }
        if self.by_sender.contains_key(&(sender, nonce)) {
            return Err(AdmitError::NonceTaken(nonce));
        }
        let balance = state.balance(&sender);
        if balance < fee {
            return Err(AdmitError::CannotPayFee { balance, fee });
        }
        if self.by_seq.len() >= self.max_txs || self.bytes + len > self.max_bytes {
            return Err(AdmitError::Full {
                txs: self.by_seq.len(),
                bytes: self.bytes,
            });
        }
        Ok((hash, len))
    }

    /// Adds a checked transaction.
    fn insert(
        &mut self,
        tx: Verified<attest_protocol::Tx>,
        hash: TxHash,
        len: usize,
        now_ms: u64,
    ) -> TxHash {
        let (sender, nonce) = (*tx.signer(), tx.body().nonce);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_hash.insert(hash, seq);
        self.by_sender.insert((sender, nonce), seq);
        self.bytes += len;
        self.by_seq.insert(
            seq,
            Entry {
                tx,
                hash,
                bytes: len,
                admitted_ms: now_ms,
            },
        );
        hash
    }

    /// Up to `max_txs` transactions and `max_bytes` for a block, in arrival order, each
    /// sender's forming a gap-free run from its current nonce. The pool is not changed: the
    /// transactions leave it when their block commits ([`Mempool::remove_committed`]).
    pub fn reap(
        &self,
        max_txs: usize,
        max_bytes: usize,
        state: &impl AccountView,
    ) -> Vec<Verified<attest_protocol::Tx>> {
        let mut next_nonce: BTreeMap<AccountId, Nonce> = BTreeMap::new();
        let mut out = Vec::new();
        let mut bytes = 0;
        // Arrival order can put nonce n+1 before n; loop until a pass adds nothing so such
        // pairs still make it into one block. Each pass is linear; passes are bounded by
        // MAX_NONCE_AHEAD + 1 because every productive pass advances some sender by one.
        let mut taken = BTreeSet::new();
        loop {
            let before = out.len();
            for (seq, e) in &self.by_seq {
                if out.len() >= max_txs {
                    return out;
                }
                if taken.contains(seq) || bytes + e.bytes > max_bytes {
                    continue;
                }
                let sender = *e.tx.signer();
                let next = next_nonce
                    .entry(sender)
                    .or_insert_with(|| state.nonce(&sender));
                if e.tx.body().nonce == *next {
                    *next = Nonce(next.0 + 1);
                    bytes += e.bytes;
                    taken.insert(*seq);
                    out.push(e.tx.clone());
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// Drops the transactions a committed block carried, and every transaction the new state
    /// makes stale: a nonce below its sender's next. Only the block's signers have new nonces,
    /// so only their waiting transactions are looked at (the cost is the block's, not the
    /// pool's). A fee the sender can no longer pay is left: the block will reject it, which
    /// is safe.
    pub fn remove_committed(
        &mut self,
        committed: &[TxHash],
        signers: &[AccountId],
        state: &impl AccountView,
    ) {
        for hash in committed {
            if let Some(seq) = self.by_hash.get(hash).copied() {
                self.remove(seq);
            }
        }
        let signers: BTreeSet<&AccountId> = signers.iter().collect();
        for sender in signers {
            let next = state.nonce(sender);
            let stale: Vec<u64> = self
                .by_sender
                .range((*sender, Nonce(0))..(*sender, next))
                .map(|(_, seq)| *seq)
                .collect();
            for seq in stale {
                self.remove(seq);
            }
        }
    }

    /// Drops the transactions `hashes` and every later-nonce transaction of their senders,
    /// which cannot apply without them.
    pub fn evict_with_successors(&mut self, hashes: &[TxHash]) {
        for hash in hashes {
            let Some(seq) = self.by_hash.get(hash).copied() else {
                continue;
            };
            let Some(e) = self.by_seq.get(&seq) else {
                continue;
            };
            let (sender, nonce) = (*e.tx.signer(), e.tx.body().nonce);
            let doomed: Vec<u64> = self
                .by_sender
                .range((sender, nonce)..=(sender, Nonce(u64::MAX)))
                .map(|(_, seq)| *seq)
                .collect();
            for seq in doomed {
                self.remove(seq);
            }
        }
    }

    /// Drops every transaction admitted `ttl_ms` or more before `now_ms`, with its sender's
    /// later nonces, and returns how many left. A transaction that waits that long is one no
    /// block takes: a nonce gap whose predecessor was refused or never came, or a fee its
    /// sender can no longer pay. Without expiry such leftovers would hold pool space forever.
    ///
    /// Arrival order is admission-time order, so only the expired front of the pool is
    /// visited. Should the host's clock step back, a transaction admitted after the step
    /// waits for the ones before it: expiry is late by at most the step, never early.
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64) -> usize {
        let before = self.by_seq.len();
        let old: Vec<TxHash> = self
            .by_seq
            .values()
            .take_while(|e| e.admitted_ms.saturating_add(ttl_ms) <= now_ms)
            .map(|e| e.hash)
            .collect();
        self.evict_with_successors(&old);
        before - self.by_seq.len()
    }

    fn remove(&mut self, seq: u64) {
        if let Some(e) = self.by_seq.remove(&seq) {
            self.by_hash.remove(&e.hash);
            self.by_sender.remove(&(*e.tx.signer(), e.tx.body().nonce));
            self.bytes -= e.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest_protocol::tx::{Action, Transfer, Tx};
    use attest_protocol::{SecretKey, Signed};

    #[derive(Default)]
    struct View {
        nonces: BTreeMap<AccountId, Nonce>,
        balance: Amount,
    }

    impl AccountView for View {
        fn nonce(&self, a: &AccountId) -> Nonce {
            self.nonces.get(a).copied().unwrap_or_default()
        }
        fn balance(&self, _: &AccountId) -> Amount {
            self.balance
        }
        fn min_fee(&self) -> Amount {
            Amount(10)
        }
    }

    fn chain() -> ChainId {
        ChainId::new("attest-test").unwrap()
    }

    fn tx(key: &SecretKey, nonce: u64, fee: u64) -> SignedTx {
        let to = SecretKey::from_seed([9; 32]).public();
        let body = Tx {
            nonce: Nonce(nonce),
            fee: Amount(fee),
            action: Action::Transfer(Transfer {
                to,
                amount: Amount(1),
            }),
        };
        Signed::sign(&chain(), key, body)
    }

    fn view() -> View {
        View {
            balance: Amount(1_000),
            ..View::default()
        }
    }

    #[test]
    fn admits_valid_and_refuses_each_kind_of_bad_tx() {
        let (k, v) = (SecretKey::from_seed([1; 32]), view());
        let mut pool = Mempool::new(chain(), 100, 1 << 20);
        let h = pool.admit(tx(&k, 0, 10), &v, 0).unwrap();
        assert!(pool.contains(&h));
        assert_eq!(
            pool.admit(tx(&k, 0, 10), &v, 0),
            Err(AdmitError::Duplicate(h))
        );
        assert_eq!(
            pool.admit(tx(&k, 0, 11), &v, 0),
            Err(AdmitError::NonceTaken(Nonce(0)))
        );
        assert!(matches!(
            pool.admit(tx(&k, 1, 9), &v, 0),
            Err(AdmitError::FeeTooLow { .. })
        ));
        assert!(matches!(
            pool.admit(tx(&k, 1 + MAX_NONCE_AHEAD, 10), &v, 0),
            Err(AdmitError::NonceTooFarAhead { .. })
        ));
        assert!(matches!(
            pool.admit(tx(&k, 1, 5_000), &v, 0),
            Err(AdmitError::CannotPayFee { .. })
        ));
        let mut forged = tx(&k, 1, 10);
        forged.body.fee = Amount(12);
        assert!(matches!(
            pool.admit(forged, &v, 0),
            Err(AdmitError::BadSignature(_))
        ));
        let other_chain = Signed::sign(&ChainId::new("elsewhere").unwrap(), &k, tx(&k, 1, 10).body);
        assert!(matches!(
            pool.admit(other_chain, &v, 0),
            Err(AdmitError::BadSignature(_))
        ));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn a_transaction_verified_off_the_loop_gets_every_other_check() {
        let (k, v) = (SecretKey::from_seed([1; 32]), view());
        let mut pool = Mempool::new(chain(), 100, 1 << 20);
        let verified = |t: SignedTx| t.verify(&chain()).expect("a valid signature");
        let h = pool.admit_verified(verified(tx(&k, 0, 10)), &v, 0).unwrap();
        assert!(pool.contains(&h) && pool.verified(&h).is_some());
        // The same transaction arriving by gossip is a duplicate.
        assert_eq!(
            pool.admit(tx(&k, 0, 10), &v, 0),
            Err(AdmitError::Duplicate(h))
        );
        assert!(matches!(
            pool.admit_verified(verified(tx(&k, 1, 9)), &v, 0),
            Err(AdmitError::FeeTooLow { .. })
        ));
        assert!(matches!(
            pool.admit_verified(verified(tx(&k, 1, 5_000)), &v, 0),
            Err(AdmitError::CannotPayFee { .. })
        ));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn stale_nonces_are_refused() {
        let k = SecretKey::from_seed([1; 32]);
        let mut v = view();
        v.nonces.insert(k.public(), Nonce(5));
        let mut pool = Mempool::new(chain(), 100, 1 << 20);
        assert!(matches!(
            pool.admit(tx(&k, 4, 10), &v, 0),
            Err(AdmitError::StaleNonce { .. })
        ));
        pool.admit(tx(&k, 5, 10), &v, 0).unwrap();
    }

    #[test]
    fn bounds_on_count_and_bytes_hold() {
        let v = view();
        let mut pool = Mempool::new(chain(), 3, 1 << 20);
        for i in 0..3 {
            pool.admit(tx(&SecretKey::from_seed([i; 32]), 0, 10), &v, 0)
                .unwrap();
        }
        let err = pool.admit(tx(&SecretKey::from_seed([7; 32]), 0, 10), &v, 0);
        assert!(matches!(err, Err(AdmitError::Full { txs: 3, .. })));

        let one = encode(&tx(&SecretKey::from_seed([1; 32]), 0, 10)).len();
        let mut pool = Mempool::new(chain(), 100, 2 * one);
        pool.admit(tx(&SecretKey::from_seed([1; 32]), 0, 10), &v, 0)
            .unwrap();
        pool.admit(tx(&SecretKey::from_seed([2; 32]), 0, 10), &v, 0)
            .unwrap();
        assert!(
            pool.admit(tx(&SecretKey::from_seed([3; 32]), 0, 10), &v, 0)
                .is_err()
        );
        assert_eq!(pool.bytes(), 2 * one);
    }

    #[test]
    fn reap_keeps_nonce_runs_gap_free_and_respects_limits() {
        let (a, b) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let v = view();
        let mut pool = Mempool::new(chain(), 100, 1 << 20);
        // a's nonce 1 arrives before nonce 0; b has a gap at nonce 1.
        for t in [tx(&a, 1, 10), tx(&b, 0, 10), tx(&a, 0, 10), tx(&b, 2, 10)] {
            pool.admit(t, &v, 0).unwrap();
        }
        let reaped = pool.reap(100, 1 << 20, &v);
        let got: Vec<(AccountId, u64)> = reaped
            .iter()
            .map(|t| (*t.signer(), t.body().nonce.0))
            .collect();
        assert_eq!(got, vec![(b.public(), 0), (a.public(), 0), (a.public(), 1)]);
        assert_eq!(pool.reap(2, 1 << 20, &v).len(), 2);
        assert_eq!(pool.len(), 4, "reaping does not remove");
    }

    #[test]
    fn committed_and_stale_transactions_leave() {
        let k = SecretKey::from_seed([1; 32]);
        let mut v = view();
        let mut pool = Mempool::new(chain(), 100, 1 << 20);
        let h0 = pool.admit(tx(&k, 0, 10), &v, 0).unwrap();
        pool.admit(tx(&k, 1, 10), &v, 0).unwrap();
        pool.admit(tx(&k, 2, 10), &v, 0).unwrap();
        // A block committed nonce 0 and, from another node's pool, nonce 1.
        v.nonces.insert(k.public(), Nonce(2));
        pool.remove_committed(&[h0], &[k.public()], &v);
        assert_eq!(pool.len(), 1);
        let left: Vec<u64> = pool
            .reap(10, 1 << 20, &v)
            .iter()
            .map(|t| t.body().nonce.0)
            .collect();
        assert_eq!(left, vec![2]);
        assert_eq!(pool.bytes(), encode(&tx(&k, 2, 10)).len());
    }

    #[test]
    fn eviction_takes_the_senders_later_nonces_too() {
        let (a, b) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let v = view();
        let mut pool = Mempool::new(chain(), 100, 1 << 20);
        let a1 = pool.admit(tx(&a, 1, 10), &v, 0).unwrap();
        pool.admit(tx(&a, 0, 10), &v, 0).unwrap();
        pool.admit(tx(&a, 2, 10), &v, 0).unwrap();
        let b0 = pool.admit(tx(&b, 0, 10), &v, 0).unwrap();
        pool.evict_with_successors(&[a1]);
        let left: Vec<(AccountId, u64)> = pool
            .reap(10, 1 << 20, &v)
            .iter()
            .map(|t| (*t.signer(), t.body().nonce.0))
            .collect();
        assert_eq!(left, vec![(a.public(), 0), (b.public(), 0)]);
        assert!(pool.contains(&b0) && !pool.contains(&a1));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn transactions_expire_with_their_later_nonces() {
        let (k, other) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let v = view();
        let mut pool = Mempool::new(chain(), 100, 1 << 20);
        // A gap: nonce 1 waits for a nonce 0 that never comes; nonce 2 follows it.
        pool.admit(tx(&k, 1, 10), &v, 1_000).unwrap();
        pool.admit(tx(&k, 2, 10), &v, 5_000).unwrap();
        pool.admit(tx(&other, 0, 10), &v, 5_000).unwrap();
        assert_eq!(pool.expire(10_999, 10_000), 0, "nothing is old enough yet");
        // The gapped transaction expires and takes its successor, younger as it is.
        assert_eq!(pool.expire(11_000, 10_000), 2);
        assert_eq!(pool.len(), 1);
        assert!(!pool.has_sender_nonce(&k.public(), Nonce(2)));
        assert_eq!(pool.expire(15_000, 10_000), 1);
        assert!(pool.is_empty());
        assert_eq!(pool.bytes(), 0);
    }
}
