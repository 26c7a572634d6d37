//! The explorer in a real browser: Debian's `chromium`, headless, driven over the Chrome
//! DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended by a NUL byte
//! on the browser's fds 3 and 4), against a 4-node testnet of `attest node` processes with a
//! cheater. It opens every page, checks that the height rises without a reload, follows a job
//! from submit to settled, finds the cheater's slash on its provider page, audits the chain
//! from the page, and saves a screenshot of each view (in `CARGO_TARGET_TMPDIR/explorer`, or
//! `ATTEST_SCREENSHOTS`). It prints the page weight of a first load and the time to first
//! render.
//!
//! Without a browser (`ATTEST_CHROMIUM`, else `/usr/bin/chromium` or `chromium` on `PATH`)
//! it prints SKIPPED and passes: `cargo test` must run on a machine with only the Rust
//! toolchain. `.ci/run` installs chromium and sets `ATTEST_REQUIRE_BROWSER`, so CI runs it.

#[path = "support/cluster.rs"]
mod cluster;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use cluster::{attest, free_port, guard_expired};

/// Hang guard for one wait in the browser or on the chain, stretched by the machine's load
/// (`cluster::guard_scale`): never a measurement.
const GUARD: Duration = Duration::from_secs(60);

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ATTEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.exists() {
        return Some(fixed.to_owned());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.exists())
    })
}

