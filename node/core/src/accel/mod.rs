//! The simulated accelerator's deterministic half.
//!
//! A node serves jobs on one or more simulated devices. Each device has a public
//! [`DeviceProfile`] (peak compute, memory, bandwidth, calibrated efficiency and step
//! overhead); it runs jobs by continuous batching ([`batching::Batch`]): each step of the batch
//! costs the roofline over the models' declared sizes and caches, so a job's simulated latency
//! depends on what else runs, scaled by a [`TimeScale`] so a testnet can run faster than real
//! time. The answers are real: the
//! stand-in computation of `attest_protocol::workload` runs on tokio's blocking pool, and a
//! result is released no earlier than its simulated completion (the pool, `attest_node::accel_pool`,
//! which is the only impure part and lives in the shell).
//!
//! Test-only cheat modes ([`CheatMode`], named `danger_*` in config) make a provider return
//! wrong traces on purpose, deterministically from a seed, so the network's spot-checks and
//! disputes can be exercised. An honest node never runs them.
//!
//! Everything here is pure: no clock, no I/O, no OS randomness.

pub mod batching;
pub mod cheat;
#[cfg(feature = "cheats")]
pub mod cheated;
pub mod profile;
pub mod roofline;

pub use cheat::{Cheat, CheatMode, RATE_ONE_PPM, should_cheat};
#[cfg(feature = "cheats")]
pub use cheated::run_job;

/// Catalogue look-ups the accelerator's unit tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::DeviceProfile;
    use attest_protocol::workload::ModelSpec;

    /// The profile named `name`.
    pub fn profile(name: &str) -> &'static DeviceProfile {
        DeviceProfile::find(name).expect("profile")
    }

    /// The catalogue model `id`.
    pub fn model(id: &str) -> &'static ModelSpec {
        ModelSpec::find(id).expect("catalogue model")
    }
}

/// Whether this build has the test-only cheat modes (the `cheats` feature).
pub const CHEATS_COMPILED: bool = cfg!(feature = "cheats");
pub use profile::{DeviceProfile, PROFILES};
pub use roofline::{TimeScale, job_latency, simulated_latency, tokens_per_sec_milli};

use attest_protocol::JobId;
use attest_protocol::workload::WorkloadError;

/// Everything that can go wrong in the accelerator: configuration text, admission and
/// execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccelError {
    /// A device profile name that no profile has (config or CLI).
    #[error("unknown device profile {name:?}; the known profiles are: {known}")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The known profile names, comma-separated.
        known: String,
    },
    /// A request for a device this node does not run.
    #[error("this node runs no device {name:?}; it runs: {running}")]
    UnknownDevice {
        /// The device asked for.
        name: String,
        /// The devices this node runs, comma-separated.
        running: String,
    },
    /// The model's declared weights do not fit in the device's memory.
    #[error(
        "model {model} needs {weight_bytes} bytes of weights; device {device} has {memory_bytes} bytes of memory"
    )]
    ModelDoesNotFit {
        /// The model id.
        model: &'static str,
        /// The device profile.
        device: &'static str,
        /// The model's declared weight bytes.
        weight_bytes: u64,
        /// The device's memory.
        memory_bytes: u64,
    },
    /// A time scale that is not a positive factor within bounds.
    #[error("time scale {text:?}: {reason}")]
    BadTimeScale {
        /// The text or number given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cheat setting that does not parse (`MODE:RATE`, e.g. `flip:0.1`).
    #[error("cheat setting {text:?}: {reason}")]
    BadCheat {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The job itself is invalid (unknown model, input too long, bad token count).
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The device's queue is full: the node took more work than it advertised.
    #[error("device {device}: queue full ({capacity} jobs waiting)")]
    QueueFull {
        /// The device.
        device: &'static str,
        /// The queue's bound.
        capacity: usize,
    },
    /// A second device of a profile the node already runs: requests name devices by profile.
    #[error("device {device} is configured twice; a node runs at most one device per profile")]
    DuplicateDevice {
        /// The profile.
        device: &'static str,
    },
    /// The device's workers have stopped (the pool is shutting down).
    #[error("device {device} has stopped")]
    Stopped {
        /// The device.
        device: &'static str,
    },
    /// The blocking task running a job did not finish (it panicked or the runtime is
    /// shutting down).
    #[error("job {job}: the execution task failed: {reason}")]
    ExecutionFailed {
        /// The job.
        job: JobId,
        /// What the runtime reported.
        reason: String,
    },
}
