//! The client commands' arguments and what each prints: `submit`, `job`, `market`, `ledger`,
//! `audit` and `keys`. Every command takes `--json` (one object with a versioned `schema`,
//! documented in docs/CLI.md); logs go to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde::Serialize;
use serde_json::{Value, json};

use attest_chain::audit::{AuditRange, AuditReport, Distribution};
use attest_node::api::BlockView;
use attest_node::api::jobs::JobView;
use attest_protocol::tx::CheckLevel;
use attest_protocol::{Hash, Height};

use super::Globals;
use crate::client::{self, Api, DEFAULT_KEY, GenesisChoice, JobCommand, Wait};

/// `--check`: the assurance a job buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckArg {
    /// Checked at the chain's random spot-check rate.
    Random,
    /// Always checked by a drawn checker.
    Always,
}

impl From<CheckArg> for CheckLevel {
    fn from(c: CheckArg) -> Self {
        match c {
            CheckArg::Random => CheckLevel::Random,
            CheckArg::Always => CheckLevel::Always,
        }
    }
}

/// Client commands, flattened into `attest`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Open a job through a node (its gateway picks the provider) and follow it to its output.
    Submit {
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
        /// Milliseconds of block time the provider has to commit its result.
        #[arg(long, default_value_t = 60_000)]
        deadline_ms: u32,
        /// The assurance to buy: `random` (checked at the chain's spot-check rate) or
        /// `always` (a drawn checker re-executes it; the escrowed checker fee pays it).
        #[arg(long, value_enum, default_value = "random")]
        check: CheckArg,
        /// Buy `--check always` and follow the job until the checker's verdict (or the
        /// dispute's outcome): the same as `--check always --wait verdict`.
        #[arg(long)]
        verify: bool,
        /// Follow the job until its output arrives (`result`: it matches the provider's
        /// commitment, which is not a check), until the result is checked or its dispute
        /// decided (`verdict`), or until it settles.
        #[arg(long, value_enum, default_value = "result")]
        wait: Wait,
        /// Give up following after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Ask this provider (account, hex) on the terms of its advert instead of taking the
        /// gateway's pick.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Re-execute a job's committed result here and, if it is wrong, challenge it (locking
    /// the chain's challenge bond) and play the dispute to its end. The job's client may
    /// challenge; so may any staked account.
    Challenge {
        /// The job id.
        job: String,
        /// The challenging account's key (the job's client, or a staked account).
        #[arg(long, default_value = DEFAULT_KEY)]
        key: PathBuf,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// A job's state, timeline and what stands behind its result, or its output.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// The advert book of a node: who sells capacity, on what device, at what price.
    Market,
    /// Read the ledger: one block, the latest blocks, or a verifiable export.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Verify the ledger independently from genesis: hash chain, certificates, every signature,
    /// contract replay with state roots, invariants; then each provider's record.
    Audit {
        /// Audit a stopped node's data directory instead.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The genesis file the chain starts from. Without it: the node's own genesis
        /// (`GET /v1/genesis`) when --genesis-hash pins it or the local testnet's file is
        /// absent, else the local testnet's file (.attest/testnet/genesis.json).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// The genesis hash to hold the genesis to (`genesis_hash` of `attest testnet
        /// status`, or of a node you trust): the audit refuses any other genesis.
        #[arg(long)]
        genesis_hash: Option<Hash>,
        /// The first height the report covers (replay still starts at 1).
        #[arg(long)]
        from: Option<u64>,
        /// The last height audited.
        #[arg(long)]
        to: Option<u64>,
        /// Start from the node's verified snapshot at this height (in --data-dir's
        /// snapshots) instead of replaying from genesis: a checkpoint, see docs/CLI.md.
        #[arg(long, requires = "data_dir")]
        from_snapshot: Option<u64>,
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
    },
    /// The latest blocks.
    Tail {
        /// How many.
        #[arg(long, default_value_t = 10)]
        count: u64,
    },
    /// Every block and transaction with the exact signed and hashed bytes (docs/PROTOCOL.md
    /// section 12), one JSON object per line.
    Export {
        /// The format (only jsonl).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// The genesis file the chain starts from (chosen as `attest audit` chooses it).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// The genesis hash to hold the genesis to.
        #[arg(long)]
        genesis_hash: Option<Hash>,
    },
}

/// `attest keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a client key file (mode 0600) and print its account.
    New {
        /// Where to write it.
        path: PathBuf,
    },
    /// The key files in a directory and their accounts.
    List {
        /// The directory.
        #[arg(default_value = ".attest/testnet/clients")]
        dir: PathBuf,
    },
    /// Print the account of a key file.
    Show {
        /// The key file.
        path: PathBuf,
    },
}

