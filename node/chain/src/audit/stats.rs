//! What the replayed events say about the market: each provider's record, validation and job
//! latency, slashes. Pure bookkeeping over [`Event`]s the contract emitted; no rule lives here.

use std::collections::BTreeMap;

use attest_contracts_sim::{Event, SlashReason};
use attest_protocol::{AccountId, Amount, Height, JobId};
use serde::{Deserialize, Serialize};

/// One account's record as a provider (and as a checker) over the reported range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The account.
    pub account: AccountId,
    /// Jobs opened naming it as the provider.
    pub jobs: u64,
    /// Results it committed.
    pub results: u64,
    /// Its results that received a verdict.
    pub checked: u64,
    /// Of those, verdicts that agreed.
    pub agreed: u64,
    /// Its jobs that settled (it was paid).
    pub settled: u64,
    /// Commit deadlines it missed.
    pub missed_commits: u64,
    /// Verdicts it posted as a checker.
    pub verdicts_given: u64,
    /// Verdict windows it missed as a checker.
    pub verdicts_missed: u64,
    /// Disputes it won, as provider or challenger.
    pub disputes_won: u64,
    /// Disputes it lost, as provider or challenger.
    pub disputes_lost: u64,
    /// Total stake slashed from it, in units.
    pub slashed: Amount,
    /// Total paid to it for its jobs, in units.
    pub earned: Amount,
}

impl ProviderRecord {
    /// An account with nothing on record.
    pub fn new(account: AccountId) -> Self {
        Self {
            account,
            jobs: 0,
            results: 0,
            checked: 0,
            agreed: 0,
            settled: 0,
            missed_commits: 0,
            verdicts_given: 0,
            verdicts_missed: 0,
            disputes_won: 0,
            disputes_lost: 0,
            slashed: Amount::ZERO,
            earned: Amount::ZERO,
        }
    }
}

/// A latency distribution in milliseconds of block time. Percentiles are nearest-rank: the
/// smallest sample with at least p% of the samples at or below it. All zero when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// Samples.
    pub count: u64,
    /// The smallest.
    pub min_ms: u64,
    /// The median.
    pub p50_ms: u64,
    /// The 90th percentile.
    pub p90_ms: u64,
    /// The 99th percentile.
    pub p99_ms: u64,
    /// The largest.
    pub max_ms: u64,
}

impl Distribution {
    /// The distribution of `samples`.
    pub fn of(samples: &[u64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let rank = |p: usize| -> u64 {
            // Nearest rank: ceil(p * n / 100), from 1; n >= 1 here.
            let r = (p * n).div_ceil(100).max(1);
            sorted[r.min(n) - 1]
        };
        if n == 0 {
            return Self::default();
        }
        Self {
            count: n as u64,
            min_ms: sorted[0],
            p50_ms: rank(50),
            p90_ms: rank(90),
            p99_ms: rank(99),
            max_ms: sorted[n - 1],
        }
    }
}

/// A latency over all jobs, and broken down by model and by device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Every sample.
    pub all: Distribution,
    /// By the job's model id.
    pub by_model: BTreeMap<String, Distribution>,
    /// By the device named in the job (the advert's).
    pub by_device: BTreeMap<String, Distribution>,
}

/// How jobs fared over the reported range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Jobs opened.
    pub opened: u64,
    /// Results committed.
    pub results: u64,
    /// Results the draw (or probation) selected for a check.
    pub selected: u64,
    /// Verdicts posted.
    pub verdicts: u64,
    /// Disputes opened.
    pub disputes: u64,
    /// Jobs settled.
    pub settled: u64,
    /// Jobs refunded to their client.
    pub refunded: u64,
}

/// One slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashEntry {
    /// The block whose replay slashed.
    pub height: Height,
    /// The slashed account.
    pub account: AccountId,
    /// The stake taken, in units.
    pub amount: Amount,
    /// `missed_commit`, `missed_verdict`, `dispute_lost` or `equivocation`.
    pub reason: String,
    /// The job the fault was on, for job faults.
    pub job: Option<JobId>,
    /// Who received the winner's share, and how much.
    pub to_winner: Option<(AccountId, Amount)>,
    /// The treasury's share.
    pub to_treasury: Amount,
}

/// A job between its opening and its end, for latencies and to find its provider.
#[derive(Debug, Clone)]
struct OpenJob {
    provider: AccountId,
    model: String,
    device: String,
    opened_ms: u64,
    result_ms: Option<u64>,
}

/// Samples of one latency, grouped.
#[derive(Debug, Default)]
struct Samples {
    all: Vec<u64>,
    by_model: BTreeMap<String, Vec<u64>>,
    by_device: BTreeMap<String, Vec<u64>>,
}

impl Samples {
    fn push(&mut self, job: &OpenJob, ms: u64) {
        self.all.push(ms);
        self.by_model.entry(job.model.clone()).or_default().push(ms);
        self.by_device
            .entry(job.device.clone())
            .or_default()
            .push(ms);
    }

    fn report(&self) -> LatencyReport {
        let group = |m: &BTreeMap<String, Vec<u64>>| {
            m.iter()
                .map(|(k, v)| (k.clone(), Distribution::of(v)))
                .collect()
        };
        LatencyReport {
            all: Distribution::of(&self.all),
            by_model: group(&self.by_model),
            by_device: group(&self.by_device),
        }
    }
}

/// The running tallies.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Jobs not yet final, over the whole replay (a job opened before the range can end in it).
    open: BTreeMap<JobId, OpenJob>,
    providers: BTreeMap<AccountId, ProviderRecord>,
    validation: Samples,
    job_latency: Samples,
    jobs: JobCounts,
    slashes: Vec<SlashEntry>,
}

