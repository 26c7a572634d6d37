//! One `Consensus` instance fed crafted inputs: every kind of bad message is rejected with the
//! right error and no effect, double votes become evidence, a restart never contradicts the
//! write-ahead log, and the certificate verifier rejects what it must.

use attest_chain::{CertError, ValidatorSet, build_certificate, verify_certificate};
use attest_consensus::{
    BlockValidity, Consensus, ConsensusConfig, Input, InputError, Output, OwnMessage, RestoreError,
    TimeoutConfig, TimeoutKind,
};
use attest_protocol::{
    Amount, Block, BlockHash, BlockHeader, BoundedVec, ChainId, CommitCertificate, CommitSig, Hash,
    Height, Proposal, Round, SecretKey, Signed, Vote, VoteKind,
};
use proptest::prelude::*;

struct Fx {
    chain: ChainId,
    keys: Vec<SecretKey>,
    set: ValidatorSet,
}

fn fx_with(stakes: &[u64]) -> Fx {
    let chain = ChainId::new("attest-test").expect("valid chain id");
    let keys: Vec<SecretKey> = (0..stakes.len())
        .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
        .collect();
    let set = ValidatorSet::new(
        keys.iter()
            .zip(stakes)
            .map(|(k, s)| (k.public(), Amount(*s))),
    )
    .expect("valid set");
    Fx { chain, keys, set }
}

fn fx() -> Fx {
    fx_with(&[10, 10, 10, 10])
}

impl Fx {
    fn config(&self) -> ConsensusConfig {
        ConsensusConfig {
            chain_id: self.chain.clone(),
            timeouts: TimeoutConfig::default(),
        }
    }

    /// A started node with validator key `me` (or a follower), and its first outputs.
    fn node(&self, me: Option<usize>, height: u64) -> (Consensus, Vec<Output>) {
        let key = me.map(|i| self.keys[i].clone());
        let mut c = Consensus::new(self.config(), key, []).expect("no WAL");
        let out = c.handle(self.start(height)).expect("starts");
        (c, out)
    }

    fn start(&self, height: u64) -> Input {
        Input::StartHeight {
            height: Height(height),
            validators: self.set.clone(),
        }
    }

    fn vote(&self, i: usize, h: u64, r: u32, kind: VoteKind, block: Option<BlockHash>) -> Input {
        Input::Vote(self.signed_vote(i, h, r, kind, block))
    }

    fn signed_vote(
        &self,
        i: usize,
        h: u64,
        r: u32,
        kind: VoteKind,
        block: Option<BlockHash>,
    ) -> Signed<Vote> {
        let body = Vote {
            height: Height(h),
            round: Round(r),
            kind,
            block,
        };
        Signed::sign(&self.chain, &self.keys[i], body)
    }

    fn block(&self, h: u64, tag: u64) -> Block {
        Block {
            header: BlockHeader {
                chain_id: self.chain.clone(),
                height: Height(h),
                prev: BlockHash::default(),
                proposer: self.keys[0].public(),
                time_ms: tag,
                tx_root: Block::tx_root(&[]),
                state_root: Hash::default(),
                last_commit: Block::last_commit_hash(None),
            },
            txs: BoundedVec::default(),
            last_commit: None,
        }
    }

    fn proposer(&self, h: u64, r: u32) -> usize {
        let pk = self.set.proposer(Height(h), Round(r)).account();
        self.keys
            .iter()
            .position(|k| k.public() == pk)
            .expect("a member")
    }

    fn proposal(&self, i: usize, h: u64, r: u32, block: Block) -> Input {
        let body = Proposal {
            height: Height(h),
            round: Round(r),
            pol_round: None,
            block,
        };
        Input::Proposal {
            proposal: Signed::sign(&self.chain, &self.keys[i], body),
            validity: BlockValidity::Valid,
        }
    }
}

fn decided(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Decided { .. }))
}

