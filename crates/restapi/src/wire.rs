//! JSON objects of the REST API with IPFS Cluster's field names, in Go struct
//! order, and their explicit conversion from domain values. Read [`Pin`] and
//! [`GlobalPinInfo`] first.

use std::collections::BTreeMap;

use pincluster_model::{Cid, ClusterPin, PinMode, PinStatus, Timestamp, UserName, UserPin};
use pincluster_state::ClusterEntry;
use pincluster_tracker::AddedEntry;
use serde::{Deserialize, Serialize};

use crate::RestOptions;

/// The RPC protocol Cluster clients expect to see.
const RPC_PROTOCOL_VERSION: &str = "/ipfscluster/1.0/rpc";
/// Go's zero `time.Time`, which Cluster writes for "never".
pub(crate) const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Serialize)]
pub(crate) struct Version {
    version: &'static str,
}

impl Version {
    pub(crate) fn current() -> Version {
        Version { version: env!("CARGO_PKG_VERSION") }
    }
}

#[derive(Serialize)]
pub(crate) struct IpfsId {
    id: String,
    addresses: Vec<String>,
    error: String,
    /// This peer's DHT (pincluster's own field; absent for other members).
    #[serde(skip_serializing_if = "Option::is_none")]
    dht: Option<Dht>,
    /// What this peer announces to the DHT (pincluster's own field).
    #[serde(skip_serializing_if = "Option::is_none")]
    reprovider: Option<Reprovider>,
}

#[derive(Serialize)]
pub(crate) struct Dht {
    /// `server` when the public DHT answers queries, else `client`.
    mode: &'static str,
    wan_peers: usize,
    lan_peers: usize,
    lookups: u64,
    announced: u64,
    announce_failures: u64,
}

#[derive(Serialize)]
pub(crate) struct Reprovider {
    strategy: &'static str,
    /// The run in progress: its start (RFC 3339) and the pins it has covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    running_since: Option<String>,
    run_done: u64,
    /// The last complete run: its end, its pins and its duration in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run_end: Option<String>,
    last_run_pins: u64,
    last_run_seconds: f64,
    /// New pins announced since start, and announcements no DHT peer took.
    announced: u64,
    failed: u64,
}

impl Dht {
    fn of(status: pincluster_tracker::DhtStatus) -> Dht {
        Dht {
            mode: if status.wan_server { "server" } else { "client" },
            wan_peers: status.wan_peers,
            lan_peers: status.lan_peers,
            lookups: status.lookups,
            announced: status.announced,
            announce_failures: status.announce_failures,
        }
    }
}

