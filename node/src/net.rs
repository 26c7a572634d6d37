//! The libp2p half of the shell: the swarm's behaviours, topics and wire codec.
//!
//! Transport is TCP with noise and yamux. Behaviours: identify and ping (so any standard libp2p
//! peer can identify the node), Kademlia on the node's own protocol ([`KAD_PROTOCOL`]) so one
//! reachable bootnode is enough to find the rest (peers' listen addresses learned through
//! identify go into its routing table), gossipsub for transactions, consensus messages and
//! adverts, and request-response for block sync and job outputs. This module builds the swarm and says
//! how bytes travel; it decides nothing about their meaning, which is the node core's job. It
//! never listens or dials anywhere it is not told to (no mDNS).

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, identify, identity, kad, noise, ping, tcp, yamux,
};

/// Gossip topics (their names are the core's).
pub use attest_core::topic;

/// The request-response protocol name.
pub const REQUEST_PROTOCOL: &str = "/attest/req/1";
/// The identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/attest/1";
/// The Kademlia protocol: the nodes' own DHT, never mixed with the public IPFS one.
pub const KAD_PROTOCOL: &str = "/attest/kad/1";
/// How often the routing table is refreshed by a bootstrap query (libp2p also bootstraps when
/// the table gains its first peers).
pub const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30);

/// Largest request read from a peer: requests name heights or jobs, so they are small.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest response read from a peer: a batch of blocks with certificates for sync.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Largest gossip message: a proposal carries a whole block (`limits::MAX_BLOCK_BYTES`).
pub const MAX_GOSSIP_BYTES: usize = attest_protocol::limits::MAX_BLOCK_BYTES + 64 * 1024;

/// How long gossipsub remembers a message id: shorter than the core's re-broadcast interval.
pub const DUPLICATE_CACHE: Duration = Duration::from_secs(1);

/// How the swarm is set up.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The seed of the node's ed25519 identity key (its PeerId).
    pub node_key_seed: [u8; 32],
    /// Gossipsub heartbeat. libp2p's 1 s default (with a 5 s initial delay) is for the open
    /// internet; a local testnet wants its mesh formed within a fraction of a second.
    pub heartbeat: Duration,
    /// Connections to validators must not close when briefly idle.
    pub idle_connection_timeout: Duration,
    /// How long a request waits for its response.
    pub request_timeout: Duration,
}

impl NetConfig {
    /// Defaults for a node with identity `node_key_seed`.
    pub fn new(node_key_seed: [u8; 32]) -> Self {
        Self {
            node_key_seed,
            heartbeat: Duration::from_millis(200),
            idle_connection_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The node's behaviours.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Who the peer is and what it speaks.
    pub identify: identify::Behaviour,
    /// Peer discovery: the routing table the shell dials peers from.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Topics.
    pub gossipsub: gossipsub::Behaviour,
    /// Block sync and job outputs.
    pub requests: request_response::Behaviour<BytesCodec>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Behaviour { identify, kad, ping, gossipsub, requests }")
    }
}

/// Building the swarm failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The key seed is not an ed25519 secret key.
    #[error("node key: {0}")]
    Key(String),
    /// A transport or behaviour could not be set up.
    #[error("building the libp2p swarm: {0}")]
    Build(String),
    /// A listen address was refused.
    #[error("listening on {addr}: {detail}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        detail: String,
    },
}

