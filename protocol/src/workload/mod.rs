//! The deterministic, re-executable inference workload.
//!
//! A job runs a catalogue model autoregressively over its input. The token sequence is a BOS
//! token (256) followed by the input bytes; after the prompt the model generates
//! `max_tokens` tokens, each a printable ASCII byte (0x20..=0x7e). Every (position, layer) pair
//! is one **step**, numbered `position * layers + layer`; a job has
//! `(1 + input_len + max_tokens - 1) * layers` steps (the last generated token is emitted, not
//! fed back).
//!
//! Each step maps the previous step's **activation** to its own. An activation is the model's
//! hidden state (`hidden` lanes of `i8`) followed by the 32-byte **output accumulator**, a hash
//! chain over the tokens generated so far; before step 0 both are zeros. The accumulator makes
//! the output part of the state: the last step's accumulator *is* the job's output hash, so a
//! result that opens its last leaf proves which output its trace produced, and any wrong token
//! makes every later leaf differ. All arithmetic is on integers with explicit wrapping and fixed
//! shifts, so the result is the same on every machine, thread count and build profile.
//!
//! The leaf of step `i` is `H("attest/trace-leaf/v1", u64_le(i) || activation)` and the trace
//! root is the Merkle root over all leaves (see [`crate::merkle`]). [`step`] computes one step
//! alone, which is what a dispute referee runs.

mod model;

use std::sync::OnceLock;

pub use model::{CATALOGUE, ModelSpec};

use crate::hash::{Hash, hash_tagged, tag};
use crate::limits::{MAX_INPUT_BYTES, MAX_OUTPUT_TOKENS};
use crate::merkle::{self, MerkleProof, MerkleTree};

/// Bytes of the output accumulator at the end of every activation.
pub const ACC_BYTES: usize = 32;

/// The token that opens every sequence.
pub const BOS: u16 = 256;
/// The first byte the model may generate (space).
pub const FIRST_OUTPUT_BYTE: u8 = 0x20;
/// The number of bytes the model may generate: printable ASCII, 0x20..=0x7e.
pub const OUTPUT_VOCAB: usize = 95;

/// A job that cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// The model is not in the catalogue.
    #[error("unknown model {0:?}; the catalogue has: {known}", known = model::known_ids())]
    UnknownModel(String),
    /// The input is longer than the protocol allows.
    #[error("input is {len} bytes; the limit is {max}")]
    InputTooLong {
        /// The input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The job asks for no tokens, or more than the protocol allows.
    #[error("max_tokens is {got}; it must be between 1 and {max}")]
    BadMaxTokens {
        /// The number asked for.
        got: u32,
        /// The limit.
        max: u32,
    },
    /// A step index beyond the job's last step.
    #[error("step {index} is out of range: the job has {count} steps")]
    StepOutOfRange {
        /// The index asked for.
        index: u64,
        /// The job's step count.
        count: u64,
    },
    /// A previous activation of the wrong width for the model.
    #[error("activation is {got} bytes; model {model} uses {expected}")]
    ActivationWidth {
        /// The model.
        model: &'static str,
        /// The model's activation width (hidden lanes and the 32-byte accumulator).
        expected: usize,
        /// The width offered.
        got: usize,
    },
}

/// A model, an input and a token count: everything that determines an execution. Only
/// [`Job::new`] builds one, so every job names a catalogue model and respects the limits.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    model: &'static ModelSpec,
    input: &'a [u8],
    max_tokens: u32,
}

impl<'a> Job<'a> {
    /// Checks the model id, input length and token count.
    pub fn new(model_id: &str, input: &'a [u8], max_tokens: u32) -> Result<Self, WorkloadError> {
        let model = ModelSpec::find(model_id)?;
        if input.len() > MAX_INPUT_BYTES {
            return Err(WorkloadError::InputTooLong {
                len: input.len(),
                max: MAX_INPUT_BYTES,
            });
        }
        if max_tokens == 0 || max_tokens > MAX_OUTPUT_TOKENS {
            return Err(WorkloadError::BadMaxTokens {
                got: max_tokens,
                max: MAX_OUTPUT_TOKENS,
            });
        }
        Ok(Self {
            model,
            input,
            max_tokens,
        })
    }

