//! Kademlia for content routing, run the way Kubo runs it: a WAN DHT (`/ipfs/kad/1.0.0`, the
//! public Amino network, public addresses only) beside a LAN DHT (`/ipfs/lan/kad/1.0.0`, private
//! and loopback addresses only), both inside the node's swarm as [`Dht`].
//!
//! The engine's own Kademlia is not used: it keeps every provided key in a memory store capped at
//! 1024 keys and republishes them all at once, and it cannot run the LAN DHT. Here the node asks
//! through [`DhtHandle`] (a bounded command channel polled by the behaviour), announcements are
//! one query per CID whose local record is dropped once sent (the reprovider, not the store, knows
//! what to announce again), and routing-table inserts are filtered by address class as Kubo's
//! filters do.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::kad::{self, BucketInserts, GetProvidersOk, Mode, QueryId, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

/// The public (Amino) DHT's protocol.
const WAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// The local-network DHT's protocol (Kubo's LAN DHT).
const LAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");
/// Commands waiting for the swarm; a caller waits when it is full.
const COMMAND_QUEUE: usize = 1024;
/// Peers whose recently seen addresses are remembered (for routing-table inserts and dials).
const ADDRESS_BOOK_PEERS: usize = 4096;
/// Addresses remembered per peer.
const ADDRESSES_PER_PEER: usize = 8;
/// Provider records kept per DHT (others' announcements, when we serve the DHT).
const MAX_PROVIDER_KEYS: usize = 65_536;
/// How long one DHT query may run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the node answers DHT queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DhtMode {
    /// The WAN DHT serves once the node has a confirmed public address (autonat or an announce
    /// address), as Kubo's `auto` does, and is a client until then; the LAN DHT serves.
    #[default]
    Auto,
    /// Both only ask and announce; no routing table lists this node.
    Client,
    /// Both always answer queries.
    Server,
}

/// Counters the behaviour keeps for [`DhtHandle::status`].
#[derive(Debug, Default)]
struct Shared {
    wan_peers: AtomicUsize,
    lan_peers: AtomicUsize,
    wan_server: std::sync::atomic::AtomicBool,
    lookups: AtomicU64,
    announced: AtomicU64,
    announce_failures: AtomicU64,
}

/// A snapshot of the DHT's state, for `/id` and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DhtStatus {
    /// Peers in the WAN routing table.
    pub wan_peers: usize,
    /// Peers in the LAN routing table.
    pub lan_peers: usize,
    /// Whether the WAN DHT currently answers queries (server mode).
    pub wan_server: bool,
    /// Provider lookups started since the node started.
    pub lookups: u64,
    /// CIDs announced since the node started, and announcements that reached no peer.
    pub announced: u64,
    pub announce_failures: u64,
}

impl DhtStatus {
    /// Peers in both routing tables.
    pub fn peers(&self) -> usize {
        self.wan_peers + self.lan_peers
    }
}

enum Command {
    AddPeer(PeerId, Multiaddr),
    Bootstrap,
    FindProviders { key: RecordKey, found: mpsc::Sender<PeerId> },
    Provide { key: RecordKey, done: oneshot::Sender<bool> },
}

/// The node's side of the DHT: cheap to clone; every call goes to the swarm's task.
#[derive(Clone)]
pub(crate) struct DhtHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl DhtHandle {
    /// Adds a known DHT peer (a bootstrap peer) to the table its address belongs to.
    pub(crate) async fn add_peer(&self, peer: PeerId, addr: Multiaddr) {
        let _ = self.commands.send(Command::AddPeer(peer, addr)).await;
    }

    /// Walks both DHTs towards our own key, which fills and refreshes the routing tables.
    pub(crate) async fn bootstrap(&self) {
        let _ = self.commands.send(Command::Bootstrap).await;
    }

    /// Looks up the providers of `key` in both DHTs and dials each one found; the returned
    /// channel yields their peer IDs and closes when both lookups have ended.
    pub(crate) async fn find_providers(&self, key: RecordKey) -> mpsc::Receiver<PeerId> {
        let (found, rx) = mpsc::channel(64);
        self.shared.lookups.fetch_add(1, Ordering::Relaxed);
        let _ = self.commands.send(Command::FindProviders { key, found }).await;
        rx
    }

    /// Announces this node as a provider of `key` on every DHT that has peers; true when at
    /// least one announcement completed.
    pub(crate) async fn provide(&self, key: RecordKey) -> bool {
        let (done, rx) = oneshot::channel();
        if self.commands.send(Command::Provide { key, done }).await.is_err() {
            return false;
        }
        let ok = rx.await.unwrap_or(false);
        let counter = if ok { &self.shared.announced } else { &self.shared.announce_failures };
        counter.fetch_add(1, Ordering::Relaxed);
        ok
    }

