//! The HTTP API over a real single-validator node in this process: the shell, the store and
//! consensus run for real on loopback (port 0 everywhere), and requests go over a plain TCP
//! socket as any client's would.
//!
//! Waits are bounded only as hang guards; nothing here asserts how fast anything happens.

#[path = "api/harness.rs"]
mod harness;

use attest_node::api;
use attest_node::keyfile;
use attest_protocol::workload::{self, output_hash};
use attest_protocol::{Amount, Canonical, ChainId, Signed, tx_hash};
use serde_json::Value;

use harness::*;

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

#[test]
fn a_job_goes_from_quote_to_verified_output_and_shows_in_every_view() {
    // The idle provider is the only other staked account: a job needs one that could check
    // it. It never runs anything, so the job settles unchecked.
    let node = start_with(Options {
        advertise: true,
        idle_provider: true,
        ..Options::default()
    });
    let api = node.api;

    // The validator advertises its device; the book shows it.
    let adverts = wait_for("the validator's advert", || {
        let reply = get(api, "/v1/adverts");
        assert_eq!(reply.status, 200, "{reply:?}");
        let adverts = reply.json["adverts"].as_array()?.clone();
        (!adverts.is_empty()).then_some(adverts)
    });
    assert_eq!(adverts.len(), 1, "{adverts:?}");
    let advert = &adverts[0];
    assert_eq!(advert["provider"], node.validator.as_str());
    assert_eq!(advert["node_peer_id"], node.peer_id.as_str());
    assert_eq!(advert["device"], "cpu");
    assert_eq!(advert["price_per_token"], PRICE);
    assert!(advert["models"].as_array().unwrap().contains(&MODEL.into()));
    assert!(advert["expires_at_ms"].as_u64().unwrap() > now_ms() - 60_000);
    assert!(advert["seq"].is_u64() && advert["free_slots"].is_u64());

    // Subscribed before the job opens, so the stream carries all of it.
    let mut events = EventStream::open(api);

    let quote = post_json(api, "/v1/quote", &node.quote_body(PRICE));
    assert_eq!(quote.status, 200, "{quote:?}");
    let quote = quote.json;
    assert_eq!(quote["provider"], node.validator.as_str());
    assert_eq!(quote["node_peer_id"], node.peer_id.as_str());
    assert_eq!(quote["model"], MODEL);
    assert_eq!(quote["device"], "cpu");
    assert_eq!(quote["price_per_token"], PRICE);
    assert!(quote["reputation"]["tier"].is_i64(), "{quote}");

    // A quote is a question: asking again and again, more often than the provider has slots,
    // takes none of them (only a job opened through this node does).
    let slots = advert["free_slots"].as_u64().unwrap();
    for _ in 0..slots * 2 {
        let again = post_json(api, "/v1/quote", &node.quote_body(PRICE));
        assert_eq!(again.status, 200, "{again:?}");
    }
    let book = get(api, "/v1/adverts");
    assert_eq!(
        book.json["adverts"][0]["free_slots"], slots,
        "{:?}",
        book.json
    );

    let input = b"attest the truth";
    let max_tokens = 16;
    let tx = node.open_job(0, &quote, input, max_tokens);
    let submitted = submit_hex(api, &hex::encode(tx.encode()));
    assert_eq!(submitted.status, 200, "{submitted:?}");
    let id = tx_hash(&tx).to_string();

    // The node provides the job, is its gateway, and settles it (if the idle provider is
    // drawn to check it, it misses its verdict and the job settles unchecked).
    let job = wait_for("the job to settle with its output held", || {
        let reply = get(api, &format!("/v1/jobs/{id}"));
        if reply.status == 404 {
            return None;
        }
        assert_eq!(reply.status, 200, "{reply:?}");
        let done = reply.json["phase"] == "settled" && reply.json["output_held"] == true;
        done.then_some(reply.json)
    });
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["client"], node.client.public().to_string().as_str());
    assert_eq!(job["provider"], node.validator.as_str());
    assert_eq!(job["model"], MODEL);
    assert_eq!(job["device"], "cpu");
    assert_eq!(job["max_tokens"], max_tokens);
    assert_eq!(job["price_per_token"], PRICE);
    // A final job's input is dropped from the live state (the OpenJob transaction keeps it).
    assert_eq!(job["input_bytes"], 0, "{job}");
    assert_eq!(job["escrow"], 0, "a settled job holds no escrow: {job}");
    assert_eq!(job["deadline_ms"], Value::Null);
    assert_eq!(job["check_level"], "random");
    // Nobody checked it: the output matches the provider's commitment, nothing more.
    assert_eq!(job["assurance"]["state"], "settled_unchecked", "{job}");
    let timeline = &job["timeline"];
    let at = |stage: &str| timeline[stage]["height"].as_u64().unwrap();
    assert!(at("opened") < at("committed"), "{timeline}");
    assert!(at("committed") <= at("closed"), "{timeline}");
    assert_eq!(job["opened_at"], at("opened"));
    assert!(
        timeline["closed"]["time_ms"].as_u64().unwrap()
            >= timeline["opened"]["time_ms"].as_u64().unwrap()
    );

    // The output is the workload's, byte for byte, and hashes to what the provider committed.
    let expected = workload::execute(&workload::Job::new(MODEL, input, max_tokens).unwrap());
    let output = get(api, &format!("/v1/jobs/{id}/output"));
    assert_eq!(output.status, 200, "{output:?}");
    assert_eq!(output.json["job"], id.as_str());
    assert_eq!(output.json["phase"], "settled");
    assert_eq!(
        output.json["output_hex"],
        hex::encode(&expected.output).as_str()
    );
    assert_eq!(
        output.json["output_hash"],
        output_hash(&expected.output).to_string().as_str()
    );
    let text = String::from_utf8(expected.output.clone()).unwrap();
    assert_eq!(output.json["output"], text.as_str());

    // Accounts: the provider's record and stake, the client's job and spent nonce.
    let provider = get(api, &format!("/v1/accounts/{}", node.validator));
    assert_eq!(provider.status, 200, "{provider:?}");
    let stake = &provider.json["stake"];
    assert_eq!(stake["bonded"], tokens(1_000).0);
    assert_eq!(stake["status"], "active");
    assert_eq!(stake["eligible"], true);
    assert_eq!(stake["node_peer_id"], node.peer_id.as_str());
    assert_eq!(provider.json["provider"]["jobs"]["settled"], 1);
    assert_eq!(provider.json["provider"]["slashes_total"], 0);
    assert_eq!(provider.json["provider"]["reputation"]["settled"], 1);
    let client = get(api, &format!("/v1/accounts/{}", node.client.public()));
    assert_eq!(client.status, 200, "{client:?}");
    assert_eq!(client.json["nonce"], 1);
    assert_eq!(client.json["stake"], Value::Null);
    assert_eq!(client.json["client_jobs"]["settled"], 1);
    assert!(client.json["balance"].as_u64().unwrap() < tokens(1_000).0);

    // The stream told the job's story in order, between block events.
    let mut story = Vec::new();
    let mut blocks = 0;
    while !story.contains(&"settled".to_owned()) {
        let (name, data) = events.next();
        assert!(data["height"].is_u64(), "{name}: {data}");
        if name == "block" {
            blocks += 1;
            assert_eq!(data["hash"].as_str().unwrap().len(), 64, "{data}");
            assert!(data["txs"].is_u64() && data["time_ms"].is_u64(), "{data}");
        } else if data["job"] == id.as_str() {
            story.push(name);
        }
    }
    assert!(blocks >= 2, "{blocks} block events");
    let opened = story.iter().position(|s| s == "job_opened").unwrap();
    let result = story.iter().position(|s| s == "result_committed").unwrap();
    assert!(opened < result, "{story:?}");
    assert_eq!(
        story.last().map(String::as_str),
        Some("settled"),
        "{story:?}"
    );

    // The metrics counted it from the committed blocks.
    let metrics = http_raw(api, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    for line in [
        "attest_jobs_total{stage=\"opened\"} 1",
        "attest_jobs_total{stage=\"result\"} 1",
        "attest_jobs_total{stage=\"settled\"} 1",
        "attest_job_latency_seconds_count{until=\"closed\"} 1",
        "attest_duties_total{kind=\"result\"} 1",
        "attest_gateway_outputs_total{result=\"verified\"} 1",
    ] {
        assert!(
            metrics.body.contains(line),
            "no {line:?} in:\n{}",
            metrics.body
        );
    }
}

