//! A running cluster peer: openraft over the private transport, proposals
//! batched into log entries, writes forwarded to the leader, and the RPCs
//! other peers send. Read [`Consensus`] first.
//!
//! # Proposing
//!
//! Callers hand [`Consensus::propose`] their commands; a batcher puts every
//! proposal waiting into one log entry (up to [`MAX_BATCH_COMMANDS`]), so
//! Raft's per-entry cost is paid once for many pins. The entry carries this
//! peer's ID and a sequence number; the leader appends it (a follower sends
//! it to the leader first), and the caller is answered when *this* peer's
//! state machine applies it, with this peer's own results: a write is
//! visible on the peer that answered it (read-your-writes).
//!
//! # Who is answered
//!
//! Only peers holding the cluster secret reach us at all (the transport's
//! private network). Of those, Raft RPCs and proposals are answered only from
//! members of the current membership (or from anyone while this peer has
//! none yet: it is waiting to be added); a join request from any of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{ChangeMembers, Raft, ServerState};
use pincluster_p2p::{Inbound, InboundRequest, NetError, PeerId, PeerNet};
use pincluster_state::{Applied, Command, Pinset, StateError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::machine::{Results, Waiters};
use crate::{decode, encode, AppliedBatch, Batch, LogStorage, Member, NodeId, StateMachine, TypeConfig};

/// The most commands one log entry carries.
pub const MAX_BATCH_COMMANDS: usize = 1000;
/// Proposals waiting for the batcher, at most.
const PROPOSAL_QUEUE: usize = 4096;
/// Entries this peer has proposed and not yet seen applied, at most.
const ENTRIES_IN_FLIGHT: usize = 16;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// No leader is known, or it did not answer in time: retry.
    #[error("the cluster has no reachable leader: {0}")]
    NoLeader(String),
    /// The write was sent but its outcome is unknown (it may still be applied).
    #[error("the write was not confirmed in time; it may still be applied")]
    Timeout,
    /// The request was refused (not a member, bad membership change...).
    #[error("{0}")]
    Refused(String),
    /// This peer is shutting down.
    #[error("the consensus is shut down")]
    Closed,
    /// Storage failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Raft failed to start or to do what was asked; `what` says which step.
    #[error("raft: {what}")]
    Raft {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ConsensusError {
    /// A Raft failure at step `what`, keeping its cause as the source.
    pub(crate) fn raft<E>(what: &'static str) -> impl FnOnce(E) -> ConsensusError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| ConsensusError::Raft { what, source: Box::new(e) }
    }
}

/// Timing and limits of one peer's Raft.
#[derive(Clone, Debug)]
pub struct ConsensusOptions {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower starts an election after hearing nothing for a random time
    /// between this and a quarter more. openraft 0.9 makes the upper bound
    /// the leader's lease too (no vote is granted until it ran out since the
    /// last heartbeat), so a narrow range shortens a failover: the first
    /// candidate is turned down, the second, one timeout later, wins.
    pub election_timeout: Duration,
    /// A snapshot is built after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (for followers slightly behind).
    pub keep_behind_snapshot: u64,
    /// How long a proposal waits to be applied here before it gives up.
    pub propose_timeout: Duration,
}

impl Default for ConsensusOptions {
    fn default() -> Self {
        ConsensusOptions {
            heartbeat: Duration::from_millis(200),
            election_timeout: Duration::from_millis(1000),
            snapshot_every: 5000,
            keep_behind_snapshot: 1000,
            propose_timeout: Duration::from_secs(30),
        }
    }
}

/// The Raft node ID of a peer: the last 8 bytes of its peer ID, which for
/// every key type end in key material (an ed25519 peer ID is its public key).
pub fn node_id(peer: &PeerId) -> NodeId {
    let bytes = peer.to_bytes();
    let mut id = [0u8; 8];
    let tail = &bytes[bytes.len().saturating_sub(8)..];
    id[8 - tail.len()..].copy_from_slice(tail);
    u64::from_be_bytes(id)
}

/// A peer's role, as `peers ls` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Leader,
    Voter,
    Learner,
}

/// A member of the cluster as this peer sees it.
#[derive(Clone, Debug)]
pub struct PeerView {
    pub id: NodeId,
    pub member: Member,
    pub role: Role,
    /// Its last metrics and how long ago they arrived (this peer's own: now).
    pub metrics: Option<(Duration, PeerMetrics)>,
}

/// What a peer reports about itself at an interval, for allocation and health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMetrics {
    /// Bytes free where it stores blocks.
    pub freespace: u64,
    /// Bytes of blocks it stores.
    pub reposize: u64,
    /// Pins it holds (pinned).
    pub pinned: u64,
    /// Pins waiting or being fetched here.
    pub pinqueue: u64,
    /// Its configured tags (`cluster.tags`).
    pub tags: BTreeMap<String, String>,
    /// Its IPFS node's addresses, so that peers can fetch from each other.
    pub ipfs_addrs: Vec<String>,
}

