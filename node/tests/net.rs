//! The swarm on real loopback sockets: gossip is delivered only after validation, requests
//! are answered, and oversized frames are refused.

use std::time::Duration;

use attest_node::net::{self, Behaviour, BehaviourEvent, NetConfig, topic};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};

fn swarm(seed: u8) -> Swarm<Behaviour> {
    net::build_swarm(&NetConfig::new([seed; 32])).expect("swarm builds")
}

/// Drives both swarms until `done` says so; the 30 s guard only stops a hung test, it
/// measures nothing.
async fn drive<T>(
    a: &mut Swarm<Behaviour>,
    b: &mut Swarm<Behaviour>,
    mut done: impl FnMut(Side, &mut Swarm<Behaviour>, SwarmEvent<BehaviourEvent>) -> Option<T>,
) -> T {
    let run = async {
        loop {
            tokio::select! {
                ev = a.select_next_some() => if let Some(t) = done(Side::A, a, ev) { return t },
                ev = b.select_next_some() => if let Some(t) = done(Side::B, b, ev) { return t },
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("network test hung")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

async fn connected_pair() -> (Swarm<Behaviour>, Swarm<Behaviour>) {
    let (mut a, mut b) = (swarm(1), swarm(2));
    net::listen(&mut a, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr: Multiaddr = drive(&mut a, &mut b, |side, _, ev| match (side, ev) {
        (Side::A, SwarmEvent::NewListenAddr { address, .. }) => Some(address),
        _ => None,
    })
    .await;
    let a_id = *a.local_peer_id();
    let dial = addr.with(libp2p::multiaddr::Protocol::P2p(a_id));
    assert_eq!(net::bootnode_peer(&dial), Some(a_id));
    b.dial(dial).unwrap();
    // Wait until each side has seen the other subscribe to the transactions topic.
    let mut subscribed = (false, false);
    drive(&mut a, &mut b, |side, _, ev| {
        if let SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
            topic: t,
            ..
        })) = ev
            && t == IdentTopic::new(topic::TXS).hash()
        {
            match side {
                Side::A => subscribed.0 = true,
                Side::B => subscribed.1 = true,
            }
        }
        (subscribed.0 && subscribed.1).then_some(())
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn gossip_arrives_and_waits_for_validation() {
    let (mut a, mut b) = connected_pair().await;
    let payload = b"a signed transaction".to_vec();
    a.behaviour_mut()
        .gossipsub
        .publish(IdentTopic::new(topic::TXS), payload.clone())
        .unwrap();
    let (source, id, data) = drive(&mut a, &mut b, |side, _, ev| match (side, ev) {
        (
            Side::B,
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })),
        ) => Some((propagation_source, message_id, message.data)),
        _ => None,
    })
    .await;
    assert_eq!(data, payload);
    assert_eq!(source, *a.local_peer_id());
    // The message id is the blake3 hash of the data.
    assert_eq!(id.0, blake3::hash(&payload).as_bytes().to_vec());
    // It is held for validation until the application reports on it.
    assert!(
        b.behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, MessageAcceptance::Accept)
    );
}

#[tokio::test]
async fn requests_are_answered_and_oversized_ones_refused() {
    let (mut a, mut b) = connected_pair().await;
    let a_id = *a.local_peer_id();
    b.behaviour_mut()
        .requests
        .send_request(&a_id, b"blocks 1..=10".to_vec());
    let response = drive(&mut a, &mut b, |_, swarm, ev| match ev {
        SwarmEvent::Behaviour(BehaviourEvent::Requests(request_response::Event::Message {
            message: Message::Request {
                request, channel, ..
            },
            ..
        })) => {
            assert_eq!(request, b"blocks 1..=10");
            swarm
                .behaviour_mut()
                .requests
                .send_response(channel, b"here".to_vec())
                .unwrap();
            None
        }
        SwarmEvent::Behaviour(BehaviourEvent::Requests(request_response::Event::Message {
            message: Message::Response { response, .. },
            ..
        })) => Some(response),
        _ => None,
    })
    .await;
    assert_eq!(response, b"here");

    let big = vec![0u8; net::MAX_REQUEST_BYTES + 1];
    let sent = b.behaviour_mut().requests.send_request(&a_id, big);
    let failed = drive(&mut a, &mut b, |side, _, ev| match (side, ev) {
        (
            Side::B,
            SwarmEvent::Behaviour(BehaviourEvent::Requests(
                request_response::Event::OutboundFailure { request_id, .. },
            )),
        ) => Some(request_id),
        (
            _,
            SwarmEvent::Behaviour(BehaviourEvent::Requests(request_response::Event::Message {
                message: Message::Request { .. },
                ..
            })),
        ) => panic!("an oversized request must not be delivered"),
        _ => None,
    })
    .await;
    assert_eq!(failed, sent);
}

#[tokio::test]
async fn rejected_messages_lower_the_senders_score() {
    let (mut a, mut b) = connected_pair().await;
    let a_id = *a.local_peer_id();
    let before = b
        .behaviour()
        .gossipsub
        .peer_score(&a_id)
        .expect("scoring is on");
    for i in 0..3u8 {
        let garbage = vec![0xff, i];
        a.behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(topic::CONSENSUS), garbage)
            .unwrap();
        let (source, id) = drive(&mut a, &mut b, |side, _, ev| match (side, ev) {
            (
                Side::B,
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    ..
                })),
            ) => Some((propagation_source, message_id)),
            _ => None,
        })
        .await;
        b.behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, MessageAcceptance::Reject);
    }
    let after = b.behaviour().gossipsub.peer_score(&a_id).unwrap();
    assert!(after < before && after < -10.0, "score {before} -> {after}");
}
