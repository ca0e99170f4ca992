//! The other peers of the cluster as the REST API shows them: who is up
//! (fresh metrics), and each allocated peer's own status of a CID, asked
//! live as IPFS Cluster does. Read [`Members`] first; [`answer_status`] is
//! the other side of [`Members::statuses`], run on the peer asked.

use std::collections::BTreeMap;
use std::time::Duration;

use pincluster_consensus::{Consensus, PeerView};
use pincluster_model::{Cid, ClusterPin};
use pincluster_state::Reader;
use serde::{Deserialize, Serialize};

use crate::wire::{tracker_status, PinInfoShort};

/// How long a peer has to answer a status question.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// The most CIDs one status question may name.
const MAX_STATUS_CIDS: usize = 1000;

/// A snapshot of the membership with each peer's health.
pub(crate) struct Members {
    pub(crate) peers: Vec<PeerView>,
    /// This peer's ID.
    pub(crate) me: String,
    ttl: Duration,
}

impl Members {
    pub(crate) fn of(cluster: &Consensus, ttl: Duration) -> Members {
        let peers = cluster.peers();
        let me = peers.iter().find(|p| p.id == cluster.id()).map(|p| p.member.peer_id.clone()).unwrap_or_default();
        Members { peers, me, ttl }
    }

    /// Why `peer` counts as down, or `None` when its metrics are fresh.
    pub(crate) fn down(&self, peer: &PeerView) -> Option<String> {
        if peer.member.peer_id == self.me {
            return None;
        }
        match &peer.metrics {
            None => Some("no metrics received from this peer yet".into()),
            Some((age, _)) if *age > self.ttl => Some(format!("no metrics from this peer for {}s", age.as_secs())),
            Some(_) => None,
        }
    }

    /// Asks each other peer `pin` is allocated to for its status of it, at
    /// once; peers it is not allocated to are `remote`. This peer is left out.
    pub(crate) async fn statuses(&self, cluster: &Consensus, pin: &ClusterPin) -> BTreeMap<String, PinInfoShort> {
        let everywhere = pin.allocations.is_empty();
        let asks = self.peers.iter().filter(|p| p.member.peer_id != self.me).map(|peer| async move {
            let id = peer.member.peer_id.clone();
            let info = if !everywhere && !pin.allocations.contains(&id) {
                PinInfoShort::of_peer(&peer.member.name, &id, "remote", String::new())
            } else {
                match ask(cluster, &id, pin.cid).await {
                    Ok(status) => status.into_info(&peer.member.name, &id),
                    Err(error) => PinInfoShort::of_peer(&peer.member.name, &id, "cluster_error", error),
                }
            };
            (id, info)
        });
        futures_util::future::join_all(asks).await.into_iter().collect()
    }
}

/// One peer's own status of a CID, as it answers a question.
#[derive(Serialize, Deserialize)]
struct LocalStatus {
    status: String,
    error: String,
    attempts: u32,
    timestamp: String,
}

impl LocalStatus {
    fn into_info(self, peername: &str, peer_id: &str) -> PinInfoShort {
        let status = crate::wire::status_name(&self.status);
        let mut info = PinInfoShort::of_peer(peername, peer_id, status, self.error);
        info.set_progress(self.timestamp, self.attempts);
        info
    }
}

async fn ask(cluster: &Consensus, peer_id: &str, cid: Cid) -> Result<LocalStatus, String> {
    let body = serde_json::to_vec(&[cid.to_string()]).map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(STATUS_TIMEOUT, cluster.query(peer_id, body))
        .await
        .map_err(|_| format!("no answer in {}s", STATUS_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let mut statuses: Vec<LocalStatus> = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
    statuses.pop().ok_or_else(|| "empty answer".to_string())
}

/// Answers another peer's status question from this peer's pinset: its
/// local status of each CID asked (`unpinned` for a CID it does not know).
pub fn answer_status(state: &Reader, body: Vec<u8>) -> Vec<u8> {
    let cids: Vec<String> = serde_json::from_slice(&body).unwrap_or_default();
    let statuses: Vec<LocalStatus> = cids
        .iter()
        .take(MAX_STATUS_CIDS)
        .map(|text| {
            let entry = text.parse::<Cid>().ok().and_then(|cid| state.cluster_pin(&cid).ok().flatten());
            match entry {
                Some(entry) => LocalStatus {
                    status: tracker_status(entry.pin.status).into(),
                    error: entry.pin.error.unwrap_or_default(),
                    attempts: entry.pin.attempts,
                    timestamp: entry.pin.updated.to_rfc3339(),
                },
                None => LocalStatus {
                    status: "unpinned".into(),
                    error: String::new(),
                    attempts: 0,
                    timestamp: pincluster_model::Timestamp::now().to_rfc3339(),
                },
            }
        })
        .collect();
    serde_json::to_vec(&statuses).unwrap_or_default()
}
