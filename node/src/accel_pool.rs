//! The accelerator pool: the only impure part of the simulated accelerator (the deterministic
//! half, profiles, roofline timing and execution, is `attest_core::accel`).
//!
//! Each device has a bounded queue and as many workers as its profile has slots. A worker takes
//! the next request, runs the real stand-in computation on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]), and releases the result at the later of the real
//! completion and the simulated completion. Results of every device go out on one bounded
//! channel that the shell reads.
//!
//! Simulated time starts when a worker takes the job, not when it was submitted: a queued job
//! has not reached the device yet. Counting from submission would let queueing overlap the
//! simulated time and make a busy device as fast as the host CPU instead of its profile. The
//! time a job waited is reported separately ([`AccelResult::queued`]).
//!
//! Every bound, and why:
//! - the queue per device holds [`QUEUE_PER_SLOT`] jobs per slot by default (configurable):
//!   adverts can be a TTL out of date, so a gateway may name this node for a few jobs more than
//!   it has slots free; twice the slots absorbs that while keeping the added wait to about two
//!   job latencies. Beyond it, [`Device::try_submit`] refuses with [`AccelError::QueueFull`].
//! - workers per device are the profile's slots (see the profile module).
//! - the result channel holds one result per slot of the pool: every worker can hand off a
//!   finished job without waiting for the shell, and a shell that stops reading stalls the
//!   workers (which then hold their slots, so the node advertises no capacity) rather than
//!   growing memory.
//! - the speed estimate averages the last [`SPEED_WINDOW`] completions per device.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attest_protocol::JobId;
use attest_protocol::workload::{Execution, Job, ModelSpec};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

pub use attest_core::accel::AccelError;
use attest_core::accel::{DeviceProfile, TimeScale, job_latency, tokens_per_sec_milli};
use attest_core::market::{JobRun, Purpose};

/// Default queued jobs per slot (see the module documentation).
pub const QUEUE_PER_SLOT: usize = 2;

/// Completions the measured speed averages over: enough to smooth one odd job, few enough
/// to follow a change of load within a few advert periods.
pub const SPEED_WINDOW: usize = 32;

/// One device a node runs.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Its profile.
    pub profile: &'static DeviceProfile,
    /// How simulated time relates to real time.
    pub time_scale: TimeScale,
    /// Jobs that may wait for a slot.
    pub queue_capacity: NonZeroUsize,
}

impl DeviceConfig {
    /// A device of `profile` at `time_scale`, with the default queue of [`QUEUE_PER_SLOT`]
    /// jobs per slot.
    pub fn new(profile: &'static DeviceProfile, time_scale: TimeScale) -> Self {
        let slots = usize::try_from(profile.slots).unwrap_or(1);
        let queue = slots.saturating_mul(QUEUE_PER_SLOT);
        Self {
            profile,
            time_scale,
            queue_capacity: NonZeroUsize::new(queue).unwrap_or(NonZeroUsize::MIN),
        }
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
    /// Time from submission until a worker took the job.
    pub queued: Duration,
    /// Wall time of the real computation.
    pub real: Duration,
    /// The simulated latency; the result was released no earlier than this after the worker
    /// took the job.
    pub simulated: Duration,
}

/// A request waiting for a worker.
#[derive(Debug)]
struct Queued {
    request: JobRun,
    submitted: Instant,
    simulated: Duration,
}

/// One device's counters, shared by its handle and its workers.
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

    /// Jobs that may wait for a slot.
    pub fn queue_capacity(&self) -> usize {
        self.shared.config.queue_capacity.get()
    }

    /// Jobs waiting for a slot.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    /// Jobs in a slot (computing, waiting out their simulated time, or handing off the result).
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Slots minus running and queued jobs, at least 0: the capacity an advert may offer.
    pub fn free_slots(&self) -> u32 {
        let busy = self.running().saturating_add(self.queued());
        let busy = u32::try_from(busy).unwrap_or(u32::MAX);
        self.profile().slots.saturating_sub(busy)
    }