    /// The model.
    pub fn model(&self) -> &'static ModelSpec {
        self.model
    }

    /// The input bytes.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// Tokens to generate.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Token positions the model processes: BOS, the input, all generated tokens but the last.
    pub fn positions(&self) -> u64 {
        1 + self.input.len() as u64 + u64::from(self.max_tokens) - 1
    }

    /// The number of steps, and so of trace leaves.
    pub fn step_count(&self) -> u64 {
        self.positions() * u64::from(self.model.layers)
    }

    /// Bytes of this job's activations: the hidden state and the output accumulator.
    pub fn activation_len(&self) -> usize {
        self.model.hidden + ACC_BYTES
    }

    /// The activation before step 0: all zeros (hidden state and accumulator).
    pub fn initial_activation(&self) -> Vec<u8> {
        vec![0; self.activation_len()]
    }

    /// Whether step `index` emits a token: the last layer of each position from the last
    /// prompt position on.
    pub fn emits(&self, index: u64) -> bool {
        let layers = u64::from(self.model.layers);
        index % layers == layers - 1 && index / layers >= self.input.len() as u64
    }

    /// The prompt token at `position`, or `None` past the prompt (the token is then generated).
    fn prompt_token(&self, position: u64) -> Option<u16> {
        match position {
            0 => Some(BOS),
            p => self
                .input
                .get(usize::try_from(p - 1).ok()?)
                .map(|&b| u16::from(b)),
        }
    }
}

/// The result of running a job: output, every leaf, and the commitments over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The generated bytes (printable ASCII).
    pub output: Vec<u8>,
    /// The output accumulator after the last token ([`output_hash`] of `output`).
    pub output_hash: Hash,
    /// Every step's leaf, in step order.
    pub leaves: Vec<Hash>,
    /// The Merkle root over `leaves`.
    pub trace_root: Hash,
    /// The last step's activation, which a result opens (its accumulator is `output_hash`).
    pub final_activation: Vec<u8>,
    /// The inclusion proof of the last leaf under `trace_root`, made in the same pass as the
    /// root (a result carries it). [`crate::tx::last_leaf_proof`] checks it before use, so an
    /// execution whose leaves were changed afterwards still gets a true proof.
    pub final_proof: MerkleProof,
}

impl Execution {
    /// The number of steps.
    pub fn step_count(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The tree over the leaves, to answer inclusion proofs in a dispute.
    pub fn tree(&self) -> MerkleTree {
        MerkleTree::new(self.leaves.clone())
    }
}

/// The leaf of step `index` with activation `activation`.
pub fn leaf_hash(index: u64, activation: &[u8]) -> Hash {
    hash_tagged(tag::TRACE_LEAF, &[&index.to_le_bytes(), activation])
}

/// The output hash of `output`: the accumulator chain `acc_0 = 0^32`,
/// `acc_k = H("attest/output/v1", acc_(k-1) || byte_k)`, ending at the last byte. A client
/// checks delivered output bytes against the ledger with this.
pub fn output_hash(output: &[u8]) -> Hash {
    output
        .iter()
        .fold(Hash([0; 32]), |acc, &b| accumulate(&acc, b))
}

fn accumulate(acc: &Hash, token: u8) -> Hash {
    hash_tagged(tag::OUTPUT, &[&acc.0, &[token]])
}

/// The output accumulator inside an activation: its last 32 bytes.
pub fn accumulator(activation: &[u8]) -> Option<Hash> {
    let tail = activation.len().checked_sub(ACC_BYTES)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&activation[tail..]);
    Some(Hash(out))
}

/// Runs `job` honestly.
pub fn execute(job: &Job<'_>) -> Execution {
    execute_with(job, |_, _, _| {})
}

/// Runs `job`, letting `hook(index, previous, activation)` see and change each step's
/// activation after it is computed and before it is hashed and fed forward. An honest run
/// passes a hook that does nothing; the node's test-only cheat modes use it to skip layers or
/// corrupt a step. The output follows whatever the hook leaves in place.
pub fn execute_with(job: &Job<'_>, mut hook: impl FnMut(u64, &[u8], &mut Vec<u8>)) -> Execution {
    let weights = job.model.weights();
    let count = job.step_count();
    let mut leaves = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut output = Vec::with_capacity(job.max_tokens as usize);
    let mut prev = job.initial_activation();
    let mut act = prev.clone();
    for index in 0..count {
        weights.step_into(job, index, &prev, &mut act);
        hook(index, &prev, &mut act);
        leaves.push(leaf_hash(index, &act));
        if job.emits(index) {
            // The token the step emitted; a hook that changed the state changes it too.
            output.push(weights.next_token(&act));
        }
        std::mem::swap(&mut prev, &mut act);
    }
    // Exactly `max_tokens` steps emit. The hash is the final accumulator, which an honest run
    // makes equal to `output_hash(&output)`; a hook that tampers may not.
    debug_assert_eq!(output.len(), job.max_tokens as usize);
    let (trace_root, final_proof) = merkle::root_and_last_proof(&leaves).expect(
        "a job has at least one step, and a tree in memory is shallower than a proof's bound",
    );
    let output_hash = accumulator(&prev).expect("activations end with the accumulator");
    Execution {
        output_hash,
        output,
        leaves,
        trace_root,
        final_activation: prev,
        final_proof,
    }
}

