//! Continuous batching: a device's running sequences and when each finishes. Pure, integer
//! arithmetic, in device nanoseconds (real time; the shell scales it by the `TimeScale`).
//!
//! A device runs **steps**. Each step advances every running sequence by one position: a
//! sequence's first step is its prefill (all its prompt positions at once, emitting the first
//! token), every later step decodes one token. A sequence that arrives while a step runs joins
//! at the next step, and leaves when it has emitted its `max_tokens` tokens, so the batch
//! changes at step boundaries, as in vLLM and TensorRT-LLM's in-flight batching.
//!
//! One step runs each model that has sequences in the batch, one after the other (a device
//! holds the weights of every model it serves). For one model, with `T` tokens in the step
//! (one per decoding sequence, the prompt for a prefilling one) and `K` bytes of KV cache
//! held by its sequences, the step takes
//!
//! ```text
//! max((weight_bytes + K) / (bandwidth * e), 2 * params * T / (peak * e)) + step_overhead
//! ```
//!
//! with `e` the profile's achieved efficiency. So a batch of `B` trades per-stream speed for
//! throughput exactly as serving does: while the weights dominate the bytes, `B` sequences
//! cost little more than one; as the cache or the compute grows, each stream slows. The cache a
//! sequence reads is counted at its full reservation (prompt and every output position) from
//! its first step: an upper bound that keeps a step's cost constant between admissions and
//! completions, which lets [`Batch::advance_to`] jump over runs of identical steps.
//!
//! **Admission.** A sequence is admitted if the batch has fewer than `max_batch` sequences and
//! its reservation fits in the KV cache left ([`DeviceProfile::kv_cache_bytes`] less what the
//! running sequences hold). What a device may promise to anyone, whatever the job, is
//! [`sequences_for_any_job`]: the batch of the protocol's longest jobs it can always hold.
//!
//! Work per call: [`Batch::advance_to`] does `O(B)` per run of identical steps, and a run ends
//! only at an admission, a prefill or a completion, so its cost follows the jobs, never the
//! simulated time that passed.

use std::collections::BTreeMap;

use attest_protocol::limits::{MAX_INPUT_BYTES, MAX_OUTPUT_TOKENS};
use attest_protocol::workload::ModelSpec;

use super::profile::DeviceProfile;

/// The most positions one job can hold: BOS, the longest input, and every output token but
/// the last (which is emitted, never attended to).
pub const MAX_POSITIONS: u64 = 1 + MAX_INPUT_BYTES as u64 + MAX_OUTPUT_TOKENS as u64 - 1;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// One sequence to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqSpec {
    /// The model (a catalogue entry the device can serve).
    pub model: &'static ModelSpec,
    /// Prompt positions, BOS included (`1 + input.len()` for a workload job).
    pub prompt: u64,
    /// Tokens to emit (at least 1).
    pub max_tokens: u32,
}

impl SeqSpec {
    /// Positions the sequence holds in the KV cache at most: its prompt and every emitted
    /// token but the last.
    pub fn positions(&self) -> u64 {
        self.prompt
            .saturating_add(u64::from(self.max_tokens))
            .saturating_sub(1)
    }

    /// Bytes of KV cache the sequence reserves.
    pub fn kv_bytes(&self) -> u64 {
        self.positions()
            .saturating_mul(self.model.kv_bytes_per_position())
    }
}

/// Why a sequence was not admitted now (it may be later, when others finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The batch already runs `max_batch` sequences.
    BatchFull,
    /// The sequence's cache reservation does not fit in what is left.
    CacheFull,
    /// The sequence could never run here: its model does not fit the device, it asks for no
    /// token, or its reservation exceeds the whole cache.
    NeverFits,
}

/// A sequence in the batch.
#[derive(Debug, Clone)]
struct Seq {
    spec: SeqSpec,
    /// Device time it arrived; it joins the first step that starts at or after it.
    arrived: u64,
    /// Tokens still to emit.
    to_emit: u32,
    /// Whether its prefill step has run.
    prefilled: bool,
}

