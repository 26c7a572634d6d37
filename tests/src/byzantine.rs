//! Byzantine behaviour: how a misbehaving node's messages are made from its real core's.
//!
//! This module owns the forgeries: an equivocating proposer's second proposal, a double
//! voter's conflicting vote (both properly signed with the node's account key), and a garbage
//! node's junk (random bytes, real messages with a flipped signature bit or a tampered body,
//! far-future votes with a made-up signature, forged sync answers). Each function returns
//! bytes to send, or `None` when the input is not something it forges from. Where the bytes
//! go is the simulator's business.

use attest_core::wire::{ConsensusMessage, Response};
use attest_protocol::encoding::encode;
use attest_protocol::{
    BlockHash, BoundedVec, Canonical, ChainId, Height, Round, SecretKey, Signature, Signed,
    SignedTx, VoteKind, hash_tagged,
};

use crate::rng::Rng;

/// If `data` is `key`'s own proposal, a second proposal for the same height and round: the
/// same block one millisecond later (so a different, equally valid block), signed anew.
pub fn twin_proposal(chain: &ChainId, key: &SecretKey, data: &[u8]) -> Option<Vec<u8>> {
    let ConsensusMessage::Proposal(p) = ConsensusMessage::decode(data).ok()? else {
        return None;
    };
    if p.signer != key.public() {
        return None;
    }
    let mut body = p.body.clone();
    body.block.header.time_ms += 1;
    let twin = Signed::sign(chain, key, body);
    Some(ConsensusMessage::Proposal(Box::new(twin)).encode())
}

/// If `data` is `key`'s own vote, a conflicting vote for the same height, round and kind:
/// nil instead of a block, or a made-up block instead of nil. Properly signed.
pub fn conflicting_vote(chain: &ChainId, key: &SecretKey, data: &[u8]) -> Option<Vec<u8>> {
    let ConsensusMessage::Vote(v) = ConsensusMessage::decode(data).ok()? else {
        return None;
    };
    if v.signer != key.public() {
        return None;
    }
    let mut body = v.body.clone();
    body.block = match body.block {
        Some(_) => None,
        None => Some(BlockHash(
            hash_tagged("attest-sim/fake-block", &[&encode(&body)]).0,
        )),
    };
    Some(ConsensusMessage::Vote(Signed::sign(chain, key, body)).encode())
}

fn flip(rng: &mut Rng, sig: &mut Signature) {
    let byte = rng.index(64);
    sig.0[byte] ^= 1 << rng.below(8);
}

/// A real transaction batch with one of its transactions changed by `change`.
fn change_one_tx(
    rng: &mut Rng,
    data: &[u8],
    change: impl FnOnce(&mut Rng, &mut SignedTx),
) -> Option<Vec<u8>> {
    let batch = attest_core::wire::TxBatch::decode(data).ok()?;
    let mut txs = batch.0.into_vec();
    let i = rng.index(txs.len().max(1));
    change(rng, txs.get_mut(i)?);
    let batch = attest_core::wire::TxBatch(attest_protocol::BoundedVec::new(txs).ok()?);
    Some(batch.encode())
}

/// A real message with one bit of its signature flipped.
pub fn flip_signature(rng: &mut Rng, topic: &str, data: &[u8]) -> Option<Vec<u8>> {
    if topic == attest_core::topic::TXS {
        let mut tx = SignedTx::decode(data).ok()?;
        flip(rng, &mut tx.signature);
        return Some(tx.encode());
    }
    if topic == attest_core::topic::TX_BATCHES {
        return change_one_tx(rng, data, |rng, tx| flip(rng, &mut tx.signature));
    }
    let out = match ConsensusMessage::decode(data).ok()? {
        ConsensusMessage::Proposal(mut p) => {
            flip(rng, &mut p.signature);
            ConsensusMessage::Proposal(p)
        }
        ConsensusMessage::Vote(mut v) => {
            flip(rng, &mut v.signature);
            ConsensusMessage::Vote(v)
        }
        ConsensusMessage::Polka(mut c) => {
            let mut votes = c.prevotes.into_vec();
            let i = rng.index(votes.len().max(1));
            if let Some(v) = votes.get_mut(i) {
                flip(rng, &mut v.signature);
            }
            c.prevotes = attest_protocol::BoundedVec::new(votes).ok()?;
            ConsensusMessage::Polka(c)
        }
    };
    Some(out.encode())
}

