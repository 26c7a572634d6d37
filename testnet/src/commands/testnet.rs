//! `attest testnet init|up|down|status`: the arguments and what each prints.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;

use crate::launcher::{self, Outcome};
use crate::layout::{self, CheaterSpec, InitOptions, MAX_CLIENTS, MAX_NODES};
use crate::membership;
use crate::report::{self, Report};

/// The testnet subcommands.
#[derive(Debug, Subcommand)]
pub enum TestnetCommand {
    /// Create a local testnet: node homes, keys, a genesis and testnet.json, all from a seed.
    Init {
        /// The testnet directory.
        #[arg(long, default_value = layout::DEFAULT_DIR)]
        dir: PathBuf,
        /// Validators (each also a provider).
        #[arg(long, default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(1..=MAX_NODES as i64))]
        nodes: u16,
        /// The seed every key and the chain id (attest-testnet-SEED) derive from.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Node I listens on BASE+2I (libp2p) and BASE+2I+1 (HTTP API), on 127.0.0.1.
        #[arg(long, default_value_t = 26_600)]
        base_port: u16,
        /// Funded client accounts (keys in DIR/clients).
        #[arg(long, default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(0..=MAX_CLIENTS as i64))]
        clients: u16,
        /// TEST ONLY: node I cheats on provided jobs, e.g. 1:flip:0.1 (repeatable).
        #[arg(long = "cheater", value_name = "I:MODE:RATE")]
        cheaters: Vec<CheaterSpec>,
        /// Every node's watch_rate: the share of other providers' results it re-executes
        /// and challenges if wrong (0.0 to 1.0).
        #[arg(long, default_value_t = layout::DEFAULT_WATCH_RATE)]
        watch_rate: f64,
        /// Replace a testnet already in DIR (its keys and chain data are deleted).
        #[arg(long)]
        force: bool,
    },
    /// Start every node that is not running (creating the testnet first if DIR has none) and
    /// wait until all commit blocks.
    Up {
        /// The testnet directory.
        #[arg(long, default_value = layout::DEFAULT_DIR)]
        dir: PathBuf,
        /// Seconds to wait for every node to answer and commit.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Stop the nodes: SIGTERM, then SIGKILL after the grace period. Data is kept.
    Down {
        /// The testnet directory.
        #[arg(long, default_value = layout::DEFAULT_DIR)]
        dir: PathBuf,
        /// Also delete the testnet: keys, genesis and chain data.
        #[arg(long)]
        purge: bool,
        /// Seconds each node has to shut down before it is killed.
        #[arg(long, default_value_t = 5)]
        grace: u64,
    },
    /// Show every node: running or down, height, peers, addresses.
    Status {
        /// The testnet directory.
        #[arg(long, default_value = layout::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Join a new provider to the running testnet as a new machine would: a new home, its
    /// account funded from the first client (the faucet), the node started (state sync when
    /// node 0 offers a snapshot), then staked; done when its advert is in every book.
    AddNode {
        /// The testnet directory.
        #[arg(long, default_value = layout::DEFAULT_DIR)]
        dir: PathBuf,
        /// The device profile (wse-3, h100-sxm, a100-80gb, cpu); default the next in the
        /// testnet's cycle.
        #[arg(long)]
        device: Option<String>,
        /// Seconds to wait for it to catch up and advertise.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Unstake a node's whole bonded stake and stop it; `up` leaves it stopped.
    RemoveNode {
        /// The node's index.
        index: usize,
        /// The testnet directory.
        #[arg(long, default_value = layout::DEFAULT_DIR)]
        dir: PathBuf,
        /// Seconds the node has to shut down before it is killed.
        #[arg(long, default_value_t = 5)]
        grace: u64,
    },
}

/// Runs `command`, printing its report on `out`; a command that failed part-way still prints
/// what it saw, then answers the error.
pub fn run(command: TestnetCommand, json: bool, out: &mut impl Write) -> Result<()> {
    let outcome = match command {
        TestnetCommand::Init {
            dir,
            nodes,
            seed,
            base_port,
            clients,
            cheaters,
            watch_rate,
            force,
        } => {
            let opts = InitOptions {
                dir,
                nodes: usize::from(nodes),
                seed,
                base_port,
                clients: usize::from(clients),
                cheaters,
                watch_rate,
                force,
            };
            done(launcher::init(&opts)?)
        }
        TestnetCommand::Up { dir, timeout } => {
            let exe = std::env::current_exe().context("finding the attest binary")?;
            launcher::up(&dir, Duration::from_secs(timeout), &exe)?
        }
        TestnetCommand::Down { dir, purge, grace } => {
            launcher::down(&dir, Duration::from_secs(grace), purge)?
        }
        TestnetCommand::Status { dir } => done(launcher::status(&dir)?),
        TestnetCommand::AddNode {
            dir,
            device,
            timeout,
        } => {
            let exe = std::env::current_exe().context("finding the attest binary")?;
            membership::add_node(&dir, device.as_deref(), Duration::from_secs(timeout), &exe)?
        }
        TestnetCommand::RemoveNode { index, dir, grace } => {
            membership::remove_node(&dir, index, Duration::from_secs(grace))?
        }
    };
    if json {
        serde_json::to_writer(&mut *out, &outcome.report)?;
        writeln!(out)?;
    } else {
        report::print_table(out, &outcome.report)?;
    }
    out.flush()?;
    match outcome.failure {
        Some(why) => Err(anyhow!(why)),
        None => Ok(()),
    }
}

/// A report of a command that cannot fail part-way.
fn done(report: Report) -> Outcome {
    Outcome {
        report,
        failure: None,
    }
}