/// Computes step `index` of `job` alone from the activation of step `index - 1` (the
/// [`Job::initial_activation`] for step 0). Pure: the same arguments give the same bytes.
pub fn step(job: &Job<'_>, index: u64, previous: &[u8]) -> Result<Vec<u8>, WorkloadError> {
    let count = job.step_count();
    if index >= count {
        return Err(WorkloadError::StepOutOfRange { index, count });
    }
    if previous.len() != job.activation_len() {
        return Err(WorkloadError::ActivationWidth {
            model: job.model.id,
            expected: job.activation_len(),
            got: previous.len(),
        });
    }
    let mut out = vec![0; job.activation_len()];
    job.model
        .weights()
        .step_into(job, index, previous, &mut out);
    Ok(out)
}

/// The honest activation of step `index`, by replaying the job from the start. Dispute
/// parties use it to supply the witness before a divergent step.
pub fn activation_at(job: &Job<'_>, index: u64) -> Result<Vec<u8>, WorkloadError> {
    let count = job.step_count();
    if index >= count {
        return Err(WorkloadError::StepOutOfRange { index, count });
    }
    let weights = job.model.weights();
    let mut prev = job.initial_activation();
    let mut act = prev.clone();
    for i in 0..=index {
        weights.step_into(job, i, &prev, &mut act);
        std::mem::swap(&mut prev, &mut act);
    }
    Ok(prev)
}

/// A model's weights, drawn from a blake3 XOF seeded by the model id.
#[derive(Debug)]
pub(crate) struct Weights {
    hidden: usize,
    layers: usize,
    shift: u32,
    /// Per layer: `hidden * hidden` matrix entries (row-major), then `hidden` biases.
    layer_params: Vec<i8>,
    /// 257 rows of `hidden`: one per byte token and one for BOS.
    embed: Vec<i8>,
    /// 95 rows of `hidden`: one per printable output byte.
    unembed: Vec<i8>,
}

impl Weights {
    /// Draws the weights of `spec`: the XOF of `H`-prefix `attest/weights/v1` over the model id,
    /// read in order as `i8`: every layer's matrix and biases, the embedding, the unembedding.
    pub(crate) fn generate(spec: &ModelSpec) -> Self {
        let (d, l) = (spec.hidden, spec.layers as usize);
        let mut xof = crate::hash::tagged_hasher(tag::WEIGHTS);
        xof.update(spec.id.as_bytes());
        let mut reader = xof.finalize_xof();
        let mut take = |n: usize| {
            let mut buf = vec![0u8; n];
            reader.fill(&mut buf);
            buf.into_iter().map(|b| b as i8).collect::<Vec<i8>>()
        };
        let layer_params = take(l * (d * d + d));
        let embed = take(257 * d);
        let unembed = take(OUTPUT_VOCAB * d);
        Self {
            hidden: d,
            layers: l,
            shift: spec.shift,
            layer_params,
            embed,
            unembed,
        }
    }

