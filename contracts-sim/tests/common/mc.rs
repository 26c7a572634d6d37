//! The seeded Monte Carlo driver `monte_carlo.rs` and `detection.rs` share: a seedable
//! generator, a minimal chain driver that signs each distinct transaction once, traces with
//! their results prepared, an honest checker's verdict, dispute play and one detection trial
//! through the real `State` (real
//! draws from block hashes, real verdicts, real bisection disputes with Merkle proofs and
//! one re-executed step).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use attest_contracts_sim::apply::disputes::round_index;
use attest_contracts_sim::{Ctx, Event, JobPhase, Params, State};
use attest_protocol::encoding::encode;
use attest_protocol::tx::{Action, CommitResult, DisputeMove, Verdict, VerdictOutcome};
use attest_protocol::{BlockHash, Height, JobId, Round, Signed, Tx, Verified, tx_hash};

use super::{CHECKER, CLIENT, JobSpec, PROPOSER, PROVIDER, Trace, chain, genesis, id, key};

/// splitmix64: a tiny, well-mixed, seedable generator (no `rand` crate in the tree).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn block_hash(&mut self) -> BlockHash {
        let mut b = [0u8; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        BlockHash(b)
    }
}

/// Short windows so that a job's life takes a few blocks: p = 0.1, W = 1 block, one block
/// per dispute round (blocks are `BLOCK_MS` apart).
pub fn mc_params() -> Params {
    Params {
        check_probability_ppm: 100_000,
        verdict_window_ms: super::BLOCK_MS,
        dispute_round_ms: super::BLOCK_MS,
        max_deadline_ms: 10 * super::BLOCK_MS as u32,
        unbonding_ms: 40 * super::BLOCK_MS,
        ..Params::default()
    }
}

/// The most signed transactions [`Signer`] keeps (each is well under a kilobyte).
const MEMO_CAP: usize = 100_000;

/// Signs and verifies transactions, keeping each one it made.
///
/// Ed25519 signing is deterministic (RFC 8032 derives the nonce from the key and the
/// message), so the same key and body always give the same signed bytes, and checking them
/// always gives the same answer. Independent trials from one genesis send the same
/// transactions again and again (job n's opening, its commit and an agreeing verdict do not
/// depend on the block hashes), so each distinct (signer, body) is signed and verified once
/// per driver and the copy is reused. Every transaction still reaches `State::apply` as a
/// `Verified<Tx>` that `Signed::verify` built, with exactly the bytes signing it afresh would
/// give: trials are unchanged, only faster (signing and verifying dominate a job otherwise).
#[derive(Default)]
pub struct Signer {
    memo: BTreeMap<(u8, Vec<u8>), Verified<Tx>>,
    /// Transactions actually signed and verified.
    pub signed: u64,
    /// Transactions served from the memo.
    pub reused: u64,
    /// Wall time spent signing and verifying (for printed figures only).
    pub signing: Duration,
}

impl Signer {
    pub fn sign(&mut self, who: u8, tx: Tx) -> Verified<Tx> {
        let memo_key = (who, encode(&tx));
        if let Some(v) = self.memo.get(&memo_key) {
            self.reused += 1;
            return v.clone();
        }
        let start = Instant::now();
        let v = Signed::sign(&chain(), &key(who), tx)
            .verify(&chain())
            .expect("own signature");
        self.signing += start.elapsed();
        self.signed += 1;
        if self.memo.len() < MEMO_CAP {
            self.memo.insert(memo_key, v.clone());
        }
        v
    }
}

/// A minimal driver: unlike the test harness it does not check invariants after every
/// transaction (that is quadratic over thousands of jobs); trials check them when they end.
/// It restarts from a copy of its genesis state, keeping the transactions it signed.
pub struct Chain {
    pub state: State,
    pub height: u64,
    pub block_hash: BlockHash,
    pub signer: Signer,
    genesis: State,
}

