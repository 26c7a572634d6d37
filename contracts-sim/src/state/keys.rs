//! The state as key/value entries: every fact the rules keep is one entry under one [`Key`],
//! which is what the state tree authenticates, what a snapshot lists and what a block's
//! [`Delta`] changes.
//!
//! Each typed map of [`State`] is a table of entries; sets (timers, releases, retirements,
//! evidence) are entries with an empty value. The encoding of a key and of a value is the
//! canonical one (`docs/PROTOCOL.md`, section 2), so every node derives the same leaves.

use attest_protocol::encoding::{encode, encoded_len};
use attest_protocol::hash::{hash_tagged, tag};
use attest_protocol::{AccountId, Amount, ChainId, Hash, Height, JobId, PublicKey, Round};
use attest_protocol::{VoteKind, encoding::decode_bounded};
use serde::{Deserialize, Serialize};

use super::{Account, Job, Record, StakeEntry, StakeStatus, State};
use crate::params::Params;

/// Where an entry lives. The variant order is the table order of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// The chain id, parameters and genesis supply: written at genesis, never changed.
    Meta,
    /// The treasury's balance.
    Treasury,
    /// An account's balance and nonce.
    Account(AccountId),
    /// An account's stake and standing.
    Stake(AccountId),
    /// A node key's bound account.
    Node(PublicKey),
    /// An account's running record: its jobs by phase and its slashes.
    Record(AccountId),
    /// A job in the live state.
    Job(JobId),
    /// A job's next deadline, in block time (a member of the timer index).
    Timer(u64, JobId),
    /// An unbonding release due at a block time.
    Release(u64, AccountId),
    /// A final job leaving the live state at the end of a height.
    Retire(Height, JobId),
    /// Accepted equivocation evidence: (vote height, signer, round, kind). Kept for
    /// `evidence_blocks` after its height; older evidence is refused anyway.
    Evidence(Height, AccountId, Round, VoteKind),
}

impl Key {
    /// The key's canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// The key's position in the state tree: `H("attest/state-key/v1", encode(key))`.
    pub fn hash(&self) -> Hash {
        hash_tagged(tag::STATE_KEY, &[&encode(self)])
    }
}

/// The entry under [`Key::Meta`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The chain id.
    pub chain_id: ChainId,
    /// The parameters.
    pub params: Params,
    /// The supply created at genesis.
    pub genesis_supply: Amount,
}

/// One entry's value, typed by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Under [`Key::Meta`].
    Meta(Box<Meta>),
    /// Under [`Key::Treasury`].
    Amount(Amount),
    /// Under [`Key::Account`].
    Account(Account),
    /// Under [`Key::Stake`].
    Stake(Box<StakeEntry>),
    /// Under [`Key::Node`].
    Node(AccountId),
    /// Under [`Key::Record`].
    Record(Box<Record>),
    /// Under [`Key::Job`].
    Job(Box<Job>),
    /// Under a set's key: the member is present.
    Member,
}

impl Entry {
    /// The value's canonical bytes (empty for a set member).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Entry::Meta(m) => encode(m.as_ref()),
            Entry::Amount(a) => encode(a),
            Entry::Account(a) => encode(a),
            Entry::Stake(s) => encode(s.as_ref()),
            Entry::Node(a) => encode(a),
            Entry::Record(r) => encode(r.as_ref()),
            Entry::Job(j) => encode(j.as_ref()),
            Entry::Member => Vec::new(),
        }
    }

    /// The length of [`Entry::to_bytes`], computed without building the bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Entry::Meta(m) => encoded_len(m.as_ref()),
            Entry::Amount(a) => encoded_len(a),
            Entry::Account(a) => encoded_len(a),
            Entry::Stake(s) => encoded_len(s.as_ref()),
            Entry::Node(a) => encoded_len(a),
            Entry::Record(r) => encoded_len(r.as_ref()),
            Entry::Job(j) => encoded_len(j.as_ref()),
            Entry::Member => 0,
        }
    }

    /// Decodes the value stored under `key` from its canonical bytes.
    pub fn from_bytes(key: &Key, bytes: &[u8]) -> Result<Entry, EntryError> {
        let k = *key;
        Ok(match key {
            Key::Meta => Entry::Meta(Box::new(value(k, bytes)?)),
            Key::Treasury => Entry::Amount(value(k, bytes)?),
            Key::Account(_) => Entry::Account(value(k, bytes)?),
            Key::Stake(_) => Entry::Stake(Box::new(value(k, bytes)?)),
            Key::Node(_) => Entry::Node(value(k, bytes)?),
            Key::Record(_) => Entry::Record(Box::new(value(k, bytes)?)),
            Key::Job(_) => Entry::Job(Box::new(value(k, bytes)?)),
            Key::Timer(..) | Key::Release(..) | Key::Retire(..) | Key::Evidence(..) => {
                if !bytes.is_empty() {
                    return Err(EntryError::Value { key: *key });
                }
                Entry::Member
            }
        })
    }

    /// The value's hash in the state tree: `H("attest/state-value/v1", bytes)`.
    pub fn hash(&self) -> Hash {
        Entry::value_hash(&self.to_bytes())
    }

    /// The tokens this entry holds, for the supply rule: a balance, a stake (bonded and
    /// unbonding), a job's escrow, the treasury. 128 bits, so the sum cannot overflow.
    pub fn tokens(&self) -> u128 {
        match self {
            Entry::Amount(a) => u128::from(a.0),
            Entry::Account(a) => u128::from(a.balance.0),
            Entry::Stake(s) => {
                u128::from(s.bonded.0)
                    + s.unbonding
                        .iter()
                        .map(|u| u128::from(u.amount.0))
                        .sum::<u128>()
            }
            Entry::Job(j) => j.locked(),
            Entry::Meta(_) | Entry::Node(_) | Entry::Record(_) | Entry::Member => 0,
        }
    }
}

