//! [`Consensus`]: one node's Tendermint instance, wrapping Malachite's driver.
//!
//! This module owns everything the driver does not do: verifying every signature before a
//! message reaches the driver, membership and proposer checks, height and round bounds,
//! buffering the next heights, height-tagged timeouts, signing our own votes and proposals (and
//! feeding them back to our own driver), never contradicting a vote restored from the
//! write-ahead log, rebuilding commit certificates and reporting equivocation. It never does
//! I/O, reads a clock, draws randomness or iterates a hash map: the same inputs give the same
//! outputs on every machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use arc_malachitebft_core_driver::{Driver, Input as DriverInput, Output as DriverOutput};
use arc_malachitebft_core_types::{
    self as mal, Round as MalRound, SignedMessage, Threshold, ThresholdParams, Validity, VoteType,
};
use attest_protocol::tx::EquivocationEvidence;
use attest_protocol::{
    Block, BlockHash, ChainId, Height, Proposal, PublicKey, Round, SecretKey, Signed, Vote,
    VoteKind,
};

use super::buffer::{Buffered, FutureBuffer};
use super::context::{
    Address, AttestContext, AttestProposal, AttestVote, BlockValue, ConsensusHeight,
    DriverValidators, from_mal_round, to_mal_round,
};
use super::io::{
    BlockValidity, ConsensusConfig, Input, InputError, Output, OwnMessage, RestoreError,
};
use super::own::OwnLog;
use super::polka::{self, PolkaCert};
use super::timeouts::{TimeoutConfig, TimeoutId, TimeoutKind};
use attest_chain::{ValidatorSet, build_certificate};

/// Rounds accepted above our current round. Tendermint needs messages from higher rounds to
/// catch up (f+1 of them skip us ahead), but each round named makes the vote keeper allocate,
/// so a Byzantine validator could otherwise make us allocate for round 4 billion. 32 rounds
/// ahead is more than honest validators drift apart (they skip forward together).
pub const MAX_ROUND_AHEAD: u32 = 32;

/// Distinct proposals fed to the driver per round: the proposer's, plus one more to expose
/// proposer equivocation. Further ones would only cost memory (a block can be megabytes).
pub const MAX_PROPOSALS_PER_ROUND: usize = 2;

type MalVote = mal::SignedVote<AttestContext>;

/// What to do with a proposal that passed its checks.
enum Admission {
    /// For a later height: keep it until then.
    Buffer,
    /// Already fed to the driver.
    Duplicate,
    /// Feed it to the driver; it is identified by (block, proof-of-lock round).
    Feed((BlockHash, Option<Round>)),
}

type Queue = VecDeque<DriverInput<AttestContext>>;

/// One node's consensus: feed it [`Input`]s, carry out the [`Output`]s in order.
#[derive(Debug)]
pub struct Consensus {
    chain_id: ChainId,
    timeouts: TimeoutConfig,
    key: Option<SecretKey>,
    address: Address,
    /// `None` until the first `StartHeight`: the driver needs a height and a validator set.
    driver: Option<Driver<AttestContext>>,
    /// Every vote and proposal we signed or restored, for the current and later heights.
    own: OwnLog,
    buffer: FutureBuffer,
    /// Proposals fed to the driver at this height, per round: (block, proof-of-lock round).
    proposals_seen: BTreeMap<Round, Vec<(BlockHash, Option<Round>)>>,
    /// Validators whose equivocation at this height has been reported.
    reported: BTreeSet<PublicKey>,
    /// The round whose `GetValue` awaits an answer.
    awaiting_value: Option<Round>,
    decided: bool,
    refused_conflicting: u64,
    lock_overrides: u64,
    internal_errors: u64,
}