/// A device's batch of running sequences, keyed by the caller's ids.
#[derive(Debug, Clone)]
pub struct Batch {
    profile: &'static DeviceProfile,
    /// Device time when the next step may start: the end of the last step, or the last time
    /// seen while idle.
    clock: u64,
    seqs: BTreeMap<u64, Seq>,
    kv_used: u64,
}

impl Batch {
    /// An empty batch on `profile`, idle at device time `now`.
    pub fn new(profile: &'static DeviceProfile, now: u64) -> Self {
        Self {
            profile,
            clock: now,
            seqs: BTreeMap::new(),
            kv_used: 0,
        }
    }

    /// Sequences running or waiting to join the next step.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no sequence is running.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Bytes of KV cache the running sequences reserve.
    pub fn kv_used(&self) -> u64 {
        self.kv_used
    }

    /// Whether `spec` could be admitted now.
    pub fn check(&self, spec: &SeqSpec) -> Result<(), Refusal> {
        let cache = self.profile.kv_cache_bytes();
        if !self.profile.fits(spec.model) || spec.max_tokens == 0 || spec.kv_bytes() > cache {
            return Err(Refusal::NeverFits);
        }
        if self.seqs.len() >= self.profile.max_batch as usize {
            return Err(Refusal::BatchFull);
        }
        if self.kv_used.saturating_add(spec.kv_bytes()) > cache {
            return Err(Refusal::CacheFull);
        }
        Ok(())
    }

    /// Admits sequence `id` arriving at device time `now`. Call [`Self::advance_to`] with
    /// `now` first, so finished sequences have left. An id already running is refused as
    /// never fitting (ids are the caller's to keep unique).
    pub fn admit(&mut self, id: u64, spec: SeqSpec, now: u64) -> Result<(), Refusal> {
        self.check(&spec)?;
        if self.seqs.contains_key(&id) {
            return Err(Refusal::NeverFits);
        }
        if self.seqs.is_empty() {
            // Idle: the next step starts when this sequence arrives.
            self.clock = self.clock.max(now);
        }
        self.kv_used = self.kv_used.saturating_add(spec.kv_bytes());
        self.seqs.insert(
            id,
            Seq {
                spec,
                arrived: now.max(self.clock),
                to_emit: spec.max_tokens,
                prefilled: false,
            },
        );
        Ok(())
    }

    /// Runs every step that ends at or before `now` and returns the sequences that finished,
    /// with the device time each did, in order.
    pub fn advance_to(&mut self, now: u64) -> Vec<(u64, u64)> {
        let mut done = Vec::new();
        self.run(now, &mut done, false);
        if self.seqs.is_empty() {
            self.clock = self.clock.max(now);
        }
        done
    }

    /// The device time the next sequence finishes, if any runs and nothing else joins.
    pub fn next_finish(&self) -> Option<u64> {
        let mut ahead = self.clone();
        let mut done = Vec::new();
        ahead.run(u64::MAX, &mut done, true);
        done.first().map(|&(_, at)| at)
    }

    /// Device nanoseconds of one step with the given members.
    fn step_nanos(&self, members: &[&Seq]) -> u64 {
        let p = self.profile;
        let e = u128::from(p.efficiency_pct.clamp(1, 100));
        let mut total: u128 = 0;
        let mut models: Vec<&'static ModelSpec> = Vec::new();
        for s in members {
            if !models.iter().any(|m| m.id == s.spec.model.id) {
                models.push(s.spec.model);
            }
        }
        for model in models {
            let (mut tokens, mut kv) = (0u128, 0u128);
            for s in members.iter().filter(|s| s.spec.model.id == model.id) {
                tokens += if s.prefilled {
                    1
                } else {
                    u128::from(s.spec.prompt.max(1))
                };
                kv += u128::from(s.spec.kv_bytes());
            }
            let bytes = u128::from(model.weight_bytes()) + kv;
            // bytes / (bandwidth * e / 100) in ns; GFLOP/s is FLOP per ns.
            let memory =
                (bytes * NANOS_PER_SEC * 100).div_ceil(u128::from(p.memory_bandwidth.max(1)) * e);
            let flops = 2 * u128::from(model.params) * tokens;
            let compute = (flops * 100).div_ceil(u128::from(p.peak_gflops.max(1)) * e);
            total += memory.max(compute) + u128::from(p.step_overhead_us) * 1_000;
        }
        u64::try_from(total).unwrap_or(u64::MAX).max(1)
    }