/// What peers send each other.
#[derive(Serialize, Deserialize)]
enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower's batch for the leader to append.
    Propose(Batch),
    /// A member's latest metrics, sent to every other member at an interval.
    Metrics(PeerMetrics),
    /// A member asks the leader to remove a peer from the membership.
    Remove(NodeId),
    /// The leader is leaving: a voter is asked to start an election.
    Elect,
    /// A peer asks to be added (as a voter or a learner).
    Join {
        member: Member,
        voter: bool,
        /// What the application checks before it admits a peer (see [`Consensus::check_joins`]).
        proof: Vec<u8>,
    },
}

/// The answers. Errors travel as text: the caller only needs to know it failed.
#[derive(Serialize, Deserialize)]
enum Reply {
    Append(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    Proposed(Result<(), String>),
    Joined(Result<(), String>),
    /// Metrics received.
    Noted,
    /// Not answered: not a member, or the request did not decode.
    Refused(String),
    /// Not now: a snapshot is being installed; the sender backs off and retries.
    Busy,
}

/// One caller's commands on their way to a log entry.
struct Proposal {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<Vec<Result<Applied, StateError>>, ConsensusError>>,
}

/// What a joining peer must present, and what it is told when it does not.
struct JoinProof {
    mine: Vec<u8>,
    mismatch: String,
}

struct Shared {
    raft: Raft<TypeConfig>,
    proof: std::sync::OnceLock<JoinProof>,
    /// The latest metrics of every peer, with when they arrived.
    metrics: std::sync::Mutex<BTreeMap<NodeId, (tokio::time::Instant, PeerMetrics)>>,
    id: NodeId,
    member: Member,
    net: PeerNet,
    waiters: Waiters,
    seq: AtomicU64,
    options: ConsensusOptions,
    /// The pinset held entries before this log began (a single peer's own log).
    history: bool,
    /// One snapshot chunk at a time: the last chunk's call lasts as long as
    /// the install, and the leader's retries meanwhile would each hold a
    /// chunk in memory until it ends.
    installing: tokio::sync::Semaphore,
}

/// A running cluster peer. Cheap to clone.
#[derive(Clone)]
pub struct Consensus {
    shared: Arc<Shared>,
    proposals: mpsc::Sender<Proposal>,
}

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus").field("id", &self.shared.id).finish_non_exhaustive()
    }
}

