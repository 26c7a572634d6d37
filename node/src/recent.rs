//! What the explorer and `GET /v1/recent` list live: the newest blocks, jobs, validation
//! latencies, disputes and slashes this node committed since it started, each bounded by count
//! (the constants below), so the whole record is a few hundred kilobytes at most.
//!
//! The loop feeds it once per committed block ([`Recent::on_block`], the cost of that block's
//! events) and the API serialises it under a short lock: a reader never asks the loop, and
//! nothing here scans history. It is this node's view of what it committed while it ran, not
//! the ledger's history: a job older than the window is answered by `GET /v1/jobs/{id}`.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::Value;

use attest_contracts_sim::{DisputeEnd, Event};
use attest_core::bounded::BoundedMap;
use attest_core::market::Measurements;
use attest_protocol::tx::CheckLevel;
use attest_protocol::{AccountId, Amount, BlockHash, DeviceName, Height, JobId, ModelId};

use crate::views::event_json;

/// Blocks kept: four minutes at a block a second, enough for the rates and the sparkline.
pub const RECENT_BLOCKS: usize = 240;
/// Jobs kept, the newest opened first out.
pub const RECENT_JOBS: usize = 200;
/// Validation latency samples kept (each `[height, time_ms, latency_ms, agree]`).
pub const RECENT_SAMPLES: usize = 1_024;
/// Disputes kept, each with its moves.
pub const RECENT_DISPUTES: usize = 64;
/// Moves kept per dispute: a dispute plays at most its `rounds` (a `u32` from the contract,
/// 64 for the largest trace) plus the resolution, so this only bounds a hostile value.
pub const MAX_MOVES: usize = 128;
/// Slashes kept.
pub const RECENT_SLASHES: usize = 64;

/// A block time and the height that recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// The block's height.
    pub height: Height,
    /// Its block time, ms since the Unix epoch.
    pub time_ms: u64,
}

/// One committed block and what it did to jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockRow {
    /// Its height.
    pub height: Height,
    /// Its hash.
    pub hash: BlockHash,
    /// Its block time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Transactions it carried.
    pub txs: usize,
    /// Jobs it opened.
    pub jobs_opened: u32,
    /// Results it committed.
    pub results: u32,
    /// Verdicts it recorded.
    pub verdicts: u32,
    /// Jobs it settled or refunded.
    pub closed: u32,
}

/// A job as the events of the blocks this node committed tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// The job id.
    pub job: JobId,
    /// Who opened it.
    pub client: AccountId,
    /// Who was named to run it.
    pub provider: AccountId,
    /// The model.
    pub model: ModelId,
    /// The device.
    pub device: DeviceName,
    /// The assurance the client bought.
    pub check: CheckLevel,
    /// What the client locked.
    pub escrow: Amount,
    /// `open`, `committed`, `disputed`, `settled` or `refunded`.
    pub phase: &'static str,
    /// The block that opened it.
    pub opened: Stage,
    /// The block that committed its result.
    pub result: Option<Stage>,
    /// The drawn checker, if one was drawn.
    pub checker: Option<AccountId>,
    /// Its verdict: `true` agreed, `false` disagreed.
    pub verdict: Option<bool>,
    /// Block time of the verdict minus that of the result.
    pub validation_latency_ms: Option<u64>,
    /// The block that settled or refunded it.
    pub closed: Option<Stage>,
    /// Insertion order, for listing newest first.
    #[serde(skip)]
    seq: u64,
}

/// A move of a dispute: its round, the step index it opened and whether the parties agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The round.
    pub round: u32,
    /// The step both parties opened.
    pub index: u64,
    /// Whether their leaves agreed at it.
    pub agreed: bool,
    /// The block that recorded it.
    pub height: Height,
}

/// How a dispute ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// Who won.
    pub winner: AccountId,
    /// Who lost (and was slashed or lost its bond).
    pub loser: AccountId,
    /// The step the contract re-executed, or the deadline a party missed.
    pub end: DisputeEnd,
    /// The block that resolved it.
    pub at: Stage,
}

