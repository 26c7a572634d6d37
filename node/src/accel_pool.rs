//! The accelerator pool: the only impure part of the simulated accelerator (the deterministic
//! half, profiles, the batching model and execution, is `attest_core::accel`).
//!
//! Each device has a bounded queue and one scheduler task that owns the device's continuous
//! batch ([`attest_core::accel::batching::Batch`]): it admits queued jobs while the batch has
//! room (its `max_batch` and its KV cache), and wakes when the next sequence finishes in
//! simulated time. Each admitted job also runs its real stand-in computation on tokio's
//! blocking pool, at most [`host_threads`] at a time per pool, and is released at the later of
//! the real and the simulated completion. Results of every device go out on one bounded
//! channel that the shell reads.
//!
//! Simulated time starts when the batch admits a job, not when it was submitted: a queued job
//! has not reached the device yet. The time a job waited is reported separately
//! ([`AccelResult::queued`]).
//!
//! Every bound, and why:
//! - a device runs at most its batch's room (`max_batch`, and the KV cache each job reserves);
//!   it advertises [`sequences_for_any_job`] slots, the batch of the protocol's longest jobs it
//!   always holds.
//! - the queue per device holds [`QUEUE_PER_SLOT`] jobs per advertised slot by default
//!   (configurable): adverts can be a TTL out of date, so a gateway may name this node for a few
//!   jobs more than it has slots free. Beyond it, [`Device::try_submit`] refuses with
//!   [`AccelError::QueueFull`].
//! - the real computations run at most [`host_threads`] at a time: the host's cores, not the
//!   simulated device, bound them.
//! - the result channel holds one result per advertised slot of the pool: every running job
//!   can hand off without waiting for the shell, and a shell that stops reading stalls the
//!   jobs (which then hold their slots, so the node advertises no capacity) rather than
//!   growing memory.
//! - the speed estimate averages the last [`SPEED_WINDOW`] completions per device.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attest_protocol::JobId;
use attest_protocol::workload::{Execution, Job, ModelSpec};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

pub use attest_core::accel::AccelError;
use attest_core::accel::batching::{Batch, Refusal, SeqSpec, sequences_for_any_job};
use attest_core::accel::{DeviceProfile, TimeScale, tokens_per_sec_milli};
use attest_core::market::{JobRun, Purpose};

/// Default queued jobs per advertised slot (see the module documentation).
pub const QUEUE_PER_SLOT: usize = 2;

/// Completions the measured speed averages over: enough to smooth one odd job, few enough
/// to follow a change of load within a few advert periods.
pub const SPEED_WINDOW: usize = 32;

/// Real computations a pool runs at once: the host's cores (at least 1).
pub fn host_threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// One device a node runs.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Its profile.
    pub profile: &'static DeviceProfile,
    /// How simulated time relates to real time.
    pub time_scale: TimeScale,
    /// Jobs that may wait for room in the batch.
    pub queue_capacity: NonZeroUsize,
}

impl DeviceConfig {
    /// A device of `profile` at `time_scale`, with the default queue of [`QUEUE_PER_SLOT`]
    /// jobs per advertised slot.
    pub fn new(profile: &'static DeviceProfile, time_scale: TimeScale) -> Self {
        let slots = usize::try_from(sequences_for_any_job(profile)).unwrap_or(1);
        let queue = slots.saturating_mul(QUEUE_PER_SLOT);
        Self {
            profile,
            time_scale,
            queue_capacity: NonZeroUsize::new(queue).unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// Jobs the device advertises it runs at once.
    pub fn slots(&self) -> u32 {
        sequences_for_any_job(self.profile)
    }
}

/// A finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelResult {
    /// The job.
    pub id: JobId,
    /// Why it ran (the request's, handed back).
    pub purpose: Purpose,
    /// The device that ran it.
    pub device: &'static str,
    /// The execution, or why there is none.
    pub outcome: Result<Execution, AccelError>,
    /// Time from submission until the batch admitted the job.
    pub queued: Duration,
    /// Wall time of the real computation.
    pub real: Duration,
    /// The simulated latency in the batch it ran in, scaled: the result was released no
    /// earlier than this after the batch admitted it.
    pub simulated: Duration,
}

/// A request waiting for room in the batch.
#[derive(Debug)]
struct Queued {
    request: JobRun,
    spec: SeqSpec,
    submitted: Instant,
}

/// One device's counters, shared by its handle and its scheduler.
#[derive(Debug)]
struct Shared {
    config: DeviceConfig,
    queued: AtomicUsize,
    running: AtomicUsize,
    /// `(tokens, service time)` of the last [`SPEED_WINDOW`] completions.
    speed: Mutex<VecDeque<(u64, Duration)>>,
}

/// A running device: submit jobs and read its load.
#[derive(Debug)]
pub struct Device {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Queued>,
}

impl Device {
    /// The device's profile.
    pub fn profile(&self) -> &'static DeviceProfile {
        self.shared.config.profile
    }