    /// The mean speed of the last [`SPEED_WINDOW`] jobs, in thousandths of a token per second:
    /// tokens generated over the time from a worker taking each job to releasing it (prefill
    /// and launch included, queueing excluded), in scaled time. `None` before the first job.
    pub fn measured_tokens_per_sec_milli(&self) -> Option<u64> {
        let window = self.shared.speed.lock().unwrap_or_else(|e| e.into_inner());
        let tokens: u128 = window.iter().map(|(t, _)| u128::from(*t)).sum();
        let nanos: u128 = window.iter().map(|(_, d)| d.as_nanos()).sum();
        if window.is_empty() || nanos == 0 {
            return None;
        }
        u64::try_from(tokens * 1_000_000_000_000 / nanos).ok()
    }

    /// The roofline's decode speed for `model` on this device at its time scale, for adverts
    /// before any job was measured.
    pub fn estimated_tokens_per_sec_milli(&self, model: &ModelSpec) -> u64 {
        tokens_per_sec_milli(self.profile(), model, self.time_scale())
    }

    /// Queues `request`, or refuses it at once: an invalid job, a model that does not fit the
    /// device, a full queue, or a stopped device. The result comes later on the pool's result
    /// channel.
    pub fn try_submit(&self, request: JobRun) -> Result<(), AccelError> {
        let profile = self.profile();
        let simulated = {
            let job = Job::new(request.model.as_str(), &request.input, request.max_tokens)?;
            profile.check_fits(job.model())?;
            job_latency(profile, &job, self.time_scale())
        };
        let queued = Queued {
            request,
            submitted: Instant::now(),
            simulated,
        };
        // Counted before sending, so that a worker's decrement never comes first.
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

/// The devices of a node and their workers.
#[derive(Debug)]
pub struct AccelPool {
    devices: Vec<Device>,
    workers: Vec<JoinHandle<()>>,
}

impl AccelPool {
    /// Starts a worker per slot of every device and returns the pool and the channel its
    /// results come out on. A node runs at most one device per profile (requests name the
    /// device by profile, as transactions do); a second one is refused.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns the workers).
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
            .map(|c| usize::try_from(c.profile.slots).unwrap_or(1))
            .sum();
        let (results, results_rx) = mpsc::channel(slots.max(1));
        let mut devices = Vec::with_capacity(configs.len());
        let mut workers = Vec::with_capacity(slots);
        for config in configs {
            let (queue, queue_rx) = mpsc::channel(config.queue_capacity.get());
            let queue_rx = Arc::new(tokio::sync::Mutex::new(queue_rx));
            let shared = Arc::new(Shared {
                config,
                queued: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                speed: Mutex::new(VecDeque::with_capacity(SPEED_WINDOW)),
            });
            for slot in 0..shared.config.profile.slots {
                let span = tracing::debug_span!("accel", device = shared.config.profile.name, slot);
                let work = worker(shared.clone(), queue_rx.clone(), results.clone());
                workers.push(tokio::spawn(work.instrument(span)));
            }
            devices.push(Device { shared, queue });
        }
        Ok((Self { devices, workers }, results_rx))
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

    /// Stops taking jobs, lets the workers finish what is queued, and waits for them. The
    /// result channel must be read (or dropped) meanwhile, or a worker waits to hand off.
    pub async fn shutdown(self) {
        let Self { devices, workers } = self;
        drop(devices);
        for w in workers {
            // A worker that panicked has nothing left to clean up.
            let _ = w.await;
        }
    }
}

/// One slot: takes jobs until the device's handle is dropped and its queue is empty, or until
/// the shell drops the result channel.
async fn worker(
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>,
    results: mpsc::Sender<AccelResult>,
) {
    loop {
        let next = queue.lock().await.recv().await;
        let Some(job) = next else { break };
        // Running first, so `free_slots` never briefly counts this job as free.
        shared.running.fetch_add(1, Ordering::SeqCst);
        shared.queued.fetch_sub(1, Ordering::SeqCst);
        let result = serve(&shared, job).await;
        let sent = results.send(result).await;
        shared.running.fetch_sub(1, Ordering::SeqCst);
        if sent.is_err() {
            tracing::debug!("result channel closed; worker stops");
            break;
        }
    }
}

/// Runs one job and waits out its simulated latency.
async fn serve(shared: &Shared, job: Queued) -> AccelResult {
    let started = Instant::now();
    let Queued {
        request,
        submitted,
        simulated,
    } = job;
    let (id, purpose) = (request.job, request.purpose);
    let task = tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        // Checked on submission; checked again rather than trusted across the queue.
        let outcome = request.execute().map_err(AccelError::from);
        (outcome, t0.elapsed())
    });
    let (outcome, real) = match task.await {
        Ok(done) => done,
        Err(e) => {
            let reason = e.to_string();
            let failed = AccelError::ExecutionFailed { job: id, reason };
            (Err(failed), started.elapsed())
        }
    };
    // Released at the later of the real and the simulated completion.
    tokio::time::sleep_until(started + simulated).await;
    if let Ok(execution) = &outcome {
        record_speed(shared, execution.output.len() as u64, started.elapsed());
    }
    tracing::debug!(job = %id, ?real, ?simulated, ok = outcome.is_ok(), "job released");
    AccelResult {
        id,
        purpose,
        device: shared.config.profile.name,
        outcome,
        queued: started.saturating_duration_since(submitted),
        real,
        simulated,
    }
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
            assert_eq!(
                result.simulated,
                job_latency(profile(device), &job, TimeScale::REAL_TIME)
            );
            assert!(t0.elapsed() >= result.simulated, "released early");
            assert_eq!(result.outcome, Ok(execute(&job)));
            seen.push(result.id);
        }
        seen.sort();
        assert_eq!(seen, [JobId([1; 32]), JobId([2; 32]), JobId([3; 32])]);
        let cpu = pool.device("cpu").expect("running");
        wait_until(|| cpu.free_slots() == 2).await;
        let speed = cpu
            .measured_tokens_per_sec_milli()
            .expect("two jobs measured");
        assert!(speed > 0);
        let wse = pool.device("wse-3").expect("running");
        wait_until(|| wse.free_slots() == 5).await;
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
        // A thousand times slower than real: each job holds its slot for about a minute, so
        // the slots stay busy for the whole test, which never waits for a result.
        let slow = TimeScale::from_ppm(TimeScale::MAX_PPM).expect("valid");
        let cpu = profile("cpu");
        let (pool, _rx) = AccelPool::start(vec![DeviceConfig::new(cpu, slow)]).expect("start");
        let device = pool.device("cpu").expect("running");
        assert_eq!((device.free_slots(), device.queue_capacity()), (2, 4));
        // Nothing has yielded to the workers yet: the first four wait in the queue.
        for n in 0..4 {
            pool.try_submit("cpu", request(n, "attest-tiny-1b", b"x", 8))
                .expect("room in the queue");
        }
        assert_eq!(device.free_slots(), 0);
        let full = pool.try_submit("cpu", request(9, "attest-tiny-1b", b"x", 8));
        assert_eq!(
            full,
            Err(AccelError::QueueFull {
                device: "cpu",
                capacity: 4
            })
        );
        // The two workers take a job each, which frees two places in the queue, not more.
        wait_until(|| device.running() == 2 && device.queued() == 2).await;
        for n in 4..6 {
            pool.try_submit("cpu", request(n, "attest-tiny-1b", b"x", 8))
                .expect("room in the queue");
        }
        let full = pool.try_submit("cpu", request(9, "attest-tiny-1b", b"x", 8));
        assert!(
            matches!(full, Err(AccelError::QueueFull { .. })),
            "{full:?}"
        );
        assert_eq!(device.free_slots(), 0);
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
