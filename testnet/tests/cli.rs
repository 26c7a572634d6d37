//! Process-level tests of the `attest` binary, run as a user runs it.

use std::process::{Command, Output};

fn attest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attest"))
        .args(args)
        .output()
        .expect("attest runs")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "attest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn run_prints_the_golden_trace_root_every_time() {
    let args = [
        "run",
        "--model",
        "attest-tiny-1b",
        "--input",
        "attest golden vector",
        "--max-tokens",
        "8",
        "--json",
    ];
    let first = stdout_json(&attest(&args));
    let second = stdout_json(&attest(&args));
    assert_eq!(first, second);
    assert_eq!(first["schema"], "attest.run/1");
    assert_eq!(first["output"], "meUY]51e");
    assert_eq!(
        first["trace_root"],
        "2d584e83a5384624da2ddee57ca5e6d173f66825996fae93ef3563c4879d9c58"
    );
    assert_eq!(first["step_count"], 616);
}

#[test]
fn run_reads_input_from_a_file() {
    let dir = std::env::temp_dir().join(format!("attest-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input.txt");
    std::fs::write(&path, "attest golden vector").unwrap();
    let arg = format!("@{}", path.display());
    let out = stdout_json(&attest(&[
        "run",
        "--model",
        "attest-tiny-1b",
        "--input",
        &arg,
        "--max-tokens",
        "8",
        "--json",
    ]));
    assert_eq!(
        out["trace_root"],
        "2d584e83a5384624da2ddee57ca5e6d173f66825996fae93ef3563c4879d9c58"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn text_output_names_every_field() {
    let out = attest(&["run", "--input", "hi", "--max-tokens", "4"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for field in ["model", "output", "output hash", "trace root", "steps"] {
        assert!(text.contains(field), "missing {field:?} in {text}");
    }
}

fn fails_with(args: &[&str], needle: &str) {
    let out = attest(args);
    assert!(!out.status.success(), "attest {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "stderr of {args:?} lacks {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "attest {args:?} panicked: {err}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    fails_with(
        &["run", "--model", "gpt-9", "--input", "x"],
        "unknown model \"gpt-9\"",
    );
    fails_with(
        &["run", "--input", "x", "--max-tokens", "0"],
        "max_tokens is 0",
    );
    fails_with(
        &["run", "--input", "x", "--max-tokens", "5000"],
        "max_tokens is 5000",
    );
    fails_with(
        &["run", "--input", "@/nonexistent/attest-input"],
        "/nonexistent/attest-input",
    );
    let big = "x".repeat(5000);
    fails_with(
        &["run", "--input", &big],
        "input is 5000 bytes; the limit is 4096",
    );
    fails_with(&["run", "--input", "x", "--max-tokens", "many"], "many");
}

#[test]
fn models_lists_the_catalogue() {
    let out = stdout_json(&attest(&["models", "--json"]));
    assert_eq!(out["schema"], "attest.models/1");
    let ids: Vec<&str> = out["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["attest-tiny-1b", "attest-base-8b", "attest-large-70b"]
    );
}

#[test]
fn init_creates_a_private_home_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("n0");
    let home_arg = home.to_str().unwrap();
    let out = stdout_json(&attest(&["init", "--home", home_arg, "--json"]));
    assert_eq!(out["schema"], "attest.init/1");
    assert_eq!(out["home"], home_arg);
    assert!(out["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    let account: attest_protocol::PublicKey = out["account"].as_str().unwrap().parse().unwrap();
    for key in ["node.key", "account.key"] {
        let mode = std::fs::metadata(home.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let account_key = attest_node::keyfile::read(&home.join("account.key")).unwrap();
    assert_eq!(account_key.public(), account);
    attest_node::config::Config::load(&home.join("config.toml")).unwrap();

    // A second init must not touch the keys.
    fails_with(&["init", "--home", home_arg], "already initialised");
    assert_eq!(
        attest_node::keyfile::read(&home.join("account.key"))
            .unwrap()
            .public(),
        account
    );
}

#[test]
fn genesis_stakes_and_funds_each_validator_home() {
    let dir = tempfile::tempdir().unwrap();
    let mut accounts = Vec::new();
    for i in 0..2 {
        let home = dir.path().join(format!("n{i}"));
        let out = stdout_json(&attest(&[
            "init",
            "--home",
            home.to_str().unwrap(),
            "--json",
        ]));
        accounts.push(out["account"].as_str().unwrap().to_owned());
    }
    let client = attest_protocol::SecretKey::from_seed([7; 32])
        .public()
        .to_string();
    let out_path = dir.path().join("genesis.json");
    let (n0, n1) = (dir.path().join("n0"), dir.path().join("n1"));
    let fund = format!("{client}=12.5");
    let report = stdout_json(&attest(&[
        "genesis",
        "--chain-id",
        "attest-local",
        "--out",
        out_path.to_str().unwrap(),
        "--validator",
        n0.to_str().unwrap(),
        "--validator",
        n1.to_str().unwrap(),
        "--fund",
        &fund,
        "--genesis-time-ms",
        "1700000000000",
        "--json",
    ]));
    assert_eq!(report["chain_id"], "attest-local");
    let file = attest_node::genesis::load(&out_path).unwrap();
    assert_eq!(report["genesis_hash"], file.hash().to_string());
    assert_eq!(file.genesis_time_ms, 1_700_000_000_000);
    let staked: Vec<String> = file
        .genesis
        .stakes
        .iter()
        .map(|(a, _, _, _)| a.to_string())
        .collect();
    assert_eq!(staked, accounts);
    // Each stake binds the device its home's config serves with (`init` writes h100-sxm).
    for (_, _, _, device) in &file.genesis.stakes {
        assert_eq!(device.device.as_str(), "h100-sxm");
        assert_eq!(device.memory_bytes, 80_000_000_000);
    }
    let funded = file
        .genesis
        .balances
        .iter()
        .find(|(a, _)| a.to_string() == client)
        .unwrap();
    assert_eq!(funded.1, attest_protocol::Amount(12_500_000));

    // The file is never overwritten, and bad flags are named.
    fails_with(
        &[
            "genesis",
            "--chain-id",
            "x",
            "--out",
            out_path.to_str().unwrap(),
            "--validator",
            n0.to_str().unwrap(),
        ],
        "genesis.json",
    );
    fails_with(
        &[
            "genesis",
            "--chain-id",
            "x",
            "--out",
            "/tmp/never.json",
            "--validator",
            "/nonexistent/home",
        ],
        "/nonexistent/home/node.key",
    );
    fails_with(
        &[
            "genesis",
            "--chain-id",
            "x",
            "--out",
            "/tmp/never.json",
            "--validator",
            n0.to_str().unwrap(),
            "--fund",
            "zz=1",
        ],
        "expected 64 hex characters",
    );
}