    /// The device's profile name.
    pub fn name(&self) -> &'static str {
        self.profile().name
    }

    /// The device's time scale.
    pub fn time_scale(&self) -> TimeScale {
        self.shared.config.time_scale
    }

    /// Jobs that may wait for room in the batch.
    pub fn queue_capacity(&self) -> usize {
        self.shared.config.queue_capacity.get()
    }

    /// Jobs waiting for room in the batch.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    /// Jobs admitted to the batch and not yet handed off.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Advertised slots minus running and queued jobs, at least 0: the capacity an advert may
    /// offer.
    pub fn free_slots(&self) -> u32 {
        let busy = self.running().saturating_add(self.queued());
        let busy = u32::try_from(busy).unwrap_or(u32::MAX);
        self.shared.config.slots().saturating_sub(busy)
    }

    /// The mean speed of the last [`SPEED_WINDOW`] jobs, in thousandths of a token per second:
    /// tokens generated over the time from the batch admitting each job to releasing it
    /// (prefill included, queueing excluded), in scaled time. `None` before the first job.
    pub fn measured_tokens_per_sec_milli(&self) -> Option<u64> {
        let window = self.shared.speed.lock().unwrap_or_else(|e| e.into_inner());
        let tokens: u128 = window.iter().map(|(t, _)| u128::from(*t)).sum();
        let nanos: u128 = window.iter().map(|(_, d)| d.as_nanos()).sum();
        if window.is_empty() || nanos == 0 {
            return None;
        }
        u64::try_from(tokens * 1_000_000_000_000 / nanos).ok()
    }

    /// The per-stream speed for `model` at the device's advertised load, at its time scale,
    /// for adverts before any job was measured.
    pub fn estimated_tokens_per_sec_milli(&self, model: &'static ModelSpec) -> u64 {
        tokens_per_sec_milli(self.profile(), model, self.time_scale())
    }

    /// Queues `request`, or refuses it at once: an invalid job, a model that does not fit the
    /// device, a job whose cache could never fit, a full queue, or a stopped device. The
    /// result comes later on the pool's result channel.
    pub fn try_submit(&self, request: JobRun) -> Result<(), AccelError> {
        let profile = self.profile();
        let spec = {
            let job = Job::new(request.model.as_str(), &request.input, request.max_tokens)?;
            profile.check_fits(job.model())?;
            SeqSpec {
                model: job.model(),
                prompt: 1 + job.input().len() as u64,
                max_tokens: job.max_tokens(),
            }
        };
        if Batch::new(profile, 0).check(&spec).is_err() {
            return Err(AccelError::ModelDoesNotFit {
                model: spec.model.id,
                device: profile.name,
                weight_bytes: spec.model.weight_bytes().saturating_add(spec.kv_bytes()),
                memory_bytes: profile.memory_bytes,
            });
        }
        let queued = Queued {
            request,
            spec,
            submitted: Instant::now(),
        };
        // Counted before sending, so that the scheduler's decrement never comes first.
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        self.queue.try_send(queued).map_err(|e| {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            match e {
                mpsc::error::TrySendError::Full(_) => AccelError::QueueFull {
                    device: profile.name,
                    capacity: self.queue_capacity(),
                },
                mpsc::error::TrySendError::Closed(_) => AccelError::Stopped {
                    device: profile.name,
                },
            }
        })
    }
}

