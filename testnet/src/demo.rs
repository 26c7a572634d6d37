//! `attest demo`: a local testnet with one cheating node, a stream of jobs from funded
//! clients, an audit, and a verdict on the whole run.
//!
//! Steps: init a fresh testnet (node 3 cheats on every job it provides, `lazy`), bring it up,
//! submit the jobs through node 0's gateway with bounded concurrency (one worker per client
//! key, each following its job to a verified output), wait until every job is final, audit
//! the chain from genesis, print a summary, and take the testnet down (its directory is
//! purged). Exit status 0 only if the audit passes, every job of an honest provider settled,
//! the cheater was slashed and no honest node was.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

use attest_chain::audit::{AuditRange, AuditReport, Distribution, SlashEntry};
use attest_core::accel::Cheat;
use attest_node::api::BlockView;
use attest_node::api::jobs::{Assurance, JobView};
use attest_protocol::tx::CheckLevel;

use crate::client::{self, Api, SubmitArgs, Wait, code_of};
use crate::launcher;
use crate::layout::{CheaterSpec, InitOptions};

/// What the demo is asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the demo's testnet lives (purged at the end).
    pub dir: PathBuf,
    /// Jobs to submit.
    pub jobs: usize,
    /// Jobs in flight at once (one client key each).
    pub concurrency: usize,
    /// The first port (node i uses base + 2i and base + 2i + 1).
    pub base_port: u16,
    /// Keep the testnet running at the end instead of taking it down.
    pub keep: bool,
    /// How node 3 cheats (default `lazy:1.0`: on every job).
    pub cheat: Cheat,
    /// Every node's `watch_rate`.
    pub watch_rate: f64,
}

/// The demo's cheat unless told otherwise: node 3 returns a lazy (wrong) result on every job.
pub const DEFAULT_CHEAT: &str = "lazy:1.0";

/// The cheating node.
const CHEATER: usize = 3;
const NODES: usize = 4;

/// Runs the demo; `progress` gets one line per milestone unless `json`. Returns the summary
/// (`attest.demo/1`) and whether the run passed.
pub fn run(opts: &DemoOptions, json: bool, out: &mut impl Write) -> Result<(Value, bool)> {
    if !attest_core::accel::CHEATS_COMPILED {
        anyhow::bail!(
            "the demo runs a node that cheats on purpose, and this build has no cheat modes: \
             run it with `cargo run --release --features cheats -- demo`"
        );
    }
    let dir = launcher::absolute_dir(&opts.dir)?;
    let say = stamped(Instant::now(), json);
    let init = InitOptions {
        dir: dir.clone(),
        nodes: NODES,
        seed: 0,
        base_port: opts.base_port,
        clients: opts.concurrency.max(1),
        cheaters: vec![CheaterSpec {
            node: CHEATER,
            cheat: opts.cheat,
        }],
        watch_rate: opts.watch_rate,
        force: true,
    };
    let report = launcher::init(&init)?;
    start(&dir)?;
    say(
        out,
        format!(
            "{NODES} nodes ready (node {CHEATER} cheats: {}; every node watches {:.0}% of the \
             others' results)",
            opts.cheat,
            100.0 * opts.watch_rate
        ),
    )?;
    let node = |i: usize| {
        report
            .nodes
            .get(i)
            .ok_or_else(|| anyhow!("the demo's testnet has no node {i}"))
    };
    let gateway = node(0)?.api_url.clone();
    let cheater = node(CHEATER)?.account.clone();
    wait_for_adverts(&gateway, NODES)?;
    let providers: Vec<String> = report.nodes.iter().map(|n| n.account.clone()).collect();
    let (jobs, submit_failures) = submit_all(opts, &dir, &gateway, &providers, out, &say)?;
    say(
        out,
        format!("{} jobs submitted; waiting for settlement", jobs.len()),
    )?;
    let ids: Vec<String> = jobs.iter().map(|(_, id)| id.clone()).collect();
    let views = wait_final(&gateway, &ids, out, &say)?;
    let genesis = attest_node::genesis::load(&dir.join("genesis.json"))?;
    let (audit, audit_ok) =
        client::run_audit(&genesis, Some(&gateway), None, AuditRange::ALL, None)?;
    say(
        out,
        format!(
            "audit {}: {} blocks, {} txs, {} signatures",
            if audit_ok { "passed" } else { "FAILED" },
            audit.counts.blocks,
            audit.counts.txs,
            audit.counts.signatures_verified
        ),
    )?;
    let truth = Truth::of(&jobs, &views, &gateway, &dir)?;
    let run = Run {
        views: &views,
        truth: &truth,
        audit: &audit,
        audit_ok,
        cheater: &cheater,
        cheat: opts.cheat,
        submitted_wanted: opts.jobs,
        submit_failures: &submit_failures,
        gateway: &gateway,
    };
    let (summary, passed) = summarize(&run)?;
    stop(&dir, opts.keep, out, &say)?;
    Ok((summary, passed))
}

