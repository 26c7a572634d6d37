//! What the fuzz targets share with the seed generator (`examples/seeds.rs`): the formats of
//! their inputs, and the checks each makes of what it decodes.
//!
//! - `decode`: one byte naming a decoder in [`DECODERS`] (modulo their number), then the bytes
//!   it decodes. Whatever decodes must encode back to exactly the same bytes (the encoding is
//!   canonical), and a signed message's signature check must answer, not panic.
//! - `core_peer`: a sequence of [`Frame`]s, each a peer message for one entry point of a node.

use attest_chain::light::LightProof;
use attest_chain::statesync::Manifest;
use attest_consensus::{LockRecord, PolkaCert};
use attest_contracts_sim::Params;
use attest_core::localnet::LocalNet;
use attest_core::wire::{ConsensusMessage, Request, Response, SyncRequest, SyncResponse, TxBatch};
use attest_protocol::tx::{Action, CheckLevel, OpenJob, Transfer};
use attest_protocol::{
    Amount, Block, Bytes, Canonical, CapacityAdvert, ChainId, CommitCertificate, DeviceName,
    ModelId, Nonce, Proposal, Signable, Signed, Tx, Vote,
};

/// The decoders of the `decode` target, by the number its input starts with.
pub const DECODERS: [&str; 19] = [
    "tx",
    "signed tx",
    "block",
    "proposal",
    "signed proposal",
    "vote",
    "signed vote",
    "commit certificate",
    "capacity advert",
    "signed capacity advert",
    "polka certificate",
    "lock record",
    "state sync manifest",
    "consensus message",
    "transaction batch",
    "request",
    "response",
    "sync request",
    "sync response",
];

/// The number of [`DECODERS`] entry `name`.
pub fn decoder(name: &str) -> u8 {
    let i = DECODERS
        .iter()
        .position(|d| *d == name)
        .unwrap_or_else(|| panic!("no decoder {name}"));
    u8::try_from(i).expect("fewer than 256 decoders")
}

/// Decodes `bytes` with decoder `which` (modulo their number) and checks what decodes.
/// Returns whether it decoded.
pub fn decode(which: u8, bytes: &[u8]) -> bool {
    let chain = ChainId::new("attest-local").expect("a valid chain id");
    match usize::from(which) % DECODERS.len() {
        0 => canonical::<Tx>(bytes),
        1 => signed::<Tx>(&chain, bytes),
        2 => canonical::<Block>(bytes),
        3 => canonical::<Proposal>(bytes),
        4 => signed::<Proposal>(&chain, bytes),
        5 => canonical::<Vote>(bytes),
        6 => signed::<Vote>(&chain, bytes),
        7 => canonical::<CommitCertificate>(bytes),
        8 => canonical::<CapacityAdvert>(bytes),
        9 => signed::<CapacityAdvert>(&chain, bytes),
        10 => canonical::<PolkaCert>(bytes),
        11 => canonical::<LockRecord>(bytes),
        12 => canonical::<Manifest>(bytes),
        13 => canonical::<ConsensusMessage>(bytes),
        14 => canonical::<TxBatch>(bytes),
        15 => canonical::<Request>(bytes),
        16 => canonical::<Response>(bytes),
        17 => canonical::<SyncRequest>(bytes),
        _ => canonical::<SyncResponse>(bytes),
    }
}

/// Decodes a `T`; one that decodes must encode back to the same bytes.
fn canonical<T: Canonical + std::fmt::Debug>(bytes: &[u8]) -> bool {
    match T::decode(bytes) {
        Ok(value) => {
            assert_eq!(
                value.encode(),
                bytes,
                "{} is not canonical: {value:?}",
                T::NAME
            );
            true
        }
        Err(_) => false,
    }
}

/// Decodes a signed `T` and checks its signature (which must answer, whatever the key and
/// signature bytes are).
fn signed<T: Canonical + Signable + std::fmt::Debug>(chain: &ChainId, bytes: &[u8]) -> bool {
    match Signed::<T>::decode(bytes) {
        Ok(value) => {
            assert_eq!(value.encode(), bytes, "signed {} is not canonical", T::NAME);
            let _verdict = value.verify(chain);
            true
        }
        Err(_) => false,
    }
}

/// A state proof as a light client reads it.
pub fn decode_state_proof(bytes: &[u8]) -> bool {
    LightProof::decode_proof(bytes).is_ok()
}