#[test]
fn a_quote_nobody_else_could_check_is_refused() {
    // The validator is the only staked account: a job with it could never be checked, so
    // the contract would refuse it, and the gateway does not quote it.
    let node = start_with(Options {
        advertise: true,
        ..Options::default()
    });
    let api = node.api;
    wait_for("the validator's advert", || {
        let reply = get(api, "/v1/adverts");
        (!reply.json["adverts"].as_array()?.is_empty()).then_some(())
    });
    assert_error(
        &post_json(api, "/v1/quote", &node.quote_body(PRICE)),
        409,
        "uncheckable",
    );
}

#[test]
fn quotes_name_why_no_provider_fits() {
    let node = start_with(Options {
        advertise: true,
        idle_provider: true,
        ..Options::default()
    });
    let api = node.api;
    wait_for("the validator's advert", || {
        let reply = get(api, "/v1/adverts");
        (!reply.json["adverts"].as_array()?.is_empty()).then_some(())
    });
    assert_error(
        &post_json(api, "/v1/quote", &node.quote_body(PRICE - 1)),
        409,
        "over_price_cap",
    );
    // The only provider is the validator: as the client, it is never offered itself.
    let itself = serde_json::json!({
        "model": MODEL, "max_price_per_token": PRICE, "client": node.validator,
    });
    assert_error(
        &post_json(api, "/v1/quote", itself.to_string().as_bytes()),
        404,
        "no_advert",
    );
    let unknown = serde_json::json!({ "model": "attest-huge-9t", "max_price_per_token": 1 });
    assert_error(
        &post_json(api, "/v1/quote", unknown.to_string().as_bytes()),
        422,
        "unknown_model",
    );
    let malformed = serde_json::json!({ "model": "Not A Model!", "max_price_per_token": 1 });
    assert_error(
        &post_json(api, "/v1/quote", malformed.to_string().as_bytes()),
        422,
        "unknown_model",
    );
    let bad_client = serde_json::json!({
        "model": MODEL, "max_price_per_token": PRICE, "client": "zz",
    });
    assert_error(
        &post_json(api, "/v1/quote", bad_client.to_string().as_bytes()),
        400,
        "bad_hex",
    );
    let extra = serde_json::json!({ "model": MODEL, "max_price_per_token": 1, "tip": 5 });
    assert_error(
        &post_json(api, "/v1/quote", extra.to_string().as_bytes()),
        422,
        "bad_json",
    );
    let negative = b"{\"model\": \"attest-tiny-1b\", \"max_price_per_token\": -1}";
    assert_error(&post_json(api, "/v1/quote", negative), 422, "bad_json");
    assert_error(&post_json(api, "/v1/quote", b"{\"model\""), 400, "bad_json");
    assert_error(&get(api, "/v1/quote"), 405, "method_not_allowed");

    // A priced-right quote still works after all that.
    let quote = post_json(api, "/v1/quote", &node.quote_body(PRICE));
    assert_eq!(quote.status, 200, "{quote:?}");
}

