//! Hosts in Linux network namespaces on one machine, for the process tests that need a
//! network between nodes (`tests/netns.rs`, `tests/chaos_netns.rs`), each of which includes
//! this file with `#[path]` (and `support/cluster.rs` as `cluster`): a bridge, one namespace
//! per host with a veth on the bridge, a node home per host, the node processes, and removal
//! of all of it on drop (also when a test fails). Needs root.

// Each includer uses a part of this file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attest_cli::http::Client;
use attest_node::views::Status;

use crate::cluster::attest_json;

/// The libp2p port every host's node listens on (each host has its own address).
pub const P2P_PORT: u16 = 26_656;
/// The API port every host's node serves on.
pub const API_PORT: u16 = 26_657;

/// Runs `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process runs as root (its effective uid, from /proc/self/status, is 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The bridge, the namespaces and the node processes; dropping it removes them all.
pub struct Net {
    pub tag: String,
    pub subnet: u8,
    pub bridge: String,
    pub hosts: Vec<Host>,
    pub dir: Option<tempfile::TempDir>,
    pub started: Instant,
    /// The second bridge a split moves hosts to, once made.
    pub other: Option<String>,
    /// tmpfs mounts to remove on drop.
    pub mounts: Vec<PathBuf>,
}

pub struct Host {
    pub ns: String,
    /// The bridge side of its veth pair.
    pub link: String,
    pub addr: String,
    pub home: PathBuf,
    pub log: PathBuf,
    pub peer_id: String,
    pub child: Option<Child>,
}

impl Net {
    pub fn new() -> Self {
        // A tag from the process and the clock, so a later run (or one beside it) does not
        // meet this one's names; anything a killed run left under the same tag goes first.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = std::process::id() ^ nanos;
        let tag = format!("{:x}", seed % 0xfff);
        let subnet = (20 + seed % 200) as u8;
        let bridge = format!("atbr{tag}");
        sweep(&tag);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("10.77.{subnet}.254/24"),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        Self {
            tag,
            subnet,
            bridge,
            hosts: Vec::new(),
            dir: Some(tempfile::tempdir().unwrap()),
            started: Instant::now(),
            other: None,
            mounts: Vec::new(),
        }
    }

    pub fn say(&self, what: &str) {
        eprintln!("[{:6.2}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// A namespace with one veth on the bridge at 10.77.N.(i+1), and a node home for it.
    pub fn add_host(&mut self) -> usize {
        let i = self.hosts.len();
        let ns = format!("atns{}-{i}", self.tag);
        let link = format!("atv{}{i}", self.tag);
        let inner = format!("atp{}{i}", self.tag);
        let addr = format!("10.77.{}.{}", self.subnet, i + 1);
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &inner]);
        ip(&["link", "set", &inner, "netns", &ns]);
        ip(&["link", "set", &link, "master", &self.bridge]);
        ip(&["link", "set", &link, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &inner,
        ]);
        ip(&["-n", &ns, "link", "set", &inner, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let dir = self.dir.as_ref().unwrap().path();
        let home = dir.join(format!("host{i}"));
        let listen = format!("/ip4/{addr}/tcp/{P2P_PORT}");
        let api = format!("{addr}:{API_PORT}");
        let report = attest_json(&[
            "init",
            "--home",
            &home.display().to_string(),
            "--listen",
            &listen,
            "--api",
            &api,
            "--json",
        ]);
        self.hosts.push(Host {
            ns,
            link,
            addr,
            home,
            log: dir.join(format!("host{i}.log")),
            peer_id: report["peer_id"].as_str().unwrap().to_owned(),
            child: None,
        });
        i
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}:{API_PORT}", self.hosts[i].addr)
    }

    pub fn bootnode(&self) -> String {
        let h = &self.hosts[0];
        format!("/ip4/{}/tcp/{P2P_PORT}/p2p/{}", h.addr, h.peer_id)
    }

    /// Starts host `i`'s node inside its namespace; every host but 0 knows only host 0.
    pub fn start(&mut self, i: usize, genesis: &Path) {
        let bootnode = self.bootnode();
        let host = &self.hosts[i];
        // Appended to: a restarted node's log follows its earlier run's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host.log)
            .unwrap();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &host.ns])
            .arg(env!("CARGO_BIN_EXE_attest"))
            .args(["node", "--home"])
            .arg(&host.home)
            .arg("--genesis")
            .arg(genesis)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if i != 0 {
            command.args(["--bootnode", &bootnode]);
        }
        self.hosts[i].child = Some(command.spawn().unwrap());
    }

    pub fn status(&self, i: usize) -> Option<Status> {
        let client = Client::new(&self.url(i))
            .ok()?
            .with_timeouts(Duration::from_secs(1), Duration::from_secs(2));
        client.get("/v1/status").ok()
    }

    /// Polls `check` until it yields a value; a hang guard of `limit`, stretched by the
    /// machine's load (`cluster::guard_scale`).
    pub fn wait<T>(&self, what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            let seen: Vec<Option<(u64, usize)>> = (0..self.hosts.len())
                .map(|i| self.status(i).map(|s| (s.height.0, s.peers)))
                .collect();
            assert!(
                !crate::cluster::guard_expired(started, limit),
                "hang guard: {what} after {:?} (nominal {limit:?}); (height, peers) by host: \
                 {seen:?}",
                started.elapsed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Net {
    /// Waits until every host of `hosts` is at `height` or above.
    pub fn wait_heights(&self, what: &str, hosts: &[usize], height: u64) {
        self.wait(what, Duration::from_secs(60), || {
            hosts
                .iter()
                .all(|i| self.status(*i).is_some_and(|s| s.height.0 >= height))
                .then_some(())
        });
    }
}

impl Net {
    /// Kills host `i`'s node (SIGKILL) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to host `i`'s node (`ip netns exec` execs the node,
    /// so the child is the node itself).
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.hosts[i].child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Whether host `i`'s node process still runs; reaps it if it ended.
    pub fn running(&mut self, i: usize) -> bool {
        match self.hosts[i].child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.hosts[i].child = None;
                false
            }
            None => false,
        }
    }

    /// Takes host `i`'s link down: it can reach nobody.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "down"]);
    }

    /// Brings host `i`'s link back up.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "up"]);
    }

    /// Moves `hosts` to a second bridge of their own: they reach each other and nobody else.
    pub fn split(&mut self, hosts: &[usize]) {
        let other = self.other.get_or_insert_with(|| {
            let name = format!("atbb{}", self.tag);
            ip(&["link", "add", &name, "type", "bridge"]);
            ip(&["link", "set", &name, "up"]);
            name
        });
        for i in hosts {
            ip(&["link", "set", &self.hosts[*i].link, "master", other]);
        }
    }

    /// Puts every host back on the main bridge.
    pub fn join_all(&self) {
        for host in &self.hosts {
            ip(&["link", "set", &host.link, "master", &self.bridge]);
        }
    }

    /// Mounts a tmpfs of `bytes` on host `i`'s data directory (before its node first starts),
    /// so that the test can fill it.
    pub fn small_disk(&mut self, i: usize, bytes: u64) -> PathBuf {
        let data = self.hosts[i].home.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&data)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.mounts.push(data.clone());
        data
    }
}