/// A bisection dispute and its rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisputeRow {
    /// The job.
    pub job: JobId,
    /// The provider whose result is disputed.
    pub provider: AccountId,
    /// The drawn checker that disagreed, or a challenger.
    pub challenger: AccountId,
    /// What the challenger locked (0 for the drawn checker).
    pub bond: Amount,
    /// Rounds the bisection takes at most.
    pub rounds: u32,
    /// The block that opened it.
    pub opened: Stage,
    /// Its moves, in order (at most [`MAX_MOVES`]).
    pub moves: Vec<Move>,
    /// How it ended, once it has.
    pub resolved: Option<Resolution>,
}

/// The bounded record; see the module documentation.
#[derive(Debug)]
pub struct Recent {
    since: Option<Height>,
    blocks: VecDeque<BlockRow>,
    jobs: BoundedMap<JobId, JobRow>,
    samples: VecDeque<(Height, u64, u64, bool)>,
    disputes: BoundedMap<JobId, DisputeRow>,
    slashes: VecDeque<Value>,
    seq: u64,
}

impl Default for Recent {
    fn default() -> Self {
        Self::new()
    }
}

/// Which sections `GET /v1/recent?parts=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// `blocks`.
    pub blocks: bool,
    /// `jobs`.
    pub jobs: bool,
    /// `validation`.
    pub validation: bool,
    /// `disputes`.
    pub disputes: bool,
    /// `slashes`.
    pub slashes: bool,
}

impl Parts {
    /// Every section.
    pub const ALL: Self = Self {
        blocks: true,
        jobs: true,
        validation: true,
        disputes: true,
        slashes: true,
    };

    /// The section names, as `parts=` takes them.
    pub const NAMES: [&'static str; 5] = ["blocks", "jobs", "validation", "disputes", "slashes"];

    /// Parses `a,b,c` of [`Parts::NAMES`]; an unknown name is an error naming it.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut parts = Self {
            blocks: false,
            jobs: false,
            validation: false,
            disputes: false,
            slashes: false,
        };
        for name in list.split(',').filter(|n| !n.is_empty()) {
            let flag = match name {
                "blocks" => &mut parts.blocks,
                "jobs" => &mut parts.jobs,
                "validation" => &mut parts.validation,
                "disputes" => &mut parts.disputes,
                "slashes" => &mut parts.slashes,
                other => {
                    return Err(format!(
                        "parts: unknown part {other:?}; the parts are {}",
                        Self::NAMES.join(", ")
                    ));
                }
            };
            *flag = true;
        }
        Ok(parts)
    }
}

/// `GET /v1/recent` (schema `attest.recent/1`): the sections asked for, newest last except
/// `jobs` (newest opened first).
#[derive(Debug, Clone, Serialize)]
pub struct RecentView {
    /// `attest.recent/1`.
    pub schema: &'static str,
    /// The first height this node recorded since it started (`null` before its first block).
    pub since: Option<Height>,
    /// The newest blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockRow>>,
    /// The newest jobs opened, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<JobRow>>,
    /// Validation latency samples `[height, time_ms, latency_ms, agree]`, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Vec<(Height, u64, u64, bool)>>,
    /// The newest disputes, by the height that opened them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disputes: Option<Vec<DisputeRow>>,
    /// The newest slashes, as `/v1/events` sends them, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slashes: Option<Vec<Value>>,
}

impl Recent {
    /// An empty record.
    pub fn new() -> Self {
        Self {
            since: None,
            blocks: VecDeque::new(),
            jobs: BoundedMap::new(RECENT_JOBS),
            samples: VecDeque::new(),
            disputes: BoundedMap::new(RECENT_DISPUTES),
            slashes: VecDeque::new(),
            seq: 0,
        }
    }

    /// Records a committed block and its events. `measurements` already include the block
    /// (the core records a block before it reports it): a validation latency is measured there,
    /// over every job the core keeps, not only those in this record.
    pub fn on_block(
        &mut self,
        height: Height,
        hash: BlockHash,
        time_ms: u64,
        txs: usize,
        events: &[Event],
        measurements: &Measurements,
    ) {
        self.since.get_or_insert(height);
        let at = Stage { height, time_ms };
        let mut row = BlockRow {
            height,
            hash,
            time_ms,
            txs,
            jobs_opened: 0,
            results: 0,
            verdicts: 0,
            closed: 0,
        };
        for event in events {
            self.on_event(at, event, measurements, &mut row);
        }
        push_bounded(&mut self.blocks, row, RECENT_BLOCKS);
    }