#[test]
fn a_node_without_adverts_quotes_nobody() {
    let node = start();
    let reply = get(node.api, "/v1/adverts");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json, serde_json::json!({ "adverts": [] }));
    assert_error(
        &post_json(node.api, "/v1/quote", &node.quote_body(1_000)),
        404,
        "no_advert",
    );
}

#[test]
fn jobs_and_accounts_refuse_bad_ids_and_answer_unknown_ones() {
    let node = start();
    let api = node.api;
    let unknown = "ab".repeat(32);
    assert_error(&get(api, &format!("/v1/jobs/{unknown}")), 404, "not_found");
    assert_error(
        &get(api, &format!("/v1/jobs/{unknown}/output")),
        404,
        "not_found",
    );
    assert_error(&get(api, "/v1/jobs/xyz"), 400, "bad_hex");
    assert_error(
        &get(api, &format!("/v1/jobs/{}", "g".repeat(64))),
        400,
        "bad_hex",
    );
    assert_error(&get(api, &format!("/v1/jobs/{unknown}00")), 400, "bad_hex");
    assert_error(&get(api, "/v1/jobs/%FF%FE/output"), 400, "bad_path");
    assert_error(&get(api, "/v1/accounts/123"), 400, "bad_hex");
    // 32 zero bytes are a point of small order, not an account key.
    assert_error(
        &get(api, &format!("/v1/accounts/{}", "00".repeat(32))),
        400,
        "bad_account",
    );

    // An account the ledger never saw is empty, not missing.
    let stranger = keyfile::generate().unwrap().public();
    let reply = get(api, &format!("/v1/accounts/{stranger}"));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["balance"], 0);
    assert_eq!(reply.json["nonce"], 0);
    assert_eq!(reply.json["stake"], Value::Null);
    assert_eq!(reply.json["provider"]["jobs"]["settled"], 0);

    assert_eq!(get(api, "/health").status, 200);
}