/// The most bytes an entry's value may have: a job with a full input and every fault is far
/// below it.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

fn value<T: Serialize + serde::de::DeserializeOwned>(
    key: Key,
    bytes: &[u8],
) -> Result<T, EntryError> {
    decode_bounded(bytes, "a state entry", MAX_ENTRY_BYTES).map_err(|_| EntryError::Value { key })
}

/// An entry that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The value's bytes are not a value of its key's table.
    #[error("the value under {key:?} does not decode")]
    Value {
        /// The key.
        key: Key,
    },
}

/// One entry a block changed: its value before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entry.
    pub key: Key,
    /// Before the block (`None`: absent).
    pub old: Option<Entry>,
    /// After the block (`None`: removed).
    pub new: Option<Entry>,
}

/// What a block does to the state, entry by entry (in key order). It is what a checked
/// proposal keeps until it commits or is dropped: the size of the block's effects, never a
/// copy of the state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta {
    changes: Vec<Change>,
    bytes: usize,
}

impl Delta {
    pub(super) fn new(changes: Vec<Change>) -> Self {
        let value = |e: &Option<Entry>| e.as_ref().map_or(0, Entry::encoded_len);
        let bytes = changes
            .iter()
            .map(|c| 40 + value(&c.old) + value(&c.new))
            .sum();
        Self { changes, bytes }
    }

    /// The changes, in key order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// How many entries changed.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The encoded size of the old and new values plus a key's worth per change: what
    /// holding this delta costs, for the bound on held proposals.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The value of `key` after the block, if the block changed it.
    pub fn new_value(&self, key: &Key) -> Option<Option<&Entry>> {
        self.changes
            .binary_search_by(|c| c.key.cmp(key))
            .ok()
            .map(|i| self.changes[i].new.as_ref())
    }
}

impl State {
    /// The entry under `key`, if present.
    pub fn entry(&self, key: &Key) -> Option<Entry> {
        match key {
            Key::Meta => Some(Entry::Meta(Box::new(self.meta()))),
            Key::Treasury => Some(Entry::Amount(self.treasury)),
            Key::Account(id) => self.accounts.get(id).map(|a| Entry::Account(*a)),
            Key::Stake(id) => self
                .stakes
                .get(id)
                .map(|s| Entry::Stake(Box::new(s.clone()))),
            Key::Node(k) => self.nodes.get(k).map(|a| Entry::Node(*a)),
            Key::Record(id) => self.records.get(id).map(|r| Entry::Record(Box::new(*r))),
            Key::Job(id) => self.jobs.get(id).map(|j| Entry::Job(Box::new(j.clone()))),
            Key::Timer(h, j) => self.timers.contains(&(*h, *j)).then_some(Entry::Member),
            Key::Release(h, a) => self.releases.contains(&(*h, *a)).then_some(Entry::Member),
            Key::Retire(h, j) => self.retire.contains(&(*h, *j)).then_some(Entry::Member),
            Key::Evidence(h, a, r, k) => self
                .evidence
                .contains(&(*h, *a, *r, *k))
                .then_some(Entry::Member),
        }
    }