    /// Runs steps ending at or before `until`; with `first_only`, stops after the first step
    /// in which a sequence finishes.
    fn run(&mut self, until: u64, done: &mut Vec<(u64, u64)>, first_only: bool) {
        loop {
            let members: Vec<&Seq> = self
                .seqs
                .values()
                .filter(|s| s.arrived <= self.clock)
                .collect();
            if members.is_empty() {
                // Idle until the earliest waiting arrival, if it comes in time.
                match self.seqs.values().map(|s| s.arrived).min() {
                    Some(at) if at <= until => {
                        self.clock = at;
                        continue;
                    }
                    _ => return,
                }
            }
            let cost = self.step_nanos(&members);
            let Some(end) = self.clock.checked_add(cost).filter(|&e| e <= until) else {
                return;
            };
            // A run of identical steps: no prefill in it, nobody joining, nobody leaving
            // before its last step.
            let steps = if members.iter().any(|s| !s.prefilled) {
                1
            } else {
                let finish = members.iter().map(|s| s.to_emit).min().unwrap_or(1);
                let fit = (until - self.clock) / cost;
                let join = self
                    .seqs
                    .values()
                    .filter(|s| s.arrived > self.clock)
                    .map(|s| (s.arrived - self.clock).div_ceil(cost))
                    .min()
                    .unwrap_or(u64::MAX);
                u64::from(finish).min(fit).min(join).max(1)
            };
            let end = if steps == 1 {
                end
            } else {
                self.clock.saturating_add(cost.saturating_mul(steps))
            };
            let ids: Vec<u64> = self
                .seqs
                .iter()
                .filter(|(_, s)| s.arrived <= self.clock)
                .map(|(id, _)| *id)
                .collect();
            self.clock = end;
            let mut finished = false;
            for id in ids {
                let Some(s) = self.seqs.get_mut(&id) else {
                    continue;
                };
                s.prefilled = true;
                // `steps` is at most every member's `to_emit` (or 1 with a prefill).
                s.to_emit = s
                    .to_emit
                    .saturating_sub(u32::try_from(steps).unwrap_or(u32::MAX));
                if s.to_emit == 0 {
                    let kv = s.spec.kv_bytes();
                    self.seqs.remove(&id);
                    self.kv_used = self.kv_used.saturating_sub(kv);
                    done.push((id, end));
                    finished = true;
                }
            }
            if finished && first_only {
                return;
            }
        }
    }
}

/// Sequences of the protocol's longest job (of the most cache-hungry model the device serves)
/// that `profile` always holds at once: what it may advertise, whatever jobs come. At least 1
/// for any profile that serves a model (tested for every profile).
pub fn sequences_for_any_job(profile: &DeviceProfile) -> u32 {
    let worst = profile
        .servable_models()
        .map(|m| m.kv_bytes_per_position().saturating_mul(MAX_POSITIONS))
        .max()
        .unwrap_or(u64::MAX)
        .max(1);
    let by_cache = u32::try_from(profile.kv_cache_bytes() / worst).unwrap_or(u32::MAX);
    by_cache.min(profile.max_batch)
}

