//! Several `NodeCore`s on the lossless local network: they agree on every block, commit
//! transfers, keep going with one node down, and a restarted node replays its store and syncs
//! back. (The seeded faulty-network simulator lives in `tests/`.)

use attest_core::CoreConfig;
use attest_core::localnet::LocalNet;
use attest_core::store::Store;
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::{Amount, ChainId, Height, Nonce, SecretKey, Signed};

fn config() -> CoreConfig {
    CoreConfig {
        idle_block_interval_ms: 200,
        ..CoreConfig::default()
    }
}

fn transfer(client: &SecretKey, chain: &ChainId, nonce: u64) -> Signed<Tx> {
    let to = SecretKey::from_seed([201; 32]).public();
    let tx = Tx {
        nonce: Nonce(nonce),
        fee: attest_contracts_sim::Params::default().min_fee,
        action: Action::Transfer(Transfer {
            to,
            amount: Amount(1_000_000),
        }),
    };
    Signed::sign(chain, client, tx)
}

#[test]
fn four_validators_commit_transfers_and_agree() {
    let mut net = LocalNet::new(4, 1, config());
    let (client, chain) = (net.clients[0].clone(), net.chain_id().clone());
    for nonce in 0..20 {
        let tx = transfer(&client, &chain, nonce);
        net.submit(0, tx).expect("admitted");
    }
    let recipient = SecretKey::from_seed([201; 32]).public();
    let done = net.run_until(200_000, |net| {
        net.nodes.iter().all(|n| {
            let c = n.core.as_ref().unwrap();
            c.chain().state().account(&recipient).balance == Amount(20_000_000)
                && c.mempool_len() == 0
        }) && net.heights().iter().all(|h| *h >= 5)
    });
    assert!(
        done,
        "transfers did not commit; heights {:?}",
        net.heights()
    );
    net.assert_agreement();
    for node in &net.nodes {
        let core = node.core.as_ref().unwrap();
        assert_eq!(
            core.chain().state().account(&client.public()).nonce,
            Nonce(20)
        );
        core.chain()
            .state()
            .check_invariants()
            .expect("invariants hold");
        assert_eq!(node.store.latest_height(), core.chain().height());
    }
}

#[test]
fn three_of_four_keep_going_and_a_restarted_node_catches_up() {
    let mut net = LocalNet::new(4, 0, config());
    assert!(net.run_until(200_000, |net| net.heights().iter().all(|h| *h >= 3)));
    net.crash(3);
    let crashed_at = net.nodes[3].store.latest_height();
    let target = crashed_at.0 + 8;
    assert!(net.run_until(200_000, |net| {
        net.heights()[..3].iter().all(|h| *h >= target)
    }));
    net.assert_agreement();

    net.start(3);
    let replayed = net.nodes[3].core.as_ref().unwrap().chain().height();
    assert_eq!(replayed, crashed_at, "replayed its store");
    let target = net.heights()[0] + 3;
    assert!(net.run_until(200_000, |net| net.heights().iter().all(|h| *h >= target)));
    net.assert_agreement();
    let hashes: Vec<_> = net
        .nodes
        .iter()
        .map(|n| n.committed.get(&Height(target)).copied())
        .collect();
    assert!(
        hashes.iter().all(|h| h.is_some() && *h == hashes[0]),
        "all four agree at {target}"
    );
}

/// An `OpenJob` from a client, naming `provider`.
fn open_job(
    client: &SecretKey,
    chain: &ChainId,
    nonce: u64,
    model: &str,
    provider: attest_protocol::AccountId,
) -> Signed<Tx> {
    let tx = Tx {
        nonce: Nonce(nonce),
        fee: attest_contracts_sim::Params::default().min_fee,
        action: Action::OpenJob(attest_protocol::tx::OpenJob {
            model: attest_protocol::ModelId::new(model).unwrap(),
            input: attest_protocol::Bytes::new(b"hello, attest".to_vec()).unwrap(),
            max_tokens: 8,
            provider,
            device: attest_protocol::DeviceName::new("h100-sxm").unwrap(),
            price_per_token: Amount(100),
            deadline_ms: 30_000,
            check: attest_protocol::tx::CheckLevel::Random,
        }),
    };
    Signed::sign(chain, client, tx)
}