impl Consensus {
    /// Starts Raft for this peer over `pinset`, talking through `net` and
    /// answering `inbound`. `member` is how others reach this peer;
    /// snapshots go to `snapshot_dir`; `events` receives what every applied
    /// entry did. The peer is idle until [`Consensus::initialize`] (a new
    /// cluster) or a leader adds it ([`Consensus::join`]).
    pub async fn start(
        pinset: Pinset,
        net: PeerNet,
        inbound: Inbound,
        member: Member,
        snapshot_dir: impl Into<std::path::PathBuf>,
        events: Option<mpsc::Sender<AppliedBatch>>,
        options: ConsensusOptions,
    ) -> Result<Consensus, ConsensusError> {
        let id = node_id(&net.local_peer_id());
        let log = LogStorage::new(pinset.log_store()?);
        let sm = StateMachine::open(pinset, id, snapshot_dir, events)
            .map_err(ConsensusError::raft("opening the state machine"))?;
        let waiters = sm.waiters();
        let history = sm.holds_history();
        let election = options.election_timeout.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "pincluster".into(),
            heartbeat_interval: options.heartbeat.as_millis() as u64,
            election_timeout_min: election,
            election_timeout_max: election + election / 4,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(options.snapshot_every),
            max_in_snapshot_log_to_keep: options.keep_behind_snapshot,
            // Entries hold up to MAX_BATCH_COMMANDS commands: keep one RPC well under the transport's limit.
            max_payload_entries: 8,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(ConsensusError::raft("checking its config"))?);
        let network = Network { net: net.clone() };
        let raft = Raft::new(id, config, network, log, sm).await.map_err(ConsensusError::raft("starting"))?;
        let shared = Arc::new(Shared {
            raft,
            proof: std::sync::OnceLock::new(),
            metrics: Default::default(),
            id,
            member,
            net,
            waiters,
            seq: AtomicU64::new(rand::random::<u64>() >> 1),
            options,
            history,
            installing: tokio::sync::Semaphore::new(1),
        });
        let (proposals, queue) = mpsc::channel(PROPOSAL_QUEUE);
        tokio::spawn(batcher(Arc::clone(&shared), queue));
        tokio::spawn(serve(Arc::clone(&shared), inbound));
        Ok(Consensus { shared, proposals })
    }

    /// This peer's node ID.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// Whether this peer has a log (it started or joined a cluster before).
    pub async fn is_initialized(&self) -> Result<bool, ConsensusError> {
        self.shared.raft.is_initialized().await.map_err(ConsensusError::raft("reading whether it has a log"))
    }

    /// Starts a new cluster of `members` (this peer among them) when this
    /// peer has no log yet; does nothing when it has one.
    ///
    /// When the pinset already holds pins from before (a single peer's own
    /// log), a snapshot is taken and the log purged up to it as soon as this
    /// peer leads, so that peers joining later receive those pins too.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Member>) -> Result<(), ConsensusError> {
        let raft = &self.shared.raft;
        if self.is_initialized().await? {
            return Ok(());
        }
        for (id, member) in &members {
            if *id != self.shared.id {
                add_addresses(&self.shared.net, member).await;
            }
        }
        match raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => return Ok(()),
            Err(e) => return Err(ConsensusError::raft("initializing the cluster")(e)),
        }
        if self.shared.history {
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move { snapshot_history(&shared).await });
        }
        Ok(())
    }

    /// Asks the cluster peer reachable at `peer` (dialled at `addr`) to add
    /// this peer, as a voter or as a learner, and returns once it is added.
    pub async fn join(&self, peer: PeerId, addr: pincluster_p2p::Multiaddr, voter: bool) -> Result<(), ConsensusError> {
        self.shared.net.add_address(peer, addr).await;
        let proof = self.shared.proof.get().map(|p| p.mine.clone()).unwrap_or_default();
        let rpc = Rpc::Join { member: self.shared.member.clone(), voter, proof };
        match call(&self.shared.net, peer, &rpc).await {
            Ok(Reply::Joined(Ok(()))) => Ok(()),
            Ok(Reply::Joined(Err(e))) | Ok(Reply::Refused(e)) => Err(ConsensusError::Refused(e)),
            Ok(_) => Err(ConsensusError::Refused("unexpected reply".into())),
            Err(e) => Err(ConsensusError::NoLeader(e.to_string())),
        }
    }

    /// Proposes `commands` as part of one log entry and answers with this
    /// peer's results of applying them, in order, once applied here.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Result<Applied, StateError>>, ConsensusError> {
        let (reply, answer) = oneshot::channel();
        self.proposals.send(Proposal { commands, reply }).await.map_err(|_| ConsensusError::Closed)?;
        answer.await.map_err(|_| ConsensusError::Closed)?
    }

    /// Every member with its role, from this peer's view of the membership.
    pub fn peers(&self) -> Vec<PeerView> {
        let metrics = self.shared.raft.metrics().borrow().clone();
        let leader = metrics.current_leader;
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let metrics = self.shared.metrics.lock().map(|m| m.clone()).unwrap_or_default();
        membership
            .nodes()
            .map(|(id, member)| PeerView {
                id: *id,
                member: member.clone(),
                metrics: metrics.get(id).map(|(at, m)| (at.elapsed(), m.clone())),
                role: if Some(*id) == leader {
                    Role::Leader
                } else if voters.contains(id) {
                    Role::Voter
                } else {
                    Role::Learner
                },
            })
            .collect()
    }

    /// Records this peer's own metrics and sends them to every other member
    /// (each send on its own task, so that a dead peer does not hold back the others).
    pub async fn report(&self, metrics: PeerMetrics) {
        note(&self.shared, self.shared.id, metrics.clone());
        let members: Vec<Member> = {
            let m = self.shared.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.shared.id)
                .map(|(_, n)| n.clone())
                .collect()
        };
        for member in members {
            let Some(peer) = peer_of(&member) else { continue };
            let (net, metrics) = (self.shared.net.clone(), metrics.clone());
            tokio::spawn(async move {
                add_addresses(&net, &member).await;
                if let Err(error) = call(&net, peer, &Rpc::Metrics(metrics)).await {
                    tracing::debug!(peer = %member, %error, "cannot send metrics");
                }
            });
        }
    }

    /// Requires every peer that joins through this one to present `proof`
    /// (this peer presents it too when it joins), e.g. a digest of
    /// configuration that must be identical on every peer; `mismatch` is what
    /// a peer that presents another one is told. Set it before joining.
    pub fn check_joins(&self, proof: Vec<u8>, mismatch: String) {
        if self.shared.proof.set(JoinProof { mine: proof, mismatch }).is_err() {
            tracing::warn!("the join check was already set");
        }
    }

    /// The current leader, when known.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.raft.metrics().borrow().current_leader
    }

    /// Raft's metrics, to watch.
    pub fn metrics(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, Member>> {
        self.shared.raft.metrics()
    }

    /// Removes `id` from the membership (the leader does it; others ask it).
    pub async fn remove(&self, id: NodeId) -> Result<(), ConsensusError> {
        remove(&self.shared, id).await.map_err(ConsensusError::Refused)
    }

    /// Stops Raft and the transport.
    pub async fn shutdown(&self) {
        if let Err(error) = self.shared.raft.shutdown().await {
            tracing::warn!(%error, "raft did not shut down cleanly");
        }
        self.shared.net.shutdown().await;
    }
}

