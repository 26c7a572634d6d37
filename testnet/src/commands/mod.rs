//! The `attest` commands, one module per group: the node commands ([`node`]), the testnet
//! launcher ([`testnet`]), the client commands ([`client`]) and whole runs ([`runs`]: the
//! demo and the load generator). Each group has its clap arguments, a `run_command` that
//! carries one out, and what it prints; `main.rs` only parses and dispatches.

pub mod accounts;
pub mod client;
pub mod node;
pub mod runs;
pub mod testnet;

use std::io::Write;

use anyhow::{Result, bail};

use crate::client::DEFAULT_NODE;

/// The flags every command takes, before or after its subcommand (`attest --node URL job
/// show ID` and `attest job show ID --node URL` are the same).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Globals {
    /// The node's HTTP API, for the commands that talk to a node (`http://HOST:PORT` or
    /// `https://...`; default the local testnet's first node, http://127.0.0.1:26601).
    #[arg(long, global = true)]
    pub node: Option<String>,
    /// Print one JSON object whose `schema` field names its version (docs/CLI.md) instead
    /// of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Globals {
    /// The node's API URL: `--node`, or the local testnet's first node.
    pub fn node(&self) -> &str {
        self.node.as_deref().unwrap_or(DEFAULT_NODE)
    }

    /// Refuses `--node` for a command that talks to no node, rather than ignoring it.
    pub fn refuse_node(&self, command: &str) -> Result<()> {
        if let Some(url) = &self.node {
            bail!("`attest {command}` talks to no node's API: --node {url} does not apply");
        }
        Ok(())
    }
}

/// One JSON object and a newline on stdout: the `--json` form of every command.
pub fn print_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Logs go to stderr, filtered by RUST_LOG (default: info).
pub fn init_logging() {
    init_logging_at("info");
}

/// Logs on stderr at `default` unless RUST_LOG says otherwise (the demo defaults to warnings:
/// its own progress lines are what a person watches).
pub fn init_logging_at(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs redirected to a file stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
