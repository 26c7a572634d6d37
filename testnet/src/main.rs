//! The `attest` binary: parses the command line and hands each command group to its module
//! in `attest_cli::commands`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use attest_cli::commands::{self, accounts, client, node, runs, testnet};

/// Attest: a node and client for a verifiable compute marketplace.
#[derive(Debug, Parser)]
#[command(name = "attest", version, about)]
struct Args {
    #[command(flatten)]
    globals: commands::Globals,
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
    #[command(flatten)]
    Accounts(accounts::AccountCommand),
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
    let g = &args.globals;
    match args.command {
        Command::Node(command) => node::run_command(command, g, &mut out),
        Command::Testnet { command } => {
            g.refuse_node("testnet")?;
            commands::init_logging();
            testnet::run(command, g.json, &mut out)
        }
        Command::Runs(command) => runs::run_command(command, g, &mut out),
        Command::Client(command) => {
            commands::init_logging();
            client::run(command, g, &mut out)
        }
        Command::Accounts(command) => {
            commands::init_logging();
            accounts::run(command, g, &mut out)
        }
    }
}