    pub(crate) fn status(&self) -> DhtStatus {
        let s = &self.shared;
        DhtStatus {
            wan_peers: s.wan_peers.load(Ordering::Relaxed),
            lan_peers: s.lan_peers.load(Ordering::Relaxed),
            wan_server: s.wan_server.load(Ordering::Relaxed),
            lookups: s.lookups.load(Ordering::Relaxed),
            announced: s.announced.load(Ordering::Relaxed),
            announce_failures: s.announce_failures.load(Ordering::Relaxed),
        }
    }

    /// Whether either routing table has a peer.
    pub(crate) fn has_peers(&self) -> bool {
        self.status().peers() > 0
    }
}

/// Which DHT an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Wan,
    Lan,
}

/// Kubo's filters: the WAN DHT keeps public addresses (and DNS names), the LAN DHT private,
/// loopback and link-local ones; unspecified and documentation addresses belong to neither.
fn address_class(addr: &Multiaddr) -> Option<Class> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => ip_class(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => ip_class(IpAddr::V6(ip)),
        Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_) => Some(Class::Wan),
        _ => None,
    }
}

fn ip_class(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_documentation() || ip.is_multicast() {
                None
            } else if ip.is_private() || ip.is_loopback() || ip.is_link_local() || (a == 100 && (64..128).contains(&b))
            {
                Some(Class::Lan)
            } else {
                Some(Class::Wan)
            }
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            if ip.is_unspecified() || ip.is_multicast() {
                None
            } else if ip.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
                Some(Class::Lan)
            } else {
                Some(Class::Wan)
            }
        }
    }
}

/// Both Kademlia instances; the derive routes each connection's events to the right one.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub(crate) struct Kads {
    wan: kad::Behaviour<MemoryStore>,
    lan: kad::Behaviour<MemoryStore>,
}

/// A lookup in progress: where results go and how many of its queries still run.
struct Lookup {
    found: mpsc::Sender<PeerId>,
    seen: HashSet<PeerId>,
    running: usize,
}

/// An announcement in progress.
struct Announce {
    key: RecordKey,
    done: Option<oneshot::Sender<bool>>,
    ok: bool,
    running: usize,
}

/// The swarm behaviour: both DHTs, the commands from [`DhtHandle`], and the bookkeeping that
/// ties query results back to callers.
pub(crate) struct Dht {
    kads: Kads,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    local: PeerId,
    /// Recently seen addresses per peer, oldest peer first in `order`.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    order: VecDeque<PeerId>,
    /// Peers known to speak each protocol (bounded with the address book).
    speaks: HashMap<PeerId, (bool, bool)>,
    lookups: HashMap<u64, Lookup>,
    announces: HashMap<u64, Announce>,
    /// Query → (lookup or announcement number).
    queries: HashMap<QueryId, u64>,
    next: u64,
    dials: VecDeque<PeerId>,
}

