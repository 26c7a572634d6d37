//! The harness of the API tests: a real single-validator node in this process on loopback
//! (port 0 everywhere), a plain-socket HTTP client, and a server-sent event reader.
//!
//! Waits are bounded only as hang guards; nothing here asserts how fast anything happens.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attest_chain::GenesisFile;
use attest_contracts_sim::Params;
use attest_core::CoreConfig;
use attest_core::accel::{DeviceProfile, TimeScale};
use attest_core::node::adverts::AdvertTerms;
use attest_node::accel_pool::DeviceConfig;
use attest_node::api;
use attest_node::api::LimitsConfig;
use attest_node::keyfile;
use attest_node::shell::{Node, NodeSettings};
use attest_protocol::tx::{OpenJob, Transfer};
use attest_protocol::{Action, Amount, Bytes, ChainId, ModelId, Nonce, SecretKey, Signed, Tx};
use serde_json::Value;

/// A node and its API on a runtime of their own; dropping it stops both.
pub(crate) struct TestNode {
    pub(crate) api: SocketAddr,
    pub(crate) peer_id: String,
    pub(crate) validator: String,
    pub(crate) chain: ChainId,
    /// Funded in the genesis; signs the test's transactions.
    pub(crate) client: SecretKey,
    /// Staked in the genesis if `Options::idle_provider` says so, but no node serves it: its
    /// jobs miss their deadline.
    pub(crate) idle_provider: String,
    stop: tokio::sync::watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

pub(crate) fn tokens(n: u64) -> Amount {
    Amount::tokens(n).unwrap()
}

/// How a test node runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// An idle chain makes a block this often.
    pub(crate) idle_block_interval_ms: u64,
    /// Whether the validator advertises its accelerator (and so can be quoted for jobs).
    pub(crate) advertise: bool,
    /// Whether the genesis also stakes a provider no node serves. It is a validator too, and
    /// the heights it should propose wait for a consensus timeout, so only tests that need
    /// it have it.
    pub(crate) idle_provider: bool,
    /// The API's admission limits: by default far above anything a test sends.
    pub(crate) limits: LimitsConfig,
}

/// What the genesis stakes for the provider no node serves: the minimum. The validator's
/// 1,000 tokens keep more than 2/3 of the voting power, so its node still commits alone.
pub(crate) const IDLE_STAKE: u64 = 100;

impl Default for Options {
    fn default() -> Self {
        // Short idle blocks keep the tests quick; none depends on them.
        Self {
            idle_block_interval_ms: 200,
            advertise: false,
            idle_provider: false,
            limits: LimitsConfig {
                rate_per_s: 1_000_000,
                burst: 1_000_000,
                max_in_flight: 65_536,
            },
        }
    }
}

/// The model the job tests run: the smallest, which every profile serves.
pub(crate) const MODEL: &str = "attest-tiny-1b";
/// The price the test validator advertises, in units per token.
pub(crate) const PRICE: u64 = 10;

/// Starts a one-validator chain whose genesis also funds a client account.
pub(crate) fn start() -> TestNode {
    start_with(Options::default())
}

/// Starts a one-validator chain as `options` say.
pub(crate) fn start_with(options: Options) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let node_key = keyfile::generate().unwrap();
    let account_key = keyfile::generate().unwrap();
    let client = keyfile::generate().unwrap();
    let idle_provider = keyfile::generate().unwrap();
    let idle_node = keyfile::generate().unwrap();
    let chain: ChainId = "api-test".parse().unwrap();
    let mut stakes = vec![(
        account_key.public(),
        node_key.public(),
        tokens(1_000),
        attest_protocol::tx::Capability {
            device: attest_protocol::DeviceName::new("cpu").unwrap(),
            memory_bytes: 256_000_000_000,
        },
    )];
    if options.idle_provider {
        stakes.push((
            idle_provider.public(),
            idle_node.public(),
            tokens(IDLE_STAKE),
            attest_protocol::tx::Capability {
                device: attest_protocol::DeviceName::new("cpu").unwrap(),
                memory_bytes: 256_000_000_000,
            },
        ));
    }
    let genesis = GenesisFile::new(
        chain.clone(),
        now_ms(),
        Params::default(),
        vec![
            (account_key.public(), tokens(1_000)),
            (client.public(), tokens(1_000)),
        ],
        stakes,
    );
    let validator = account_key.public().to_string();
    let profile = DeviceProfile::find("cpu").unwrap();
    let scale = TimeScale::HUNDREDTH;
    let mut core = CoreConfig {
        idle_block_interval_ms: options.idle_block_interval_ms,
        ..CoreConfig::default()
    };
    if options.advertise {
        core.market.advert = Some(AdvertTerms {
            node: node_key.public(),
            device: profile.device_name(),
            models: profile
                .servable_models()
                .map(|m| ModelId::new(m.id).unwrap())
                .collect(),
            slots: attest_core::accel::batching::sequences_for_any_job(profile),
            price_per_token: Amount(PRICE),
            tokens_per_sec_milli: 1_000,
        });
    }
    let settings = NodeSettings {
        node_key,
        account_key,
        genesis,
        data_dir: dir.path().join("data"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootnodes: Vec::new(),
        core,
        device: DeviceConfig::new(profile, scale),
        snapshots: (1_000, 2),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (api, peer_id) = runtime.block_on(async {
        let (node, handle) = Node::start(settings).unwrap();
        let peer_id = node.peer_id().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap();
        tokio::spawn(node.run(stopping(stopped.clone())));
        let limits = api::Limits::new(options.limits);
        tokio::spawn(api::serve(listener, handle, limits, stopping(stopped)));
        (api, peer_id)
    });
    TestNode {
        api,
        peer_id,
        validator,
        chain,
        client,
        idle_provider: idle_provider.public().to_string(),
        stop,
        runtime: Some(runtime),
        _dir: dir,
    }
}

async fn stopping(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// An HTTP answer: the status and the body, which must always be JSON.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) json: Value,
}

/// An HTTP answer as received: status, head (status line and headers) and body text.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

/// One HTTP/1.1 request on a fresh connection; the body must be JSON.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Reply {
    let raw = http_raw(addr, method, path, headers, body);
    let json = serde_json::from_str(&raw.body)
        .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {:?}", raw.body));
    Reply {
        status: raw.status,
        json,
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, so the body ends at EOF).
pub(crate) fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> RawReply {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer an oversized body and close before reading all of it; its answer
    // is still there to read.
    let _ = stream.write_all(&bytes);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        panic!("no complete HTTP answer to {method} {path} ({read:?}): {text:?}");
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    RawReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> Reply {
    http(addr, "GET", path, &[], b"")
}

pub(crate) fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    http(
        addr,
        "POST",
        path,
        &["Content-Type: application/json"],
        body,
    )
}

pub(crate) fn submit_hex(addr: SocketAddr, hex: &str) -> Reply {
    let body = serde_json::json!({ "tx": hex }).to_string();
    post_json(addr, "/v1/txs", body.as_bytes())
}

/// Asserts an error answer: its status, its code, and a non-empty detail.
pub(crate) fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.json["error"], code, "{reply:?}");
    let detail = reply.json["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "no detail: {reply:?}");
}

