//! Our Bitswap 1.2 client and server on libp2p streams: read [`Bitswap`] first.
//!
//! Why not rust-ipfs's own Bitswap: its connection handler keeps a single inbound stream and
//! replaces it when the peer opens another one. Kubo sends every response message on a new
//! stream, so with more than one want outstanding, responses still unread are dropped and the
//! pin stalls (seen here: 5 to 12 of 26 blocks, then nothing). With one want at a time it works
//! but cannot keep up with Kubo. This module reads every inbound stream to its end; streams are
//! accepted by [`InboundBehaviour`] and opened with libp2p-stream.
//!
//! Shape: one engine task owns the wants and decides whom to ask; one writer task per peer owns
//! the single outbound stream to that peer and merges queued items into messages; one reader
//! task per inbound stream decodes messages, serves wanted blocks from the store, stores received
//! blocks (hash checked) and reports presences to the engine.
//!
//! Client strategy, per wanted block: `WANT_BLOCK` to one peer (the last one that delivered a
//! block, when connected) and `WANT_HAVE` to the others; on `HAVE` or `DONT_HAVE` move the block
//! request to a peer that has it; every second, re-ask wants that got no answer.

mod inbound;
pub(crate) mod message;

pub(crate) use inbound::InboundBehaviour;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cid::Cid;
use futures_util::StreamExt;
use rust_ipfs::{Block, Ipfs, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use message::{Message, Want, WireBlock};

use crate::IpfsError;

/// The protocol we open streams with; Kubo speaks it.
const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// Protocols we accept streams on (older peers send with these).
pub(crate) const ACCEPTED: [StreamProtocol; 4] = [
    StreamProtocol::new("/ipfs/bitswap/1.2.0"),
    StreamProtocol::new("/ipfs/bitswap/1.1.0"),
    StreamProtocol::new("/ipfs/bitswap/1.0.0"),
    StreamProtocol::new("/ipfs/bitswap"),
];
/// A block request with no answer for this long is sent again (or to another peer).
const BLOCK_RETRY: Duration = Duration::from_secs(10);
/// A want nobody has is asked again this often.
const REBROADCAST: Duration = Duration::from_secs(2);
/// Bytes of block data per outgoing message (a single larger block goes alone).
const BLOCKS_PER_MESSAGE_BYTES: usize = 1024 * 1024;
/// Served blocks queued per peer before its reader waits (backpressure on greedy peers).
const SERVE_QUEUE: usize = 16;

/// Multihash bytes, the key of wants (Kubo keys blocks by multihash too).
type Key = Vec<u8>;

/// Handle to the Bitswap tasks of one node.
pub(crate) struct Bitswap {
    commands: mpsc::UnboundedSender<Command>,
    traffic: Arc<Counters>,
    next_token: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

enum Command {
    Want { cid: Cid, token: u64, reply: oneshot::Sender<Block> },
    Cancel { key: Key, token: u64 },
    Stored { key: Key, block: Block, from: PeerId },
    Presence { peer: PeerId, key: Key, have: bool },
    PeerUp(PeerId),
    PeerDown(PeerId),
    Tick,
}

/// What the engine and the readers share.
struct Shared {
    ipfs: Ipfs,
    /// The engine's repo folder (block files are written there directly).
    repo_path: std::path::PathBuf,
    commands: mpsc::UnboundedSender<Command>,
    /// Wanted multihash -> the CID it is wanted as; readers store only these blocks.
    wanted: Mutex<HashMap<Key, Cid>>,
    /// Outbound queues per peer (created on first use).
    peers: Mutex<HashMap<PeerId, Outbound>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    traffic: Arc<Counters>,
}

/// Running totals of what went over Bitswap.
#[derive(Default)]
struct Counters {
    received_blocks: AtomicU64,
    received_bytes: AtomicU64,
    sent_blocks: AtomicU64,
    sent_bytes: AtomicU64,
}

/// What went over Bitswap since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Blocks received, verified and stored.
    pub received_blocks: u64,
    pub received_bytes: u64,
    /// Blocks served to other peers.
    pub sent_blocks: u64,
    pub sent_bytes: u64,
}

#[derive(Clone)]
struct Outbound {
    control: mpsc::UnboundedSender<Message>,
    blocks: mpsc::Sender<WireBlock>,
}

impl Bitswap {
    /// Starts the engine, the inbound stream reader and the connection watcher. `inbound` carries
    /// the streams accepted by the node's [`InboundBehaviour`].
    pub(crate) async fn start(
        ipfs: Ipfs,
        repo_path: std::path::PathBuf,
        mut inbound: mpsc::UnboundedReceiver<(PeerId, rust_ipfs::Stream)>,
    ) -> Result<Bitswap, IpfsError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let traffic = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            ipfs: ipfs.clone(),
            repo_path,
            commands: commands.clone(),
            wanted: Mutex::default(),
            peers: Mutex::default(),
            tasks: Mutex::default(),
            traffic: traffic.clone(),
        });
        let mut tasks = Vec::new();
        let acceptor = shared.clone();
        tasks.push(tokio::spawn(async move {
            while let Some((peer, stream)) = inbound.recv().await {
                let reader = tokio::spawn(read_stream(acceptor.clone(), peer, stream));
                acceptor.keep(reader);
            }
        }));
        let mut events = ipfs.swarm_events().await.map_err(|e| IpfsError::Start(format!("swarm events: {e:#}")))?;
        let events_commands = commands.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let command = match event {
                    rust_ipfs::ConnexaSwarmEvent::ConnectionEstablished { peer_id, .. } => Command::PeerUp(peer_id),
                    rust_ipfs::ConnexaSwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        Command::PeerDown(peer_id)
                    }
                    _ => continue,
                };
                if events_commands.send(command).is_err() {
                    break;
                }
            }
        }));
        let tick_commands = commands.clone();
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                if tick_commands.send(Command::Tick).is_err() {
                    break;
                }
            }
        }));
        let engine = Engine { shared, wants: HashMap::new(), peers: HashSet::new(), best: None };
        tasks.push(tokio::spawn(engine.run(receiver)));
        Ok(Bitswap { commands, traffic, next_token: AtomicU64::new(0), tasks: Mutex::new(tasks) })
    }

    /// Fetches one block from the network; it is hash-checked and on disk when this returns.
    /// Dropping the future withdraws the want.
    pub(crate) fn fetch(&self, cid: Cid) -> impl std::future::Future<Output = Result<Block, IpfsError>> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let sent = self.commands.send(Command::Want { cid, token, reply }).is_ok();
        let withdraw = Withdraw { commands: self.commands.clone(), key: cid.hash().to_bytes(), token, armed: sent };
        async move {
            // Moves the whole guard in (a closure would capture only the field it touches).
            let mut withdraw = withdraw;
            let result = answer.await.map_err(|_| IpfsError::Store("bitswap engine stopped".into()));
            withdraw.armed = false;
            result
        }
    }

    /// Stops every task (the node is shutting down).
    /// What went over Bitswap so far.
    pub(crate) fn traffic(&self) -> Traffic {
        let t = &self.traffic;
        Traffic {
            received_blocks: t.received_blocks.load(Ordering::Relaxed),
            received_bytes: t.received_bytes.load(Ordering::Relaxed),
            sent_blocks: t.sent_blocks.load(Ordering::Relaxed),
            sent_bytes: t.sent_bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn stop(&self) {
        for task in self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

/// Sends `Cancel` when a fetch is dropped before its block arrived.
struct Withdraw {
    commands: mpsc::UnboundedSender<Command>,
    key: Key,
    token: u64,
    armed: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.send(Command::Cancel { key: std::mem::take(&mut self.key), token: self.token });
        }
    }
}

impl Shared {
    fn keep(&self, task: JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// The outbound queues of `peer`, starting its writer on first use.
    fn outbound(self: &Arc<Self>, peer: PeerId) -> Outbound {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(out) = peers.get(&peer) {
            if !out.control.is_closed() {
                return out.clone();
            }
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let (blocks, blocks_rx) = mpsc::channel(SERVE_QUEUE);
        let out = Outbound { control, blocks };
        peers.insert(peer, out.clone());
        drop(peers);
        let writer = tokio::spawn(write_peer(self.clone(), peer, control_rx, blocks_rx));
        self.keep(writer);
        out
    }

    fn send(self: &Arc<Self>, peer: PeerId, message: Message) {
        if !message.is_empty() {
            let _ = self.outbound(peer).control.send(message);
        }
    }

    fn forget(&self, peer: &PeerId) {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner).remove(peer);
    }
}

/// Owns the single outbound stream to one peer: opens it on the first message, merges what is
/// queued into as few messages as possible, reopens it once after a write error.
async fn write_peer(
    shared: Arc<Shared>,
    peer: PeerId,
    mut control: mpsc::UnboundedReceiver<Message>,
    mut blocks: mpsc::Receiver<WireBlock>,
) {
    let mut stream = None;
    loop {
        // Wait for something to send, control messages first.
        let mut message = tokio::select! {
            biased;
            item = control.recv() => match item { Some(m) => m, None => break },
            item = blocks.recv() => match item {
                Some(b) => Message { blocks: vec![b], ..Message::default() },
                None => break,
            },
        };
        while let Ok(more) = control.try_recv() {
            message.wants.extend(more.wants);
            message.presences.extend(more.presences);
            message.blocks.extend(more.blocks);
        }
        let mut size: usize = message.blocks.iter().map(|b| b.data.len()).sum();
        while size < BLOCKS_PER_MESSAGE_BYTES {
            match blocks.try_recv() {
                Ok(block) => {
                    size += block.data.len();
                    message.blocks.push(block);
                }
                _ => break,
            }
        }
        let body = message.encode();
        tracing::trace!(%peer, wants = message.wants.len(), blocks = message.blocks.len(), presences = message.presences.len(), "send");
        let mut attempts = 0;
        loop {
            if stream.is_none() {
                match shared.ipfs.open_stream(peer, PROTOCOL).await {
                    Ok(s) => stream = Some(s),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "cannot open a bitswap stream");
                        shared.forget(&peer);
                        let _ = shared.commands.send(Command::PeerDown(peer));
                        return;
                    }
                }
            }
            let Some(s) = stream.as_mut() else { break };
            match message::write_frame(s, &body).await {
                Ok(()) => break,
                Err(e) if attempts == 0 => {
                    tracing::debug!(%peer, error = %e, "bitswap write failed, reopening");
                    stream = None;
                    attempts += 1;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bitswap write failed again, dropping peer");
                    shared.forget(&peer);
                    let _ = shared.commands.send(Command::PeerDown(peer));
                    return;
                }
            }
        }
    }
    if let Some(mut s) = stream {
        let _ = futures_util::io::AsyncWriteExt::close(&mut s).await;
    }
}