impl Consensus {
    /// A consensus instance. `key` is the validator's account key, or `None` for a node that
    /// only follows. `wal` holds our own messages from the write-ahead log (empty on first
    /// start): we will re-send them, and never sign a different vote or proposal in their slot.
    pub fn new(
        config: ConsensusConfig,
        key: Option<SecretKey>,
        wal: impl IntoIterator<Item = OwnMessage>,
    ) -> Result<Self, RestoreError> {
        // A follower still needs an address for the driver. The key of the all-zero seed is
        // never a real validator's; were it one, this node would still sign nothing.
        let address = Address(
            key.as_ref()
                .map_or_else(|| SecretKey::from_seed([0; 32]).public(), SecretKey::public),
        );
        let own = OwnLog::restore(&config.chain_id, key.as_ref().map(SecretKey::public), wal)?;
        Ok(Self {
            chain_id: config.chain_id,
            timeouts: config.timeouts,
            key,
            address,
            driver: None,
            own,
            buffer: FutureBuffer::default(),
            proposals_seen: BTreeMap::new(),
            reported: BTreeSet::new(),
            awaiting_value: None,
            decided: false,
            refused_conflicting: 0,
            lock_overrides: 0,
            internal_errors: 0,
        })
    }

    /// The height being decided, once started.
    pub fn height(&self) -> Option<Height> {
        self.driver.as_ref().map(|d| d.height().0)
    }

    /// The current round, once started.
    pub fn round(&self) -> Option<Round> {
        self.driver.as_ref().and_then(|d| from_mal_round(d.round()))
    }

    /// The current height's validators, once started.
    pub fn validators(&self) -> Option<&ValidatorSet> {
        self.driver.as_ref().map(|d| d.validator_set().set())
    }

    /// Our own messages at the current height, for a host that re-broadcasts on a timer (gossip
    /// can lose messages, and Tendermint is only live if they eventually arrive).
    pub fn own_messages(&self) -> Vec<OwnMessage> {
        self.height()
            .map_or_else(Vec::new, |h| self.own.messages_at(h))
    }

    /// How often the driver asked us for a vote that contradicts one we already signed (after
    /// a restart), and we sent the signed one instead.
    pub fn refused_conflicting_votes(&self) -> u64 {
        self.refused_conflicting
    }

    /// How often the driver asked for a prevote our restored lock forbids (after a restart),
    /// and we prevoted nil instead.
    pub fn lock_overrides(&self) -> u64 {
        self.lock_overrides
    }

    /// How often the driver refused an input that this wrapper passed it, a peer's or its own
    /// (a bug in the wrapper if non-zero: it checks every input before the driver sees it).
    pub fn internal_errors(&self) -> u64 {
        self.internal_errors
    }

    /// Buffered messages for future heights.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Handles one input; the outputs must be carried out in order. An `Err` means the input
    /// was rejected and had no effect.
    pub fn handle(&mut self, input: Input) -> Result<Vec<Output>, InputError> {
        match input {
            Input::StartHeight { height, validators } => self.start_height(height, validators),
            Input::Proposal { proposal, validity } => self.on_proposal(proposal, validity),
            Input::Vote(vote) => {
                let mut out = Vec::new();
                self.on_vote(vote, false, &mut out)?;
                Ok(out)
            }
            Input::VerifiedVote(vote) => {
                let mut out = Vec::new();
                self.on_vote(vote.into_signed(), true, &mut out)?;
                Ok(out)
            }
            Input::TimeoutElapsed(id) => self.on_timeout(id),
            Input::Polka(cert) => self.on_polka(&cert),
            Input::ProposeValue {
                height,
                round,
                block,
            } => self.on_value(height, round, block),
        }
    }

    fn current(&self) -> Result<(&Driver<AttestContext>, Height), InputError> {
        let d = self.driver.as_ref().ok_or(InputError::NotStarted)?;
        Ok((d, d.height().0))
    }

    fn is_member(&self) -> bool {
        self.key.is_some()
            && self
                .validators()
                .is_some_and(|v| v.get(&self.address.0).is_some())
    }

