//! The node's Prometheus metrics, served as text by `GET /metrics` (see `docs/API.md`).
//!
//! One [`Metrics`] per node, shared between the node loop, which records (every metric is an
//! atomic or a short lock, so recording never waits on a scrape for long), and the HTTP API,
//! which encodes. Ledger figures come from committed blocks only, in block time, so every node
//! that committed the same blocks reports the same job and validation latencies. libp2p's own
//! metrics (swarm, gossipsub, identify, ping) live in the same registry under `libp2p_`.
//!
//! Nothing here decides anything; it only counts what the loop already knows.

use std::sync::Mutex;

use attest_contracts_sim::{Event, SlashReason};
use attest_protocol::Height;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use attest_core::market::{DutyStats as Stats, GatewayStats, Measurements};

/// The content type of [`Metrics::encode`]'s output: OpenMetrics text, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label, as `(name, value)`; every value is a fixed word, so label sets stay few.
type Label = [(&'static str, &'static str); 1];

/// A counter per value of one label.
type Counters = Family<Label, Counter>;

/// The `stage` values of `attest_jobs_total`.
const STAGES: [&str; 12] = [
    "opened",
    "result",
    "check_assigned",
    "no_checker",
    "verdict_agree",
    "verdict_disagree",
    "verdict_missed",
    "commit_missed",
    "disputed",
    "dispute_resolved",
    "settled",
    "refunded",
];

/// The `reason` values of `attest_slashes_total`.
const SLASH_REASONS: [&str; 4] = [
    "missed_commit",
    "missed_verdict",
    "dispute_lost",
    "equivocation",
];

/// Histogram buckets for job stages in seconds of block time: 0.1 s to ~410 s, doubling. A
/// stage takes at least one block (0.2 s to 1 s here) and a dispute tens of blocks.
fn stage_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.1, 2.0, 13)
}

/// Every metric the node exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    /// libp2p's swarm and protocol metrics; the shell records swarm events into it.
    pub libp2p: libp2p::metrics::Metrics,
    height: Gauge,
    peers: Gauge,
    mempool_txs: Gauge,
    blocks: Counter,
    txs: Counter,
    block_interval: Histogram,
    jobs: Counters,
    job_latency: Family<Label, Histogram, fn() -> Histogram>,
    validation_latency: Histogram,
    dispute_rounds: Histogram,
    slashes: Counters,
    duties: Counters,
    gateway: Counters,
    misbehaved: Counter,
    consensus_internal_errors: Counter,
    /// Height and block time of the last block recorded, for the interval.
    last_block: Mutex<Option<(Height, u64)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("height", &self.height.get())
            .field("blocks", &self.blocks.get())
            .finish_non_exhaustive()
    }
}

fn stage_histogram() -> Histogram {
    Histogram::new(stage_buckets())
}

impl Metrics {
    /// A fresh set, registered. The height gauge starts at `height`, where the chain stands.
    pub fn new(height: Height) -> Self {
        let mut registry = Registry::default();
        let libp2p = libp2p::metrics::Metrics::new(&mut registry);
        let r = registry.sub_registry_with_prefix("attest");
        let height_gauge = Gauge::default();
        height_gauge.set(i64::try_from(height.0).unwrap_or(i64::MAX));
        r.register(
            "height",
            "The last committed block height",
            height_gauge.clone(),
        );
        let peers = Gauge::default();
        r.register("peers", "Connected libp2p peers", peers.clone());
        let mempool_txs = Gauge::default();
        r.register(
            "mempool_txs",
            "Transactions waiting in the mempool",
            mempool_txs.clone(),
        );
        let blocks = Counter::default();
        r.register(
            "blocks",
            "Blocks committed while this node ran",
            blocks.clone(),
        );
        let txs = Counter::default();
        r.register("txs", "Transactions in committed blocks", txs.clone());
        let misbehaved = Counter::default();
        r.register(
            "peers_misbehaved",
            "Peers caught sending provably wrong data (state-sync chunks, snapshots)",
            misbehaved.clone(),
        );
        let consensus_internal_errors = Counter::default();
        r.register(
            "consensus_internal_errors",
            "Inputs the consensus driver refused after the engine checked them: a bug, always 0",
            consensus_internal_errors.clone(),
        );
        let block_interval = Histogram::new(exponential_buckets(0.05, 2.0, 10));
        r.register(
            "block_interval_seconds",
            "Block time of a committed block minus that of the block before it",
            block_interval.clone(),
        );
        let jobs = Counters::default();
        r.register(
            "jobs",
            "Jobs reaching a stage in committed blocks",
            jobs.clone(),
        );
        let job_latency: Family<Label, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(stage_histogram);
        r.register(
            "job_latency_seconds",
            "Block time from a job's opening to its result (until=result) or to its \
             settlement or refund (until=closed)",
            job_latency.clone(),
        );
        let validation_latency = stage_histogram();
        r.register(
            "validation_latency_seconds",
            "Block time of a verdict minus block time of the result it checks",
            validation_latency.clone(),
        );
        let dispute_rounds = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        r.register(
            "dispute_rounds",
            "Bisection rounds played in each resolved dispute",
            dispute_rounds.clone(),
        );
        let slashes = Counters::default();
        r.register(
            "slashes",
            "Slashes in committed blocks, by reason",
            slashes.clone(),
        );
        let duties = Counters::default();
        r.register(
            "duties",
            "What this node did in the job pipeline (result, verdict_agree, \
             verdict_disagree, dispute_move, failed_run)",
            duties.clone(),
        );
        let gateway = Counters::default();
        r.register(
            "gateway_outputs",
            "Outputs of jobs opened through this node: verified, rejected, abandoned or unopened",
            gateway.clone(),
        );
        // Every series exists from the start, at zero: a dashboard shows "no slashes" rather
        // than "no data", and `rate()` sees the first increment.
        for stage in STAGES {
            let _ = jobs.get_or_create(&[("stage", stage)]);
        }
        for until in ["result", "closed"] {
            let _ = job_latency.get_or_create(&[("until", until)]);
        }
        for reason in SLASH_REASONS {
            let _ = slashes.get_or_create(&[("reason", reason)]);
        }
        Self {
            registry,
            libp2p,
            height: height_gauge,
            peers,
            mempool_txs,
            blocks,
            txs,
            block_interval,
            jobs,
            job_latency,
            validation_latency,
            dispute_rounds,
            slashes,
            duties,
            gateway,
            misbehaved,
            consensus_internal_errors,
            last_block: Mutex::new(None),
        }
    }

