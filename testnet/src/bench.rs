//! `attest bench`: a load generator against a fresh local testnet (every node honest), and
//! what it measured (ARCHITECTURE.md, "What is measured").
//!
//! Steps: init a testnet in `--dir` with one funded client key per worker, bring it up, wait
//! for every provider's advert, then let `--concurrency` workers open `--jobs` jobs through
//! node 0's gateway. A worker does not wait for a job before opening the next: it keeps its
//! key's nonces locally ([`Opener`]) and opens jobs back to back, up to
//! [`PER_KEY_IN_FLIGHT`] of them without a verified output, while the market's own
//! back-pressure (`no_free_slots` when every provider's advertised slots are taken) holds it
//! back. Workers do not poll: one follower reads the gateway's event stream
//! (`/v1/events?kinds=result_committed,refunded`) and marks each job whose result committed or
//! that was refunded; its worker then fetches that job's output once (again a moment later if
//! the gateway has not fetched it from the provider yet). A job the stream has said nothing
//! about for [`SILENT_POLL`] is polled anyway, so a stream that lagged or broke costs time,
//! not jobs. When every job has its output (or failed), it
//! waits for every job to settle, reads the blocks of the run, and takes the testnet down.
//! Each node's memory and CPU (and the client's own) are read from `/proc` before the load,
//! at the last output and at the end.
//!
//! Two windows, both starting at the first submission: the results window ends at the last
//! verified output, the settlement window at the last settlement. A result settles only
//! `verdict_window_blocks` blocks after it commits (200 on a testnet: about 50 s once the
//! chain is idle again), so settled jobs per second over the settlement window is mostly that
//! fixed tail, not what the chain can carry; results per second is the market's throughput.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use serde_json::Value;

use attest_node::api::jobs::JobView;
use attest_node::shell::now_ms;

use crate::client::{Api, Opener, code_of};
use crate::demo::{self, Percentiles, Say, percentiles};
use crate::launcher;
use crate::layout::{self, InitOptions, Layout};
use crate::procs;

/// The `schema` of the summary.
pub const SCHEMA: &str = "attest.bench/1";

/// What the bench is asked for.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Where the bench's testnet lives (purged at the end unless `keep`).
    pub dir: PathBuf,
    /// Validators, each also a provider.
    pub nodes: usize,
    /// Jobs to open.
    pub jobs: usize,
    /// Workers, each with a funded client key of its own.
    pub concurrency: usize,
    /// The first port (node i uses base + 2i and base + 2i + 1).
    pub base_port: u16,
    /// Leave the testnet running at the end.
    pub keep: bool,
}

/// Jobs one key may have opened without a verified output yet. Within the 64 nonces the
/// mempool admits past a sender's committed one, so a key never runs too far ahead; the
/// market's slots hold the total lower than workers times this when providers are full.
pub const PER_KEY_IN_FLIGHT: usize = 32;
/// How long a worker waits before asking the market again after a busy answer.
const POLL: Duration = Duration::from_millis(150);
/// How long a worker idles when nothing it holds has news: the client latencies are this
/// coarse on top of the event stream's.
const IDLE: Duration = Duration::from_millis(10);
/// A job the event stream has said nothing about for this long is polled (once per this
/// long): the fallback for a stream that lagged, broke or was never opened.
const SILENT_POLL: Duration = Duration::from_secs(5);
/// How long a job may wait for the market (busy answers) before it counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an opened job may take to its verified output before it counts as failed: the
/// commit deadline (600 blocks) is 30 s to 150 s.
const RESULT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long an admitted job may stay off the ledger before it counts as lost (and the key's
/// nonce is read again, so the gap it left is filled by the next job).
const LOST_AFTER: Duration = Duration::from_secs(60);

/// Runs the bench; progress lines go to `out` unless `json`. Returns the summary
/// ([`SCHEMA`]) and whether the run was complete: every job opened, verified and settled.
pub fn run(opts: &BenchOptions, json: bool, out: &mut impl Write) -> Result<(Summary, bool)> {
    if opts.jobs == 0 || opts.concurrency == 0 || opts.concurrency > layout::MAX_CLIENTS {
        bail!(
            "--jobs must be at least 1 and --concurrency 1 to {}",
            layout::MAX_CLIENTS
        );
    }
    let say = demo::stamped(Instant::now(), json);
    let dir = launcher::absolute_dir(&opts.dir)?;
    launcher::init(&InitOptions {
        dir: dir.clone(),
        nodes: opts.nodes,
        seed: 0,
        base_port: opts.base_port,
        clients: opts.concurrency,
        cheaters: Vec::new(),
        // No watchers: the bench measures the market's own throughput.
        watch_rate: 0.0,
        force: true,
    })?;
    // From here on the nodes are ours: they come down however the run ends.
    let measured = demo::start(&dir).and_then(|()| measure(opts, &dir, out, &say));
    let stopped = demo::stop(&dir, opts.keep, out, &say);
    // The run's own error, if any, says more than a failure to stop after it.
    let summary = measured?;
    stopped?;
    let complete = summary.complete;
    Ok((summary, complete))
}

/// The run itself, on a testnet that is up.
fn measure(
    opts: &BenchOptions,
    dir: &Path,
    out: &mut impl Write,
    say: &Say<'_>,
) -> Result<Summary> {
    let layout = Layout::load(dir)?;
    let gateway = layout.nodes[0].api_url.clone();
    demo::wait_for_adverts(&gateway, opts.nodes)?;
    say(
        out,
        format!(
            "{} nodes ready; {} jobs from {} clients through {gateway}",
            opts.nodes, opts.jobs, opts.concurrency
        ),
    )?;
    let api = Api::new(&gateway)?;
    let first_height = api.status()?.height.0 + 1;
    let homes: Vec<PathBuf> = (0..layout.nodes.len())
        .map(|i| layout.home(dir, i))
        .collect();
    let before = sample_all(&homes);
    let follower = std::sync::Arc::new(Follower {
        max_jobs: opts.jobs,
        ..Follower::default()
    });
    let reader = {
        let (follower, gateway) = (follower.clone(), gateway.clone());
        std::thread::spawn(move || follower.follow(&gateway))
    };
    let load = Load::run(opts, dir, &gateway, &follower, out, say)?;
    let at_results = sample_all(&homes);
    say(
        out,
        format!(
            "{} jobs with their output delivered, {} failed; waiting for settlement",
            load.results.len(),
            load.failures.len()
        ),
    )?;
    // Every result has committed by now, and an unchecked one settles a verdict window
    // later: the follower's records say when each job is final, without a request per job.
    let records = follower.wait_final(&gateway, &load.on_ledger(), out, say)?;
    follower.stop.store(true, Ordering::SeqCst);
    if let Ok(Err(e)) = reader.join() {
        say(out, format!("the event stream ended: {e:#}"))?;
    }
    let after = sample_all(&homes);
    let last_height = api.status()?.height.0;
    let blocks: Vec<(u64, usize)> = demo::read_blocks(&api, first_height, last_height)?
        .iter()
        .map(|b| (b.time_ms, b.txs.len()))
        .collect();
    let resources = Resources {
        homes: &homes,
        before: &before,
        at_results: &at_results,
        after: &after,
    };
    summarize(opts, &load, &records, &blocks, &resources)
}

/// A job opened and not yet done with.
#[derive(Debug)]
struct Flying {
    id: String,
    posted: Instant,
    on_ledger: bool,
    /// When it was last polled without news from the stream.
    polled: Instant,
    /// After news, the output was not at the gateway yet: when to ask again, and the wait
    /// before that (doubling from [`RETRY_FIRST`]).
    retry: Option<(Instant, Duration)>,
}

/// The first wait before asking again for an output the stream announced but the gateway
/// had not fetched yet; it doubles up to [`SILENT_POLL`].
const RETRY_FIRST: Duration = Duration::from_millis(20);

/// Jobs the event stream said have news (a committed result or a refund), until their worker
/// takes them. Each entry is one of the run's jobs and is removed when taken, so the set is
/// bounded by the jobs in flight.
type News = Mutex<std::collections::BTreeSet<String>>;

/// One job as the ledger's events told it: block times (ms) of its stages, and its faults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Record {
    opened: Option<u64>,
    committed: Option<u64>,
    verdict: Option<u64>,
    closed: Option<u64>,
    settled: bool,
    refunded: bool,
    /// Slash reasons tied to the job (`missed_commit`, `missed_verdict`, `dispute_lost`).
    faults: Vec<String>,
    /// The output hash of the committed result, as the ledger's event gave it (hex).
    output_hash: Option<String>,
}

