//! JSON objects of the REST API with IPFS Cluster's field names, in Go struct order.

use serde::Serialize;

use crate::RestOptions;

/// The RPC protocol Cluster clients expect to see.
const RPC_PROTOCOL_VERSION: &str = "/ipfscluster/1.0/rpc";

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
}

impl Id {
    /// This peer, a cluster of one whose IPFS node is embedded (same peer ID).
    pub(crate) fn of_this_peer(options: &RestOptions) -> Id {
        Id {
            id: options.peer_id.clone(),
            addresses: options.addresses.clone(),
            cluster_peers: vec![options.peer_id.clone()],
            cluster_peers_addresses: Vec::new(),
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("PINCLUSTER_COMMIT").unwrap_or(""),
            rpc_protocol_version: RPC_PROTOCOL_VERSION,
            error: String::new(),
            ipfs: IpfsId { id: options.peer_id.clone(), addresses: options.addresses.clone(), error: String::new() },
            peername: options.peername.clone(),
        }
    }
}