/// Snapshots the pins a pinset held before its log began, once this peer
/// has applied a first entry, and purges the log up to the snapshot.
async fn snapshot_history(shared: &Shared) {
    let mut metrics = shared.raft.metrics();
    if metrics.wait_for(|m| m.last_applied.is_some()).await.is_err() {
        return;
    }
    if let Err(error) = shared.raft.trigger().snapshot().await {
        tracing::warn!(%error, "cannot snapshot the pins from before the cluster log");
        return;
    }
    let upto = match metrics.wait_for(|m| m.snapshot.is_some()).await {
        Ok(m) => m.snapshot,
        Err(_) => return,
    };
    let Some(upto) = upto else { return };
    match shared.raft.trigger().purge_log(upto.index).await {
        Ok(()) => tracing::info!(index = upto.index, "the pins from before the cluster log are in a snapshot"),
        Err(error) => tracing::warn!(%error, "cannot purge the log behind the first snapshot"),
    }
}

/// Takes every proposal waiting, up to [`MAX_BATCH_COMMANDS`] commands, into
/// one entry; up to [`ENTRIES_IN_FLIGHT`] entries are in flight at once.
async fn batcher(shared: Arc<Shared>, mut queue: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(ENTRIES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut proposals = vec![first];
        let mut count = proposals[0].commands.len();
        while count < MAX_BATCH_COMMANDS {
            match queue.try_recv() {
                Ok(p) => {
                    count += p.commands.len();
                    proposals.push(p);
                }
                Err(_) => break,
            }
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let commands: Vec<Command> = proposals.iter().flat_map(|p| p.commands.iter().cloned()).collect();
            let outcome = submit(&shared, &commands).await;
            drop(slot);
            let mut results = match outcome {
                Ok(results) => results.iter().cloned().collect::<Vec<_>>().into_iter(),
                Err(error) => {
                    let text = error.to_string();
                    for p in proposals {
                        let _ = p.reply.send(Err(match &error {
                            ConsensusError::Timeout => ConsensusError::Timeout,
                            ConsensusError::Closed => ConsensusError::Closed,
                            ConsensusError::NoLeader(_) => ConsensusError::NoLeader(text.clone()),
                            _ => ConsensusError::Refused(text.clone()),
                        }));
                    }
                    return;
                }
            };
            for p in proposals {
                let mine: Vec<_> = results.by_ref().take(p.commands.len()).collect();
                let _ = p.reply.send(Ok(mine));
            }
        });
    }
}