impl Dht {
    pub(crate) fn new(local: PeerId, mode: DhtMode) -> (Dht, DhtHandle) {
        let instance = |protocol: StreamProtocol| {
            let mut config = kad::Config::new(protocol);
            config
                .set_query_timeout(QUERY_TIMEOUT)
                .set_kbucket_inserts(BucketInserts::Manual)
                // The reprovider announces on its own schedule; the behaviour keeps no list.
                .set_provider_publication_interval(None)
                .set_publication_interval(None)
                .set_replication_interval(None)
                // Bootstrapping is driven by the node (quiet when there is no network).
                .set_periodic_bootstrap_interval(None);
            let store = MemoryStore::with_config(
                local,
                MemoryStoreConfig { max_provided_keys: MAX_PROVIDER_KEYS, ..MemoryStoreConfig::default() },
            );
            kad::Behaviour::with_config(local, store, config)
        };
        let mut wan = instance(WAN_PROTOCOL);
        wan.set_mode(match mode {
            DhtMode::Auto => None,
            DhtMode::Client => Some(Mode::Client),
            DhtMode::Server => Some(Mode::Server),
        });
        let mut lan = instance(LAN_PROTOCOL);
        lan.set_mode(Some(if mode == DhtMode::Client { Mode::Client } else { Mode::Server }));
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared::default());
        shared.wan_server.store(wan.mode() == Mode::Server, Ordering::Relaxed);
        let dht = Dht {
            kads: Kads { wan, lan },
            commands: rx,
            shared: shared.clone(),
            local,
            addresses: HashMap::new(),
            order: VecDeque::new(),
            speaks: HashMap::new(),
            lookups: HashMap::new(),
            announces: HashMap::new(),
            queries: HashMap::new(),
            next: 0,
            dials: VecDeque::new(),
        };
        (dht, DhtHandle { commands: tx, shared })
    }

    fn kad(&mut self, class: Class) -> &mut kad::Behaviour<MemoryStore> {
        match class {
            Class::Wan => &mut self.kads.wan,
            Class::Lan => &mut self.kads.lan,
        }
    }

    fn table_size(&mut self, class: Class) -> usize {
        self.kad(class).kbuckets().map(|bucket| bucket.num_entries()).sum()
    }

    fn update_counts(&mut self) {
        let (wan, lan) = (self.table_size(Class::Wan), self.table_size(Class::Lan));
        self.shared.wan_peers.store(wan, Ordering::Relaxed);
        self.shared.lan_peers.store(lan, Ordering::Relaxed);
    }

    /// Remembers an address of `peer`, and adds it to the table it belongs to when the peer is
    /// known to speak that table's protocol.
    fn learn(&mut self, peer: PeerId, addr: Multiaddr) {
        if peer == self.local {
            return;
        }
        let addr = without_p2p(addr);
        if !self.addresses.contains_key(&peer) {
            if self.order.len() >= ADDRESS_BOOK_PEERS {
                if let Some(old) = self.order.pop_front() {
                    self.addresses.remove(&old);
                    self.speaks.remove(&old);
                }
            }
            self.order.push_back(peer);
        }
        let known = self.addresses.entry(peer).or_default();
        if known.contains(&addr) {
            return;
        }
        if known.len() >= ADDRESSES_PER_PEER {
            known.remove(0);
        }
        known.push(addr.clone());
        let (wan, lan) = self.speaks.get(&peer).copied().unwrap_or_default();
        match address_class(&addr) {
            Some(Class::Wan) if wan => {
                self.kads.wan.add_address(&peer, addr);
            }
            Some(Class::Lan) if lan => {
                self.kads.lan.add_address(&peer, addr);
            }
            _ => {}
        }
    }

    /// `peer` answered on `class`'s protocol: every address of it that fits goes in the table.
    fn confirmed(&mut self, class: Class, peer: PeerId, address: Option<Multiaddr>) {
        if self.addresses.contains_key(&peer) || self.order.len() < ADDRESS_BOOK_PEERS {
            let entry = self.speaks.entry(peer).or_default();
            match class {
                Class::Wan => entry.0 = true,
                Class::Lan => entry.1 = true,
            }
        }
        let mut candidates = self.addresses.get(&peer).cloned().unwrap_or_default();
        candidates.extend(address.map(without_p2p));
        for addr in candidates {
            if address_class(&addr) == Some(class) {
                self.kad(class).add_address(&peer, addr);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::AddPeer(peer, addr) => {
                let addr = without_p2p(addr);
                if let Some(class) = address_class(&addr) {
                    self.kad(class).add_address(&peer, addr.clone());
                }
                self.learn(peer, addr);
            }
            Command::Bootstrap => {
                for class in [Class::Wan, Class::Lan] {
                    if self.table_size(class) > 0 {
                        if let Err(e) = self.kad(class).bootstrap() {
                            tracing::debug!(?class, error = %e, "DHT bootstrap not started");
                        }
                    }
                }
            }
            Command::FindProviders { key, found } => {
                let n = self.next_number();
                let mut running = 0;
                for class in [Class::Wan, Class::Lan] {
                    if self.table_size(class) > 0 {
                        let id = self.kad(class).get_providers(key.clone());
                        self.queries.insert(id, n);
                        running += 1;
                    }
                }
                if running > 0 {
                    self.lookups.insert(n, Lookup { found, seen: HashSet::new(), running });
                }
            }
            Command::Provide { key, done } => {
                let n = self.next_number();
                let mut running = 0;
                for class in [Class::Wan, Class::Lan] {
                    if self.table_size(class) == 0 {
                        continue;
                    }
                    match self.kad(class).start_providing(key.clone()) {
                        Ok(id) => {
                            self.queries.insert(id, n);
                            running += 1;
                        }
                        Err(e) => tracing::debug!(?class, error = %e, "cannot announce"),
                    }
                }
                if running == 0 {
                    let _ = done.send(false);
                } else {
                    self.announces.insert(n, Announce { key, done: Some(done), ok: false, running });
                }
            }
        }
    }

    fn next_number(&mut self) -> u64 {
        self.next = self.next.wrapping_add(1);
        self.next
    }

    fn on_kad_event(&mut self, class: Class, event: kad::Event) {
        match event {
            kad::Event::RoutablePeer { peer, address } | kad::Event::PendingRoutablePeer { peer, address } => {
                self.confirmed(class, peer, Some(address));
            }
            kad::Event::UnroutablePeer { peer } => self.confirmed(class, peer, None),
            kad::Event::RoutingUpdated { .. } => self.update_counts(),
            kad::Event::ModeChanged { new_mode } if class == Class::Wan => {
                self.shared.wan_server.store(new_mode == Mode::Server, Ordering::Relaxed);
                tracing::info!(mode = %new_mode, "public DHT mode changed");
            }
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => {
                self.on_progress(class, id, result, step.last)
            }
            _ => {}
        }
    }

    fn on_progress(&mut self, class: Class, id: QueryId, result: QueryResult, last: bool) {
        let Some(&n) = self.queries.get(&id) else { return };
        if last {
            self.queries.remove(&id);
        }
        match result {
            QueryResult::GetProviders(result) => {
                let Some(lookup) = self.lookups.get_mut(&n) else { return };
                if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result {
                    for peer in providers {
                        if peer != self.local && lookup.seen.insert(peer) {
                            // A full channel drops the peer from the stream, not from the dial.
                            let _ = lookup.found.try_send(peer);
                            self.dials.push_back(peer);
                        }
                    }
                }
                if last {
                    lookup.running -= 1;
                    if lookup.running == 0 || lookup.found.is_closed() {
                        self.lookups.remove(&n);
                    }
                } else if lookup.found.is_closed() {
                    // The caller stopped listening: end the query early.
                    if let Some(mut query) = self.kad(class).query_mut(&id) {
                        query.finish();
                    }
                }
            }
            QueryResult::StartProviding(result) => {
                let Some(announce) = self.announces.get_mut(&n) else { return };
                announce.ok |= result.is_ok();
                if last {
                    announce.running -= 1;
                    if announce.running == 0 {
                        if let Some(announce) = self.announces.remove(&n) {
                            // The record went out; the store need not keep our copy.
                            self.kads.wan.stop_providing(&announce.key);
                            self.kads.lan.stop_providing(&announce.key);
                            if let Some(done) = announce.done {
                                let _ = done.send(announce.ok);
                            }
                        }
                    }
                }
            }
            QueryResult::Bootstrap(Err(e)) => tracing::debug!(?class, error = ?e, "DHT bootstrap step failed"),
            _ => {}
        }
    }
}