#[test]
fn a_missed_deadline_shows_as_no_result_then_a_refund_and_a_slash() {
    let node = start_with(Options {
        idle_provider: true,
        ..Options::default()
    });
    let api = node.api;
    let mut events = EventStream::open(api);
    let terms = serde_json::json!({
        "model": MODEL, "provider": node.idle_provider, "device": "cpu", "price_per_token": 1,
    });
    let tx = node.open_job_due(0, &terms, b"nobody runs this", 4, 3_000);
    let id = tx_hash(&tx).to_string();
    // A stream filtered to this job: only its events, no block frames.
    let mut mine = EventStream::open_path(api, &format!("/v1/events?job={id}"));
    let submitted = submit_hex(api, &hex::encode(tx.encode()));
    assert_eq!(submitted.status, 200, "{submitted:?}");

    // Open: nobody serves the provider, so it stays open for its 3 s of block time.
    let job = wait_for("the job on the ledger", || {
        let reply = get(api, &format!("/v1/jobs/{id}"));
        (reply.status == 200).then_some(reply.json)
    });
    assert_eq!(job["phase"], "open", "{job}");
    assert_eq!(job["provider"], node.idle_provider.as_str());
    assert!(job["escrow"].as_u64().unwrap() > 0, "{job}");
    let deadline = job["deadline_ms"].as_u64().unwrap();
    assert_eq!(job["assurance"]["state"], "no_result", "{job}");
    assert_eq!(job["output_held"], false);
    assert_error(
        &get(api, &format!("/v1/jobs/{id}/output")),
        404,
        "no_result",
    );

    // Past the deadline: refunded, the fault recorded, the provider slashed.
    let job = wait_for("the refund", || {
        let reply = get(api, &format!("/v1/jobs/{id}"));
        (reply.json["phase"] == "refunded").then_some(reply.json)
    });
    assert_eq!(job["escrow"], 0);
    assert_eq!(
        job["faults"],
        serde_json::json!([{
            "who": node.idle_provider, "reason": "missed_commit", "job": id,
        }])
    );
    // The deadline is the last block time for a result; the refund comes at the end of the
    // first block whose time reaches it, 3 s after the opening block.
    let opened = job["timeline"]["opened"]["time_ms"].as_u64().unwrap();
    assert_eq!(deadline, opened + 3_000);
    let closed = job["timeline"]["closed"]["time_ms"].as_u64().unwrap();
    assert!(closed >= deadline, "{job}");
    assert_eq!(job["assurance"]["state"], "no_result_refunded", "{job}");
    assert_error(&get(api, &format!("/v1/jobs/{id}/output")), 404, "refunded");

    let account = get(api, &format!("/v1/accounts/{}", node.idle_provider));
    assert_eq!(account.status, 200, "{account:?}");
    let record = &account.json["provider"];
    assert_eq!(record["jobs"]["refunded"], 1, "{record}");
    assert_eq!(record["slashes_total"], 1, "{record}");
    assert_eq!(record["slashes"][0]["reason"], "missed_commit", "{record}");
    assert_eq!(record["slashes"][0]["job"], id.as_str(), "{record}");
    assert!(
        record["reputation"]["tier"].as_i64().unwrap() < 0,
        "{record}"
    );
    let bonded = account.json["stake"]["bonded"].as_u64().unwrap();
    assert!(bonded < tokens(IDLE_STAKE).0, "slashed stake: {bonded}");

    let mut story = Vec::new();
    while !story.contains(&"refunded".to_owned()) {
        let (name, data) = events.next();
        if name == "slashed" {
            assert_eq!(data["who"], node.idle_provider.as_str(), "{data}");
            assert_eq!(data["reason"], "missed_commit", "{data}");
            assert_eq!(data["job"], id.as_str(), "{data}");
            assert!(data["amount"].as_u64().unwrap() > 0, "{data}");
        }
        if name != "block" && data.to_string().contains(&id) {
            story.push(name);
        }
    }
    assert_eq!(
        story,
        ["job_opened", "commit_missed", "slashed", "refunded"],
        "{story:?}"
    );
    for kind in &story {
        let (name, data) = mine.next();
        assert_eq!((&name, &data["event"]), (kind, &Value::from(kind.as_str())));
        assert_eq!(data["job"], id.as_str(), "{data}");
    }

    let metrics = http_raw(api, "GET", "/metrics", &[], b"");
    for line in [
        "attest_slashes_total{reason=\"missed_commit\"} 1",
        "attest_slashes_total{reason=\"dispute_lost\"} 0",
        "attest_jobs_total{stage=\"commit_missed\"} 1",
        "attest_jobs_total{stage=\"refunded\"} 1",
    ] {
        assert!(
            metrics.body.contains(line),
            "no {line:?} in:\n{}",
            metrics.body
        );
    }
}