impl TestNode {
    pub(crate) fn transfer(&self, nonce: u64, amount: u64) -> Signed<Tx> {
        let tx = Tx {
            nonce: Nonce(nonce),
            fee: Params::default().min_fee,
            action: Action::Transfer(Transfer {
                to: keyfile::generate().unwrap().public(),
                amount: Amount(amount),
            }),
        };
        Signed::sign(&self.chain, &self.client, tx)
    }

    pub(crate) fn height(&self) -> u64 {
        let reply = get(self.api, "/v1/status");
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json["height"].as_u64().unwrap()
    }

    /// Polls until a block lists `hash`; returns that block. The 60 s bound is a hang guard.
    pub(crate) fn wait_for_commit(&self, hash: &str, mut after: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let height = self.height();
            while after < height {
                after += 1;
                let block = get(self.api, &format!("/v1/blocks/{after}"));
                assert_eq!(block.status, 200, "{block:?}");
                let txs = block.json["txs"].as_array().unwrap();
                if txs.iter().any(|t| t == hash) {
                    return block.json;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("transaction {hash} not committed within 60 s");
    }
}

/// Polls `probe` until it answers; the 120 s bound is a hang guard (a job takes a few dozen
/// blocks of 200 ms).
pub(crate) fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(value) = probe() {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gave up waiting for {what}");
}

/// A `GET /v1/events` connection, read one server-sent event at a time.
pub(crate) struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    pub(crate) fn open(addr: SocketAddr) -> Self {
        Self::open_path(addr, "/v1/events")
    }

    /// A stream of `path` (`/v1/events` with a filter).
    pub(crate) fn open_path(addr: SocketAddr, path: &str) -> Self {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        Self { reader }
    }

    /// The next event's name and JSON data. Lines that are not SSE fields (the chunked
    /// transfer encoding's sizes) and keep-alive comments are skipped.
    pub(crate) fn next(&mut self) -> (String, Value) {
        let mut name = String::new();
        let mut data: Option<Value> = None;
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).unwrap();
            assert!(read > 0, "the event stream ended");
            let line = line.trim_end();
            if let Some(event) = line.strip_prefix("event: ") {
                name = event.to_owned();
            } else if let Some(json) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(json).unwrap());
            } else if line.is_empty()
                && let Some(data) = data.take()
            {
                return (std::mem::take(&mut name), data);
            }
        }
    }
}

impl TestNode {
    /// Signs an `OpenJob` from the client at `nonce` on the terms of `quote`.
    pub(crate) fn open_job(
        &self,
        nonce: u64,
        quote: &Value,
        input: &[u8],
        max_tokens: u32,
    ) -> Signed<Tx> {
        self.open_job_due(nonce, quote, input, max_tokens, 50)
    }

    /// As `open_job`, with the result due within `deadline_ms` of block time.
    pub(crate) fn open_job_due(
        &self,
        nonce: u64,
        quote: &Value,
        input: &[u8],
        max_tokens: u32,
        deadline_ms: u32,
    ) -> Signed<Tx> {
        let open = OpenJob {
            model: quote["model"].as_str().unwrap().parse().unwrap(),
            input: Bytes::new(input.to_vec()).unwrap(),
            max_tokens,
            provider: quote["provider"].as_str().unwrap().parse().unwrap(),
            device: quote["device"].as_str().unwrap().parse().unwrap(),
            price_per_token: Amount(quote["price_per_token"].as_u64().unwrap()),
            deadline_ms,
            check: attest_protocol::tx::CheckLevel::Random,
        };
        let tx = Tx {
            nonce: Nonce(nonce),
            fee: Params::default().min_fee,
            action: Action::OpenJob(open),
        };
        Signed::sign(&self.chain, &self.client, tx)
    }

    pub(crate) fn quote_body(&self, max_price: u64) -> Vec<u8> {
        serde_json::json!({
            "model": MODEL,
            "max_price_per_token": max_price,
            "client": self.client.public().to_string(),
        })
        .to_string()
        .into_bytes()
    }
}
