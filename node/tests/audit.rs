//! The ledger audit and the verifiable export, on real chains made by four in-process
//! validators (`LocalNet`): an honest chain with transfers and spot-checked jobs audits clean
//! with the expected counts, from memory and from a sled data dir; every kind of tampering
//! stops the audit at the right height with the right reason, forged certificates included;
//! a cheating provider shows up in the slashes; and the export's bytes hash and verify with
//! plain blake3 and ed25519 (and with the Python reference verifier when it can run).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use attest_chain::audit::{
    AUDIT_SCHEMA, AuditError, AuditFailure, AuditRange, Check, EXPORT_SCHEMA, ExportError,
    ExportLine, export_jsonl, no_clock,
};
use attest_chain::{BlockError, CertError, GenesisFile};
use attest_core::CoreConfig;
use attest_core::accel::{Cheat, CheatMode, RATE_ONE_PPM};
use attest_core::localnet::LocalNet;
use attest_core::store::{CommittedBlock, GenesisId, MemStore, Store};
use attest_node::sled_store::SledStore;
use attest_protocol::tx::{Action, OpenJob, Transfer, Tx};
use attest_protocol::{
    AccountId, Amount, Block, BoundedVec, Bytes, ChainId, CommitCertificate, CommitSig, DeviceName,
    Height, JobId, ModelId, Nonce, PublicKey, Round, SecretKey, Signature, Signed, SignedTx, Vote,
    VoteKind, tx_hash,
};

/// The audit with a clock that never advances (timing figures are not under test).
fn audit<I, E>(
    genesis: &GenesisFile,
    blocks: I,
    range: AuditRange,
) -> Result<attest_chain::audit::AuditReport, attest_chain::audit::AuditFailed>
where
    I: IntoIterator<Item = Result<CommittedBlock, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    attest_chain::audit::audit(genesis, blocks, range, no_clock)
}

/// A chain as an auditor receives it, with the validators' keys so tests can forge
/// certificates (as a colluding quorum could).
struct Fixture {
    genesis: GenesisFile,
    blocks: Vec<CommittedBlock>,
    keys: Vec<SecretKey>,
    providers: Vec<AccountId>,
}

const TRANSFERS: u64 = 3;
const TINY: &str = "attest-tiny-1b";
/// Tampering tests pick blocks up to height 6 and the range test reads to 5; a few idle
/// blocks after the jobs end make sure they exist.
const MIN_HEIGHT: u64 = 10;

fn config(cheat: Option<Cheat>) -> CoreConfig {
    let mut config = CoreConfig {
        idle_block_interval_ms: 200,
        ..CoreConfig::default()
    };
    config.market.danger_cheat = cheat;
    config
}

/// Four validators and one client, on a genesis where every result is spot-checked (so each
/// job has a verdict, and a cheat is always caught).
fn net(cheat: Option<Cheat>) -> LocalNet {
    let mut net = LocalNet::new(4, 1, config(cheat));
    net.genesis.genesis.params.check_probability_ppm = 1_000_000;
    let id = GenesisId {
        chain_id: net.genesis.genesis.chain_id.clone(),
        hash: net.genesis.hash(),
    };
    // Nothing has run yet: restart every node on the new genesis with an empty store.
    for i in 0..net.nodes.len() {
        net.nodes[i].store = MemStore::new(id.clone());
        net.start(i);
    }
    net
}

fn signed(net: &LocalNet, nonce: u64, action: Action) -> SignedTx {
    let tx = Tx {
        nonce: Nonce(nonce),
        fee: net.genesis.genesis.params.min_fee,
        action,
    };
    Signed::sign(net.chain_id(), &net.clients[0], tx)
}

