//! The cheated executions (see [`super::cheat`] for what each mode does). Compiled only with
//! the `cheats` feature.

use attest_protocol::hash::{Hash, tagged_hasher};
use attest_protocol::merkle;
use attest_protocol::workload::{
    self, CATALOGUE, Execution, FIRST_OUTPUT_BYTE, Job, OUTPUT_VOCAB, execute, execute_with,
};

use super::cheat::CheatMode;

/// Domain tag of the lazy cheat's made-up bytes.
const TAG_LAZY: &str = "attest-node/cheat-lazy/v1";
/// Domain tag of the flip cheat's choice of step, byte and mask.
const TAG_FLIP: &str = "attest-node/cheat-flip/v1";

// Flip and truncate need a layer that does not emit a token: every catalogue model has two or
// more layers, so the last layer of each position is not the only one.
const _: () = {
    let mut i = 0;
    while i < CATALOGUE.len() {
        assert!(CATALOGUE[i].layers >= 2);
        i += 1;
    }
};

/// Runs `job` honestly (`cheat` is `None`) or with the given cheat, deterministically from
/// `(job, cheat, seed)`. See the module documentation for what each mode does.
pub fn run_job(job: &Job<'_>, cheat: Option<CheatMode>, seed: [u8; 32]) -> Execution {
    match cheat {
        None => execute(job),
        Some(CheatMode::Lazy) => run_lazy(job, &seed),
        Some(CheatMode::Truncate) => run_truncated(job),
        Some(CheatMode::Flip) => {
            let target = flip_target(job, &seed);
            execute_with(job, |index, _, act| {
                if index == target.index {
                    act[target.byte] ^= target.mask;
                }
            })
        }
    }
}

/// A blake3 XOF over `tag`, the seed and everything that defines the job, so two jobs never
/// share made-up bytes even under one seed.
fn job_xof(tag: &str, job: &Job<'_>, seed: &[u8; 32]) -> blake3::OutputReader {
    let mut h = tagged_hasher(tag);
    h.update(seed);
    let model = job.model().id.as_bytes();
    h.update(&(model.len() as u64).to_le_bytes());
    h.update(model);
    h.update(&(job.input().len() as u64).to_le_bytes());
    h.update(job.input());
    h.update(&job.max_tokens().to_le_bytes());
    h.finalize_xof()
}

/// The lazy cheat: made-up bytes in a well-formed execution.
fn run_lazy(job: &Job<'_>, seed: &[u8; 32]) -> Execution {
    let mut xof = job_xof(TAG_LAZY, job, seed);
    let vocab = OUTPUT_VOCAB as u8; // 95 fits a byte
    let mut output = vec![0u8; job.max_tokens() as usize];
    xof.fill(&mut output);
    for b in &mut output {
        *b = FIRST_OUTPUT_BYTE + *b % vocab;
    }
    let output_hash = workload::output_hash(&output);
    // The final activation: made-up hidden lanes, then the accumulator of the made-up output,
    // so that it agrees with the reported output hash.
    let mut final_activation = vec![0u8; job.model().hidden];
    xof.fill(&mut final_activation);
    final_activation.extend_from_slice(&output_hash.0);
    let count = job.step_count();
    let last = count - 1; // a job has at least one position and one layer
    let mut leaves = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..last {
        let mut leaf = [0u8; 32];
        xof.fill(&mut leaf);
        leaves.push(Hash(leaf));
    }
    leaves.push(workload::leaf_hash(last, &final_activation));
    let (trace_root, final_proof) =
        merkle::root_and_last_proof(&leaves).expect("a job has at least one step");
    Execution {
        trace_root,
        final_proof,
        output,
        output_hash,
        leaves,
        final_activation,
    }
}

/// The layers a truncating cheater skips: the `layers / 4` (at least one) just before the last.
fn skipped_layers(layers: u32) -> std::ops::Range<u32> {
    let last = layers.saturating_sub(1);
    let k = (layers / 4).max(1).min(last);
    last - k..last
}

/// The truncate cheat: skipped layers pass the previous activation through unchanged.
fn run_truncated(job: &Job<'_>) -> Execution {
    let layers = job.model().layers;
    let skipped = skipped_layers(layers);
    execute_with(job, |index, prev, act| {
        // `index % layers` is below `layers`, a u32.
        let layer = (index % u64::from(layers)) as u32;
        if skipped.contains(&layer) {
            // A skipped layer is never the last, so it emits no token: its accumulator is
            // already the previous one and copying the whole activation keeps it.
            act.copy_from_slice(prev);
        }
    })
}

/// The step, byte and mask the flip cheat corrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlipTarget {
    index: u64,
    byte: usize,
    mask: u8,
}