/// A real message whose body is changed under its original signature.
pub fn tamper_body(rng: &mut Rng, topic: &str, data: &[u8]) -> Option<Vec<u8>> {
    if topic == attest_core::topic::TXS {
        let mut tx = SignedTx::decode(data).ok()?;
        tx.body.fee.0 += 1 + rng.below(1_000);
        return Some(tx.encode());
    }
    if topic == attest_core::topic::TX_BATCHES {
        return change_one_tx(rng, data, |rng, tx| tx.body.fee.0 += 1 + rng.below(1_000));
    }
    let out = match ConsensusMessage::decode(data).ok()? {
        ConsensusMessage::Proposal(mut p) => {
            match rng.below(3) {
                0 => p.body.block.header.time_ms += 1,
                1 => p.body.round = Round(p.body.round.0 + 1),
                _ => p.body.pol_round = Some(Round(0)),
            }
            ConsensusMessage::Proposal(p)
        }
        ConsensusMessage::Vote(mut v) => {
            match rng.below(3) {
                0 => v.body.block = Some(BlockHash(rng.bytes32())),
                1 => v.body.round = Round(v.body.round.0 + 1),
                _ => {
                    v.body.kind = match v.body.kind {
                        VoteKind::Prevote => VoteKind::Precommit,
                        VoteKind::Precommit => VoteKind::Prevote,
                    }
                }
            }
            ConsensusMessage::Vote(v)
        }
        ConsensusMessage::Polka(mut c) => {
            c.round = Round(c.round.0 + 1);
            ConsensusMessage::Polka(c)
        }
    };
    Some(out.encode())
}

/// A real validator's vote moved to a height far ahead, with a made-up signature: it lures a
/// node into syncing from the sender, whose answer is junk.
pub fn far_future_vote(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    let ConsensusMessage::Vote(mut v) = ConsensusMessage::decode(data).ok()? else {
        return None;
    };
    v.body.height = Height(v.body.height.0 + rng.range(3, 500));
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&rng.bytes(64));
    v.signature = Signature(sig);
    Some(ConsensusMessage::Vote(v).encode())
}

/// A truncated or extended copy of `data`.
pub fn mangle_length(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if !out.is_empty() && rng.chance(500_000) {
        out.truncate(rng.index(out.len()));
    } else {
        let extra = rng.range(1, 16) as usize;
        out.extend(rng.bytes(extra));
    }
    out
}

/// Random bytes of a random length (sometimes empty).
pub fn junk(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(400) as usize;
    rng.bytes(len)
}

/// A forged answer to a sync request, made from the real one `real`: a certificate signature
/// flipped, a block tampered, a lie about the height, or plain junk.
pub fn forge_sync_response(rng: &mut Rng, real: Option<&[u8]>) -> Vec<u8> {
    let Some(Response::Sync(mut response)) = real.and_then(|d| Response::decode(d).ok()) else {
        return junk(rng);
    };
    let mut blocks = std::mem::take(&mut response.blocks).into_vec();
    match (rng.below(4), blocks.is_empty()) {
        (0, false) => {
            let i = rng.index(blocks.len());
            let mut sigs = std::mem::take(&mut blocks[i].1.signatures).into_vec();
            if let Some(s) = sigs.first_mut() {
                flip(rng, &mut s.signature);
            }
            blocks[i].1.signatures = BoundedVec::new(sigs).expect("same length");
        }
        (1, false) => {
            let i = rng.index(blocks.len());
            blocks[i].0.header.time_ms += 1;
        }
        (2, _) => response.latest = Height(response.latest.0 + rng.range(1, 10_000)),
        _ => return junk(rng),
    }
    response.blocks = BoundedVec::new(blocks).expect("same length");
    Response::Sync(response).encode()
}

/// A chunk answer with one bit of the chunk flipped; any other answer unchanged.
pub fn corrupt_chunk(answer: Vec<u8>) -> Vec<u8> {
    match Response::decode(&answer) {
        Ok(Response::Chunk(mut c)) => {
            if let Some(bytes) = c.chunk.take() {
                let mut bytes = bytes.into_vec();
                if let Some(b) = bytes.first_mut() {
                    *b ^= 1;
                }
                c.chunk = attest_protocol::Bytes::new(bytes).ok();
            }
            Response::Chunk(c).encode()
        }
        _ => answer,
    }
}