/// The devices of a node and their schedulers.
#[derive(Debug)]
pub struct AccelPool {
    devices: Vec<Device>,
    schedulers: Vec<JoinHandle<()>>,
}

impl AccelPool {
    /// Starts a scheduler for every device and returns the pool and the channel its results
    /// come out on. A node runs at most one device per profile (requests name the device by
    /// profile, as transactions do); a second one is refused.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns the schedulers).
    pub fn start(
        configs: Vec<DeviceConfig>,
    ) -> Result<(Self, mpsc::Receiver<AccelResult>), AccelError> {
        for (i, c) in configs.iter().enumerate() {
            if configs[..i]
                .iter()
                .any(|o| o.profile.name == c.profile.name)
            {
                return Err(AccelError::DuplicateDevice {
                    device: c.profile.name,
                });
            }
        }
        let slots: usize = configs
            .iter()
            .map(|c| usize::try_from(c.slots()).unwrap_or(1))
            .sum();
        let (results, results_rx) = mpsc::channel(slots.max(1));
        let host = Arc::new(Semaphore::new(host_threads()));
        let mut devices = Vec::with_capacity(configs.len());
        let mut schedulers = Vec::with_capacity(configs.len());
        for config in configs {
            let (queue, queue_rx) = mpsc::channel(config.queue_capacity.get());
            let shared = Arc::new(Shared {
                config,
                queued: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                speed: Mutex::new(VecDeque::with_capacity(SPEED_WINDOW)),
            });
            let span = tracing::debug_span!("accel", device = shared.config.profile.name);
            let work = scheduler(shared.clone(), queue_rx, results.clone(), host.clone());
            schedulers.push(tokio::spawn(work.instrument(span)));
            devices.push(Device { shared, queue });
        }
        Ok((
            Self {
                devices,
                schedulers,
            },
            results_rx,
        ))
    }