/// Proposes one batch and waits for this peer to apply it.
async fn submit(shared: &Shared, commands: &[Command]) -> Result<Results, ConsensusError> {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
    let batch = Batch::new(shared.id, seq, commands)?;
    let (tx, rx) = oneshot::channel();
    if let Ok(mut waiters) = shared.waiters.lock() {
        waiters.insert(seq, tx);
    }
    let forget = || {
        if let Ok(mut waiters) = shared.waiters.lock() {
            waiters.remove(&seq);
        }
    };
    let deadline = tokio::time::Instant::now() + shared.options.propose_timeout;
    if let Err(error) = append_on_leader(shared, batch, deadline).await {
        forget();
        return Err(error);
    }
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(results)) => Ok(results),
        Ok(Err(_)) => Err(ConsensusError::Closed),
        Err(_) => {
            forget();
            Err(ConsensusError::Timeout)
        }
    }
}

/// Has the leader append `batch`: this peer when it leads, else the leader
/// it knows, retried until `deadline` while there is none.
async fn append_on_leader(shared: &Shared, batch: Batch, deadline: tokio::time::Instant) -> Result<(), ConsensusError> {
    loop {
        // A follower that knows the leader forwards at once; otherwise the
        // local Raft appends (as leader) or says where the leader is.
        let leader = match known_leader(shared) {
            Some(leader) => Some(leader),
            None => match shared.raft.client_write(batch.clone()).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(forward))) => {
                    forward.leader_id.zip(forward.leader_node).filter(|(leader, _)| *leader != shared.id)
                }
                Err(RaftError::APIError(e)) => return Err(ConsensusError::Refused(e.to_string())),
                Err(RaftError::Fatal(_)) => return Err(ConsensusError::Closed),
            },
        };
        let last_error = match leader {
            Some((_, node)) => match peer_of(&node) {
                Some(peer) => {
                    add_addresses(&shared.net, &node).await;
                    match call(&shared.net, peer, &Rpc::Propose(batch.clone())).await {
                        Ok(Reply::Proposed(Ok(()))) => return Ok(()),
                        Ok(Reply::Proposed(Err(e))) | Ok(Reply::Refused(e)) => e,
                        Ok(_) => "unexpected reply".into(),
                        Err(e) => e.to_string(),
                    }
                }
                None => format!("the leader's peer ID {} is invalid", node.peer_id),
            },
            None => "no leader elected yet".into(),
        };
        if tokio::time::Instant::now() + Duration::from_millis(100) >= deadline {
            return Err(ConsensusError::NoLeader(last_error));
        }
        tracing::debug!(error = %last_error, "no leader to append to yet; retrying");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader this follower knows of, with its member record; `None` when
