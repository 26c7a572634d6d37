//! Proptest strategies for every wire type, shared by the integration tests.
//!
//! Each strategy produces values a peer could legitimately send: identifiers from their
//! alphabets, keys derived from random seeds, bounded fields within their bounds. Sizes are kept
//! small (a few transactions per block, short inputs) so the suite stays fast in the dev profile;
//! the bounds themselves are exercised by targeted tests in `decode.rs`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use attest_protocol::tx::{
    Capability, CheckLevel, CommitResult, DisputeMove, DisputeStep, EquivocationEvidence, OpenJob,
    Stake, Transfer, Unstake, Verdict, VerdictOutcome,
};
use attest_protocol::{
    Action, Amount, Block, BlockHash, BlockHeader, BoundedVec, Bytes, CapacityAdvert, ChainId,
    CommitCertificate, CommitSig, DeviceName, Hash, Height, JobId, MerkleProof, ModelId, Nonce,
    Proposal, PublicKey, Round, SecretKey, Signature, Signed, Tx, Vote, VoteKind,
};
use proptest::prelude::*;

/// The default number of cases for a property that does little work per case.
pub const CASES: u32 = 128;

/// A proptest config with `cases` cases.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig::with_cases(cases)
}

pub fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

pub fn block_hash() -> impl Strategy<Value = BlockHash> {
    any::<[u8; 32]>().prop_map(BlockHash)
}

pub fn job_id() -> impl Strategy<Value = JobId> {
    any::<[u8; 32]>().prop_map(JobId)
}

pub fn secret_key() -> impl Strategy<Value = SecretKey> {
    any::<[u8; 32]>().prop_map(SecretKey::from_seed)
}

pub fn public_key() -> impl Strategy<Value = PublicKey> {
    secret_key().prop_map(|k| k.public())
}

/// Any 64 bytes: the wire type accepts every signature value; only verification judges it.
pub fn signature() -> impl Strategy<Value = Signature> {
    any::<[u8; 64]>().prop_map(Signature)
}

pub fn amount() -> impl Strategy<Value = Amount> {
    any::<u64>().prop_map(Amount)
}

pub fn height() -> impl Strategy<Value = Height> {
    any::<u64>().prop_map(Height)
}

pub fn round() -> impl Strategy<Value = Round> {
    any::<u32>().prop_map(Round)
}

pub fn nonce() -> impl Strategy<Value = Nonce> {
    any::<u64>().prop_map(Nonce)
}

/// The alphabet of each identifier, as a regex: first character `a-z0-9`, then the type's
/// extra characters, up to its maximum length.
pub const CHAIN_ID_RE: &str = "[a-z0-9][a-z0-9-]{0,31}";
pub const MODEL_ID_RE: &str = "[a-z0-9][a-z0-9.-]{0,47}";
pub const DEVICE_NAME_RE: &str = "[a-z0-9][a-z0-9._-]{0,31}";

pub fn chain_id() -> impl Strategy<Value = ChainId> {
    CHAIN_ID_RE.prop_map(|s| ChainId::new(&s).expect("the regex matches the alphabet"))
}

pub fn model_id() -> impl Strategy<Value = ModelId> {
    MODEL_ID_RE.prop_map(|s| ModelId::new(&s).expect("the regex matches the alphabet"))
}

pub fn device_name() -> impl Strategy<Value = DeviceName> {
    DEVICE_NAME_RE.prop_map(|s| DeviceName::new(&s).expect("the regex matches the alphabet"))
}

pub fn bytes<const MAX: usize>(max_len: usize) -> impl Strategy<Value = Bytes<MAX>> {
    prop::collection::vec(any::<u8>(), 0..=max_len.min(MAX))
        .prop_map(|v| Bytes::new(v).expect("length within the bound"))
}

pub fn bounded_vec<S: Strategy, const MAX: usize>(
    element: S,
    max_len: usize,
) -> impl Strategy<Value = BoundedVec<S::Value, MAX>>
where
    S::Value: std::fmt::Debug,
{
    prop::collection::vec(element, 0..=max_len.min(MAX))
        .prop_map(|v| BoundedVec::new(v).expect("length within the bound"))
}