impl Stats {
    /// Takes in the events of the block at `height` (time `time_ms`); `count` says whether the
    /// block is in the reported range. Jobs are tracked either way, so a latency that ends in
    /// the range is measured from its start even before it.
    pub(crate) fn handle_block(
        &mut self,
        height: Height,
        time_ms: u64,
        events: &[Event],
        count: bool,
    ) {
        for event in events {
            self.track(time_ms, event, count);
            if count {
                self.tally(height, event);
            }
        }
    }

    /// Job lifetimes and the latencies they end in.
    fn track(&mut self, time_ms: u64, event: &Event, count: bool) {
        match event {
            Event::JobOpened {
                job,
                provider,
                model,
                device,
                ..
            } => {
                let open = OpenJob {
                    provider: *provider,
                    model: model.as_str().to_owned(),
                    device: device.as_str().to_owned(),
                    opened_ms: time_ms,
                    result_ms: None,
                };
                self.open.insert(*job, open);
            }
            Event::ResultCommitted { job, .. } => {
                if let Some(open) = self.open.get_mut(job) {
                    open.result_ms = Some(time_ms);
                }
            }
            Event::VerdictPosted { job, agree, .. } => {
                let Some(open) = self.open.get(job).cloned() else {
                    return;
                };
                if count {
                    let provider = self.record(open.provider);
                    provider.checked += 1;
                    provider.agreed += u64::from(*agree);
                    if let Some(result_ms) = open.result_ms {
                        let ms = time_ms.saturating_sub(result_ms);
                        self.validation.push(&open, ms);
                    }
                }
            }
            Event::Settled { job, .. } => {
                if let Some(open) = self.open.remove(job)
                    && count
                {
                    let ms = time_ms.saturating_sub(open.opened_ms);
                    self.job_latency.push(&open, ms);
                }
            }
            Event::Refunded { job, .. } => {
                self.open.remove(job);
            }
            _ => {}
        }
    }

    /// Counts that need no job history.
    fn tally(&mut self, height: Height, event: &Event) {
        match event {
            Event::JobOpened { provider, .. } => {
                self.jobs.opened += 1;
                self.record(*provider).jobs += 1;
            }
            Event::ResultCommitted {
                provider, selected, ..
            } => {
                self.jobs.results += 1;
                self.jobs.selected += u64::from(*selected);
                self.record(*provider).results += 1;
            }
            Event::VerdictPosted { checker, .. } => {
                self.jobs.verdicts += 1;
                self.record(*checker).verdicts_given += 1;
            }
            Event::VerdictMissed { checker, .. } => self.record(*checker).verdicts_missed += 1,
            Event::CommitMissed { provider, .. } => self.record(*provider).missed_commits += 1,
            Event::DisputeOpened { .. } => self.jobs.disputes += 1,
            Event::DisputeResolved { winner, loser, .. } => {
                self.record(*winner).disputes_won += 1;
                self.record(*loser).disputes_lost += 1;
            }
            Event::Settled {
                provider,
                provider_paid,
                ..
            } => {
                self.jobs.settled += 1;
                let r = self.record(*provider);
                r.settled += 1;
                r.earned = Amount(r.earned.0.saturating_add(provider_paid.0));
            }
            Event::Refunded { .. } => self.jobs.refunded += 1,
            Event::Slashed {
                who,
                amount,
                reason,
                to_winner,
                to_treasury,
            } => {
                let r = self.record(*who);
                r.slashed = Amount(r.slashed.0.saturating_add(amount.0));
                let (reason, job) = slash_reason(reason);
                self.slashes.push(SlashEntry {
                    height,
                    account: *who,
                    amount: *amount,
                    reason: reason.to_owned(),
                    job,
                    to_winner: *to_winner,
                    to_treasury: *to_treasury,
                });
            }
            _ => {}
        }
    }

    fn record(&mut self, account: AccountId) -> &mut ProviderRecord {
        self.providers
            .entry(account)
            .or_insert_with(|| ProviderRecord::new(account))
    }

    pub(crate) fn providers(&self) -> Vec<ProviderRecord> {
        self.providers.values().cloned().collect()
    }

    pub(crate) fn validation_latency(&self) -> LatencyReport {
        self.validation.report()
    }

    pub(crate) fn job_latency(&self) -> LatencyReport {
        self.job_latency.report()
    }

    pub(crate) fn jobs(&self) -> JobCounts {
        self.jobs
    }

    pub(crate) fn slashes(&self) -> Vec<SlashEntry> {
        self.slashes.clone()
    }
}

/// A slash reason's name and its job, if it is a job fault.
fn slash_reason(reason: &SlashReason) -> (&'static str, Option<JobId>) {
    match reason {
        SlashReason::MissedCommit { job } => ("missed_commit", Some(*job)),
        SlashReason::MissedVerdict { job } => ("missed_verdict", Some(*job)),
        SlashReason::DisputeLost { job } => ("dispute_lost", Some(*job)),
        SlashReason::Equivocation { .. } => ("equivocation", None),
    }
}

#[cfg(test)]
mod tests {
    use super::Distribution;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Distribution::of(&[]), Distribution::default());
        let d = Distribution::of(&[5]);
        assert_eq!((d.count, d.p50_ms, d.p99_ms, d.max_ms), (1, 5, 5, 5));
        let samples: Vec<u64> = (1..=100).rev().collect();
        let d = Distribution::of(&samples);
        assert_eq!(
            (d.min_ms, d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms),
            (1, 50, 90, 99, 100)
        );
        let d = Distribution::of(&[10, 20, 30]);
        assert_eq!((d.p50_ms, d.p90_ms), (20, 30));
    }
}