/// Reads one inbound stream to its end: serves wants, stores wanted blocks, reports presences.
async fn read_stream(shared: Arc<Shared>, peer: PeerId, stream: rust_ipfs::Stream) {
    let mut reader = futures_util::io::BufReader::new(stream);
    loop {
        let body = match message::read_frame(&mut reader).await {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "bitswap stream ended");
                return;
            }
        };
        let message = match Message::decode(&body) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "undecodable bitswap message");
                return;
            }
        };
        drop(body);
        tracing::trace!(%peer, wants = message.wants.len(), blocks = message.blocks.len(), presences = message.presences.len(), "received");
        serve(&shared, peer, message.wants).await;
        for block in message.blocks {
            receive(&shared, peer, block).await;
        }
        for (cid, have) in message.presences {
            let command = Command::Presence { peer, key: cid.hash().to_bytes(), have };
            let _ = shared.commands.send(command);
        }
    }
}

/// Answers a peer's wants from the store: the block, `HAVE`, or `DONT_HAVE` when asked to.
async fn serve(shared: &Arc<Shared>, peer: PeerId, wants: Vec<Want>) {
    let repo = shared.ipfs.repo();
    let mut presences = Vec::new();
    for want in wants.into_iter().filter(|w| !w.cancel) {
        let block = match repo.get_block_now(&want.cid).await {
            Ok(block) => block,
            Err(e) => {
                tracing::warn!(cid = %want.cid, error = %e, "cannot read block to serve");
                None
            }
        };
        match block {
            Some(block) if !want.have_only => {
                let wire = WireBlock { prefix: message::prefix_of(&want.cid), data: block.data().to_vec() };
                let size = wire.data.len() as u64;
                if shared.outbound(peer).blocks.send(wire).await.is_err() {
                    return;
                }
                shared.traffic.sent_blocks.fetch_add(1, Ordering::Relaxed);
                shared.traffic.sent_bytes.fetch_add(size, Ordering::Relaxed);
            }
            Some(_) => presences.push((want.cid, true)),
            None if want.send_dont_have => presences.push((want.cid, false)),
            None => {}
        }
    }
    if !presences.is_empty() {
        shared.send(peer, Message { presences, ..Message::default() });
    }
}

