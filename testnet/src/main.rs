//! The `attest` binary.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use attest_node::cli;

/// Attest: a node and client for a verifiable compute marketplace.
#[derive(Debug, Parser)]
#[command(name = "attest", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a catalogue model on an input and print its output and trace root.
    Run {
        /// The model id (see `attest models`).
        #[arg(long, default_value = "attest-base-8b")]
        model: String,
        /// The input: text, or @PATH to read a file's bytes.
        #[arg(long)]
        input: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 32)]
        max_tokens: u32,
        /// Print one JSON object (schema attest.run/1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create a node home: config.toml, a node key and a validator account key.
    Init {
        /// The home directory to create.
        #[arg(long)]
        home: std::path::PathBuf,
        /// libp2p listen multiaddr (repeatable); default /ip4/127.0.0.1/tcp/26656.
        #[arg(long)]
        listen: Vec<String>,
        /// HTTP API address; default 127.0.0.1:26657.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
        /// Print JSON (schema attest.init/1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a genesis file staking and funding each validator home.
    Genesis {
        /// The chain id (a-z, 0-9 and -, up to 32 characters).
        #[arg(long)]
        chain_id: attest_protocol::ChainId,
        /// Where to write the genesis (never overwritten).
        #[arg(long)]
        out: std::path::PathBuf,
        /// A validator home made by `attest init` (repeatable).
        #[arg(long = "validator", required = true)]
        validators: Vec<std::path::PathBuf>,
        /// Fund an extra account: ACCOUNT=AMOUNT, amount in tokens (repeatable).
        #[arg(long, value_parser = cli::parse_fund)]
        fund: Vec<(attest_protocol::AccountId, attest_protocol::Amount)>,
        /// Each validator's bonded stake, in tokens.
        #[arg(long, default_value = "1000")]
        stake: attest_protocol::Amount,
        /// Each validator's spendable balance, in tokens.
        #[arg(long, default_value = "1000")]
        balance: attest_protocol::Amount,
        /// The chain's start time in ms since the Unix epoch; default now.
        #[arg(long)]
        genesis_time_ms: Option<u64>,
        /// Print JSON (schema attest.genesis-report/1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a node (logs on stderr; RUST_LOG sets the level).
    Node {
        /// The node home (from `attest init`).
        #[arg(long)]
        home: std::path::PathBuf,
        /// The genesis file (from `attest genesis`).
        #[arg(long)]
        genesis: std::path::PathBuf,
        /// libp2p listen multiaddr (repeatable); replaces the config file's.
        #[arg(long)]
        listen: Vec<String>,
        /// Peer to dial, a multiaddr ending in /p2p/<PeerId> (repeatable).
        #[arg(long = "bootnode")]
        bootnodes: Vec<String>,
        /// HTTP API address, e.g. 127.0.0.1:26657; replaces the config file's.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
    },
    /// A local testnet on loopback: init, up, down, status.
    Testnet {
        #[command(subcommand)]
        command: attest_testnet::cli::TestnetCommand,
    },
    /// List the model catalogue.
    Models {
        /// Print JSON (schema attest.models/1) instead of a table.
        #[arg(long)]
        json: bool,
    },
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
        /// Print one JSON object (schema attest.demo/1) instead of progress and a summary.
        #[arg(long)]
        json: bool,
    },
    /// A load generator against a fresh local testnet (no cheater): jobs/s with a verified
    /// output and settled, transactions/s, job, settlement and validation latency, block time,
    /// and each node's memory and CPU. Exit 0 only if every job got its output and settled.
    Bench {
        /// Validators (each also a provider).
        #[arg(long, default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(1..=attest_testnet::layout::MAX_NODES as i64))]
        nodes: u16,
        /// Jobs to open.
        #[arg(long, default_value_t = 400,
              value_parser = clap::value_parser!(u32).range(1..))]
        jobs: u32,
        /// Client keys opening jobs at once, each back to back without waiting for the last.
        #[arg(long, default_value_t = 32,
              value_parser = clap::value_parser!(u16).range(1..=attest_testnet::layout::MAX_CLIENTS as i64))]
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
        /// Print one JSON object (schema attest.bench/1) instead of progress and a summary.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Client(attest_testnet::client_cli::ClientCommand),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with every cause, never a backtrace: errors here are the user's to fix.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One JSON object and a newline on stdout: the `--json` form of every command.
