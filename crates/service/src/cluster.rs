//! The daemon's cluster side: the private transport on the cluster port,
//! Raft over the pinset, starting or joining a cluster, and the loop that
//! hands every applied entry to the tracker. Read [`start`] first.
//!
//! A peer with no cluster configuration is a cluster of one: it starts a log
//! with itself as the only voter, and others may join it later.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use multiaddr::{Multiaddr, Protocol};
use pincluster_config::{ClusterConfig, Identity, ServiceConfig};
use pincluster_consensus::{node_id, AppliedBatch, Consensus, ConsensusError, ConsensusOptions, Member, PeerMetrics};
use pincluster_model::PinStatus;
use pincluster_p2p::{Keypair, NetConfig, PeerId, PeerNet};
use pincluster_state::{Command, Pinset};
use pincluster_tracker::{Candidate, Log, LogError, Proposed, Tracker};
use tokio::sync::mpsc;

/// The largest message between peers: a few log entries or a snapshot chunk.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long a peer has to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests from other peers waiting to be answered, at most.
const MAX_INBOUND_QUEUE: usize = 1024;
/// Applied entries waiting for the tracker, at most (applying waits beyond).
const EVENT_QUEUE: usize = 64;
/// How long a start waits for a leader before it serves anyway.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long to wait between attempts to join through the bootstrap peers.
const JOIN_RETRY: Duration = Duration::from_secs(2);

/// The tracker's log: the cluster's.
struct ClusterLog {
    consensus: Consensus,
    /// Metrics older than this are from a peer that is down.
    ttl: Duration,
}

impl Log for ClusterLog {
    fn propose(&self, commands: Vec<Command>) -> BoxFuture<'_, Result<Proposed, LogError>> {
        Box::pin(async move {
            self.consensus.propose(commands).await.map_err(|e| match e {
                ConsensusError::Closed => LogError::Closed,
                other => LogError::Unavailable(other.to_string()),
            })
        })
    }

    fn candidates(&self) -> Vec<Candidate> {
        let me = self.consensus.id();
        self.consensus
            .peers()
            .into_iter()
            .filter_map(|peer| {
                // This peer is up whether or not it has reported yet.
                let (age, metrics) = match peer.metrics {
                    Some(reported) => reported,
                    None if peer.id == me => (Duration::ZERO, PeerMetrics::default()),
                    None => return None,
                };
                (age <= self.ttl).then_some(Candidate {
                    peer_id: peer.member.peer_id,
                    freespace: metrics.freespace,
                    pinqueue: metrics.pinqueue,
                    tags: metrics.tags,
                })
            })
            .collect()
    }
}