impl Record {
    /// The same from a job's view (the fallback when the stream missed its events; a job
    /// long out of the live state has no timeline, only its phase).
    fn from_view(v: &JobView) -> Self {
        let t = v.timeline.as_ref();
        Self {
            opened: t.and_then(|t| t.opened.map(|s| s.time_ms)),
            committed: t.and_then(|t| t.committed.map(|s| s.time_ms)),
            verdict: t.and_then(|t| t.verdict.map(|s| s.time_ms)),
            closed: t.and_then(|t| t.closed.map(|s| s.time_ms)),
            settled: v.phase == "settled",
            refunded: v.phase == "refunded",
            faults: v.faults.iter().map(|f| f.reason.reason.clone()).collect(),
            output_hash: v.result.as_ref().map(|r| r.output_hash.to_string()),
        }
    }

    fn is_final(&self) -> bool {
        self.settled || self.refunded
    }

    /// Applies one event of kind `event` (its JSON `data`).
    fn apply(&mut self, event: &str, data: &Value) {
        let at = data["time_ms"].as_u64();
        match event {
            "job_opened" => self.opened = at,
            "result_committed" => {
                self.committed = at;
                self.output_hash = data["output_hash"].as_str().map(str::to_owned);
            }
            "verdict_posted" => self.verdict = at,
            "settled" => (self.closed, self.settled) = (at, true),
            "refunded" => (self.closed, self.refunded) = (at, true),
            "slashed" => {
                if let Some(reason) = data["reason"].as_str() {
                    self.faults.push(reason.to_owned());
                }
            }
            _ => {}
        }
    }
}

/// The event kinds the follower reads. Block frames come with every block, idle or not, so
/// the follower sees `stop` within a block of it being set.
const FOLLOWED: &str = "block,job_opened,result_committed,verdict_posted,settled,refunded,slashed";

/// The gateway's event stream as the bench reads it: each job's record, and news for the
/// workers. Records are kept for at most `max_jobs` jobs (the run's).
#[derive(Debug, Default)]
struct Follower {
    news: News,
    records: Mutex<BTreeMap<String, Record>>,
    max_jobs: usize,
    /// Set when the stream lost frames (`lagged`) or ended: records may be incomplete.
    incomplete: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
}

impl Follower {
    /// Reads the stream until `stop` is set or it ends (then workers fall back to polling,
    /// and the records to the API).
    fn follow(&self, gateway: &str) -> Result<()> {
        let api = Api::new(gateway)?;
        let result = self.read(&api);
        self.incomplete.store(true, Ordering::SeqCst);
        result
    }

