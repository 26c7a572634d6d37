//! Node processes: starting them detached, their pid files, whether one still runs, signals.
//!
//! There is no libc binding in the tree (and `unsafe` is forbidden), so signals go through the
//! `kill` command, and liveness is read from `/proc` where there is one (Linux), with `kill -0`
//! as the fallback. Reading `/proc` also tells a zombie from a running process and lets a pid
//! file be checked against the process's command line, so a pid the OS has since reused for
//! something else is never signalled.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::layout::{Layout, PID_FILE};

/// A signal the launcher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask the node to shut down cleanly.
    Term,
    /// Stop it now.
    Kill,
}

impl Signal {
    /// The name `kill -s` takes.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// The pid in `home`'s pid file, if there is a readable one.
pub fn read_pid(home: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(home.join(PID_FILE)).ok()?;
    text.trim().parse().ok().filter(|pid| *pid > 1)
}

/// Records `pid` as `home`'s node.
pub fn write_pid(home: &Path, pid: u32) -> Result<()> {
    let path = home.join(PID_FILE);
    std::fs::write(&path, format!("{pid}\n")).with_context(|| format!("writing {}", path.display()))
}

/// Removes `home`'s pid file if there is one.
pub fn remove_pid(home: &Path) -> Result<()> {
    let path = home.join(PID_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Whether this system has a `/proc` to read processes from.
fn have_proc() -> bool {
    Path::new("/proc/self/stat").exists()
}

/// Whether process `pid` exists and is not a zombie (exited, waiting for its parent).
pub fn alive(pid: u32) -> bool {
    if !have_proc() {
        return Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last ')', since comm may hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Whether `pid` runs and is `attest node` for `home` (where `/proc` can tell; elsewhere any
/// live pid is taken to be the node).
pub fn is_node(pid: u32, home: &Path) -> bool {
    if !alive(pid) {
        return false;
    }
    if !have_proc() {
        return true;
    }
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let Some(at) = args.iter().position(|a| *a == b"--home") else {
        return false;
    };
    let Some(arg) = args.get(at + 1) else {
        return false;
    };
    let arg = Path::new(std::ffi::OsStr::from_bytes(arg));
    // The same directory, however each side spelled it (relative, via a symlink).
    let same = match (arg.canonicalize(), home.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => arg == home,
    };
    args.contains(&b"node".as_slice()) && same
}

/// The pid of `home`'s node if it runs; a pid file naming anything else is stale.
pub fn running_pid(home: &Path) -> Option<u32> {
    read_pid(home).filter(|pid| is_node(*pid, home))
}

/// Pids of the nodes of the testnet in `dir` that run now (none if there is no layout).
pub fn running_nodes(dir: &Path) -> Vec<u32> {
    let Ok(layout) = Layout::load(dir) else {
        return Vec::new();
    };
    (0..layout.nodes.len())
        .filter_map(|i| running_pid(&layout.home(dir, i)))
        .collect()
}

/// Sends `signal` to `pid`; answers whether it was delivered.
pub fn signal(pid: u32, signal: Signal) -> bool {
    Command::new("kill")
        .args(["-s", signal.name(), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `addr` can be bound now (nothing else listens there).
pub fn port_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

/// How to start one node.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `attest` binary.
    pub exe: PathBuf,
    /// The node's home (absolute).
    pub home: PathBuf,
    /// The genesis file (absolute).
    pub genesis: PathBuf,
    /// The log file, appended to.
    pub log: PathBuf,
    /// Join by state sync from this trusted block (height, hash), if the store is empty.
    pub trust: Option<(u64, String)>,
}

/// Starts `attest node` detached: in a process group of its own (a Ctrl-C aimed at the
/// launcher does not reach it), stdin closed, stdout and stderr appended to its log. The
/// caller keeps the `Child` only to notice an early exit; dropping it leaves the node running.
pub fn spawn_node(launch: &Launch) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("opening {}", launch.log.display()))?;
    let err = log
        .try_clone()
        .with_context(|| format!("opening {}", launch.log.display()))?;
    let mut command = Command::new(&launch.exe);
    command
        .arg("node")
        .arg("--home")
        .arg(&launch.home)
        .arg("--genesis")
        .arg(&launch.genesis);
    if let Some((height, hash)) = &launch.trust {
        command
            .arg("--trust-height")
            .arg(height.to_string())
            .arg("--trust-hash")
            .arg(hash);
    }
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} node", launch.exe.display()))
}

/// The last `n` lines of `log`, or a note that it cannot be read.
pub fn log_tail(log: &Path, n: usize) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_alive_until_signalled_and_reaped() {
        assert!(alive(std::process::id()));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(alive(pid));
        // Alive, but not a node of any home: never mistaken for one.
        assert!(!is_node(pid, Path::new("/nowhere")));
        assert!(signal(pid, Signal::Kill));
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn pid_files_round_trip_and_garbage_is_no_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_pid(dir.path()), None);
        write_pid(dir.path(), 4242).unwrap();
        assert_eq!(read_pid(dir.path()), Some(4242));
        std::fs::write(dir.path().join(PID_FILE), "x\n").unwrap();
        assert_eq!(read_pid(dir.path()), None);
        remove_pid(dir.path()).unwrap();
        remove_pid(dir.path()).unwrap();
    }
}