    /// The registry in OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in the crate, and
        // a scrape that shows what was written before it is still better than none.
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }

    /// A peer was caught sending provably wrong data.
    pub fn on_misbehaved(&self) {
        self.misbehaved.inc();
    }

    /// Connected peers now.
    pub fn set_peers(&self, peers: usize) {
        self.peers.set(i64::try_from(peers).unwrap_or(i64::MAX));
    }

    /// Transactions waiting now.
    pub fn set_mempool(&self, txs: usize) {
        self.mempool_txs.set(i64::try_from(txs).unwrap_or(i64::MAX));
    }

    /// A block committed at `height` with block time `time_ms`, carrying `txs` transactions
    /// and `events`. `measurements` must already include this block (the core records a block
    /// before it reports it).
    pub fn on_block(
        &self,
        height: Height,
        time_ms: u64,
        txs: usize,
        events: &[Event],
        measurements: &Measurements,
    ) {
        self.height.set(i64::try_from(height.0).unwrap_or(i64::MAX));
        self.blocks.inc();
        self.txs.inc_by(u64::try_from(txs).unwrap_or(u64::MAX));
        // A poisoned lock only means a recorder panicked mid-update; the value is a plain u64.
        // An interval is measured between consecutive blocks this node committed while it ran:
        // not from the genesis time (possibly long past) nor across a restart.
        let mut last = self
            .last_block
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((previous, previous_ms)) = *last
            && previous.0.checked_add(1) == Some(height.0)
        {
            self.block_interval
                .observe(seconds(time_ms.saturating_sub(previous_ms)));
        }
        *last = Some((height, time_ms));
        drop(last);
        for event in events {
            self.on_event(event, measurements);
        }
    }

    fn on_event(&self, event: &Event, measurements: &Measurements) {
        let stage = |s: &'static str| {
            self.jobs.get_or_create(&[("stage", s)]).inc();
        };
        match event {
            Event::JobOpened { .. } => stage("opened"),
            Event::ResultCommitted { job, .. } => {
                stage("result");
                if let Some(c) = measurements.job(job)
                    && let (Some(opened), Some(committed)) = (c.opened, c.committed)
                {
                    self.job_latency
                        .get_or_create(&[("until", "result")])
                        .observe(seconds(committed.1.saturating_sub(opened.1)));
                }
            }
            Event::CheckAssigned { .. } => stage("check_assigned"),
            Event::NoCheckerAvailable { .. } => stage("no_checker"),
            Event::VerdictPosted { job, agree, .. } => {
                stage(if *agree {
                    "verdict_agree"
                } else {
                    "verdict_disagree"
                });
                if let Some(ms) = measurements
                    .job(job)
                    .and_then(|c| c.validation_latency_ms())
                {
                    self.validation_latency.observe(seconds(ms));
                }
            }
            Event::VerdictMissed { .. } => stage("verdict_missed"),
            Event::CommitMissed { .. } => stage("commit_missed"),
            Event::DisputeOpened { .. } => stage("disputed"),
            Event::DisputeResolved { job, .. } => {
                stage("dispute_resolved");
                if let Some(c) = measurements.job(job) {
                    self.dispute_rounds.observe(f64::from(c.dispute_rounds));
                }
            }
            Event::Settled { job, .. } | Event::Refunded { job, .. } => {
                stage(if matches!(event, Event::Settled { .. }) {
                    "settled"
                } else {
                    "refunded"
                });
                if let Some(c) = measurements.job(job)
                    && let (Some(opened), Some(closed)) = (c.opened, c.closed)
                {
                    self.job_latency
                        .get_or_create(&[("until", "closed")])
                        .observe(seconds(closed.1.saturating_sub(opened.1)));
                }
            }
            Event::Slashed { reason, .. } => {
                self.slashes
                    .get_or_create(&[("reason", slash_reason(reason))])
                    .inc();
            }
            _ => {}
        }
    }

    /// Brings the pipeline's and the gateway's counters up to the core's running totals.
    pub fn sync_stats(&self, duties: &Stats, gateway: &GatewayStats, internal_errors: u64) {
        let seen = self.consensus_internal_errors.get();
        if internal_errors > seen {
            self.consensus_internal_errors
                .inc_by(internal_errors - seen);
        }
        let catch_up = |family: &Counters, label: (&'static str, &'static str), total: u64| {
            let counter = family.get_or_create(&[label]);
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        };
        catch_up(&self.duties, ("kind", "result"), duties.results_submitted);
        catch_up(
            &self.duties,
            ("kind", "verdict_agree"),
            duties.verdicts_agree,
        );
        catch_up(
            &self.duties,
            ("kind", "verdict_disagree"),
            duties.verdicts_disagree,
        );
        catch_up(&self.duties, ("kind", "dispute_move"), duties.dispute_moves);
        catch_up(&self.duties, ("kind", "watched"), duties.watched);
        catch_up(&self.duties, ("kind", "challenge"), duties.challenges);
        catch_up(&self.duties, ("kind", "failed_run"), duties.failed_runs);
        catch_up(&self.gateway, ("result", "verified"), gateway.verified);
        catch_up(&self.gateway, ("result", "rejected"), gateway.rejected);
        catch_up(&self.gateway, ("result", "abandoned"), gateway.abandoned);
        catch_up(&self.gateway, ("result", "unopened"), gateway.unopened);
    }
}

