//! The HTTP API over a real single-validator node in this process: the shell, the store and
//! consensus run for real on loopback (port 0 everywhere), and requests go over a plain TCP
//! socket as any client's would.
//!
//! Waits are bounded only as hang guards; nothing here asserts how fast anything happens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attest_contracts_sim::Params;
use attest_node::accel::{DeviceConfig, DeviceProfile, TimeScale};
use attest_node::core::CoreConfig;
use attest_node::genesis::GenesisFile;
use attest_node::shell::{Node, NodeSettings};
use attest_node::{api, keyfile};
use attest_protocol::tx::Transfer;
use attest_protocol::{Action, Amount, Canonical, ChainId, Nonce, SecretKey, Signed, Tx, tx_hash};
use serde_json::Value;

/// A node and its API on a runtime of their own; dropping it stops both.
struct TestNode {
    api: SocketAddr,
    peer_id: String,
    validator: String,
    chain: ChainId,
    /// Funded in the genesis; signs the test's transactions.
    client: SecretKey,
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

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

fn tokens(n: u64) -> Amount {
    Amount::tokens(n).unwrap()
}

/// Starts a one-validator chain whose genesis also funds a client account.
fn start() -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let node_key = keyfile::generate().unwrap();
    let account_key = keyfile::generate().unwrap();
    let client = keyfile::generate().unwrap();
    let chain: ChainId = "api-test".parse().unwrap();
    let genesis = GenesisFile::new(
        chain.clone(),
        now_ms(),
        Params::default(),
        vec![
            (account_key.public(), tokens(1_000)),
            (client.public(), tokens(1_000)),
        ],
        vec![(account_key.public(), node_key.public(), tokens(1_000))],
    );
    let validator = account_key.public().to_string();
    let settings = NodeSettings {
        node_key,
        account_key,
        genesis,
        data_dir: dir.path().join("data"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootnodes: Vec::new(),
        // Short idle blocks keep the test quick; the transfer test does not depend on them.
        core: CoreConfig {
            idle_block_interval_ms: 200,
            ..CoreConfig::default()
        },
        device: DeviceConfig::new(DeviceProfile::find("cpu").unwrap(), TimeScale::HUNDREDTH),
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
        tokio::spawn(api::serve(listener, handle, stopping(stopped)));
        (api, peer_id)
    });
    TestNode {
        api,
        peer_id,
        validator,
        chain,
        client,
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
struct Reply {
    status: u16,
    json: Value,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, so the body ends at EOF).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Reply {
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
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {body:?}"));
    Reply { status, json }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    http(addr, "GET", path, &[], b"")
}

fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    http(
        addr,
        "POST",
        path,
        &["Content-Type: application/json"],
        body,
    )
}

fn submit_hex(addr: SocketAddr, hex: &str) -> Reply {
    let body = serde_json::json!({ "tx": hex }).to_string();
    post_json(addr, "/v1/txs", body.as_bytes())
}

/// Asserts an error answer: its status, its code, and a non-empty detail.
fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.json["error"], code, "{reply:?}");
    let detail = reply.json["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "no detail: {reply:?}");
}

