//! The client commands' arguments and what each prints: `submit`, `job`, `market`, `ledger`,
//! `audit` and `keys`. Every command takes `--json` (one object with a versioned `schema`,
//! documented in docs/CLI.md); logs go to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use attest_chain::audit::AuditRange;
use attest_protocol::Height;

use crate::client::{self, Api, DEFAULT_GENESIS, DEFAULT_KEY, DEFAULT_NODE, JobCommand, Wait};

/// Client commands, flattened into `attest`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Open a job through a node (its gateway picks the provider) and follow it to its output.
    Submit {
        /// The node's API.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
        /// The client key paying for the job (a file written by `attest keys new`).
        #[arg(long, default_value = DEFAULT_KEY)]
        key: PathBuf,
        /// The model (see `attest models`).
        #[arg(long)]
        model: String,
        /// The input: text, or @FILE for a file's bytes.
        #[arg(long)]
        input: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 16)]
        max_tokens: u32,
        /// The most the client pays per generated token, in micro-units.
        #[arg(long, default_value_t = 1_000)]
        max_price: u64,
        /// Blocks the provider has to commit its result.
        #[arg(long, default_value_t = 600)]
        deadline_blocks: u32,
        /// Follow the job until its output is verified (`result`) or it settles.
        #[arg(long, value_enum, default_value = "result")]
        wait: Wait,
        /// Give up following after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Print one JSON object (schema attest.submit/1).
        #[arg(long)]
        json: bool,
    },
    /// A job's state and timeline, or its verified output.
    Job {
        /// The node's API.
        #[arg(long, default_value = DEFAULT_NODE, global = true)]
        node: String,
        /// Print JSON (schema attest.job/1 or attest.job-output/1).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: JobCommand,
    },
    /// The advert book of a node: who sells capacity, on what device, at what price.
    Market {
        /// The node's API.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
        /// Print JSON (schema attest.market/1).
        #[arg(long)]
        json: bool,
    },
    /// Read the ledger: one block, the latest blocks, or a verifiable export.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Verify the ledger independently from genesis: hash chain, certificates, every signature,
    /// contract replay with state roots, invariants; then each provider's record.
    Audit {
        /// Audit the chain this node serves.
        #[arg(long, default_value = DEFAULT_NODE, conflicts_with = "data_dir")]
        node: String,
        /// Audit a stopped node's data directory instead.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The genesis the chain starts from.
        #[arg(long, default_value = DEFAULT_GENESIS)]
        genesis: PathBuf,
        /// The first height the report covers (replay still starts at 1).
        #[arg(long)]
        from: Option<u64>,
        /// The last height audited.
        #[arg(long)]
        to: Option<u64>,
        /// Print the report as JSON (schema attest.audit/1).
        #[arg(long)]
        json: bool,
    },
    /// Client keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// `attest ledger ...`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// One committed block.
    Show {
        /// The height.
        height: u64,
        /// The node's API.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
        /// Print JSON (schema attest.block/1).
        #[arg(long)]
        json: bool,
    },
    /// The latest blocks.
    Tail {
        /// How many.
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// The node's API.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
        /// Print JSON (schema attest.blocks/1).
        #[arg(long)]
        json: bool,
    },
    /// Every block and transaction with the exact signed and hashed bytes (docs/PROTOCOL.md
    /// section 12), one JSON object per line.
    Export {
        /// The format (only jsonl).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// The node's API.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
        /// The genesis the chain starts from.
        #[arg(long, default_value = DEFAULT_GENESIS)]
        genesis: PathBuf,
    },
}

/// `attest keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a client key file (mode 0600) and print its account.
    New {
        /// Where to write it.
        path: PathBuf,
        /// Print JSON (schema attest.keys/1).
        #[arg(long)]
        json: bool,
    },
    /// The key files in a directory and their accounts.
    List {
        /// The directory.
        #[arg(default_value = ".attest/testnet/clients")]
        dir: PathBuf,
        /// Print JSON (schema attest.keys/1).
        #[arg(long)]
        json: bool,
    },
    /// Print the account of a key file.
    Show {
        /// The key file.
        path: PathBuf,
        /// Print JSON (schema attest.keys/1).
        #[arg(long)]
        json: bool,
    },
}

