//! The cluster's private peer-to-peer RPC transport: byte requests and responses between cluster
//! peers over libp2p (TCP, a private network keyed by the cluster secret, noise, yamux).
//!
//! This crate knows nothing of Raft or of the pinset; it moves opaque bytes. A libp2p swarm runs
//! on a tokio task of its own; [`PeerNet`] talks to it through bounded channels, and inbound
//! requests come out of [`Inbound`].

mod codec;
mod task;

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use libp2p::{identity::Keypair, Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::task::Command;

/// At most this many requests of one [`PeerNet`] are in flight at once; further calls to
/// [`PeerNet::request`] wait for a slot. It keeps every connection under its stream limit.
const MAX_REQUESTS_IN_FLIGHT: usize = 128;

/// Bound of the channel from the handles to the swarm task.
const COMMAND_QUEUE: usize = 256;

/// What a peer needs to join the cluster's private network.
#[derive(Clone)]
pub struct NetConfig {
    /// The peer's identity key; its public half is the peer's [`PeerId`].
    pub keypair: Keypair,
    /// Where to listen, e.g. `/ip4/127.0.0.1/tcp/0`. Empty: dial only.
    pub listen: Vec<Multiaddr>,
    /// The cluster secret, used as the private network's pre-shared key: peers with another
    /// secret cannot connect.
    pub secret: [u8; 32],
    /// The largest request or response, in bytes, sent or accepted.
    pub max_message_bytes: usize,
    /// How long a request may take, and how long connection setup may take.
    pub request_timeout: Duration,
    /// How many inbound requests may wait in [`Inbound`]; beyond that they are refused (the
    /// remote gets [`NetError::Remote`]).
    pub max_inbound_queue: usize,
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("listen", &self.listen)
            .field("secret", &"<redacted>")
            .field("max_message_bytes", &self.max_message_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("max_inbound_queue", &self.max_inbound_queue)
            .finish()
    }
}

/// Why a transport operation failed.
#[derive(thiserror::Error, Debug)]
pub enum NetError {
    /// The peer could not be reached: the dial failed, the connection closed, the peer does not
    /// speak the protocol, or it is not in our private network (another secret).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// No response within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// A message over `max_message_bytes` (`size` is what was sent or announced).
    #[error("message of {size} bytes over the limit of {max} bytes")]
    TooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The remote did not answer: it dropped or refused the request, or could not read it.
    #[error("remote did not answer: {0}")]
    Remote(String),
    /// The transport was shut down.
    #[error("transport shut down")]
    Closed,
    /// A listen address could not be bound.
    #[error("cannot listen: {0}")]
    Listen(String),
    /// The configuration cannot be used.
    #[error("invalid transport configuration: {0}")]
    Config(String),
}

/// A handle to the running transport; clones share it. The swarm stops on
/// [`PeerNet::shutdown`] or when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct PeerNet {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    listen_addrs: Arc<Mutex<Vec<Multiaddr>>>,
    max_message_bytes: usize,
    /// How long a caller waits for the swarm task's answer: connection setup plus the request
    /// itself, with room to spare. libp2p ends every request sooner; this is a guard.
    reply_guard: Duration,
    in_flight: Arc<Semaphore>,
}

/// The receiving end of inbound requests.
#[derive(Debug)]
pub struct Inbound {
    requests: mpsc::Receiver<InboundRequest>,
}

/// A request from another peer, waiting for its response.
#[derive(Debug)]
pub struct InboundRequest {
    /// The authenticated peer that sent it.
    pub peer: PeerId,
    /// The request bytes.
    pub body: Vec<u8>,
    responder: oneshot::Sender<Vec<u8>>,
}

impl Inbound {
    /// The next inbound request; `None` once the transport has stopped.
    pub async fn next(&mut self) -> Option<InboundRequest> {
        self.requests.recv().await
    }
}

impl InboundRequest {
    /// Sends the response. Dropping the request instead makes the remote get an error; so does a
    /// response over `max_message_bytes`, or one sent after the request timed out.
    pub fn respond(self, body: Vec<u8>) {
        if self.responder.send(body).is_err() {
            tracing::debug!(peer = %self.peer, "response dropped: the transport stopped");
        }
    }
}

impl PeerNet {
    /// Starts the transport; resolves once every listen address is bound.
    pub async fn start(config: NetConfig) -> Result<(PeerNet, Inbound), NetError> {
        if config.max_message_bytes == 0 {
            return Err(NetError::Config("max_message_bytes must be above 0".into()));
        }
        if config.max_inbound_queue == 0 {
            return Err(NetError::Config("max_inbound_queue must be above 0".into()));
        }
        if config.request_timeout.is_zero() {
            return Err(NetError::Config("request_timeout must be above 0".into()));
        }
        let local_peer_id = config.keypair.public().to_peer_id();
        let listen_addrs = Arc::new(Mutex::new(Vec::new()));
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inbound_tx, requests) = mpsc::channel(config.max_inbound_queue);
        let max_message_bytes = config.max_message_bytes;
        let reply_guard = config.request_timeout.saturating_mul(3);
        task::spawn(config, command_rx, inbound_tx, Arc::clone(&listen_addrs)).await?;
        tracing::info!(%local_peer_id, "cluster transport started");
        let net = PeerNet {
            commands,
            local_peer_id,
            listen_addrs,
            max_message_bytes,
            reply_guard,
            in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
        };
        Ok((net, Inbound { requests }))
    }

    /// This peer's id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The bound listen addresses (port 0 resolved), each ending in `/p2p/<local peer id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records an address to dial `peer` at. A trailing `/p2p/<peer id>` is accepted; an address
    /// naming another peer is ignored. Dials check that the remote is `peer`.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        if self.commands.send(Command::AddAddress { peer, addr }).await.is_err() {
            tracing::debug!(%peer, "address not recorded: the transport stopped");
        }
    }

    /// Sends `body` to `peer` and waits for its response, dialing the peer if not connected.
    pub async fn request(&self, peer: PeerId, body: Vec<u8>) -> Result<Vec<u8>, NetError> {
        if body.len() > self.max_message_bytes {
            return Err(NetError::TooLarge { size: body.len(), max: self.max_message_bytes });
        }
        let _slot = self.in_flight.acquire().await.map_err(|_| NetError::Closed)?;
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Request { peer, body, reply }).await.map_err(|_| NetError::Closed)?;
        match tokio::time::timeout(self.reply_guard, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetError::Closed),
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// The peers with an open connection to us.
    pub async fn connected(&self) -> Vec<PeerId> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Connected { reply }).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Stops the swarm task, closing every connection; later calls fail with
    /// [`NetError::Closed`] and [`Inbound::next`] returns `None`.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            // An error only means the task is already gone.
            let _ = stopped.await;
        }
        self.in_flight.close();
    }
}
