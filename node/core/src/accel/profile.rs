//! Device profiles: an accelerator's public figures, as the roofline needs them. Pure.
//!
//! Each figure names its public source. Where a figure is an assumption (a CPU is not one
//! product; launch overheads are not on datasheets), the comment says so and why the value is
//! reasonable.
//!
//! **Fitting a model.** A device serves a model only if the model's declared weights
//! (`params * bytes_per_param`) fit in the device's memory. A profile is one device: weights
//! are never sharded across several, because the model here has no term for the interconnect
//! that sharding needs. So `attest-large-70b` (70.55B parameters at 2 bytes, 141.1 GB) is
//! refused on `wse-3` (44 GB), `h100-sxm` and `a100-80gb` (80 GB), and served only by `cpu`
//! (256 GB). A multi-wafer or multi-GPU server would be a profile of its own, with its summed
//! memory and its own figures.
//!
//! **Serving.** A device holds the weights of every model it serves at once (they fit together
//! on every profile, tested) and gives the rest of its memory to the KV cache. It runs jobs by
//! continuous batching (`super::batching`): a batch of running sequences advances one token per
//! step, and a sequence joins or leaves at any step. How many run at once is bounded by the KV
//! cache and by the scheduler's `max_batch`; how fast a step is, by the roofline at the
//! profile's achieved `efficiency_pct` plus a fixed `step_overhead_us`. Those two are the
//! calibration, each against a published serving figure named at the profile.

use attest_protocol::DeviceName;
use attest_protocol::tx::Capability;
use attest_protocol::workload::ModelSpec;

use super::AccelError;

/// An accelerator's public figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The profile's name in config, adverts and transactions.
    pub name: &'static str,
    /// What the profile stands for.
    pub description: &'static str,
    /// Peak dense 16-bit compute, in GFLOP/s (1 GFLOP/s is 1 FLOP per nanosecond).
    pub peak_gflops: u64,
    /// Memory that holds the weights, in bytes.
    pub memory_bytes: u64,
    /// Bandwidth of that memory, in bytes per second.
    pub memory_bandwidth: u64,
    /// The share of peak compute and of memory bandwidth a serving stack reaches, in percent
    /// (calibrated; see each profile).
    pub efficiency_pct: u32,
    /// Fixed cost of one batch step of one model, in microseconds: kernel launches, sampling
    /// and scheduling, which do not shrink with the batch (calibrated; see each profile).
    pub step_overhead_us: u64,
    /// The most sequences the scheduler runs at once, whatever the KV cache would allow.
    pub max_batch: u32,
}