    /// The canonical bytes of the value under `key`, without cloning it.
    pub(crate) fn entry_bytes(&self, key: &Key) -> Option<Vec<u8>> {
        match key {
            Key::Meta => Some(encode(&self.meta())),
            Key::Treasury => Some(encode(&self.treasury)),
            Key::Account(id) => self.accounts.get(id).map(encode),
            Key::Stake(id) => self.stakes.get(id).map(encode),
            Key::Node(k) => self.nodes.get(k).map(encode),
            Key::Record(id) => self.records.get(id).map(encode),
            Key::Job(id) => self.jobs.get(id).map(encode),
            Key::Timer(..) | Key::Release(..) | Key::Retire(..) | Key::Evidence(..) => {
                self.entry(key).map(|_| Vec::new())
            }
        }
    }

    pub(crate) fn meta(&self) -> Meta {
        Meta {
            chain_id: self.chain_id.clone(),
            params: self.params.clone(),
            genesis_supply: self.genesis_supply,
        }
    }

    /// Sets (or with `None` removes) the entry under `key`, returning the old one, and marks
    /// the key for the next root. Not journaled: [`State::write`] is the journaled form. A
    /// value of another table than the key's is ignored (no caller builds one).
    pub(crate) fn write_raw(&mut self, key: Key, value: Option<Entry>) -> Option<Entry> {
        let old = self.entry(&key);
        if let Key::Stake(id) = key {
            // The validator ranking follows the stake: out with the old, in with the new.
            if let Some(Entry::Stake(s)) = &old {
                self.ranked.remove(&(std::cmp::Reverse(s.bonded), id));
            }
            if let Some(Entry::Stake(s)) = &value
                && s.status == StakeStatus::Active
                && s.bonded.0 > 0
            {
                self.ranked.insert((std::cmp::Reverse(s.bonded), id));
            }
        }
        let ok = match (key, value) {
            (Key::Meta, Some(Entry::Meta(m))) => {
                self.chain_id = m.chain_id;
                self.params = m.params;
                self.genesis_supply = m.genesis_supply;
                true
            }
            (Key::Treasury, Some(Entry::Amount(a))) => {
                self.treasury = a;
                true
            }
            (Key::Account(id), v) => set(&mut self.accounts, id, v, |e| match e {
                Entry::Account(a) => Some(a),
                _ => None,
            }),
            (Key::Stake(id), v) => set(&mut self.stakes, id, v, |e| match e {
                Entry::Stake(s) => Some(*s),
                _ => None,
            }),
            (Key::Node(k), v) => set(&mut self.nodes, k, v, |e| match e {
                Entry::Node(a) => Some(a),
                _ => None,
            }),
            (Key::Record(id), v) => set(&mut self.records, id, v, |e| match e {
                Entry::Record(r) => Some(*r),
                _ => None,
            }),
            (Key::Job(id), v) => set(&mut self.jobs, id, v, |e| match e {
                Entry::Job(j) => Some(*j),
                _ => None,
            }),
            (Key::Timer(h, j), v) => member(&mut self.timers, (h, j), v),
            (Key::Release(h, a), v) => member(&mut self.releases, (h, a), v),
            (Key::Retire(h, j), v) => member(&mut self.retire, (h, j), v),
            (Key::Evidence(h, a, r, k), v) => member(&mut self.evidence, (h, a, r, k), v),
            (Key::Meta | Key::Treasury, _) => false,
        };
        debug_assert!(ok, "a value of another table under {key:?}");
        if ok {
            self.touched.insert(key);
        }
        old
    }
}

fn set<K: Ord, V>(
    map: &mut std::collections::BTreeMap<K, V>,
    key: K,
    value: Option<Entry>,
    unwrap: impl FnOnce(Entry) -> Option<V>,
) -> bool {
    match value {
        None => {
            map.remove(&key);
            true
        }
        Some(e) => match unwrap(e) {
            Some(v) => {
                map.insert(key, v);
                true
            }
            None => false,
        },
    }
}

fn member<K: Ord>(set: &mut std::collections::BTreeSet<K>, key: K, value: Option<Entry>) -> bool {
    match value {
        None => {
            set.remove(&key);
            true
        }
        Some(Entry::Member) => {
            set.insert(key);
            true
        }
        Some(_) => false,
    }
}