impl Reprovider {
    fn of(status: pincluster_tracker::ReprovideStatus) -> Reprovider {
        use pincluster_tracker::ReprovideStrategy;
        let time = |ms: u64| pincluster_model::Timestamp(ms).to_rfc3339();
        Reprovider {
            strategy: match status.strategy {
                ReprovideStrategy::Roots => "roots",
                ReprovideStrategy::All => "all",
                ReprovideStrategy::None => "none",
            },
            running_since: status.running_since.map(time),
            run_done: status.run_done,
            last_run_end: status.last_run_end.map(time),
            last_run_pins: status.last_run_pins,
            last_run_seconds: status.last_run_ms as f64 / 1000.0,
            announced: status.announced,
            failed: status.failed,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Id {
    id: String,
    addresses: Vec<String>,
    cluster_peers: Vec<String>,
    cluster_peers_addresses: Vec<String>,
    version: &'static str,
    commit: &'static str,
    rpc_protocol_version: &'static str,
    error: String,
    ipfs: IpfsId,
    peername: String,
    /// `leader`, `voter` or `learner` (pincluster's own field).
    role: &'static str,
}

impl Id {
    /// This peer, whose IPFS node is embedded (same peer ID), among `members`.
    pub(crate) fn of_this_peer(
        options: &RestOptions,
        members: &crate::members::Members,
        tracker: &pincluster_tracker::Tracker,
    ) -> Id {
        Id {
            id: options.peer_id.clone(),
            addresses: options.addresses.clone(),
            cluster_peers: members.peers.iter().map(|p| p.member.peer_id.clone()).collect(),
            cluster_peers_addresses: members.peers.iter().flat_map(|p| p.member.addrs.iter().cloned()).collect(),
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("PINCLUSTER_COMMIT").unwrap_or(""),
            rpc_protocol_version: RPC_PROTOCOL_VERSION,
            // A peer short of disk space is read-only until space is freed.
            error: tracker.state().space().check().map_or_else(|e| format!("read-only: {e}"), |()| String::new()),
            ipfs: IpfsId {
                id: options.peer_id.clone(),
                addresses: options.addresses.clone(),
                error: String::new(),
                dht: Some(Dht::of(tracker.dht_status())),
                reprovider: Some(Reprovider::of(tracker.reprovide_status())),
            },
            peername: options.peername.clone(),
            role: members.peers.iter().find(|p| p.member.peer_id == options.peer_id).map_or("voter", |p| role(p.role)),
        }
    }
}

impl Id {
    /// Another member, from what the membership and its metrics say; `error`
    /// when it is down.
    pub(crate) fn of_member(peer: &pincluster_consensus::PeerView, members: &crate::members::Members) -> Id {
        let ipfs_addresses = peer.metrics.as_ref().map(|(_, m)| m.ipfs_addrs.clone()).unwrap_or_default();
        Id {
            id: peer.member.peer_id.clone(),
            addresses: peer.member.addrs.clone(),
            cluster_peers: members.peers.iter().map(|p| p.member.peer_id.clone()).collect(),
            cluster_peers_addresses: Vec::new(),
            version: env!("CARGO_PKG_VERSION"),
            commit: "",
            rpc_protocol_version: RPC_PROTOCOL_VERSION,
            error: members.down(peer).unwrap_or_default(),
            ipfs: IpfsId {
                id: peer.member.peer_id.clone(),
                addresses: ipfs_addresses,
                error: String::new(),
                dht: None,
                reprovider: None,
            },
            peername: peer.member.name.clone(),
            role: role(peer.role),
        }
    }
}

fn role(role: pincluster_consensus::Role) -> &'static str {
    match role {
        pincluster_consensus::Role::Leader => "leader",
        pincluster_consensus::Role::Voter => "voter",
        pincluster_consensus::Role::Learner => "learner",
    }
}

/// The body of `POST /peers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddPeerBody {
    pub(crate) peer_id: String,
}

/// A pin as Cluster shows it: the PinOptions fields flattened in first.
#[derive(Serialize)]
pub(crate) struct Pin {
    replication_factor_min: i32,
    replication_factor_max: i32,
    name: String,
    mode: &'static str,
    shard_size: u64,
    user_allocations: Option<Vec<String>>,
    expire_at: String,
    metadata: Option<BTreeMap<String, String>>,
    pin_update: Option<String>,
    origins: Vec<String>,
    cid: String,
    #[serde(rename = "type")]
    kind: &'static str,
    allocations: Vec<String>,
    max_depth: i32,
    reference: Option<String>,
    timestamp: String,
}

/// The holder whose name, metadata and origins represent a CID: the caller's
/// own pin when they hold it, else the first holder in user-name order.
pub(crate) fn representative<'a>(entry: &'a ClusterEntry, caller: Option<&UserName>) -> Option<&'a UserPin> {
    entry.holders.iter().find(|(user, _)| Some(user) == caller).or_else(|| entry.holders.first()).map(|(_, pin)| pin)
}

/// The peers a pin is allocated to: `[]` means "every peer", as in Cluster.
fn allocations(pin: &ClusterPin) -> Vec<String> {
    pin.allocations.clone()
}