fn print(out: &mut impl Write, v: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Runs a client command; a failed audit is an error (non-zero exit) after its report.
pub fn run(command: ClientCommand, g: &Globals, out: &mut impl Write) -> Result<()> {
    let json = g.json;
    let node = g.node().to_owned();
    match command {
        ClientCommand::Submit {
            key,
            model,
            input,
            max_tokens,
            max_price,
            deadline_ms,
            check,
            verify,
            wait,
            timeout,
            provider,
        } => {
            let args = client::SubmitArgs {
                node,
                key,
                model,
                input: client::read_input(&input)?,
                max_tokens,
                max_price,
                deadline_ms,
                check: if verify {
                    CheckLevel::Always
                } else {
                    check.into()
                },
                wait: if verify { Wait::Verdict } else { wait },
                timeout: Duration::from_secs(timeout),
                provider,
            };
            let record = client::submit(&args, json, out)?;
            if json {
                print(out, &record.to_json())?;
            }
        }
        ClientCommand::Challenge { job, key, timeout } => {
            let job: attest_protocol::JobId = job
                .parse()
                .map_err(|e| anyhow::anyhow!("job id {job:?}: {e}"))?;
            let args = crate::challenge::ChallengeArgs {
                node,
                key,
                job,
                timeout: Duration::from_secs(timeout),
            };
            // Progress goes to stderr, so `--json` keeps stdout to the one report.
            let report = crate::challenge::challenge(&args, |line| {
                if !json {
                    eprintln!("{line}");
                }
            })?;
            if json {
                print(out, &report)?;
            } else {
                crate::challenge::print_text(&report, out)?;
            }
        }
        ClientCommand::Job { command } => {
            let api = Api::new(&node)?;
            match command {
                JobCommand::Show { id, verify } => {
                    let v = if verify {
                        api.job_proven(&id)?
                    } else {
                        api.job(&id)?
                    };
                    let check = match (&v.proof, verify) {
                        (Some(proof), true) => Some(client::check_proof(&api, proof, PROOF_WAIT)?),
                        _ => None,
                    };
                    if json {
                        let verified = check.as_ref().map(check_json);
                        print(
                            out,
                            &json!({ "schema": "attest.job/1", "job": v, "verified": verified }),
                        )?;
                    } else {
                        print_job(&v, out)?;
                        if let Some(c) = &check {
                            print_check(c, out)?;
                        }
                    }
                }
                JobCommand::Output { id } => {
                    let v = api.job_output(&id)?;
                    if json {
                        print(
                            out,
                            &json!({ "schema": "attest.job-output/1", "output": v }),
                        )?;
                    } else {
                        writeln!(out, "{}", v.output.as_deref().unwrap_or(""))?;
                    }
                }
            }
        }
        ClientCommand::Market => market(&node, json, out)?,
        ClientCommand::Ledger { command } => ledger(command, g, out)?,
        ClientCommand::Audit {
            data_dir,
            genesis_hash,
            genesis,
            from,
            to,
            from_snapshot,
        } => {
            // From a snapshot at H, the report starts at H + 1 unless asked for later.
            let from = match (from, from_snapshot) {
                (None, Some(h)) => Some(h.saturating_add(1)),
                (from, _) => from,
            };
            let range = AuditRange::new(from.map(Height), to.map(Height))?;
            if data_dir.is_some() && g.node.is_some() {
                bail!("give --node or --data-dir, not both: the audit reads one chain");
            }
            let api = Api::new(&node)?;
            let choice = GenesisChoice {
                file: genesis,
                pinned: genesis_hash,
            };
            let chosen = choice.resolve(data_dir.is_none().then_some(&api))?;
            let (report, ok) = client::run_audit(
                &chosen.genesis,
                Some(&node),
                data_dir.as_deref(),
                range,
                from_snapshot.map(Height),
            )?;
            if json {
                // Through a `Value`, so the keys come out sorted as they always have.
                let mut value = serde_json::to_value(&report)?;
                if let Some(fields) = value.as_object_mut() {
                    fields.insert("genesis".to_owned(), chosen.to_json());
                }
                print(out, &value)?;
            } else {
                writeln!(out, "{}", chosen.describe())?;
                print_audit(&report, out)?;
            }
            if !ok {
                bail!("audit failed: {}", failure_of(&report)?);
            }
        }
        ClientCommand::Keys { command } => {
            g.refuse_node("keys")?;
            keys(command, json, out)?
        }
    }
    Ok(())
}

fn market(node: &str, json: bool, out: &mut impl Write) -> Result<()> {
    let book = Api::new(node)?.adverts()?;
    if json {
        return print(
            out,
            &json!({ "schema": "attest.market/1", "adverts": book.adverts }),
        );
    }
    writeln!(
        out,
        "{:<16} {:<10} {:>5} {:>12} {:>14}  models",
        "provider", "device", "free", "price/token", "tokens/s"
    )?;
    for a in &book.adverts {
        let provider = a.provider.to_string();
        let models: Vec<&str> = a.models.iter().map(|m| m.as_str()).collect();
        writeln!(
            out,
            "{:<16} {:<10} {:>5} {:>12} {:>14.1}  {}",
            provider.get(..16).unwrap_or(&provider),
            a.device.as_str(),
            a.free_slots,
            a.price_per_token.0,
            a.tokens_per_sec_milli as f64 / 1000.0,
            models.join(",")
        )?;
    }
    Ok(())
}

fn ledger(command: LedgerCommand, g: &Globals, out: &mut impl Write) -> Result<()> {
    let json = g.json;
    let api = Api::new(g.node())?;
    match command {
        LedgerCommand::Show { height } => {
            let v = api.block(height)?;
            if json {
                return print(out, &json!({ "schema": "attest.block/1", "block": v }));
            }
            print_block(&v, out)
        }
        LedgerCommand::Tail { count } => {
            let latest = api.status()?.height.0;
            let from = latest.saturating_sub(count.saturating_sub(1)).max(1);
            let blocks = api.blocks(from, latest)?.blocks;
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
            genesis,
            genesis_hash,
        } => {
            if format != "jsonl" {
                bail!("unknown export format {format:?}: only jsonl is supported");
            }
            let choice = GenesisChoice {
                file: genesis,
                pinned: genesis_hash,
            };
            let chosen = choice.resolve(Some(&api))?;
            tracing::info!("{}", chosen.describe());
            client::export(&chosen.genesis, &api, out)
        }
    }
}

fn keys(command: KeysCommand, json: bool, out: &mut impl Write) -> Result<()> {
    let key = match command {
        KeysCommand::New { path } => client::new_key(&path)?,
        KeysCommand::Show { path } => attest_node::keyfile::read(&path)?,
        KeysCommand::List { dir } => return list_keys(&dir, json, out),
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
fn print_block(b: &BlockView, out: &mut impl Write) -> Result<()> {
    let short = |t: String| t.get(..16).unwrap_or(&t).to_owned();
    writeln!(
        out,
        "block {} {} time {} proposer {} txs {} signers {}",
        b.height.0,
        short(b.hash.to_string()),
        b.time_ms,
        short(b.proposer.to_string()),
        b.txs.len(),
        b.certificate.signers
    )?;
    Ok(())
}

/// `value` as compact JSON with its keys sorted, as the job's parts were always shown.
fn json_text(value: &impl Serialize) -> Result<String> {
    Ok(serde_json::to_value(value)?.to_string())
}

/// A job as a person reads it: terms, phase, result, check, dispute, timeline.
/// How long `--verify` waits for the block that certifies a proof's root (the next block:
/// an idle chain makes one every `idle_block_interval_ms`).
pub(super) const PROOF_WAIT: Duration = Duration::from_secs(30);

/// One proven entry, for a reader (amounts in units).
fn describe_entry(
    key: &attest_contracts_sim::Key,
    entry: Option<&attest_contracts_sim::Entry>,
) -> String {
    use attest_contracts_sim::{Entry, Key};
    match (key, entry) {
        (Key::Account(_), Some(Entry::Account(a))) => {
            format!(
                "account: balance {} units, nonce {}",
                a.balance.0, a.nonce.0
            )
        }
        (Key::Stake(_), Some(Entry::Stake(s))) => format!(
            "stake: {} units bonded, {} unbonding entries, {:?}",
            s.bonded.0,
            s.unbonding.len(),
            s.status
        ),
        (Key::Record(_), Some(Entry::Record(r))) => format!(
            "record: as provider {} settled, {} refunded; as client {} settled; {} slashes ({} units)",
            r.provided.settled, r.provided.refunded, r.opened.settled, r.slashes, r.slashed.0
        ),
        (Key::Job(id), Some(Entry::Job(j))) => format!(
            "job {id}: phase {}, provider {}, escrow {} units",
            j.phase.name(),
            j.provider,
            j.escrow.0
        ),
        (key, None) => format!("{key:?}: proven absent"),
        (key, Some(e)) => format!("{key:?} = {e:?}"),
    }
}

/// Fails unless the answer's own fields are the proven values.
pub(super) fn match_account(
    v: &attest_node::api::accounts::AccountSnapshot,
    c: &client::LightCheck,
) -> Result<()> {
    use attest_contracts_sim::{Entry, Key};
    for (key, entry) in &c.entries {
        let agrees = match (key, entry) {
            (Key::Account(_), Some(Entry::Account(a))) => {
                a.balance == v.balance && a.nonce == v.nonce
            }
            (Key::Account(_), None) => v.balance.0 == 0 && v.nonce.0 == 0,
            (Key::Stake(_), Some(Entry::Stake(s))) => {
                v.stake.as_ref().is_some_and(|m| m.bonded == s.bonded)
            }
            (Key::Stake(_), None) => v.stake.is_none(),
            (Key::Record(_), Some(Entry::Record(r))) => {
                r.provided.settled == v.provider.jobs.settled
                    && r.slashes == v.provider.slashes_total
            }
            (Key::Record(_), None) => v.provider.jobs.settled == 0 && v.provider.slashes_total == 0,
            _ => true,
        };
        anyhow::ensure!(
            agrees,
            "the node's answer disagrees with its own proof of {key:?}"
        );
    }
    Ok(())
}

/// What a proof check established, as JSON.
pub(super) fn check_json(c: &client::LightCheck) -> Value {
    let entries: Vec<Value> = c
        .entries
        .iter()
        .map(|(key, entry)| json!({ "key": format!("{key:?}"), "present": entry.is_some(), "value": describe_entry(key, entry.as_ref()) }))
        .collect();
    json!({
        "height": c.height,
        "certified_by_block": c.block,
        "entries": entries,
        "certificate": { "signers": c.signers, "power": c.power, "total_power": c.total },
    })
}

/// What a proof check established, for a reader.
pub(super) fn print_check(c: &client::LightCheck, out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "verified: {} entries proven against the state root after height {}, which block {} ({}) carries",
        c.entries.len(),
        c.height.0,
        c.height.0 + 1,
        c.block
    )?;
    for (key, entry) in &c.entries {
        writeln!(out, "  {}", describe_entry(key, entry.as_ref()))?;
    }
    writeln!(
        out,
        "  its certificate: {} valid precommit signatures, power {} of {} (more than 2/3) of the \
         validator set the node names for that height; that set is the node's word, not checked here",
        c.signers, c.power, c.total
    )?;
    Ok(())
}

fn print_job(v: &JobView, out: &mut impl Write) -> Result<()> {
    writeln!(out, "job {}", v.id)?;
    writeln!(
        out,
        "  {} on {} by {} at {} micro-units/token, {} tokens; client {}",
        v.model.as_str(),
        v.device.as_str(),
        v.provider,
        v.price_per_token.0,
        v.max_tokens,
        v.client
    )?;
    writeln!(
        out,
        "  phase {} (opened at height {}, check level {})",
        v.phase, v.opened_at.0, v.check_level
    )?;
    writeln!(
        out,
        "  what stands behind the result: {}",
        v.assurance.describe()
    )?;
    if let Some(result) = &v.result {
        writeln!(
            out,
            "  result at height {}: output hash {}",
            result.committed_at.0, result.output_hash
        )?;
    }
    if let Some(check) = &v.check {
        writeln!(out, "  check: {}", json_text(check)?)?;
    }
    if let Some(dispute) = &v.dispute {
        writeln!(out, "  dispute: {}", json_text(dispute)?)?;
    }
    if let Some(ms) = v.timeline.as_ref().and_then(|t| t.validation_latency_ms) {
        writeln!(out, "  validation latency {ms} ms")?;
    }
    for f in &v.faults {
        writeln!(out, "  fault: {}", json_text(f)?)?;
    }
    writeln!(
        out,
        "  output held by this node (it matches the committed output hash): {}",
        v.output_held
    )?;
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
    /// One key file, as `attest keys list --json` shows it.
    #[derive(Serialize)]
    struct KeyRow {
        account: String,
        path: String,
    }
    let mut rows = Vec::new();
    for path in paths {
        let account = attest_node::keyfile::read(&path)?.public().to_string();
        let path = path.display().to_string();
        rows.push(KeyRow { account, path });
    }
    if json {
        return print(out, &json!({ "schema": "attest.keys/1", "keys": rows }));
    }
    for r in &rows {
        writeln!(out, "{}  {}", r.account, r.path)?;
    }
    Ok(())
}

/// Why the audit failed, as JSON (`null` if it did not).
fn failure_of(r: &AuditReport) -> Result<Value> {
    Ok(serde_json::to_value(&r.failure)?)
}

/// The audit report as a person reads it: the verdict, the latency distributions, one row
/// per provider, the slashes.
fn print_audit(r: &AuditReport, out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "audit {}: {} blocks, {} transactions, {} signatures verified",
        if r.ok { "OK" } else { "FAILED" },
        r.counts.blocks,
        r.counts.txs,
        r.counts.signatures_verified
    )?;
    if !r.ok {
        writeln!(out, "failure: {}", failure_of(r)?)?;
    }
    if let Some(h) = r.from_snapshot {
        writeln!(
            out,
            "started from the snapshot at height {h} (a checkpoint: blocks up to it were not replayed)"
        )?;
    }
    let distributions: [(&str, &Distribution); 2] = [
        ("validation latency", &r.validation_latency_ms.all),
        ("job latency (opened to final)", &r.job_latency_ms.all),
    ];
    for (name, d) in distributions {
        writeln!(
            out,
            "{name}: {} samples, p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            d.count, d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms
        )?;
    }
    writeln!(
        out,
        "{:<16} {:>5} {:>7} {:>6} {:>5} {:>5} {:>12}",
        "provider", "jobs", "checked", "agreed", "won", "lost", "slashed"
    )?;
    for p in &r.providers {
        let account = p.account.to_string();
        writeln!(
            out,
            "{:<16} {:>5} {:>7} {:>6} {:>5} {:>5} {:>12}",
            account.get(..16).unwrap_or(&account),
            p.jobs,
            p.checked,
            p.agreed,
            p.disputes_won,
            p.disputes_lost,
            p.slashed.0
        )?;
    }
    for s in &r.slashes {
        writeln!(
            out,
            "slash: {} lost {} micro-units ({})",
            s.account, s.amount.0, s.reason
        )?;
    }
    Ok(())
}
