//! Writes the fuzz targets' seed corpus: real messages and files of a local network that
//! commits a transfer and a job (the same deterministic network the `core_peer` target runs),
//! in each target's input format. `cargo run --example seeds -- DIR` writes `DIR/TARGET/NAME`,
//! each file named by the first 16 hex digits of its content's blake3 hash; the checked-in
//! corpus is `fuzz/seeds/`, and `.ci/run` checks that this writes exactly it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use attest_chain::light::LightProof;
use attest_chain::statesync::SyncSnapshot;
use attest_contracts_sim::Key;
use attest_core::localnet::{LocalNet, TAP_REQUEST, TAP_RESPONSE};
use attest_core::store::Store;
use attest_core::topic;
use attest_core::wire::{ConsensusMessage, Request, Response, TxBatch};
use attest_fuzz::{Entry, Frame, decoder};
use attest_protocol::{Block, Canonical, CapacityAdvert, Height, Signed, Tx};

/// At most this many seeds of one kind (the first ones, in the order they were sent).
const PER_KIND: usize = 6;

/// The seeds, by target, then by name.
#[derive(Default)]
struct Corpus {
    files: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
    counts: BTreeMap<String, usize>,
}

impl Corpus {
    /// Adds `bytes` to `target`'s seeds unless `kind` has [`PER_KIND`] already.
    fn add(&mut self, target: &'static str, kind: &str, bytes: Vec<u8>) {
        let count = self.counts.entry(format!("{target}/{kind}")).or_default();
        if *count >= PER_KIND {
            return;
        }
        *count += 1;
        let name = blake3::hash(&bytes).to_hex()[..16].to_string();
        self.files.entry(target).or_default().insert(name, bytes);
    }

    /// A `decode` seed for decoder `name`, after checking it decodes.
    fn decodes(&mut self, name: &str, bytes: Vec<u8>) {
        let which = decoder(name);
        assert!(
            attest_fuzz::decode(which, &bytes),
            "a real {name} does not decode"
        );
        let mut input = vec![which];
        input.extend(bytes);
        self.add("decode", name, input);
    }
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));
    let mut corpus = Corpus::default();
    let mut net = attest_fuzz::warmed(true);
    // What the network sent before `core_peer` feeds its node: what its hostile peer replays.
    let history = net.tap.as_ref().map_or(0, Vec::len);
    let done = net.run_until(400_000, |n| n.heights().iter().all(|h| *h >= 12));
    assert!(done, "the seed network stalled at {:?}", net.heights());
    // A snapshot of node 0's state, and the block after it (its anchor) once committed.
    let chain = net.nodes[0].core.as_ref().expect("node 0 runs").chain();
    let sync = chain
        .sync_snapshot()
        .expect("past genesis, a node offers its state");
    let file = chain.snapshot(net.genesis.hash()).encode();
    let next = sync.manifest.height.0 + 1;
    let done = net.run_until(400_000, |n| n.heights().iter().all(|h| *h >= next));
    assert!(done, "the seed network stalled at {:?}", net.heights());
    net.assert_agreement();
    let anchor = net.nodes[0]
        .store
        .block(Height(next))
        .expect("stored")
        .expect("the anchor block is committed");
    let tapped = net.tap.take().expect("tapped");

    let mut frames: Vec<Frame> = Vec::new();
    for (i, (topic_name, data)) in tapped.iter().enumerate() {
        messages(&mut corpus, topic_name, data);
        if i >= history {
            continue;
        }
        let entry = match *topic_name {
            TAP_REQUEST => Entry::Request,
            TAP_RESPONSE => Entry::Response,
            t => Entry::Gossip(
                topic::ALL
                    .iter()
                    .position(|x| *x == t)
                    .expect("a known topic"),
            ),
        };
        frames.push(Frame {
            entry,
            data: data.clone(),
        });
    }
    // The hostile peer's seeds: the last messages the network sent before it, replayed, and
    // one of each entry point's.
    let mut replay = Vec::new();
    for frame in frames.iter().rev().take(40).rev() {
        frame.put(&mut replay);
    }
    corpus.add("core_peer", "replay", replay);
    for entry in Entry::ALL {
        if let Some(frame) = frames.iter().find(|f| f.entry == entry) {
            let mut one = Vec::new();
            frame.put(&mut one);
            corpus.add("core_peer", &format!("{entry:?}"), one);
        }
    }

    stored(&mut corpus, &net);
    snapshots(&mut corpus, &sync, file, &anchor);
    write(&dir, &corpus);
}

