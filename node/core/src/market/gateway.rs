//! The gateway's half of output delivery: for each job a client opened through this node,
//! fetch the output bytes from the provider's node once the result is committed, check them
//! against the committed output hash, and keep them for the client. Pure: requests go out as
//! values, answers come in with the time.
//!
//! A provider that answers with bytes that do not hash to its committed output hash is
//! reported (and the answer dropped); the job's dispute, if the result is also wrong, is the
//! ledger's business, not this module's.

use std::collections::BTreeMap;

use attest_contracts_sim::{Event, JobPhase, State};
use attest_protocol::workload::output_hash;
use attest_protocol::{Hash, JobId};

use crate::bounded::BoundedMap;
use crate::wire::{MAX_OUTPUTS_PER_REQUEST, PeerKey};

/// Outputs kept for clients, oldest dropped first. Outputs are at most 1,024 bytes, so this is
/// at most ~4 MB.
pub const MAX_OUTPUTS: usize = 4_096;
/// Jobs waiting for an output at once. While this many wait, a node refuses to admit another
/// job from its clients ([`Gateway::is_full`]) rather than take one it could not deliver.
pub const MAX_WANTED: usize = 4_096;
/// How long a tracked job may go without its `OpenJob` in the live state before the gateway
/// forgets it: twice the default mempool expiry (60 s), after which no default pool holds
/// the transaction, so it can no longer commit. (A job that did commit and ended without a
/// result, then left the live state, is forgotten by the same rule.)
pub const UNOPENED_MS: u64 = 120_000;
/// Fetch attempts per job before giving up (a provider that is down, or lies).
pub const MAX_ATTEMPTS: u32 = 4;

/// Where one wanted output stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    /// When the client opened it here.
    tracked_ms: u64,
    /// The provider's node and the committed output hash, once the result is committed.
    result: Option<(PeerKey, Hash)>,
    in_flight: bool,
    attempts: u32,
}

/// What the gateway did, for the API and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Outputs fetched and matching the ledger.
    pub verified: u64,
    /// Answers whose bytes did not match the committed hash.
    pub rejected: u64,
    /// Jobs given up on after [`MAX_ATTEMPTS`] failed fetches.
    pub abandoned: u64,
    /// Jobs forgotten because their `OpenJob` was not in the live state [`UNOPENED_MS`] after
    /// they were opened here.
    pub unopened: u64,
}

/// Output delivery for jobs opened through this node.
#[derive(Debug)]
pub struct Gateway {
    wanted: BTreeMap<JobId, Wanted>,
    outputs: BoundedMap<JobId, Vec<u8>>,
    stats: GatewayStats,
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            wanted: BTreeMap::new(),
            outputs: BoundedMap::new(MAX_OUTPUTS),
            stats: GatewayStats::default(),
        }
    }
}

impl Gateway {
    /// What the gateway did.
    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    /// The verified output of `job`, if this node holds it.
    pub fn output(&self, job: &JobId) -> Option<&[u8]> {
        self.outputs.get(job).map(Vec::as_slice)
    }

    /// Whether [`MAX_WANTED`] jobs wait for their outputs: a job opened now could not be
    /// tracked.
    pub fn is_full(&self) -> bool {
        self.wanted.len() >= MAX_WANTED
    }

    /// A client opened `job` through this node at `now_ms`. Returns false, tracking nothing,
    /// if the gateway [`is_full`](Self::is_full).
    pub fn track(&mut self, job: JobId, now_ms: u64) -> bool {
        if self.is_full() {
            return false;
        }
        self.wanted.entry(job).or_insert(Wanted {
            tracked_ms: now_ms,
            result: None,
            in_flight: false,
            attempts: 0,
        });
        true
    }

    /// A block committed at `now_ms`: note results of tracked jobs, drop jobs that ended
    /// without one or never opened (after [`UNOPENED_MS`]), and return the fetches to send as
    /// (peer, jobs), one batch per provider's node.
    pub fn on_commit(
        &mut self,
        now_ms: u64,
        state: &State,
        events: &[Event],
    ) -> Vec<(PeerKey, Vec<JobId>)> {
        for e in events {
            if let Event::ResultCommitted {
                job,
                provider,
                output_hash,
                ..
            } = e
                && let Some(w) = self.wanted.get_mut(job)
                && let Some(stake) = state.stake(provider)
            {
                w.result = Some((stake.node.peer_id_bytes().to_vec(), *output_hash));
            }
        }
        let mut unopened = 0;
        self.wanted.retain(|id, w| {
            if w.result.is_some() {
                return true;
            }
            match state.job(id) {
                Some(j) => matches!(j.phase, JobPhase::Open { .. }),
                None if now_ms.saturating_sub(w.tracked_ms) < UNOPENED_MS => true,
                None => {
                    unopened += 1;
                    false
                }
            }
        });
        self.stats.unopened += unopened;
        self.fetches()
    }