pub fn merkle_proof() -> impl Strategy<Value = MerkleProof> {
    bounded_vec(hash(), attest_protocol::merkle::MAX_PROOF_DEPTH)
        .prop_map(|siblings| MerkleProof { siblings })
}

pub fn vote_kind() -> impl Strategy<Value = VoteKind> {
    prop_oneof![Just(VoteKind::Prevote), Just(VoteKind::Precommit)]
}

pub fn vote() -> impl Strategy<Value = Vote> {
    (
        height(),
        round(),
        vote_kind(),
        prop::option::of(block_hash()),
    )
        .prop_map(|(height, round, kind, block)| Vote {
            height,
            round,
            kind,
            block,
        })
}

/// A `Signed<T>` with an arbitrary signer and signature bytes: valid on the wire, not
/// necessarily a valid signature.
pub fn unchecked_signed<T: std::fmt::Debug>(
    body: impl Strategy<Value = T>,
) -> impl Strategy<Value = Signed<T>> {
    (public_key(), signature(), body).prop_map(|(signer, signature, body)| Signed {
        signer,
        signature,
        body,
    })
}

fn transfer() -> impl Strategy<Value = Action> {
    (public_key(), amount()).prop_map(|(to, amount)| Action::Transfer(Transfer { to, amount }))
}

fn stake() -> impl Strategy<Value = Action> {
    (
        amount(),
        public_key(),
        signature(),
        device_name(),
        any::<u64>(),
    )
        .prop_map(|(amount, node, node_signature, device, memory_bytes)| {
            Action::Stake(Stake {
                amount,
                node,
                node_signature,
                capability: Capability {
                    device,
                    memory_bytes,
                },
            })
        })
}

fn unstake() -> impl Strategy<Value = Action> {
    amount().prop_map(|amount| Action::Unstake(Unstake { amount }))
}

fn open_job() -> impl Strategy<Value = Action> {
    (
        model_id(),
        bytes(256),
        any::<u32>(),
        public_key(),
        device_name(),
        amount(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(model, input, max_tokens, provider, device, price_per_token, deadline_ms, always)| {
                Action::OpenJob(OpenJob {
                    model,
                    input,
                    max_tokens,
                    provider,
                    device,
                    price_per_token,
                    deadline_ms,
                    check: if always {
                        CheckLevel::Always
                    } else {
                        CheckLevel::Random
                    },
                })
            },
        )
}

fn commit_result() -> impl Strategy<Value = Action> {
    (
        (job_id(), hash(), hash(), any::<u64>(), any::<u32>()),
        (bytes(160), merkle_proof()),
    )
        .prop_map(
            |(
                (job, output_hash, trace_root, step_count, tokens),
                (final_activation, final_proof),
            )| {
                Action::CommitResult(CommitResult {
                    job,
                    output_hash,
                    trace_root,
                    step_count,
                    tokens,
                    final_activation,
                    final_proof,
                })
            },
        )
}

pub fn verdict_outcome() -> impl Strategy<Value = VerdictOutcome> {
    prop_oneof![
        Just(VerdictOutcome::Agree),
        (hash(), hash(), merkle_proof()).prop_map(|(trace_root, final_leaf, final_proof)| {
            VerdictOutcome::Disagree {
                trace_root,
                final_leaf,
                final_proof,
            }
        }),
    ]
}

fn verdict() -> impl Strategy<Value = Action> {
    (job_id(), verdict_outcome())
        .prop_map(|(job, outcome)| Action::Verdict(Verdict { job, outcome }))
}

pub fn dispute_step() -> impl Strategy<Value = DisputeStep> {
    prop_oneof![
        (any::<u64>(), hash(), merkle_proof()).prop_map(|(index, leaf, proof)| DisputeStep::Open {
            index,
            leaf,
            proof
        }),
        bytes(attest_protocol::limits::MAX_ACTIVATION_BYTES)
            .prop_map(|activation| DisputeStep::Witness { activation }),
    ]
}

fn dispute() -> impl Strategy<Value = Action> {
    (job_id(), round(), dispute_step())
        .prop_map(|(job, round, step)| Action::Dispute(DisputeMove { job, round, step }))
}

fn equivocation() -> impl Strategy<Value = Action> {
    (unchecked_signed(vote()), unchecked_signed(vote())).prop_map(|(first, second)| {
        Action::Equivocation(Box::new(EquivocationEvidence { first, second }))
    })
}

/// Every `Action` variant, with equal weight.
pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        transfer(),
        stake(),
        unstake(),
        open_job(),
        commit_result(),
        verdict(),
        dispute(),
        equivocation(),
    ]
}