fn open_job(net: &LocalNet, nonce: u64, provider: AccountId) -> SignedTx {
    let action = Action::OpenJob(OpenJob {
        model: ModelId::new(TINY).unwrap(),
        input: Bytes::new(b"audit me".to_vec()).unwrap(),
        max_tokens: 4,
        provider,
        device: DeviceName::new("h100-sxm").unwrap(),
        price_per_token: Amount(100),
        deadline_ms: 30_000,
        check: attest_protocol::tx::CheckLevel::Random,
    });
    signed(net, nonce, action)
}

/// Runs `net` through `TRANSFERS` transfers and one job per provider in `providers` (node
/// indices), until every job is final on every node, and returns node 0's stored chain.
fn build(net: LocalNet, providers: &[usize]) -> Fixture {
    build_with(net, providers, Vec::new())
}

/// [`build`], with `extra` actions from the client after its transfers and jobs.
fn build_with(mut net: LocalNet, providers: &[usize], extra: Vec<Action>) -> Fixture {
    let recipient = SecretKey::from_seed([201; 32]).public();
    let mut txs = Vec::new();
    for nonce in 0..TRANSFERS {
        let transfer = Transfer {
            to: recipient,
            amount: Amount(1_000_000),
        };
        txs.push(signed(&net, nonce, Action::Transfer(transfer)));
    }
    let accounts: Vec<AccountId> = providers
        .iter()
        .map(|&i| net.nodes[i].key.public())
        .collect();
    let mut jobs = Vec::new();
    for (k, provider) in accounts.iter().enumerate() {
        let tx = open_job(&net, TRANSFERS + k as u64, *provider);
        jobs.push(JobId::from(tx_hash(&tx)));
        txs.push(tx);
    }
    let next = TRANSFERS + accounts.len() as u64;
    for (k, action) in extra.into_iter().enumerate() {
        txs.push(signed(&net, next + k as u64, action));
    }
    for tx in txs {
        net.submit(0, tx).expect("admitted");
    }
    let done = net.run_until(2_000_000, |net| {
        net.nodes.iter().all(|n| {
            let state = n.core.as_ref().unwrap().chain().state();
            jobs.iter()
                .all(|j| state.job(j).is_some_and(|j| j.phase.is_final()))
                && state.account(&recipient).balance == Amount(TRANSFERS * 1_000_000)
        }) && net.heights().iter().all(|h| *h >= MIN_HEIGHT)
    });
    assert!(done, "the jobs did not finish; heights {:?}", net.heights());
    net.assert_agreement();
    let store = &net.nodes[0].store;
    let blocks = store
        .blocks(Height(1)..=store.latest_height())
        .collect::<Result<Vec<_>, _>>()
        .expect("memory store reads");
    Fixture {
        genesis: net.genesis.clone(),
        blocks,
        keys: net.nodes.iter().map(|n| n.key.clone()).collect(),
        providers: accounts,
    }
}

/// The client stakes a node of its own (a sliver: a validator with next to no power, never
/// a checker) and unstakes part of it.
fn staking() -> &'static Fixture {
    static CHAIN: OnceLock<Fixture> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let net = net(None);
        let node = SecretKey::from_seed([202; 32]);
        let account = net.clients[0].public();
        let device = attest_protocol::tx::Capability {
            device: attest_protocol::DeviceName::new("cpu").unwrap(),
            memory_bytes: 256_000_000_000,
        };
        let stake =
            attest_protocol::tx::Stake::new(net.chain_id(), &node, account, Amount(3), device);
        let unstake = attest_protocol::tx::Unstake { amount: Amount(1) };
        build_with(
            net,
            &[],
            vec![Action::Stake(stake), Action::Unstake(unstake)],
        )
    })
}

fn honest() -> &'static Fixture {
    static CHAIN: OnceLock<Fixture> = OnceLock::new();
    CHAIN.get_or_init(|| build(net(None), &[1, 2]))
}

fn cheating() -> &'static Fixture {
    static CHAIN: OnceLock<Fixture> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let cheat = Cheat {
            mode: CheatMode::Flip,
            rate_ppm: RATE_ONE_PPM,
        };
        build(net(Some(cheat)), &[3])
    })
}

