//! Our Bitswap 1.2 client and server on libp2p streams: read [`Bitswap`] first, then
//! [`engine::Engine`], which makes every decision.
//!
//! Why not rust-ipfs's own Bitswap: its connection handler keeps a single inbound stream and
//! replaces it when the peer opens another one. Kubo sends every response message on a new
//! stream, so with more than one want outstanding, responses still unread are dropped and the
//! pin stalls. This module reads every inbound stream to its end; streams are accepted by
//! [`InboundBehaviour`] and opened with libp2p-stream.
//!
//! Shape: one driver task feeds the engine (our wants, swarm events, checked messages, ticks)
//! and carries out its actions; one writer task per peer owns the single outbound stream to that
//! peer and sends what is in its outbox; one reader task per inbound stream reads frames, looks
//! up wants, hashes blocks and hands the result to the driver; short tasks read served blocks
//! and write received ones. Every task is started through [`Tasks`], so [`Bitswap::stop`] ends
//! them all.
//!
//! Bounds on what a remote peer can make us hold (the constants below and `engine::LIMITS`):
//! streams waiting to be accepted and streams per peer; message size (4 MiB, as Kubo) and items
//! per message (`pb::MAX_ITEMS`); bytes of received messages in hand per peer and in all (a
//! reader reserves the length before reading the body, and the reservation travels with the
//! message until the engine has handled it); one message per peer on its way to the engine;
//! wants kept per peer; blocks being served at once; replies queued to a peer (its next message
//! waits while they pile up, so a peer that does not read stalls only itself). A peer that sends
//! an oversized or malformed message, or exceeds its wantlist or reply budget, is disconnected
//! and its state dropped.

mod engine;
pub(crate) mod inbound;
pub(crate) mod message;
mod pb;

pub(crate) use inbound::InboundBehaviour;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use futures_util::io::AsyncReadExt;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use rust_ipfs::{Block, Ipfs, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use engine::{Action, Asked, Engine, Event, Key, Received};
use message::{Message, WireBlock, MAX_MESSAGE_BYTES};

use crate::varint::{self, FrameError};
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
/// Inbound streams negotiated and not yet picked up; more are reset.
pub(crate) const STREAM_QUEUE: usize = 64;
/// Inbound streams read at once from one peer; more are reset. Kubo opens a stream per response
/// message and closes it once written, so it rarely has more than a few open.
const STREAMS_PER_PEER: usize = 64;
/// Bytes of received messages in hand per peer (two messages of the largest size).
const INBOUND_BYTES_PER_PEER: usize = 2 * MAX_MESSAGE_BYTES;
/// Bytes of received messages in hand, all peers together.
const INBOUND_BYTES_TOTAL: usize = 8 * MAX_MESSAGE_BYTES;
/// Events (messages, store and serve results) waiting for the engine.
const EVENT_QUEUE: usize = 256;
/// Items (wants, presences) waiting in a peer's outbox above which its next message waits
/// (backpressure: its streams are not read meanwhile).
const OUTBOX_SOFT: usize = pb::MAX_ITEMS;
/// Items in a peer's outbox that can only be reached by breaking the backpressure above (one
/// message of replies at most lands past the soft limit); the peer is then disconnected.
const OUTBOX_ITEMS: usize = OUTBOX_SOFT + 2 * pb::MAX_ITEMS;
/// Bytes of block data per outgoing message (a single larger block goes alone).
const BLOCKS_PER_MESSAGE_BYTES: usize = 1024 * 1024;

/// Handle to the Bitswap tasks of one node.
pub(crate) struct Bitswap {
    local: mpsc::UnboundedSender<Local>,
    traffic: Arc<Counters>,
    next_token: AtomicU64,
    tasks: Arc<Tasks>,
}

/// Our own wants, from the DAG walk (bounded by its window).
enum Local {
    Want { cid: Cid, token: u64, reply: oneshot::Sender<Block> },
    Cancel { key: Key, token: u64 },
}

/// An event for the engine, with the inbound bytes it holds (released once handled).
struct Input {
    event: Event<PeerId>,
    _reserved: Option<Reservation>,
}

/// What a received message holds until the engine has handled it: its bytes in the peer's and
/// the overall budget, and the peer's turn (one message per peer in the engine's queue at once).
struct Reservation {
    _own: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
    _turn: OwnedSemaphorePermit,
}

impl From<Event<PeerId>> for Input {
    fn from(event: Event<PeerId>) -> Input {
        Input { event, _reserved: None }
    }
}

/// Every task Bitswap started; none is started after [`Tasks::stop`].
pub(crate) struct Tasks(Mutex<Option<Vec<JoinHandle<()>>>>);

impl Tasks {
    fn new() -> Tasks {
        Tasks(Mutex::new(Some(Vec::new())))
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tasks) = tasks.as_mut() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(tokio::spawn(task));
        }
    }

    /// Aborts every task and waits until each has ended.
    async fn stop(&self) {
        let tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Handles to the tasks started and not finished yet.
    #[cfg(test)]
    pub(crate) fn running(&self) -> Vec<tokio::task::AbortHandle> {
        let tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.iter().flatten().filter(|t| !t.is_finished()).map(JoinHandle::abort_handle).collect()
    }
}