#[test]
fn a_job_opened_through_a_node_runs_settles_and_its_output_is_delivered_and_checked() {
    let mut net = LocalNet::new(4, 1, config());
    let (client, chain) = (net.clients[0].clone(), net.chain_id().clone());
    let provider = net.nodes[2].key.public();
    let tx = open_job(&client, &chain, 0, "attest-tiny-1b", provider);
    let job = attest_protocol::JobId::from(attest_protocol::tx_hash(&tx));
    net.submit(0, tx).expect("admitted");
    let done = net.run_until(400_000, |net| {
        net.nodes.iter().all(|n| {
            let state = n.core.as_ref().unwrap().chain().state();
            state.job(&job).is_some_and(|j| j.phase.is_final())
        })
    });
    assert!(done, "the job did not finish; heights {:?}", net.heights());
    net.assert_agreement();
    let gateway = net.nodes[0].core.as_ref().unwrap();
    let state = gateway.chain().state();
    assert_eq!(
        state.job(&job).unwrap().phase,
        attest_contracts_sim::JobPhase::Settled
    );
    // The gateway fetched the output from the provider's node and checked it.
    let w = attest_protocol::workload::Job::new("attest-tiny-1b", b"hello, attest", 8).unwrap();
    let expected = attest_protocol::workload::execute(&w).output;
    assert_eq!(gateway.job_output(&job), Some(expected.as_slice()));
    assert_eq!(gateway.gateway_stats().verified, 1);
    assert!(
        state
            .stakes()
            .all(|(who, _)| state.record(who).slashes == 0)
    );
    let provider = state.job(&job).unwrap().provider;
    assert_eq!(state.record(&provider).provided.settled, 1);
    let clock = gateway.measurements().job(&job).expect("measured");
    assert!(clock.opened.is_some() && clock.committed.is_some() && clock.closed.is_some());
}

#[test]
fn a_job_the_contract_would_refuse_is_refused_at_once_with_the_reason() {
    let mut net = LocalNet::new(4, 1, config());
    let (client, chain) = (net.clients[0].clone(), net.chain_id().clone());
    let now = net.now;
    let provider = net.nodes[1].key.public();
    let core = net.nodes[0].core.as_mut().unwrap();
    let unknown = open_job(&client, &chain, 0, "attest-huge-9t", provider);
    let err = core.submit_tx(now, unknown).unwrap_err().to_string();
    assert!(err.contains("attest-huge-9t"), "{err}");
    let stranger = SecretKey::from_seed([77; 32]).public();
    let unstaked = open_job(&client, &chain, 0, "attest-tiny-1b", stranger);
    let err = core.submit_tx(now, unstaked).unwrap_err().to_string();
    assert!(err.contains("not staked"), "{err}");
    let to_self = open_job(&client, &chain, 0, "attest-tiny-1b", client.public());
    let err = core.submit_tx(now, to_self).unwrap_err().to_string();
    assert!(
        err.contains("own provider") || err.contains("self"),
        "{err}"
    );
    assert_eq!(core.mempool_len(), 0, "nothing refused was admitted");
}

