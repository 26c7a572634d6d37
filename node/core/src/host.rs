//! The one effects host: what every host of a [`NodeCore`] does with its store.
//!
//! The node shell (sled), the in-process [`crate::localnet`] and the simulator (`attest-tests`,
//! in memory) differ in how they send bytes and run jobs, but must not differ in what they make
//! durable, in what order, or what they prune. This module is that part, written once:
//! [`open`] replays a store into a core, [`persist`] carries out every `Effect::Persist`, and
//! [`serve_request`] answers a peer's request from the core and the store.
//!
//! Ordering: a host must hand effects to [`persist`] in the order [`NodeCore::poll_effect`]
//! yields them, and finish each before carrying out the next: a vote is durable before it is
//! broadcast, a block before anything that follows its commit.

use attest_chain::statesync::{SyncSnapshot, restore};
use attest_chain::{Chain, GenesisFile};
use attest_consensus::OwnMessage;
use attest_protocol::{Height, SecretKey};

use crate::node::requests::Answer;
use crate::node::{CoreConfig, CoreError, NodeCore, Persist};
use crate::store::{Store, StoreError};
use crate::wire;

/// Opens a node on `store`: replays every stored block from genesis (checking certificates
/// and state roots), restores our own votes and locks for the next height, and starts it.
/// `key` is the validator account key, `None` for a node that only follows.
///
/// A store that began with a state-synced snapshot ([`Store::base_height`] above 0) starts
/// from that snapshot instead, checked again against the stored block after it.
pub fn open(
    genesis: &GenesisFile,
    key: Option<SecretKey>,
    config: CoreConfig,
    store: &dyn Store,
    now_ms: u64,
) -> Result<NodeCore, CoreError> {
    match store.base_snapshot()? {
        Some(bytes) => {
            let (chain, snapshot) = base_chain(genesis, store, &bytes)?;
            // The base is offered as it was synced: no need to cut it again.
            open_at(chain, Some(snapshot), key, config, store, now_ms)
        }
        None => open_from(Chain::new(genesis)?, key, config, store, now_ms),
    }
}

/// The chain a store's state-synced base describes, checked as when it was synced: the
/// snapshot against the stored anchor (the block after it); with the snapshot itself.
pub fn base_chain(
    genesis: &GenesisFile,
    store: &dyn Store,
    bytes: &[u8],
) -> Result<(Chain, SyncSnapshot), CoreError> {
    let base = store.base_height();
    let bad = |detail: String| CoreError::Base {
        height: base,
        detail,
    };
    let snapshot = SyncSnapshot::decode(bytes).map_err(|e| bad(e.to_string()))?;
    let anchor = store
        .block(base.next())?
        .ok_or_else(|| bad(format!("the store lacks the anchor block {}", base.next())))?;
    let chain = restore(
        &genesis.genesis.chain_id,
        &snapshot.manifest,
        &snapshot.chunks,
        &anchor,
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok((chain, snapshot))
}

/// Opens a node on `store` from `chain` (a snapshot's, or genesis): replays the stored blocks
/// above its height, checking each block's certificate and the state root its header claims
/// (the first replayed block checks the snapshot's root), then starts as [`open`] does.
pub fn open_from(
    chain: Chain,
    key: Option<SecretKey>,
    config: CoreConfig,
    store: &dyn Store,
    now_ms: u64,
) -> Result<NodeCore, CoreError> {
    // Offer the starting snapshot for state sync until the next one is due.
    let served = (chain.height().0 > 0)
        .then(|| chain.sync_snapshot())
        .flatten();
    open_at(chain, served, key, config, store, now_ms)
}

/// [`open_from`] with the snapshot to offer already cut.
fn open_at(
    mut chain: Chain,
    served: Option<SyncSnapshot>,
    key: Option<SecretKey>,
    config: CoreConfig,
    store: &dyn Store,
    now_ms: u64,
) -> Result<NodeCore, CoreError> {
    let latest = store.latest_height();
    let first = chain.height().next();
    if chain.height() < store.base_height() {
        return Err(CoreError::Base {
            height: store.base_height(),
            detail: format!(
                "the store's blocks start after it, and the chain to replay them on is at {}",
                chain.height()
            ),
        });
    }
    if latest >= first {
        for item in store.blocks(first..=latest) {
            let (block, cert) = item?;
            let height = block.header.height;
            let applied = chain
                .check_committed(&block, &cert)
                .map_err(|e| CoreError::Replay {
                    height,
                    error: Box::new(e),
                })?;
            chain
                .commit(&block, cert, applied)
                .map_err(|e| CoreError::NoValidators { height, error: e })?;
        }
    }
    let next = chain.height().next();
    let locks = store.own_locks(next)?.into_iter();
    let wal: Vec<OwnMessage> = store
        .own_votes(next)?
        .into_iter()
        .map(OwnMessage::Vote)
        .chain(locks.map(|l| OwnMessage::Lock(Box::new(l))))
        .collect();
    NodeCore::open(chain, key, config, wal, now_ms, served)
}

/// Makes `what` durable. After a block is stored, own votes and locks below the block before
/// it are pruned: the validator votes at those heights no more.
///
/// An error is fatal: the node must not go on after failing to make a vote or block durable.
pub fn persist(store: &mut dyn Store, what: &Persist) -> Result<(), StoreError> {
    match what {
        Persist::Vote(vote) => store.record_own_vote(vote),
        Persist::Lock(lock) => store.record_own_lock(lock),
        Persist::History(batch) => store.put_history(batch),
        Persist::Base(base) => {
            store.put_base(base.height, &base.snapshot, &base.anchor, &base.certificate)
        }
        Persist::Block(pair) => {
            let (block, certificate) = &**pair;
            store.put_block(block, certificate)?;
            let below = Height(block.header.height.0.saturating_sub(1));
            store.prune_own_votes_below(below)
        }
    }
}

/// The answer to a peer's request `data`: an output from `core`, or committed blocks from
/// `store`. `None` for a malformed request.
pub fn serve_request(core: &NodeCore, store: &dyn Store, data: &[u8]) -> Option<Vec<u8>> {
    match core.answer_request(data)? {
        Answer::Ready(bytes) => Some(bytes),
        Answer::Sync(request) => {
            let latest = store.latest_height();
            match wire::sync_range(&request, latest) {
                Some(range) => wire::sync_response(latest, store.blocks(range)),
                None => wire::sync_response::<StoreError>(latest, []),
            }
        }
    }
}
