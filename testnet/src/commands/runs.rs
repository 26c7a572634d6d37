//! `attest demo` and `attest bench`: whole runs against a fresh local testnet, with what each
//! prints.

use std::io::Write;

use anyhow::Result;

use super::print_json;

/// The commands that run a whole testnet, flattened into `attest`.
#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// The whole story in one command: a 4-node testnet with one cheating node, ~200 jobs,
    /// settlement, an independent audit and a summary; exit 0 only if the audit passes, every
    /// honest job settled, the cheater was slashed and no honest node was.
    Demo {
        /// Where the demo's testnet lives (removed at the end unless --keep).
        #[arg(long, default_value = ".attest/demo")]
        dir: std::path::PathBuf,
        /// Jobs to submit.
        #[arg(long, default_value_t = 200)]
        jobs: usize,
        /// Jobs in flight at once.
        #[arg(long, default_value_t = 8,
              value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// Node i uses ports BASE+2i (libp2p) and BASE+2i+1 (API) on 127.0.0.1.
        #[arg(long, default_value_t = 26_700)]
        base_port: u16,
        /// Leave the testnet running at the end.
        #[arg(long)]
        keep: bool,
        /// How node 3 cheats, MODE:RATE (lazy, truncate or flip; RATE 0.0 to 1.0).
        #[arg(long, default_value = crate::demo::DEFAULT_CHEAT)]
        cheat: attest_core::accel::Cheat,
        /// Every node's watch_rate: the share of others' results it re-executes and
        /// challenges if wrong (0.0 to 1.0).
        #[arg(long, default_value_t = crate::layout::DEFAULT_WATCH_RATE)]
        watch_rate: f64,
    },
    /// A load generator against a fresh local testnet (no cheater): jobs/s with a verified
    /// output and settled, transactions/s, job, settlement and validation latency, block time,
    /// and each node's memory and CPU. Exit 0 only if every job got its output and settled.
    Bench {
        /// Validators (each also a provider).
        #[arg(long, default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(1..=crate::layout::MAX_NODES as i64))]
        nodes: u16,
        /// Jobs to open.
        #[arg(long, default_value_t = 400,
              value_parser = clap::value_parser!(u32).range(1..))]
        jobs: u32,
        /// Client keys opening jobs at once, each back to back without waiting for the last.
        #[arg(long, default_value_t = 32,
              value_parser = clap::value_parser!(u16).range(1..=crate::layout::MAX_CLIENTS as i64))]
        concurrency: u16,
        /// Where the bench's testnet lives (removed at the end unless --keep).
        #[arg(long, default_value = ".attest/bench")]
        dir: std::path::PathBuf,
        /// Node i uses ports BASE+2i (libp2p) and BASE+2i+1 (API) on 127.0.0.1.
        #[arg(long, default_value_t = 26_800)]
        base_port: u16,
        /// Leave the testnet running at the end.
        #[arg(long)]
        keep: bool,
    },
}

/// Runs `attest demo` or `attest bench`, printing to `out`.
pub fn run_command(command: RunCommand, g: &super::Globals, out: &mut impl Write) -> Result<()> {
    let json = g.json;
    match command {
        RunCommand::Demo {
            dir,
            jobs,
            concurrency,
            base_port,
            keep,
            cheat,
            watch_rate,
        } => {
            g.refuse_node("demo")?;
            super::init_logging_at("warn");
            let opts = crate::demo::DemoOptions {
                dir,
                jobs,
                concurrency: usize::from(concurrency),
                base_port,
                keep,
                cheat,
                watch_rate,
            };
            let (summary, passed) = crate::demo::run(&opts, json, out)?;
            if json {
                print_json(out, &summary)?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
            }
            if !passed {
                anyhow::bail!("the demo did not pass (see the summary above)");
            }
        }
        RunCommand::Bench {
            nodes,
            jobs,
            concurrency,
            dir,
            base_port,
            keep,
        } => {
            g.refuse_node("bench")?;
            super::init_logging_at("warn");
            let opts = crate::bench::BenchOptions {
                dir,
                nodes: usize::from(nodes),
                jobs: jobs as usize,
                concurrency: usize::from(concurrency),
                base_port,
                keep,
            };
            let (summary, complete) = crate::bench::run(&opts, json, out)?;
            if json {
                print_json(out, &summary)?;
            } else {
                crate::bench::print(out, &summary)?;
            }
            if !complete {
                anyhow::bail!(
                    "the bench did not complete: not every job got its output and settled"
                );
            }
        }
    }
    Ok(())
}