/// this peer leads or knows no leader.
fn known_leader(shared: &Shared) -> Option<(NodeId, Member)> {
    let metrics = shared.raft.metrics();
    let metrics = metrics.borrow();
    let leader = metrics.current_leader.filter(|leader| *leader != shared.id)?;
    let node = metrics.membership_config.membership().get_node(&leader)?.clone();
    Some((leader, node))
}

fn peer_of(member: &Member) -> Option<PeerId> {
    member.peer_id.parse().ok()
}

async fn add_addresses(net: &PeerNet, member: &Member) {
    let Some(peer) = peer_of(member) else { return };
    for addr in &member.addrs {
        match addr.parse() {
            Ok(addr) => net.add_address(peer, addr).await,
            Err(error) => tracing::warn!(%error, member = %member, "a member's address does not parse"),
        }
    }
}

async fn call(net: &PeerNet, peer: PeerId, rpc: &Rpc) -> Result<Reply, NetError> {
    let body = encode(rpc).map_err(|e| NetError::Remote(e.to_string()))?;
    let answer = net.request(peer, body).await?;
    decode(&answer).map_err(|e| NetError::Remote(format!("undecodable reply: {e}")))
}

/// Answers every inbound request on a task of its own.
async fn serve(shared: Arc<Shared>, mut inbound: Inbound) {
    while let Some(request) = inbound.next().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move { answer(&shared, request).await });
    }
}

async fn answer(shared: &Shared, mut request: InboundRequest) {
    // The raw bytes go once decoded: a call may wait long for its answer (an install).
    let rpc = decode::<Rpc>(&std::mem::take(&mut request.body));
    let reply = match rpc {
        Err(error) => Reply::Refused(format!("undecodable request: {error}")),
        Ok(Rpc::Join { member, voter, proof }) => {
            Reply::Joined(admit(shared, &request.peer, member, voter, proof).await)
        }
        Ok(_) if !may_talk(shared, &request.peer) => {
            tracing::warn!(peer = %request.peer, "refused a request from a peer that is not a member");
            Reply::Refused("not a member of this cluster".into())
        }
        Ok(Rpc::Append(rpc)) => Reply::Append(shared.raft.append_entries(rpc).await.map_err(|e| e.to_string())),
        Ok(Rpc::Vote(rpc)) => Reply::Vote(shared.raft.vote(rpc).await.map_err(|e| e.to_string())),
        Ok(Rpc::Snapshot(rpc)) => match shared.installing.try_acquire() {
            Ok(_one) => Reply::Snapshot(shared.raft.install_snapshot(rpc).await.map_err(|e| e.to_string())),
            Err(_) => Reply::Busy,
        },
        Ok(Rpc::Metrics(metrics)) => {
            note(shared, node_id(&request.peer), metrics);
            Reply::Noted
        }
        Ok(Rpc::Remove(id)) => Reply::Proposed(remove(shared, id).await),
        Ok(Rpc::Elect) => Reply::Proposed(shared.raft.trigger().elect().await.map_err(|e| e.to_string())),
        Ok(Rpc::Propose(batch)) => {
            Reply::Proposed(shared.raft.client_write(batch).await.map(drop).map_err(|e| e.to_string()))
        }
    };
    match encode(&reply) {
        Ok(body) => request.respond(body),
        Err(error) => tracing::warn!(%error, "cannot encode a reply"),
    }
}

fn note(shared: &Shared, id: NodeId, metrics: PeerMetrics) {
    if let Ok(mut all) = shared.metrics.lock() {
        all.insert(id, (tokio::time::Instant::now(), metrics));
    }
}