    fn read(&self, api: &Api) -> Result<()> {
        for line in api.events(&format!("/v1/events?kinds={FOLLOWED}"))? {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let line = line?;
            if line.event == "lagged" {
                self.incomplete.store(true, Ordering::SeqCst);
                continue;
            }
            let data: Value = serde_json::from_str(&line.data)
                .map_err(|e| anyhow!("event {}: {e}", line.event))?;
            let Some(job) = data["job"].as_str() else {
                continue;
            };
            if let Ok(mut records) = self.records.lock()
                && (records.len() < self.max_jobs || records.contains_key(job))
            {
                records
                    .entry(job.to_owned())
                    .or_default()
                    .apply(&line.event, &data);
            }
            if matches!(line.event.as_str(), "result_committed" | "refunded")
                && let Ok(mut n) = self.news.lock()
            {
                n.insert(job.to_owned());
            }
        }
        Ok(())
    }

    /// The committed output hash of `job`, if the stream brought its result.
    fn output_hash(&self, job: &str) -> Option<String> {
        self.records.lock().ok()?.get(job)?.output_hash.clone()
    }

    /// Waits until every job in `jobs` is final in the records (at most 3 minutes), then
    /// asks the API for any that are not: the records of `jobs`, in order.
    fn wait_final(
        &self,
        gateway: &str,
        jobs: &[String],
        out: &mut impl Write,
        say: &Say<'_>,
    ) -> Result<Vec<Record>> {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut last = usize::MAX;
        loop {
            let open = {
                let records = self
                    .records
                    .lock()
                    .map_err(|_| anyhow!("records poisoned"))?;
                jobs.iter()
                    .filter(|j| !records.get(*j).is_some_and(Record::is_final))
                    .count()
            };
            demo::say_final(out, say, jobs.len(), open, &mut last)?;
            let gave_up = Instant::now() > deadline || self.incomplete.load(Ordering::SeqCst);
            if open == 0 || gave_up {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let api = Api::new(gateway)?;
        let mut records = self
            .records
            .lock()
            .map_err(|_| anyhow!("records poisoned"))?;
        jobs.iter()
            .map(|id| match records.get(id) {
                Some(r) if r.is_final() => Ok(r.clone()),
                _ => {
                    let mut fetched = Record::from_view(&api.job(id)?);
                    if let Some(seen) = records.remove(id) {
                        // What the stream saw stays; the view fills what it missed.
                        fetched.opened = seen.opened.or(fetched.opened);
                        fetched.committed = seen.committed.or(fetched.committed);
                        fetched.verdict = seen.verdict.or(fetched.verdict);
                    }
                    Ok(fetched)
                }
            })
            .collect()
    }
}

/// What the workers found, shared among them.
#[derive(Debug, Default)]
struct Load {
    /// Wall-clock ms of the first submission.
    first_post_ms: Option<u64>,
    /// Jobs the node admitted.
    opened: usize,
    /// Wall-clock ms of the last verified output.
    last_result_ms: u64,
    /// Job ids with a verified output, and the client's latency to it: from the quote of the
    /// attempt the node admitted (busy answers before it are not counted) to the output,
    /// checked here against the ledger.
    results: Vec<(String, u64)>,
    /// Jobs refunded before they had an output.
    refunded: Vec<String>,
    /// Jobs the node admitted that never produced an output (the id, if it reached the
    /// ledger), and why.
    failures: Vec<(Option<String>, String)>,
    /// Busy answers from the market (each one waited [`POLL`] and asked again).
    busy: usize,
}

impl Load {
    /// Runs the workers to the end and collects what they found.
    fn run(
        opts: &BenchOptions,
        dir: &Path,
        gateway: &str,
        follower: &Follower,
        out: &mut impl Write,
        say: &Say<'_>,
    ) -> Result<Self> {
        let next = AtomicUsize::new(0);
        let running = AtomicUsize::new(opts.concurrency);
        let load = Mutex::new(Load::default());
        std::thread::scope(|scope| {
            for w in 0..opts.concurrency {
                let key = dir.join(format!("{}/client-{w}.key", layout::CLIENTS_DIR));
                let (next, running, load) = (&next, &running, &load);
                scope.spawn(move || {
                    let mut worker = Worker {
                        jobs: opts.jobs,
                        next,
                        load,
                        follower,
                        gateway,
                        key,
                    };
                    if let Err(e) = worker.run() {
                        worker.with(|l| l.failures.push((None, format!("worker {w}: {e:#}"))));
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            }
            let mut shown = 0;
            while running.load(Ordering::SeqCst) > 0 {
                let n = load.lock().map_or(0, |l| l.results.len());
                if n >= shown + 50 {
                    shown = n;
                    let _ = say(out, format!("outputs delivered: {n}/{}", opts.jobs));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        load.into_inner()
            .map_err(|_| anyhow!("a bench worker panicked"))
    }

    /// The jobs that reached the ledger, to wait for.
    fn on_ledger(&self) -> Vec<String> {
        let failed = self.failures.iter().filter_map(|(id, _)| id.clone());
        let done = self.results.iter().map(|(id, _)| id.clone());
        done.chain(self.refunded.iter().cloned())
            .chain(failed)
            .collect()
    }
}

/// One client key's share of the load.
struct Worker<'a> {
    jobs: usize,
    next: &'a AtomicUsize,
    load: &'a Mutex<Load>,
    follower: &'a Follower,
    gateway: &'a str,
    key: PathBuf,
}

impl Worker<'_> {
    fn with<T>(&self, f: impl FnOnce(&mut Load) -> T) -> Option<T> {
        self.load.lock().ok().map(|mut l| f(&mut l))
    }

    /// Opens jobs back to back while the market takes them and the key has room, polls the
    /// open ones, and returns when every job it took has an end.
    fn run(&mut self) -> Result<()> {
        let mut opener = Opener::new(self.gateway, &self.key)?;
        let mut flying: Vec<Flying> = Vec::new();
        // A job taken from the queue that the market has not accepted yet, and since when.
        let mut waiting: Option<(usize, Instant)> = None;
        // After a busy answer, the market is asked again no sooner than this.
        let mut busy_until = Instant::now();
        loop {
            let mut progressed = false;
            while flying.len() < PER_KEY_IN_FLIGHT && Instant::now() >= busy_until {
                let Some((i, since)) = waiting.take().or_else(|| self.take()) else {
                    break;
                };
                let args = demo::job_args(i, self.gateway, &self.key);
                let posted = Instant::now();
                let posted_ms = now_ms();
                match opener.open(&args) {
                    Ok(opened) => {
                        self.with(|l| {
                            l.first_post_ms = l.first_post_ms.or(Some(posted_ms));
                            l.opened += 1;
                        });
                        flying.push(Flying {
                            id: opened.job.to_string(),
                            posted,
                            on_ledger: false,
                            polled: posted,
                            retry: None,
                        });
                        progressed = true;
                    }
                    Err(e) if demo::is_busy(&e) && since.elapsed() < OPEN_TIMEOUT => {
                        self.with(|l| l.busy += 1);
                        waiting = Some((i, since));
                        busy_until = Instant::now() + POLL;
                        break;
                    }
                    Err(e) => {
                        self.with(|l| l.failures.push((None, format!("job {i}: {e:#}"))));
                    }
                }
            }
            progressed |= self.poll(opener.api(), &mut flying);
            if flying
                .iter()
                .any(|f| !f.on_ledger && f.posted.elapsed() > LOST_AFTER)
            {
                opener.resync()?;
                self.give_up_lost(&mut flying);
            }
            if flying.is_empty()
                && waiting.is_none()
                && self.next.load(Ordering::SeqCst) >= self.jobs
            {
                return Ok(());
            }
            if !progressed {
                std::thread::sleep(IDLE);
            }
        }
    }

    /// The next job of the run, if any are left.
    fn take(&self) -> Option<(usize, Instant)> {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        (i < self.jobs).then(|| (i, Instant::now()))
    }

    /// Asks for the output of each open job the event stream has news of (and of each it has
    /// been silent about for [`SILENT_POLL`]); answers whether any job came to an end. A job
    /// without an output [`RESULT_TIMEOUT`] after it was opened has failed (with the last
    /// error, if asking for it failed: a dead gateway ends every job that way, not the run).
    fn poll(&self, api: &Api, flying: &mut Vec<Flying>) -> bool {
        let before = flying.len();
        let mut kept = Vec::with_capacity(before);
        for mut job in flying.drain(..) {
            let news = self
                .follower
                .news
                .lock()
                .map(|mut n| n.remove(&job.id))
                .unwrap_or(true);
            let retry_due = job.retry.is_some_and(|(at, _)| Instant::now() >= at);
            if !news && !retry_due && job.polled.elapsed() < SILENT_POLL {
                kept.push(job);
                continue;
            }
            job.polled = Instant::now();
            let state = output_of(api, &job.id, self.follower.output_hash(&job.id));
            // The result committed, but the gateway has not fetched the output yet: ask again
            // a little later, waiting twice as long each time.
            if (news || job.retry.is_some())
                && matches!(state, Ok(Output::NotYet) | Ok(Output::NotOnLedger))
            {
                let wait = job
                    .retry
                    .map_or(RETRY_FIRST, |(_, w)| (w * 2).min(SILENT_POLL));
                job.retry = Some((Instant::now() + wait, wait));
            }
            job.on_ledger |= !matches!(state, Ok(Output::NotOnLedger) | Err(_));
            let ended = |why: String| (job.on_ledger.then(|| job.id.clone()), why);
            match state {
                Ok(Output::Verified) => {
                    let ms = u64::try_from(job.posted.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let at = now_ms();
                    self.with(|l| {
                        l.last_result_ms = l.last_result_ms.max(at);
                        l.results.push((job.id, ms));
                    });
                }
                Ok(Output::Refunded) => {
                    self.with(|l| l.refunded.push(job.id));
                }
                Ok(Output::Rejected(why)) => {
                    self.with(|l| l.failures.push(ended(why)));
                }
                Err(e) if job.posted.elapsed() > RESULT_TIMEOUT => {
                    self.with(|l| l.failures.push(ended(format!("job {}: {e:#}", job.id))));
                }
                Ok(_) if job.on_ledger && job.posted.elapsed() > RESULT_TIMEOUT => {
                    let why = format!("job {}: no output delivered in {RESULT_TIMEOUT:?}", job.id);
                    self.with(|l| l.failures.push(ended(why)));
                }
                Ok(Output::NotOnLedger | Output::NotYet) | Err(_) => kept.push(job),
            }
        }
        *flying = kept;
        flying.len() < before
    }

    /// Jobs admitted long ago and still not on the ledger were dropped somewhere (a mempool
    /// bound, or refused when their block was built): they count as failed.
    fn give_up_lost(&self, flying: &mut Vec<Flying>) {
        flying.retain(|f| {
            let lost = !f.on_ledger && f.posted.elapsed() > LOST_AFTER;
            if lost {
                let why = format!("job {}: not on the ledger after {LOST_AFTER:?}", f.id);
                self.with(|l| l.failures.push((None, why)));
            }
            !lost
        });
    }
}

/// Where a job's output stands, as its gateway and the ledger say.
enum Output {
    /// The job is not on the ledger yet (its `OpenJob` waits in a mempool).
    NotOnLedger,
    /// On the ledger, no output yet.
    NotYet,
    /// The output's bytes hash to the `output_hash` the ledger holds for the job.
    Verified,
    /// Refunded: there will be no output.
    Refunded,
    /// The gateway served an output that does not match the ledger.
    Rejected(String),
}

/// Asks the gateway for the job's output; when it has one, checks it here: its bytes must
/// hash to the output hash in the job's committed result on the ledger.
fn output_of(api: &Api, job: &str, committed: Option<String>) -> Result<Output> {
    let served = match api.job_output(job) {
        Ok(v) => v,
        Err(e) => {
            return match (crate::client::status_of(&e), code_of(&e)) {
                (Some(404), Some("refunded")) => Ok(Output::Refunded),
                (Some(404), Some("not_found")) => Ok(Output::NotOnLedger),
                (Some(404), _) => Ok(Output::NotYet),
                _ => Err(e),
            };
        }
    };
    let bytes =
        hex::decode(&served.output_hex).map_err(|e| anyhow!("job {job}: output_hex: {e}"))?;
    let here = attest_protocol::workload::output_hash(&bytes).to_string();
    // The committed result's hash from the ledger's event, or from the job's view. The
    // ledger forgets a result's hashes once the job settles; a job that settled before this
    // poll saw it was never disputed, and its gateway checked the bytes on arrival.
    let committed = match committed {
        Some(h) => Some(h),
        None => api.job(job)?.result.map(|r| r.output_hash.to_string()),
    };
    Ok(match committed {
        Some(hash) if hash != here => Output::Rejected(format!(
            "job {job}: the output hashes to {here}, the ledger holds {hash}"
        )),
        _ => Output::Verified,
    })
}

/// A node's (or the client's) memory and CPU at one moment, from `/proc/PID`.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    /// When the sample was taken (wall-clock ms).
    at_ms: u64,
    /// Resident memory, KiB (`VmRSS`).
    rss_kib: u64,
    /// The most resident memory so far, KiB (`VmHWM`).
    peak_kib: u64,
    /// User and system CPU time, clock ticks (`utime + stime`).
    cpu_ticks: u64,
    /// Seconds the process has run.
    age_s: f64,
}

/// Clock ticks per second, as `/proc` counts CPU time (`getconf CLK_TCK`; 100 on Linux unless
/// the kernel was built otherwise).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Reads `/proc/PID/status` and `/proc/PID/stat`; `None` if the process is gone.
fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: fields are counted after the last ')', since comm may hold
    // anything; there utime and stime are fields 14 and 15 of the whole line, starttime 22.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = clock_ticks() as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(ProcSample {
        at_ms: now_ms(),
        rss_kib: kib("VmRSS:")?,
        peak_kib: kib("VmHWM:").unwrap_or(0),
        cpu_ticks: field(14)? + field(15)?,
        age_s: uptime - field(22)? as f64 / ticks,
    })
}

/// One sample per node (its pid from the pid file in its home, as `procs` finds it), then
/// this process's own.
fn sample_all(homes: &[PathBuf]) -> Vec<Option<ProcSample>> {
    let mut samples: Vec<Option<ProcSample>> = homes
        .iter()
        .map(|home| procs::running_pid(home).and_then(sample))
        .collect();
    samples.push(sample(std::process::id()));
    samples
}

/// The three rounds of samples: before the load, when the last output came, at the end.
struct Resources<'a> {
    homes: &'a [PathBuf],
    before: &'a [Option<ProcSample>],
    at_results: &'a [Option<ProcSample>],
    after: &'a [Option<ProcSample>],
}

impl Resources<'_> {
    /// One row per node and one for the client: memory at the end, CPU in seconds over the
    /// process's life and as a share of one core over its life, over the results window and
    /// over the whole run.
    fn report(&self) -> ResourceReport {
        let ticks = clock_ticks() as f64;
        let row = |i: usize| -> Usage {
            let (Some(b), Some(r), Some(a)) = (self.before[i], self.at_results[i], self.after[i])
            else {
                return Usage {
                    sampled: Some(false),
                    figures: None,
                };
            };
            let pct = |from: ProcSample, to: ProcSample| {
                let wall = to.at_ms.saturating_sub(from.at_ms) as f64 / 1000.0;
                let cpu = to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64 / ticks;
                round1(100.0 * cpu / wall.max(0.001))
            };
            let figures = UsageFigures {
                rss_mib: round1(a.rss_kib as f64 / 1024.0),
                rss_peak_mib: round1(a.peak_kib as f64 / 1024.0),
                cpu_s: round1(a.cpu_ticks as f64 / ticks),
                cpu_pct_lifetime: round1(100.0 * a.cpu_ticks as f64 / ticks / a.age_s.max(0.001)),
                cpu_pct_results_window: pct(b, r),
                cpu_pct_run: pct(b, a),
            };
            Usage {
                sampled: None,
                figures: Some(figures),
            }
        };
        let nodes = (self.homes.iter().enumerate())
            .map(|(i, home)| NodeUsage {
                node: i,
                pid: procs::read_pid(home),
                usage: row(i),
            })
            .collect();
        ResourceReport {
            nodes,
            client: row(self.homes.len()),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `count / seconds`, to two decimals; `None` (`null`) when the window is empty.
fn rate(count: usize, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| ((count as f64 / seconds) * 100.0).round() / 100.0)
}

/// Events per second between the 10th and the 90th percentile of their times (ms): the
/// events strictly after the first of those and up to the second, over the time between
/// them. `None` with fewer than 10 events or no time between the two.
fn steady_rate(mut times_ms: Vec<u64>) -> Option<f64> {
    let n = times_ms.len();
    if n < 10 {
        return None;
    }
    times_ms.sort_unstable();
    let (lo, hi) = (n / 10, n - 1 - n / 10);
    let seconds = times_ms[hi].saturating_sub(times_ms[lo]) as f64 / 1000.0;
    rate(hi - lo, seconds)
}

/// Of the blocks given as `(time_ms, transactions)`, those with `from_ms <= time_ms <= to_ms`:
/// how many, their transactions and their block intervals.
fn window(blocks: &[(u64, usize)], from_ms: u64, to_ms: u64) -> (usize, usize, Vec<u64>) {
    let inside: Vec<(u64, usize)> = blocks
        .iter()
        .copied()
        .filter(|(t, _)| (from_ms..=to_ms).contains(t))
        .collect();
    let txs = inside.iter().map(|(_, n)| n).sum();
    let gaps = inside
        .windows(2)
        .map(|w| w[1].0.saturating_sub(w[0].0))
        .collect();
    (inside.len(), txs, gaps)
}

/// A timeline stage's block time, picked out of a job's timeline.
type Stage = fn(&Record) -> Option<u64>;

/// Differences of two timeline stages' block times, over the jobs that reached both.
fn stage_gaps(records: &[Record], from: Stage, to: Stage) -> Vec<u64> {
    records
        .iter()
        .filter_map(|r| Some(to(r)?.saturating_sub(from(r)?)))
        .collect()
}

/// One stage's time of every job that reached it.
fn stage_times(records: &[Record], stage: Stage) -> Vec<u64> {
    records.iter().filter_map(stage).collect()
}

/// What `attest bench` measured, schema [`SCHEMA`]: [`Summary::to_json`] is what `--json`
/// prints, [`print`] what a person reads.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Whether every job got a verified output and settled.
    pub complete: bool,
    /// `debug` or `release`: the build that ran.
    pub build: &'static str,
    /// Validators, each also a provider.
    pub nodes: usize,
    /// Jobs asked for.
    pub jobs: usize,
    /// Workers.
    pub concurrency: usize,
    /// Jobs the node admitted.
    pub jobs_opened: usize,
    /// Jobs with a verified output.
    pub jobs_with_result: usize,
    /// Jobs settled.
    pub jobs_settled: usize,
    /// Jobs refunded.
    pub jobs_refunded: usize,
    /// Jobs that failed.
    pub jobs_failed: usize,
    /// Why the first of them failed.
    pub first_failure: Option<String>,
    /// Jobs a checker gave a verdict on.
    pub jobs_checked: usize,
    /// Faults on the jobs, by reason.
    pub faults: BTreeMap<String, usize>,
    /// Busy answers from the market.
    pub market_busy_answers: usize,
    /// The two windows, in seconds.
    pub window_s: Windows,
    /// Jobs and transactions per second.
    pub throughput: Throughput,
    /// Blocks and transactions in the windows.
    pub blocks: BlockCounts,
    /// Latencies, ms.
    pub latency_ms: Latencies,
    /// Block intervals in the results window, ms.
    pub block_time_ms_results_window: Percentiles,
    /// Each node's and the client's memory and CPU.
    pub resources: ResourceReport,
    /// How to read the settlement figures.
    pub note: String,
}

impl Summary {
    /// The summary as `--json` prints it: one object, its keys sorted.
    pub fn to_json(&self) -> Result<Value> {
        Ok(serde_json::to_value(self)?)
    }
}

/// The results window (first submission to last output delivered) and the settlement window
/// (to the last settlement), in seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Windows {
    /// The results window.
    pub results: f64,
    /// The settlement window.
    pub settlement: f64,
}

/// Per second, over the windows (`null` for an empty window).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    /// Jobs with a verified output per second of the results window.
    pub result_jobs_per_s: Option<f64>,
    /// Jobs settled per second of the settlement window.
    pub settled_jobs_per_s: Option<f64>,
    /// Committed transactions per second of the results window.
    pub txs_per_s_results_window: Option<f64>,
    /// Committed transactions per second of the settlement window.
    pub txs_per_s_settlement_window: Option<f64>,
    /// Results committed per second at steady state: between the 10th and the 90th
    /// percentile of the results' block times, so the ramp-up and the last stragglers are
    /// out ([`steady_rate`]).
    pub result_jobs_per_s_steady: Option<f64>,
    /// Settlements per second at steady state, the same way over the settlements' block
    /// times: what the chain settles while it is loaded, without the fixed verdict window
    /// that separates the last result from its settlement.
    pub settled_jobs_per_s_steady: Option<f64>,
}

/// Blocks and transactions committed in the windows.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BlockCounts {
    /// Blocks in the results window.
    pub results_window: usize,
    /// Blocks in the settlement window.
    pub settlement_window: usize,
    /// Transactions in the results window.
    pub txs_results_window: usize,
    /// Transactions in the settlement window.
    pub txs_settlement_window: usize,
}

