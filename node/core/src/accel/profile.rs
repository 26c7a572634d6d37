//! Device profiles: an accelerator's public figures, as the roofline needs them. Pure.
//!
//! Each figure names its public source. Where a figure is an assumption (a CPU is not one
//! product; launch overheads are not on datasheets), the comment says so and why the value is
//! reasonable.
//!
//! **Fitting a model.** A device serves a model only if the model's declared weights
//! (`params * bytes_per_param`) fit in the device's memory. A profile is one device: weights
//! are never sharded across several, because the roofline here has no term for the
//! interconnect that sharding needs. So `attest-large-70b` (70.55B parameters at 2 bytes,
//! 141.1 GB) is refused on `wse-3` (44 GB), `h100-sxm` and `a100-80gb` (80 GB), and served
//! only by `cpu` (256 GB). A multi-wafer or multi-GPU server would be a profile of its own,
//! with its summed memory and its own figures. The KV cache is not counted: a job has at most
//! 5,120 positions, whose cache for these grouped-query models is at most about 1.7 GB, small
//! next to the weights and within the headroom of every device that fits the weights.
//!
//! **Slots.** A slot is one job running at full roofline speed. Running jobs do not slow each
//! other in the model, which holds while decode stays bandwidth-bound: decode does 2 FLOPs per
//! parameter per sequence and streams 2 bytes per parameter for the whole batch, so a batch of
//! B sequences does B/1 FLOPs per byte and stays under the roof while B is below the device's
//! ridge point (peak FLOP/s over bytes/s). Slots are also real work: every running job runs
//! its stand-in computation on a host CPU core, and a local testnet puts several nodes on one
//! machine, so slots stay small. Each profile's slot count is the smaller of the two limits.

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
    /// Jobs that run at once (see the module documentation).
    pub slots: u32,
    /// Fixed cost of starting a job on the device, in microseconds (an assumption; see each
    /// profile).
    pub launch_overhead_us: u64,
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
        // The ridge point is 125e15 / 21e15 = 5.95 FLOP/byte: above 5 concurrent sequences
        // decode turns compute-bound and running jobs would slow each other, which this model
        // does not capture. Five is also the most of any profile, as befits a wafer.
        slots: 5,
        // Assumption: a request is dispatched from the host over the CS-3's Ethernet links;
        // 50 us covers that round trip and scheduling. It is small next to any job.
        launch_overhead_us: 50,
    },
    DeviceProfile {
        name: "h100-sxm",
        description: "NVIDIA H100 SXM5 80GB",
        // NVIDIA H100 datasheet: BF16 Tensor Core 1,979 TFLOPS "with sparsity", so 989.5
        // TFLOP/s dense; 80 GB HBM3 (decimal, as the datasheet states it); 3.35 TB/s.
        peak_gflops: 989_500,
        memory_bytes: 80_000_000_000,
        memory_bandwidth: 3_350_000_000_000,
        // The ridge point (295 FLOP/byte) allows far more; four keeps the host CPU, which runs
        // the stand-in, from being the limit when several nodes share one machine.
        slots: 4,
        // Assumption: a CUDA graph launch and a small host-to-device copy of the prompt,
        // about 20 us on current drivers.
        launch_overhead_us: 20,
    },
    DeviceProfile {
        name: "a100-80gb",
        description: "NVIDIA A100 SXM4 80GB",
        // NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS dense (624 with sparsity);
        // 80 GB HBM2e; 2,039 GB/s (SXM).
        peak_gflops: 312_000,
        memory_bytes: 80_000_000_000,
        memory_bandwidth: 2_039_000_000_000,
        // Ridge point 153 FLOP/byte; four slots for the same host-CPU reason as the H100.
        slots: 4,
        // Assumption: as for the H100.
        launch_overhead_us: 20,
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
        // Ridge point 8 FLOP/byte; two slots because the simulated device and the stand-in
        // share the same kind of cores, and a CPU server runs few sequences at once.
        slots: 2,
        // Assumption: waking a worker thread and touching the prompt, about 5 us.
        launch_overhead_us: 5,
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

    fn model(id: &str) -> &'static ModelSpec {
        ModelSpec::find(id).expect("catalogue model")
    }

    #[test]
    fn finds_every_profile_by_name() {
        for p in &PROFILES {
            let found = DeviceProfile::find(p.name).expect("listed profile");
            assert_eq!(found, p);
            assert_eq!(p.device_name().as_str(), p.name);
            assert!(p.slots > 0 && p.peak_gflops > 0 && p.memory_bandwidth > 0);
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