    fn on_event(&mut self, at: Stage, event: &Event, m: &Measurements, row: &mut BlockRow) {
        match event {
            Event::JobOpened {
                job,
                client,
                provider,
                model,
                device,
                escrow,
                check,
                ..
            } => {
                row.jobs_opened = row.jobs_opened.saturating_add(1);
                self.seq = self.seq.wrapping_add(1);
                self.jobs.insert(
                    *job,
                    JobRow {
                        job: *job,
                        client: *client,
                        provider: *provider,
                        model: model.clone(),
                        device: device.clone(),
                        check: *check,
                        escrow: *escrow,
                        phase: "open",
                        opened: at,
                        result: None,
                        checker: None,
                        verdict: None,
                        validation_latency_ms: None,
                        closed: None,
                        seq: self.seq,
                    },
                );
            }
            Event::ResultCommitted { job, .. } => {
                row.results = row.results.saturating_add(1);
                self.job(job, |j| {
                    j.phase = "committed";
                    j.result = Some(at);
                });
            }
            Event::CheckAssigned { job, checker, .. } => {
                self.job(job, |j| j.checker = Some(*checker));
            }
            Event::VerdictPosted {
                job,
                checker,
                agree,
            } => {
                row.verdicts = row.verdicts.saturating_add(1);
                let latency = m.job(job).and_then(|c| c.validation_latency_ms());
                if let Some(ms) = latency {
                    push_bounded(
                        &mut self.samples,
                        (at.height, at.time_ms, ms, *agree),
                        RECENT_SAMPLES,
                    );
                }
                self.job(job, |j| {
                    j.checker = Some(*checker);
                    j.verdict = Some(*agree);
                    j.validation_latency_ms = latency;
                });
            }
            Event::DisputeOpened {
                job,
                provider,
                challenger,
                bond,
                rounds,
                ..
            } => {
                self.job(job, |j| j.phase = "disputed");
                self.disputes.insert(
                    *job,
                    DisputeRow {
                        job: *job,
                        provider: *provider,
                        challenger: *challenger,
                        bond: *bond,
                        rounds: *rounds,
                        opened: at,
                        moves: Vec::new(),
                        resolved: None,
                    },
                );
            }
            Event::DisputeRound {
                job,
                round,
                index,
                agreed,
            } => {
                if let Some(d) = self.disputes.get_mut(job)
                    && d.moves.len() < MAX_MOVES
                {
                    d.moves.push(Move {
                        round: round.0,
                        index: *index,
                        agreed: *agreed,
                        height: at.height,
                    });
                }
            }
            Event::DisputeResolved {
                job,
                winner,
                loser,
                end,
            } => {
                if let Some(d) = self.disputes.get_mut(job) {
                    d.resolved = Some(Resolution {
                        winner: *winner,
                        loser: *loser,
                        end: *end,
                        at,
                    });
                }
            }
            Event::Settled { job, .. } | Event::Refunded { job, .. } => {
                row.closed = row.closed.saturating_add(1);
                let phase = if matches!(event, Event::Settled { .. }) {
                    "settled"
                } else {
                    "refunded"
                };
                self.job(job, |j| {
                    j.phase = phase;
                    j.closed = Some(at);
                });
            }
            Event::Slashed { .. } => {
                let json = event_json(at.height, at.time_ms, event);
                push_bounded(&mut self.slashes, json, RECENT_SLASHES);
            }
            _ => {}
        }
    }

    fn job(&mut self, id: &JobId, change: impl FnOnce(&mut JobRow)) {
        if let Some(row) = self.jobs.get_mut(id) {
            change(row);
        }
    }

    /// The sections `parts` asks for.
    pub fn view(&self, parts: Parts) -> RecentView {
        RecentView {
            schema: "attest.recent/1",
            since: self.since,
            blocks: parts.blocks.then(|| self.blocks.iter().cloned().collect()),
            jobs: parts.jobs.then(|| {
                let mut jobs: Vec<JobRow> = self.jobs.values().cloned().collect();
                jobs.sort_by_key(|j| std::cmp::Reverse(j.seq));
                jobs
            }),
            validation: parts
                .validation
                .then(|| self.samples.iter().copied().collect()),
            disputes: parts.disputes.then(|| {
                let mut disputes: Vec<DisputeRow> = self.disputes.values().cloned().collect();
                disputes.sort_by_key(|d| d.opened.height);
                disputes
            }),
            slashes: parts
                .slashes
                .then(|| self.slashes.iter().cloned().collect()),
        }
    }
}

