//! Simulated latency: a roofline over a model's declared size. Pure, integer arithmetic.
//!
//! A job has two phases, and each is as slow as the slower of its compute and its memory
//! traffic (the roofline):
//!
//! - **Prefill** runs the prompt (BOS and the input bytes) in one pass: `2 * params * prompt`
//!   FLOPs over the peak, but never less than one stream of the weights. Long prompts are
//!   compute-bound; a prompt below the ridge point (295 tokens on an H100) is memory-bound.
//!   The prefill's last position emits the first output token.
//! - **Decode** runs one pass per further output token (`max_tokens - 1` passes): each streams
//!   every weight once (`weight_bytes / bandwidth`), never less than its `2 * params` FLOPs.
//!
//! A fixed launch overhead is added, and the total is multiplied by the [`TimeScale`]. Each
//! division rounds up to the next nanosecond, so a latency is never zero and the figures in the
//! tests can be checked by hand. Running jobs do not slow each other (see the profile module
//! on slots), so the latency depends only on the job and the device.
//!
//! The roofline is an upper bound on speed: real serving stacks reach a fraction of it. That is
//! fine for the market, which compares devices with each other; it does mean the wafer's
//! figures are far above its vendor's measured serving speeds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use attest_protocol::workload::{Job, ModelSpec};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AccelError;
use super::profile::DeviceProfile;

const NANOS_PER_SEC: u128 = 1_000_000_000;
const PPM: u128 = 1_000_000;

/// How simulated time relates to real time: 1.0 is real time, 0.01 makes every job a hundred
/// times faster. Stored in parts per million so that the arithmetic is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeScale {
    ppm: u64,
}

impl TimeScale {
    /// Real time.
    pub const REAL_TIME: TimeScale = TimeScale { ppm: 1_000_000 };
    /// A hundredth of real time: the node's default, so a local testnet's jobs take
    /// milliseconds while keeping the devices' relative speeds.
    pub const HUNDREDTH: TimeScale = TimeScale { ppm: 10_000 };
    /// The fastest scale, one millionth of real time: an hour-long job takes 3.6 ms, so
    /// nothing faster is needed, and the figure stays exact in parts per million.
    pub const MIN_PPM: u64 = 1;
    /// The slowest scale, a thousand times slower than real time: enough to watch a job step
    /// by step, and far from any overflow of the nanosecond arithmetic.
    pub const MAX_PPM: u64 = 1_000_000_000;

    /// A scale of `ppm` millionths of real time.
    pub fn from_ppm(ppm: u64) -> Result<Self, AccelError> {
        if !(Self::MIN_PPM..=Self::MAX_PPM).contains(&ppm) {
            return Err(AccelError::BadTimeScale {
                text: format!("{ppm} ppm"),
                reason: "must be between 0.000001 and 1000 (1 to 1e9 parts per million)",
            });
        }
        Ok(Self { ppm })
    }

    /// A scale of `factor` times real time, rounded to the nearest part per million.
    pub fn from_factor(factor: f64) -> Result<Self, AccelError> {
        let bad = |reason| AccelError::BadTimeScale {
            text: factor.to_string(),
            reason,
        };
        if !factor.is_finite() || factor <= 0.0 {
            return Err(bad("must be a positive number (1.0 is real time)"));
        }
        if factor > 1000.0 {
            return Err(bad(
                "must be at most 1000 (a thousand times slower than real)",
            ));
        }
        let ppm = (factor * 1e6).round();
        if ppm < 1.0 {
            return Err(bad("must be at least 0.000001 (one part per million)"));
        }
        // In range: 1 <= ppm <= 1e9, so the cast is exact.
        Self::from_ppm(ppm as u64)
    }

    /// Millionths of real time.
    pub fn ppm(self) -> u64 {
        self.ppm
    }

    /// The factor, as a number (1.0 is real time).
    pub fn factor(self) -> f64 {
        self.ppm as f64 / 1e6
    }

    /// `nanos` of device time as a duration of scaled time, rounded up.
    fn scale_nanos(self, nanos: u128) -> Duration {
        let scaled = nanos.saturating_mul(u128::from(self.ppm)).div_ceil(PPM);
        Duration::from_nanos(u64::try_from(scaled).unwrap_or(u64::MAX))
    }
}

impl Default for TimeScale {
    fn default() -> Self {
        Self::REAL_TIME
    }
}

impl fmt::Display for TimeScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.factor())
    }
}

impl FromStr for TimeScale {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, AccelError> {
        let factor: f64 = s.trim().parse().map_err(|_| AccelError::BadTimeScale {
            text: s.to_owned(),
            reason: "not a number (write e.g. 1.0 for real time, 0.01 for 100x faster)",
        })?;
        Self::from_factor(factor)
    }
}

impl Serialize for TimeScale {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.factor())
    }
}

impl<'de> Deserialize<'de> for TimeScale {
    /// A number (`time_scale = 0.01`); integers are accepted too (`time_scale = 1`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let factor = f64::deserialize(d)?;
        Self::from_factor(factor).map_err(serde::de::Error::custom)
    }
}

