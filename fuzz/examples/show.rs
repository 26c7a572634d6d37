//! Prints a `core_peer` input as its frames, each decoded as far as it goes: what a crash
//! file in `artifacts/core_peer/` sent the node. `cargo run --example show -- FILE`.

use attest_core::topic;
use attest_core::wire::{ConsensusMessage, Request, Response, TxBatch};
use attest_fuzz::{Entry, Frame};
use attest_protocol::{Canonical, CapacityAdvert, Signed, Tx};

fn main() {
    let path = std::env::args().nth(1).expect("usage: show FILE");
    let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (i, frame) in Frame::split(&input).iter().enumerate() {
        let data = &frame.data;
        let shown = match frame.entry {
            Entry::Gossip(t) => match topic::ALL[t] {
                topic::CONSENSUS => format!("{:?}", ConsensusMessage::decode(data)),
                topic::TX_BATCHES => format!("{:?}", TxBatch::decode(data)),
                topic::TXS => format!("{:?}", Signed::<Tx>::decode(data)),
                _ => format!("{:?}", Signed::<CapacityAdvert>::decode(data)),
            },
            Entry::Request => format!("{:?}", Request::decode(data)),
            Entry::Response => format!("{:?}", Response::decode(data)),
        };
        let mut shown = shown;
        if std::env::var_os("FULL").is_none() {
            shown.truncate(600);
        }
        println!("{i}: {:?} ({} bytes): {shown}", frame.entry, data.len());
    }
}