/// Draws the flip cheat's target from the seed: a uniform position, a layer other than the
/// last (so the step emits no token), a hidden-state byte and a non-zero mask.
fn flip_target(job: &Job<'_>, seed: &[u8; 32]) -> FlipTarget {
    let mut xof = job_xof(TAG_FLIP, job, seed);
    let mut draw = || {
        let mut b = [0u8; 8];
        xof.fill(&mut b);
        u64::from_le_bytes(b)
    };
    let layers = u64::from(job.model().layers);
    let position = draw() % job.positions();
    let layer = draw() % (layers - 1).max(1);
    let hidden = job.model().hidden as u64;
    FlipTarget {
        index: position * layers + layer,
        // Below `hidden`, a usize.
        byte: (draw() % hidden) as usize,
        // 1..=255: the byte always changes.
        mask: (draw() % 255) as u8 + 1,
    }
}

#[cfg(test)]
mod tests {
    use attest_protocol::JobId;
    use attest_protocol::tx::CommitResult;
    use attest_protocol::workload::{ACC_BYTES, accumulator, leaf_hash, output_hash};

    use super::*;
    use crate::accel::AccelError;
    use crate::accel::cheat::{Cheat, RATE_ONE_PPM, should_cheat};

    const INPUT: &[u8] = b"attest: the quick brown fox";

