//! The tokio task owning the libp2p swarm: builds the transport stack, serves the handles'
//! commands and turns swarm events into answers and inbound requests.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use libp2p::{
    core::{
        multiaddr::Protocol,
        transport::{ListenerId, Transport},
        upgrade::Version,
    },
    futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt},
    noise,
    pnet::{PnetConfig, PreSharedKey},
    request_response::{self, InboundFailure, OutboundFailure, OutboundRequestId, ProtocolSupport, ResponseChannel},
    swarm::{self, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    codec::{BytesCodec, Oversize, PROTOCOL},
    InboundRequest, NetConfig, NetError,
};

/// Streams per connection request-response serves at once (inbound and outbound together);
/// twice the requests one peer has in flight, under yamux's 512.
const MAX_STREAMS_PER_CONNECTION: usize = 2 * crate::MAX_REQUESTS_IN_FLIGHT;

/// How long an unused connection stays open. Cluster peers talk often; keeping the connection
/// saves the handshakes.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Dial errors remembered (one per peer) to explain `Unreachable`.
const MAX_DIAL_ERRORS: usize = 1024;

/// Addresses kept per peer (the latest ones).
const MAX_ADDRESSES_PER_PEER: usize = 8;

type Behaviour = request_response::Behaviour<BytesCodec>;
type Event = request_response::Event<Vec<u8>, Vec<u8>>;

/// What the handles ask of the swarm task.
pub(crate) enum Command {
    AddAddress { peer: PeerId, addr: Multiaddr },
    Request { peer: PeerId, body: Vec<u8>, reply: oneshot::Sender<Result<Vec<u8>, NetError>> },
    Connected { reply: oneshot::Sender<Vec<PeerId>> },
    Shutdown { done: oneshot::Sender<()> },
}

/// A response on its way from an [`InboundRequest`] to libp2p: the body, or `None` when the
/// request was dropped or not answered in time.
type PendingResponse = BoxFuture<'static, (ResponseChannel<Vec<u8>>, Option<Vec<u8>>)>;

/// Builds the swarm, binds the listen addresses and spawns the task; returns once every address
/// is bound.
pub(crate) async fn spawn(
    config: NetConfig,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundRequest>,
    listen_addrs: Arc<Mutex<Vec<Multiaddr>>>,
) -> Result<(), NetError> {
    let mut swarm = build_swarm(&config)?;
    let mut unbound = HashSet::new();
    for addr in &config.listen {
        ensure_port_free(addr)?;
        let id = swarm.listen_on(addr.clone()).map_err(|e| NetError::Listen(format!("{addr}: {e}")))?;
        unbound.insert(id);
    }
    let (ready_tx, ready) = oneshot::channel();
    let task = SwarmTask {
        swarm,
        commands,
        inbound,
        listen_addrs,
        unbound,
        ready: Some(ready_tx),
        request_timeout: config.request_timeout,
        addresses: HashMap::new(),
        dial_errors: HashMap::new(),
        outbound: HashMap::new(),
        responses: FuturesUnordered::new(),
    };
    tokio::spawn(task.run());
    ready.await.map_err(|_| NetError::Closed)?
}

/// Fails when a fixed TCP port is taken. libp2p-tcp sets `SO_REUSEPORT` on its listening sockets,
/// so binding a port another libp2p process listens on would succeed and the kernel would share
/// the connections between the two; a plain bind (no `SO_REUSEPORT`) tells.
fn ensure_port_free(addr: &Multiaddr) -> Result<(), NetError> {
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => {
            std::net::TcpListener::bind((ip, port)).map(drop).map_err(|e| NetError::Listen(format!("{addr}: {e}")))
        }
        _ => Ok(()),
    }
}