/// Starts the transport and Raft on the current runtime. Returns the running
/// consensus and the applied entries to hand to the tracker ([`follow`]).
pub(crate) async fn start(
    dir: &Path,
    service: &ServiceConfig,
    identity: &Identity,
    pinset: Pinset,
) -> anyhow::Result<(Consensus, mpsc::Receiver<AppliedBatch>)> {
    let config = &service.cluster;
    let keypair = Keypair::from_protobuf_encoding(&identity.keypair_protobuf()).context("identity.json")?;
    let secret = match config.secret_bytes() {
        Some(secret) => secret,
        None => {
            tracing::warn!("cluster.secret is empty: using a random one for this run, so no other peer can join");
            rand::random()
        }
    };
    let (net, inbound) = PeerNet::start(NetConfig {
        keypair,
        listen: config.listen_multiaddress.clone(),
        secret,
        max_message_bytes: MAX_MESSAGE_BYTES,
        request_timeout: REQUEST_TIMEOUT,
        max_inbound_queue: MAX_INBOUND_QUEUE,
    })
    .await
    .context("cannot start the cluster transport (cluster.listen_multiaddress)")?;
    let addrs = announced(config, &net);
    for addr in &addrs {
        println!("cluster listening on {addr}");
    }
    let me = Member {
        peer_id: net.local_peer_id().to_string(),
        name: config.peername.clone(),
        addrs: addrs.iter().map(ToString::to_string).collect(),
    };
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let consensus = Consensus::start(
        pinset,
        net,
        inbound,
        me.clone(),
        snapshot_dir(dir),
        Some(events_tx),
        ConsensusOptions {
            snapshot_every: config.raft_snapshot_threshold,
            keep_behind_snapshot: config.raft_trailing_logs,
            ..ConsensusOptions::default()
        },
    )
    .await
    .context("cannot start the cluster consensus")?;
    consensus.check_joins(
        credentials_proof(service, &secret),
        "the joining peer's API users or passwords differ from the cluster's: every peer needs the same ones, \
         so that a token minted on one peer works on all"
            .into(),
    );
    if !consensus.is_initialized().await? {
        if !config.bootstrap.is_empty() {
            let (consensus, bootstrap, voter) = (consensus.clone(), config.bootstrap.clone(), !config.learner);
            tokio::spawn(async move { join(&consensus, &bootstrap, voter).await });
        } else {
            let mut members = BTreeMap::from([(consensus.id(), me)]);
            for addr in &config.peers {
                let (peer, dial) = split_peer(addr).context("cluster.peers")?;
                let member = Member { peer_id: peer.to_string(), name: String::new(), addrs: vec![dial.to_string()] };
                members.insert(node_id(&peer), member);
            }
            tracing::info!(members = members.len(), "starting a new cluster");
            consensus.initialize(members).await?;
        }
    }
    if consensus.is_initialized().await? {
        // Ready means writable: wait (a little) for a leader, which a single
        // peer elects at once and a restarted member learns from the others.
        let mut metrics = consensus.metrics();
        let led = metrics.wait_for(|m| m.current_leader.is_some() && m.membership_config.nodes().next().is_some());
        if tokio::time::timeout(LEADER_WAIT, led).await.is_err() {
            tracing::warn!("no cluster leader yet; writes wait for one");
        }
    }
    Ok((consensus, events))
}

/// A digest of the API credentials, keyed by the cluster secret: peers
/// compare it when one joins, since tokens are signed with users' passwords
/// and must verify on every peer (credentials are configuration, not replicated).
fn credentials_proof(config: &ServiceConfig, secret: &[u8; 32]) -> Vec<u8> {
    use sha2::Digest as _;
    let credentials = [&config.api.restapi, &config.api.pinsvcapi]
        .map(|api| api.as_ref().and_then(|a| a.basic_auth_credentials.as_ref()));
    let mut hash = sha2::Sha256::new();
    hash.update(secret);
    hash.update(serde_json::to_vec(&credentials).unwrap_or_default());
    hash.finalize().to_vec()
}

/// Where the cluster log's snapshots of the config folder `dir` are kept.
pub(crate) fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("data").join("raft-snapshots")
}

/// Asks each bootstrap peer in turn to add this one, until one does.
async fn join(consensus: &Consensus, bootstrap: &[Multiaddr], voter: bool) {
    loop {
        for addr in bootstrap {
            let Some((peer, dial)) = split_peer(addr) else { continue };
            match consensus.join(peer, dial, voter).await {
                Ok(()) => {
                    tracing::info!(through = %addr, voter, "joined the cluster");
                    return;
                }
                Err(error) => tracing::warn!(through = %addr, %error, "cannot join the cluster yet; retrying"),
            }
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}

/// Hands what every applied entry did to the tracker, in log order.
pub(crate) async fn follow(tracker: Tracker, mut events: mpsc::Receiver<AppliedBatch>) {
    while let Some(event) = events.recv().await {
        match event {
            AppliedBatch::Entry { results, .. } => {
                for applied in results.iter().flatten() {
                    tracker.act_on(applied).await;
                }
            }
            AppliedBatch::Snapshot { index } => {
                tracing::info!(index, "the pinset was replaced by a snapshot; checking what to fetch and release");
                tracker.resync();
            }
        }
    }
}

/// The addresses peers should dial: the announced ones, else the bound
/// listen addresses with an unspecified IP replaced by loopback.
fn announced(config: &ClusterConfig, net: &PeerNet) -> Vec<Multiaddr> {
    if !config.announce_multiaddress.is_empty() {
        return config.announce_multiaddress.clone();
    }
    net.listen_addrs()
        .into_iter()
        .map(|addr| {
            addr.iter()
                .map(|p| match p {
                    Protocol::Ip4(ip) if ip.is_unspecified() => Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST),
                    Protocol::Ip6(ip) if ip.is_unspecified() => Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST),
                    other => other,
                })
                .collect()
        })
        .collect()
}