    fn job() -> Job<'static> {
        Job::new("attest-tiny-1b", INPUT, 24).expect("valid job")
    }

    fn seed(n: u64) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&n.to_le_bytes());
        s
    }

    /// The format checks the ledger makes on a committed result, and the output's own hash.
    fn assert_well_formed(job: &Job<'_>, e: &Execution) {
        assert_eq!(e.step_count(), job.step_count());
        assert_eq!(e.output.len(), job.max_tokens() as usize);
        assert!(e.output.iter().all(|b| (0x20..=0x7e).contains(b)));
        assert_eq!(e.final_activation.len(), job.activation_len());
        assert_eq!(accumulator(&e.final_activation), Some(e.output_hash));
        assert_eq!(output_hash(&e.output), e.output_hash);
        assert_eq!(e.trace_root, merkle::root(&e.leaves));
        let last = job.step_count() - 1;
        let leaf = leaf_hash(last, &e.final_activation);
        assert_eq!(e.leaves.last(), Some(&leaf));
        let commit = CommitResult::from_execution(JobId([7; 32]), e);
        assert_eq!(commit.final_activation.as_slice(), &e.final_activation[..]);
        assert!(
            commit
                .final_proof
                .verify(&e.trace_root, job.step_count(), last, &leaf)
        );
    }

    #[test]
    fn honest_is_execute() {
        let job = job();
        assert_eq!(run_job(&job, None, seed(1)), execute(&job));
        assert_well_formed(&job, &run_job(&job, None, seed(1)));
    }

    #[test]
    fn lazy_is_well_formed_and_differs() {
        let job = job();
        let honest = execute(&job);
        let lazy = run_job(&job, Some(CheatMode::Lazy), seed(1));
        assert_well_formed(&job, &lazy);
        assert_ne!(lazy.trace_root, honest.trace_root);
        assert_ne!(lazy.output, honest.output);
        assert_ne!(lazy.final_activation, honest.final_activation);
    }

    #[test]
    fn truncate_is_well_formed_and_differs_from_the_first_skipped_layer() {
        let job = job();
        let honest = execute(&job);
        let cut = run_job(&job, Some(CheatMode::Truncate), seed(1));
        assert_well_formed(&job, &cut);
        assert_ne!(cut.trace_root, honest.trace_root);
        assert_ne!(cut.output, honest.output);
        // 22 layers: layers 16..21 are skipped, so position 0 agrees up to step 15.
        assert_eq!(skipped_layers(22), 16..21);
        assert_eq!(cut.leaves[..16], honest.leaves[..16]);
        assert_ne!(cut.leaves[16], honest.leaves[16]);
        // The skipped step repeats the previous activation under a new index.
        let prev = workload::activation_at(&job, 15).expect("in range");
        assert_eq!(cut.leaves[16], leaf_hash(16, &prev));
    }

    #[test]
    fn flip_diverges_exactly_at_its_target() {
        let job = job();
        let honest = execute(&job);
        for n in 0..8 {
            let flipped = run_job(&job, Some(CheatMode::Flip), seed(n));
            assert_well_formed(&job, &flipped);
            assert_ne!(flipped.trace_root, honest.trace_root, "seed {n}");
            let t = flip_target(&job, &seed(n));
            assert!(!job.emits(t.index), "seed {n}: target {t:?} emits");
            assert!(t.byte < job.activation_len() - ACC_BYTES && t.mask != 0);
            let i = usize::try_from(t.index).expect("small");
            assert_eq!(flipped.leaves[..i], honest.leaves[..i], "seed {n}");
            assert_ne!(flipped.leaves[i], honest.leaves[i], "seed {n}");
        }
    }

    #[test]
    fn every_mode_is_reproducible_from_its_seed() {
        let job = job();
        let modes = CheatMode::ALL.map(Some);
        for mode in [None].into_iter().chain(modes) {
            let a = run_job(&job, mode, seed(42));
            let b = run_job(&job, mode, seed(42));
            assert_eq!(a, b, "{mode:?}");
        }
        // The seed matters to the modes that draw from it, and only to them.
        let other = |mode| run_job(&job, Some(mode), seed(43)).trace_root;
        let this = |mode| run_job(&job, Some(mode), seed(42)).trace_root;
        assert_ne!(this(CheatMode::Lazy), other(CheatMode::Lazy));
        assert_ne!(this(CheatMode::Flip), other(CheatMode::Flip));
        assert_eq!(this(CheatMode::Truncate), other(CheatMode::Truncate));
        // A different job under the same seed gets different made-up bytes.
        let job2 = Job::new("attest-tiny-1b", b"another prompt", 24).expect("valid");
        let lazy2 = run_job(&job2, Some(CheatMode::Lazy), seed(42));
        assert_ne!(
            lazy2.output,
            run_job(&job, Some(CheatMode::Lazy), seed(42)).output
        );
    }

    #[test]
    fn every_catalogue_model_cheats_well_formed() {
        for model in &CATALOGUE {
            let job = Job::new(model.id, b"hi", 3).expect("valid");
            let honest = execute(&job);
            for mode in CheatMode::ALL {
                let e = run_job(&job, Some(mode), seed(5));
                assert_well_formed(&job, &e);
                assert_ne!(e.trace_root, honest.trace_root, "{} {mode}", model.id);
            }
        }
    }

    #[test]
    fn should_cheat_follows_the_rate() {
        let count = |rate_ppm| {
            let cheat = Cheat {
                mode: CheatMode::Flip,
                rate_ppm,
            };
            (0..10_000u64)
                .filter(|&n| should_cheat(&cheat, &seed(n)))
                .count()
        };
        // 10,000 draws at 0.1: mean 1,000, standard deviation 30. Five deviations either side
        // (850..=1150); the seeds are fixed, so the outcome is too.
        let hits = count(100_000);
        assert!((850..=1_150).contains(&hits), "{hits} hits at rate 0.1");
        assert_eq!(count(0), 0);
        assert_eq!(count(RATE_ONE_PPM), 10_000);
        let half = count(500_000);
        assert!((4_750..=5_250).contains(&half), "{half} hits at rate 0.5");
    }

    #[test]
    fn cheat_text_round_trips() {
        let c: Cheat = "flip:0.1".parse().expect("valid");
        assert_eq!(
            c,
            Cheat {
                mode: CheatMode::Flip,
                rate_ppm: 100_000
            }
        );
        assert_eq!(c.to_string(), "flip:0.1");
        for (text, mode, ppm) in [
            ("lazy:1.0", CheatMode::Lazy, RATE_ONE_PPM),
            ("lazy:1", CheatMode::Lazy, RATE_ONE_PPM),
            ("truncate:0", CheatMode::Truncate, 0),
            ("truncate:0.000001", CheatMode::Truncate, 1),
            (" flip : 0.25 ", CheatMode::Flip, 250_000),
            ("flip:00.5", CheatMode::Flip, 500_000),
        ] {
            let c: Cheat = text.parse().expect(text);
            assert_eq!((c.mode, c.rate_ppm), (mode, ppm), "{text}");
            assert_eq!(c.to_string().parse::<Cheat>(), Ok(c), "{text}");
        }
        let json = serde_json::to_string(&c).expect("serialize");
        assert_eq!(json, "\"flip:0.1\"");
        assert_eq!(serde_json::from_str::<Cheat>(&json).expect("parse"), c);
        let err = serde_json::from_str::<Cheat>("\"flip:2\"").expect_err("rate above 1");
        assert!(err.to_string().contains("above 1"), "{err}");
    }

    #[test]
    fn cheat_text_errors_name_the_problem() {
        for (text, needle) in [
            ("flip", "expected MODE:RATE"),
            ("", "expected MODE:RATE"),
            ("fudge:0.1", "unknown mode \"fudge\""),
            ("Flip:0.1", "unknown mode"),
            ("flip:", "not a decimal"),
            ("flip:abc", "not a decimal"),
            ("flip:.5", "not a decimal"),
            ("flip:0.", "not a decimal"),
            ("flip:-0.1", "not a decimal"),
            ("flip:1e-3", "not a decimal"),
            ("flip:0.1234567", "more than six decimals"),
            ("flip:1.5", "above 1"),
            ("flip:1.000001", "above 1"),
            ("flip:2", "above 1"),
            ("flip:99999999999999999999", "above 1"),
        ] {
            let err = text.parse::<Cheat>().expect_err(text);
            assert!(
                matches!(err, AccelError::BadCheat { .. }),
                "{text}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(needle), "{text}: {msg}");
        }
        let msg = "fudge:0.1".parse::<Cheat>().expect_err("bad").to_string();
        assert!(msg.contains("lazy, truncate, flip"), "{msg}");
    }
}