/// A slash reason as a label value.
pub fn slash_reason(reason: &SlashReason) -> &'static str {
    match reason {
        SlashReason::MissedCommit { .. } => "missed_commit",
        SlashReason::MissedVerdict { .. } => "missed_verdict",
        SlashReason::DisputeLost { .. } => "dispute_lost",
        SlashReason::Equivocation { .. } => "equivocation",
    }
}

/// Milliseconds as seconds. Exact for any span below 2^53 ms (285,000 years).
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    #[test]
    fn intervals_are_measured_between_consecutive_blocks_only() {
        let m = Metrics::new(Height(0));
        let none = Measurements::default();
        m.on_block(Height(1), 10_000, 0, &[], &none);
        m.on_block(Height(2), 10_500, 3, &[], &none);
        m.on_block(Height(3), 12_000, 0, &[], &none);
        // Not the next height (a gap, as after a restart): no interval.
        m.on_block(Height(5), 20_000, 0, &[], &none);
        let text = m.encode();
        assert_eq!(sample(&text, "attest_height"), "5");
        assert_eq!(sample(&text, "attest_blocks_total"), "4");
        assert_eq!(sample(&text, "attest_txs_total"), "3");
        assert_eq!(sample(&text, "attest_block_interval_seconds_count"), "2");
        assert_eq!(sample(&text, "attest_block_interval_seconds_sum"), "2.0");
    }

    #[test]
    fn ledger_events_feed_stage_counters_latencies_and_slashes() {
        use attest_protocol::{AccountId, Amount, Hash, JobId, SecretKey};
        let job = JobId([7; 32]);
        let who: AccountId = SecretKey::from_seed([1; 32]).public();
        let result = Event::ResultCommitted {
            job,
            provider: who,
            output_hash: Hash([0; 32]),
            trace_root: Hash([0; 32]),
            final_leaf: Hash([0; 32]),
            step_count: 1,
            tokens: 1,
            selected: true,
        };
        let verdict = Event::VerdictPosted {
            job,
            checker: who,
            agree: false,
        };
        let slash = Event::Slashed {
            who,
            amount: Amount(5),
            reason: SlashReason::DisputeLost { job },
            to_winner: None,
            to_treasury: Amount(5),
        };
        let m = Metrics::new(Height(0));
        let mut measured = Measurements::default();
        measured.observe(Height(2), 1_000, std::slice::from_ref(&result));
        m.on_block(Height(2), 1_000, 1, &[result], &measured);
        let later = [verdict, slash];
        measured.observe(Height(4), 3_500, &later);
        m.on_block(Height(4), 3_500, 1, &later, &measured);
        let text = m.encode();
        assert_eq!(sample(&text, "attest_jobs_total{stage=\"result\"}"), "1");
        assert_eq!(
            sample(&text, "attest_jobs_total{stage=\"verdict_disagree\"}"),
            "1"
        );
        assert_eq!(sample(&text, "attest_jobs_total{stage=\"opened\"}"), "0");
        assert_eq!(
            sample(&text, "attest_validation_latency_seconds_count"),
            "1"
        );
        assert_eq!(
            sample(&text, "attest_validation_latency_seconds_sum"),
            "2.5"
        );
        assert_eq!(
            sample(&text, "attest_slashes_total{reason=\"dispute_lost\"}"),
            "1"
        );
        assert_eq!(
            sample(&text, "attest_slashes_total{reason=\"equivocation\"}"),
            "0"
        );
    }
}