impl Chain {
    /// The common genesis (provider and checker staked) with `params`, at height 1.
    pub fn new(params: Params) -> Self {
        let state = State::from_genesis(&genesis(params)).expect("valid genesis");
        Self {
            genesis: state.clone(),
            state,
            height: 1,
            block_hash: BlockHash([0; 32]),
            signer: Signer::default(),
        }
    }

    /// Back to genesis at height 1 with the zero block hash.
    pub fn restart(&mut self) {
        self.state = self.genesis.clone();
        self.height = 1;
        self.block_hash = BlockHash([0; 32]);
    }

    pub fn ctx(&self) -> Ctx {
        Ctx {
            height: Height(self.height),
            time_ms: self.height * super::BLOCK_MS,
            block_hash: self.block_hash,
            proposer: id(PROPOSER),
        }
    }

    /// Opens a job and returns its id (the hash of the transaction that opened it).
    pub fn send_open(&mut self, spec: &JobSpec) -> JobId {
        let tx = self.sign(CLIENT, Action::OpenJob(spec.open_job()));
        self.state.apply(&self.ctx(), &tx).expect("the job opens");
        JobId::from(tx_hash(tx.signed()))
    }

    pub fn send(&mut self, who: u8, action: Action) -> Vec<Event> {
        let tx = self.sign(who, action);
        self.state.apply(&self.ctx(), &tx).expect("a valid move")
    }

    pub fn sign(&mut self, who: u8, action: Action) -> Verified<Tx> {
        let tx = Tx {
            nonce: self.state.account(&id(who)).nonce,
            fee: self.state.params().min_fee,
            action,
        };
        self.signer.sign(who, tx)
    }

    pub fn end_block(&mut self, rng: &mut SplitMix) -> Vec<Event> {
        let events = self.state.end_block(&self.ctx());
        self.height += 1;
        self.block_hash = rng.block_hash();
        events
    }
}

/// A trace with the result it commits and the disagreement it states, built once: either
/// proves the trace's last leaf, and `Trace::commit` and `Trace::disagree` rebuild the whole
/// Merkle tree for that, which would otherwise be most of a simulated job's cost.
pub struct Prepared {
    pub trace: Trace,
    /// The result for job id zero; only the job id depends on the job.
    result: CommitResult,
    disagree: VerdictOutcome,
}

impl Prepared {
    pub fn new(trace: Trace) -> Self {
        Self {
            result: trace.commit(JobId([0; 32])),
            disagree: trace.disagree(),
            trace,
        }
    }

    /// Exactly `Action::CommitResult(self.trace.commit(job))`.
    pub fn commit(&self, job: JobId) -> Action {
        Action::CommitResult(CommitResult {
            job,
            ..self.result.clone()
        })
    }

    /// The verdict of an honest checker whose own execution of `job` is this trace: it
    /// compares the last leaf the chain recorded, which binds the output, with its own. The
    /// rules let it disagree only then (a checker that reached the same last state must
    /// agree).
    pub fn verdict(&self, state: &State, job: &JobId) -> VerdictOutcome {
        match &state.job(job).expect("the job").phase {
            JobPhase::Committed { result, .. } => {
                if result.final_leaf == self.trace.final_leaf()
                    && result.output_hash == self.trace.exec.output_hash
                {
                    VerdictOutcome::Agree
                } else {
                    self.disagree.clone()
                }
            }
            other => panic!("a verdict on a job in phase {}", other.name()),
        }
    }
}

/// The job of a detection trial with the honest execution and the cheat's (hidden lane 0
/// flipped at step 7 and propagated, so its last leaf and output differ).
pub struct Cheat {
    pub spec: JobSpec,
    pub honest: Prepared,
    pub cheat: Prepared,
}

impl Cheat {
    pub fn new(spec: JobSpec) -> Self {
        Self {
            honest: Prepared::new(Trace::new(&spec, None)),
            cheat: Prepared::new(Trace::new(&spec, Some(7))),
            spec,
        }
    }
}

