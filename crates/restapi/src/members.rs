//! The other peers of the cluster as the REST API shows them: who they are
//! and who is up (fresh metrics). Their statuses of each pin come from the
//! log (see `GlobalPinInfo`), not from asking them. Read [`Members`] first.

use std::time::Duration;

use pincluster_consensus::{Consensus, PeerView};

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

    /// Every other member's peer ID and name.
    pub(crate) fn others(&self) -> Vec<(String, String)> {
        self.peers
            .iter()
            .filter(|p| p.member.peer_id != self.me)
            .map(|p| (p.member.peer_id.clone(), p.member.name.clone()))
            .collect()
    }
}