/// What the driver, readers and writers share.
struct Shared {
    ipfs: Ipfs,
    /// The engine's repo folder (block files are written there directly).
    repo_path: std::path::PathBuf,
    events: mpsc::Sender<Input>,
    /// Inbound bookkeeping per peer (created with its first stream).
    inbound: Mutex<HashMap<PeerId, Arc<PeerInbound>>>,
    /// Outbound queues per peer (created on first use).
    outbound: Mutex<HashMap<PeerId, Outbound>>,
    /// Bytes of received messages in hand, all peers together.
    inbound_bytes: Arc<Semaphore>,
    tasks: Arc<Tasks>,
    traffic: Arc<Counters>,
}

struct PeerInbound {
    bytes: Arc<Semaphore>,
    streams: AtomicUsize,
    /// One permit: the peer's message on its way to the engine.
    turn: Arc<Semaphore>,
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
    outbox: Arc<Outbox>,
    /// Blocks being served (the engine keeps at most `serving_per_peer` of them in flight).
    blocks: mpsc::Sender<WireBlock>,
}

/// Wants and presences to send to one peer, merged into one message until its writer takes it.
#[derive(Default)]
struct Outbox {
    message: Mutex<Message>,
    /// Something was queued (for the writer).
    ready: Notify,
    /// The writer took what was queued (for readers waiting on backpressure).
    taken: Notify,
}

impl Outbox {
    fn items(&self) -> usize {
        self.message.lock().unwrap_or_else(PoisonError::into_inner).items()
    }
}

impl Bitswap {
    /// Starts the driver and the inbound stream acceptor. `inbound` carries the streams accepted
    /// by the node's [`InboundBehaviour`].
    pub(crate) async fn start(
        ipfs: Ipfs,
        repo_path: std::path::PathBuf,
        inbound: mpsc::Receiver<(PeerId, rust_ipfs::Stream)>,
    ) -> Result<Bitswap, IpfsError> {
        let swarm = ipfs.swarm_events().await.map_err(|e| IpfsError::Start(format!("swarm events: {e:#}")))?;
        let (local, local_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let traffic = Arc::new(Counters::default());
        let tasks = Arc::new(Tasks::new());
        let shared = Arc::new(Shared {
            ipfs,
            repo_path,
            events,
            inbound: Mutex::default(),
            outbound: Mutex::default(),
            inbound_bytes: Arc::new(Semaphore::new(INBOUND_BYTES_TOTAL)),
            tasks: tasks.clone(),
            traffic: traffic.clone(),
        });
        tasks.spawn(accept(shared.clone(), inbound));
        tasks.spawn(drive(shared, local_rx, events_rx, swarm));
        Ok(Bitswap { local, traffic, next_token: AtomicU64::new(0), tasks })
    }

    /// Fetches one block from the network; it is hash-checked and on disk when this returns.
    /// Dropping the future withdraws the want.
    pub(crate) fn fetch(&self, cid: Cid) -> impl Future<Output = Result<Block, IpfsError>> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let sent = self.local.send(Local::Want { cid, token, reply }).is_ok();
        let withdraw = Withdraw { local: self.local.clone(), key: cid.hash().to_bytes(), token, armed: sent };
        async move {
            // Moves the whole guard in (a closure would capture only the field it touches).
            let mut withdraw = withdraw;
            let result = answer.await.map_err(|_| IpfsError::Store("bitswap engine stopped".into()));
            withdraw.armed = false;
            result
        }
    }

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