/// The latency distributions, ms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latencies {
    /// Submission (the admitted attempt's quote) to verified output, measured by the client.
    pub job_result_client: Percentiles,
    /// Opened to result committed, in block time.
    pub job_result_ledger: Percentiles,
    /// Opened to settled, in block time.
    pub job_settlement_ledger: Percentiles,
    /// Result committed to verdict, in block time.
    pub validation_ledger: Percentiles,
}

/// Memory and CPU of every node and of the client.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    /// One row per node.
    pub nodes: Vec<NodeUsage>,
    /// The client (this process).
    pub client: Usage,
}

/// A node's row.
#[derive(Debug, Clone, Serialize)]
pub struct NodeUsage {
    /// The node's index.
    pub node: usize,
    /// Its process, as its pid file says.
    pub pid: Option<u32>,
    /// What it used.
    #[serde(flatten)]
    pub usage: Usage,
}

/// A process's memory and CPU: the figures, or `sampled: false` if it could not be sampled
/// every time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// `Some(false)` when it was not sampled (and there are no figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled: Option<bool>,
    /// The figures, when it was.
    #[serde(flatten)]
    pub figures: Option<UsageFigures>,
}

/// A sampled process's memory (MiB) and CPU (seconds, and % of one core).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageFigures {
    /// Resident memory at the end.
    pub rss_mib: f64,
    /// The most resident memory.
    pub rss_peak_mib: f64,
    /// CPU time over its life.
    pub cpu_s: f64,
    /// CPU over its life.
    pub cpu_pct_lifetime: f64,
    /// CPU over the results window.
    pub cpu_pct_results_window: f64,
    /// CPU over the whole run.
    pub cpu_pct_run: f64,
}