#[test]
fn transactions_are_gossiped_in_batches_and_a_forged_one_spoils_its_batch() {
    use attest_core::wire::TxBatch;
    use attest_core::{Effect, GossipVerdict, topic};
    use attest_protocol::{BoundedVec, Canonical};

    let mut net = LocalNet::new(4, 2, config());
    let chain = net.chain_id().clone();
    let (a, b) = (net.clients[0].clone(), net.clients[1].clone());
    let batch = |txs: Vec<Signed<Tx>>| TxBatch(BoundedVec::new(txs).expect("small")).encode();

    // Three transactions submitted to node 0 within the batch window go out as one message.
    let sender = net.nodes[0].core.as_mut().unwrap();
    while sender.poll_effect().is_some() {}
    let now = 1_000_000;
    for nonce in 0..3 {
        sender
            .submit_tx(now, transfer(&a, &chain, nonce))
            .expect("admitted");
    }
    let gossip = |core: &mut attest_core::NodeCore| {
        std::iter::from_fn(|| core.poll_effect())
            .filter_map(|e| match e {
                Effect::Broadcast { topic, data } if topic.starts_with("attest/txs") => {
                    Some((topic, data))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        gossip(sender).is_empty(),
        "nothing before the batch window ends"
    );
    sender.handle_timeout(now + attest_core::wire::TX_BATCH_MS);
    let sent = gossip(sender);
    assert_eq!(sent.len(), 1, "one message for three transactions");
    assert_eq!(sent[0].0, topic::TX_BATCHES);
    let got = TxBatch::decode(&sent[0].1).expect("a batch");
    assert_eq!(got.0.len(), 3);

    // Another node admits the batch and forwards it; the same batch again is ignored.
    let peer = b"peer".to_vec();
    let receiver = net.nodes[1].core.as_mut().unwrap();
    let verdict = receiver.handle_gossip(now, &peer, topic::TX_BATCHES, &sent[0].1);
    assert_eq!(verdict, GossipVerdict::Accept);
    assert_eq!(receiver.mempool_len(), 3);
    let again = receiver.handle_gossip(now, &peer, topic::TX_BATCHES, &sent[0].1);
    assert!(matches!(again, GossipVerdict::Ignore(_)), "{again:?}");

    // One forged transaction spoils the batch, though the valid ones in it are kept.
    let mut forged = transfer(&b, &chain, 1);
    forged.signature.0[3] ^= 1;
    let mixed = batch(vec![transfer(&b, &chain, 0), forged]);
    let verdict = receiver.handle_gossip(now, &peer, topic::TX_BATCHES, &mixed);
    assert!(matches!(verdict, GossipVerdict::Reject(_)), "{verdict:?}");
    assert_eq!(receiver.mempool_len(), 4);
    // Bytes that are not a batch are refused too.
    let junk = receiver.handle_gossip(now, &peer, topic::TX_BATCHES, b"not a batch");
    assert!(matches!(junk, GossipVerdict::Reject(_)), "{junk:?}");

    // A batch the host verified off the loop gets the same treatment.
    let ok = |nonce| transfer(&b, &chain, nonce).verify(&chain).expect("valid");
    let verdict = receiver.handle_checked_tx_batch(now, vec![Ok(ok(1)), Ok(ok(2))]);
    assert_eq!(verdict, GossipVerdict::Accept);
    assert_eq!(receiver.mempool_len(), 6);
    let again = receiver.handle_checked_tx_batch(now, vec![Ok(ok(1))]);
    assert!(matches!(again, GossipVerdict::Ignore(_)), "{again:?}");
    let mut bad = transfer(&b, &chain, 3);
    bad.signature.0[0] ^= 1;
    let error = bad.verify(&chain).expect_err("forged");
    let verdict = receiver.handle_checked_tx_batch(now, vec![Ok(ok(3)), Err(error)]);
    assert!(matches!(verdict, GossipVerdict::Reject(_)), "{verdict:?}");
    assert_eq!(receiver.mempool_len(), 7);
}

#[test]
fn votes_the_host_verified_reach_consensus_and_a_forged_one_is_refused() {
    use attest_core::wire::ConsensusMessage;
    use attest_core::{Effect, GossipVerdict, topic};
    use attest_protocol::Canonical;

    let mut net = LocalNet::new(4, 1, config());
    net.host_checks_votes = true;
    let (client, chain) = (net.clients[0].clone(), net.chain_id().clone());
    for nonce in 0..10 {
        net.submit(0, transfer(&client, &chain, nonce))
            .expect("admitted");
    }
    let done = net.run_until(200_000, |net| {
        net.heights().iter().all(|h| *h >= 4)
            && net
                .nodes
                .iter()
                .all(|n| n.core.as_ref().unwrap().mempool_len() == 0)
    });
    assert!(
        done,
        "no progress with host-verified votes: {:?}",
        net.heights()
    );
    net.assert_agreement();

    // A vote of node 0's, as the host would hand it over: its signature checked, or not.
    let vote = (0..200)
        .find_map(|_| {
            net.step();
            let core = net.nodes[0].core.as_mut().unwrap();
            std::iter::from_fn(|| core.poll_effect()).find_map(|e| match e {
                Effect::Broadcast { topic: t, data } if t == topic::CONSENSUS => {
                    match ConsensusMessage::decode(&data) {
                        Ok(ConsensusMessage::Vote(v)) => Some(v),
                        _ => None,
                    }
                }
                _ => None,
            })
        })
        .expect("node 0 votes");
    let peer = b"peer".to_vec();
    let now = net.now;
    let receiver = net.nodes[1].core.as_mut().unwrap();
    let mut forged = vote.clone();
    forged.signature.0[5] ^= 1;
    let error = forged.verify(&chain).expect_err("forged");
    let verdict = receiver.handle_checked_vote(now, &peer, Err(error));
    assert!(matches!(verdict, GossipVerdict::Reject(_)), "{verdict:?}");
    let verdict = receiver.handle_checked_vote(now, &peer, vote.verify(&chain));
    assert!(
        !matches!(verdict, GossipVerdict::Reject(_)),
        "a valid vote is never refused: {verdict:?}"
    );
}

#[test]
fn a_decided_block_that_leaves_no_validators_halts_the_node_and_is_not_persisted() {
    let mut net = LocalNet::new(1, 0, config());
    let chain = net.chain_id().clone();
    let validator = net.nodes[0].key.clone();
    let ready = net.run_until(10_000, |net| net.heights()[0] >= 1);
    assert!(ready, "no first block");
    let stake = net.nodes[0]
        .core
        .as_ref()
        .unwrap()
        .chain()
        .state()
        .stake(&validator.public())
        .expect("staked")
        .bonded;
    let nonce = net.nodes[0]
        .core
        .as_ref()
        .unwrap()
        .chain()
        .state()
        .account(&validator.public())
        .nonce;
    let unstake = Tx {
        nonce,
        fee: attest_contracts_sim::Params::default().min_fee,
        action: Action::Unstake(attest_protocol::tx::Unstake { amount: stake }),
    };
    net.submit(0, Signed::sign(&chain, &validator, unstake))
        .expect("admitted");
    let halted = net.run_until(60_000, |net| !net.halts.is_empty());
    assert!(halted, "the node went on with nobody to validate");
    let (who, reason) = &net.halts[0];
    assert_eq!(*who, 0);
    assert!(reason.contains("cannot be applied"), "{reason}");
    assert!(net.nodes[0].core.is_none(), "a halted node is stopped");
    // The store ends at the block before: the decided one was not persisted.
    let latest = net.nodes[0].store.latest_height();
    let committed = net.nodes[0].committed.keys().last().copied();
    assert_eq!(Some(latest), committed);
    assert!(
        net.nodes[0].store.block(latest.next()).unwrap().is_none(),
        "the block that could not be applied was stored"
    );
}