fn ok_items(
    blocks: &[CommittedBlock],
) -> impl Iterator<Item = Result<CommittedBlock, String>> + '_ {
    blocks.iter().cloned().map(Ok)
}

fn chain_id(f: &Fixture) -> &ChainId {
    &f.genesis.genesis.chain_id
}

/// A certificate for `block` signed by every validator, as a colluding quorum could make.
fn certify(f: &Fixture, block: &Block) -> CommitCertificate {
    let vote = Vote {
        height: block.header.height,
        round: Round(0),
        kind: VoteKind::Precommit,
        block: Some(block.hash()),
    };
    let mut signatures: Vec<CommitSig> = f
        .keys
        .iter()
        .map(|k| {
            let s = Signed::sign(chain_id(f), k, vote.clone());
            CommitSig {
                validator: s.signer,
                signature: s.signature,
            }
        })
        .collect();
    signatures.sort_by_key(|s| s.validator);
    CommitCertificate {
        height: block.header.height,
        round: Round(0),
        block: block.hash(),
        signatures: BoundedVec::new(signatures).unwrap(),
    }
}

/// The index of the first block at height 2 or more that carries a transaction.
fn first_with_txs(f: &Fixture) -> usize {
    f.blocks
        .iter()
        .position(|(b, _)| b.header.height.0 >= 2 && !b.txs.is_empty())
        .expect("a block with transactions")
}

/// Audits `blocks` and expects a failure at `height` for `check`; returns the error.
fn expect_failure(
    f: &Fixture,
    blocks: Vec<CommittedBlock>,
    height: u64,
    check: Check,
) -> AuditError {
    // The same failure when a reader thread verified what needs no state first (the audit
    // over HTTP): what failed there is verified again, and reported, by the replay.
    let chain = chain_id(f).clone();
    let fetched: Vec<_> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let previous = i.checked_sub(1).map(|p| &blocks[p].1);
            let same = b.0.last_commit.is_some() && b.0.last_commit.as_ref() == previous;
            Ok::<_, String>(attest_chain::audit::Fetched::verify(
                b.clone(),
                &chain,
                same,
            ))
        })
        .collect();
    let preverified =
        attest_chain::audit::audit_preverified(&f.genesis, fetched, AuditRange::ALL, no_clock)
            .expect_err("tampered chain must fail when preverified");
    assert_eq!(preverified.error.height(), Some(Height(height)));
    assert_eq!(preverified.error.check(), check, "{}", preverified.error);
    let failed = audit(
        &f.genesis,
        blocks.into_iter().map(Ok::<_, String>),
        AuditRange::ALL,
    )
    .expect_err("tampered chain must fail");
    let e = &failed.error;
    assert_eq!(e.height(), Some(Height(height)), "{e}");
    assert_eq!(e.check(), check, "{e}");
    let text = e.to_string();
    assert!(text.starts_with(&format!("height {height}: ")), "{text}");
    let report = &failed.report;
    assert!(!report.ok);
    assert_eq!(
        report.counts.blocks,
        height - 1,
        "blocks before the failure"
    );
    let failure = report.failure.as_ref().expect("failure recorded");
    assert_eq!(
        (failure.height, failure.check),
        (Some(Height(height)), check)
    );
    failed.error
}