    /// The fetches due: committed results not in flight, in one batch of at most
    /// [`MAX_OUTPUTS_PER_REQUEST`] per peer that has none in flight already (so a peer's
    /// failure resets exactly one batch, and a busy provider is asked no faster than it
    /// answers).
    fn fetches(&mut self) -> Vec<(PeerKey, Vec<JobId>)> {
        let busy: std::collections::BTreeSet<PeerKey> = self
            .wanted
            .values()
            .filter(|w| w.in_flight)
            .filter_map(|w| w.result.as_ref().map(|(p, _)| p.clone()))
            .collect();
        let mut batches: BTreeMap<PeerKey, Vec<JobId>> = BTreeMap::new();
        for (id, w) in &mut self.wanted {
            let Some((peer, _)) = &w.result else {
                continue;
            };
            if w.in_flight || busy.contains(peer) {
                continue;
            }
            let batch = batches.entry(peer.clone()).or_default();
            if batch.len() < MAX_OUTPUTS_PER_REQUEST {
                w.in_flight = true;
                w.attempts += 1;
                batch.push(*id);
            }
        }
        batches.into_iter().collect()
    }

    /// The provider answered for `job` with `output` (`None`: it has none).
    pub fn on_output(&mut self, job: JobId, output: Option<&[u8]>) {
        let Some(w) = self.wanted.get_mut(&job) else {
            return;
        };
        w.in_flight = false;
        let Some((_, committed)) = w.result else {
            return;
        };
        match output {
            Some(bytes) if output_hash(bytes) == committed => {
                self.wanted.remove(&job);
                self.keep(job, bytes.to_vec());
                self.stats.verified += 1;
            }
            Some(_) => {
                self.stats.rejected += 1;
                tracing::warn!(job = %job, "provider's output does not match the committed hash; rejected");
                self.give_up_if_spent(job);
            }
            None => self.give_up_if_spent(job),
        }
    }

    /// A request to `peer` failed: its fetches may go again.
    pub fn on_failure(&mut self, peer: &PeerKey) {
        let failed: Vec<JobId> = self
            .wanted
            .iter()
            .filter(|(_, w)| w.in_flight && w.result.as_ref().is_some_and(|(p, _)| p == peer))
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            if let Some(w) = self.wanted.get_mut(&id) {
                w.in_flight = false;
            }
            self.give_up_if_spent(id);
        }
    }

    fn give_up_if_spent(&mut self, job: JobId) {
        if self
            .wanted
            .get(&job)
            .is_some_and(|w| w.attempts >= MAX_ATTEMPTS)
        {
            self.wanted.remove(&job);
            self.stats.abandoned += 1;
        }
    }

    /// Keeps a verified output (also a provider's own, when it is the gateway too).
    pub fn keep(&mut self, job: JobId, output: Vec<u8>) {
        self.outputs.insert(job, output);
    }
}

#[cfg(test)]
mod tests {
    use attest_contracts_sim::{Genesis, Params};
    use attest_protocol::{Amount, ChainId, SecretKey};

    use super::*;

    fn state() -> (State, attest_protocol::AccountId, PeerKey) {
        let provider = SecretKey::from_seed([1; 32]).public();
        let node = SecretKey::from_seed([2; 32]).public();
        let tokens = Amount::tokens(500).unwrap();
        let genesis = Genesis {
            chain_id: ChainId::new("gateway-test").unwrap(),
            params: Params::default(),
            balances: vec![(provider, tokens)],
            stakes: vec![(
                provider,
                node,
                tokens,
                crate::accel::DeviceProfile::find("cpu")
                    .unwrap()
                    .capability(),
            )],
        };
        let state = State::from_genesis(&genesis).unwrap();
        (state, provider, node.peer_id_bytes().to_vec())
    }