/// Stores a received block if it is wanted; its CID is computed from the data, so it is verified.
async fn receive(shared: &Arc<Shared>, peer: PeerId, wire: WireBlock) {
    let cid = match message::cid_of(&wire.prefix, &wire.data) {
        Ok(cid) => cid,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "unusable block from peer");
            return;
        }
    };
    let key = cid.hash().to_bytes();
    let wanted = shared.wanted.lock().unwrap_or_else(PoisonError::into_inner).get(&key).copied();
    let Some(wanted) = wanted else { return };
    // The hash matches the wanted CID's multihash: the block is stored under the wanted CID.
    let block = Block::new_unchecked(wanted, wire.data);
    // Written without fsync: the walk syncs a pin's blocks at once before recording the pin.
    let path = crate::blockfile::block_path(&shared.repo_path, &wanted);
    let data = block.inner_data().clone();
    let written = tokio::task::spawn_blocking(move || crate::blockfile::write_unsynced(&path, &data)).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(cid = %wanted, result = ?written, "cannot store received block");
        return;
    }
    shared.traffic.received_blocks.fetch_add(1, Ordering::Relaxed);
    shared.traffic.received_bytes.fetch_add(block.data().len() as u64, Ordering::Relaxed);
    let _ = shared.commands.send(Command::Stored { key, block, from: peer });
}