/// Builds the swarm (it listens and dials nothing yet) and subscribes it to every topic.
/// Must run inside a tokio runtime.
pub fn build_swarm(config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let keypair = identity::Keypair::ed25519_from_bytes(config.node_key_seed)
        .map_err(|e| NetError::Key(e.to_string()))?;
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.heartbeat)
        .heartbeat_initial_delay(config.heartbeat)
        // Every payload (transaction, vote, proposal, advert) carries its own ed25519
        // signature, which the core verifies, and the forwarding peer is authenticated by
        // noise; a gossipsub signature on top would be verified on every hop for nothing
        // (measured: ~20% of a loaded node's CPU). Messages go without author or sequence
        // number; their id is the hash of their bytes.
        .validation_mode(ValidationMode::Anonymous)
        // Nothing is forwarded until the core has judged it (report_message_validation_result).
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .max_transmit_size(MAX_GOSSIP_BYTES)
        // The core re-sends its own consensus messages every `rebroadcast_interval_ms` (2 s)
        // until the height is decided; gossipsub refuses to publish bytes still in its
        // duplicate cache (60 s by default), which would silently drop every re-send. A
        // message crosses a local network in milliseconds, so 1 s still stops forwarding
        // loops, and a re-received copy costs the core a lookup.
        .duplicate_cache_time(DUPLICATE_CACHE)
        .build()
        .map_err(|e| NetError::Build(e.to_string()))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Build(e.to_string()))?
        .with_behaviour(|key| {
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?;
            let (params, thresholds) = peer_scoring();
            gossipsub.with_peer_score(params, thresholds)?;
            let requests = request_response::Behaviour::new(
                [(StreamProtocol::new(REQUEST_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(config.request_timeout),
            );
            let me = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
            kad_config.set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL));
            let mut kad =
                kad::Behaviour::with_config(me, kad::store::MemoryStore::new(me), kad_config);
            // Answer queries whatever addresses we have: peers on a private network have no
            // confirmed external address, and discovery is the point.
            kad.set_mode(Some(kad::Mode::Server));
            Ok(Behaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.to_owned(),
                    key.public(),
                )),
                kad,
                ping: ping::Behaviour::new(ping::Config::new()),
                gossipsub,
                requests,
            })
        })
        .map_err(|e| NetError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    for t in topic::ALL {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(t))
            .map_err(|e| NetError::Build(format!("subscribing to {t}: {e}")))?;
    }
    Ok(swarm)
}

/// Peer scoring that punishes invalid messages and nothing else.
///
/// Every message the core rejects (bad signature, malformed) counts as an invalid delivery:
/// with weight -10 and topic weight 0.5 a peer's score is -5 after one, below the gossip
/// threshold (-10) after two and graylisted (-80) after four, decaying by 0.3 per interval.
/// The mesh-delivery-rate penalties are off: a quiet local testnet delivers few messages, and
/// those rules would punish honest but idle peers. IP colocation is off: on a local testnet
/// every peer is 127.0.0.1.
fn peer_scoring() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic_params = gossipsub::TopicScoreParams {
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.3,
        ..gossipsub::TopicScoreParams::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..gossipsub::PeerScoreParams::default()
    };
    for t in topic::ALL {
        params
            .topics
            .insert(IdentTopic::new(t).hash(), topic_params.clone());
    }
    (params, gossipsub::PeerScoreThresholds::default())
}

/// Starts listening on `addr`.
pub fn listen(swarm: &mut Swarm<Behaviour>, addr: Multiaddr) -> Result<(), NetError> {
    swarm
        .listen_on(addr.clone())
        .map(|_| ())
        .map_err(|e| NetError::Listen {
            addr,
            detail: e.to_string(),
        })
}

/// The PeerId named by the `/p2p/` suffix of a bootnode address, which libp2p needs to
/// authenticate the dialled peer.
pub fn bootnode_peer(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// `addr` without its `/p2p/<PeerId>` suffix: how the routing table stores a peer's address.
pub fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

/// Whether a peer's reported listen address can be dialled: not an unspecified IP (0.0.0.0,
/// ::) and not port 0.
pub fn dialable(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        Protocol::Tcp(port) => port != 0,
        _ => true,
    })
}

/// Requests and responses are raw bytes (the protocol's canonical encodings), framed by a
/// 4-byte big-endian length and bounded so a peer cannot make us allocate at will.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    data: &[u8],
    max: usize,
) -> io::Result<()> {
    if data.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds the limit of {max}", data.len()),
        ));
    }
    let len = u32::try_from(data.len()).expect("frames are bounded below 4 GiB");
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &req, MAX_REQUEST_BYTES).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &res, MAX_RESPONSE_BYTES).await
    }
}