/// The `decode` seeds of one message as it was sent, and of what it holds.
fn messages(corpus: &mut Corpus, topic_name: &str, data: &[u8]) {
    match topic_name {
        topic::CONSENSUS => {
            corpus.decodes("consensus message", data.to_vec());
            match ConsensusMessage::decode(data).expect("a sent message decodes") {
                ConsensusMessage::Proposal(p) => {
                    corpus.decodes("proposal", p.body.encode());
                    corpus.decodes("signed proposal", p.encode());
                }
                ConsensusMessage::Vote(v) => {
                    corpus.decodes("vote", v.body.encode());
                    corpus.decodes("signed vote", v.encode());
                }
                ConsensusMessage::Polka(c) => corpus.decodes("polka certificate", c.encode()),
            }
        }
        topic::TX_BATCHES | topic::TXS => {
            let txs = if topic_name == topic::TXS {
                vec![Signed::<Tx>::decode(data).expect("a sent transaction decodes")]
            } else {
                corpus.decodes("transaction batch", data.to_vec());
                TxBatch::decode(data)
                    .expect("a sent batch decodes")
                    .0
                    .into_vec()
            };
            for tx in txs {
                corpus.decodes("tx", tx.body.encode());
                corpus.decodes("signed tx", tx.encode());
            }
        }
        topic::ADVERTS => {
            let advert = Signed::<CapacityAdvert>::decode(data).expect("a sent advert decodes");
            corpus.decodes("capacity advert", advert.body.encode());
            corpus.decodes("signed capacity advert", data.to_vec());
        }
        TAP_REQUEST => {
            corpus.decodes("request", data.to_vec());
            if let Ok(Request::Sync(r)) = Request::decode(data) {
                corpus.decodes("sync request", r.encode());
            }
        }
        TAP_RESPONSE => {
            corpus.decodes("response", data.to_vec());
            if let Ok(Response::Sync(r)) = Response::decode(data) {
                corpus.decodes("sync response", r.encode());
            }
        }
        other => panic!("a message on an unknown topic {other}"),
    }
}

/// The `snapshot` seeds: a snapshot file, a state-sync snapshot with the block that anchors
/// it, and each of its chunks.
fn snapshots(corpus: &mut Corpus, sync: &SyncSnapshot, file: Vec<u8>, anchor: &Block) {
    corpus.decodes("state sync manifest", sync.manifest.encode());
    corpus.add("snapshot", "file", [vec![0], file].concat());
    let anchor = anchor.encode();
    let len = u32::try_from(anchor.len()).expect("a block is small here");
    let input = [vec![1], len.to_le_bytes().to_vec(), anchor, sync.encode()].concat();
    corpus.add("snapshot", "sync", input);
    for chunk in &sync.chunks {
        corpus.add("snapshot", "chunk", [vec![2], chunk.clone()].concat());
    }
}

/// Seeds from what node 0 stored: blocks and certificates, a state proof, the genesis file,
/// and a node's config file.
fn stored(corpus: &mut Corpus, net: &LocalNet) {
    let node = &net.nodes[0];
    let core = node.core.as_ref().expect("node 0 runs");
    let chain = core.chain();
    let mut blocks: Vec<Block> = (1..=chain.height().0)
        .filter_map(|h| node.store.block(Height(h)).expect("stored"))
        .collect();
    // Those with transactions first.
    blocks.sort_by_key(|b| (b.txs.is_empty(), b.header.height));
    for block in &blocks {
        corpus.decodes("block", block.encode());
        if let Some(cert) = &block.last_commit {
            corpus.decodes("commit certificate", cert.encode());
        }
    }
    let proof = attest_protocol::encoding::encode(&chain.prove(Key::Meta));
    assert!(LightProof::decode_proof(&proof).is_ok());
    let mut input = vec![u8::try_from(attest_fuzz::DECODERS.len()).expect("few")];
    input.extend(proof);
    corpus.add("decode", "state proof", input);
    corpus.add("genesis", "local", net.genesis.to_json().into_bytes());
    let config = attest_node::config::Config::default();
    corpus.add("config", "default", config.to_commented_toml().into_bytes());
    // With the test-only settings set: the fuzzer's first find was that they did not
    // round-trip.
    let cheating = attest_node::config::Config {
        danger_cheat: Some("flip:0.5".parse().expect("a cheat")),
        danger_false_verdicts: Some("lazy:1.0".parse().expect("a cheat")),
        ..config
    };
    corpus.add(
        "config",
        "cheating",
        cheating.to_commented_toml().into_bytes(),
    );
}

/// Writes every seed; refuses to write into a directory that holds anything.
fn write(dir: &std::path::Path, corpus: &Corpus) {
    if dir.exists() && std::fs::read_dir(dir).expect("readable").next().is_some() {
        panic!(
            "{} is not empty: write the seeds to a new directory",
            dir.display()
        );
    }
    let mut total = 0;
    for (target, files) in &corpus.files {
        let sub = dir.join(target);
        std::fs::create_dir_all(&sub).expect("the seed directory can be made");
        for (name, bytes) in files {
            std::fs::write(sub.join(name), bytes).expect("a seed can be written");
            total += 1;
        }
        println!("{target}: {} seeds", files.len());
    }
    println!("{total} seeds in {}", dir.display());
}