impl Pin {
    /// The Cluster view of a cluster record, named after `holder`.
    pub(crate) fn from_domain(pin: &ClusterPin, holder: Option<&UserPin>, pin_update: Option<&Cid>) -> Pin {
        let options = &pin.options;
        Pin {
            replication_factor_min: options.replication_min,
            replication_factor_max: options.replication_max,
            name: holder.and_then(|h| h.name.clone()).unwrap_or_default(),
            mode: options.mode.as_str(),
            shard_size: 0,
            user_allocations: (!options.user_allocations.is_empty()).then(|| options.user_allocations.clone()),
            expire_at: options.expire_at.map_or_else(|| GO_ZERO_TIME.to_string(), Timestamp::to_rfc3339),
            metadata: holder.map(|h| h.meta.clone()).filter(|m| !m.is_empty()),
            pin_update: pin_update.map(ToString::to_string),
            origins: holder.map(|h| h.origins.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            cid: pin.cid.to_string(),
            kind: "pin",
            allocations: allocations(pin),
            max_depth: match options.mode {
                PinMode::Recursive => -1,
                PinMode::Direct => 0,
            },
            reference: None,
            timestamp: pin.created.to_rfc3339(),
        }
    }
}

/// The status of a CID on one peer.
#[derive(Serialize)]
pub(crate) struct PinInfoShort {
    peername: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ipfs_peer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ipfs_peer_addresses: Vec<String>,
    status: &'static str,
    timestamp: String,
    error: String,
    attempt_count: u32,
    priority_pin: bool,
}

impl PinInfoShort {
    /// Another member's status of `pin`, as it reported it through the log:
    /// `remote` when the pin is not allocated to it, `pin_queued` before its
    /// first report.
    fn of_member(pin: &ClusterPin, peer_id: &str, peername: &str) -> PinInfoShort {
        let allocated = pin.allocations.is_empty() || pin.allocations.iter().any(|a| a == peer_id);
        let reported = pin.peers.iter().find(|p| p.peer == peer_id);
        let (status, timestamp, error) = match reported {
            _ if !allocated => ("remote", pin.created, None),
            Some(p) => (tracker_status(p.status), p.updated, p.error.clone()),
            None => ("pin_queued", pin.created, None),
        };
        PinInfoShort {
            peername: peername.to_string(),
            ipfs_peer_id: peer_id.to_string(),
            ipfs_peer_addresses: Vec::new(),
            status,
            timestamp: timestamp.to_rfc3339(),
            error: error.unwrap_or_default(),
            attempt_count: 0,
            priority_pin: false,
        }
    }
}

/// The status of a CID on every peer of the cluster.
#[derive(Serialize)]
pub(crate) struct GlobalPinInfo {
    cid: String,
    name: String,
    allocations: Vec<String>,
    origins: Vec<String>,
    created: String,
    metadata: Option<BTreeMap<String, String>>,
    peer_map: BTreeMap<String, PinInfoShort>,
}

/// Our status under Cluster's tracker status name.
pub(crate) fn tracker_status(status: PinStatus) -> &'static str {
    match status {
        PinStatus::Queued => "pin_queued",
        PinStatus::Pinning => "pinning",
        PinStatus::Pinned => "pinned",
        PinStatus::Failed => "pin_error",
    }
}