    /// Ends every task Bitswap started (the node is shutting down); returns once all have ended.
    pub(crate) async fn stop(&self) {
        self.tasks.stop().await;
    }

    #[cfg(test)]
    pub(crate) fn tasks(&self) -> Arc<Tasks> {
        self.tasks.clone()
    }
}

/// Sends `Cancel` when a fetch is dropped before its block arrived.
struct Withdraw {
    local: mpsc::UnboundedSender<Local>,
    key: Key,
    token: u64,
    armed: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.local.send(Local::Cancel { key: std::mem::take(&mut self.key), token: self.token });
        }
    }
}

/// Feeds the engine and carries out its actions.
async fn drive(
    shared: Arc<Shared>,
    mut local: mpsc::UnboundedReceiver<Local>,
    mut events: mpsc::Receiver<Input>,
    mut swarm: BoxStream<'static, rust_ipfs::ConnexaSwarmEvent>,
) {
    let mut engine = Engine::new(engine::LIMITS);
    let mut waiters: HashMap<u64, oneshot::Sender<Block>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut followups: Vec<Event<PeerId>> = Vec::new();
    loop {
        let input: Input = tokio::select! {
            Some(item) = local.recv() => match item {
                Local::Want { cid, token, reply } => {
                    waiters.insert(token, reply);
                    Event::Want { cid, token }.into()
                }
                Local::Cancel { key, token } => {
                    waiters.remove(&token);
                    Event::Cancel { key, token }.into()
                }
            },
            Some(input) = events.recv() => input,
            Some(event) = swarm.next() => match event {
                rust_ipfs::ConnexaSwarmEvent::ConnectionEstablished { peer_id, .. } => Event::PeerUp(peer_id).into(),
                rust_ipfs::ConnexaSwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    Event::PeerDown(peer_id).into()
                }
                _ => continue,
            },
            _ = tick.tick() => Event::Tick.into(),
        };
        let Input { event, _reserved } = input;
        followups.push(event);
        while let Some(event) = followups.pop() {
            if let Event::PeerDown(peer) = &event {
                shared.forget(peer);
            }
            for action in engine.handle(event, Instant::now()) {
                if let Some(event) = shared.act(action, &mut waiters) {
                    followups.push(event);
                }
            }
        }
    }
}

/// Picks up the streams the behaviour accepted, at most `STREAMS_PER_PEER` per peer at once.
async fn accept(shared: Arc<Shared>, mut inbound: mpsc::Receiver<(PeerId, rust_ipfs::Stream)>) {
    while let Some((peer, stream)) = inbound.recv().await {
        let state = shared.peer_inbound(peer);
        if state.streams.fetch_add(1, Ordering::AcqRel) >= STREAMS_PER_PEER {
            state.streams.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(%peer, "too many bitswap streams from peer, resetting one");
            continue;
        }
        shared.tasks.spawn(read_stream(shared.clone(), peer, state, stream));
    }
}