/// The summary ([`SCHEMA`]).
fn summarize(
    opts: &BenchOptions,
    load: &Load,
    records: &[Record],
    blocks: &[(u64, usize)],
    resources: &Resources<'_>,
) -> Result<Summary> {
    let opened: Stage = |r| r.opened;
    let committed: Stage = |r| r.committed;
    let closed: Stage = |r| r.closed;
    let verdict: Stage = |r| r.verdict;
    let settled: Vec<&Record> = records.iter().filter(|r| r.settled).collect();
    let first = load.first_post_ms.unwrap_or(0);
    let last_settled = settled
        .iter()
        .filter_map(|r| r.closed)
        .max()
        .unwrap_or(first);
    let results_s = load.last_result_ms.saturating_sub(first) as f64 / 1000.0;
    let settle_s = last_settled.saturating_sub(first) as f64 / 1000.0;
    let (blocks_r, txs_r, gaps_r) = window(blocks, first, load.last_result_ms);
    let (blocks_s, txs_s, _) = window(blocks, first, last_settled);
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    for f in records.iter().flat_map(|r| &r.faults) {
        *faults.entry(f.clone()).or_default() += 1;
    }
    let verdict_window = layout::testnet_params()?.verdict_window_ms;
    let complete = load.results.len() == opts.jobs && settled.len() == opts.jobs;
    Ok(Summary {
        schema: SCHEMA,
        complete,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        nodes: opts.nodes,
        jobs: opts.jobs,
        concurrency: opts.concurrency,
        jobs_opened: load.opened,
        jobs_with_result: load.results.len(),
        jobs_settled: settled.len(),
        jobs_refunded: records.iter().filter(|r| r.refunded).count(),
        jobs_failed: load.failures.len(),
        first_failure: load.failures.first().map(|(_, why)| why.clone()),
        jobs_checked: records.iter().filter(|r| r.verdict.is_some()).count(),
        faults,
        market_busy_answers: load.busy,
        window_s: Windows {
            results: round1(results_s),
            settlement: round1(settle_s),
        },
        throughput: Throughput {
            result_jobs_per_s: rate(load.results.len(), results_s),
            settled_jobs_per_s: rate(settled.len(), settle_s),
            txs_per_s_results_window: rate(txs_r, results_s),
            txs_per_s_settlement_window: rate(txs_s, settle_s),
            result_jobs_per_s_steady: steady_rate(stage_times(records, committed)),
            settled_jobs_per_s_steady: steady_rate(
                settled.iter().filter_map(|r| r.closed).collect(),
            ),
        },
        blocks: BlockCounts {
            results_window: blocks_r,
            settlement_window: blocks_s,
            txs_results_window: txs_r,
            txs_settlement_window: txs_s,
        },
        latency_ms: Latencies {
            job_result_client: percentiles(load.results.iter().map(|r| r.1)),
            job_result_ledger: percentiles(stage_gaps(records, opened, committed)),
            job_settlement_ledger: percentiles(stage_gaps(records, opened, closed)),
            validation_ledger: percentiles(stage_gaps(records, committed, verdict)),
        },
        block_time_ms_results_window: percentiles(gaps_r),
        resources: resources.report(),
        note: format!(
            "a result settles {verdict_window} ms of block time after it commits (the verdict window), \
             so settled jobs/s over the settlement window includes that fixed tail; the steady \
             rates leave out the first and last tenth of the results and settlements"
        ),
    })
}

