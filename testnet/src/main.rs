//! The `attest` binary: parses the command line and hands each command group to its module
//! in `attest_cli::commands`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use attest_cli::commands::{self, client, node, runs, testnet};

/// Attest: a node and client for a verifiable compute marketplace.
#[derive(Debug, Parser)]
#[command(name = "attest", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Node(node::NodeCommand),
    /// A local testnet on loopback: init, up, down, status.
    Testnet {
        #[command(subcommand)]
        command: testnet::TestnetCommand,
    },
    #[command(flatten)]
    Runs(runs::RunCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
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

fn run(args: Args) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match args.command {
        Command::Node(command) => node::run_command(command, &mut out),
        Command::Testnet { command } => {
            commands::init_logging();
            testnet::run(command, &mut out)
        }
        Command::Runs(command) => runs::run_command(command, &mut out),
        Command::Client(command) => {
            commands::init_logging();
            client::run(command, &mut out)
        }
    }
}