#[test]
fn an_honest_chain_audits_clean_with_the_expected_counts() {
    let f = honest();
    let report = audit(&f.genesis, ok_items(&f.blocks), AuditRange::ALL).expect("audits clean");
    assert!(report.ok && report.failure.is_none());
    assert_eq!(report.schema, AUDIT_SCHEMA);
    assert_eq!(report.genesis_hash, f.genesis.hash());
    let n = f.blocks.len() as u64;
    let txs: u64 = f.blocks.iter().map(|(b, _)| b.txs.len() as u64).sum();
    // Each block's own certificate, and its last commit when that is not the certificate the
    // block before came with (the same one is verified once).
    let certs: u64 = f
        .blocks
        .iter()
        .enumerate()
        .map(|(i, (b, c))| {
            let previous = i.checked_sub(1).map(|p| &f.blocks[p].1);
            let last = b.last_commit.as_ref().filter(|l| Some(*l) != previous);
            (c.signatures.len() + last.map_or(0, |l| l.signatures.len())) as u64
        })
        .sum();
    let repeated = f
        .blocks
        .windows(2)
        .filter(|w| w[1].0.last_commit.as_ref() == Some(&w[0].1))
        .count();
    assert!(
        repeated > 0,
        "some block carries its parent's certificate as it came"
    );
    assert_eq!(report.counts.blocks, n);
    assert_eq!(report.counts.txs, txs);
    assert_eq!(report.counts.tx_signatures, txs);
    assert_eq!(report.counts.certificate_signatures, certs);
    assert_eq!(report.counts.signatures_verified, txs + certs);
    assert_eq!(report.replayed.counts, report.counts);
    assert_eq!(
        (report.first_height, report.last_height),
        (Some(Height(1)), Some(Height(n)))
    );
    let (last, _) = f.blocks.last().unwrap();
    assert_eq!(report.head.unwrap().hash, last.hash());

    // Transfers, two opened jobs, two commits, two verdicts (a job each: every result is
    // checked here), each job's provider agreed with and paid.
    assert!(txs >= TRANSFERS + 2 + 2 + 2, "{txs} transactions");
    assert_eq!((report.jobs.opened, report.jobs.results), (2, 2));
    assert_eq!((report.jobs.selected, report.jobs.verdicts), (2, 2));
    assert_eq!(
        (
            report.jobs.settled,
            report.jobs.refunded,
            report.jobs.disputes
        ),
        (2, 0, 0)
    );
    for provider in &f.providers {
        let row = report
            .providers
            .iter()
            .find(|r| r.account == *provider)
            .expect("provider in the table");
        assert_eq!(
            (row.jobs, row.results, row.checked, row.agreed),
            (1, 1, 1, 1)
        );
        assert_eq!(
            (row.settled, row.disputes_lost, row.slashed),
            (1, 0, Amount::ZERO)
        );
        assert!(row.earned > Amount::ZERO);
    }
    let given: u64 = report.providers.iter().map(|r| r.verdicts_given).sum();
    assert_eq!(given, 2, "two checkers' verdicts");
    assert!(report.slashes.is_empty());

    let v = &report.validation_latency_ms;
    assert_eq!(v.all.count, 2);
    assert!(v.all.p50_ms > 0 && v.all.p50_ms <= v.all.p99_ms && v.all.p99_ms <= v.all.max_ms);
    assert_eq!(v.by_model.get(TINY).map(|d| d.count), Some(2));
    assert_eq!(v.by_device.get("h100-sxm").map(|d| d.count), Some(2));
    let j = &report.job_latency_ms;
    assert_eq!(j.all.count, 2);
    assert!(j.all.min_ms > v.all.min_ms, "a job outlasts its check");
    assert!(report.timing.signatures_per_sec > 0);

    let json = serde_json::to_string(&report).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(json.contains("\"schema\":\"attest.audit/1\""), "{json}");
    let back: attest_chain::audit::AuditReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn a_range_reports_only_its_blocks_and_reads_no_further() {
    let f = honest();
    let read = std::cell::Cell::new(0u64);
    let items = ok_items(&f.blocks).inspect(|_| read.set(read.get() + 1));
    let range = AuditRange::new(Some(Height(3)), Some(Height(5))).unwrap();
    let report = audit(&f.genesis, items, range).expect("audits clean");
    assert_eq!(read.get(), 5, "replayed from 1, stopped at 5");
    assert_eq!(report.counts.blocks, 3);
    assert_eq!(
        (report.first_height, report.last_height),
        (Some(Height(3)), Some(Height(5)))
    );
    assert_eq!(report.replayed.counts.blocks, 5);
    assert_eq!(report.replayed.to_height, Height(5));
    let txs: u64 = f.blocks[2..5].iter().map(|(b, _)| b.txs.len() as u64).sum();
    assert_eq!(report.counts.txs, txs);

    let n = f.blocks.len() as u64;
    let beyond = AuditRange::new(None, Some(Height(n + 2))).unwrap();
    let failed = audit(&f.genesis, ok_items(&f.blocks), beyond).unwrap_err();
    assert!(matches!(failed.error, AuditError::Missing { height, .. } if height == Height(n + 1)));
    assert_eq!(
        failed.report.replayed.counts.blocks, n,
        "everything given was verified"
    );
    assert!(matches!(
        AuditRange::new(Some(Height(5)), Some(Height(3))),
        Err(AuditError::BadRange { .. })
    ));
}

#[test]
fn a_sled_data_dir_audits_like_memory() {
    let f = honest();
    let dir = tempfile::tempdir().unwrap();
    let id = GenesisId {
        chain_id: chain_id(f).clone(),
        hash: f.genesis.hash(),
    };
    {
        let mut store = SledStore::open(dir.path(), &id).unwrap();
        for (b, c) in &f.blocks {
            store.put_block(b, c).unwrap();
        }
    }
    let store = SledStore::open(dir.path(), &id).unwrap();
    let blocks = store.blocks(Height(1)..=store.latest_height());
    let from_disk = audit(&f.genesis, blocks, AuditRange::ALL).expect("audits clean");
    let from_memory = audit(&f.genesis, ok_items(&f.blocks), AuditRange::ALL).unwrap();
    assert_eq!(from_disk.counts, from_memory.counts);
    assert_eq!(from_disk.head, from_memory.head);
    assert_eq!(from_disk.providers, from_memory.providers);
}

#[test]
fn a_flipped_transaction_signature_fails_at_its_height() {
    let f = honest();
    let i = first_with_txs(f);
    let height = f.blocks[i].0.header.height.0;
    // Alone, the flip changes the transaction's hash, so the block's transaction root.
    let mut blocks = f.blocks.clone();
    let mut txs = blocks[i].0.txs.to_vec();
    txs[0].signature.0[10] ^= 0x01;
    blocks[i].0.txs = BoundedVec::new(txs.clone()).unwrap();
    expect_failure(f, blocks.clone(), height, Check::TxRoot);

    // A quorum that re-roots and re-signs the block still cannot make the signature valid.
    blocks.truncate(i + 1);
    blocks[i].0.header.tx_root = Block::tx_root(&txs);
    blocks[i].1 = certify(f, &blocks[i].0);
    let e = expect_failure(f, blocks, height, Check::TxSignature);
    assert!(
        matches!(
            e.block_error(),
            Some(BlockError::TxSignature { index: 0, .. })
        ),
        "{e}"
    );
}

#[test]
fn a_changed_header_field_fails_at_its_height() {
    let f = honest();
    let mut blocks = f.blocks.clone();
    blocks[3].0.header.time_ms += 1;
    let e = expect_failure(f, blocks, 4, Check::Certificate);
    assert!(
        matches!(
            e.block_error(),
            Some(BlockError::CertificateMismatch { .. })
        ),
        "{e}"
    );

    // Re-signed: a time not after the parent's, and a parent that is not the previous block.
    let mut blocks = f.blocks[..4].to_vec();
    blocks[3].0.header.time_ms = blocks[2].0.header.time_ms;
    blocks[3].1 = certify(f, &blocks[3].0);
    expect_failure(f, blocks, 4, Check::Timestamp);
    let mut blocks = f.blocks[..4].to_vec();
    blocks[3].0.header.prev = blocks[1].0.hash();
    blocks[3].1 = certify(f, &blocks[3].0);
    expect_failure(f, blocks, 4, Check::HashChain);
}

#[test]
fn a_certificate_below_quorum_fails_at_its_height() {
    let f = honest();
    let mut blocks = f.blocks.clone();
    let mut sigs = blocks[4].1.signatures.to_vec();
    assert!(
        sigs.len() >= 3,
        "a quorum of four equal validators is three"
    );
    sigs.truncate(2);
    blocks[4].1.signatures = BoundedVec::new(sigs).unwrap();
    let e = expect_failure(f, blocks, 5, Check::Certificate);
    let Some(BlockError::Certificate { error, .. }) = e.block_error() else {
        panic!("{e}");
    };
    assert!(matches!(error, CertError::InsufficientPower { .. }), "{e}");

    // A forged signature by a member is caught too.
    let mut blocks = f.blocks.clone();
    let mut sigs = blocks[4].1.signatures.to_vec();
    sigs[0].signature = Signature([7; 64]);
    blocks[4].1.signatures = BoundedVec::new(sigs).unwrap();
    expect_failure(f, blocks, 5, Check::Certificate);
}

#[test]
fn reordered_blocks_fail_at_the_first_out_of_place_height() {
    let f = honest();
    let mut blocks = f.blocks.clone();
    blocks.swap(2, 3);
    let e = expect_failure(f, blocks, 3, Check::Order);
    assert!(
        e.to_string()
            .contains("block at height 4, the next height is 3"),
        "{e}"
    );
}

#[test]
fn a_corrupt_state_root_fails_at_its_height() {
    let f = honest();
    let mut blocks = f.blocks.clone();
    blocks[5].0.header.state_root.0[0] ^= 0xff;
    expect_failure(f, blocks, 6, Check::Certificate);

    // Re-signed, the replay still disagrees with the header.
    let mut blocks = f.blocks[..6].to_vec();
    blocks[5].0.header.state_root.0[0] ^= 0xff;
    blocks[5].1 = certify(f, &blocks[5].0);
    let e = expect_failure(f, blocks, 6, Check::StateRoot);
    let json = serde_json::to_string(&AuditFailure::from(&e)).unwrap();
    assert!(json.contains("\"check\":\"state_root\""), "{json}");
}

#[test]
fn a_source_error_names_the_height_being_read() {
    let f = honest();
    let items = f.blocks[..2]
        .iter()
        .cloned()
        .map(Ok)
        .chain(std::iter::once(Err("disk on fire".to_owned())));
    let failed = audit(&f.genesis, items, AuditRange::ALL).unwrap_err();
    assert!(matches!(
        failed.error,
        AuditError::Source {
            height: Height(3),
            ..
        }
    ));
    assert!(failed.error.to_string().contains("disk on fire"));
}

#[test]
fn a_cheating_provider_is_slashed_and_the_report_says_so() {
    let f = cheating();
    let report = audit(&f.genesis, ok_items(&f.blocks), AuditRange::ALL).expect("audits clean");
    let cheat = f.providers[0];
    assert_eq!(report.jobs.disputes, 1);
    let slash = report
        .slashes
        .iter()
        .find(|s| s.account == cheat)
        .expect("the cheat is slashed");
    assert_eq!(slash.reason, "dispute_lost");
    assert!(slash.amount > Amount::ZERO && slash.job.is_some());
    let row = report
        .providers
        .iter()
        .find(|r| r.account == cheat)
        .unwrap();
    assert_eq!(
        (row.jobs, row.checked, row.agreed, row.disputes_lost),
        (1, 1, 0, 1)
    );
    assert_eq!(row.slashed, slash.amount);
    assert_eq!(row.settled, 0, "refunded, not paid");
    let winners: u64 = report.providers.iter().map(|r| r.disputes_won).sum();
    assert_eq!(winners, 1, "the checker won");
    assert_eq!(report.jobs.refunded, 1);
}

fn export(f: &Fixture) -> Vec<u8> {
    let mut out = Vec::new();
    let summary = export_jsonl(&f.genesis, ok_items(&f.blocks), &mut out).expect("exports");
    assert_eq!(summary.blocks, f.blocks.len() as u64);
    out
}

fn unhex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("hex")
}