impl Shared {
    fn peer_inbound(&self, peer: PeerId) -> Arc<PeerInbound> {
        let mut inbound = self.inbound.lock().unwrap_or_else(PoisonError::into_inner);
        inbound
            .entry(peer)
            .or_insert_with(|| {
                Arc::new(PeerInbound {
                    bytes: Arc::new(Semaphore::new(INBOUND_BYTES_PER_PEER)),
                    streams: AtomicUsize::new(0),
                    turn: Arc::new(Semaphore::new(1)),
                })
            })
            .clone()
    }

    /// Carries out one action; returns an event to hand straight back to the engine.
    fn act(
        self: &Arc<Self>,
        action: Action<PeerId>,
        waiters: &mut HashMap<u64, oneshot::Sender<Block>>,
    ) -> Option<Event<PeerId>> {
        match action {
            Action::Send { peer, message } => {
                let out = self.outbound(peer);
                let mut queued = out.outbox.message.lock().unwrap_or_else(PoisonError::into_inner);
                queued.merge(message);
                let over = queued.items() > OUTBOX_ITEMS;
                drop(queued);
                out.outbox.ready.notify_one();
                if over {
                    return Some(Event::Violation { peer, reason: "replies not read" });
                }
            }
            Action::Serve { peer, cid } => {
                let blocks = self.outbound(peer).blocks;
                let shared = self.clone();
                self.tasks.spawn(async move {
                    let block = match shared.ipfs.repo().get_block_now(&cid).await {
                        Ok(block) => block,
                        Err(e) => {
                            tracing::warn!(%cid, error = %e, "cannot read block to serve");
                            None
                        }
                    };
                    let sent = match block {
                        Some(block) => {
                            let wire = WireBlock { prefix: message::prefix_of(&cid), data: block.inner_data().clone() };
                            blocks.send(wire).await.is_ok()
                        }
                        None => false,
                    };
                    // The writer reports blocks it was handed.
                    if !sent {
                        let _ = shared.events.send(Event::Served { peer }.into()).await;
                    }
                });
            }
            Action::Store { cid, data, from } => {
                let shared = self.clone();
                self.tasks.spawn(async move {
                    // Written without fsync: the walk syncs a pin's blocks at once before recording the pin.
                    let path = crate::blockfile::block_path(&shared.repo_path, &cid);
                    let bytes = data.clone();
                    let written =
                        tokio::task::spawn_blocking(move || crate::blockfile::write_unsynced(&path, &bytes)).await;
                    let event = if matches!(written, Ok(Ok(()))) {
                        shared.traffic.received_blocks.fetch_add(1, Ordering::Relaxed);
                        shared.traffic.received_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                        Event::Stored { cid, data, from }
                    } else {
                        tracing::warn!(%cid, result = ?written, "cannot store received block");
                        Event::StoreFailed { cid }
                    };
                    let _ = shared.events.send(event.into()).await;
                });
            }
            Action::Deliver { cid, data, tokens } => {
                let block = Block::new_unchecked(cid, data);
                for token in tokens {
                    if let Some(reply) = waiters.remove(&token) {
                        let _ = reply.send(block.clone());
                    }
                }
            }
            Action::Disconnect { peer, reason } => {
                tracing::info!(%peer, reason, "disconnecting a bitswap peer");
                self.forget(&peer);
                let ipfs = self.ipfs.clone();
                self.tasks.spawn(async move {
                    if let Err(e) = ipfs.disconnect(peer).await {
                        tracing::debug!(%peer, error = %e, "disconnect failed");
                    }
                });
            }
        }
        None
    }

    /// The outbound queues of `peer`, starting its writer on first use.
    fn outbound(self: &Arc<Self>, peer: PeerId) -> Outbound {
        let mut peers = self.outbound.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(out) = peers.get(&peer) {
            if !out.blocks.is_closed() {
                return out.clone();
            }
        }
        let (blocks, blocks_rx) = mpsc::channel(engine::LIMITS.serving_per_peer);
        let out = Outbound { outbox: Arc::default(), blocks };
        peers.insert(peer, out.clone());
        drop(peers);
        self.tasks.spawn(write_peer(self.clone(), peer, out.outbox.clone(), blocks_rx));
        out
    }