impl Net {
    /// Writes a genesis for `chain` in the test directory with every host so far a validator
    /// and the accounts `funds` (`ACCOUNT=UNITS`) funded, and starts every host's node on it;
    /// answers the genesis file.
    pub fn start_chain(&mut self, chain: &str, funds: &[String]) -> PathBuf {
        let genesis = self.dir.as_ref().unwrap().path().join("genesis.json");
        let mut args = vec![
            "genesis".to_owned(),
            "--chain-id".into(),
            chain.into(),
            "--out".into(),
            genesis.display().to_string(),
            "--json".into(),
        ];
        for fund in funds {
            args.extend(["--fund".into(), fund.clone()]);
        }
        for h in &self.hosts {
            args.extend(["--validator".into(), h.home.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        attest_json(&args);
        for i in 0..self.hosts.len() {
            self.start(i, &genesis);
        }
        genesis
    }
}

/// Removes the bridges and namespaces named with `tag`, left by a run that was killed before
/// it could clean up (its veths go with its namespaces and bridges).
fn sweep(tag: &str) {
    for bridge in [format!("atbr{tag}"), format!("atbb{tag}")] {
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
    }
    let list = Command::new("ip").args(["netns", "list"]).output();
    let list = list.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for line in list.unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with(&format!("atns{tag}-")) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// `attest audit` of the chain `node` serves, from `genesis`, passes.
pub fn audit_passes(node: &str, genesis: &Path) {
    let genesis = genesis.display().to_string();
    let audit = attest_json(&["audit", "--node", node, "--genesis", &genesis, "--json"]);
    assert_eq!(audit["ok"], true, "{audit}");
}

impl Drop for Net {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut child) = host.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for mount in &self.mounts {
            let _ = Command::new("umount").arg(mount).output();
        }
        let panicking = std::thread::panicking();
        for (i, host) in self.hosts.iter().enumerate() {
            if panicking {
                eprintln!("---- host {i}: the last lines of {}", host.log.display());
                eprintln!("{}", attest_cli::procs::log_tail(&host.log, 40));
            }
            let _ = Command::new("ip")
                .args(["link", "del", &host.link])
                .output();
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        if let Some(other) = &self.other {
            let _ = Command::new("ip").args(["link", "del", other]).output();
        }
        if panicking && let Some(dir) = self.dir.take() {
            eprintln!("test directory kept at {}", dir.keep().display());
        }
    }
}