    fn committed(job: JobId, provider: attest_protocol::AccountId, output: &[u8]) -> Event {
        Event::ResultCommitted {
            job,
            provider,
            output_hash: output_hash(output),
            trace_root: Hash([0; 32]),
            final_leaf: Hash([0; 32]),
            step_count: 1,
            tokens: 1,
            selected: false,
        }
    }

    #[test]
    fn a_job_that_never_opens_is_forgotten_and_a_full_gateway_says_so() {
        let (state, _, _) = state();
        let mut g = Gateway::default();
        for i in 0..MAX_WANTED {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(g.track(JobId(id), 1_000));
        }
        assert!(g.is_full());
        assert!(
            !g.track(JobId([0xff; 32]), 1_000),
            "a full gateway tracks nothing"
        );
        // None of them is in the state: kept while their OpenJobs may still commit ...
        g.on_commit(1_000 + UNOPENED_MS - 1, &state, &[]);
        assert!(g.is_full());
        assert_eq!(g.stats().unopened, 0);
        // ... and forgotten after, which makes room again.
        g.on_commit(1_000 + UNOPENED_MS, &state, &[]);
        assert!(!g.is_full());
        assert_eq!(g.stats().unopened, MAX_WANTED as u64);
        assert!(g.track(JobId([0xff; 32]), 1_000 + UNOPENED_MS));
    }

    #[test]
    fn an_output_that_does_not_match_the_ledger_is_rejected_and_fetched_again() {
        let (state, provider, peer) = state();
        let job = JobId([9; 32]);
        let mut g = Gateway::default();
        g.track(job, 0);
        let fetches = g.on_commit(0, &state, &[committed(job, provider, b"the truth")]);
        assert_eq!(fetches, vec![(peer.clone(), vec![job])]);
        g.on_output(job, Some(b"a lie"));
        assert_eq!(g.stats().rejected, 1);
        assert_eq!(g.output(&job), None);
        // The next block sends the fetch again; the true bytes are kept.
        assert_eq!(g.on_commit(0, &state, &[]), vec![(peer, vec![job])]);
        g.on_output(job, Some(b"the truth"));
        assert_eq!(g.output(&job), Some(&b"the truth"[..]));
        assert_eq!(g.stats().verified, 1);
        assert!(
            g.on_commit(0, &state, &[]).is_empty(),
            "nothing more to fetch"
        );
    }

    #[test]
    fn a_provider_that_never_answers_is_given_up_after_the_attempt_bound() {
        let (state, provider, peer) = state();
        let job = JobId([7; 32]);
        let mut g = Gateway::default();
        g.track(job, 0);
        let mut fetches = g.on_commit(0, &state, &[committed(job, provider, b"x")]);
        for _ in 0..MAX_ATTEMPTS {
            assert_eq!(fetches.len(), 1);
            g.on_failure(&peer);
            fetches = g.on_commit(0, &state, &[]);
        }
        assert!(fetches.is_empty());
        assert_eq!(g.stats().abandoned, 1);
    }

    #[test]
    fn fetches_go_in_one_bounded_batch_per_provider_at_a_time() {
        let (state, provider, peer) = state();
        let mut g = Gateway::default();
        let jobs: Vec<JobId> = (0..100u8).map(|i| JobId([i; 32])).collect();
        let events: Vec<Event> = jobs
            .iter()
            .map(|j| {
                g.track(*j, 0);
                committed(*j, provider, b"out")
            })
            .collect();
        let first = g.on_commit(0, &state, &events);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, peer);
        assert_eq!(first[0].1.len(), MAX_OUTPUTS_PER_REQUEST);
        // While that batch is out, the provider is asked nothing more.
        assert!(g.on_commit(0, &state, &[]).is_empty());
        for j in &first[0].1 {
            g.on_output(*j, Some(b"out"));
        }
        g.on_failure(&peer);
        // The rest go in the next batch; the answered ones are held.
        let second = g.on_commit(0, &state, &[]);
        assert_eq!(second[0].1.len(), 100 - MAX_OUTPUTS_PER_REQUEST);
        assert_eq!(g.stats().verified, MAX_OUTPUTS_PER_REQUEST as u64);
        // A failed batch is asked again, and only it.
        g.on_failure(&peer);
        let third = g.on_commit(0, &state, &[]);
        assert_eq!(third, second);
    }
}