    /// Computes step `index` of `job` from `prev` into `out` (both `hidden + 32` bytes: the
    /// hidden state, then the output accumulator).
    fn step_into(&self, job: &Job<'_>, index: u64, prev: &[u8], out: &mut [u8]) {
        let d = self.hidden;
        let layers = self.layers as u64;
        let (position, layer) = (index / layers, (index % layers) as usize);
        let mut x = [0i8; model::MAX_HIDDEN];
        let x = &mut x[..d];
        if layer == 0 {
            // A new position: mix the running state with the token's embedding. The token is
            // the prompt's, or after the prompt the one generated from the previous step.
            let token = job.prompt_token(position).unwrap_or_else(|| {
                u16::from(self.next_token(prev)) // prev is the last layer of the previous position
            });
            let row = &self.embed[usize::from(token) * d..][..d];
            for j in 0..d {
                x[j] = (prev[j] as i8).wrapping_add(row[j]);
            }
        } else {
            for j in 0..d {
                x[j] = prev[j] as i8;
            }
        }
        let base = layer * (d * d + d);
        let matrix = &self.layer_params[base..base + d * d];
        let bias = &self.layer_params[base + d * d..base + d * d + d];
        for r in 0..d {
            let row = &matrix[r * d..(r + 1) * d];
            let acc = (i32::from(bias[r]) << 6) + dot(row, x);
            // Requantize with round-half-up, then a leaky ReLU (negative side divided by 4),
            // then a residual added modulo 256, which keeps the state moving instead of
            // settling into a fixed point.
            let q = clamp_i8(acc.wrapping_add(1 << (self.shift - 1)) >> self.shift);
            let a = if q >= 0 { q } else { q >> 2 };
            out[r] = (x[r]).wrapping_add(a) as u8;
        }
        // The accumulator carries over, and takes the token this step emits.
        let mut acc_in = [0u8; ACC_BYTES];
        acc_in.copy_from_slice(&prev[d..d + ACC_BYTES]);
        let acc_out = if job.emits(index) {
            accumulate(&Hash(acc_in), self.next_token(&out[..d]))
        } else {
            Hash(acc_in)
        };
        out[d..d + ACC_BYTES].copy_from_slice(&acc_out.0);
    }

    /// The output byte chosen from a last-layer activation: the arg-max of the unembedding
    /// logits, ties to the lowest byte.
    fn next_token(&self, act: &[u8]) -> u8 {
        let d = self.hidden;
        let mut best = (i32::MIN, 0usize);
        for v in 0..OUTPUT_VOCAB {
            let row = &self.unembed[v * d..(v + 1) * d];
            let logit = dot_u8(row, &act[..d]);
            if logit > best.0 {
                best = (logit, v);
            }
        }
        FIRST_OUTPUT_BYTE + best.1 as u8
    }
}

fn clamp_i8(v: i32) -> i8 {
    v.clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
}

/// Weights are drawn once per model per process; they are a pure function of the model id.
/// The dot product of two rows of signed bytes. Exact, without wrapping: each product is at
/// most 2^14 in magnitude and a row has at most `MAX_HIDDEN` (128) lanes, so the sum stays
/// within 2^21; the bias term added to it is at most 2^13. Written as a plain sum so the
/// compiler vectorises it (this is the stand-in's inner loop).
#[inline(always)]
fn dot(a: &[i8], b: &[i8]) -> i32 {
    // Products of two `i8` fit an `i16` (at most 2^14); summing them in pairs into `i32` is
    // the shape of SSE2's `pmaddwd`, which the compiler then uses on any x86-64.
    let mut sum = 0i32;
    let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
    for (x, y) in (&mut ca).zip(&mut cb) {
        let mut lanes = [0i32; 8];
        for k in 0..8 {
            let lo = i16::from(x[2 * k]) * i16::from(y[2 * k]);
            let hi = i16::from(x[2 * k + 1]) * i16::from(y[2 * k + 1]);
            lanes[k] = i32::from(lo) + i32::from(hi);
        }
        sum += lanes.iter().sum::<i32>();
    }
    for (&p, &q) in ca.remainder().iter().zip(cb.remainder()) {
        sum += i32::from(p) * i32::from(q);
    }
    sum
}

/// [`dot`] with the second row given as the bytes of an activation (read as signed).
fn dot_u8(a: &[i8], b: &[u8]) -> i32 {
    let mut row = [0i8; model::MAX_HIDDEN];
    let n = b.len().min(model::MAX_HIDDEN);
    for (r, &v) in row.iter_mut().zip(&b[..n]) {
        *r = v as i8;
    }
    dot(a, &row[..n])
}

static WEIGHTS: [OnceLock<Weights>; CATALOGUE.len()] = [const { OnceLock::new() }; CATALOGUE.len()];

impl ModelSpec {
    /// The weights of this model, drawn on first use.
    pub(crate) fn weights(&'static self) -> &'static Weights {
        // By id, not address: `CATALOGUE` is a const, so each use of it may be a new copy.
        // Jobs are built only by `Job::new`, which takes models from the catalogue.
        let slot = CATALOGUE
            .iter()
            .position(|m| m.id == self.id)
            .expect("Job::new admits only catalogue models");
        WEIGHTS[slot].get_or_init(|| Weights::generate(self))
    }
}
