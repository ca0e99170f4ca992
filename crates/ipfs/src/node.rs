//! The node's life cycle and network surface: [`Node`] (start, addresses, dials, shutdown).
//!
//! Pins live in `walk.rs`, garbage collection and store figures in `gc.rs`; both are further
//! `impl Node` blocks over the same [`Inner`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use futures_util::StreamExt;
use multiaddr::{Multiaddr, Protocol};
use rust_ipfs::builder::IpfsBuilder;
use rust_ipfs::p2p::IdentifyConfiguration;
use rust_ipfs::{Ipfs, Keypair, PeerId};
use tokio::io::AsyncWriteExt;

use crate::bitswap::{Bitswap, InboundBehaviour};
use crate::dht::{Dht, DhtHandle, DhtMode, DhtStatus};
use crate::gc::Guard;
use crate::IpfsError;

/// How long one dial may take before it counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the node needs to start; the service builds it from its config and `identity.json`.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The libp2p protobuf encoding of the node's private key (Ed25519 in practice), as kept in
    /// `identity.json`. The node's peer ID derives from it.
    pub keypair_protobuf: Vec<u8>,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`; port 0 picks a free port. TCP and
    /// QUIC (`/udp/N/quic-v1`) are supported.
    pub listen: Vec<Multiaddr>,
    /// Addresses other peers can dial, advertised first (identify, delegates). Empty: the bound
    /// listen addresses are used.
    pub announce: Vec<Multiaddr>,
    /// DHT bootstrap peers (each ending in `/p2p/<peer id>`; `/dnsaddr/` and `/dns*/` names are
    /// resolved). Empty is allowed: the DHT then only learns peers that dial us or that we dial.
    pub bootstrap: Vec<Multiaddr>,
    /// How the public DHT serves others.
    pub dht_mode: DhtMode,
    /// A private network's 32-byte key (Kubo's `swarm.key`): only peers with the same key can
    /// connect, over TCP only (QUIC cannot carry a pre-shared key).
    pub swarm_key: Option<[u8; 32]>,
    /// Folder of the block store and pin records; created when missing. One node per folder.
    pub repo_path: PathBuf,
}

/// The node's own swarm behaviours, beside the engine's: Bitswap's inbound streams and the DHTs.
#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude", to_swarm = "std::convert::Infallible")]
pub(crate) struct Behaviour {
    inbound: InboundBehaviour,
    dht: Dht,
}

/// A running embedded IPFS node. Cheap to clone: clones share the same node.
///
/// The node serves every block it holds to any peer that asks (Bitswap server), fetches what
/// [`Node::pin`] asks for, and keeps pinned blocks until [`Node::unpin`] and [`Node::gc`].
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("peer_id", &self.inner.peer_id).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) ipfs: Ipfs,
    pub(crate) peer_id: PeerId,
    announce: Vec<Multiaddr>,
    pub(crate) dht: DhtHandle,
    /// Stops the bootstrap and refresh task with the node.
    _bootstrap: crate::AbortOnDrop,
    pub(crate) guard: Guard,
    pub(crate) bitswap: Bitswap,
    pub(crate) repo_path: PathBuf,
}

impl Node {
    /// Starts the node: opens (or creates) the repo, binds every listen address and dials the
    /// bootstrap peers in the background. Fails when the key is invalid, the repo is locked or
    /// an address cannot be bound.
    pub async fn start(options: NodeOptions) -> Result<Node, IpfsError> {
        let keypair = Keypair::from_protobuf_encoding(&options.keypair_protobuf)
            .map_err(|e| IpfsError::Identity(e.to_string()))?;
        let peer_id = keypair.public().to_peer_id();
        if options.swarm_key.is_some() {
            if let Some(addr) = options.listen.iter().find(|a| a.iter().any(|p| matches!(p, Protocol::QuicV1))) {
                return Err(IpfsError::Listen {
                    addr: addr.clone(),
                    reason: "QUIC cannot be used in a private network (swarm key set): listen on TCP only".into(),
                });
            }
        }
        let identify = IdentifyConfiguration {
            agent_version: format!("pincluster/{}", env!("CARGO_PKG_VERSION")),
            ..IdentifyConfiguration::default()
        };
        let (inbound_tx, inbound_rx) = tokio::sync::mpsc::channel(crate::bitswap::STREAM_QUEUE);
        let (dht, dht_handle) = Dht::new(peer_id, options.dht_mode);
        let mut builder = IpfsBuilder::<Behaviour>::with_keypair(&keypair)
            .map_err(|e| IpfsError::Identity(e.to_string()))?
            .with_custom_behaviour(move |_| Ok(Behaviour { inbound: InboundBehaviour::new(inbound_tx), dht }))
            .with_identify(identify)
            .with_ping(Default::default())
            .with_autonat()
            .with_streams()
            .enable_tcp()
            .set_path(&options.repo_path);
        builder = match options.swarm_key {
            Some(key) => builder.enable_pnet(libp2p::pnet::PreSharedKey::new(key)),
            None => builder.enable_quic(),
        };
        let ipfs = builder.start().await.map_err(|e| IpfsError::Start(format!("{e:#}")))?;

        // Listening after the start (not through the builder) reports bind failures to the caller
        // and returns only once each listener has an address.
        for addr in &options.listen {
            if let Err(e) = ipfs.add_listening_address(addr.clone()).await {
                ipfs.exit_daemon().await;
                return Err(IpfsError::Listen { addr: addr.clone(), reason: one_line(&format!("{e:#}")) });
            }
        }
        for addr in &options.announce {
            if let Err(e) = ipfs.add_external_address(addr.clone()).await {
                tracing::warn!(%addr, error = %e, "announce address refused");
            }
        }
        let bitswap = match Bitswap::start(ipfs.clone(), options.repo_path.clone(), inbound_rx).await {
            Ok(bitswap) => bitswap,
            Err(e) => {
                ipfs.exit_daemon().await;
                return Err(e);
            }
        };
        let bootstrap = crate::AbortOnDrop(tokio::spawn(crate::bootstrap::run(
            ipfs.clone(),
            dht_handle.clone(),
            options.bootstrap,
        )));
        tracing::info!(%peer_id, private_network = options.swarm_key.is_some(), "IPFS node started");
        Ok(Node {
            inner: Arc::new(Inner {
                ipfs,
                peer_id,
                announce: options.announce,
                dht: dht_handle,
                _bootstrap: bootstrap,
                guard: Guard::default(),
                bitswap,
                repo_path: options.repo_path,
            }),
        })
    }

    /// What went over Bitswap since the node started.
    pub fn bitswap_traffic(&self) -> crate::Traffic {
        self.inner.bitswap.traffic()
    }

    /// The DHT's routing tables and announcement counters.
    pub fn dht_status(&self) -> DhtStatus {
        self.inner.dht.status()
    }

    /// The node's peer ID in its usual text form (`12D3Koo…` for Ed25519 keys).
    pub fn peer_id(&self) -> String {
        self.inner.peer_id.to_string()
    }

    /// The addresses the node actually listens on (port 0 resolved, one per interface for
    /// unspecified addresses), without `/p2p/`.
    pub async fn listen_addresses(&self) -> Vec<Multiaddr> {
        match self.inner.ipfs.listening_addresses().await {
            Ok(addrs) => addrs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read listen addresses");
                Vec::new()
            }
        }
    }

    /// Addresses other peers can dial to reach this node, each ending in `/p2p/<peer id>`: the
    /// announce addresses first, then the bound listen addresses. Suitable as PSA `delegates`:
    /// never an unspecified address, and loopback ones only when there is nothing else.
    pub async fn delegates(&self) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = Vec::new();
        let listen = self.listen_addresses().await;
        let all: Vec<&Multiaddr> = self.inner.announce.iter().chain(listen.iter()).collect();
        let only_loopback = all.iter().all(|a| is_loopback(a) || is_unspecified(a));
        for addr in all {
            if is_unspecified(addr) || (is_loopback(addr) && !only_loopback) {
                continue;
            }
            let full = with_peer_id(addr, self.inner.peer_id);
            if !out.contains(&full) {
                out.push(full);
            }
        }
        out
    }

    /// Dials `addr` (best effort, at most 10 s). When the address ends in `/p2p/<peer id>` the
    /// address is also remembered for that peer.
    pub async fn connect(&self, addr: Multiaddr) -> Result<(), IpfsError> {
        let dial_error = |reason: String| IpfsError::Dial { addr: addr.clone(), reason };
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            let mut bare = addr.clone();
            bare.pop();
            if let Err(e) = self.inner.ipfs.add_peer((peer, bare)).await {
                tracing::debug!(%addr, error = %e, "address book refused address");
            }
        }
        match tokio::time::timeout(DIAL_TIMEOUT, self.inner.ipfs.connect(addr.clone())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(dial_error(format!("{e:#}"))),
            Err(_) => Err(dial_error(format!("no connection within {}s", DIAL_TIMEOUT.as_secs()))),
        }
    }

    /// Peer IDs of the peers currently connected.
    pub async fn connected_peers(&self) -> Vec<String> {
        match self.inner.ipfs.connected().await {
            Ok(peers) => peers.iter().map(ToString::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes the UnixFS file `cid` to `dest` from local blocks only (nothing is fetched),
    /// streaming block by block; returns the number of bytes written.
    pub async fn export_file(&self, cid: &Cid, dest: &Path) -> Result<u64, IpfsError> {
        let mut stream = self.inner.ipfs.cat_unixfs(*cid).local();
        let mut file = tokio::fs::File::create(dest).await.map_err(IpfsError::store)?;
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(IpfsError::store)?;
            file.write_all(&chunk).await.map_err(IpfsError::store)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(IpfsError::store)?;
        Ok(written)
    }

    /// Stops the node: closes connections and releases the repo. Other clones stop working.
    pub async fn shutdown(self) {
        self.inner.bitswap.stop().await;
        self.inner.ipfs.clone().exit_daemon().await;
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn with_peer_id(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr.clone(),
        _ => addr.clone().with(Protocol::P2p(peer)),
    }
}

/// An error chain on one line without the empty and repeated links some
/// layers add (`: : Address already in use: Address already in use`).
fn one_line(chain: &str) -> String {
    let mut links: Vec<&str> = Vec::new();
    for link in chain.split(": ").map(str::trim) {
        if !link.is_empty() && !links.contains(&link) {
            links.push(link);
        }
    }
    links.join(": ")
}