fn print(out: &mut impl Write, v: &Value) -> Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Runs a client command; a failed audit is an error (non-zero exit) after its report.
pub fn run(command: ClientCommand, out: &mut impl Write) -> Result<()> {
    match command {
        ClientCommand::Submit {
            node,
            key,
            model,
            input,
            max_tokens,
            max_price,
            deadline_blocks,
            wait,
            timeout,
            json,
        } => {
            let args = client::SubmitArgs {
                node,
                key,
                model,
                input: client::read_input(&input)?,
                max_tokens,
                max_price,
                deadline_blocks,
                wait,
                timeout: Duration::from_secs(timeout),
                provider: None,
            };
            let record = client::submit(&args, json, out)?;
            if json {
                print(out, &record)?;
            }
        }
        ClientCommand::Job {
            node,
            json,
            command,
        } => {
            let mut api = Api::new(&node)?;
            match command {
                JobCommand::Show { id } => {
                    let v = api.get(&format!("/v1/jobs/{id}"))?;
                    if json {
                        print(out, &json!({ "schema": "attest.job/1", "job": v }))?;
                    } else {
                        print_job(&v, out)?;
                    }
                }
                JobCommand::Output { id } => {
                    let v = api.get(&format!("/v1/jobs/{id}/output"))?;
                    if json {
                        print(
                            out,
                            &json!({ "schema": "attest.job-output/1", "output": v }),
                        )?;
                    } else {
                        writeln!(out, "{}", v["output"].as_str().unwrap_or(""))?;
                    }
                }
            }
        }
        ClientCommand::Market { node, json } => market(&node, json, out)?,
        ClientCommand::Ledger { command } => ledger(command, out)?,
        ClientCommand::Audit {
            node,
            data_dir,
            genesis,
            from,
            to,
            json,
        } => {
            let range = AuditRange::new(from.map(Height), to.map(Height))?;
            let (report, ok) =
                client::run_audit(&genesis, Some(&node), data_dir.as_deref(), range)?;
            if json {
                print(out, &report)?;
            } else {
                print_audit(&report, out)?;
            }
            if !ok {
                bail!("audit failed: {}", report["failure"]);
            }
        }
        ClientCommand::Keys { command } => keys(command, out)?,
    }
    Ok(())
}

fn market(node: &str, json: bool, out: &mut impl Write) -> Result<()> {
    let mut api = Api::new(node)?;
    let book = api.get("/v1/adverts")?;
    if json {
        return print(
            out,
            &json!({ "schema": "attest.market/1", "adverts": book["adverts"] }),
        );
    }
    writeln!(
        out,
        "{:<16} {:<10} {:>5} {:>12} {:>14}  models",
        "provider", "device", "free", "price/token", "tokens/s"
    )?;
    for a in book["adverts"].as_array().into_iter().flatten() {
        let provider = a["provider"].as_str().unwrap_or("");
        let models: Vec<&str> = a["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        writeln!(
            out,
            "{:<16} {:<10} {:>5} {:>12} {:>14.1}  {}",
            provider.get(..16).unwrap_or(provider),
            a["device"].as_str().unwrap_or(""),
            a["free_slots"].as_u64().unwrap_or(0),
            a["price_per_token"].as_u64().unwrap_or(0),
            a["tokens_per_sec_milli"].as_f64().unwrap_or(0.0) / 1000.0,
            models.join(",")
        )?;
    }
    Ok(())
}

fn ledger(command: LedgerCommand, out: &mut impl Write) -> Result<()> {
    match command {
        LedgerCommand::Show { height, node, json } => {
            let v = Api::new(&node)?.get(&format!("/v1/blocks/{height}"))?;
            if json {
                return print(out, &json!({ "schema": "attest.block/1", "block": v }));
            }
            print_block(&v, out)
        }
        LedgerCommand::Tail { count, node, json } => {
            let mut api = Api::new(&node)?;
            let latest = api.get("/v1/status")?["height"].as_u64().unwrap_or(0);
            let from = latest.saturating_sub(count.saturating_sub(1)).max(1);
            let page = api.get(&format!("/v1/blocks?from={from}&to={latest}"))?;
            let blocks = page["blocks"].as_array().cloned().unwrap_or_default();
            if json {
                return print(
                    out,
                    &json!({ "schema": "attest.blocks/1", "blocks": blocks }),
                );
            }
            for b in &blocks {
                print_block(b, out)?;
            }
            Ok(())
        }
        LedgerCommand::Export {
            format,
            node,
            genesis,
        } => {
            if format != "jsonl" {
                bail!("unknown export format {format:?}: only jsonl is supported");
            }
            client::export(&genesis, &node, out)
        }
    }
}

fn keys(command: KeysCommand, out: &mut impl Write) -> Result<()> {
    let (key, json) = match command {
        KeysCommand::New { path, json } => (client::new_key(&path)?, json),
        KeysCommand::Show { path, json } => (attest_node::keyfile::read(&path)?, json),
        KeysCommand::List { dir, json } => return list_keys(&dir, json, out),
    };
    let account = key.public().to_string();
    if json {
        print(
            out,
            &json!({ "schema": "attest.keys/1", "account": account }),
        )
    } else {
        writeln!(out, "account {account}")?;
        Ok(())
    }
}