/// Whether `peer` may send Raft RPCs and proposals: a member, or anyone
/// while this peer belongs to no membership yet.
fn may_talk(shared: &Shared, peer: &PeerId) -> bool {
    let metrics = shared.raft.metrics();
    let no_membership = metrics.borrow().membership_config.membership().nodes().next().is_none();
    no_membership || is_member(shared, peer)
}

fn is_member(shared: &Shared, peer: &PeerId) -> bool {
    let metrics = shared.raft.metrics();
    let metrics = metrics.borrow();
    let id = node_id(peer);
    metrics.membership_config.membership().get_node(&id).is_some_and(|m| m.peer_id == peer.to_string())
}

/// Removes `id` from the membership: on the leader when this peer leads,
/// else through the leader it knows. openraft 0.9 cannot remove its own
/// leader (it panics) and has no leadership transfer, so a leader that is
/// asked to remove itself steps down first ([`step_down_then_leave`]).
async fn remove(shared: &Shared, id: NodeId) -> Result<(), String> {
    let raft = &shared.raft;
    let deadline = tokio::time::Instant::now() + shared.options.propose_timeout;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err("no leader could make the change in time".into());
        }
        let (leader, voters) = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
            (metrics.current_leader, voters)
        };
        match leader {
            None => tokio::time::sleep(Duration::from_millis(100)).await,
            Some(leader) if leader == shared.id && id == shared.id => {
                return step_down_then_leave(shared, &voters, deadline).await;
            }
            Some(leader) if leader == shared.id => {
                let change = if voters.contains(&id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                return raft.change_membership(change, false).await.map(drop).map_err(|e| e.to_string());
            }
            Some(_) => {
                if let Some(result) = leader_removes(shared, id).await {
                    return result;
                }
            }
        }
    }
}

/// This leader leaves: it stops sending heartbeats and standing for
/// election, asks another voter to stand until one leads (the followers
/// grant votes once the leader's lease ran out), then asks the new leader
/// to remove it. Heartbeats and elections come back on if that fails.
async fn step_down_then_leave(
    shared: &Shared,
    voters: &BTreeSet<NodeId>,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let successors: Vec<Member> = {
        let metrics = shared.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        voters.iter().filter(|v| **v != shared.id).filter_map(|v| membership.get_node(v).cloned()).collect()
    };
    if successors.is_empty() {
        return Err("it is the only voter of the cluster".into());
    }
    let config = shared.raft.runtime_config();
    config.heartbeat(false);
    config.elect(false);
    let result = async {
        let mut metrics = shared.raft.metrics();
        for successor in successors.iter().cycle() {
            if tokio::time::Instant::now() >= deadline {
                return Err("no other voter took over the leadership in time".to_string());
            }
            if let Some(peer) = peer_of(successor) {
                add_addresses(&shared.net, successor).await;
                if let Err(error) = call(&shared.net, peer, &Rpc::Elect).await {
                    tracing::debug!(%error, successor = %successor, "cannot ask a voter to stand for election");
                }
            }
            let until = deadline.min(tokio::time::Instant::now() + 2 * shared.options.election_timeout);
            let took_over =
                tokio::time::timeout_at(until, metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != shared.id)))
                    .await
                    .is_ok_and(|r| r.is_ok());
            if took_over {
                break;
            }
        }
        leader_removes(shared, shared.id).await.unwrap_or_else(|| Err("the new leader is unknown".to_string()))
    }
    .await;
    config.heartbeat(true);
    config.elect(true);
    result
}

/// Asks the leader this peer knows to remove `id`; `None` when it knows none.
async fn leader_removes(shared: &Shared, id: NodeId) -> Option<Result<(), String>> {
    let (peer, node) = leader_of(shared)?;
    add_addresses(&shared.net, &node).await;
    Some(match call(&shared.net, peer, &Rpc::Remove(id)).await {
        Ok(Reply::Proposed(result)) => result,
        Ok(Reply::Refused(e)) => Err(e),
        Ok(_) => Err("unexpected reply".into()),
        Err(e) => Err(e.to_string()),
    })
}

