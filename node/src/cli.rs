//! Command implementations of the `attest` binary, callable from tests.

use std::io::Write;

use anyhow::{Context, Result, bail};
use attest_protocol::limits::MAX_INPUT_BYTES;
use attest_protocol::workload::{self, CATALOGUE, Job};
use serde::Serialize;

/// Reads a job input: the text itself, or `@PATH` for a file's bytes.
pub fn read_input(arg: &str) -> Result<Vec<u8>> {
    let bytes = match arg.strip_prefix('@') {
        Some(path) => {
            let meta = std::fs::metadata(path).with_context(|| format!("input file {path}"))?;
            if meta.len() > MAX_INPUT_BYTES as u64 {
                bail!(
                    "input file {path} is {} bytes; the limit is {MAX_INPUT_BYTES}",
                    meta.len()
                );
            }
            std::fs::read(path).with_context(|| format!("reading input file {path}"))?
        }
        None => arg.as_bytes().to_vec(),
    };
    Ok(bytes)
}

/// What `attest run --json` prints (schema `attest.run/1`).
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// Always `attest.run/1`.
    pub schema: &'static str,
    /// The model id.
    pub model: String,
    /// Input length in bytes.
    pub input_bytes: usize,
    /// Tokens generated.
    pub tokens: u32,
    /// The output text (printable ASCII).
    pub output: String,
    /// Hex of the output hash.
    pub output_hash: String,
    /// Hex of the trace root.
    pub trace_root: String,
    /// Steps in the trace.
    pub step_count: u64,
}

/// Runs `model` on `input` for `max_tokens` and reports the result.
pub fn run(model: &str, input: &[u8], max_tokens: u32) -> Result<RunReport> {
    let job = Job::new(model, input, max_tokens)?;
    let exec = workload::execute(&job);
    Ok(RunReport {
        schema: "attest.run/1",
        model: job.model().id.to_owned(),
        input_bytes: input.len(),
        tokens: max_tokens,
        output: String::from_utf8(exec.output.clone())
            .context("workload output is printable ASCII")?,
        output_hash: exec.output_hash.to_string(),
        trace_root: exec.trace_root.to_string(),
        step_count: exec.step_count(),
    })
}

/// Prints `report` for a person.
pub fn print_run(out: &mut impl Write, r: &RunReport) -> std::io::Result<()> {
    writeln!(out, "model        {}", r.model)?;
    writeln!(out, "input        {} bytes", r.input_bytes)?;
    writeln!(out, "output       {:?}", r.output)?;
    writeln!(out, "output hash  {}", r.output_hash)?;
    writeln!(out, "trace root   {}", r.trace_root)?;
    writeln!(out, "steps        {} ({} tokens)", r.step_count, r.tokens)
}

/// One catalogue row of `attest models --json` (schema `attest.models/1`).
#[derive(Debug, Serialize)]
pub struct ModelRow {
    /// The model id.
    pub id: &'static str,
    /// What it stands for.
    pub description: &'static str,
    /// Declared parameters.
    pub params: u64,
    /// Declared (and stand-in) layers.
    pub layers: u32,
    /// Declared bytes per parameter.
    pub bytes_per_param: u32,
    /// Stand-in hidden width.
    pub hidden: usize,
}

/// The catalogue.
pub fn models() -> Vec<ModelRow> {
    CATALOGUE
        .iter()
        .map(|m| ModelRow {
            id: m.id,
            description: m.description,
            params: m.params,
            layers: m.layers,
            bytes_per_param: m.bytes_per_param,
            hidden: m.hidden,
        })
        .collect()
}
