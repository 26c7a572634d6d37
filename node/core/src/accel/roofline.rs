//! Simulated time: the [`TimeScale`] that maps device time to real time, and the figures a
//! node derives from the batching model (`super::batching`) before it has measured anything:
//! a lone job's latency and the per-stream speed its adverts carry. Pure, integer arithmetic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use attest_protocol::workload::{Job, ModelSpec};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AccelError;
use super::batching::{
    Batch, MAX_POSITIONS, SeqSpec, sequences_for_any_job, stream_tokens_per_sec_milli,
};
use super::profile::DeviceProfile;

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
    pub fn scale_nanos(self, nanos: u128) -> Duration {
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

/// The simulated latency of running `model` over `prompt_tokens` prompt positions and
/// generating `max_tokens` tokens on `profile` alone (a batch of one), at `scale`: its prefill
/// step and `max_tokens - 1` decode steps (see `super::batching`).
///
/// `prompt_tokens` counts every position of the prompt, the BOS token included: for a
/// workload [`Job`] it is `1 + input.len()` ([`job_latency`] does this). Whether the model
/// fits the device is a separate question ([`DeviceProfile::check_fits`]); one that does not,
/// or a job of no tokens, takes no time.
pub fn simulated_latency(
    profile: &'static DeviceProfile,
    model: &'static ModelSpec,
    prompt_tokens: u64,
    max_tokens: u32,
    scale: TimeScale,
) -> Duration {
    let mut batch = Batch::new(profile, 0);
    let spec = SeqSpec {
        model,
        prompt: prompt_tokens,
        max_tokens,
    };
    if batch.admit(0, spec, 0).is_err() {
        return Duration::ZERO;
    }
    let nanos = batch.next_finish().unwrap_or(0);
    scale.scale_nanos(u128::from(nanos))
}

/// The simulated latency of `job` on `profile` alone, at `scale`.
pub fn job_latency(profile: &'static DeviceProfile, job: &Job<'_>, scale: TimeScale) -> Duration {
    let prompt = 1 + job.input().len() as u64;
    simulated_latency(profile, job.model(), prompt, job.max_tokens(), scale)
}

/// The decode speed of one stream of `model` on `profile` at the load the device advertises
/// (a full batch of [`sequences_for_any_job`] sequences of the protocol's longest jobs), at
/// `scale`, in thousandths of a token per second: the figure a capacity advert carries before
/// any job has been measured, a floor on what any stream gets. At a scale below 1 it is as
/// many times faster as the jobs are, so it compares with measured speeds.
pub fn tokens_per_sec_milli(
    profile: &'static DeviceProfile,
    model: &'static ModelSpec,
    scale: TimeScale,
) -> u64 {
    let batch = sequences_for_any_job(profile);
    let real = stream_tokens_per_sec_milli(profile, model, batch, MAX_POSITIONS);
    let scaled = u128::from(real) * PPM / u128::from(scale.ppm.max(1));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::fixtures::{model, profile};

    fn nanos(d: Duration) -> u128 {
        d.as_nanos()
    }

    #[test]
    fn a_lone_job_is_its_prefill_and_decode_steps() {
        let h100 = profile("h100-sxm");
        let base = model("attest-base-8b");
        // Each step of a lone 8B sequence on the H100 streams the weights and its cache at 77%
        // of 3.35 TB/s, plus 100 us.
        let one = nanos(simulated_latency(h100, base, 100, 1, TimeScale::REAL_TIME));
        let eleven = nanos(simulated_latency(h100, base, 100, 11, TimeScale::REAL_TIME));
        assert!((6_300_000..6_400_000).contains(&one), "{one}");
        // Eleven such steps; each reads a cache of 110 positions rather than 100.
        assert!(
            eleven > 11 * one && eleven < 11 * one + 11 * 10_000,
            "{eleven}"
        );
        // A long prompt's prefill is compute-bound: 2 * 8.03e9 * 4,000 FLOP at 77% of
        // 989.5 TFLOP/s is 84 ms.
        let long = nanos(simulated_latency(
            h100,
            base,
            4_000,
            1,
            TimeScale::REAL_TIME,
        ));
        assert!((84_000_000..85_000_000).contains(&long), "{long}");
        // The wafer is faster per stream, the 70B model does not fit it.
        let wse = profile("wse-3");
        assert!(nanos(simulated_latency(wse, base, 100, 11, TimeScale::REAL_TIME)) < eleven / 10);
        let large = model("attest-large-70b");
        assert_eq!(
            simulated_latency(wse, large, 10, 2, TimeScale::REAL_TIME),
            Duration::ZERO
        );
    }

    #[test]
    fn time_scale_multiplies_and_rounds_up() {
        let h100 = profile("h100-sxm");
        let base = model("attest-base-8b");
        let scale = TimeScale::from_factor(0.001).expect("valid");
        assert_eq!(scale.ppm(), 1_000);
        let real = simulated_latency(h100, base, 1000, 11, TimeScale::REAL_TIME);
        let d = simulated_latency(h100, base, 1000, 11, scale);
        assert_eq!(nanos(d), nanos(real).div_ceil(1_000));
        let job = Job::new("attest-base-8b", &[b'a'; 999], 11).expect("valid job");
        assert_eq!(job_latency(h100, &job, scale), d);
    }

    #[test]
    fn advertised_speed_is_a_stream_at_full_load() {
        let h100 = profile("h100-sxm");
        let base = model("attest-base-8b");
        let loaded = tokens_per_sec_milli(h100, base, TimeScale::REAL_TIME);
        let alone = stream_tokens_per_sec_milli(h100, base, 1, 1);
        // 91 sequences of 5,120 positions read 61.7 GB of cache besides the weights.
        assert!(loaded < alone / 4 && loaded > 0, "{loaded} vs {alone}");
        // A hundred times faster in scaled time.
        let fast = TimeScale::from_ppm(10_000).expect("valid");
        assert_eq!(tokens_per_sec_milli(h100, base, fast), loaded * 100);
        // The wafer is faster per stream than the GPUs, which are faster than the CPU.
        let tpm = |p: &str| tokens_per_sec_milli(profile(p), base, TimeScale::REAL_TIME);
        assert!(tpm("wse-3") > tpm("h100-sxm"));
        assert!(tpm("h100-sxm") > tpm("a100-80gb"));
        assert!(tpm("a100-80gb") > tpm("cpu"));
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