#[test]
fn forged_signatures_are_rejected_and_change_nothing() {
    let f = fx();
    let (mut c, _) = f.node(None, 1);
    let block = f.block(1, 1);
    let hash = block.hash();
    let p = f.proposer(1, 0);
    c.handle(f.proposal(p, 1, 0, block))
        .expect("the proposer's proposal");
    // Three of four precommits would decide; forge them (a flipped signature bit).
    for i in 0..3 {
        let mut v = f.signed_vote(i, 1, 0, VoteKind::Precommit, Some(hash));
        v.signature.0[10] ^= 1;
        let err = c.handle(Input::Vote(v)).expect_err("forged");
        assert!(matches!(err, InputError::BadSignature(_)), "{err:?}");
    }
    // Had any forged vote counted, the genuine copy would be a duplicate and the third
    // genuine precommit would not be the one to decide.
    let mut out = Vec::new();
    for i in 0..3 {
        out = c
            .handle(f.vote(i, 1, 0, VoteKind::Precommit, Some(hash)))
            .expect("genuine");
        assert_eq!(decided(&out), i == 2);
    }
    let Some(Output::Decided { certificate, .. }) = out.into_iter().next() else {
        panic!("decided");
    };
    verify_certificate(&f.chain, &f.set, &certificate).expect("valid certificate");
    assert_eq!(certificate.signatures.len(), 3);
}

#[test]
fn votes_from_non_validators_are_rejected() {
    let f = fx();
    let (mut c, _) = f.node(Some(0), 1);
    let stranger = SecretKey::from_seed([99; 32]);
    let body = Vote {
        height: Height(1),
        round: Round(0),
        kind: VoteKind::Prevote,
        block: None,
    };
    let v = Signed::sign(&f.chain, &stranger, body);
    assert_eq!(
        c.handle(Input::Vote(v)),
        Err(InputError::NotAValidator(Box::new(stranger.public())))
    );
}

#[test]
fn proposals_from_anyone_but_the_proposer_are_rejected() {
    let f = fx();
    let p = f.proposer(1, 0);
    let other = (p + 1) % 4;
    let (mut c, _) = f.node(Some((p + 2) % 4), 1);
    let err = c
        .handle(f.proposal(other, 1, 0, f.block(1, 1)))
        .expect_err("not the proposer");
    assert_eq!(
        err,
        InputError::WrongProposer {
            height: Height(1),
            round: Round(0),
            signer: Box::new(f.keys[other].public()),
            expected: Box::new(f.keys[p].public()),
        }
    );
    // The real proposer's proposal is still accepted afterwards, and we prevote it.
    let out = c
        .handle(f.proposal(p, 1, 0, f.block(1, 1)))
        .expect("accepted");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::PersistAndBroadcastVote(v)
        if v.body.kind == VoteKind::Prevote && v.body.block.is_some()))
    );
}

#[test]
fn malformed_proposals_are_rejected() {
    let f = fx();
    let p = f.proposer(1, 1);
    let (mut c, _) = f.node(None, 1);
    let mut wrong_height = f.block(2, 1);
    wrong_height.header.height = Height(2);
    let err = c
        .handle(f.proposal(p, 1, 1, wrong_height))
        .expect_err("height");
    assert_eq!(err, InputError::BlockMismatch { what: "a height" });

    let mut bad_body = f.block(1, 1);
    bad_body.last_commit = Some(CommitCertificate {
        height: Height(0),
        round: Round(0),
        block: BlockHash::default(),
        signatures: BoundedVec::default(),
    });
    let err = c.handle(f.proposal(p, 1, 1, bad_body)).expect_err("body");
    assert!(matches!(err, InputError::BlockBody(_)), "{err:?}");

    let body = Proposal {
        height: Height(1),
        round: Round(1),
        pol_round: Some(Round(1)),
        block: f.block(1, 1),
    };
    let proposal = Signed::sign(&f.chain, &f.keys[p], body);
    let err = c
        .handle(Input::Proposal {
            proposal,
            validity: BlockValidity::Valid,
        })
        .expect_err("pol round");
    assert_eq!(
        err,
        InputError::InvalidPolRound {
            round: Round(1),
            pol_round: Round(1)
        }
    );
}