pub fn tx() -> impl Strategy<Value = Tx> {
    (nonce(), amount(), action()).prop_map(|(nonce, fee, action)| Tx { nonce, fee, action })
}

/// A chain, a key and a transaction signed by it for that chain.
pub fn signed_tx() -> impl Strategy<Value = (ChainId, Signed<Tx>)> {
    (chain_id(), secret_key(), tx())
        .prop_map(|(chain, key, tx)| (chain.clone(), Signed::sign(&chain, &key, tx)))
}

pub fn signed_vote() -> impl Strategy<Value = (ChainId, Signed<Vote>)> {
    (chain_id(), secret_key(), vote())
        .prop_map(|(chain, key, vote)| (chain.clone(), Signed::sign(&chain, &key, vote)))
}

pub fn capacity_advert() -> impl Strategy<Value = CapacityAdvert> {
    (
        public_key(),
        device_name(),
        bounded_vec(model_id(), attest_protocol::limits::MAX_ADVERT_MODELS),
        any::<u32>(),
        amount(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                node,
                device,
                models,
                free_slots,
                price_per_token,
                tokens_per_sec_milli,
                expires_at_ms,
                seq,
            )| CapacityAdvert {
                node,
                device,
                models,
                free_slots,
                price_per_token,
                tokens_per_sec_milli,
                expires_at_ms,
                seq,
            },
        )
}

pub fn signed_advert() -> impl Strategy<Value = (ChainId, Signed<CapacityAdvert>)> {
    (chain_id(), secret_key(), capacity_advert())
        .prop_map(|(chain, key, advert)| (chain.clone(), Signed::sign(&chain, &key, advert)))
}

pub fn commit_sig() -> impl Strategy<Value = CommitSig> {
    (public_key(), signature()).prop_map(|(validator, signature)| CommitSig {
        validator,
        signature,
    })
}

pub fn commit_certificate() -> impl Strategy<Value = CommitCertificate> {
    (
        height(),
        round(),
        block_hash(),
        bounded_vec(commit_sig(), 6),
    )
        .prop_map(|(height, round, block, signatures)| CommitCertificate {
            height,
            round,
            block,
            signatures,
        })
}

pub fn block_header() -> impl Strategy<Value = BlockHeader> {
    (
        chain_id(),
        height(),
        block_hash(),
        public_key(),
        any::<u64>(),
        hash(),
        hash(),
        hash(),
    )
        .prop_map(
            |(chain_id, height, prev, proposer, time_ms, tx_root, state_root, last_commit)| {
                BlockHeader {
                    chain_id,
                    height,
                    prev,
                    proposer,
                    time_ms,
                    tx_root,
                    state_root,
                    last_commit,
                }
            },
        )
}

pub fn block() -> impl Strategy<Value = Block> {
    (
        block_header(),
        bounded_vec(signed_tx().prop_map(|(_, tx)| tx), 4),
        prop::option::of(commit_certificate()),
    )
        .prop_map(|(header, txs, last_commit)| Block {
            header,
            txs,
            last_commit,
        })
}

pub fn proposal() -> impl Strategy<Value = Proposal> {
    (height(), round(), prop::option::of(round()), block()).prop_map(
        |(height, round, pol_round, block)| Proposal {
            height,
            round,
            pol_round,
            block,
        },
    )
}

/// `value` as an unsigned LEB128 varint, padded to `len` bytes with continuation bits (the
/// over-long forms a canonical decoder must refuse). `len` must be at least the minimal length.
pub fn varint(value: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut v = value;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        out.push(byte);
        if v == 0 {
            break;
        }
    }
    assert!(out.len() <= len, "padding cannot shorten a varint");
    while out.len() < len {
        out.push(0);
    }
    let last = out.len() - 1;
    for b in &mut out[..last] {
        *b |= 0x80;
    }
    out
}