fn tagged(tag: &str, data: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    h.update(&[0]);
    h.update(data);
    h.finalize().to_hex().to_string()
}

#[test]
fn the_export_recomputes_with_plain_blake3_and_ed25519() {
    let f = honest();
    let out = export(f);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines[0]["type"], "genesis");
    assert_eq!(lines[0]["schema"], EXPORT_SCHEMA);
    assert_eq!(
        tagged("attest/genesis/v1", &unhex(&lines[0]["hashed_bytes"])),
        lines[0]["genesis_hash"]
    );
    let blocks: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "block").collect();
    let txs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "tx").collect();
    assert_eq!(blocks.len(), f.blocks.len());
    let tx_total: usize = f.blocks.iter().map(|(b, _)| b.txs.len()).sum();
    assert_eq!(txs.len(), tx_total);
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["blocks"], f.blocks.len() as u64);

    // One block hash, from the exported header bytes alone.
    let i = first_with_txs(f);
    let b = blocks[i];
    let hash = tagged("attest/block-header/v1", &unhex(&b["header_bytes"]));
    assert_eq!(hash, b["hash"]);
    assert_eq!(hash, f.blocks[i].0.hash().to_string());
    // Its certificate's signatures, over the exported signed bytes.
    for sig in b["certificate"]["signatures"].as_array().unwrap() {
        let key: PublicKey = sig["validator"].as_str().unwrap().parse().unwrap();
        let signature: Signature = sig["signature"].as_str().unwrap().parse().unwrap();
        assert!(key.verify(&unhex(&sig["signed_bytes"]), &signature));
    }
    // The previous certificate's hash is the header's `last_commit`.
    let last_commit = tagged("attest/commit/v1", &unhex(&b["last_commit"]["bytes"]));
    assert_eq!(last_commit, b["header"]["last_commit"]);

    // One transaction hash and signature, from the exported bytes alone.
    let height = f.blocks[i].0.header.height.0;
    let t = txs.iter().find(|t| t["height"] == height).unwrap();
    let mut signed_tx = unhex(&t["signer"]);
    signed_tx.extend(unhex(&t["signature"]));
    signed_tx.extend(unhex(&t["body_bytes"]));
    let hash = tagged("attest/tx/v1", &signed_tx);
    assert_eq!(hash, t["hash"]);
    assert_eq!(hash, tx_hash(&f.blocks[i].0.txs[0]).to_string());
    let signer: PublicKey = t["signer"].as_str().unwrap().parse().unwrap();
    let signature: Signature = t["signature"].as_str().unwrap().parse().unwrap();
    let payload = unhex(&t["signed_bytes"]);
    assert!(signer.verify(&payload, &signature));
    assert!(payload.starts_with(b"attest/sig/tx/v1\0"));
    assert!(payload.ends_with(&unhex(&t["body_bytes"])));

    // And every line parses back into its typed form.
    for line in text.lines() {
        let typed: ExportLine = serde_json::from_str(line).expect("typed line");
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }
}