/// A progress printer: one line, stamped, unless the output is JSON.
pub type Say<'a> = dyn Fn(&mut dyn Write, String) -> Result<()> + 'a;

/// The progress printer of a run that began at `started`: each line stamped with the seconds
/// since, nothing at all if `json` (stdout then holds only the summary).
pub fn stamped(started: Instant, json: bool) -> impl Fn(&mut dyn Write, String) -> Result<()> {
    move |out: &mut dyn Write, line: String| -> Result<()> {
        if !json {
            writeln!(out, "[{:>5.1}s] {line}", started.elapsed().as_secs_f64())?;
            out.flush()?;
        }
        Ok(())
    }
}

/// Starts the nodes of the testnet just created in `dir` (this binary) and waits until each
/// has committed a block.
pub fn start(dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding the attest binary")?;
    let up = launcher::up(dir, Duration::from_secs(60), &exe)?;
    match up.failure {
        Some(why) => Err(anyhow!("the testnet did not come up: {why}")),
        None => Ok(()),
    }
}

/// Takes the testnet in `dir` down and purges it, unless `keep`; a node that would not stop is
/// reported as a warning, not an error (the run's figures stand).
pub fn stop(dir: &Path, keep: bool, out: &mut dyn Write, say: &Say<'_>) -> Result<()> {
    if !keep {
        let down = launcher::down(dir, Duration::from_secs(5), true)?;
        if let Some(why) = down.failure {
            say(out, format!("warning: taking the testnet down: {why}"))?;
        }
    }
    Ok(())
}

/// Times a job is offered again while the market is busy (200 ms apart: 30 s in all).
const RETRIES: usize = 150;

/// Whether `e` is the market's back-pressure: no provider has a free slot, the node's
/// mempool or gateway is full, its API is over a client's rate or its writes in flight
/// (`rate_limited`, `busy`), or the sender's nonce is not the one the node expects yet
/// (`stale_nonce`, `nonce_taken`, `nonce_too_far_ahead`).
pub fn is_busy(e: &anyhow::Error) -> bool {
    matches!(code_of(e), Some(code)
        if matches!(code, "no_free_slots" | "mempool_full" | "gateway_full" | "rate_limited" | "busy")
            || code.contains("nonce"))
}