    fn start_height(
        &mut self,
        height: Height,
        validators: ValidatorSet,
    ) -> Result<Vec<Output>, InputError> {
        let proposer = validators.proposer(height, Round(0)).account();
        match &mut self.driver {
            Some(d) if d.height().0 >= height => {
                return Err(InputError::HeightNotAhead {
                    current: d.height().0,
                    requested: height,
                });
            }
            Some(d) => {
                d.move_to_height(ConsensusHeight(height), DriverValidators::new(&validators))
            }
            None => {
                self.driver = Some(Driver::new(
                    AttestContext,
                    ConsensusHeight(height),
                    DriverValidators::new(&validators),
                    self.address,
                    ThresholdParams::default(),
                ))
            }
        }
        self.proposals_seen.clear();
        self.reported.clear();
        self.awaiting_value = None;
        self.decided = false;
        self.own.prune_below(height);

        let mut out = Vec::new();
        let new_round =
            DriverInput::NewRound(ConsensusHeight(height), MalRound::ZERO, Address(proposer));
        self.run(new_round, &mut out)?;
        self.resend_restored_votes(height, &mut out);
        self.restore_lock(height, &mut out);
        for msg in self.buffer.take(height) {
            match msg {
                // Already verified when buffered; membership and round are checked again,
                // against this height's set. A rejection here is the peer's problem, not ours.
                Buffered::Vote(v) => {
                    let _ = self.admit_vote(v, false, &mut out);
                }
                Buffered::Proposal(p) => out.push(Output::RecheckProposal(*p)),
            }
        }
        Ok(out)
    }

    /// After a restart, our votes of this height from the log go out again (the crash may have
    /// come between the log write and the broadcast) and count in our own driver.
    fn resend_restored_votes(&mut self, height: Height, out: &mut Vec<Output>) {
        if !self.is_member() {
            return;
        }
        let restored: Vec<Signed<Vote>> = self
            .own
            .votes_at(height)
            .filter(|v| v.body.round.0 <= MAX_ROUND_AHEAD)
            .cloned()
            .collect();
        for v in restored {
            out.push(Output::BroadcastVote(v.clone()));
            let _ = self.run(DriverInput::Vote(to_mal_vote(&v)), out);
        }
    }

    /// After a restart, our lock at this height goes back into the driver: the proposal we
    /// precommitted, then its polka (which moves the driver to the lock's round). The driver so
    /// regains its locked and valid block, and can re-propose it with its proof-of-lock round.
    /// The proposal was valid when we precommitted it, at this height on this same state.
    fn restore_lock(&mut self, height: Height, out: &mut Vec<Output>) {
        let Some(lock) = self.own.lock_record(height).cloned() else {
            return;
        };
        if let Ok(Admission::Feed(id)) = self.admit_proposal(&lock.proposal) {
            self.proposals_seen
                .entry(lock.proposal.body.round)
                .or_default()
                .push(id);
            let p = &lock.proposal;
            let m = SignedMessage::new(
                AttestProposal::from_protocol(p.signer, &p.body),
                p.signature,
            );
            let _ = self.run(DriverInput::Proposal(m, Validity::Valid), out);
        }
        if let Ok(more) = self.on_polka(&lock.polka) {
            out.extend(more);
        }
    }

    /// A polka certificate for the current height: round bound, then every signature and the
    /// quorum, then the driver (a copy of one it holds changes nothing).
    fn on_polka(&mut self, cert: &PolkaCert) -> Result<Vec<Output>, InputError> {
        let (driver, current) = self.current()?;
        if cert.height < current {
            return Err(InputError::StaleHeight {
                height: cert.height,
                current,
            });
        }
        // Not buffered: a polka travels with the re-proposal it backs, and is re-sent with it.
        if cert.height > current {
            return Err(InputError::FarFutureHeight {
                height: cert.height,
                current,
            });
        }
        self.check_round(cert.round)?;
        cert.verify(&self.chain_id, driver.validator_set().set())?;
        let mut out = Vec::new();
        if polka::has_polka_certificate(driver, cert.round, cert.block) {
            return Ok(out);
        }
        self.run(DriverInput::PolkaCertificate(cert.to_mal()), &mut out)?;
        Ok(out)
    }