/// Nanoseconds to do `flops` at the device's peak, rounded up.
fn compute_nanos(profile: &DeviceProfile, flops: u128) -> u128 {
    // GFLOP/s is FLOP per nanosecond. A zero peak cannot be in `PROFILES` (tested); the
    // guard keeps a hand-built profile from dividing by zero.
    flops.div_ceil(u128::from(profile.peak_gflops.max(1)))
}

/// Nanoseconds to stream `bytes` from the device's memory, rounded up.
fn memory_nanos(profile: &DeviceProfile, bytes: u128) -> u128 {
    (bytes * NANOS_PER_SEC).div_ceil(u128::from(profile.memory_bandwidth.max(1)))
}

/// Nanoseconds of one decode pass of `model` on `profile`, at real time.
fn decode_pass_nanos(profile: &DeviceProfile, model: &ModelSpec) -> u128 {
    let flops = 2 * u128::from(model.params);
    let weights = memory_nanos(profile, u128::from(model.weight_bytes()));
    compute_nanos(profile, flops).max(weights)
}

/// The simulated latency of running `model` over `prompt_tokens` prompt positions and
/// generating `max_tokens` tokens on `profile`, at `scale` (see the module documentation).
///
/// `prompt_tokens` counts every position of the prompt, the BOS token included: for a
/// workload [`Job`] it is `1 + input.len()` ([`job_latency`] does this). Whether the model
/// fits the device is a separate question ([`DeviceProfile::check_fits`]).
pub fn simulated_latency(
    profile: &DeviceProfile,
    model: &ModelSpec,
    prompt_tokens: u64,
    max_tokens: u32,
    scale: TimeScale,
) -> Duration {
    let params = u128::from(model.params);
    let weights = memory_nanos(profile, u128::from(model.weight_bytes()));
    let prefill = compute_nanos(profile, 2 * params * u128::from(prompt_tokens)).max(weights);
    let decode = u128::from(max_tokens.saturating_sub(1)) * decode_pass_nanos(profile, model);
    let launch = u128::from(profile.launch_overhead_us) * 1_000;
    scale.scale_nanos(launch + prefill + decode)
}

/// The simulated latency of `job` on `profile` at `scale`.
pub fn job_latency(profile: &DeviceProfile, job: &Job<'_>, scale: TimeScale) -> Duration {
    let prompt = 1 + job.input().len() as u64;
    simulated_latency(profile, job.model(), prompt, job.max_tokens(), scale)
}