/// The per-stream decode speed of `model` on `profile` with `batch` sequences of it decoding
/// at once, each holding `positions` of cache, in thousandths of a token per second of device
/// time.
pub fn stream_tokens_per_sec_milli(
    profile: &'static DeviceProfile,
    model: &'static ModelSpec,
    batch: u32,
    positions: u64,
) -> u64 {
    let spec = SeqSpec {
        model,
        prompt: positions,
        max_tokens: 1,
    };
    let seq = Seq {
        spec,
        arrived: 0,
        to_emit: 1,
        prefilled: true,
    };
    let members: Vec<&Seq> = std::iter::repeat_n(&seq, batch.max(1) as usize).collect();
    let step = Batch::new(profile, 0).step_nanos(&members);
    u64::try_from(NANOS_PER_SEC * 1_000 / u128::from(step)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::fixtures::{model, profile};

    fn seq(id: &str, prompt: u64, max_tokens: u32) -> SeqSpec {
        SeqSpec {
            model: model(id),
            prompt,
            max_tokens,
        }
    }

    #[test]
    fn kv_bytes_per_position_follow_the_declared_configs() {
        assert_eq!(model("attest-tiny-1b").kv_bytes_per_position(), 22_528);
        assert_eq!(model("attest-base-8b").kv_bytes_per_position(), 131_072);
        assert_eq!(model("attest-large-70b").kv_bytes_per_position(), 327_680);
        assert_eq!(MAX_POSITIONS, 5_120);
    }

    #[test]
    fn calibrated_single_stream_speeds() {
        let base = model("attest-base-8b");
        // H100: 16.06e9 B / (3.35e12 * 0.77) = 6,225,955 ns, + 100 us: 158.1 tokens/s.
        let h100 = stream_tokens_per_sec_milli(profile("h100-sxm"), base, 1, 1);
        assert_eq!(h100 / 1_000, 158);
        // A100 80GB: 16.06e9 / (2.039e12 * 0.77) = 10.23 ms + 100 us: 96.8 tokens/s.
        let a100 = stream_tokens_per_sec_milli(profile("a100-80gb"), base, 1, 1);
        assert_eq!(a100 / 1_000, 96);
        // WSE-3: the 550 us step dominates: 1,814 tokens/s, Cerebras's published ~1,800.
        let wse = stream_tokens_per_sec_milli(profile("wse-3"), base, 1, 1);
        assert_eq!(wse / 1_000, 1_814);
        // The wafer's low latency per stream is the point: 11 times an H100's.
        assert!(wse > 11 * h100);
    }

    #[test]
    fn a_bigger_batch_is_slower_per_stream_and_faster_in_all() {
        let h100 = profile("h100-sxm");
        let base = model("attest-base-8b");
        let mut last_stream = u64::MAX;
        let mut last_total = 0u128;
        for b in [1u32, 8, 64, 256] {
            let stream = stream_tokens_per_sec_milli(h100, base, b, 1_000);
            let total = u128::from(stream) * u128::from(b);
            assert!(stream <= last_stream, "batch {b}");
            assert!(total > last_total, "batch {b}");
            (last_stream, last_total) = (stream, total);
        }
        // 256 sequences of 1,000 positions: ~13,000 tokens/s in all, the published ~12,500.
        let all = last_total / 1_000;
        assert!((12_000..14_500).contains(&all), "{all}");
    }

    #[test]
    fn advertised_sequences_hold_the_longest_jobs() {
        // WSE-3: 25.74 GB of cache / (131,072 B * 5,120) = 38.
        assert_eq!(sequences_for_any_job(profile("wse-3")), 38);
        // H100 and A100: 61.74 GB / 671.09 MB = 91.99.
        assert_eq!(sequences_for_any_job(profile("h100-sxm")), 91);
        assert_eq!(sequences_for_any_job(profile("a100-80gb")), 91);
        // CPU: capped by its scheduler.
        assert_eq!(sequences_for_any_job(profile("cpu")), 16);
        for p in crate::accel::PROFILES.iter() {
            let n = sequences_for_any_job(p);
            let mut batch = Batch::new(p, 0);
            let worst = p
                .servable_models()
                .max_by_key(|m| m.kv_bytes_per_position())
                .expect("a model");
            let longest = SeqSpec {
                model: worst,
                prompt: 1 + MAX_INPUT_BYTES as u64,
                max_tokens: MAX_OUTPUT_TOKENS,
            };
            for i in 0..u64::from(n) {
                batch.admit(i, longest, 0).expect("advertised room");
            }
            assert!(batch.admit(u64::from(n), longest, 0).is_err(), "{}", p.name);
        }
    }

    #[test]
    fn a_lone_sequence_runs_prefill_then_decode() {
        let h100 = profile("h100-sxm");
        let mut b = Batch::new(h100, 1_000);
        b.admit(7, seq("attest-base-8b", 20, 4), 1_000)
            .expect("room");
        let alone = b.clone();
        let step = alone.step_nanos(&alone.seqs.values().collect::<Vec<_>>());
        // A 20-token prefill is memory-bound like a decode step (weights dominate), and the
        // cache counted is the full reservation, so all four steps cost the same.
        assert_eq!(b.next_finish(), Some(1_000 + 4 * step));
        assert!(b.advance_to(1_000 + 4 * step - 1).is_empty());
        assert_eq!(b.advance_to(1_000 + 4 * step), vec![(7, 1_000 + 4 * step)]);
        assert!(b.is_empty() && b.kv_used() == 0);
    }

    #[test]
    fn a_late_arrival_joins_at_the_next_step_and_slows_no_one_much() {
        let h100 = profile("h100-sxm");
        let mut b = Batch::new(h100, 0);
        b.admit(1, seq("attest-base-8b", 10, 10), 0).expect("room");
        let solo = b.next_finish().expect("runs");
        // A second sequence arrives mid-way through the first's third step.
        let step = solo / 10;
        let at = 2 * step + step / 2;
        assert!(b.advance_to(at).is_empty());
        b.admit(2, seq("attest-base-8b", 10, 10), at).expect("room");
        let done = {
            let mut all = Vec::new();
            let mut t = at;
            while let Some(next) = b.next_finish() {
                t = next;
                all.extend(b.advance_to(t));
            }
            assert!(t > at);
            all
        };
        let (first, second) = (done[0], done[1]);
        assert_eq!((first.0, second.0), (1, 2));
        // The first is slowed by sharing its steps, but by far less than 2x (memory-bound).
        assert!(
            first.1 > solo && first.1 < solo + solo / 10,
            "{first:?} vs {solo}"
        );
        // The second started at the step boundary after it arrived (3 steps in).
        assert!(second.1 > first.1);
    }

    #[test]
    fn admission_is_bounded_by_batch_and_cache() {
        let cpu = profile("cpu");
        let mut b = Batch::new(cpu, 0);
        for i in 0..16 {
            b.admit(i, seq("attest-tiny-1b", 5, 2), 0).expect("room");
        }
        assert_eq!(
            b.admit(16, seq("attest-tiny-1b", 5, 2), 0),
            Err(Refusal::BatchFull)
        );
        // A model the device cannot hold never fits.
        let wse = profile("wse-3");
        let mut w = Batch::new(wse, 0);
        assert_eq!(
            w.admit(1, seq("attest-large-70b", 5, 2), 0),
            Err(Refusal::NeverFits)
        );
        assert_eq!(
            w.admit(1, seq("attest-tiny-1b", 5, 0), 0),
            Err(Refusal::NeverFits)
        );
        // Ids are unique.
        w.admit(1, seq("attest-tiny-1b", 5, 2), 0).expect("room");
        assert_eq!(
            w.admit(1, seq("attest-tiny-1b", 5, 2), 0),
            Err(Refusal::NeverFits)
        );
    }

    #[test]
    fn jumping_over_identical_steps_matches_stepping_one_by_one() {
        let a100 = profile("a100-80gb");
        let specs = [
            seq("attest-base-8b", 30, 50),
            seq("attest-tiny-1b", 3, 7),
            seq("attest-base-8b", 100, 1),
            seq("attest-tiny-1b", 40, 300),
        ];
        let mut fast = Batch::new(a100, 0);
        let mut slow = Batch::new(a100, 0);
        let mut t = 0u64;
        let (mut got_fast, mut got_slow) = (Vec::new(), Vec::new());
        for (i, s) in specs.iter().enumerate() {
            got_fast.extend(fast.advance_to(t));
            fast.admit(i as u64, *s, t).expect("room");
            // The slow batch is advanced in tiny increments.
            while let Some(next) = slow.next_finish().filter(|&n| n <= t) {
                got_slow.extend(slow.advance_to(next));
            }
            got_slow.extend(slow.advance_to(t));
            slow.admit(i as u64, *s, t).expect("room");
            t += 3_333_333;
        }
        got_fast.extend(fast.advance_to(u64::MAX / 2));
        let mut now = t;
        while !slow.is_empty() {
            now += 1_000_000;
            got_slow.extend(slow.advance_to(now));
        }
        assert_eq!(got_fast.len(), 4);
        assert_eq!(got_fast, got_slow);
    }
}