    /// Polka certificates backing our proposals at the current height that name a
    /// proof-of-lock round, for a host that re-broadcasts on a timer with
    /// [`Consensus::own_messages`].
    pub fn own_polkas(&self) -> Vec<PolkaCert> {
        let (Some(driver), Some(height)) = (self.driver.as_ref(), self.height()) else {
            return Vec::new();
        };
        self.own
            .messages_at(height)
            .into_iter()
            .filter_map(|m| match m {
                OwnMessage::Proposal(p) => p.body.pol_round.map(|vr| (vr, p.body.block.hash())),
                _ => None,
            })
            .filter_map(|(vr, block)| polka::polka_from_driver(driver, vr, block))
            .collect()
    }

    fn check_round(&self, round: Round) -> Result<(), InputError> {
        let current = self.round().unwrap_or(Round(0));
        let max = Round(current.0.saturating_add(MAX_ROUND_AHEAD));
        if round > max {
            return Err(InputError::RoundTooFar { round, max });
        }
        Ok(())
    }

    /// A vote from the network; `verified` only when it came as [`Input::VerifiedVote`].
    fn on_vote(
        &mut self,
        vote: Signed<Vote>,
        verified: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), InputError> {
        let (_, current) = self.current()?;
        let height = vote.body.height;
        if height < current {
            return Err(InputError::StaleHeight { height, current });
        }
        if height > current {
            self.check_future(height, vote.body.round, vote.signer)?;
            if !verified {
                vote.check(&self.chain_id)?;
            }
            return self.buffer(height, vote.signer, Buffered::Vote(vote));
        }
        self.admit_vote(vote, !verified, out)
    }

    /// A vote for the current height: bounds, membership, duplicates, signature, then the
    /// driver. `verify` is false only for votes already verified: buffered ones (when they
    /// were buffered) and those the host verified.
    fn admit_vote(
        &mut self,
        vote: Signed<Vote>,
        verify: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), InputError> {
        self.check_round(vote.body.round)?;
        let (driver, _) = self.current()?;
        if driver.validator_set().set().get(&vote.signer).is_none() {
            return Err(InputError::NotAValidator(Box::new(vote.signer)));
        }
        // Verify before anything else, copies included: the host forwards what is accepted, so a
        // forged copy of a vote we hold must be refused, not waved through as a duplicate.
        if verify {
            vote.check(&self.chain_id)?;
        }
        let (driver, _) = self.current()?;
        let m = to_mal_vote(&vote);
        // A copy of a vote we hold changes nothing; nor do more conflicting votes from an
        // equivocator already reported at this height.
        let known_equivocator =
            self.reported.contains(&vote.signer) && driver.votes().conflicting_vote(&m).is_some();
        if driver.votes().has_vote(&m) || known_equivocator {
            return Ok(());
        }
        self.run(DriverInput::Vote(m), out)
    }

    /// Checks a message for a height in the buffering window: round, membership (in the
    /// current set: the next height's is not known yet, and sets change rarely; this keeps
    /// strangers from filling the buffer, and a new validator's first messages are re-sent).
    fn check_future(
        &self,
        height: Height,
        round: Round,
        signer: PublicKey,
    ) -> Result<(), InputError> {
        let (driver, current) = self.current()?;
        if !FutureBuffer::in_window(current, height) {
            return Err(InputError::FarFutureHeight { height, current });
        }
        if round.0 > MAX_ROUND_AHEAD {
            return Err(InputError::RoundTooFar {
                round,
                max: Round(MAX_ROUND_AHEAD),
            });
        }
        if driver.validator_set().set().get(&signer).is_none() {
            return Err(InputError::NotAValidator(Box::new(signer)));
        }
        Ok(())
    }