/// Waits until the gateway's advert book holds all `nodes` providers (adverts go out every
/// 5 s).
pub fn wait_for_adverts(gateway: &str, nodes: usize) -> Result<()> {
    let api = Api::new(gateway)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if api.adverts()?.adverts.len() >= nodes {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(anyhow!(
        "the gateway's advert book did not fill within 30 s"
    ))
}

/// A job the demo submitted: its index in the run and its id.
type Submitted = (usize, String);

/// Submits `opts.jobs` jobs, `opts.concurrency` at a time (one worker per client key, each
/// following its job to a verified output before the next), round-robin over `providers`.
/// Returns the job ids, and why each job that failed to submit did.
fn submit_all(
    opts: &DemoOptions,
    dir: &Path,
    gateway: &str,
    providers: &[String],
    out: &mut impl Write,
    say: &Say<'_>,
) -> Result<(Vec<Submitted>, Vec<String>)> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for w in 0..opts.concurrency.max(1) {
            let (next, done, errors) = (&next, &done, &errors);
            let key = dir.join(format!("clients/client-{w}.key"));
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= opts.jobs {
                        return;
                    }
                    let args = SubmitArgs {
                        // Round-robin over the providers, so every one (the cheater too)
                        // gets its share and the spot-checks have something to find; a
                        // provider without an advert (banned) leaves the pick to the gateway
                        // (below, on `NoAdvert`).
                        provider: providers.get(i % providers.len().max(1)).cloned(),
                        ..job_args(i, gateway, &key)
                    };
                    // Busy providers (no free slot) and a full mempool are back-pressure,
                    // not failures: wait and ask again, a bounded number of times.
                    let mut args = args;
                    let mut result = client::submit(&args, true, &mut std::io::sink());
                    for _ in 0..RETRIES {
                        match &result {
                            Err(e) if is_busy(e) => {
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            // The provider has no advert now (banned, or its advert lapsed),
                            // or it was banned after its advert went out, before the job was
                            // admitted or before a block took it: let the gateway pick instead.
                            Err(e)
                                if code_of(e) == Some("refused_by_contract")
                                    || e.downcast_ref::<client::NeverCommitted>().is_some()
                                    || e.downcast_ref::<client::NoAdvert>().is_some() =>
                            {
                                args.provider = None;
                            }
                            _ => break,
                        }
                        result = client::submit(&args, true, &mut std::io::sink());
                    }
                    match result {
                        Ok(record) => {
                            if let Ok(mut d) = done.lock() {
                                d.push((i, record.job.to_string()));
                            }
                        }
                        Err(e) => {
                            if let Ok(mut errs) = errors.lock() {
                                errs.push(format!("job {i}: {e:#}"));
                            }
                        }
                    }
                }
            });
        }
        // Progress while the workers run.
        let mut shown = 0;
        while next.load(Ordering::SeqCst) < opts.jobs + opts.concurrency.max(1) {
            let n = done.lock().map_or(0, |d| d.len());
            if n >= shown + 25 || (n == opts.jobs && n != shown) {
                shown = n;
                let _ = say(
                    out,
                    format!("jobs with their output delivered: {n}/{}", opts.jobs),
                );
            }
            let finished = n + errors.lock().map_or(0, |e| e.len());
            if finished >= opts.jobs {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    if let Some(first) = errors.first() {
        say(
            out,
            format!("{} jobs failed to submit; first: {first}", errors.len()),
        )?;
    }
    Ok((done.into_inner().unwrap_or_default(), errors))
}

/// Job `i` of a run: a third on the tiny model, the rest on the base one, each input distinct,
/// 16 tokens, followed to a verified result (90 s at most); the gateway picks the provider.
pub fn job_args(i: usize, gateway: &str, key: &Path) -> SubmitArgs {
    let inputs = [
        "Hello, Attest",
        "verifiable compute",
        "the quick brown fox",
        "spot-check me",
    ];
    SubmitArgs {
        node: gateway.to_owned(),
        key: key.to_owned(),
        model: if i.is_multiple_of(3) {
            "attest-tiny-1b".into()
        } else {
            "attest-base-8b".into()
        },
        input: format!("{} #{i}", inputs[i % inputs.len()]).into_bytes(),
        max_tokens: 16,
        max_price: 1_000,
        // Short, so a job named for the cheater just before its ban is refunded within
        // seconds, not minutes.
        deadline_ms: 30_000,
        check: CheckLevel::Random,
        wait: Wait::Result,
        timeout: Duration::from_secs(120),
        provider: None,
    }
}

/// Polls every job until it is settled or refunded (at most 3 minutes).
pub fn wait_final(
    gateway: &str,
    jobs: &[String],
    out: &mut impl Write,
    say: &Say<'_>,
) -> Result<Vec<JobView>> {
    let api = Api::new(gateway)?;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = usize::MAX;
    loop {
        let mut views = Vec::with_capacity(jobs.len());
        for id in jobs {
            views.push(api.job(id)?);
        }
        let open = views
            .iter()
            .filter(|v| !matches!(v.phase.as_str(), "settled" | "refunded"))
            .count();
        say_final(out, say, jobs.len(), open, &mut last)?;
        if open == 0 || Instant::now() > deadline {
            return Ok(views);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Says how many of `total` jobs are final, when `open` changed since `last`.
pub fn say_final(
    out: &mut impl Write,
    say: &Say<'_>,
    total: usize,
    open: usize,
    last: &mut usize,
) -> Result<()> {
    if open != *last {
        say(out, format!("jobs final: {}/{total}", total - open))?;
        *last = open;
    }
    Ok(())
}

/// What the demo's client knows to be true about each result: it re-executes every job
/// here (the workload is bit-exact) and compares. A refunded job whose provider lost a
/// dispute was wrong by the contract's own re-execution of one step; a settled job is right
/// iff the output its gateway delivered (which matches the provider's committed hash) is the
/// one this re-execution gives.
struct Truth {
    /// Per job, in the order of the views: `Some(true)` wrong, `Some(false)` right, `None`
    /// unknown (settled, but its output never reached the gateway).
    wrong: Vec<Option<bool>>,
}

impl Truth {
    fn of(jobs: &[(usize, String)], views: &[JobView], gateway: &str, dir: &Path) -> Result<Self> {
        let api = Api::new(gateway)?;
        let key = dir.join("clients/client-0.key");
        let mut wrong = Vec::with_capacity(views.len());
        for ((i, id), view) in jobs.iter().zip(views) {
            let args = job_args(*i, gateway, &key);
            let job =
                attest_protocol::workload::Job::new(&args.model, &args.input, args.max_tokens)
                    .map_err(|e| anyhow!("job {i}: {e}"))?;
            let honest = attest_protocol::workload::execute(&job).output_hash;
            wrong.push(match (&view.assurance, view.phase.as_str()) {
                (Assurance::Overturned { .. }, _) => Some(true),
                (_, "settled") if view.output_held => {
                    Some(api.job_output(id)?.output_hash != honest)
                }
                _ => None,
            });
        }
        Ok(Self { wrong })
    }
}

/// Everything the summary is made from.
struct Run<'a> {
    views: &'a [JobView],
    truth: &'a Truth,
    audit: &'a AuditReport,
    audit_ok: bool,
    cheater: &'a str,
    cheat: Cheat,
    submitted_wanted: usize,
    /// Why jobs failed to submit, one line each.
    submit_failures: &'a [String],
    gateway: &'a str,
}

/// What happened to the wrong results: caught by a drawn checker or by a challenge (the
/// provider lost the dispute), or settled and paid; and what stood behind the right ones.
fn results_figures(views: &[JobView], truth: &Truth) -> Value {
    let mut f = BTreeMap::<&str, usize>::new();
    for (view, wrong) in views.iter().zip(&truth.wrong) {
        let key = match (wrong, &view.assurance) {
            (
                Some(true),
                Assurance::Overturned {
                    assigned_checker: true,
                    ..
                },
            ) => "wrong_caught_by_checker",
            (Some(true), Assurance::Overturned { .. }) => "wrong_caught_by_challenge",
            (Some(true), _) => "wrong_settled",
            (Some(false), Assurance::Checked { .. }) => "right_checked",
            (Some(false), Assurance::UpheldInDispute { .. }) => "right_upheld_in_dispute",
            (Some(false), _) => "right_unchecked",
            (None, _) => "unknown",
        };
        *f.entry(key).or_default() += 1;
    }
    let get = |k: &str| f.get(k).copied().unwrap_or(0);
    json!({
        "wrong": get("wrong_caught_by_checker") + get("wrong_caught_by_challenge") + get("wrong_settled"),
        "wrong_caught_by_checker": get("wrong_caught_by_checker"),
        "wrong_caught_by_challenge": get("wrong_caught_by_challenge"),
        "wrong_settled": get("wrong_settled"),
        "right_checked": get("right_checked"),
        "right_upheld_in_dispute": get("right_upheld_in_dispute"),
        "right_unchecked": get("right_unchecked"),
        "unknown": get("unknown"),
    })
}

/// The demo's verdict and figures (schema `attest.demo/1`), and whether it passed.
fn summarize(run: &Run<'_>) -> Result<(Value, bool)> {
    let Run {
        views,
        truth,
        audit,
        audit_ok,
        cheater,
        cheat,
        submitted_wanted,
        submit_failures,
        gateway,
    } = *run;
    let by_cheater = |v: &JobView| v.provider.to_string() == cheater;
    let honest_settled = views
        .iter()
        .filter(|v| !by_cheater(v))
        .all(|v| v.phase == "settled");
    let phase_count = |phase: &str| views.iter().filter(|v| v.phase == phase).count();
    let checked = views
        .iter()
        .filter(|v| v.timeline.as_ref().is_some_and(|t| t.verdict.is_some()))
        .count();
    let disputes = views
        .iter()
        .filter(|v| {
            v.timeline
                .as_ref()
                .is_some_and(|t| t.dispute_opened.is_some())
        })
        .count();
    let is_cheater = |s: &SlashEntry| s.account.to_string() == cheater;
    let slashed: Vec<Value> = audit
        .slashes
        .iter()
        .map(|s| json!({ "account": s.account, "amount": s.amount, "reason": s.reason }))
        .collect();
    let honest_slashed = audit.slashes.iter().filter(|s| !is_cheater(s)).count();
    let cheater_slashed = audit.slashes.iter().any(is_cheater);
    let false_accusations = audit
        .slashes
        .iter()
        .filter(|s| !is_cheater(s) && s.reason.contains("dispute"))
        .count();
    let block_time = block_times(gateway)?;
    let passed = audit_ok
        && honest_settled
        && cheater_slashed
        && honest_slashed == 0
        && views.len() == submitted_wanted;
    let summary = json!({
        "schema": "attest.demo/1",
        "passed": passed,
        "nodes": NODES,
        "cheater": { "node": CHEATER, "account": cheater, "mode": cheat.to_string() },
        "results": results_figures(views, truth),
        "jobs_submitted": views.len(),
        "submit_failures": submit_failures.len(),
        "first_submit_failure": submit_failures.first(),
        "jobs_settled": phase_count("settled"),
        "jobs_refunded": phase_count("refunded"),
        "jobs_checked": checked,
        "disputes": disputes,
        "slashed": slashed,
        "honest_slashed": honest_slashed,
        "false_accusations": false_accusations,
        "every_honest_job_settled": honest_settled,
        "validation_latency_ms": distribution(&audit.validation_latency_ms.all),
        "job_latency_ms": distribution(&audit.job_latency_ms.all),
        "block_time_ms": block_time,
        "audit": {
            "ok": audit_ok,
            "blocks": audit.counts.blocks,
            "txs": audit.counts.txs,
            "signatures_verified": audit.counts.signatures_verified,
        },
    });
    Ok((summary, passed))
}

/// `{count, p50, p90, p99, max}` from the audit's distribution.
fn distribution(d: &Distribution) -> Value {
    json!({ "count": d.count, "p50": d.p50_ms, "p90": d.p90_ms,
            "p99": d.p99_ms, "max": d.max_ms })
}

/// Block intervals over the whole chain, from the node's block headers.
fn block_times(gateway: &str) -> Result<Percentiles> {
    let api = Api::new(gateway)?;
    let latest = api.status()?.height.0;
    let times: Vec<u64> = read_blocks(&api, 1, latest)?
        .iter()
        .map(|b| b.time_ms)
        .collect();
    let gaps = times.windows(2).map(|w| w[1].saturating_sub(w[0]));
    Ok(percentiles(gaps))
}

/// The committed blocks `from..=to` as `GET /v1/blocks` shows them, page after page.
pub fn read_blocks(api: &Api, from: u64, to: u64) -> Result<Vec<BlockView>> {
    let mut blocks = Vec::new();
    let mut from = from.max(1);
    while from <= to {
        let page = api.blocks(from, to)?;
        if page.blocks.is_empty() {
            break;
        }
        blocks.extend(page.blocks);
        from = page.next.map_or(to + 1, |h| h.0);
    }
    Ok(blocks)
}

/// Significant decimal digits the latency histograms keep: every value below 2^18 (over four
/// minutes in ms) is recorded exactly, larger ones to within 0.001%.
const SIGNIFICANT_DIGITS: u8 = 5;

/// A sample's size, percentiles and maximum (`null`s when it is empty), as the demo and the
/// bench print them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Values in the sample.
    pub count: u64,
    /// The median.
    pub p50: Option<u64>,
    /// The 90th percentile.
    pub p90: Option<u64>,
    /// The 99th percentile.
    pub p99: Option<u64>,
    /// The largest value.
    pub max: Option<u64>,
}

/// `{count, p50, p90, p99, max}` of `values`, through an HDR histogram: percentile `q` is the
/// smallest recorded value with at least `q`% of the sample at or below it (nearest rank).
pub fn percentiles(values: impl IntoIterator<Item = u64>) -> Percentiles {
    let Ok(mut histogram) = Histogram::<u64>::new(SIGNIFICANT_DIGITS) else {
        return Percentiles::default();
    };
    for value in values {
        // Only a value past the histogram's reach (2^63) fails: it counts as the largest.
        if histogram.record(value).is_err() {
            histogram.saturating_record(value);
        }
    }
    if histogram.is_empty() {
        return Percentiles::default();
    }
    let at = |q: f64| Some(histogram.value_at_quantile(q));
    Percentiles {
        count: histogram.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: Some(histogram.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_exact() {
        assert_eq!(
            percentiles(1..=100),
            Percentiles {
                count: 100,
                p50: Some(50),
                p90: Some(90),
                p99: Some(99),
                max: Some(100),
            }
        );
        // Order does not matter, repeats count, and large block gaps are kept exactly.
        let p = percentiles([250_001, 7, 7, 7, 131_072, 0]);
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (6, Some(7), Some(250_001), Some(250_001), Some(250_001))
        );
        assert_eq!(percentiles([42]).p50, Some(42));
        // None at all: a count of 0 and nulls, as the JSON has always shown.
        let empty = percentiles(std::iter::empty());
        assert_eq!(
            serde_json::to_value(empty).unwrap(),
            json!({ "count": 0, "p50": null, "p90": null, "p99": null, "max": null })
        );
    }
}