/// A figure as the summary's JSON writes it (`null` for none, `12.0` for a whole float).
fn j(value: impl Serialize) -> String {
    serde_json::to_string(&value).unwrap_or_else(|_| "?".to_owned())
}

/// The summary for a person.
pub fn print(out: &mut impl Write, s: &Summary) -> Result<()> {
    let t = &s.throughput;
    writeln!(
        out,
        "bench ({} build): {} nodes, {} jobs, {} clients",
        s.build, s.nodes, s.jobs, s.concurrency
    )?;
    writeln!(
        out,
        "jobs: {} opened, {} with their output delivered, {} settled, {} refunded, {} failed, {} \
         checked; faults {}; market busy {} times",
        s.jobs_opened,
        s.jobs_with_result,
        s.jobs_settled,
        s.jobs_refunded,
        s.jobs_failed,
        s.jobs_checked,
        j(&s.faults),
        s.market_busy_answers
    )?;
    if let Some(why) = &s.first_failure {
        writeln!(out, "first failure: {why}")?;
    }
    writeln!(
        out,
        "results:    {} jobs/s, {} txs/s over {} s (first submission to last output delivered)",
        j(t.result_jobs_per_s),
        j(t.txs_per_s_results_window),
        j(s.window_s.results)
    )?;
    writeln!(
        out,
        "settlement: {} jobs/s, {} txs/s over {} s (to the last settlement)",
        j(t.settled_jobs_per_s),
        j(t.txs_per_s_settlement_window),
        j(s.window_s.settlement)
    )?;
    writeln!(
        out,
        "steady state (10th to 90th percentile, ledger time): {} results/s, {} settlements/s",
        j(t.result_jobs_per_s_steady),
        j(t.settled_jobs_per_s_steady)
    )?;
    let l = &s.latency_ms;
    for (name, d) in [
        (
            "job latency, submit to verified output (client)",
            &l.job_result_client,
        ),
        (
            "job latency, opened to result (ledger)",
            &l.job_result_ledger,
        ),
        (
            "settlement latency, opened to settled (ledger)",
            &l.job_settlement_ledger,
        ),
        (
            "validation latency, result to verdict (ledger)",
            &l.validation_ledger,
        ),
        (
            "block time in the results window",
            &s.block_time_ms_results_window,
        ),
    ] {
        writeln!(
            out,
            "{name:<48} ms: p50 {} p90 {} p99 {} max {} (n={})",
            j(d.p50),
            j(d.p90),
            j(d.p99),
            j(d.max),
            d.count
        )?;
    }
    print_resources(out, &s.resources)?;
    writeln!(out, "note: {}", s.note)?;
    Ok(())
}