    /// Buffers a verified message for a later height, within the signer's quota.
    fn buffer(
        &mut self,
        height: Height,
        signer: PublicKey,
        msg: Buffered,
    ) -> Result<(), InputError> {
        if !self.buffer.push(height, signer, msg) {
            return Err(InputError::BufferFull {
                height,
                signer: Box::new(signer),
            });
        }
        Ok(())
    }

    /// Checks that need no state: the proof-of-lock round and the block against the proposal.
    fn check_proposal_shape(&self, p: &Proposal) -> Result<(), InputError> {
        if let Some(pol_round) = p.pol_round
            && pol_round >= p.round
        {
            return Err(InputError::InvalidPolRound {
                round: p.round,
                pol_round,
            });
        }
        self.check_block(&p.block, p.height)
    }

    fn check_block(&self, block: &Block, height: Height) -> Result<(), InputError> {
        if block.header.height != height {
            return Err(InputError::BlockMismatch { what: "a height" });
        }
        if block.header.chain_id != self.chain_id {
            return Err(InputError::BlockMismatch { what: "a chain" });
        }
        // Our values compare by hash; a body that differs from its header would break that.
        block.check_body()?;
        Ok(())
    }

    /// Every check on a proposal short of judging its block, with no effect on state: a host
    /// may call this before its (costlier) block validation, so that junk from peers costs it
    /// nothing. [`Consensus::handle`] runs the same checks again.
    pub fn precheck_proposal(&self, proposal: &Signed<Proposal>) -> Result<(), InputError> {
        self.admit_proposal(proposal).map(|_| ())
    }

    /// Classifies a proposal after all cheap checks and its signature.
    fn admit_proposal(&self, proposal: &Signed<Proposal>) -> Result<Admission, InputError> {
        let (driver, current) = self.current()?;
        let (height, round) = (proposal.body.height, proposal.body.round);
        if height < current {
            return Err(InputError::StaleHeight { height, current });
        }
        self.check_proposal_shape(&proposal.body)?;
        if height > current {
            self.check_future(height, round, proposal.signer)?;
            proposal.check(&self.chain_id)?;
            return Ok(Admission::Buffer);
        }
        self.check_round(round)?;
        let expected = driver
            .validator_set()
            .set()
            .proposer(height, round)
            .account();
        if proposal.signer != expected {
            return Err(InputError::WrongProposer {
                height,
                round,
                signer: Box::new(proposal.signer),
                expected: Box::new(expected),
            });
        }
        let id = (proposal.body.block.hash(), proposal.body.pol_round);
        let seen = self
            .proposals_seen
            .get(&round)
            .map_or(&[][..], Vec::as_slice);
        // Verified even when seen before: the host forwards what is accepted, so a forged copy
        // of a known proposal must be refused, not waved through as a duplicate.
        proposal.check(&self.chain_id)?;
        if seen.contains(&id) {
            return Ok(Admission::Duplicate);
        }
        if seen.len() >= MAX_PROPOSALS_PER_ROUND {
            return Err(InputError::TooManyProposals { round });
        }
        Ok(Admission::Feed(id))
    }

    fn on_proposal(
        &mut self,
        proposal: Signed<Proposal>,
        validity: BlockValidity,
    ) -> Result<Vec<Output>, InputError> {
        let id = match self.admit_proposal(&proposal)? {
            Admission::Duplicate => return Ok(Vec::new()),
            Admission::Buffer => {
                let (height, signer) = (proposal.body.height, proposal.signer);
                self.buffer(height, signer, Buffered::Proposal(Box::new(proposal)))?;
                return Ok(Vec::new());
            }
            Admission::Feed(id) => id,
        };
        self.proposals_seen
            .entry(proposal.body.round)
            .or_default()
            .push(id);
        let validity = match validity {
            BlockValidity::Valid => Validity::Valid,
            BlockValidity::Invalid => Validity::Invalid,
        };
        let m = SignedMessage::new(
            AttestProposal::from_protocol(proposal.signer, &proposal.body),
            proposal.signature,
        );
        let mut out = Vec::new();
        self.run(DriverInput::Proposal(m, validity), &mut out)?;
        Ok(out)
    }