/// One block as a line: height, hash, time, proposer, transactions, certificate signers.
fn print_block(b: &Value, out: &mut impl Write) -> Result<()> {
    let short = |v: &Value| {
        let t = v.as_str().unwrap_or("");
        t.get(..16).unwrap_or(t).to_owned()
    };
    writeln!(
        out,
        "block {} {} time {} proposer {} txs {} signers {}",
        b["height"],
        short(&b["hash"]),
        b["time_ms"],
        short(&b["proposer"]),
        b["txs"].as_array().map_or(0, Vec::len),
        b["certificate"]["signers"]
    )?;
    Ok(())
}

/// A job as a person reads it: terms, phase, result, check, dispute, timeline.
fn print_job(v: &Value, out: &mut impl Write) -> Result<()> {
    let s = |k: &Value| k.as_str().unwrap_or("-").to_owned();
    writeln!(out, "job {}", s(&v["id"]))?;
    writeln!(
        out,
        "  {} on {} by {} at {} micro-units/token, {} tokens; client {}",
        s(&v["model"]),
        s(&v["device"]),
        s(&v["provider"]),
        v["price_per_token"],
        v["max_tokens"],
        s(&v["client"])
    )?;
    writeln!(
        out,
        "  phase {} (opened at height {})",
        s(&v["phase"]),
        v["opened_at"]
    )?;
    if !v["result"].is_null() {
        writeln!(
            out,
            "  result at height {}: output hash {}",
            v["result"]["committed_at"],
            s(&v["result"]["output_hash"])
        )?;
    }
    if !v["check"].is_null() {
        writeln!(out, "  check: {}", v["check"])?;
    }
    if !v["dispute"].is_null() {
        writeln!(out, "  dispute: {}", v["dispute"])?;
    }
    let t = &v["timeline"];
    if let Some(ms) = t["validation_latency_ms"].as_u64() {
        writeln!(out, "  validation latency {ms} ms")?;
    }
    for f in v["faults"].as_array().into_iter().flatten() {
        writeln!(out, "  fault: {f}")?;
    }
    writeln!(out, "  output held by this node: {}", v["output_held"])?;
    Ok(())
}

/// Every `*.key` file in `dir` (sorted by name) with its account.
fn list_keys(dir: &std::path::Path, json: bool, out: &mut impl Write) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("key directory {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    paths.sort();
    let mut rows = Vec::new();
    for path in paths {
        let account = attest_node::keyfile::read(&path)?.public().to_string();
        rows.push(json!({ "path": path.display().to_string(), "account": account }));
    }
    if json {
        return print(out, &json!({ "schema": "attest.keys/1", "keys": rows }));
    }
    for r in &rows {
        writeln!(
            out,
            "{}  {}",
            r["account"].as_str().unwrap_or(""),
            r["path"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

/// The audit report as a person reads it: the verdict, the latency distributions, one row
/// per provider, the slashes.
fn print_audit(r: &Value, out: &mut impl Write) -> Result<()> {
    let ok = r["ok"].as_bool() == Some(true);
    writeln!(
        out,
        "audit {}: {} blocks, {} transactions, {} signatures verified",
        if ok { "OK" } else { "FAILED" },
        r["blocks"],
        r["txs"],
        r["signatures_verified"]
    )?;
    if !ok {
        writeln!(out, "failure: {}", r["failure"])?;
    }
    for (name, d) in [
        ("validation latency", &r["validation_latency_ms"]["all"]),
        ("job latency (opened to final)", &r["job_latency_ms"]["all"]),
    ] {
        writeln!(
            out,
            "{name}: {} samples, p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            d["count"], d["p50_ms"], d["p90_ms"], d["p99_ms"], d["max_ms"]
        )?;
    }
    writeln!(
        out,
        "{:<16} {:>5} {:>7} {:>6} {:>5} {:>5} {:>12}",
        "provider", "jobs", "checked", "agreed", "won", "lost", "slashed"
    )?;
    for p in r["providers"].as_array().into_iter().flatten() {
        let account = p["account"].as_str().unwrap_or("");
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        writeln!(
            out,
            "{:<16} {:>5} {:>7} {:>6} {:>5} {:>5} {:>12}",
            account.get(..16).unwrap_or(account),
            n("jobs"),
            n("checked"),
            n("agreed"),
            n("disputes_won"),
            n("disputes_lost"),
            n("slashed")
        )?;
    }
    for s in r["slashes"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "slash: {} lost {} micro-units ({})",
            s["account"].as_str().unwrap_or(""),
            s["amount"],
            s["reason"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}