#[test]
fn block_ranges_are_bounded_and_bad_ranges_400() {
    let node = start_with(Options {
        idle_block_interval_ms: 10,
        ..Options::default()
    });
    let api = node.api;
    let page_len = api::MAX_BLOCKS_PER_PAGE;
    wait_for("more than a page of blocks", || {
        (node.height() > page_len + 1).then_some(())
    });

    let page = get(api, "/v1/blocks?from=1&to=3");
    assert_eq!(page.status, 200, "{page:?}");
    let blocks = page.json["blocks"].as_array().unwrap();
    let heights: Vec<u64> = blocks
        .iter()
        .map(|b| b["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, vec![1, 2, 3]);
    assert_eq!(page.json["next"], Value::Null);
    assert!(page.json["latest"].as_u64().unwrap() > page_len);
    // Each block is exactly what the single-block route shows.
    assert_eq!(blocks[1], get(api, "/v1/blocks/2").json);
    assert_eq!(blocks[1]["prev"], blocks[0]["hash"]);

    // A range longer than a page stops at the bound and says where to go on.
    let long = get(api, "/v1/blocks?from=1&to=100000");
    assert_eq!(long.status, 200);
    let blocks = long.json["blocks"].as_array().unwrap();
    assert_eq!(blocks.len() as u64, page_len);
    assert_eq!(long.json["next"], page_len + 1);
    // Without `to`, a page from `from`.
    let open = get(api, "/v1/blocks?from=2");
    assert_eq!(
        open.json["blocks"].as_array().unwrap().len() as u64,
        page_len
    );
    assert_eq!(open.json["blocks"][0]["height"], 2);
    // Past the chain's end: what exists, and no `next`.
    let latest = long.json["latest"].as_u64().unwrap();
    let tail = get(
        api,
        &format!("/v1/blocks?from={latest}&to={}", latest + 1_000_000),
    );
    assert_eq!(tail.status, 200);
    let got = tail.json["blocks"].as_array().unwrap();
    let last = got.last().expect("blocks from a committed height")["height"]
        .as_u64()
        .unwrap();
    // Blocks come every 10 ms, so the chain may have grown past a page since `latest` was
    // read: `next` is absent exactly when the page reached the node's latest height.
    if tail.json["latest"].as_u64() == Some(last) {
        assert_eq!(tail.json["next"], Value::Null, "{:?}", tail.json);
    } else {
        assert_eq!(tail.json["next"], last + 1, "{:?}", tail.json);
    }
    let future = get(api, "/v1/blocks?from=1000000000&to=1000000001");
    assert_eq!(future.json["blocks"], serde_json::json!([]));
    // Height 0 has no block: a range from 0 starts at 1.
    let zero = get(api, "/v1/blocks?from=0&to=1");
    assert_eq!(zero.json["blocks"][0]["height"], 1);

    assert_error(&get(api, "/v1/blocks"), 400, "bad_query");
    assert_error(&get(api, "/v1/blocks?to=5"), 400, "bad_query");
    assert_error(&get(api, "/v1/blocks?form=1"), 400, "bad_query");
    assert_error(&get(api, "/v1/blocks?from=1&from=2"), 400, "bad_query");
    let bad_kind = get(api, "/v1/events?kinds=block,nope");
    assert_error(&bad_kind, 400, "bad_query");
    assert!(
        bad_kind.json["detail"]
            .as_str()
            .unwrap()
            .contains("\"nope\"")
    );
    assert_error(&get(api, "/v1/events?job=zz"), 400, "bad_hex");
    assert_error(&get(api, "/v1/events?since=3"), 400, "bad_query");
    assert_error(&get(api, "/v1/blocks?from=one"), 400, "bad_height");
    assert_error(&get(api, "/v1/blocks?from=1&to=-2"), 400, "bad_height");
    assert_error(&get(api, "/v1/blocks?from=5&to=4"), 400, "bad_range");
    assert_eq!(get(api, "/health").status, 200);
}

#[test]
fn metrics_are_prometheus_text() {
    let node = start();
    wait_for("two blocks", || (node.height() >= 2).then_some(()));
    let metrics = http_raw(node.api, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{}",
        metrics.head
    );
    let body = &metrics.body;
    for name in [
        "# TYPE attest_height gauge",
        "# TYPE attest_peers gauge",
        "# TYPE attest_mempool_txs gauge",
        "# TYPE attest_blocks counter",
        "# TYPE attest_block_interval_seconds histogram",
        "# TYPE attest_validation_latency_seconds histogram",
        "# TYPE attest_job_latency_seconds histogram",
        "# TYPE attest_slashes counter",
        "# TYPE attest_jobs counter",
        "# TYPE libp2p_swarm_",
        "# EOF",
    ] {
        assert!(body.contains(name), "no {name:?} in:\n{body}");
    }
    let height: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("attest_height "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no attest_height sample in:\n{body}"));
    assert!(height >= 2, "{height}");
    let blocks: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("attest_blocks_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no attest_blocks_total sample in:\n{body}"));
    assert!(blocks >= 2, "{blocks}");
}

#[test]
fn the_event_stream_sends_each_block_and_keeps_serving_others() {
    let node = start();
    let mut first = EventStream::open(node.api);
    let mut second = EventStream::open(node.api);
    let (name, block) = first.next();
    assert_eq!(name, "block", "{block}");
    let height = block["height"].as_u64().unwrap();
    let (name, next) = first.next();
    assert_eq!(name, "block", "{next}");
    assert_eq!(next["height"].as_u64().unwrap(), height + 1, "{next}");
    assert_eq!(
        next["hash"],
        get(node.api, &format!("/v1/blocks/{}", height + 1)).json["hash"]
    );
    // A second subscriber reads the same blocks.
    let (_, other) = second.next();
    assert!(other["height"].as_u64().unwrap() >= height, "{other}");
    drop(first);
    drop(second);
    // Closing subscribers disturbs nothing.
    assert_eq!(get(node.api, "/health").status, 200);
    let (name, _) = EventStream::open(node.api).next();
    assert_eq!(name, "block");
}

#[test]
fn new_routes_refuse_oversize_bodies_and_wrong_methods() {
    let node = start();
    let api = node.api;
    let oversize = format!(
        "{{\"model\": \"{}\", \"max_price_per_token\": 1}}",
        "a".repeat(api::MAX_BODY_BYTES)
    );
    assert_error(
        &post_json(api, "/v1/quote", oversize.as_bytes()),
        413,
        "body_too_large",
    );
    assert_error(
        &http(api, "POST", "/v1/quote", &[], &node.quote_body(1)),
        415,
        "bad_content_type",
    );
    for path in ["/v1/adverts", "/v1/blocks", "/v1/events", "/metrics"] {
        assert_error(&post_json(api, path, b"{}"), 405, "method_not_allowed");
    }
    let id = "ab".repeat(32);
    assert_error(
        &http(api, "DELETE", &format!("/v1/jobs/{id}"), &[], b""),
        405,
        "method_not_allowed",
    );
    assert_error(&get(api, &format!("/v1/jobs/{id}/trace")), 404, "not_found");
    assert_eq!(get(api, "/v1/adverts").status, 200);
    assert_eq!(get(api, "/v1/status").status, 200);
}

/// `?proof=true`: the account's entries come with proofs that a light client checks against
/// the next block's header and certificate; a tampered answer or a bad query is refused.
#[test]
fn account_and_job_proofs_check_against_the_certifying_block() {
    let node = start();
    let api = node.api;
    let client = node.client.public();
    let reply = get(api, &format!("/v1/accounts/{client}?proof=true"));
    assert_eq!(reply.status, 200, "{reply:?}");
    let view: api::accounts::AccountSnapshot = serde_json::from_value(reply.json.clone()).unwrap();
    let proof = view.proof.clone().expect("proofs were asked for");
    assert_eq!(proof.proofs.len(), 3, "account, stake and record");
    let next = proof.height.0 + 1;
    let raw = wait_for("the block certifying the proven root", || {
        let r = get(api, &format!("/v1/blocks/{next}/raw"));
        (r.status == 200).then_some(r.json)
    });
    let block =
        attest_protocol::Block::decode(&hex::decode(raw["block"].as_str().unwrap()).unwrap())
            .unwrap();
    let cert = attest_protocol::CommitCertificate::decode(
        &hex::decode(raw["certificate"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let light = attest_chain::LightProof {
        height: proof.height,
        proofs: proof
            .proofs
            .iter()
            .map(|p| attest_chain::LightProof::decode_proof(&hex::decode(p).unwrap()).unwrap())
            .collect(),
        validators: proof.validators.clone(),
    };
    let entries = attest_chain::verify_light(&node.chain, &light, &block, &cert).unwrap();
    match &entries[0] {
        (attest_contracts_sim::Key::Account(id), Some(attest_contracts_sim::Entry::Account(a))) => {
            assert_eq!(*id, client);
            assert!(a.balance.0 > 0, "the client is funded at genesis");
        }
        other => panic!("first entry: {other:?}"),
    }
    assert_eq!(entries[1].1, None, "the client has no stake: proven absent");

    // A changed value does not verify.
    let mut forged = light.clone();
    if let Some(v) = forged.proofs[0].value.as_mut() {
        v[0] ^= 1;
    }
    assert!(attest_chain::verify_light(&node.chain, &forged, &block, &cert).is_err());
    // Nor does another height's block.
    let mut shifted = light.clone();
    shifted.height = attest_protocol::Height(proof.height.0 + 1);
    assert!(attest_chain::verify_light(&node.chain, &shifted, &block, &cert).is_err());
    // A truncated path does not either.
    let mut truncated = light;
    truncated.proofs[0].proof.siblings.pop();
    assert!(attest_chain::verify_light(&node.chain, &truncated, &block, &cert).is_err());

    // Without the query, no proofs; a bad query is a 400 that names it.
    let plain = get(api, &format!("/v1/accounts/{client}"));
    assert_eq!(plain.json.get("proof"), None);
    assert_error(
        &get(api, &format!("/v1/accounts/{client}?proof=maybe")),
        400,
        "bad_query",
    );
    let unknown = "ab".repeat(32);
    assert_error(
        &get(api, &format!("/v1/jobs/{unknown}?proof=true")),
        404,
        "not_found",
    );
}

/// Writes and event streams are admitted per client address (`api_rate_per_s`, `api_burst`):
/// past the burst a client gets 429 `rate_limited` with `Retry-After` and the limit named, the
/// reads stay open, and after the wait it is admitted again.
#[test]
fn a_client_over_its_rate_is_told_to_wait_and_reads_stay_open() {
    let node = start_with(Options {
        limits: api::LimitsConfig {
            rate_per_s: 1,
            burst: 2,
            max_in_flight: 8,
        },
        ..Options::default()
    });
    let api = node.api;
    // Admission comes before the body is read: bad requests count too.
    for _ in 0..2 {
        assert_error(&post_json(api, "/v1/txs", b"{}"), 422, "bad_json");
    }
    let raw = http_raw(
        api,
        "POST",
        "/v1/quote",
        &["Content-Type: application/json"],
        b"{}",
    );
    assert_eq!(raw.status, 429, "{raw:?}");
    let retry = raw
        .head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap_or_else(|| panic!("no Retry-After in {:?}", raw.head));
    assert_eq!(retry, "1");
    let body: serde_json::Value = serde_json::from_str(&raw.body).unwrap();
    assert_eq!(body["error"], "rate_limited");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("127.0.0.1") && detail.contains("limit of 1/s (bursts of 2)"),
        "{detail}"
    );
    assert_error(&get(api, "/v1/events"), 429, "rate_limited");
    assert_eq!(get(api, "/v1/status").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_error(&post_json(api, "/v1/txs", b"{}"), 422, "bad_json");
}

#[test]
fn the_explorer_and_the_routes_it_reads_answer_and_refuse_bad_queries() {
    let node = start();
    let api = node.api;

    // The page and its assets, compiled in; a strict policy (no inline script, nothing from
    // elsewhere).
    let page = http_raw(api, "GET", "/", &[], b"");
    assert_eq!(page.status, 200, "{page:?}");
    let head = page.head.to_lowercase();
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(page.body.contains("/explorer/app.js"), "{}", page.body);
    for (path, kind) in [
        ("/explorer/app.js", "text/javascript"),
        ("/explorer/style.css", "text/css"),
    ] {
        let asset = http_raw(api, "GET", path, &[], b"");
        assert_eq!(asset.status, 200, "{path}");
        assert!(
            asset.head.to_lowercase().contains(kind),
            "{path}: {}",
            asset.head
        );
        assert!(!asset.body.is_empty(), "{path}");
    }

    // A transfer, decoded from its block.
    let before = node.height();
    let tx = node.transfer(0, 5);
    let hash = tx_hash(&tx).to_string();
    assert_eq!(submit_hex(api, &hex::encode(tx.encode())).status, 200);
    let block = node.wait_for_commit(&hash, before);
    let height = block["height"].as_u64().unwrap();
    let page = get(api, &format!("/v1/blocks/{height}/txs"));
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.json["total"], 1, "{page:?}");
    assert_eq!(page.json["next"], Value::Null);
    let decoded = &page.json["txs"][0];
    assert_eq!(decoded["hash"], hash.as_str());
    assert_eq!(decoded["kind"], "transfer");
    assert_eq!(decoded["nonce"], 0);
    assert_eq!(decoded["action"]["amount"], 5);
    let one = get(api, &format!("/v1/blocks/{height}/txs/0"));
    assert_eq!(&one.json, decoded);
    // The transaction index finds it by hash; an unknown hash is a 404 that says what it
    // means for a transaction the client was told was accepted.
    let found = get(api, &format!("/v1/txs/{hash}"));
    assert_eq!(found.status, 200, "{found:?}");
    assert_eq!(found.json["state"], "committed");
    assert_eq!(found.json["height"], height);
    assert_eq!(found.json["index"], 0);
    let unknown = get(api, &format!("/v1/txs/{}", "ab".repeat(32)));
    assert_error(&unknown, 404, "not_found");
    let detail = unknown.json["detail"].as_str().unwrap();
    assert!(detail.contains("submit it again"), "{detail}");
    assert_error(&get(api, "/v1/txs/abc"), 400, "bad_hex");
    assert_error(
        &get(api, &format!("/v1/blocks/{height}/txs/1")),
        404,
        "not_found",
    );
    assert_error(
        &get(api, &format!("/v1/blocks/{height}/txs/x")),
        400,
        "bad_index",
    );
    assert_error(
        &get(api, &format!("/v1/blocks/{height}/txs?from=-1")),
        400,
        "bad_query",
    );
    assert_error(
        &get(api, &format!("/v1/blocks/{height}/txs?to=3")),
        400,
        "bad_query",
    );
    assert_error(&get(api, "/v1/blocks/999999/txs"), 404, "not_found");

    // The recent record holds the block; parts select sections.
    let recent = get(api, "/v1/recent");
    assert_eq!(recent.status, 200, "{recent:?}");
    assert_eq!(recent.json["schema"], "attest.recent/1");
    let blocks = recent.json["blocks"].as_array().unwrap();
    assert!(
        blocks
            .iter()
            .any(|b| b["height"] == height && b["txs"] == 1),
        "{blocks:?}"
    );
    for part in ["jobs", "validation", "disputes", "slashes"] {
        assert!(recent.json[part].is_array(), "{part}: {recent:?}");
    }
    let only = get(api, "/v1/recent?parts=jobs");
    assert!(only.json["jobs"].is_array() && only.json.get("blocks").is_none());
    assert_error(&get(api, "/v1/recent?parts=blocks,nope"), 400, "bad_query");
    assert_error(&get(api, "/v1/recent?limit=3"), 400, "bad_query");

    // The validator set: this node alone, with all the power.
    let set = get(api, "/v1/validators");
    assert_eq!(set.status, 200);
    assert_eq!(set.json["validators"].as_array().unwrap().len(), 1);
    assert_eq!(
        set.json["validators"][0]["account"],
        node.validator.as_str()
    );
    assert_eq!(set.json["validators"][0]["power"], set.json["total_power"]);
    assert!(set.json["height"].as_u64().unwrap() > height);

    // The node audits its own store and says that it did.
    let audit = get(api, &format!("/v1/audit?from=1&to={height}"));
    assert_eq!(audit.status, 200, "{audit:?}");
    assert_eq!(audit.json["report"]["ok"], true, "{audit:?}");
    assert_eq!(audit.json["report"]["last_height"], height);
    assert_eq!(audit.json["run_by"], "this node, over its own store");
    assert!(
        audit.json["independent"]
            .as_str()
            .unwrap()
            .starts_with("attest audit --node URL --genesis-hash "),
        "{audit:?}"
    );
    assert_error(&get(api, "/v1/audit?from=5&to=2"), 400, "bad_query");
    assert_error(&get(api, "/v1/audit?from=x"), 400, "bad_height");
    assert_error(&get(api, "/v1/audit?depth=2"), 400, "bad_query");
}