/// A headless browser and one page of it, over the DevTools pipe.
struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<Value>,
    session: String,
    next_id: u64,
    /// JavaScript exceptions the page threw, as the protocol reported them.
    exceptions: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(chromium: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        // The shell hands our pipes to the browser as fds 3 (commands) and 4 (answers); its
        // stdout goes to stderr. No unsafe code needed to set the fds up.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-pipe",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let to_browser = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, from_browser) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop_if(|b| *b == 0);
                if let Ok(message) = serde_json::from_slice::<Value>(&buf)
                    && tx.send(message).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        let mut browser = Self {
            child,
            to_browser,
            from_browser,
            session: String::new(),
            next_id: 0,
            exceptions: Vec::new(),
            _profile: profile,
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if session {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium");
        self.to_browser.flush().expect("flush to chromium");
        let started = Instant::now();
        loop {
            let message = match self.from_browser.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) if guard_expired(started, GUARD) => {
                    panic!("hang guard: chromium, {method}")
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited during {method}"),
            };
            if message["method"] == "Runtime.exceptionThrown" {
                let details = &message["params"]["exceptionDetails"];
                self.exceptions.push(format!(
                    "{} {}",
                    details["text"], details["exception"]["description"]
                ));
            }
            if message["id"] == json!(id) {
                assert!(
                    message.get("error").is_none(),
                    "{method}: {}",
                    message["error"]
                );
                return message["result"].clone();
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Evaluates `expression` in the page and answers its value (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy; answers its value.
    fn wait(&mut self, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression);
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            if guard_expired(started, GUARD) {
                let text = self.eval(
                    "location.hash + '\\n' + document.getElementById('view').innerHTML.slice(0, 3000)",
                );
                panic!("hang guard: {what} after {GUARD:?}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Moves to `hash` inside the open page (no reload) and waits for the view `page` with no
    /// error on it.
    fn open(&mut self, hash: &str, page: &str) {
        // The old view goes first, so a page of the same kind is not taken for the new one.
        self.eval(&format!(
            "document.getElementById('view').innerHTML = ''; location.hash = {}; true",
            json!(hash)
        ));
        self.wait(
            &format!("page {hash}"),
            &format!(
                "location.hash === {} && !!document.querySelector('[data-page={page}], #view .error')",
                json!(hash)
            ),
        );
        let error = self.eval("(document.querySelector('#view .error') || {}).textContent || ''");
        assert_eq!(error, json!(""), "{hash} shows an error");
    }

    fn screenshot(&mut self, dir: &Path, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the testnet and removes it, also when the test fails.
struct Testnet {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = attest()
            .args(["testnet", "down", "--purge", "--dir"])
            .arg(&self.dir)
            .output();
    }
}

fn run(args: &[&str]) -> Output {
    let out = attest().args(args).output().expect("run attest");
    assert!(
        out.status.success(),
        "attest {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_json(args: &[&str]) -> Value {
    serde_json::from_slice(&run(args).stdout).expect("attest --json prints JSON")
}

/// `attest submit` of an 8-token job of the tiny model through `api`, paid by `key`, with
/// `extra` flags; its JSON record.
fn submit(api: &str, key: &str, input: &str, extra: &[&str]) -> Value {
    cluster::submit_job(api, key, input, 8, extra)
}

/// Ports for four nodes (and one more), all free a moment ago.
fn free_base() -> u16 {
    loop {
        let base = free_port();
        if base < 60_000
            && (1..10).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

#[test]
fn the_explorer_shows_a_live_network_a_job_to_settlement_and_the_cheaters_slash() {
    let Some(chromium) = find_chromium() else {
        assert!(
            std::env::var_os("ATTEST_REQUIRE_BROWSER").is_none(),
            "ATTEST_REQUIRE_BROWSER is set and no chromium was found"
        );
        eprintln!("SKIPPED: no chromium (set ATTEST_CHROMIUM or install Debian's chromium)");
        return;
    };
    let shots = std::env::var_os("ATTEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer"));
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let started = Instant::now();
    let say = |what: &str| eprintln!("[{:.2}s] {what}", started.elapsed().as_secs_f64());

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("tn");
    let testnet = Testnet {
        dir: dir.clone(),
        _tmp: tmp,
    };
    let d = testnet.dir.display().to_string();
    let base = free_base().to_string();
    run_json(&[
        "testnet",
        "init",
        "--dir",
        &d,
        "--seed",
        "5",
        "--clients",
        "2",
        "--base-port",
        &base,
        "--cheater",
        "3:flip:1",
        "--json",
    ]);
    let up = run_json(&["testnet", "up", "--dir", &d, "--timeout", "90", "--json"]);
    assert_eq!(up["nodes_up"], 4, "{up}");
    let explorer = up["nodes"][0]["explorer_url"]
        .as_str()
        .expect("explorer_url")
        .to_owned();
    let api = up["nodes"][0]["api_url"]
        .as_str()
        .expect("api_url")
        .to_owned();
    let cheater = up["nodes"][3]["account"]
        .as_str()
        .expect("account")
        .to_owned();
    let text =
        String::from_utf8_lossy(&run(&["testnet", "status", "--dir", &d]).stdout).into_owned();
    assert!(text.contains(&format!("explorer {explorer}")), "{text}");
    say(&format!("testnet up; explorer at {explorer}"));

    let mut browser = Browser::launch(&chromium);
    browser.call("Page.navigate", json!({"url": explorer}));
    browser.wait(
        "the network page",
        "!!document.querySelector('[data-page=network]')",
    );
    // First load: bytes over the wire (the page, its assets and the API answers it read)
    // and the first contentful paint.
    let weight = browser.wait(
        "load timing",
        "(() => { const n = performance.getEntriesByType('navigation')[0]; \
           const p = performance.getEntriesByName('first-contentful-paint')[0]; \
           if (!n || !n.loadEventEnd || !p) return null; \
           const r = performance.getEntriesByType('resource'); \
           return { bytes: n.transferSize + r.reduce((a, e) => a + e.transferSize, 0), \
                    resources: r.length, fcp_ms: Math.round(p.startTime), \
                    dom_ms: Math.round(n.domContentLoadedEventEnd) }; })()",
    );
    say(&format!("first load: {weight}"));
    let bytes = weight["bytes"].as_u64().expect("bytes");
    assert!(bytes > 0 && bytes < 300 * 1024, "first load {bytes} bytes");
    // A marker on the page proves no reload happened while the height rose.
    browser.eval("window.__attest_marker = 42; true");
    let h0: u64 = browser
        .wait(
            "a height in the header",
            "document.getElementById('height').textContent.replace(/,/g, '') | 0",
        )
        .as_u64()
        .expect("height");
    browser.wait(
        "the height to rise without a reload",
        &format!(
            "(document.getElementById('height').textContent.replace(/,/g, '') | 0) > {h0} && \
             (document.getElementById('net-height') || {{}}).textContent && window.__attest_marker === 42"
        ),
    );
    say("the height rose on the open page");
    browser.screenshot(&shots, "network-first-load");

    // A job from submit to settled, followed on its page.
    let key0 = dir.join("clients/client-0.key").display().to_string();
    let job = submit(&api, &key0, "explorer test", &["--wait", "result"]);
    let id = job["job"].as_str().expect("job id").to_owned();
    let output = job["output"].as_str().expect("output").to_owned();
    browser.open(&format!("#/job/{id}"), "job");
    let phase = browser.wait(
        "the job to settle or be refunded on its page",
        "(() => { const p = document.querySelector('[data-page=job]'); \
           const f = p && p.dataset.phase; return (f === 'settled' || f === 'refunded') && f; })()",
    );
    let provider = job["view"]["provider"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if provider != cheater {
        assert_eq!(phase, "settled");
        assert_eq!(
            browser.eval("document.getElementById('output').textContent"),
            json!(output)
        );
    }
    assert_eq!(
        browser.eval("window.__attest_marker"),
        json!(42),
        "the job page reloaded"
    );
    say(&format!(
        "job {id} {phase} on its page (provider {provider})"
    ));
    browser.screenshot(&shots, "job");
    let opened = browser
        .eval("(document.querySelector('ol.timeline a') || {}).textContent")
        .as_str()
        .and_then(|h| h.parse::<u64>().ok())
        .expect("the timeline links its opening block");

    // The cheater, always wrong, under an always-checked job: the checker disagrees, the
    // dispute is bisected, the cheater loses and is slashed; its provider page shows it.
    let key1 = dir.join("clients/client-1.key").display().to_string();
    let always = ["--check", "always"];
    submit(
        &api,
        &key1,
        "catch me",
        &[&["--provider", &cheater], &always[..]].concat(),
    );
    browser.open(&format!("#/account/{cheater}"), "account");
    browser.wait(
        "the cheater's slash on its provider page",
        "[...document.querySelectorAll('[data-page=account] td')].some((td) => td.textContent === 'dispute_lost')",
    );
    let lost = browser.wait(
        "the cheater's lost dispute in its record",
        "(/(\\d+) won, (\\d+) lost/.exec(document.querySelector('[data-page=account]').innerText) || [])[2] | 0",
    );
    assert!(lost.as_u64().unwrap_or(0) >= 1, "{lost}");
    say("the cheater's dispute_lost slash and its lost dispute are on its page");
    browser.screenshot(&shots, "provider");

    // Every other page, each without an error.
    browser.open("#/blocks", "blocks");
    browser.screenshot(&shots, "blocks");
    browser.open(&format!("#/block/{opened}"), "block");
    browser.wait(
        "the block's transactions",
        "document.querySelectorAll('[data-page=block] tbody tr').length > 0",
    );
    browser.screenshot(&shots, "block");
    browser.open(&format!("#/block/{opened}/tx/0"), "tx");
    browser.screenshot(&shots, "tx");
    // The job's OpenJob found by its hash (the job id) through the transaction index.
    browser.open(&format!("#/tx/{id}"), "tx");
    browser.wait(
        "the OpenJob by hash",
        &format!(
            "document.querySelector('[data-page=tx]').innerText.includes('open_job') && \
             document.querySelector('[data-page=tx]').innerText.includes('{id}')"
        ),
    );
    browser.open("#/jobs", "jobs");
    browser.wait(
        "jobs listed",
        &format!("document.querySelector('[data-page=jobs]').innerHTML.includes('{id}')"),
    );
    browser.screenshot(&shots, "jobs");
    browser.open("#/providers", "providers");
    browser.wait(
        "providers listed",
        "document.querySelectorAll('[data-page=providers] tbody tr').length >= 4",
    );
    browser.screenshot(&shots, "providers");
    // A few always-checked jobs, one after another (one key, one nonce at a time), for the
    // latency distribution.
    for i in 0..6 {
        let input = format!("checked {i}");
        submit(
            &api,
            &key0,
            &input,
            &[&always[..], &["--wait", "verdict"]].concat(),
        );
    }
    browser.open("#/verification", "verification");
    browser.wait(
        "a dispute and a slash on the verification page",
        "document.querySelector('[data-page=verification]').innerText.includes('dispute_lost')",
    );
    browser.screenshot(&shots, "verification");
    let height =
        browser.eval("document.getElementById('height').textContent.replace(/,/g, '') | 0");
    browser.open(&format!("#/audit/1/{height}"), "audit");
    let verdict = browser.wait(
        "the audit's verdict",
        "(document.getElementById('audit-verdict') || {}).textContent",
    );
    assert!(
        verdict.as_str().unwrap_or_default().starts_with("Passed"),
        "{verdict}"
    );
    say(&format!("audit from the page: {verdict}"));
    browser.screenshot(&shots, "audit");

    browser.open("#/", "network");
    browser.screenshot(&shots, "network");

    // A phone screen in dark mode.
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    browser.call(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    browser.open("#/", "network");
    let dark = browser.eval("getComputedStyle(document.body).backgroundColor");
    assert_eq!(dark, json!("rgb(17, 19, 24)"), "dark mode background");
    let overflow = browser.eval("document.documentElement.scrollWidth <= window.innerWidth");
    assert_eq!(overflow, json!(true), "the page is wider than a phone");
    browser.screenshot(&shots, "network-phone-dark");

    assert_eq!(
        browser.exceptions,
        Vec::<String>::new(),
        "JavaScript exceptions"
    );
    say(&format!("screenshots in {}", shots.display()));
    drop(browser);
    drop(testnet);
}