/// The leader this peer knows, with its membership record.
fn leader_of(shared: &Shared) -> Option<(PeerId, Member)> {
    let metrics = shared.raft.metrics();
    let metrics = metrics.borrow();
    let node = metrics.membership_config.membership().get_node(&metrics.current_leader?)?.clone();
    Some((peer_of(&node)?, node))
}

/// Adds `member` (which must be the peer asking) on the leader: first as a
/// learner, caught up, then as a voter if asked.
async fn admit(shared: &Shared, asker: &PeerId, member: Member, voter: bool, proof: Vec<u8>) -> Result<(), String> {
    // A peer asks for itself; a member may pass on another's request to the leader.
    if member.peer_id != asker.to_string() && !(is_member(shared, asker)) {
        return Err("a peer may only ask to add itself".into());
    }
    if let Some(check) = shared.proof.get() {
        if proof != check.mine {
            return Err(check.mismatch.clone());
        }
    }
    let Ok(joining) = member.peer_id.parse::<PeerId>() else { return Err("invalid peer ID".into()) };
    let id = node_id(&joining);
    let raft = &shared.raft;
    if raft.metrics().borrow().state != ServerState::Leader {
        let Some((peer, node)) = leader_of(shared) else { return Err("no leader elected yet".into()) };
        add_addresses(&shared.net, &node).await;
        return match call(&shared.net, peer, &Rpc::Join { member, voter, proof }).await {
            Ok(Reply::Joined(result)) => result,
            Ok(Reply::Refused(e)) => Err(e),
            Ok(_) => Err("unexpected reply".into()),
            Err(e) => Err(e.to_string()),
        };
    }
    add_addresses(&shared.net, &member).await;
    raft.add_learner(id, member, true).await.map_err(|e| e.to_string())?;
    if voter {
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    tracing::info!(peer = %joining, voter, "peer added to the cluster");
    Ok(())
}

/// openraft's network: one client per target, over the shared transport.
struct Network {
    net: PeerNet,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Client {
        add_addresses(&self.net, node).await;
        Client { net: self.net.clone(), target, peer: peer_of(node) }
    }
}

struct Client {
    net: PeerNet,
    target: NodeId,
    peer: Option<PeerId>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl Client {
    async fn send<E: std::error::Error>(&self, rpc: &Rpc) -> RpcResult<Reply, E> {
        let Some(peer) = self.peer else {
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other("invalid peer ID"))));
        };
        match call(&self.net, peer, rpc).await {
            Ok(reply) => Ok(reply),
            Err(error @ (NetError::Unreachable(_) | NetError::Timeout | NetError::Closed)) => {
                Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(error) => Err(RPCError::Network(NetworkError::new(&error))),
        }
    }

    fn remote<T, E: std::error::Error>(&self, result: Result<T, String>) -> RpcResult<T, E> {
        result.map_err(|text| {
            RPCError::Network(NetworkError::new(&std::io::Error::other(format!("peer {}: {text}", self.target))))
        })
    }
}

fn unexpected<T, E: std::error::Error>(reply: Reply) -> RpcResult<T, E> {
    let text = match reply {
        Reply::Refused(text) => text,
        _ => "unexpected reply".into(),
    };
    Err(RPCError::Network(NetworkError::new(&std::io::Error::other(text))))
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.send(&Rpc::Append(rpc)).await? {
            Reply::Append(result) => self.remote(result),
            other => unexpected(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.send(&Rpc::Snapshot(rpc)).await? {
            Reply::Snapshot(result) => self.remote(result),
            // openraft backs off from an unreachable peer before it sends again.
            Reply::Busy => Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "peer {} is installing a snapshot",
                self.target
            ))))),
            other => unexpected(other),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        match self.send(&Rpc::Vote(rpc)).await? {
            Reply::Vote(result) => self.remote(result),
            other => unexpected(other),
        }
    }
}