/// One line per node and one for the client: memory, and CPU as a share of one core.
fn print_resources(out: &mut impl Write, r: &ResourceReport) -> Result<()> {
    let named = r.nodes.iter().map(|n| {
        let pid = j(n.pid);
        (format!("node {} (pid {pid})", n.node), n.usage)
    });
    let client = [("client".to_owned(), r.client)];
    writeln!(out, "resources (CPU as % of one core):")?;
    for (name, usage) in named.chain(client) {
        let f = |pick: fn(&UsageFigures) -> f64| j(usage.figures.as_ref().map(pick));
        writeln!(
            out,
            "  {name:<18} rss {} MiB (peak {}), cpu {} s: {}% of its life, {}% in the results \
             window, {}% over the run",
            f(|u| u.rss_mib),
            f(|u| u.rss_peak_mib),
            f(|u| u.cpu_s),
            f(|u| u.cpu_pct_lifetime),
            f(|u| u.cpu_pct_results_window),
            f(|u| u.cpu_pct_run)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_only_its_blocks_and_their_gaps() {
        let blocks = [(100, 0), (150, 2), (230, 1), (400, 3)];
        assert_eq!(window(&blocks, 150, 300), (2, 3, vec![80]));
        assert_eq!(window(&blocks, 0, 1_000), (4, 6, vec![50, 80, 170]));
        assert_eq!(window(&blocks, 500, 600), (0, 0, vec![]));
    }

    #[test]
    fn a_record_follows_its_jobs_events() {
        let mut r = Record::default();
        let at = |ms: u64| serde_json::json!({ "job": "ab", "time_ms": ms });
        r.apply("job_opened", &at(10));
        r.apply(
            "result_committed",
            &serde_json::json!({ "job": "ab", "time_ms": 30, "output_hash": "cd" }),
        );
        assert!(!r.is_final());
        r.apply("verdict_posted", &at(45));
        r.apply("block", &at(50));
        r.apply(
            "slashed",
            &serde_json::json!({ "job": "ab", "reason": "dispute_lost", "time_ms": 60 }),
        );
        r.apply("refunded", &at(70));
        let want = Record {
            opened: Some(10),
            committed: Some(30),
            verdict: Some(45),
            closed: Some(70),
            settled: false,
            refunded: true,
            faults: vec!["dispute_lost".into()],
            output_hash: Some("cd".into()),
        };
        assert_eq!(r, want);
        assert!(r.is_final());
        let records = [r.clone(), Record::default()];
        assert_eq!(stage_gaps(&records, |r| r.opened, |r| r.closed), vec![60]);
    }

    #[test]
    fn the_steady_rate_leaves_out_the_first_and_last_tenth() {
        assert_eq!(steady_rate(vec![0; 9]), None);
        // Twenty events a second for 10 s, then one straggler 60 s later: the straggler and
        // the ramp are out.
        let mut times: Vec<u64> = (0..200).map(|i| i * 50).collect();
        times.push(70_000);
        let steady = steady_rate(times.clone()).expect("enough events");
        assert!((19.0..=21.0).contains(&steady), "{steady}");
        let whole = rate(times.len(), 70.0).expect("time");
        assert!(whole < 3.0, "{whole}");
        // Order does not matter.
        times.reverse();
        assert_eq!(steady_rate(times), Some(steady));
        assert_eq!(steady_rate(vec![5; 20]), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("/proc/self");
        assert!(s.rss_kib > 0 && s.peak_kib >= s.rss_kib, "{s:?}");
        assert!(s.age_s >= 0.0, "{s:?}");
        assert_eq!(rate(3, 0.0), None);
        assert_eq!(rate(3, 2.0), Some(1.5));
    }

    #[test]
    fn resource_rows_keep_their_json_shape() {
        let figures = UsageFigures {
            rss_mib: 12.0,
            rss_peak_mib: 13.5,
            cpu_s: 1.0,
            cpu_pct_lifetime: 2.0,
            cpu_pct_results_window: 3.0,
            cpu_pct_run: 4.0,
        };
        let sampled = Usage {
            sampled: None,
            figures: Some(figures),
        };
        let unsampled = Usage {
            sampled: Some(false),
            figures: None,
        };
        let report = ResourceReport {
            nodes: vec![NodeUsage {
                node: 0,
                pid: None,
                usage: unsampled,
            }],
            client: sampled,
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({
                "nodes": [{ "node": 0, "pid": null, "sampled": false }],
                "client": { "rss_mib": 12.0, "rss_peak_mib": 13.5, "cpu_s": 1.0,
                            "cpu_pct_lifetime": 2.0, "cpu_pct_results_window": 3.0,
                            "cpu_pct_run": 4.0 },
            })
        );
        // Figures print as the JSON shows them.
        assert_eq!(
            (j(12.0), j(None::<f64>), j(Some(7_u64))),
            ("12.0".into(), "null".into(), "7".into())
        );
    }
}