/// The peer ID at the end of `addr` and the address to dial it at.
fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut dial = addr.clone();
    match dial.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, dial)),
        _ => None,
    }
}

/// The tracker's log over `consensus`.
pub(crate) fn log(consensus: &Consensus, config: &ClusterConfig) -> Arc<dyn Log> {
    Arc::new(ClusterLog { consensus: consensus.clone(), ttl: config.metric_ttl.0 })
}

/// Reports this peer's metrics to every member at `cluster.monitor_ping_interval`,
/// and dials the IPFS nodes of the others so that they fetch from each other.
pub(crate) async fn report(consensus: Consensus, tracker: Tracker, data_dir: PathBuf, config: ClusterConfig) {
    loop {
        let dir = data_dir.clone();
        let freespace = tokio::task::spawn_blocking(move || fs2::available_space(&dir)).await.ok().and_then(Result::ok);
        let state = tracker.state();
        let count = |statuses: &[PinStatus]| state.cluster_count(statuses.iter().copied().collect()).unwrap_or(0);
        let metrics = PeerMetrics {
            freespace: freespace.unwrap_or(0),
            reposize: tracker.repo_stat().await.map(|s| s.bytes).unwrap_or(0),
            pinned: count(&[PinStatus::Pinned]),
            pinqueue: count(&[PinStatus::Queued, PinStatus::Pinning]),
            tags: config.tags.clone(),
            ipfs_addrs: tracker.delegates().await.iter().map(ToString::to_string).collect(),
        };
        consensus.report(metrics).await;
        // Connections close when idle: dial again every member that is not connected now.
        let connected: HashSet<String> = tracker.connected_peers().await.into_iter().collect();
        for peer in consensus.peers() {
            let Some((_, metrics)) = peer.metrics else { continue };
            if peer.id == consensus.id() || connected.contains(&peer.member.peer_id) {
                continue;
            }
            for addr in metrics.ipfs_addrs {
                let Ok(parsed) = addr.parse() else { continue };
                match tracker.connect(parsed).await {
                    Ok(()) => break,
                    Err(error) => tracing::debug!(%addr, %error, "cannot dial a cluster peer's IPFS node"),
                }
            }
        }
        tokio::time::sleep(config.monitor_ping_interval.0).await;
    }
}

/// On the leader: re-allocates the pins of every peer that has been down for
/// `metric_ttl + repin_delay`, once per outage, in bounded batches (see
/// [`Tracker::repair`]). `repin_delay` 0 turns it off.
pub(crate) async fn repair(consensus: Consensus, tracker: Tracker, config: ClusterConfig) {
    if config.repin_delay.0.is_zero() {
        return;
    }
    let grace = config.metric_ttl.0 + config.repin_delay.0;
    let started = tokio::time::Instant::now();
    let mut repaired: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(config.monitor_ping_interval.0.min(Duration::from_secs(5))).await;
        if consensus.leader() != Some(consensus.id()) {
            continue;
        }
        for peer in consensus.peers() {
            if peer.id == consensus.id() {
                continue;
            }
            let silent = peer.metrics.as_ref().map_or(started.elapsed(), |(age, _)| *age);
            let id = peer.member.peer_id.clone();
            if silent <= grace {
                repaired.remove(&id);
                continue;
            }
            if repaired.contains(&id) {
                continue;
            }
            tracing::warn!(peer = %peer.member, silent_s = silent.as_secs(), "peer down past repin_delay; re-allocating its pins");
            match tracker.repair(&id).await {
                Ok(moved) => {
                    tracing::info!(peer = %peer.member, pins = moved, "re-allocated the pins of a peer that is down");
                    repaired.insert(id);
                }
                Err(error) => tracing::warn!(peer = %peer.member, %error, "re-allocation failed; retrying"),
            }
        }
    }
}