/// Every profile a node can run, by name.
pub const PROFILES: [DeviceProfile; 4] = [
    DeviceProfile {
        name: "wse-3",
        description: "Cerebras WSE-3 (one CS-3 wafer)",
        // Cerebras CS-3 launch announcement (March 2024): "125 petaflops of peak AI
        // performance"; 44 GB of on-chip SRAM; 21 PB/s memory bandwidth. The peak is the
        // vendor's AI-compute figure, taken as given.
        peak_gflops: 125_000_000,
        memory_bytes: 44_000_000_000,
        memory_bandwidth: 21_000_000_000_000_000,
        // Calibration: Cerebras, "Introducing Cerebras Inference" (27 August 2024): 1,800
        // tokens/s per user for Llama 3.1 8B at 16-bit weights (Artificial Analysis measured
        // above 1,800). The roofline says 0.76 us per token (16 GB at 21 PB/s), so the wafer's
        // speed is set by its per-step latency through the pipeline of layers, not by its
        // bandwidth: 550 us per step gives 1,815 tokens/s for the 8B model alone. The efficiency
        // is taken as the GPUs' (below); at these bandwidths it hardly matters.
        efficiency_pct: 77,
        step_overhead_us: 550,
        // Assumption: Cerebras publishes no batch size. 64 sequences keep the SRAM's KV cache
        // (25.7 GB after both models' weights) within what the protocol's longest jobs need
        // (38 sequences of 5,120 positions of the 8B model) a few times over for short ones.
        max_batch: 64,
    },
    DeviceProfile {
        name: "h100-sxm",
        description: "NVIDIA H100 SXM5 80GB",
        // NVIDIA H100 datasheet: BF16 Tensor Core 1,979 TFLOPS "with sparsity", so 989.5
        // TFLOP/s dense; 80 GB HBM3 (decimal, as the datasheet states it); 3.35 TB/s.
        peak_gflops: 989_500,
        memory_bytes: 80_000_000_000,
        memory_bandwidth: 3_350_000_000_000,
        // Calibration: vLLM on one A100 40GB (1.555 TB/s) decodes Llama-3.1-8B at about 75
        // tokens/s for a single request, 77% of its memory-bandwidth ceiling (J. Musgrave,
        // "vLLM throughput-latency sweep on NVIDIA A100", vLLM 0.23, 1,024 in / 128 out). The
        // same share on the H100 gives about 158 tokens/s per stream for the 8B model; at a batch of
        // 256 sequences of about 1,000 positions the steps read 50 GB of weights and cache,
        // about 13,000 tokens/s in all, which is the ~12,500 tokens/s published for vLLM with
        // Llama 3.1 8B on one H100 (morphllm.com, "vLLM Benchmarks", 2026). CUDA graphs make
        // the per-step overhead small: 100 us for sampling and scheduling (assumption).
        efficiency_pct: 77,
        step_overhead_us: 100,
        // vLLM's default `max_num_seqs` (engine arguments).
        max_batch: 256,
    },
    DeviceProfile {
        name: "a100-80gb",
        description: "NVIDIA A100 SXM4 80GB",
        // NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS dense (624 with sparsity);
        // 80 GB HBM2e; 2,039 GB/s (SXM).
        peak_gflops: 312_000,
        memory_bytes: 80_000_000_000,
        memory_bandwidth: 2_039_000_000_000,
        // Calibration: as for the H100, from the same A100 measurement (77% of bandwidth);
        // 8B decodes at about 97 tokens/s per stream on this 80 GB part.
        efficiency_pct: 77,
        step_overhead_us: 100,
        // vLLM's default `max_num_seqs`.
        max_batch: 256,
    },
    DeviceProfile {
        name: "cpu",
        description: "32-core AVX-512 server CPU, 8-channel DDR5-4800, 256 GB",
        // Assumption, a generic part (e.g. a 32-core Xeon with one 512-bit FMA unit per
        // core): 32 cores * 2.4 GHz all-core AVX-512 * 16 fp32 lanes * 2 FLOP per FMA =
        // 2,457.6 GFLOP/s (16-bit inputs are widened to fp32). Memory: 8 x 32 GB RDIMMs;
        // 8 channels * 4,800 MT/s * 8 bytes = 307.2 GB/s (JEDEC DDR5-4800).
        peak_gflops: 2_458,
        memory_bytes: 256_000_000_000,
        memory_bandwidth: 307_200_000_000,
        // Assumption: CPU serving (llama.cpp, vLLM's CPU backend) reaches a smaller share of
        // the memory roofline than GPUs; 60% is typical of bandwidth-bound kernels on DDR5.
        efficiency_pct: 60,
        // Assumption: waking the worker threads and sampling, about 200 us per step.
        step_overhead_us: 200,
        // Assumption: CPU servers run few sequences at once (llama.cpp's `--parallel` slots);
        // past 16 the compute roof (8 FLOP/byte) makes every stream crawl.
        max_batch: 16,
    },
];

impl DeviceProfile {
    /// The profile named `name`.
    pub fn find(name: &str) -> Result<&'static DeviceProfile, AccelError> {
        PROFILES
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| AccelError::UnknownProfile {
                name: name.to_owned(),
                known: known_names(),
            })
    }

    /// This profile's name as the ledger type.
    pub fn device_name(&self) -> DeviceName {
        DeviceName::new(self.name).expect("profile names are valid device names (tested)")
    }

    /// This device as a stake binds it on the ledger: its name and memory, which decide the
    /// models the contract assigns it (`Capability::can_run`, the same rule as [`Self::fits`]).
    pub fn capability(&self) -> Capability {
        Capability {
            device: self.device_name(),
            memory_bytes: self.memory_bytes,
        }
    }

    /// Whether `model`'s declared weights fit in this device's memory.
    pub fn fits(&self, model: &ModelSpec) -> bool {
        model.weight_bytes() <= self.memory_bytes
    }

    /// `Ok` if `model` fits; otherwise the error naming model, device and sizes.
    pub fn check_fits(&self, model: &'static ModelSpec) -> Result<(), AccelError> {
        if self.fits(model) {
            Ok(())
        } else {
            Err(AccelError::ModelDoesNotFit {
                model: model.id,
                device: self.name,
                weight_bytes: model.weight_bytes(),
                memory_bytes: self.memory_bytes,
            })
        }
    }

    /// The catalogue models this device can serve, in catalogue order.
    pub fn servable_models(&self) -> impl Iterator<Item = &'static ModelSpec> + '_ {
        attest_protocol::workload::CATALOGUE
            .iter()
            .filter(|m| self.fits(m))
    }

    /// Bytes of weights the device holds: every model it can serve, loaded at once.
    pub fn held_weight_bytes(&self) -> u64 {
        self.servable_models().map(ModelSpec::weight_bytes).sum()
    }

    /// Bytes left for the KV cache once the weights are held.
    pub fn kv_cache_bytes(&self) -> u64 {
        self.memory_bytes.saturating_sub(self.held_weight_bytes())
    }
}