/// One wanted block.
struct WantState {
    cid: Cid,
    waiters: Vec<(u64, oneshot::Sender<Block>)>,
    /// The peer asked for the block, and when.
    asked: Option<(PeerId, Instant)>,
    /// Peers that said they have it, to ask next.
    haves: VecDeque<PeerId>,
    /// Peers that said they do not have it.
    dont_haves: HashSet<PeerId>,
    /// When the want was last sent to every peer.
    broadcast: Instant,
}

struct Engine {
    shared: Arc<Shared>,
    wants: HashMap<Key, WantState>,
    /// Connected peers (bitswap or not: a peer without bitswap drops out on its first write).
    peers: HashSet<PeerId>,
    /// The peer that delivered the last block: first asked for the next ones.
    best: Option<PeerId>,
}

impl Engine {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Want { cid, token, reply } => self.want(cid, token, reply),
                Command::Cancel { key, token } => self.cancel(key, token),
                Command::Stored { key, block, from } => self.stored(key, block, from),
                Command::Presence { peer, key, have } => self.presence(peer, key, have),
                Command::PeerUp(peer) => self.peer_up(peer),
                Command::PeerDown(peer) => self.peer_down(peer),
                Command::Tick => self.tick(),
            }
        }
    }

    fn want(&mut self, cid: Cid, token: u64, reply: oneshot::Sender<Block>) {
        let key = cid.hash().to_bytes();
        if let Some(state) = self.wants.get_mut(&key) {
            state.waiters.push((token, reply));
            return;
        }
        self.shared.wanted.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), cid);
        let state = WantState {
            cid,
            waiters: vec![(token, reply)],
            asked: None,
            haves: VecDeque::new(),
            dont_haves: HashSet::new(),
            broadcast: Instant::now(),
        };
        self.wants.insert(key.clone(), state);
        self.broadcast(&key);
    }

    /// Asks one peer for the block and every other peer whether it has it.
    fn broadcast(&mut self, key: &Key) {
        let Some(state) = self.wants.get_mut(key) else {
            return;
        };
        state.broadcast = Instant::now();
        let target = self
            .best
            .filter(|p| self.peers.contains(p) && !state.dont_haves.contains(p))
            .or_else(|| self.peers.iter().find(|p| !state.dont_haves.contains(p)).copied());
        let cid = state.cid;
        if let Some(peer) = target {
            state.asked = Some((peer, Instant::now()));
        }
        for peer in &self.peers {
            let have_only = Some(*peer) != target;
            let want = Want { cid, cancel: false, have_only, send_dont_have: true };
            self.shared.send(*peer, Message { wants: vec![want], ..Message::default() });
        }
    }

    fn ask_block(&mut self, key: &Key, peer: PeerId) {
        let Some(state) = self.wants.get_mut(key) else {
            return;
        };
        state.asked = Some((peer, Instant::now()));
        let want = Want { cid: state.cid, cancel: false, have_only: false, send_dont_have: true };
        self.shared.send(peer, Message { wants: vec![want], ..Message::default() });
    }

    fn cancel(&mut self, key: Key, token: u64) {
        let Some(state) = self.wants.get_mut(&key) else {
            return;
        };
        state.waiters.retain(|(t, _)| *t != token);
        if state.waiters.is_empty() {
            self.drop_want(&key, None);
        }
    }

    /// Forgets a want and tells every peer but `except` to stop sending it.
    fn drop_want(&mut self, key: &Key, except: Option<PeerId>) -> Option<WantState> {
        let state = self.wants.remove(key)?;
        self.shared.wanted.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
        for peer in self.peers.iter().filter(|p| Some(**p) != except) {
            let want = Want { cid: state.cid, cancel: true, have_only: false, send_dont_have: false };
            self.shared.send(*peer, Message { wants: vec![want], ..Message::default() });
        }
        Some(state)
    }

    fn stored(&mut self, key: Key, block: Block, from: PeerId) {
        tracing::trace!(cid = %block.cid(), %from, "stored");
        self.best = Some(from);
        if let Some(state) = self.drop_want(&key, Some(from)) {
            for (_, reply) in state.waiters {
                let _ = reply.send(block.clone());
            }
        }
    }

    fn presence(&mut self, peer: PeerId, key: Key, have: bool) {
        tracing::trace!(%peer, have, "presence");
        let Some(state) = self.wants.get_mut(&key) else {
            return;
        };
        let asked_this = state.asked.map(|(p, _)| p) == Some(peer);
        if have {
            state.dont_haves.remove(&peer);
            if state.asked.is_none() {
                self.ask_block(&key, peer);
            } else if !asked_this && !state.haves.contains(&peer) {
                state.haves.push_back(peer);
            }
        } else {
            state.dont_haves.insert(peer);
            state.haves.retain(|p| *p != peer);
            if asked_this {
                state.asked = None;
                if let Some(next) = state.haves.pop_front() {
                    self.ask_block(&key, next);
                }
            }
        }
    }

    fn peer_up(&mut self, peer: PeerId) {
        tracing::trace!(%peer, "peer up");
        if !self.peers.insert(peer) {
            return;
        }
        // Send the whole wantlist: the block itself for wants nobody is asked for.
        let mut wants = Vec::new();
        let now = Instant::now();
        for state in self.wants.values_mut() {
            let have_only = state.asked.is_some();
            if !have_only {
                state.asked = Some((peer, now));
            }
            wants.push(Want { cid: state.cid, cancel: false, have_only, send_dont_have: true });
        }
        self.shared.send(peer, Message { wants, full: false, ..Message::default() });
    }

    fn peer_down(&mut self, peer: PeerId) {
        tracing::trace!(%peer, "peer down");
        if !self.peers.remove(&peer) {
            return;
        }
        self.shared.forget(&peer);
        if self.best == Some(peer) {
            self.best = None;
        }
        let orphaned: Vec<Key> = self
            .wants
            .iter_mut()
            .filter_map(|(key, state)| {
                state.haves.retain(|p| *p != peer);
                state.dont_haves.remove(&peer);
                let lost = state.asked.map(|(p, _)| p) == Some(peer);
                if lost {
                    state.asked = None;
                }
                lost.then(|| key.clone())
            })
            .collect();
        for key in orphaned {
            self.retry(&key);
        }
    }

    /// Asks the next peer known to have the block, or everyone again.
    fn retry(&mut self, key: &Key) {
        let Some(state) = self.wants.get_mut(key) else {
            return;
        };
        match state.haves.pop_front() {
            Some(next) => self.ask_block(key, next),
            None => self.broadcast(key),
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        tracing::trace!(wants = self.wants.len(), peers = self.peers.len(), "tick");
        let mut due = Vec::new();
        for (key, state) in &mut self.wants {
            match state.asked {
                Some((_, since)) if now.duration_since(since) >= BLOCK_RETRY => {
                    state.asked = None;
                    due.push(key.clone());
                }
                None if now.duration_since(state.broadcast) >= REBROADCAST => {
                    // Peers may have fetched the block since they said they did not have it.
                    state.dont_haves.clear();
                    due.push(key.clone());
                }
                _ => {}
            }
        }
        for key in due {
            tracing::trace!(cid = ?self.wants.get(&key).map(|s| s.cid), "retry");
            self.retry(&key);
        }
    }
}