/// Which entry point of a node a `core_peer` frame goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Gossip on a topic (one of `attest_core::topic::ALL`, by index).
    Gossip(usize),
    /// A request the node answers.
    Request,
    /// An answer to a request, as if from the peer it asked.
    Response,
}

impl Entry {
    /// Every entry point, by the number a frame starts with.
    pub const ALL: [Entry; 6] = [
        Entry::Gossip(0),
        Entry::Gossip(1),
        Entry::Gossip(2),
        Entry::Gossip(3),
        Entry::Request,
        Entry::Response,
    ];

    /// The frame tag of this entry point.
    pub fn tag(self) -> u8 {
        let i = Self::ALL
            .iter()
            .position(|e| *e == self)
            .expect("every entry is listed");
        u8::try_from(i).expect("a few entries")
    }
}

/// One peer message of a `core_peer` input: `tag (1 byte) | length (2 bytes, LE) | bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where it goes.
    pub entry: Entry,
    /// The message.
    pub data: Vec<u8>,
}

impl Frame {
    /// Appends the frame's bytes to `out`; a message over 65,535 bytes is cut to that.
    pub fn put(&self, out: &mut Vec<u8>) {
        let len = self.data.len().min(usize::from(u16::MAX));
        out.push(self.entry.tag());
        out.extend_from_slice(&u16::try_from(len).expect("cut to fit").to_le_bytes());
        out.extend_from_slice(&self.data[..len]);
    }

    /// The frames of an input; a last frame shorter than its length takes what is there.
    pub fn split(mut input: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let [tag, a, b, rest @ ..] = input {
            let len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
            let entry = Entry::ALL[usize::from(*tag) % Entry::ALL.len()];
            frames.push(Frame {
                entry,
                data: rest[..len].to_vec(),
            });
            input = &rest[len..];
        }
        frames
    }
}

/// The genesis of the fuzzed chain: the local network's (4 validators, 1 client), built once.
pub fn genesis() -> &'static attest_chain::GenesisFile {
    static GENESIS: std::sync::OnceLock<attest_chain::GenesisFile> = std::sync::OnceLock::new();
    GENESIS.get_or_init(|| net().genesis)
}

/// A new local network of 4 validators and 1 client, the one the fuzz targets and their
/// seeds use.
pub fn net() -> LocalNet {
    let config = attest_core::CoreConfig {
        idle_block_interval_ms: 200,
        ..attest_core::CoreConfig::default()
    };
    LocalNet::new(4, 1, config)
}

/// The height every node of [`warmed`] has reached.
pub const WARM_HEIGHT: u64 = 4;

/// The local network after its client sent a transfer and a job through node 0 and every node
/// committed [`WARM_HEIGHT`] blocks: where the `core_peer` target starts. With `tap`, every
/// message the network sent on the way is in `LocalNet::tap` (the `core_peer` seeds replay
/// them: what any peer that listened could send).
pub fn warmed(tap: bool) -> LocalNet {
    let mut net = net();
    if tap {
        net.tap = Some(Vec::new());
    }
    let (client, chain) = (net.clients[0].clone(), net.chain_id().clone());
    let fee = Params::default().min_fee;
    let transfer = Tx {
        nonce: Nonce(0),
        fee,
        action: Action::Transfer(Transfer {
            to: net.nodes[1].key.public(),
            amount: Amount(1_000_000),
        }),
    };
    let job = Tx {
        nonce: Nonce(1),
        fee,
        action: Action::OpenJob(OpenJob {
            model: ModelId::new("attest-tiny-1b").expect("a model id"),
            input: Bytes::new(b"fuzz me".to_vec()).expect("short"),
            max_tokens: 8,
            provider: net.nodes[2].key.public(),
            device: DeviceName::new("cpu").expect("a device name"),
            price_per_token: Amount(100),
            deadline_ms: 30_000,
            check: CheckLevel::Always,
        }),
    };
    for tx in [transfer, job] {
        net.submit(0, Signed::sign(&chain, &client, tx))
            .expect("node 0 admits the client's transaction");
    }
    let done = net.run_until(400_000, |n| n.heights().iter().all(|h| *h >= WARM_HEIGHT));
    assert!(done, "the fuzz network stalled at {:?}", net.heights());
    net
}
