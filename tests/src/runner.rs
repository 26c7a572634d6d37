//! Running many seeds: which seeds (from the environment), in parallel, and what a failure
//! says.
//!
//! `ATTEST_SIM_SEEDS=N` runs N seeds instead of a test's default count, from seed 1 or from
//! `ATTEST_SIM_FIRST_SEED`; `ATTEST_SIM_SEED=S` runs only seed `S`. A failing seed's panic
//! is caught, and the test then fails with the seed, the message and the exact command that
//! replays it. Seeds run on a few threads; each run is single-threaded and depends on its
//! seed alone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::scenario::Scenario;
use crate::sim::{Outcome, run};

/// The seeds to run: `ATTEST_SIM_SEED`, or `ATTEST_SIM_SEEDS` (or `default`) seeds from
/// `ATTEST_SIM_FIRST_SEED` (or 1).
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("ATTEST_SIM_SEED") {
        return vec![seed];
    }
    let n = env_u64("ATTEST_SIM_SEEDS").unwrap_or(default);
    let first = env_u64("ATTEST_SIM_FIRST_SEED").unwrap_or(1);
    (first..first + n).collect()
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

/// The command that replays `seed` of the test `test` (in `tests/tests/simulator.rs`).
pub fn replay_command(test: &str, seed: u64) -> String {
    // The test binary is named after its file, with a hash suffix: `market-1a2b...`.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .and_then(|s| s.rsplit_once('-').map(|(name, _)| name.to_owned()))
        .unwrap_or_else(|| "simulator".into());
    format!(
        "ATTEST_SIM_SEED={seed} cargo test -p attest-tests --test {binary} {test} \
         -- --exact --include-ignored --nocapture"
    )
}

/// What a batch of seeds did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Blocks committed, summed over seeds.
    pub blocks: u64,
    /// Virtual time, summed over seeds (ms).
    pub virtual_ms: u64,
    /// Steps, summed over seeds.
    pub steps: u64,
}

/// Runs `make(seed)` for every seed of [`seeds`]`(default)` and `check`s each outcome. On
/// failure, panics with the first failing seed and its replay command.
pub fn run_seeds<M, C>(test: &str, default: u64, make: M, check: C) -> Summary
where
    M: Fn(u64) -> Scenario + Sync,
    C: Fn(&Outcome) + Sync,
{
    run_list(test, seeds(default), make, check)
}

/// Runs one pinned `seed` (or `ATTEST_SIM_SEED`), as [`run_seeds`] does.
pub fn run_pinned<M, C>(test: &str, seed: u64, make: M, check: C) -> Summary
where
    M: Fn(u64) -> Scenario + Sync,
    C: Fn(&Outcome) + Sync,
{
    run_list(
        test,
        vec![env_u64("ATTEST_SIM_SEED").unwrap_or(seed)],
        make,
        check,
    )
}

fn run_list<M, C>(test: &str, seeds: Vec<u64>, make: M, check: C) -> Summary
where
    M: Fn(u64) -> Scenario + Sync,
    C: Fn(&Outcome) + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let summary = Mutex::new(Summary::default());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    std::thread::scope(|scope| {
        for _ in 0..threads.min(seeds.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match catch_unwind(AssertUnwindSafe(|| {
                        let outcome = run(make(seed));
                        check(&outcome);
                        outcome
                    })) {
                        Ok(o) => add(&mut summary.lock().expect("not poisoned"), &o),
                        Err(payload) => {
                            failed.store(true, Ordering::Relaxed);
                            let msg = panic_message(payload.as_ref());
                            failures.lock().expect("not poisoned").push((seed, msg));
                        }
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("not poisoned");
    failures.sort_by_key(|(seed, _)| *seed);
    if let Some((seed, msg)) = failures.first() {
        panic!(
            "simulator seed {seed} failed: {msg}\nreplay with: {}",
            replay_command(test, *seed)
        );
    }
    let summary = summary.into_inner().expect("not poisoned");
    eprintln!(
        "{test}: {} seeds, {} blocks, {} virtual s, {} steps",
        summary.seeds,
        summary.blocks,
        summary.virtual_ms / 1_000,
        summary.steps
    );
    summary
}

fn add(summary: &mut Summary, o: &Outcome) {
    summary.seeds += 1;
    summary.blocks += o.height;
    summary.virtual_ms += o.elapsed_ms;
    summary.steps += o.stats.steps;
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}