#[test]
fn the_export_of_a_tampered_chain_stops_before_the_bad_block() {
    let f = honest();
    let mut blocks = f.blocks.clone();
    blocks[5].0.header.state_root.0[0] ^= 0xff;
    let mut out = Vec::new();
    let err = export_jsonl(
        &f.genesis,
        blocks.into_iter().map(Ok::<_, String>),
        &mut out,
    )
    .expect_err("refused");
    assert!(
        matches!(err, ExportError::Audit(ref e) if e.height() == Some(Height(6))),
        "{err}"
    );
    let text = String::from_utf8(out).unwrap();
    let blocks = text
        .lines()
        .filter(|l| l.contains("\"type\":\"block\""))
        .count();
    assert_eq!(blocks, 5);
    assert!(!text.contains("\"type\":\"end\""));
}

/// Runs the reference verifier on the export of `f` (tampered by `tamper`), if python3 with
/// the `blake3` and `cryptography` modules is here; `None` if it cannot run.
fn reference_verifier(f: &Fixture, tamper: impl Fn(String) -> String) -> Option<(bool, String)> {
    reference_script("verify_export.py", f, tamper)
}

/// Runs `docs/reference/SCRIPT` on the export of `f` (tampered by `tamper`), if python3 with
/// the `blake3` and `cryptography` modules is here; `None` if it cannot run.
fn reference_script(
    script: &str,
    f: &Fixture,
    tamper: impl Fn(String) -> String,
) -> Option<(bool, String)> {
    let probe = Command::new("python3")
        .args(["-c", "import blake3, cryptography"])
        .output()
        .ok()?;
    if !probe.status.success() {
        eprintln!("skipping: python3 with blake3 and cryptography is not available");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let text = tamper(String::from_utf8(export(f)).unwrap());
    std::fs::write(&path, text).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/reference")
        .join(script);
    let run = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!("{}:\n{output}", script.display());
    Some((run.status.success(), output))
}

#[test]
fn the_reference_verifier_accepts_the_export_and_rejects_a_flipped_signature() {
    let f = honest();
    let Some((ok, output)) = reference_verifier(f, |t| t) else {
        return;
    };
    assert!(ok, "{output}");
    assert!(output.contains("OK"), "{output}");

    // Flip one hex digit of the first transaction signature.
    let i = first_with_txs(f);
    let sig = f.blocks[i].0.txs[0].signature.to_string();
    let mut bad = sig.clone().into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    let (ok, output) = reference_verifier(f, |t| t.replacen(&sig, &bad, 1)).expect("ran before");
    assert!(!ok, "{output}");
    let height = f.blocks[i].0.header.height.0;
    assert!(output.contains(&format!("height {height}")), "{output}");
}

/// The second implementation of the contracts (docs/reference/replay.py, written from
/// docs/PROTOCOL.md) recomputes every state root of an honest chain, of one with a cheater,
/// its disputes and slashes, and of one with a stake and an unstake; a root it cannot reach
/// fails it, naming the height.
#[test]
fn the_reference_replayer_recomputes_every_state_root() {
    for f in [honest(), cheating(), staking()] {
        let Some((ok, output)) = reference_script("replay.py", f, |t| t) else {
            return;
        };
        assert!(ok, "{output}");
        let blocks = f.blocks.len();
        assert!(
            output.contains(&format!("{} state roots matched", blocks + 1)),
            "{output}"
        );
    }
    let f = cheating();
    let last = f.blocks.len();
    let (ok, output) = reference_script("replay.py", f, |t| {
        let end = t
            .rfind("\"state_root\":\"")
            .expect("the end line has a root");
        let at = end + "\"state_root\":\"".len();
        format!("{}{}{}", &t[..at], "00".repeat(32), &t[at + 64..])
    })
    .expect("ran before");
    assert!(!ok, "{output}");
    assert!(output.contains(&format!("at height {last}")), "{output}");
}

#[test]
fn the_documented_precommit_payload_is_the_code_s() {
    let chain = ChainId::new("attest-docs").unwrap();
    let vote = Vote {
        height: Height(1),
        round: Round(0),
        kind: VoteKind::Precommit,
        block: Some(attest_protocol::BlockHash([0xab; 32])),
    };
    let payload = hex::encode(attest_protocol::signing_payload(&chain, &vote));
    let doc = include_str!("../../docs/PROTOCOL.md");
    let section = doc
        .split("## 12. Ledger export")
        .nth(1)
        .expect("section 12");
    assert!(section.contains(&payload), "section 12 lacks {payload}");
    assert!(section.contains(EXPORT_SCHEMA) && section.contains(AUDIT_SCHEMA));
}