/// Plays the dispute over `job` with both parties answering from their traces: both open
/// in every bisection round, then the challenger (`challenger`, the checker or a watcher)
/// supplies its witness if one is needed.
pub fn play(
    c: &mut Chain,
    rng: &mut SplitMix,
    job: JobId,
    provider: &Trace,
    challenger: u8,
    checker: &Trace,
) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(JobPhase::Disputed { dispute: d, .. }) =
        c.state.job(&job).map(|j| j.phase.clone())
    {
        let mv = |step| {
            Action::Dispute(DisputeMove {
                job,
                round: Round(d.round),
                step,
            })
        };
        if d.round < d.rounds {
            let index = round_index(&d, provider.steps()).unwrap();
            events.extend(c.send(PROVIDER, mv(provider.opening(index))));
            events.extend(c.send(challenger, mv(checker.opening(index))));
        } else {
            events.extend(c.send(challenger, mv(checker.witness(d.lo.unwrap()))));
        }
        events.extend(c.end_block(rng));
    }
    events
}

/// One trial from genesis (seeded by `seed`): the provider cheats on each job with
/// probability `cheat_permille / 1000` by committing the cheat's result instead of the honest
/// one; jobs run until its first slash. Returns how many jobs that took. Asserts that only a
/// checked cheat is ever slashed, and never the checker.
pub fn jobs_until_slash(c: &mut Chain, w: &Cheat, seed: u64, cheat_permille: u64) -> u64 {
    jobs_until_slash_watched(c, w, seed, cheat_permille, 0)
}

/// [`jobs_until_slash`] with a watcher: each result the draw did not select is re-executed
/// with probability `watch_permille / 1000` (independently of the draw, as a node's watch
/// key is), and challenged if it is wrong. The watcher is the job's client, an account that
/// may challenge without stake: a staked watcher would also enter the checker draw and
/// change its odds, and the challenge, its bond and the dispute are the same for any
/// challenger. A cheat is caught with probability `p + w - p w`.
pub fn jobs_until_slash_watched(
    c: &mut Chain,
    w: &Cheat,
    seed: u64,
    cheat_permille: u64,
    watch_permille: u64,
) -> u64 {
    let mut rng = SplitMix(seed);
    c.restart();
    for n in 1..=100_000u64 {
        let tx_job = c.send_open(&w.spec);
        c.end_block(&mut rng);
        let cheating = rng.next() % 1000 < cheat_permille;
        let watching = rng.next() % 1000 < watch_permille;
        let provider = if cheating { &w.cheat } else { &w.honest };
        let events = c.send(PROVIDER, provider.commit(tx_job));
        let checked = events
            .iter()
            .any(|e| matches!(e, Event::CheckAssigned { .. }));
        c.end_block(&mut rng);
        let mut events = Vec::new();
        let outcome = w.honest.verdict(&c.state, &tx_job);
        let challenger = if checked {
            Some(CHECKER)
        } else if watching && outcome != VerdictOutcome::Agree {
            Some(CLIENT)
        } else {
            None
        };
        if let Some(who) = challenger {
            events.extend(c.send(
                who,
                Action::Verdict(Verdict {
                    job: tx_job,
                    outcome,
                }),
            ));
            events.extend(play(
                c,
                &mut rng,
                tx_job,
                &provider.trace,
                who,
                &w.honest.trace,
            ));
        }
        // Unchecked results settle one block after the commit (W = 1).
        events.extend(c.end_block(&mut rng));
        assert!(c.state.job(&tx_job).unwrap().phase.is_final());
        let slashed = events.iter().find_map(|e| match e {
            Event::Slashed { who, .. } => Some(*who),
            _ => None,
        });
        if let Some(who) = slashed {
            // Only a cheat that was checked is ever slashed: no false accusation, and an
            // honest provider is never slashed.
            assert_eq!(who, id(PROVIDER), "seed {seed}: a checker was slashed");
            assert!(
                cheating && challenger.is_some(),
                "seed {seed}: an honest job was slashed"
            );
            c.state.check_invariants().unwrap();
            return n;
        }
    }
    panic!("seed {seed}: no slash in 100,000 jobs");
}
