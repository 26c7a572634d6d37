//! A hostile peer against a node of a running network: node 0 of the 4-validator local
//! network, warmed up (`attest_fuzz::warmed`: a transfer and a job, 4 blocks), gets the
//! input's frames (`attest_fuzz::Frame`) on its peer entry points (gossip on each topic, a
//! request it answers from its store, an answer to a request) from a peer that is none of the
//! validators. Then the network runs on. Nothing may panic, halt a node or fork the chain, and
//! the network must still commit blocks, with no input refused by the consensus driver.
//!
//! The peer holds no validator's key: it can send anything, and replay (or alter) what the
//! network sent before it was fed, which is what the seeds do. (Messages of the validators
//! from another run of the network would be conflicting signatures: equivocation, which
//! jails validators and, from all of them, halts or forks any BFT chain.)
#![no_main]

use attest_core::host;
use attest_core::topic;
use attest_fuzz::{Entry, Frame};
use libfuzzer_sys::fuzz_target;

/// Steps the network gets to commit 2 more blocks after the frames: far more than it needs
/// (about 60 without a fault).
const STEPS: usize = 20_000;

fuzz_target!(|data: &[u8]| {
    let mut net = attest_fuzz::warmed(false);
    let hostile: Vec<u8> = b"a hostile peer".to_vec();
    for frame in Frame::split(data) {
        let now = net.now;
        let node = &mut net.nodes[0];
        let Some(core) = node.core.as_mut() else {
            break;
        };
        match frame.entry {
            Entry::Gossip(t) => {
                let _ = core.handle_gossip(now, &hostile, topic::ALL[t], &frame.data);
            }
            Entry::Request => {
                let _ = host::serve_request(core, &node.store, &frame.data);
            }
            Entry::Response => core.handle_response(now, &hostile, Some(&frame.data)),
        }
        net.drain(0);
    }
    let start = net.heights().into_iter().max().unwrap_or(0);
    let progressed = net.run_until(STEPS, |n| n.heights().iter().all(|h| *h >= start + 2));
    net.assert_agreement();
    assert!(progressed, "the network stalled at {:?}", net.heights());
    for (i, node) in net.nodes.iter().enumerate() {
        let errors = node
            .core
            .as_ref()
            .map_or(0, |c| c.consensus_internal_errors());
        assert_eq!(errors, 0, "node {i}: the consensus driver refused inputs");
    }
});
