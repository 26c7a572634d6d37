//! Rule "equivocation": conflicting votes slash and jail their signer, once.

mod common;

use attest_contracts_sim::{Event, StakeStatus, TxError};
use attest_protocol::tx::{Action, EquivocationEvidence};
use attest_protocol::{BlockHash, Height, Round, Signed, Vote, VoteKind};
use common::*;

fn vote(height: u64, block: u8) -> Vote {
    Vote {
        height: Height(height),
        round: Round(0),
        kind: VoteKind::Precommit,
        block: Some(BlockHash([block; 32])),
    }
}

/// Conflicting votes of `signer` at height 1 (the harness's first block).
fn evidence(signer: u8, a: u8, b: u8) -> Action {
    evidence_at(signer, 1, a, b)
}

fn evidence_at(signer: u8, height: u64, a: u8, b: u8) -> Action {
    Action::Equivocation(Box::new(EquivocationEvidence {
        first: Signed::sign(&chain(), &key(signer), vote(height, a)),
        second: Signed::sign(&chain(), &key(signer), vote(height, b)),
    }))
}

#[test]
fn equivocation_slashes_and_jails_once() {
    let mut h = Harness::new(genesis(params(0)));
    let events = h.send(OTHER, evidence(CHECKER, 1, 2)).unwrap();
    let slash = tokens(100);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Slashed { amount, to_winner: Some((w, _)), .. } if *amount == slash && *w == id(OTHER)
    )));
    assert!(events.iter().any(|e| matches!(e, Event::Jailed { .. })));
    assert_eq!(
        h.state.stake(&id(CHECKER)).unwrap().status,
        StakeStatus::Jailed
    );
    // The same equivocation again, even with the votes swapped, is refused.
    let err = h.send(OTHER, evidence(CHECKER, 2, 1)).unwrap_err();
    assert!(matches!(err, TxError::DuplicateEvidence { .. }));
    // A jailed checker is never drawn: with the only checker jailed, no result could be
    // checked, so a job is refused at open.
    let spec = JobSpec::tiny();
    let mut h2 = Harness::new(genesis(params(1_000_000)));
    h2.send(OTHER, evidence(CHECKER, 1, 2)).unwrap();
    let err = h2
        .send(CLIENT, Action::OpenJob(spec.open_job()))
        .unwrap_err();
    assert!(matches!(err, TxError::NoCapableChecker { .. }), "{err:?}");
}

#[test]
fn equivocation_refusals() {
    let mut bad_sig = match evidence(CHECKER, 1, 2) {
        Action::Equivocation(e) => e,
        _ => unreachable!(),
    };
    bad_sig.second.signature.0[0] ^= 1;
    let cases: Vec<(&str, Action, Expect)> = vec![
        ("same block twice", evidence(CHECKER, 1, 1), |e| {
            matches!(e, TxError::NotConflicting)
        }),
        ("bad signature", Action::Equivocation(bad_sig), |e| {
            matches!(e, TxError::BadEvidenceSignature { .. })
        }),
        ("signer without stake", evidence(CLIENT, 1, 2), |e| {
            matches!(e, TxError::NotValidator { .. })
        }),
        // Votes for a height not reached yet: they would sit in the live state until then.
        (
            "a height above the block's",
            evidence_at(CHECKER, 1_000_000_000_000, 1, 2),
            |e| matches!(e, TxError::EvidenceFromTheFuture { .. }),
        ),
    ];
    for (name, action, expected) in cases {
        let mut h = Harness::new(genesis(params(0)));
        let err = h.send(OTHER, action).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }
}