/// Appends `item`, dropping the oldest past `cap`.
fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, cap: usize) {
    if queue.len() >= cap {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest_contracts_sim::SlashReason;
    use attest_protocol::{Hash, Round, SecretKey};

    fn key(seed: u8) -> AccountId {
        SecretKey::from_seed([seed; 32]).public()
    }

    fn opened(job: JobId) -> Event {
        Event::JobOpened {
            job,
            client: key(1),
            provider: key(2),
            model: "attest-tiny-1b".parse().expect("model"),
            device: "cpu".parse().expect("device"),
            max_tokens: 4,
            price_per_token: Amount(1),
            escrow: Amount(10),
            commit_deadline_ms: 0,
            check: CheckLevel::Random,
        }
    }

    #[test]
    fn a_job_is_followed_through_its_events_and_every_section_stays_bounded() {
        let mut measured = Measurements::default();
        let mut recent = Recent::new();
        let job = JobId([7; 32]);
        let result = Event::ResultCommitted {
            job,
            provider: key(2),
            output_hash: Hash([0; 32]),
            trace_root: Hash([0; 32]),
            final_leaf: Hash([0; 32]),
            step_count: 8,
            tokens: 4,
            selected: true,
        };
        let verdict = Event::VerdictPosted {
            job,
            checker: key(3),
            agree: false,
        };
        let dispute = Event::DisputeOpened {
            job,
            provider: key(2),
            challenger: key(3),
            bond: Amount(0),
            challenger_root: Hash([1; 32]),
            challenger_final_leaf: Hash([1; 32]),
            step_count: 8,
            rounds: 3,
            deadline_ms: 0,
        };
        let round = Event::DisputeRound {
            job,
            round: Round(0),
            index: 4,
            agreed: true,
        };
        let slash = Event::Slashed {
            who: key(2),
            amount: Amount(5),
            reason: SlashReason::DisputeLost { job },
            to_winner: None,
            to_treasury: Amount(5),
        };
        let blocks: [(u64, Vec<Event>); 4] = [
            (1_000, vec![opened(job)]),
            (1_500, vec![result]),
            (1_900, vec![verdict, dispute, round]),
            (2_400, vec![slash]),
        ];
        for (i, (time, events)) in blocks.iter().enumerate() {
            let height = Height(i as u64 + 1);
            measured.observe(height, *time, events);
            recent.on_block(height, BlockHash([0; 32]), *time, 1, events, &measured);
        }
        let view = recent.view(Parts::ALL);
        let jobs = view.jobs.expect("jobs");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].phase, "disputed");
        assert_eq!(jobs[0].verdict, Some(false));
        assert_eq!(jobs[0].validation_latency_ms, Some(400));
        assert_eq!(
            view.validation.expect("samples"),
            vec![(Height(3), 1_900, 400, false)]
        );
        let disputes = view.disputes.expect("disputes");
        assert_eq!(disputes[0].moves.len(), 1);
        assert_eq!(view.slashes.expect("slashes")[0]["reason"], "dispute_lost");
        let blocks = view.blocks.expect("blocks");
        assert_eq!(blocks.iter().map(|b| b.jobs_opened).sum::<u32>(), 1);
        assert_eq!(view.since, Some(Height(1)));

        // Bounds: many more jobs and blocks than kept.
        for i in 0..(RECENT_BLOCKS as u64 + 50) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            let events = [opened(JobId(id))];
            recent.on_block(Height(10 + i), BlockHash([0; 32]), 0, 1, &events, &measured);
        }
        let view = recent.view(Parts::parse("blocks,jobs").expect("parts"));
        assert_eq!(view.blocks.expect("blocks").len(), RECENT_BLOCKS);
        let jobs = view.jobs.expect("jobs");
        assert_eq!(jobs.len(), RECENT_JOBS);
        // Newest first.
        assert_eq!(
            jobs[0].opened.height,
            Height(10 + RECENT_BLOCKS as u64 + 49)
        );
        assert!(view.slashes.is_none());
        assert!(Parts::parse("blocks,nope").is_err());
    }
}