    /// Drops the queues of a peer that is gone: its writer ends once its queues are dropped.
    fn forget(&self, peer: &PeerId) {
        self.outbound.lock().unwrap_or_else(PoisonError::into_inner).remove(peer);
        self.inbound.lock().unwrap_or_else(PoisonError::into_inner).remove(peer);
    }
}

/// Owns the single outbound stream to one peer: opens it on the first message, sends what the
/// outbox holds and the blocks served, reopens the stream once after a write error.
async fn write_peer(shared: Arc<Shared>, peer: PeerId, outbox: Arc<Outbox>, mut blocks: mpsc::Receiver<WireBlock>) {
    let mut stream = None;
    loop {
        let mut message = tokio::select! {
            biased;
            () = outbox.ready.notified() => Message::default(),
            item = blocks.recv() => match item {
                Some(b) => Message { blocks: vec![b], ..Message::default() },
                None => break,
            },
        };
        message.merge(std::mem::take(&mut *outbox.message.lock().unwrap_or_else(PoisonError::into_inner)));
        outbox.taken.notify_waiters();
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
        if message.is_empty() {
            continue;
        }
        let served = message.blocks.len();
        let body = message.encode();
        drop(message);
        tracing::trace!(%peer, bytes = body.len(), served, "send");
        let mut attempts = 0;
        let written = loop {
            if stream.is_none() {
                match shared.ipfs.open_stream(peer, PROTOCOL).await {
                    Ok(s) => stream = Some(s),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "cannot open a bitswap stream");
                        break false;
                    }
                }
            }
            let Some(s) = stream.as_mut() else { break false };
            match varint::write_frame(s, &body).await {
                Ok(()) => break true,
                Err(e) if attempts == 0 => {
                    tracing::debug!(%peer, error = %e, "bitswap write failed, reopening");
                    stream = None;
                    attempts += 1;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bitswap write failed again, dropping peer");
                    break false;
                }
            }
        };
        if written {
            shared.traffic.sent_blocks.fetch_add(served as u64, Ordering::Relaxed);
            shared.traffic.sent_bytes.fetch_add(size as u64, Ordering::Relaxed);
        }
        for _ in 0..served {
            let _ = shared.events.send(Event::Served { peer }.into()).await;
        }
        if !written {
            let _ = shared.events.send(Event::PeerDown(peer).into()).await;
            return;
        }
    }
    if let Some(mut s) = stream {
        let _ = futures_util::io::AsyncWriteExt::close(&mut s).await;
    }
}

/// Gives a peer's stream slot back when its reader ends, however it ends.
struct StreamSlot(Arc<PeerInbound>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one inbound stream to its end and hands each checked message to the engine.
async fn read_stream(shared: Arc<Shared>, peer: PeerId, state: Arc<PeerInbound>, stream: rust_ipfs::Stream) {
    let _slot = StreamSlot(state.clone());
    let mut reader = futures_util::io::BufReader::new(stream);
    loop {
        let len = match varint::read_frame_len(&mut reader, MAX_MESSAGE_BYTES).await {
            Ok(Some(len)) => len,
            Ok(None) => return,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "bitswap stream ended");
                return;
            }
            Err(e) => {
                shared.violation(peer, "oversized or invalid frame", &e).await;
                return;
            }
        };
        // Reserve the bytes before reading them: this peer's share, its turn (once its replies
        // have drained), then the total, so a peer that stalls holds only its own share.
        let permits = u32::try_from(len.max(1)).unwrap_or(u32::MAX);
        let Ok(own) = state.bytes.clone().acquire_many_owned(permits).await else { return };
        let Ok(turn) = state.turn.clone().acquire_owned().await else { return };
        shared.replies_drained(peer).await;
        let Ok(all) = shared.inbound_bytes.clone().acquire_many_owned(permits).await else { return };
        let mut body = vec![0u8; len];
        if let Err(e) = reader.read_exact(&mut body).await {
            tracing::debug!(%peer, error = %e, "bitswap stream ended inside a message");
            return;
        }
        let message = match Message::decode(Bytes::from(body)) {
            Ok(message) => message,
            Err(e) => {
                shared.violation(peer, "malformed message", &e).await;
                return;
            }
        };
        let received = check(&shared, message).await;
        let reserved = Reservation { _own: own, _all: all, _turn: turn };
        let input = Input { event: Event::Received { peer, message: received }, _reserved: Some(reserved) };
        if shared.events.send(input).await.is_err() {
            return;
        }
    }
}

