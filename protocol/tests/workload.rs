//! The deterministic workload: an execution's commitments are exactly what a referee can
//! recompute one step at a time, and nothing about the run (threads, repetition) changes them.

use attest_protocol::hash_tagged;
use attest_protocol::merkle;
use attest_protocol::workload::{
    self, CATALOGUE, Execution, Job, ModelSpec, WorkloadError, activation_at, execute,
    execute_with, leaf_hash, step,
};
use proptest::prelude::*;

fn model() -> impl Strategy<Value = &'static ModelSpec> {
    (0..CATALOGUE.len()).prop_map(|i| &CATALOGUE[i])
}

/// A model, an input of 0..64 bytes and 1..=16 tokens.
fn job_parts() -> impl Strategy<Value = (&'static ModelSpec, Vec<u8>, u32)> {
    (
        model(),
        prop::collection::vec(any::<u8>(), 0..64),
        1u32..=16,
    )
}

/// Checks everything an execution commits to against an independent step-by-step replay.
fn check_execution(job: &Job<'_>, exec: &Execution) -> Result<(), TestCaseError> {
    let count = job.step_count();
    let layers = u64::from(job.model().layers);
    prop_assert_eq!(
        count,
        (1 + job.input().len() as u64 + u64::from(job.max_tokens()) - 1) * layers
    );
    prop_assert_eq!(exec.step_count(), count);
    prop_assert_eq!(exec.leaves.len() as u64, count);

    prop_assert_eq!(exec.output.len(), job.max_tokens() as usize);
    prop_assert!(
        exec.output.iter().all(|b| (0x20..=0x7e).contains(b)),
        "{:?}",
        exec.output
    );
    prop_assert_eq!(exec.output_hash, workload::output_hash(&exec.output));
    // The output hash is the accumulator chain, spelled out independently here.
    let chain = exec
        .output
        .iter()
        .fold(attest_protocol::Hash([0; 32]), |acc, &b| {
            hash_tagged("attest/output/v1", &[&acc.0, &[b]])
        });
    prop_assert_eq!(exec.output_hash, chain);
    prop_assert_eq!(
        workload::accumulator(&exec.final_activation),
        Some(exec.output_hash)
    );
    prop_assert_eq!(exec.trace_root, merkle::root(&exec.leaves));
    prop_assert_eq!(exec.tree().root(), exec.trace_root);

    // Replay with `step` alone, as a referee would, and compare every leaf.
    let spot = [0, 1, count / 2, count - 1];
    let mut spotted = Vec::new();
    let mut prev = job.initial_activation();
    prop_assert_eq!(prev.len(), job.activation_len());
    prop_assert!(prev.iter().all(|b| *b == 0));
    for i in 0..count {
        let act = step(job, i, &prev).expect("index in range, right width");
        prop_assert_eq!(act.len(), job.activation_len());
        prop_assert_eq!(leaf_hash(i, &act), exec.leaves[i as usize], "step {}", i);
        if spot.contains(&i) {
            spotted.push((i, act.clone()));
        }
        prev = act;
    }
    for (i, act) in spotted {
        prop_assert_eq!(activation_at(job, i), Ok(act), "activation_at({})", i);
    }
    prop_assert_eq!(
        activation_at(job, count),
        Err(WorkloadError::StepOutOfRange {
            index: count,
            count
        })
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn execution_matches_step_by_step_replay((model, input, max_tokens) in job_parts()) {
        let job = Job::new(model.id, &input, max_tokens).expect("a valid job");
        let exec = execute(&job);
        check_execution(&job, &exec)?;
        // Running again gives the same bytes.
        prop_assert_eq!(execute(&job), exec);
    }

    #[test]
    fn a_corrupted_step_changes_its_leaf_and_every_later_one(
        (model, input, max_tokens) in job_parts(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let job = Job::new(model.id, &input, max_tokens).expect("a valid job");
        let honest = execute(&job);
        let k = at.index(honest.leaves.len()) as u64;
        let mut seen_prev = None;
        let cheat = execute_with(&job, |index, previous, act| {
            if index == k {
                seen_prev = Some(previous.to_vec());
                for b in act.iter_mut() {
                    *b ^= mask;
                }
            }
        });
        // The hook saw the honest activation of the step before.
        let expected_prev = if k == 0 {
            job.initial_activation()
        } else {
            activation_at(&job, k - 1).expect("in range")
        };
        prop_assert_eq!(seen_prev, Some(expected_prev));

        let k = k as usize;
        prop_assert_eq!(cheat.leaves.len(), honest.leaves.len());
        prop_assert_eq!(&cheat.leaves[..k], &honest.leaves[..k]);
        for j in k..honest.leaves.len() {
            prop_assert_ne!(cheat.leaves[j], honest.leaves[j], "leaf {} of {} after corrupting {}", j, honest.leaves.len(), k);
        }
        prop_assert_ne!(cheat.trace_root, honest.trace_root);
        prop_assert_eq!(cheat.trace_root, merkle::root(&cheat.leaves));
        prop_assert_eq!(cheat.output.len(), job.max_tokens() as usize);
        // The accumulator is part of the state: the corruption reaches the output hash,
        // which is still what the last activation carries.
        prop_assert_ne!(cheat.output_hash, honest.output_hash);
        prop_assert_eq!(Some(cheat.output_hash), workload::accumulator(&cheat.final_activation));
    }

    #[test]
    fn different_inputs_give_different_traces(
        model in model(),
        a in prop::collection::vec(any::<u8>(), 0..32),
        b in prop::collection::vec(any::<u8>(), 0..32),
        max_tokens in 1u32..=8,
    ) {
        prop_assume!(a != b);
        let ea = execute(&Job::new(model.id, &a, max_tokens).expect("valid"));
        let eb = execute(&Job::new(model.id, &b, max_tokens).expect("valid"));
        prop_assert_ne!(ea.trace_root, eb.trace_root);
    }
}

#[test]
fn a_hook_that_does_nothing_is_an_honest_run() {
    let job = Job::new("attest-tiny-1b", b"hello", 5).expect("valid");
    let mut calls = Vec::new();
    let exec = execute_with(&job, |index, previous, act| {
        assert_eq!(previous.len(), job.activation_len());
        assert_eq!(act.len(), job.activation_len());
        calls.push(index);
    });
    assert_eq!(exec, execute(&job));
    // The hook sees every step once, in order.
    assert_eq!(calls, (0..job.step_count()).collect::<Vec<_>>());
}

#[test]
fn different_models_and_token_counts_give_different_traces() {
    let input = b"the same prompt";
    let roots: Vec<_> = CATALOGUE
        .iter()
        .map(|m| execute(&Job::new(m.id, input, 4).expect("valid")).trace_root)
        .collect();
    for i in 0..roots.len() {
        for j in i + 1..roots.len() {
            assert_ne!(roots[i], roots[j]);
        }
    }
    let short = execute(&Job::new("attest-tiny-1b", input, 4).expect("valid"));
    let long = execute(&Job::new("attest-tiny-1b", input, 5).expect("valid"));
    assert_ne!(short.trace_root, long.trace_root);
    // Generation is autoregressive: the longer run extends the shorter one.
    assert_eq!(&long.output[..4], short.output.as_slice());
    assert_eq!(&long.leaves[..short.leaves.len()], short.leaves.as_slice());
}

#[test]
fn step_rejects_bad_arguments() {
    for model in &CATALOGUE {
        let job = Job::new(model.id, b"ab", 2).expect("valid");
        let count = job.step_count();
        let zeros = job.initial_activation();
        assert!(step(&job, count - 1, &zeros).is_ok());
        assert_eq!(
            step(&job, count, &zeros),
            Err(WorkloadError::StepOutOfRange {
                index: count,
                count
            })
        );
        assert_eq!(
            step(&job, u64::MAX, &zeros),
            Err(WorkloadError::StepOutOfRange {
                index: u64::MAX,
                count
            })
        );
        let len = job.activation_len();
        assert_eq!(len, model.hidden + workload::ACC_BYTES);
        for width in [0, model.hidden, len - 1, len + 1, 1024] {
            assert_eq!(
                step(&job, 0, &vec![0; width]),
                Err(WorkloadError::ActivationWidth {
                    model: model.id,
                    expected: len,
                    got: width
                })
            );
        }
        assert_eq!(
            activation_at(&job, count),
            Err(WorkloadError::StepOutOfRange {
                index: count,
                count
            })
        );
    }
}

#[test]
fn job_new_checks_its_arguments() {
    assert_eq!(
        Job::new("attest-huge-1t", b"", 1).map(|_| ()),
        Err(WorkloadError::UnknownModel("attest-huge-1t".into()))
    );
    assert_eq!(
        Job::new("", b"", 1).map(|_| ()),
        Err(WorkloadError::UnknownModel(String::new()))
    );
    // The message lists what is known.
    let message = Job::new("nope", b"", 1)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    for model in &CATALOGUE {
        assert!(message.contains(model.id), "{message}");
    }

    let big = vec![0u8; 4097];
    assert_eq!(
        Job::new("attest-tiny-1b", &big, 1).map(|_| ()),
        Err(WorkloadError::InputTooLong {
            len: 4097,
            max: 4096
        })
    );
    assert!(Job::new("attest-tiny-1b", &big[..4096], 1).is_ok());

    for bad in [0, 1025, u32::MAX] {
        assert_eq!(
            Job::new("attest-tiny-1b", b"x", bad).map(|_| ()),
            Err(WorkloadError::BadMaxTokens {
                got: bad,
                max: 1024
            })
        );
    }
    let ok = Job::new("attest-base-8b", b"x", 1024).expect("the bound is allowed");
    assert_eq!(ok.step_count(), (1 + 1 + 1024 - 1) * 32);
    assert_eq!(ok.positions(), 1025);
}

#[test]
fn catalogue_lookup() {
    for model in &CATALOGUE {
        assert_eq!(ModelSpec::find(model.id), Ok(model));
        assert!(
            model.hidden + workload::ACC_BYTES <= attest_protocol::limits::MAX_ACTIVATION_BYTES
        );
        assert_eq!(
            model.weight_bytes(),
            model.params * u64::from(model.bytes_per_param)
        );
    }
    assert!(ModelSpec::find("attest-tiny-1B").is_err());
}

#[test]
fn concurrent_runs_agree() {
    let input = b"a prompt that several threads run at once";
    let job = Job::new("attest-base-8b", input, 6).expect("valid");
    let results: Vec<Execution> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| execute(&job))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let single = execute(&job);
    for r in &results {
        assert_eq!(r, &single);
    }
    // Different jobs at once do not disturb each other either (weights are shared).
    let jobs: Vec<Job<'_>> = CATALOGUE
        .iter()
        .map(|m| Job::new(m.id, input, 3).expect("valid"))
        .collect();
    let parallel: Vec<Execution> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.iter().map(|j| s.spawn(|| execute(j))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    for (j, p) in jobs.iter().zip(&parallel) {
        assert_eq!(p, &execute(j));
    }
}

#[test]
fn leaf_hash_is_the_documented_tagged_hash() {
    let act = [1u8, 2, 3, 250];
    assert_eq!(
        leaf_hash(7, &act),
        hash_tagged("attest/trace-leaf/v1", &[&7u64.to_le_bytes(), &act])
    );
    // The index is bound: the same activation at another step is another leaf.
    assert_ne!(leaf_hash(7, &act), leaf_hash(8, &act));
}

/// A result's proof of its last leaf is the one made with the root, and a proof made stale by
/// changing the leaves afterwards is not used: the tree's is.
#[test]
fn the_last_leaf_proof_is_made_with_the_root_and_checked_before_use() {
    let job = Job::new("attest-tiny-1b", b"proof", 4).expect("valid");
    let mut exec = execute(&job);
    let last = exec.step_count() - 1;
    assert_eq!(exec.final_proof, exec.tree().prove(last).expect("in range"));
    assert_eq!(
        attest_protocol::tx::last_leaf_proof(&exec),
        exec.final_proof
    );
    exec.leaves[0] = attest_protocol::Hash([9; 32]);
    exec.trace_root = exec.tree().root();
    let proof = attest_protocol::tx::last_leaf_proof(&exec);
    assert_ne!(proof, exec.final_proof);
    assert!(proof.verify(
        &exec.trace_root,
        exec.step_count(),
        last,
        &exec.leaves[last as usize]
    ));
}
