//! Joining the DHT and staying in it: resolves the bootstrap list (`/dnsaddr/` included), dials
//! it, bootstraps both routing tables and refreshes them, backing off quietly when there is no
//! network at all.

use std::time::Duration;

use hickory_resolver::TokioResolver;
use multiaddr::{Multiaddr, Protocol};
use rust_ipfs::{Ipfs, PeerId};

use crate::dht::DhtHandle;

/// How often the routing tables are refreshed while they have peers (Kubo: 10 min; rust-libp2p:
/// 5 min).
const REFRESH: Duration = Duration::from_secs(300);
/// The first wait after finding no peer at all, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(1800);
/// `/dnsaddr/` records may point at further `/dnsaddr/` names; this deep at most.
const MAX_DNSADDR_DEPTH: usize = 4;
/// At most this many addresses come out of one bootstrap entry.
const MAX_RESOLVED: usize = 32;
/// How long one bootstrap dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs for the node's life: (re)joins through the bootstrap peers whenever both routing tables
/// are empty and refreshes them otherwise. Logs a failure to reach any bootstrap peer once at
/// `warn`, then only at `debug`, so a node with no network stays quiet.
pub(crate) async fn run(ipfs: Ipfs, dht: DhtHandle, bootstrap: Vec<Multiaddr>) {
    let resolver = TokioResolver::builder_tokio().map(|b| b.build()).ok();
    let mut retry = FIRST_RETRY;
    let mut warned = false;
    loop {
        if !dht.has_peers() && !bootstrap.is_empty() {
            let reached = join(&ipfs, &dht, resolver.as_ref(), &bootstrap).await;
            if reached == 0 {
                if warned {
                    tracing::debug!(retry_in_s = retry.as_secs(), "no DHT bootstrap peer reachable");
                } else {
                    tracing::warn!(
                        peers = bootstrap.len(),
                        retry_in_s = retry.as_secs(),
                        "no DHT bootstrap peer reachable (no network?); retrying quietly"
                    );
                    warned = true;
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
            tracing::info!(reached, "connected to DHT bootstrap peers");
            retry = FIRST_RETRY;
            warned = false;
        }
        if dht.has_peers() {
            dht.bootstrap().await;
        }
        tokio::time::sleep(if dht.has_peers() || bootstrap.is_empty() { REFRESH } else { FIRST_RETRY }).await;
    }
}

/// Resolves and dials every bootstrap entry at once; returns how many peers answered.
async fn join(ipfs: &Ipfs, dht: &DhtHandle, resolver: Option<&TokioResolver>, bootstrap: &[Multiaddr]) -> usize {
    let mut targets: Vec<(PeerId, Multiaddr)> = Vec::new();
    for entry in bootstrap {
        for addr in resolve(resolver, entry).await {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                targets.push((peer, addr));
            }
        }
    }
    let dials = targets.into_iter().map(|(peer, addr)| async move {
        match tokio::time::timeout(DIAL_TIMEOUT, ipfs.connect(addr.clone())).await {
            Ok(Ok(_)) => {
                // Only a peer that answered goes in a routing table.
                dht.add_peer(peer, addr).await;
                Some(peer)
            }
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "bootstrap peer not reachable");
                None
            }
            Err(_) => None,
        }
    });
    let mut reached: Vec<PeerId> = futures_util::future::join_all(dials).await.into_iter().flatten().collect();
    reached.sort();
    reached.dedup();
    reached.len()
}

/// The dialable addresses behind one bootstrap entry: itself when it is an IP address, else its
/// DNS names resolved (`/dnsaddr/` through TXT records, keeping only entries for the same peer).
async fn resolve(resolver: Option<&TokioResolver>, entry: &Multiaddr) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    let mut pending = vec![(entry.clone(), 0usize)];
    while let Some((addr, depth)) = pending.pop() {
        if out.len() >= MAX_RESOLVED {
            break;
        }
        let Some(first) = addr.iter().next() else { continue };
        let Some(resolver) = resolver else {
            if !is_dns(&first) {
                out.push(addr);
            }
            continue;
        };
        let (want_v4, want_v6) = (!matches!(first, Protocol::Dns6(_)), !matches!(first, Protocol::Dns4(_)));
        match first {
            Protocol::Dnsaddr(name) if depth < MAX_DNSADDR_DEPTH => {
                let wanted = match addr.iter().last() {
                    Some(Protocol::P2p(peer)) => Some(peer),
                    _ => None,
                };
                let lookup = match resolver.txt_lookup(format!("_dnsaddr.{name}")).await {
                    Ok(lookup) => lookup,
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "dnsaddr lookup failed");
                        continue;
                    }
                };
                for txt in lookup.iter() {
                    for data in txt.txt_data() {
                        let Some(found) = std::str::from_utf8(data)
                            .ok()
                            .and_then(|t| t.strip_prefix("dnsaddr="))
                            .and_then(|t| t.parse::<Multiaddr>().ok())
                        else {
                            continue;
                        };
                        let same_peer = match (wanted, found.iter().last()) {
                            (Some(w), Some(Protocol::P2p(p))) => w == p,
                            (Some(_), _) => matches!(found.iter().next(), Some(Protocol::Dnsaddr(_))),
                            (None, _) => true,
                        };
                        if same_peer {
                            pending.push((found, depth + 1));
                        }
                    }
                }
            }
            Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
                match resolver.lookup_ip(name.as_ref()).await {
                    Ok(ips) => {
                        for ip in ips.iter() {
                            let proto = match ip {
                                std::net::IpAddr::V4(v4) if want_v4 => Protocol::Ip4(v4),
                                std::net::IpAddr::V6(v6) if want_v6 => Protocol::Ip6(v6),
                                _ => continue,
                            };
                            out.push(addr.replace(0, |_| Some(proto.clone())).unwrap_or_else(|| addr.clone()));
                        }
                    }
                    Err(e) => tracing::debug!(%addr, error = %e, "DNS lookup failed"),
                }
            }
            Protocol::Dnsaddr(_) => {}
            _ => out.push(addr),
        }
    }
    out
}

fn is_dns(protocol: &Protocol<'_>) -> bool {
    matches!(protocol, Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_))
}