#[test]
fn stale_heights_and_timeouts_are_dropped() {
    let f = fx();
    let (mut c, out) = f.node(Some(0), 1);
    let timeout = out
        .iter()
        .find_map(|o| match o {
            Output::ScheduleTimeout { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a timeout at height 1");
    c.handle(f.start(2)).expect("height 2");
    assert_eq!(
        c.handle(f.vote(1, 1, 0, VoteKind::Prevote, None)),
        Err(InputError::StaleHeight {
            height: Height(1),
            current: Height(2)
        })
    );
    assert_eq!(
        c.handle(f.start(2)).expect_err("not ahead"),
        InputError::HeightNotAhead {
            current: Height(2),
            requested: Height(2)
        }
    );
    // A timer armed at height 1 fires at height 2: dropped, nothing happens.
    assert_eq!(timeout.height, Height(1));
    assert_eq!(c.handle(Input::TimeoutElapsed(timeout)), Ok(Vec::new()));
    assert_eq!(c.round(), Some(Round(0)));
}

#[test]
fn far_rounds_and_far_heights_are_rejected() {
    let f = fx();
    let (mut c, _) = f.node(None, 1);
    assert_eq!(
        c.handle(f.vote(1, 1, 33, VoteKind::Prevote, None)),
        Err(InputError::RoundTooFar {
            round: Round(33),
            max: Round(32)
        })
    );
    assert_eq!(
        c.handle(f.vote(1, 1, u32::MAX, VoteKind::Precommit, None)),
        Err(InputError::RoundTooFar {
            round: Round(u32::MAX),
            max: Round(32)
        })
    );
    assert_eq!(
        c.handle(f.vote(1, 1, 32, VoteKind::Prevote, None)),
        Ok(Vec::new())
    );
    assert_eq!(
        c.handle(f.vote(1, 4, 0, VoteKind::Prevote, None)),
        Err(InputError::FarFutureHeight {
            height: Height(4),
            current: Height(1)
        })
    );
}

#[test]
fn next_height_messages_are_buffered_and_replayed() {
    let f = fx();
    let (mut c, _) = f.node(None, 1);
    let block = f.block(2, 7);
    let hash = block.hash();
    let p = f.proposer(2, 0);
    assert_eq!(c.handle(f.proposal(p, 2, 0, block)), Ok(Vec::new()));
    for i in 0..3 {
        let v = f.vote(i, 2, 0, VoteKind::Precommit, Some(hash));
        assert_eq!(c.handle(v), Ok(Vec::new()));
    }
    assert_eq!(c.buffered(), 4);
    // Per-signer quota: a ninth vote from one validator for height 2 is refused.
    for r in 1..=4 {
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            let _ = c.handle(f.vote(3, 2, r, kind, None));
        }
    }
    assert_eq!(
        c.handle(f.vote(3, 2, 5, VoteKind::Prevote, None)),
        Err(InputError::BufferFull {
            height: Height(2),
            signer: Box::new(f.keys[3].public())
        })
    );
    let out = c.handle(f.start(2)).expect("height 2");
    assert_eq!(c.buffered(), 0);
    let Some(Output::RecheckProposal(proposal)) = out
        .into_iter()
        .find(|o| matches!(o, Output::RecheckProposal(_)))
    else {
        panic!("the buffered proposal comes back for a verdict");
    };
    // With the verdict, the buffered precommits decide at once.
    let out = c
        .handle(Input::Proposal {
            proposal,
            validity: BlockValidity::Valid,
        })
        .expect("accepted");
    assert!(decided(&out));
}

#[test]
fn a_double_vote_yields_checkable_evidence_once() {
    let f = fx();
    let (mut c, _) = f.node(Some(0), 1);
    let a = f.block(1, 1).hash();
    let b = f.block(1, 2).hash();
    assert_eq!(
        c.handle(f.vote(2, 1, 0, VoteKind::Prevote, Some(a))),
        Ok(Vec::new())
    );
    let out = c
        .handle(f.vote(2, 1, 0, VoteKind::Prevote, Some(b)))
        .expect("accepted as evidence");
    let evidence: Vec<_> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Equivocation(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    let e = &evidence[0];
    assert!(e.is_conflicting());
    assert_eq!(e.first.signer, f.keys[2].public());
    e.first.check(&f.chain).expect("first signature");
    e.second.check(&f.chain).expect("second signature");
    // A third conflicting vote from the same validator adds nothing.
    let out = c
        .handle(f.vote(2, 1, 0, VoteKind::Prevote, None))
        .expect("no error");
    assert!(!out.iter().any(|o| matches!(o, Output::Equivocation(_))));
}

#[test]
fn a_restarted_validator_resends_its_logged_vote_instead_of_a_new_one() {
    let f = fx();
    let p = f.proposer(1, 0);
    let me = (p + 1) % 4;
    // First life: prevote the proposal, log the vote.
    let (mut c, _) = f.node(Some(me), 1);
    let out = c
        .handle(f.proposal(p, 1, 0, f.block(1, 1)))
        .expect("accepted");
    let wal: Vec<OwnMessage> = out
        .iter()
        .filter_map(|o| match o {
            Output::PersistAndBroadcastVote(v) => Some(OwnMessage::Vote(v.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(wal.len(), 1);
    let OwnMessage::Vote(logged) = &wal[0] else {
        unreachable!()
    };
    // Second life: the proposal never arrives again, so on the propose timeout the driver
    // wants to prevote nil. The logged prevote goes out instead; nothing new is signed.
    let mut c = Consensus::new(f.config(), Some(f.keys[me].clone()), wal.clone()).expect("WAL");
    let out = c.handle(f.start(1)).expect("restarts");
    assert!(out.contains(&Output::BroadcastVote(logged.clone())));
    let timeout = out
        .iter()
        .find_map(|o| match o {
            Output::ScheduleTimeout { id, .. } if id.kind == TimeoutKind::Propose => Some(*id),
            _ => None,
        })
        .expect("propose timeout");
    let out = c.handle(Input::TimeoutElapsed(timeout)).expect("timeout");
    assert!(out.contains(&Output::BroadcastVote(logged.clone())));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::PersistAndBroadcastVote(v)
        if v.body.kind == VoteKind::Prevote && v.body.round == Round(0)))
    );
    assert_eq!(c.refused_conflicting_votes(), 1);
}

fn timeout_of(out: &[Output], kind: TimeoutKind) -> attest_consensus::TimeoutId {
    out.iter()
        .find_map(|o| match o {
            Output::ScheduleTimeout { id, .. } if id.kind == kind => Some(*id),
            _ => None,
        })
        .expect("a timeout of that kind")
}

#[test]
fn a_restarted_validator_keeps_its_lock() {
    let f = fx();
    let (p0, p1) = (f.proposer(1, 0), f.proposer(1, 1));
    let me = (0..4)
        .find(|i| *i != p0 && *i != p1)
        .expect("a third validator");
    let others: Vec<usize> = (0..4).filter(|i| *i != me).collect();
    let b = f.block(1, 1);
    let hash_b = b.hash();
    // First life: prevote B, see a polka for B, precommit B (and so lock on it).
    let (mut c, _) = f.node(Some(me), 1);
    let mut wal = Vec::new();
    let log = |out: Vec<Output>, wal: &mut Vec<OwnMessage>| {
        for o in out {
            if let Output::PersistAndBroadcastVote(v) = o {
                wal.push(OwnMessage::Vote(v));
            }
        }
    };
    log(
        c.handle(f.proposal(p0, 1, 0, b)).expect("proposal"),
        &mut wal,
    );
    for i in &others[..2] {
        let out = c.handle(f.vote(*i, 1, 0, VoteKind::Prevote, Some(hash_b)));
        log(out.expect("prevote"), &mut wal);
    }
    assert!(wal.iter().any(|m| matches!(m, OwnMessage::Vote(v)
        if v.body.kind == VoteKind::Precommit && v.body.block == Some(hash_b))));
    // Second life: round 0 ends without a decision, and round 1's proposer proposes C with
    // no proof of lock. The driver forgot the lock and would prevote C; we prevote nil.
    let mut c = Consensus::new(f.config(), Some(f.keys[me].clone()), wal).expect("WAL");
    c.handle(f.start(1)).expect("restart");
    let mut out = Vec::new();
    for i in &others[..2] {
        out = c
            .handle(f.vote(*i, 1, 0, VoteKind::Precommit, None))
            .expect("precommit nil");
    }
    let out = c
        .handle(Input::TimeoutElapsed(timeout_of(
            &out,
            TimeoutKind::Precommit,
        )))
        .expect("to round 1");
    assert_eq!(c.round(), Some(Round(1)), "{out:?}");
    let out = c
        .handle(f.proposal(p1, 1, 1, f.block(1, 2)))
        .expect("proposal C");
    let prevote = out
        .iter()
        .find_map(|o| match o {
            Output::PersistAndBroadcastVote(v) if v.body.kind == VoteKind::Prevote => Some(v),
            _ => None,
        })
        .expect("a prevote in round 1");
    assert_eq!(prevote.body.round, Round(1));
    assert_eq!(prevote.body.block, None);
    assert_eq!(c.lock_overrides(), 1);
}

#[test]
fn a_bad_wal_is_refused() {
    let f = fx();
    let mine = f.signed_vote(0, 1, 0, VoteKind::Prevote, None);
    let cfg = || f.config();
    let key = || Some(f.keys[0].clone());
    let theirs = f.signed_vote(1, 1, 0, VoteKind::Prevote, None);
    let err = Consensus::new(cfg(), key(), [OwnMessage::Vote(theirs)]).expect_err("not ours");
    assert_eq!(err, RestoreError::NotOurs(Box::new(f.keys[1].public())));
    let mut forged = mine.clone();
    forged.signature.0[0] ^= 1;
    let err = Consensus::new(cfg(), key(), [OwnMessage::Vote(forged)]).expect_err("forged");
    assert!(matches!(err, RestoreError::BadSignature(_)));
    let other = f.signed_vote(0, 1, 0, VoteKind::Prevote, Some(f.block(1, 1).hash()));
    let both = [OwnMessage::Vote(mine.clone()), OwnMessage::Vote(other)];
    let err = Consensus::new(cfg(), key(), both).expect_err("conflict");
    assert_eq!(
        err,
        RestoreError::Conflicting {
            height: Height(1),
            round: Round(0)
        }
    );
    let err = Consensus::new(cfg(), None, [OwnMessage::Vote(mine)]).expect_err("no key");
    assert_eq!(err, RestoreError::NoKey);
}

#[test]
fn unexpected_values_are_rejected() {
    let f = fx();
    let (mut c, _) = f.node(Some(0), 1);
    let err = c.handle(Input::ProposeValue {
        height: Height(1),
        round: Round(3),
        block: f.block(1, 1),
    });
    assert_eq!(
        err,
        Err(InputError::UnexpectedValue {
            height: Height(1),
            round: Round(3)
        })
    );
    let mut fresh = Consensus::new(f.config(), None, []).expect("no WAL");
    assert_eq!(
        fresh.handle(f.vote(0, 1, 0, VoteKind::Prevote, None)),
        Err(InputError::NotStarted)
    );
}

fn cert(f: &Fx, signers: &[usize], block: BlockHash) -> CommitCertificate {
    let mut sigs: Vec<CommitSig> = signers
        .iter()
        .map(|i| {
            let v = f.signed_vote(*i, 5, 2, VoteKind::Precommit, Some(block));
            CommitSig {
                validator: v.signer,
                signature: v.signature,
            }
        })
        .collect();
    sigs.sort_by_key(|s| s.validator);
    CommitCertificate {
        height: Height(5),
        round: Round(2),
        block,
        signatures: BoundedVec::new(sigs).expect("few"),
    }
}

#[test]
fn the_certificate_verifier_rejects_what_it_must() {
    let f = fx();
    let b = f.block(5, 1).hash();
    verify_certificate(&f.chain, &f.set, &cert(&f, &[0, 1, 2], b)).expect("3 of 4");
    assert_eq!(
        verify_certificate(&f.chain, &f.set, &cert(&f, &[0, 1], b)),
        Err(CertError::InsufficientPower {
            have: 20,
            total: 40
        })
    );
    let mut dup = cert(&f, &[0, 1, 2], b);
    let mut sigs = dup.signatures.clone().into_vec();
    sigs.insert(1, sigs[0].clone());
    dup.signatures = BoundedVec::new(sigs).expect("few");
    assert!(matches!(
        verify_certificate(&f.chain, &f.set, &dup),
        Err(CertError::DuplicateOrUnsorted(_))
    ));
    let mut bad = cert(&f, &[0, 1, 2], b);
    let mut sigs = bad.signatures.clone().into_vec();
    sigs[2].signature.0[5] ^= 1;
    let victim = sigs[2].validator;
    bad.signatures = BoundedVec::new(sigs).expect("few");
    assert_eq!(
        verify_certificate(&f.chain, &f.set, &bad),
        Err(CertError::BadSignature(Box::new(victim)))
    );
    let other = fx_with(&[10, 10, 10, 10, 10]);
    let stranger_cert = cert(&other, &[0, 1, 4], b);
    assert_eq!(
        verify_certificate(&f.chain, &f.set, &stranger_cert),
        Err(CertError::NotAValidator(Box::new(other.keys[4].public())))
    );
    // Stake-weighted: one validator with more than 2/3 of the stake suffices alone.
    let w = fx_with(&[1, 1, 7]);
    verify_certificate(&w.chain, &w.set, &cert(&w, &[2], b)).expect("7 of 9");
    // Building from precommits sorts, dedups and checks the quorum.
    let votes: Vec<_> = [2usize, 0, 1, 0]
        .iter()
        .map(|i| f.signed_vote(*i, 5, 2, VoteKind::Precommit, Some(b)))
        .collect();
    let built = build_certificate(&f.set, Height(5), Round(2), b, votes).expect("quorum");
    assert_eq!(built, cert(&f, &[0, 1, 2], b));
    verify_certificate(&f.chain, &f.set, &built).expect("valid");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Nothing a peer sends can panic consensus: random heights, rounds, kinds, blocks, signers
    /// and signature bytes.
    #[test]
    fn random_votes_never_panic(
        h in 0u64..6, r in any::<u32>(), precommit in any::<bool>(), signer in 0usize..5,
        block in proptest::option::of(any::<[u8; 32]>()), sig in any::<[u8; 32]>(),
        sign in any::<bool>(),
    ) {
        let f = fx();
        let (mut c, _) = f.node(Some(0), 2);
        let key = if signer < 4 { f.keys[signer].clone() } else { SecretKey::from_seed([77; 32]) };
        let body = Vote {
            height: Height(h),
            round: Round(r),
            kind: if precommit { VoteKind::Precommit } else { VoteKind::Prevote },
            block: block.map(BlockHash),
        };
        let mut v = Signed::sign(&f.chain, &key, body);
        if !sign {
            v.signature.0[..32].copy_from_slice(&sig);
        }
        let _ = c.handle(Input::Vote(v.clone()));
        let _ = c.handle(Input::Vote(v));
    }
}