    fn on_timeout(&mut self, id: TimeoutId) -> Result<Vec<Output>, InputError> {
        let (_, current) = self.current()?;
        // The driver's timeouts carry no height, and one from an earlier round would be
        // ignored by it anyway: drop both kinds of stale timer here.
        if id.height != current || self.round() != Some(id.round) {
            return Ok(Vec::new());
        }
        let kind = match id.kind {
            TimeoutKind::Propose => mal::TimeoutKind::Propose,
            TimeoutKind::Prevote => mal::TimeoutKind::Prevote,
            TimeoutKind::Precommit => mal::TimeoutKind::Precommit,
        };
        let mut out = Vec::new();
        let timeout = mal::Timeout::new(to_mal_round(id.round), kind);
        self.run(DriverInput::TimeoutElapsed(timeout), &mut out)?;
        Ok(out)
    }

    fn on_value(
        &mut self,
        height: Height,
        round: Round,
        block: Block,
    ) -> Result<Vec<Output>, InputError> {
        let (_, current) = self.current()?;
        if height != current || self.awaiting_value != Some(round) {
            return Err(InputError::UnexpectedValue { height, round });
        }
        self.check_block(&block, height)?;
        self.awaiting_value = None;
        let mut out = Vec::new();
        let input = DriverInput::ProposeValue(to_mal_round(round), BlockValue::new(block));
        self.run(input, &mut out)?;
        Ok(out)
    }

    /// Feeds `input` to the driver, then every input its outputs call for (new rounds, our own
    /// votes and proposals), in order. Only the first input's rejection is returned: the rest
    /// are ours, and the outputs they already produced (a signed vote) must not be lost.
    fn run(
        &mut self,
        input: DriverInput<AttestContext>,
        out: &mut Vec<Output>,
    ) -> Result<(), InputError> {
        let mut queue: Queue = VecDeque::from([input]);
        let mut first = true;
        while let Some(next) = queue.pop_front() {
            let Some(driver) = self.driver.as_mut() else {
                return Err(InputError::NotStarted);
            };
            let is_vote = matches!(next, DriverInput::Vote(_));
            match driver.process(next) {
                Ok(outputs) => {
                    for o in outputs {
                        self.lift(o, &mut queue, out);
                    }
                }
                Err(e) if first => {
                    // Still a bug in this wrapper, whoever's input it was: counted as the
                    // driver's refusals of queued inputs are, so that it is seen.
                    self.internal_errors += 1;
                    return Err(InputError::Driver(e.to_string()));
                }
                Err(_) => self.internal_errors += 1,
            }
            if is_vote {
                self.collect_evidence(out);
            }
            first = false;
        }
        Ok(())
    }

    /// Turns one driver output into host outputs and follow-up driver inputs.
    fn lift(&mut self, o: DriverOutput<AttestContext>, queue: &mut Queue, out: &mut Vec<Output>) {
        match o {
            DriverOutput::NewRound(h, r) => {
                // The driver asks who proposes the new round; it is pure arithmetic on the set.
                if let (Some(vs), Some(round)) = (self.validators(), from_mal_round(r)) {
                    let proposer = vs.proposer(h.0, round).account();
                    queue.push_back(DriverInput::NewRound(h, r, Address(proposer)));
                }
            }
            DriverOutput::Propose(p) => self.own_proposal(p, queue, out),
            DriverOutput::Vote(v) => self.own_vote(v, queue, out),
            DriverOutput::ScheduleTimeout(t) => self.schedule(t, out),
            DriverOutput::GetValue(h, r, _) => self.get_value(h.0, r, queue, out),
            DriverOutput::Decide(_, p) => self.decide(p, out),
        }
    }

