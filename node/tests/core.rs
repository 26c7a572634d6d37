//! Several `NodeCore`s on the lossless local network: they agree on every block, commit
//! transfers, keep going with one node down, and a restarted node replays its store and syncs
//! back. (The seeded faulty-network simulator lives in `tests/`.)

use attest_node::core::CoreConfig;
use attest_node::localnet::LocalNet;
use attest_node::store::Store;
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
        let now = net.now;
        let tx = transfer(&client, &chain, nonce);
        net.nodes[0]
            .core
            .as_mut()
            .unwrap()
            .submit_tx(now, tx)
            .expect("admitted");
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