/// The steady decode speed of `model` on `profile` at `scale`, in thousandths of a token per
/// second: the figure a capacity advert carries before any job has been measured. At a scale
/// below 1 it is as many times faster as the jobs are, so it compares with measured speeds.
pub fn tokens_per_sec_milli(profile: &DeviceProfile, model: &ModelSpec, scale: TimeScale) -> u64 {
    // tokens/s * 1000 = 1e9 ns/s * 1000 / (pass_ns * ppm / 1e6).
    let denominator = decode_pass_nanos(profile, model).saturating_mul(u128::from(scale.ppm));
    let milli = (NANOS_PER_SEC * 1_000 * PPM) / denominator.max(1);
    u64::try_from(milli).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> &'static DeviceProfile {
        DeviceProfile::find(name).expect("profile")
    }

    fn model(id: &str) -> &'static ModelSpec {
        ModelSpec::find(id).expect("catalogue model")
    }

    fn nanos(d: Duration) -> u128 {
        d.as_nanos()
    }

    #[test]
    fn wse3_base_8b_short_prompt() {
        // Prefill: 2 * 8.03e9 * 100 FLOP / 125e6 FLOP/ns = 12,848 ns, above one weight stream
        // (16.06e9 B / 21e15 B/s = 764.8 -> 765 ns): compute-bound. Decode: 10 passes of
        // max(2 * 8.03e9 / 125e6 = 128.5 -> 129, 765) = 765 ns. Launch 50 us.
        let d = simulated_latency(
            profile("wse-3"),
            model("attest-base-8b"),
            100,
            11,
            TimeScale::REAL_TIME,
        );
        assert_eq!(nanos(d), 50_000 + 12_848 + 10 * 765);
    }

    #[test]
    fn h100_base_8b_long_prompt_is_compute_bound() {
        // Prefill: 2 * 8.03e9 * 1000 / 989,500 = 16,230,419.4 -> 16,230,420 ns, above the
        // weight stream 16.06e9 / 3.35e12 s = 4,794,029.9 -> 4,794,030 ns. Decode: 10 passes
        // of 4,794,030 ns (compute would be 16,231 ns). Launch 20 us.
        let d = simulated_latency(
            profile("h100-sxm"),
            model("attest-base-8b"),
            1000,
            11,
            TimeScale::REAL_TIME,
        );
        assert_eq!(nanos(d), 20_000 + 16_230_420 + 10 * 4_794_030);
        // A 100-token prompt is below the ridge point: its prefill is one weight stream.
        let short = simulated_latency(
            profile("h100-sxm"),
            model("attest-base-8b"),
            100,
            11,
            TimeScale::REAL_TIME,
        );
        assert_eq!(nanos(short), 20_000 + 4_794_030 + 10 * 4_794_030);
    }

    #[test]
    fn a100_tiny_1b() {
        // Weights 2.2e9 B / 2.039e12 B/s = 1,078,960.3 -> 1,078,961 ns; prefill compute
        // 2 * 1.1e9 * 100 / 312,000 = 705,128.2 -> 705,129 ns, so memory-bound. Decode: 100
        // passes of 1,078,961 ns. Launch 20 us.
        let d = simulated_latency(
            profile("a100-80gb"),
            model("attest-tiny-1b"),
            100,
            101,
            TimeScale::REAL_TIME,
        );
        assert_eq!(nanos(d), 20_000 + 1_078_961 + 100 * 1_078_961);
    }

    #[test]
    fn cpu_large_70b() {
        // Prefill: 2 * 70.55e9 * 10 / 2,458 = 574,043,938.2 -> 574,043,939 ns, above the
        // weight stream 141.1e9 / 307.2e9 s = 459,309,895.8 -> 459,309,896 ns. One decode
        // pass of 459,309,896 ns (compute 57,404,394 ns). Launch 5 us.
        let d = simulated_latency(
            profile("cpu"),
            model("attest-large-70b"),
            10,
            2,
            TimeScale::REAL_TIME,
        );
        assert_eq!(nanos(d), 5_000 + 574_043_939 + 459_309_896);
    }

    #[test]
    fn time_scale_multiplies_and_rounds_up() {
        let h100 = profile("h100-sxm");
        let base = model("attest-base-8b");
        let scale = TimeScale::from_factor(0.001).expect("valid");
        assert_eq!(scale.ppm(), 1_000);
        let d = simulated_latency(h100, base, 1000, 11, scale);
        // 64,190,720 ns / 1000 = 64,190.72 -> 64,191 ns.
        assert_eq!(nanos(d), 64_191);
        let job = Job::new("attest-base-8b", &[b'a'; 999], 11).expect("valid job");
        assert_eq!(job_latency(h100, &job, scale), d);
    }

    #[test]
    fn one_token_job_is_prefill_only() {
        let wse = profile("wse-3");
        let base = model("attest-base-8b");
        let d = simulated_latency(wse, base, 100, 1, TimeScale::REAL_TIME);
        assert_eq!(nanos(d), 50_000 + 12_848);
    }

    #[test]
    fn tokens_per_sec_is_the_decode_pass_rate() {
        let h100 = profile("h100-sxm");
        let base = model("attest-base-8b");
        // 1e12 / 4,794,030 ns = 208,592.8 milli-tokens/s (208.6 tokens/s).
        assert_eq!(
            tokens_per_sec_milli(h100, base, TimeScale::REAL_TIME),
            208_592
        );
        // A hundred times faster in scaled time.
        let fast = TimeScale::from_ppm(10_000).expect("valid");
        assert_eq!(tokens_per_sec_milli(h100, base, fast), 20_859_277);
        // Faster devices advertise more, for every model that fits both.
        let a100 = profile("a100-80gb");
        assert!(
            tokens_per_sec_milli(h100, base, TimeScale::REAL_TIME)
                > tokens_per_sec_milli(a100, base, TimeScale::REAL_TIME)
        );
    }

    #[test]
    fn time_scale_parsing() {
        assert_eq!("1".parse::<TimeScale>(), Ok(TimeScale::REAL_TIME));
        assert_eq!("0.01".parse::<TimeScale>().map(TimeScale::ppm), Ok(10_000));
        assert_eq!(
            " 2.5 ".parse::<TimeScale>().map(TimeScale::ppm),
            Ok(2_500_000)
        );
        for bad in ["", "fast", "0", "-1", "NaN", "inf", "1000.5", "0.0000001"] {
            let err = bad.parse::<TimeScale>().expect_err(bad);
            assert!(
                matches!(err, AccelError::BadTimeScale { .. }),
                "{bad}: {err}"
            );
        }
        assert!(TimeScale::from_ppm(0).is_err());
        assert!(TimeScale::from_ppm(TimeScale::MAX_PPM + 1).is_err());
    }

    #[test]
    fn time_scale_serde_is_a_number() {
        let s: TimeScale = serde_json::from_str("0.05").expect("number");
        assert_eq!(s.ppm(), 50_000);
        let s: TimeScale = serde_json::from_str("1").expect("integer");
        assert_eq!(s, TimeScale::REAL_TIME);
        assert_eq!(serde_json::to_string(&s).expect("serialize"), "1.0");
        let err = serde_json::from_str::<TimeScale>("-3").expect_err("negative");
        assert!(err.to_string().contains("positive"), "{err}");
    }
}