    fn schedule(&self, t: mal::Timeout, out: &mut Vec<Output>) {
        let (Some(height), Some(round)) = (self.height(), from_mal_round(t.round)) else {
            return;
        };
        let kind = match t.kind {
            mal::TimeoutKind::Propose => TimeoutKind::Propose,
            mal::TimeoutKind::Prevote => TimeoutKind::Prevote,
            mal::TimeoutKind::Precommit => TimeoutKind::Precommit,
            // Engine-level timers; the driver never schedules them.
            mal::TimeoutKind::Rebroadcast | mal::TimeoutKind::FinalizeHeight(_) => return,
        };
        out.push(Output::ScheduleTimeout {
            id: TimeoutId {
                height,
                round,
                kind,
            },
            duration: self.timeouts.duration(kind, round),
        });
    }

    /// Signs the vote the driver asks for, unless we already voted in that slot: then the
    /// earlier vote goes out (and into our driver) instead, so we never contradict ourselves.
    fn own_vote(&mut self, vote: AttestVote, queue: &mut Queue, out: &mut Vec<Output>) {
        if !self.is_member() {
            return;
        }
        let body = self.respect_lock(vote.to_protocol());
        let Some(key) = &self.key else { return };
        let slot = (body.height, body.round, body.kind);
        let signed = match self.own.vote(&slot) {
            Some(prev) => {
                if prev.body != body {
                    self.refused_conflicting += 1;
                }
                out.push(Output::BroadcastVote(prev.clone()));
                prev.clone()
            }
            None => {
                let (kind, block, round) = (body.kind, body.block, body.round);
                let s = Signed::sign(&self.chain_id, key, body);
                if let (VoteKind::Precommit, Some(block), Some(driver)) =
                    (kind, block, self.driver.as_ref())
                    && let Some(lock) = polka::lock_from_driver(driver, round, block)
                {
                    self.own.insert_lock(lock.clone());
                    out.push(Output::PersistLock(Box::new(lock)));
                }
                self.own.insert_vote(s.clone());
                out.push(Output::PersistAndBroadcastVote(s.clone()));
                s
            }
        };
        queue.push_back(DriverInput::Vote(to_mal_vote(&signed)));
    }

    /// Tendermint's locking rule (lines 22-32 of the paper), enforced from our own logged
    /// precommits: once we precommitted block `B` in round `l`, we prevote another block only
    /// for a proposal whose proof-of-lock round is at least `l`, backed by a polka we hold.
    /// The driver applies the same rule, but its lock is lost on a restart and ours is not;
    /// within one run the two agree and this changes nothing. Otherwise we prevote nil.
    fn respect_lock(&mut self, body: Vote) -> Vote {
        let (VoteKind::Prevote, Some(block)) = (body.kind, body.block) else {
            return body;
        };
        let Some((lock_round, locked)) = self.own.lock(body.height) else {
            return body;
        };
        let Some(driver) = self.driver.as_ref() else {
            return body;
        };
        if locked == block || lock_round >= body.round {
            return body;
        }
        let justified = driver
            .proposals_and_validities_for_round(to_mal_round(body.round))
            .iter()
            .filter(|(p, validity)| validity.is_valid() && p.message.value.hash() == block)
            .filter_map(|(p, _)| from_mal_round(p.message.pol_round))
            .any(|vr| {
                vr >= lock_round
                    && (polka::has_polka_certificate(driver, vr, block)
                        || driver.votes().is_threshold_met(
                            &to_mal_round(vr),
                            VoteType::Prevote,
                            Threshold::Value(block),
                        ))
            });
        if justified {
            return body;
        }
        self.lock_overrides += 1;
        Vote {
            block: None,
            ..body
        }
    }