    /// The running devices.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The device of profile `name`.
    pub fn device(&self, name: &str) -> Result<&Device, AccelError> {
        self.devices
            .iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| AccelError::UnknownDevice {
                name: name.to_owned(),
                running: self
                    .devices
                    .iter()
                    .map(Device::name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Queues `request` on the device of profile `device` (see [`Device::try_submit`]).
    pub fn try_submit(&self, device: &str, request: JobRun) -> Result<(), AccelError> {
        self.device(device)?.try_submit(request)
    }

    /// Stops taking jobs, lets the schedulers finish what is queued and running, and waits
    /// for them. The result channel must be read (or dropped) meanwhile, or a job waits to
    /// hand off.
    pub async fn shutdown(self) {
        let Self {
            devices,
            schedulers,
        } = self;
        drop(devices);
        for s in schedulers {
            // A scheduler that panicked has nothing left to clean up.
            let _ = s.await;
        }
    }
}

/// Device nanoseconds elapsed since `epoch` at `scale` (real nanoseconds over the scale).
fn device_now(epoch: Instant, scale: TimeScale) -> u64 {
    let real = epoch.elapsed().as_nanos();
    let device = real.saturating_mul(1_000_000) / u128::from(scale.ppm().max(1));
    u64::try_from(device).unwrap_or(u64::MAX)
}

/// One device's scheduler: admits queued jobs into the batch while it has room, starts each
/// admitted job's real computation, and tells each job when its simulated run ends. Stops
/// once the device's handle is dropped and everything queued and running has been handed
/// off.
async fn scheduler(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Queued>,
    results: mpsc::Sender<AccelResult>,
    host: Arc<Semaphore>,
) {
    let epoch = Instant::now();
    let scale = shared.config.time_scale;
    let mut batch = Batch::new(shared.config.profile, 0);
    // The head of the queue, taken off the channel but not admitted yet (at most one).
    let mut head: Option<Queued> = None;
    // Jobs in the batch: their admission time and who to tell when they finish.
    let mut running: BTreeMap<u64, (u64, oneshot::Sender<Duration>)> = BTreeMap::new();
    let mut jobs = JoinSet::new();
    let mut next_id = 0u64;
    let mut closed = false;
    loop {
        let now = device_now(epoch, scale);
        for (id, at) in batch.advance_to(now) {
            if let Some((admitted, tell)) = running.remove(&id) {
                let _ = tell.send(scale.scale_nanos(u128::from(at.saturating_sub(admitted))));
            }
        }
        while let Some(q) = head.take() {
            match batch.admit(next_id, q.spec, now) {
                Ok(()) => {
                    let (tell, told) = oneshot::channel();
                    running.insert(next_id, (now, tell));
                    next_id = next_id.wrapping_add(1);
                    // Running first, so `free_slots` never briefly counts this job as free.
                    shared.running.fetch_add(1, Ordering::SeqCst);
                    shared.queued.fetch_sub(1, Ordering::SeqCst);
                    jobs.spawn(serve(
                        shared.clone(),
                        q,
                        told,
                        host.clone(),
                        results.clone(),
                    ));
                    head = queue.try_recv().ok();
                }
                Err(Refusal::BatchFull | Refusal::CacheFull) => {
                    head = Some(q);
                    break;
                }
                Err(Refusal::NeverFits) => {
                    // Checked on submission; not reachable, but never dropped silently.
                    shared.queued.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!(job = %q.request.job, "a job that can never fit the batch");
                }
            }
        }
        // Reap finished jobs' tasks so the set holds only running ones.
        while jobs.try_join_next().is_some() {}
        if closed && head.is_none() && batch.is_empty() {
            break;
        }
        let wake = batch
            .next_finish()
            .map(|at| epoch + scale.scale_nanos(u128::from(at)));
        tokio::select! {
            item = queue.recv(), if head.is_none() && !closed => match item {
                Some(q) => head = Some(q),
                None => closed = true,
            },
            () = sleep_until_opt(wake) => {}
        }
    }
    // Every job was told; wait for them to hand off.
    while jobs.join_next().await.is_some() {}
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs one admitted job's real computation, waits for its simulated completion, and hands
/// the result off.
async fn serve(
    shared: Arc<Shared>,
    job: Queued,
    finished: oneshot::Receiver<Duration>,
    host: Arc<Semaphore>,
    results: mpsc::Sender<AccelResult>,
) {
    let admitted = Instant::now();
    let Queued {
        request, submitted, ..
    } = job;
    let (id, purpose) = (request.job, request.purpose);
    let (outcome, real) = match host.acquire_owned().await {
        Ok(permit) => {
            let task = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let t0 = std::time::Instant::now();
                // Checked on submission; checked again rather than trusted across the queue.
                let outcome = request.execute().map_err(AccelError::from);
                (outcome, t0.elapsed())
            });
            match task.await {
                Ok(done) => done,
                Err(e) => {
                    let reason = e.to_string();
                    let failed = AccelError::ExecutionFailed { job: id, reason };
                    (Err(failed), admitted.elapsed())
                }
            }
        }
        Err(_) => {
            let reason = "the host thread limit was closed".to_owned();
            (
                Err(AccelError::ExecutionFailed { job: id, reason }),
                Duration::ZERO,
            )
        }
    };
    // Released at the later of the real and the simulated completion; a scheduler that is
    // gone releases at once.
    let simulated = finished.await.unwrap_or_default();
    tokio::time::sleep_until(admitted + simulated).await;
    if let Ok(execution) = &outcome {
        record_speed(&shared, execution.output.len() as u64, admitted.elapsed());
    }
    tracing::debug!(job = %id, ?real, ?simulated, ok = outcome.is_ok(), "job released");
    let result = AccelResult {
        id,
        purpose,
        device: shared.config.profile.name,
        outcome,
        queued: admitted.saturating_duration_since(submitted),
        real,
        simulated,
    };
    if results.send(result).await.is_err() {
        tracing::debug!("result channel closed");
    }
    shared.running.fetch_sub(1, Ordering::SeqCst);
}

fn record_speed(shared: &Shared, tokens: u64, service: Duration) {
    let mut window = shared.speed.lock().unwrap_or_else(|e| e.into_inner());
    if window.len() == SPEED_WINDOW {
        window.pop_front();
    }
    window.push_back((tokens, service));
}

#[cfg(test)]
mod tests {
    use attest_core::accel::job_latency;
    #[cfg(feature = "cheats")]
    use attest_core::accel::{CheatMode, run_job};
    use attest_protocol::ModelId;
    use attest_protocol::workload::execute;

    use super::*;

    /// A generous guard against a hung test; no assertion depends on it.
    const GUARD: Duration = Duration::from_secs(60);

    fn profile(name: &str) -> &'static DeviceProfile {
        DeviceProfile::find(name).expect("profile")
    }

    fn request(n: u8, model: &str, input: &[u8], max_tokens: u32) -> JobRun {
        JobRun::new(
            JobId([n; 32]),
            Purpose::Provide,
            ModelId::new(model).expect("model id"),
            input.to_vec(),
            max_tokens,
            [n; 32],
        )
    }

    async fn next(rx: &mut mpsc::Receiver<AccelResult>) -> AccelResult {
        tokio::time::timeout(GUARD, rx.recv())
            .await
            .expect("a result within the guard")
            .expect("the pool is running")
    }

    async fn wait_until(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + GUARD;
        while !done() {
            assert!(Instant::now() < deadline, "condition not reached");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn releases_exact_results_no_earlier_than_simulated() {
        // About 60 ms of simulated time per job: the CPU streams 2.2 GB of weights per token
        // (7.2 ms), 8 tokens.
        let configs = vec![
            DeviceConfig::new(profile("cpu"), TimeScale::REAL_TIME),
            DeviceConfig::new(profile("wse-3"), TimeScale::REAL_TIME),
        ];
        let (pool, mut rx) = AccelPool::start(configs).expect("start");
        let jobs = [
            ("cpu", request(1, "attest-tiny-1b", b"hello", 8)),
            ("cpu", request(2, "attest-tiny-1b", b"world", 8)),
            ("wse-3", request(3, "attest-base-8b", b"wafer", 8)),
        ];
        let t0 = Instant::now();
        for (device, r) in &jobs {
            pool.try_submit(device, r.clone())
                .expect("room in the queue");
        }
        let mut seen = Vec::new();
        for _ in 0..jobs.len() {
            let result = next(&mut rx).await;
            let (device, r) = jobs
                .iter()
                .find(|(_, r)| r.job == result.id)
                .expect("a submitted id");
            let job = Job::new(r.model.as_str(), &r.input, r.max_tokens).expect("valid");
            assert_eq!(result.device, *device);
            // Alone it would take the lone latency; sharing the batch only slows it, and on
            // these memory-bound steps by far less than twice.
            let alone = job_latency(profile(device), &job, TimeScale::REAL_TIME);
            assert!(
                result.simulated >= alone,
                "{:?} < {alone:?}",
                result.simulated
            );
            assert!(result.simulated < alone * 2, "{:?}", result.simulated);
            assert!(t0.elapsed() >= result.simulated, "released early");
            assert_eq!(result.outcome, Ok(execute(&job)));
            seen.push(result.id);
        }
        seen.sort();
        assert_eq!(seen, [JobId([1; 32]), JobId([2; 32]), JobId([3; 32])]);
        let cpu = pool.device("cpu").expect("running");
        wait_until(|| cpu.free_slots() == 16).await;
        let speed = cpu
            .measured_tokens_per_sec_milli()
            .expect("two jobs measured");
        assert!(speed > 0);
        let wse = pool.device("wse-3").expect("running");
        wait_until(|| wse.free_slots() == 38).await;
        pool.shutdown().await;
    }

    #[cfg(feature = "cheats")]
    #[tokio::test]
    async fn cheats_run_through_the_pool_exactly() {
        let scale = TimeScale::from_ppm(1_000).expect("valid");
        let (pool, mut rx) =
            AccelPool::start(vec![DeviceConfig::new(profile("h100-sxm"), scale)]).expect("start");
        for (n, mode) in CheatMode::ALL.into_iter().enumerate() {
            let mut r = request(n as u8, "attest-tiny-1b", b"cheat", 6);
            r.cheat = Some(mode);
            pool.try_submit("h100-sxm", r.clone()).expect("room");
            let result = next(&mut rx).await;
            let job = Job::new(r.model.as_str(), &r.input, r.max_tokens).expect("valid");
            assert_eq!(result.outcome, Ok(run_job(&job, Some(mode), r.seed)));
            assert_ne!(result.outcome, Ok(execute(&job)), "{mode}");
        }
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn a_full_queue_refuses() {
        // A thousand times slower than real: each job holds its place in the batch for about
        // a minute, so the batch stays full for the whole test, which never waits for a result.
        let slow = TimeScale::from_ppm(TimeScale::MAX_PPM).expect("valid");
        let cpu = profile("cpu");
        let (pool, _rx) = AccelPool::start(vec![DeviceConfig::new(cpu, slow)]).expect("start");
        let device = pool.device("cpu").expect("running");
        // The CPU's scheduler runs 16 sequences at once; the queue holds two per slot.
        assert_eq!((device.free_slots(), device.queue_capacity()), (16, 32));
        // Nothing has yielded to the scheduler yet: all 32 wait in the queue.
        for n in 0..32 {
            pool.try_submit("cpu", request(n, "attest-tiny-1b", b"x", 8))
                .expect("room in the queue");
        }
        assert_eq!(device.free_slots(), 0);
        let full = pool.try_submit("cpu", request(99, "attest-tiny-1b", b"x", 8));
        assert_eq!(
            full,
            Err(AccelError::QueueFull {
                device: "cpu",
                capacity: 32
            })
        );
        // The batch takes 16, and the scheduler holds the next one at the head of the queue:
        // 17 places come free in the channel, not more.
        wait_until(|| device.running() == 16 && device.queued() == 16).await;
        let mut accepted = 0;
        for n in 32..64 {
            if pool
                .try_submit("cpu", request(n, "attest-tiny-1b", b"x", 8))
                .is_ok()
            {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 17);
        assert_eq!(device.free_slots(), 0);
        assert_eq!(device.running(), 16);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_at_submission() {
        let configs = vec![DeviceConfig::new(profile("wse-3"), TimeScale::REAL_TIME)];
        let (pool, _rx) = AccelPool::start(configs).expect("start");
        let err = pool
            .try_submit("tpu", request(1, "attest-tiny-1b", b"x", 1))
            .expect_err("no such device");
        assert!(err.to_string().contains("wse-3"), "{err}");
        let err = pool
            .try_submit("wse-3", request(1, "attest-large-70b", b"x", 1))
            .expect_err("141 GB on a 44 GB wafer");
        assert!(matches!(err, AccelError::ModelDoesNotFit { .. }), "{err}");
        let err = pool
            .try_submit("wse-3", request(1, "attest-tiny-1b", b"x", 0))
            .expect_err("no tokens");
        assert!(matches!(err, AccelError::Workload(_)), "{err}");
        let err = pool
            .try_submit("wse-3", request(1, "no-such-model", b"x", 1))
            .expect_err("unknown model");
        assert!(err.to_string().contains("attest-tiny-1b"), "{err}");
        assert_eq!(pool.device("wse-3").expect("running").queued(), 0);
        let twice = vec![
            DeviceConfig::new(profile("cpu"), TimeScale::REAL_TIME),
            DeviceConfig::new(profile("cpu"), TimeScale::REAL_TIME),
        ];
        let err = AccelPool::start(twice).expect_err("two cpus");
        assert_eq!(err, AccelError::DuplicateDevice { device: "cpu" });
    }

    #[tokio::test]
    async fn shutdown_drains_the_queue() {
        let scale = TimeScale::from_ppm(1_000).expect("valid");
        let (pool, mut rx) =
            AccelPool::start(vec![DeviceConfig::new(profile("cpu"), scale)]).expect("start");
        for n in 0..4 {
            pool.try_submit("cpu", request(n, "attest-tiny-1b", b"drain", 4))
                .expect("room");
        }
        let reader = tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(r) = rx.recv().await {
                ids.push(r.id);
            }
            ids
        });
        pool.shutdown().await;
        let mut ids = reader.await.expect("reader");
        ids.sort();
        assert_eq!(ids, (0..4).map(|n| JobId([n; 32])).collect::<Vec<_>>());
    }
}