/// TCP, then the private network handshake (before anything else is said on the socket), then
/// noise authentication and yamux multiplexing, with request-response on top.
fn build_swarm(config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let local_peer_id = config.keypair.public().to_peer_id();
    let psk = PreSharedKey::new(config.secret);
    let noise = noise::Config::new(&config.keypair).map_err(|e| NetError::Config(format!("noise: {e}")))?;
    let transport = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(config.request_timeout)
        .boxed();
    let behaviour = Behaviour::with_codec(
        BytesCodec::new(config.max_message_bytes),
        [(PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION),
    );
    let swarm_config = swarm::Config::with_tokio_executor().with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    Ok(Swarm::new(transport, behaviour, local_peer_id, swarm_config))
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundRequest>,
    listen_addrs: Arc<Mutex<Vec<Multiaddr>>>,
    /// Listeners that have not reported an address yet.
    unbound: HashSet<ListenerId>,
    /// Told once every listener is bound, or one failed.
    ready: Option<oneshot::Sender<Result<(), NetError>>>,
    request_timeout: Duration,
    /// Where to dial each peer, as given to `add_address`.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    /// The last dial error per peer, to say why a request found it unreachable.
    dial_errors: HashMap<PeerId, String>,
    /// Outbound requests waiting for their answer.
    outbound: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    /// Inbound requests handed out, waiting for their response.
    responses: FuturesUnordered<PendingResponse>,
}

impl SwarmTask {
    async fn run(mut self) {
        self.check_ready();
        let mut done = None;
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { done: tx }) => {
                        done = Some(tx);
                        break;
                    }
                    Some(command) => self.on_command(command),
                    // Every handle is gone.
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some((channel, body)) = self.responses.next(), if !self.responses.is_empty() => {
                    // Without a body the channel is dropped: the remote sees its stream closed.
                    if let Some(body) = body {
                        if self.swarm.behaviour_mut().send_response(channel, body).is_err() {
                            tracing::debug!("response too late: the inbound request is gone");
                        }
                    }
                }
            }
        }
        for (_, reply) in self.outbound.drain() {
            let _ = reply.send(Err(NetError::Closed));
        }
        let local_peer_id = *self.swarm.local_peer_id();
        drop(self);
        tracing::info!(%local_peer_id, "cluster transport stopped");
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::AddAddress { peer, addr } => self.add_address(peer, addr),
            Command::Request { peer, body, reply } => {
                let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
                let id = self.swarm.behaviour_mut().send_request_with_addresses(&peer, body, addrs);
                self.outbound.insert(id, reply);
            }
            Command::Connected { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            // Handled by the loop.
            Command::Shutdown { .. } => {}
        }
    }

    fn add_address(&mut self, peer: PeerId, mut addr: Multiaddr) {
        if let Some(Protocol::P2p(named)) = addr.iter().last() {
            if named != peer {
                tracing::warn!(%peer, %addr, "address names another peer; ignored");
                return;
            }
            addr.pop();
        }
        let known = self.addresses.entry(peer).or_default();
        if !known.contains(&addr) {
            if known.len() == MAX_ADDRESSES_PER_PEER {
                known.remove(0);
            }
            tracing::debug!(%peer, %addr, "peer address added");
            known.push(addr);
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<Event>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { listener_id, address } => {
                let local = *self.swarm.local_peer_id();
                let address = address.clone().with_p2p(local).unwrap_or(address);
                tracing::info!(%address, "listening");
                self.with_listen_addrs(|addrs| {
                    if !addrs.contains(&address) {
                        addrs.push(address)
                    }
                });
                self.unbound.remove(&listener_id);
                self.check_ready();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "no longer listening");
                let local = *self.swarm.local_peer_id();
                let address = address.clone().with_p2p(local).unwrap_or(address);
                self.with_listen_addrs(|addrs| addrs.retain(|a| a != &address));
            }
            SwarmEvent::ListenerClosed { listener_id, addresses, reason } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
                let reason = match reason {
                    Ok(()) => "listener closed".to_string(),
                    Err(e) => e.to_string(),
                };
                self.listener_failed(listener_id, reason);
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                tracing::warn!(%error, "listener error");
                self.listener_failed(listener_id, error.to_string());
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                self.dial_errors.remove(&peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id {
                    // Only a hint for error messages: forget them all rather than grow without end.
                    if self.dial_errors.len() >= MAX_DIAL_ERRORS {
                        self.dial_errors.clear();
                    }
                    self.dial_errors.insert(peer, error.to_string());
                }
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                // Also what a peer with another secret looks like.
                tracing::debug!(remote = %send_back_addr, %error, "inbound connection failed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: Event) {
        match event {
            Event::Message { peer, message: request_response::Message::Request { request, channel, .. }, .. } => {
                self.deliver(peer, request, channel)
            }
            Event::Message { message: request_response::Message::Response { request_id, response }, .. } => {
                self.answer(request_id, Ok(response))
            }
            Event::OutboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%peer, %error, "request failed");
                let error = self.outbound_error(peer, error);
                self.answer(request_id, Err(error))
            }
            Event::InboundFailure { peer, error, .. } => match error {
                InboundFailure::ResponseOmission => tracing::debug!(%peer, "inbound request not answered"),
                error => tracing::debug!(%peer, %error, "inbound request failed"),
            },
            Event::ResponseSent { .. } => {}
        }
    }

    /// Hands an inbound request to [`crate::Inbound`], or refuses it (drops its channel) when the
    /// queue is full or nobody listens.
    fn deliver(&mut self, peer: PeerId, body: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let (responder, response) = oneshot::channel();
        match self.inbound.try_send(InboundRequest { peer, body, responder }) {
            Ok(()) => {
                // libp2p gives up on the request after the timeout; so do we.
                let timeout = self.request_timeout;
                self.responses.push(
                    async move { (channel, tokio::time::timeout(timeout, response).await.ok().and_then(Result::ok)) }
                        .boxed(),
                );
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(%peer, "inbound queue full; request refused");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!(%peer, "inbound requests not read; request refused");
            }
        }
    }

    fn answer(&mut self, id: OutboundRequestId, result: Result<Vec<u8>, NetError>) {
        if let Some(reply) = self.outbound.remove(&id) {
            // An error means the caller stopped waiting.
            let _ = reply.send(result);
        }
    }

    fn outbound_error(&self, peer: PeerId, error: OutboundFailure) -> NetError {
        match error {
            OutboundFailure::DialFailure => {
                NetError::Unreachable(self.dial_errors.get(&peer).cloned().unwrap_or_else(|| "dial failed".to_string()))
            }
            OutboundFailure::Timeout => NetError::Timeout,
            OutboundFailure::ConnectionClosed => NetError::Unreachable("connection closed".to_string()),
            OutboundFailure::UnsupportedProtocols => NetError::Unreachable(format!("peer does not speak {PROTOCOL}")),
            OutboundFailure::Io(e) => match Oversize::find(&e) {
                Some(Oversize { size, max }) => NetError::TooLarge { size, max },
                None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    NetError::Remote("the remote closed the stream without a response".to_string())
                }
                None => NetError::Remote(e.to_string()),
            },
        }
    }

    fn listener_failed(&mut self, listener: ListenerId, reason: String) {
        if self.unbound.remove(&listener) {
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(Err(NetError::Listen(reason)));
            }
        }
    }

    /// Tells `start` once no listener is left unbound.
    fn check_ready(&mut self) {
        if self.unbound.is_empty() {
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(Ok(()));
            }
        }
    }

    fn with_listen_addrs(&self, f: impl FnOnce(&mut Vec<Multiaddr>)) {
        f(&mut self.listen_addrs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}