fn without_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

impl NetworkBehaviour for Dht {
    type ConnectionHandler = THandler<Kads>;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.kads.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.kads.handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let mut out = self.kads.handle_pending_outbound_connection(id, peer, addresses, role)?;
        if let Some(known) = peer.and_then(|p| self.addresses.get(&p)) {
            for addr in known {
                if !out.contains(addr) {
                    out.push(addr.clone());
                }
            }
        }
        Ok(out)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.kads.handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::NewExternalAddrOfPeer(new) => self.learn(new.peer_id, new.addr.clone()),
            // Kademlia would bootstrap on each new listen address while it knows no peer, and
            // warn that it knows none; the node's bootstrap task does this, quietly.
            FromSwarm::NewListenAddr(_) => return,
            _ => {}
        }
        self.kads.on_swarm_event(event);
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, id: ConnectionId, event: THandlerOutEvent<Self>) {
        self.kads.on_connection_handler_event(peer, id, event);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        while let Poll::Ready(Some(command)) = self.commands.poll_recv(cx) {
            self.on_command(command);
        }
        loop {
            if let Some(peer) = self.dials.pop_front() {
                let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
                return Poll::Ready(ToSwarm::Dial { opts });
            }
            match self.kads.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(event)) => match event {
                    KadsEvent::Wan(event) => self.on_kad_event(Class::Wan, event),
                    KadsEvent::Lan(event) => self.on_kad_event(Class::Lan, event),
                },
                Poll::Ready(other) => return Poll::Ready(other.map_out(|_| unreachable!("events are handled above"))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(text: &str) -> Option<Class> {
        address_class(&text.parse().expect("multiaddr"))
    }

    #[test]
    fn addresses_are_filed_as_kubo_files_them() {
        assert_eq!(class_of("/ip4/127.0.0.1/tcp/1"), Some(Class::Lan));
        assert_eq!(class_of("/ip4/10.1.2.3/tcp/1"), Some(Class::Lan));
        assert_eq!(class_of("/ip4/192.168.1.1/tcp/1"), Some(Class::Lan));
        assert_eq!(class_of("/ip4/100.64.0.1/tcp/1"), Some(Class::Lan));
        assert_eq!(class_of("/ip6/fd00::1/tcp/1"), Some(Class::Lan));
        assert_eq!(class_of("/ip6/::1/tcp/1"), Some(Class::Lan));
        assert_eq!(class_of("/ip4/104.131.131.82/tcp/4001"), Some(Class::Wan));
        assert_eq!(class_of("/ip6/2604:1380::1/tcp/1"), Some(Class::Wan));
        assert_eq!(class_of("/dnsaddr/bootstrap.libp2p.io"), Some(Class::Wan));
        assert_eq!(class_of("/ip4/0.0.0.0/tcp/1"), None);
        assert_eq!(class_of("/ip4/192.0.2.1/tcp/1"), None);
    }
}