impl TestNode {
    fn transfer(&self, nonce: u64, amount: u64) -> Signed<Tx> {
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

    fn height(&self) -> u64 {
        let reply = get(self.api, "/v1/status");
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json["height"].as_u64().unwrap()
    }

    /// Polls until a block lists `hash`; returns that block. The 60 s bound is a hang guard.
    fn wait_for_commit(&self, hash: &str, mut after: u64) -> Value {
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

#[test]
fn health_and_status_describe_the_node() {
    let node = start();
    let health = get(node.api, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json, serde_json::json!({ "ok": true }));

    let status = get(node.api, "/v1/status");
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.json["peer_id"], node.peer_id.as_str());
    assert_eq!(status.json["account"], node.validator.as_str());
    assert_eq!(status.json["peers"], 0);
    assert!(status.json["height"].is_u64(), "{status:?}");
    assert!(status.json["mempool"].is_u64(), "{status:?}");
    let hash = status.json["latest_block_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{hash}");
}

#[test]
fn a_valid_transfer_commits_and_its_block_lists_it() {
    let node = start();
    let before = node.height();
    let tx = node.transfer(0, 5);
    let reply = submit_hex(node.api, &hex::encode(tx.encode()));
    assert_eq!(reply.status, 200, "{reply:?}");
    let hash = tx_hash(&tx).to_string();
    assert_eq!(reply.json, serde_json::json!({ "hash": hash }));

    let block = node.wait_for_commit(&hash, before);
    let height = block["height"].as_u64().unwrap();
    assert!(height > before);
    assert_eq!(block["proposer"], node.validator.as_str());
    assert_eq!(block["certificate"]["signers"], 1);
    assert_eq!(block["hash"].as_str().unwrap().len(), 64);
    assert!(block["time_ms"].is_u64());

    // Committed means the nonce is used: the same transaction again is a conflict.
    let again = submit_hex(node.api, &hex::encode(tx.encode()));
    assert_error(&again, 409, "stale_nonce");
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let node = start();
    let api = node.api;
    assert_error(&post_json(api, "/v1/txs", b"{\"tx\": "), 400, "bad_json");
    assert_error(&post_json(api, "/v1/txs", b"[1, 2]"), 422, "bad_json");
    assert_error(
        &post_json(api, "/v1/txs", b"{\"tz\": \"00\"}"),
        422,
        "bad_json",
    );
    assert_error(
        &http(api, "POST", "/v1/txs", &[], b"{\"tx\": \"00\"}"),
        415,
        "bad_content_type",
    );
    assert_error(&submit_hex(api, "not hex"), 400, "bad_hex");
    assert_error(&submit_hex(api, "abc"), 400, "bad_hex");
    assert_error(&submit_hex(api, ""), 422, "undecodable_tx");
    assert_error(&submit_hex(api, "00ff00ff"), 422, "undecodable_tx");
    let mut trailing = node.transfer(0, 1).encode();
    trailing.push(0);
    assert_error(
        &submit_hex(api, &hex::encode(trailing)),
        422,
        "undecodable_tx",
    );

    // Signed, then altered: it decodes, but the signature no longer covers the body.
    let mut forged = node.transfer(0, 1);
    forged.body.fee = Amount(forged.body.fee.0 + 1);
    assert_error(
        &submit_hex(api, &hex::encode(forged.encode())),
        422,
        "bad_signature",
    );
    // Signed for another chain.
    let other: ChainId = "other-chain".parse().unwrap();
    let foreign = Signed::sign(&other, &node.client, node.transfer(0, 1).body);
    assert_error(
        &submit_hex(api, &hex::encode(foreign.encode())),
        422,
        "bad_signature",
    );

    let oversize = format!("{{\"tx\": \"{}\"}}", "00".repeat(api::MAX_BODY_BYTES));
    assert_error(
        &post_json(api, "/v1/txs", oversize.as_bytes()),
        413,
        "body_too_large",
    );
    assert_error(&get(api, "/v1/nothing"), 404, "not_found");
    assert_error(&get(api, "/v1/txs"), 405, "method_not_allowed");

    // None of that disturbed the server or the mempool.
    assert_eq!(get(api, "/health").status, 200);
    let status = get(api, "/v1/status");
    assert_eq!(status.status, 200);
    assert_eq!(status.json["mempool"], 0);
    let good = node.transfer(0, 1);
    assert_eq!(submit_hex(api, &hex::encode(good.encode())).status, 200);
}

#[test]
fn blocks_not_committed_are_404_and_bad_heights_400() {
    let node = start();
    assert_error(&get(node.api, "/v1/blocks/0"), 404, "not_found");
    assert_error(&get(node.api, "/v1/blocks/1000000000"), 404, "not_found");
    assert_error(&get(node.api, "/v1/blocks/-1"), 400, "bad_height");
    assert_error(&get(node.api, "/v1/blocks/one"), 400, "bad_height");
    assert_error(
        &get(node.api, "/v1/blocks/18446744073709551616"),
        400,
        "bad_height",
    );
    assert_eq!(get(node.api, "/health").status, 200);
}