impl Shared {
    /// Waits until fewer than `OUTBOX_SOFT` replies wait for `peer`.
    async fn replies_drained(&self, peer: PeerId) {
        loop {
            let outbox =
                self.outbound.lock().unwrap_or_else(PoisonError::into_inner).get(&peer).map(|o| o.outbox.clone());
            let Some(outbox) = outbox else { return };
            let taken = outbox.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if outbox.items() < OUTBOX_SOFT {
                return;
            }
            // Checked again now and then: the writer may be gone with its outbox.
            let _ = tokio::time::timeout(Duration::from_secs(1), taken).await;
        }
    }

    async fn violation(&self, peer: PeerId, reason: &'static str, error: &(dyn std::error::Error + Send + Sync)) {
        tracing::debug!(%peer, reason, %error, "bitswap peer broke the protocol");
        let _ = self.events.send(Event::Violation { peer, reason }.into()).await;
    }
}

/// Looks up each want in the store (one existence check each) and hashes each block.
async fn check(shared: &Shared, message: Message) -> Received {
    let repo = shared.ipfs.repo();
    let mut wants = Vec::with_capacity(message.wants.len());
    for want in message.wants {
        let have = !want.cancel && repo.contains(&want.cid).await.unwrap_or(false);
        wants.push(Asked { want, have });
    }
    let mut blocks = Vec::with_capacity(message.blocks.len());
    for block in message.blocks {
        match message::cid_of(&block.prefix, &block.data) {
            Ok(cid) => blocks.push((cid, block.data)),
            Err(e) => tracing::debug!(error = %e, "unusable block from peer"),
        }
    }
    Received { wants, full: message.full, blocks, presences: message.presences }
}

#[cfg(test)]
mod tests {
    use crate::{DhtMode, Node, NodeOptions};

    fn options(dir: &std::path::Path, seed: u8) -> NodeOptions {
        let keypair = libp2p_identity::Keypair::ed25519_from_bytes([seed; 32]).expect("key");
        NodeOptions {
            keypair_protobuf: keypair.to_protobuf_encoding().expect("key bytes"),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            announce: Vec::new(),
            bootstrap: Vec::new(),
            dht_mode: DhtMode::Client,
            swarm_key: None,
            repo_path: dir.to_path_buf(),
        }
    }

    #[tokio::test]
    async fn stop_ends_every_task_it_started() {
        let (a_dir, b_dir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let a = Node::start(options(a_dir.path(), 1)).await.expect("start a");
        let b = Node::start(options(b_dir.path(), 2)).await.expect("start b");
        let addr = b.listen_addresses().await.remove(0).with(multiaddr::Protocol::P2p(b.inner.peer_id));
        a.connect(addr).await.expect("connect");
        // A want nobody can answer: writers on both sides, readers of each other's streams.
        let cid: cid::Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".parse().expect("cid");
        let fetch = a.inner.bitswap.fetch(cid);
        let wait = tokio::time::timeout(std::time::Duration::from_secs(3), fetch).await;
        assert!(wait.is_err(), "nobody has the block");
        let tasks = a.inner.bitswap.tasks();
        let running = tasks.running();
        assert!(running.len() >= 4, "driver, acceptor, a writer and a reader: {}", running.len());
        a.shutdown().await;
        assert!(running.iter().all(tokio::task::AbortHandle::is_finished));
        assert!(tasks.running().is_empty());
        b.shutdown().await;
    }
}