fn print_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Logs go to stderr, filtered by RUST_LOG (default: info).
fn init_logging() {
    init_logging_at("info");
}

/// Logs on stderr at `default` unless RUST_LOG says otherwise (the demo defaults to warnings:
/// its own progress lines are what a person watches).
fn init_logging_at(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs redirected to a file stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(args: Args) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match args.command {
        Command::Run {
            model,
            input,
            max_tokens,
            json,
        } => {
            let input = cli::read_input(&input)?;
            let report = cli::run(&model, &input, max_tokens)?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                cli::print_run(&mut out, &report)?;
            }
        }
        Command::Init {
            home,
            listen,
            api,
            json,
        } => {
            let mut config = attest_node::config::Config::default();
            if !listen.is_empty() {
                config.listen = listen;
            }
            if let Some(api) = api {
                config.api = api;
            }
            let report = cli::init(&home, &config)?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                writeln!(out, "home     {}", report.home)?;
                writeln!(out, "peer id  {}", report.peer_id)?;
                writeln!(out, "account  {}", report.account)?;
            }
        }
        Command::Genesis {
            chain_id,
            out: path,
            validators,
            fund,
            stake,
            balance,
            genesis_time_ms,
            json,
        } => {
            let genesis_time_ms = genesis_time_ms.unwrap_or_else(attest_node::shell::now_ms);
            let args = cli::GenesisArgs {
                chain_id,
                out: path,
                validators,
                fund,
                stake,
                balance,
                genesis_time_ms,
            };
            let report = cli::genesis(&args)?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                writeln!(
                    out,
                    "wrote {} (chain {}, hash {})",
                    report.out, report.chain_id, report.genesis_hash
                )?;
                for v in &report.validators {
                    writeln!(out, "validator {} {}", v["account"], v["peer_id"])?;
                }
            }
        }
        Command::Node {
            home,
            genesis,
            listen,
            bootnodes,
            api,
        } => {
            init_logging();
            cli::run_node(&cli::NodeArgs {
                home,
                genesis,
                listen,
                bootnodes,
                api,
            })?;
        }
        Command::Testnet { command } => {
            init_logging();
            attest_testnet::cli::run(command, &mut out)?;
        }
        Command::Demo {
            dir,
            jobs,
            concurrency,
            base_port,
            keep,
            json,
        } => {
            init_logging_at("warn");
            let opts = attest_testnet::demo::DemoOptions {
                dir,
                jobs,
                concurrency: usize::from(concurrency),
                base_port,
                keep,
            };
            let (summary, passed) = attest_testnet::demo::run(&opts, json, &mut out)?;
            if json {
                print_json(&mut out, &summary)?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
            }
            if !passed {
                anyhow::bail!("the demo did not pass (see the summary above)");
            }
        }
        Command::Bench {
            nodes,
            jobs,
            concurrency,
            dir,
            base_port,
            keep,
            json,
        } => {
            init_logging_at("warn");
            let opts = attest_testnet::bench::BenchOptions {
                dir,
                nodes: usize::from(nodes),
                jobs: jobs as usize,
                concurrency: usize::from(concurrency),
                base_port,
                keep,
            };
            let (summary, complete) = attest_testnet::bench::run(&opts, json, &mut out)?;
            if json {
                print_json(&mut out, &summary.to_json()?)?;
            } else {
                attest_testnet::bench::print(&mut out, &summary)?;
            }
            if !complete {
                anyhow::bail!(
                    "the bench did not complete: not every job got its output and settled"
                );
            }
        }
        Command::Client(command) => {
            init_logging();
            attest_testnet::client_cli::run(command, &mut out)?;
        }
        Command::Models { json } => {
            let rows = cli::models();
            if json {
                let doc = serde_json::json!({ "schema": "attest.models/1", "models": rows });
                print_json(&mut out, &doc)?;
            } else {
                writeln!(
                    out,
                    "{:<18} {:>7} {:>6}  description",
                    "model", "params", "layers"
                )?;
                for m in rows {
                    let billions = m.params as f64 / 1e9;
                    writeln!(
                        out,
                        "{:<18} {:>6.1}B {:>6}  {}",
                        m.id, billions, m.layers, m.description
                    )?;
                }
            }
        }
    }
    Ok(())
}