impl GlobalPinInfo {
    /// The status of `cid` on every member: this peer's own from its local
    /// record, the `others`' (ID, name) as they reported them through the
    /// log; `unpinned` when the CID is not in the pinset.
    pub(crate) fn from_domain(
        cid: &Cid,
        entry: Option<&ClusterEntry>,
        caller: Option<&UserName>,
        options: &RestOptions,
        others: &[(String, String)],
    ) -> GlobalPinInfo {
        let holder = entry.and_then(|e| representative(e, caller));
        let peer = |status: &'static str, timestamp: String, error: String, attempt_count: u32| PinInfoShort {
            peername: options.peername.clone(),
            ipfs_peer_id: options.peer_id.clone(),
            ipfs_peer_addresses: options.addresses.clone(),
            status,
            timestamp,
            error,
            attempt_count,
            priority_pin: false,
        };
        let info = match entry {
            Some(entry) if !entry.pin.allocations.is_empty() && !entry.pin.allocations.contains(&options.peer_id) => {
                peer("remote", entry.pin.updated.to_rfc3339(), String::new(), 0)
            }
            Some(entry) => peer(
                tracker_status(entry.pin.status),
                entry.pin.updated.to_rfc3339(),
                entry.pin.error.clone().unwrap_or_default(),
                entry.pin.attempts,
            ),
            None => peer("unpinned", Timestamp::now().to_rfc3339(), String::new(), 0),
        };
        GlobalPinInfo {
            cid: cid.to_string(),
            name: holder.and_then(|h| h.name.clone()).unwrap_or_default(),
            allocations: entry.map(|e| allocations(&e.pin)).unwrap_or_default(),
            origins: holder.map(|h| h.origins.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            created: entry.map_or_else(|| GO_ZERO_TIME.to_string(), |e| e.pin.created.to_rfc3339()),
            metadata: holder.map(|h| h.meta.clone()).filter(|m| !m.is_empty()),
            peer_map: std::iter::once((options.peer_id.clone(), info))
                .chain(entry.into_iter().flat_map(|e| {
                    others.iter().map(|(id, name)| (id.clone(), PinInfoShort::of_member(&e.pin, id, name)))
                }))
                .collect(),
        }
    }
}

/// A monitoring metric.
#[derive(Serialize)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) peer: String,
    pub(crate) value: String,
    /// Unix nanoseconds.
    pub(crate) expire: i64,
    pub(crate) valid: bool,
    pub(crate) weight: i64,
    pub(crate) partitionable: bool,
    /// Unix nanoseconds.
    pub(crate) received_at: i64,
}

/// Who is connected to whom.
#[derive(Serialize)]
pub(crate) struct ConnectGraph {
    pub(crate) cluster_id: String,
    pub(crate) id_to_peername: BTreeMap<String, String>,
    pub(crate) ipfs_links: BTreeMap<String, Vec<String>>,
    pub(crate) cluster_links: BTreeMap<String, Vec<String>>,
    pub(crate) cluster_trust_links: BTreeMap<String, bool>,
    pub(crate) cluster_to_ipfs: BTreeMap<String, String>,
}

/// One key collected by a repo GC, or the error about it. Our collector
/// reports counts, not keys, so none is built yet.
#[allow(dead_code)]
#[derive(Serialize)]
pub(crate) struct RepoGcKey {
    pub(crate) key: String,
    pub(crate) error: String,
}

/// A peer's repo GC result.
#[derive(Serialize)]
pub(crate) struct RepoGc {
    pub(crate) peer: String,
    pub(crate) peername: String,
    pub(crate) keys: Vec<RepoGcKey>,
    pub(crate) error: String,
}

/// The repo GC of every peer.
#[derive(Serialize)]
pub(crate) struct GlobalRepoGc {
    pub(crate) peer_map: BTreeMap<String, RepoGc>,
}

/// One object of `POST /add`'s output: an added file or directory, or (with
/// only `name` and `bytes`) the progress of a file being read.
#[derive(Serialize)]
pub(crate) struct AddedOutput {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    allocations: Vec<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl AddedOutput {
    /// A finished file or directory; `allocations` once its pin is recorded.
    pub(crate) fn entry(entry: &AddedEntry, allocations: &[String]) -> AddedOutput {
        AddedOutput {
            name: entry.name.clone(),
            cid: Some(entry.cid.to_string()),
            bytes: entry.bytes,
            size: entry.size,
            allocations: allocations.to_vec(),
        }
    }

    /// `bytes` of file `name` read so far.
    pub(crate) fn progress(name: &str, bytes: u64) -> AddedOutput {
        AddedOutput { name: name.to_string(), cid: None, bytes, size: 0, allocations: Vec::new() }
    }

    pub(crate) fn is_progress(&self) -> bool {
        self.cid.is_none()
    }
}