/// The profile names, comma-separated, for error messages.
fn known_names() -> String {
    PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::fixtures::model;

    #[test]
    fn finds_every_profile_by_name() {
        for p in &PROFILES {
            let found = DeviceProfile::find(p.name).expect("listed profile");
            assert_eq!(found, p);
            assert_eq!(p.device_name().as_str(), p.name);
            assert!(p.max_batch > 0 && p.peak_gflops > 0 && p.memory_bandwidth > 0);
            assert!(p.efficiency_pct > 0 && p.efficiency_pct <= 100);
        }
    }

    #[test]
    fn unknown_profile_names_the_known_ones() {
        let err = DeviceProfile::find("tpu-v5").expect_err("no such profile");
        assert!(matches!(err, AccelError::UnknownProfile { ref name, .. } if name == "tpu-v5"));
        let text = err.to_string();
        for p in &PROFILES {
            assert!(text.contains(p.name), "{text} should list {}", p.name);
        }
        // Names are matched exactly: no case folding, no trimming.
        assert!(DeviceProfile::find("H100-SXM").is_err());
        assert!(DeviceProfile::find(" cpu").is_err());
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in PROFILES.iter().enumerate() {
            for b in &PROFILES[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn the_70b_model_fits_only_the_cpu() {
        let large = model("attest-large-70b");
        assert_eq!(large.weight_bytes(), 141_100_000_000);
        let fits: Vec<&str> = PROFILES
            .iter()
            .filter(|p| p.fits(large))
            .map(|p| p.name)
            .collect();
        assert_eq!(fits, ["cpu"]);
        let wse = DeviceProfile::find("wse-3").expect("profile");
        let err = wse.check_fits(large).expect_err("141 GB > 44 GB");
        assert_eq!(
            err,
            AccelError::ModelDoesNotFit {
                model: "attest-large-70b",
                device: "wse-3",
                weight_bytes: 141_100_000_000,
                memory_bytes: 44_000_000_000,
            }
        );
        let text = err.to_string();
        assert!(text.contains("attest-large-70b") && text.contains("wse-3"));
        assert!(text.contains("141100000000") && text.contains("44000000000"));
    }

    #[test]
    fn every_profile_holds_all_its_models_at_once_with_room_for_a_cache() {
        for p in &PROFILES {
            assert!(p.held_weight_bytes() < p.memory_bytes, "{}", p.name);
            // Room for at least one sequence of the protocol's longest job of each model.
            for m in p.servable_models() {
                let longest = m.kv_bytes_per_position() * crate::accel::batching::MAX_POSITIONS;
                assert!(p.kv_cache_bytes() >= longest, "{} {}", p.name, m.id);
            }
        }
        let wse = DeviceProfile::find("wse-3").expect("profile");
        assert_eq!(wse.held_weight_bytes(), 2_200_000_000 + 16_060_000_000);
        assert_eq!(wse.kv_cache_bytes(), 44_000_000_000 - 18_260_000_000);
    }

    #[test]
    fn smaller_models_fit_every_device() {
        for p in &PROFILES {
            for id in ["attest-tiny-1b", "attest-base-8b"] {
                assert!(p.check_fits(model(id)).is_ok(), "{id} on {}", p.name);
            }
        }
        let wse = DeviceProfile::find("wse-3").expect("profile");
        let ids: Vec<&str> = wse.servable_models().map(|m| m.id).collect();
        assert_eq!(ids, ["attest-tiny-1b", "attest-base-8b"]);
        let cpu = DeviceProfile::find("cpu").expect("profile");
        assert_eq!(cpu.servable_models().count(), 3);
    }
}