    /// Signs our proposal (or re-sends the one from the log) and feeds it to our driver.
    fn own_proposal(&mut self, p: AttestProposal, queue: &mut Queue, out: &mut Vec<Output>) {
        if !self.is_member() {
            return;
        }
        let Some(key) = &self.key else { return };
        let body = p.to_protocol();
        // A re-proposal names its proof-of-lock round; the polka goes out first, for
        // validators whose vote keeper refused one of its prevotes (see `polka`).
        if let (Some(vr), Some(driver)) = (body.pol_round, self.driver.as_ref())
            && let Some(cert) = polka::polka_from_driver(driver, vr, body.block.hash())
        {
            out.push(Output::BroadcastPolka(Box::new(cert)));
        }
        let signed = match self.own.proposal(body.height, body.round) {
            Some(prev) => {
                out.push(Output::BroadcastProposal(prev.clone()));
                prev.clone()
            }
            None => {
                let s = Signed::sign(&self.chain_id, key, body);
                self.own.insert_proposal(s.clone());
                out.push(Output::PersistAndBroadcastProposal(s.clone()));
                s
            }
        };
        let id = (signed.body.block.hash(), signed.body.pol_round);
        let seen = self.proposals_seen.entry(signed.body.round).or_default();
        if !seen.contains(&id) {
            seen.push(id);
        }
        let m = SignedMessage::new(
            AttestProposal::from_protocol(signed.signer, &signed.body),
            signed.signature,
        );
        queue.push_back(DriverInput::Proposal(m, Validity::Valid));
    }

    fn get_value(&mut self, height: Height, r: MalRound, queue: &mut Queue, out: &mut Vec<Output>) {
        let Some(round) = from_mal_round(r) else {
            return;
        };
        if !self.is_member() {
            return;
        }
        // After a restart, propose the block we already proposed in this slot.
        if let Some(prev) = self.own.proposal(height, round) {
            let value = BlockValue::new(prev.body.block.clone());
            queue.push_back(DriverInput::ProposeValue(r, value));
            return;
        }
        self.awaiting_value = Some(round);
        out.push(Output::GetValue {
            height,
            round,
            timeout: self.timeouts.duration(TimeoutKind::Propose, round),
        });
    }

    /// Emits the decision with a certificate rebuilt from the precommits the vote keeper holds
    /// for the decided round and block (the driver's `Decide` carries none).
    fn decide(&mut self, p: AttestProposal, out: &mut Vec<Output>) {
        let Some(driver) = self.driver.as_ref() else {
            return;
        };
        let (Some(round), false) = (from_mal_round(p.round), self.decided) else {
            return;
        };
        let hash = p.value.hash();
        let precommits = driver.restore_precommits(p.round, &hash);
        let cert = build_certificate(
            driver.validator_set().set(),
            p.height.0,
            round,
            hash,
            precommits.iter().map(to_protocol_vote),
        );
        match cert {
            Some(certificate) => {
                self.decided = true;
                out.push(Output::Decided {
                    block: p.value.block().clone(),
                    certificate,
                });
            }
            // The driver decides only on a quorum of precommits it holds.
            None => self.internal_errors += 1,
        }
    }

    /// Reports each equivocating validator once per height, with both signed votes.
    fn collect_evidence(&mut self, out: &mut Vec<Output>) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        for (address, pairs) in driver.take_vote_evidence() {
            if self.reported.contains(&address.0) {
                continue;
            }
            let Some((a, b)) = pairs.first() else {
                continue;
            };
            let evidence = EquivocationEvidence {
                first: to_protocol_vote(a),
                second: to_protocol_vote(b),
            };
            if evidence.is_conflicting() {
                self.reported.insert(address.0);
                out.push(Output::Equivocation(evidence));
            }
        }
    }
}

fn to_mal_vote(v: &Signed<Vote>) -> MalVote {
    SignedMessage::new(AttestVote::from_protocol(v.signer, &v.body), v.signature)
}

fn to_protocol_vote(v: &MalVote) -> Signed<Vote> {
    Signed {
        signer: v.message.validator.0,
        signature: v.signature,
        body: v.message.to_protocol(),
    }
}
