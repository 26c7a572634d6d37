//! Helpers shared by the process-level test (`tests/testnet_process.rs`) and the 4-process
//! benchmark (`benches/testnet.rs`), each of which includes this file with `#[path]`: picking
//! ports, running `attest` for its JSON, bounded waits, a node's files and process, and the
//! tail of a node's log.

// Each includer uses a part of this file.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port that was free a moment ago: bound on port 0, then released for the node to take.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("bound address").port()
}

/// The `attest` binary Cargo built for this test or bench.
pub fn attest() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attest"))
}

/// Runs `attest` to completion and parses its `--json` output.
pub fn attest_json(args: &[&str]) -> Value {
    let out = attest().args(args).output().expect("run attest");
    assert!(
        out.status.success(),
        "attest {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("attest --json prints JSON")
}

/// Polls `check` every 50 ms until it yields a value; panics with `what()` (the wait and what
/// was last seen) after `limit`. A hang guard only: nothing measures time with it.
pub fn wait_for<T>(
    what: impl Fn() -> String,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "hang guard: {} after {limit:?}",
            what()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One node's home, addresses and process.
pub struct NodeProc {
    /// Its home directory.
    pub home: PathBuf,
    /// Its libp2p port on 127.0.0.1.
    pub p2p: u16,
    /// Its API address.
    pub api: SocketAddr,
    /// Its PeerId.
    pub peer_id: String,
    /// Its log file.
    pub log: PathBuf,
    /// The running process, if any.
    pub child: Option<Child>,
}

/// Prints the last 40 lines of node `i`'s log to stderr.
pub fn print_tail(i: usize, log: &Path) {
    eprintln!("---- node {i}: the last lines of {}", log.display());
    eprintln!("{}", attest_cli::procs::log_tail(log, 40));
}
