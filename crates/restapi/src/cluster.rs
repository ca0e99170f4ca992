//! The routes about the cluster itself: `/id`, `/version`, `/peers…`,
//! `/ipfs/gc`, `/health/…` and `/monitor/metrics…`, answered for the whole
//! membership from the Raft membership and the metrics every peer reports.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use pincluster_model::{PinStatus, StatusSet};

use crate::error::ApiError;
use crate::options;
use crate::stream;
use crate::wire::{self, ConnectGraph, GlobalRepoGc, Metric, RepoGc};
use crate::Context;

/// The metrics this peer publishes.
const METRIC_NAMES: [&str; 4] = ["freespace", "ping", "pinqueue", "reposize"];

pub(crate) async fn id(ctx: web::Data<Context>) -> HttpResponse {
    HttpResponse::Ok().json(wire::Id::of_this_peer(&ctx.options, &ctx.members(), &ctx.tracker))
}

pub(crate) async fn version() -> HttpResponse {
    HttpResponse::Ok().json(wire::Version::current())
}

/// `GET /peers`: every member, as an NDJSON stream; one that is down carries an `error`.
pub(crate) async fn peers(req: HttpRequest, ctx: web::Data<Context>) -> HttpResponse {
    let members = ctx.members();
    let ids: Vec<wire::Id> = members
        .peers
        .iter()
        .map(|p| {
            if p.member.peer_id == members.me {
                wire::Id::of_this_peer(&ctx.options, &members, &ctx.tracker)
            } else {
                wire::Id::of_member(p, &members)
            }
        })
        .collect();
    stream::ndjson(&req, move |sink| {
        for id in &ids {
            if !sink.send(id) {
                break;
            }
        }
        Ok(())
    })
    .await
}

/// `POST /peers`: adding ourselves is a no-op; other peers join themselves.
pub(crate) async fn add_peer(
    ctx: web::Data<Context>,
    body: web::Json<wire::AddPeerBody>,
) -> Result<HttpResponse, ApiError> {
    let peer = options::parse_peer_id(body.peer_id.trim()).map_err(ApiError::bad)?;
    let members = ctx.members();
    if peer == ctx.options.peer_id {
        return Ok(HttpResponse::Ok().json(wire::Id::of_this_peer(&ctx.options, &members, &ctx.tracker)));
    }
    if let Some(member) = members.peers.iter().find(|p| p.member.peer_id == peer) {
        return Ok(HttpResponse::Ok().json(wire::Id::of_member(member, &members)));
    }
    Err(ApiError::NotImplemented(format!(
        "cannot add peer {peer} from here: a peer joins by itself, with `pincluster-service daemon --bootstrap \
         <the cluster address of a member>/p2p/<its peer id>`"
    )))
}

/// `DELETE /peers/{peer}`: moves the peer's pins to others, then removes it
/// from the membership.
pub(crate) async fn remove_peer(ctx: web::Data<Context>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let peer = options::parse_peer_id(path.trim()).map_err(ApiError::bad)?;
    let members = ctx.members();
    let Some(member) = members.peers.iter().find(|p| p.member.peer_id == peer) else {
        return Err(ApiError::NotFound(format!("peer {peer} is not part of the cluster")));
    };
    if members.peers.len() == 1 {
        return Err(ApiError::bad(format!("cannot remove peer {peer}: it is the only one of the cluster")));
    }
    let moved = ctx.tracker.vacate(&peer).await?;
    tracing::info!(%peer, pins = moved, "re-allocated the pins of a peer being removed");
    ctx.options
        .cluster
        .remove(member.id)
        .await
        .map_err(|e| ApiError::bad(format!("cannot remove peer {peer}: {e}")))?;
    tracing::info!(%peer, "peer removed from the cluster");
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /ipfs/gc`: collects the blocks no pin reaches in the embedded node.
/// Our collector counts what it removed rather than listing the keys, so the
/// answer has our peer with no `keys`.
pub(crate) async fn repo_gc(req: HttpRequest, ctx: web::Data<Context>) -> Result<HttpResponse, ApiError> {
    options::check_local_only(req.query_string())?;
    let (error, removed) = match ctx.tracker.gc().await {
        Ok(stats) => (String::new(), Some(stats)),
        Err(error) => (error.to_string(), None),
    };
    if let Some(stats) = removed {
        tracing::info!(blocks = stats.removed_blocks, bytes = stats.removed_bytes, "repo gc through the REST API");
    }
    let ours =
        RepoGc { peer: ctx.options.peer_id.clone(), peername: ctx.options.peername.clone(), keys: Vec::new(), error };
    Ok(HttpResponse::Ok().json(GlobalRepoGc { peer_map: BTreeMap::from([(ctx.options.peer_id.clone(), ours)]) }))
}

/// `GET /health/graph`: every member, linked to those that are up; each
/// peer's IPFS node is itself (same peer ID).
pub(crate) async fn graph(ctx: web::Data<Context>) -> HttpResponse {
    let members = ctx.members();
    let up: Vec<String> =
        members.peers.iter().filter(|p| members.down(p).is_none()).map(|p| p.member.peer_id.clone()).collect();
    let mut graph = ConnectGraph {
        cluster_id: ctx.options.peer_id.clone(),
        id_to_peername: BTreeMap::new(),
        ipfs_links: BTreeMap::new(),
        cluster_links: BTreeMap::new(),
        cluster_trust_links: BTreeMap::new(),
        cluster_to_ipfs: BTreeMap::new(),
    };
    for peer in &members.peers {
        let id = peer.member.peer_id.clone();
        let name = if id == members.me { ctx.options.peername.clone() } else { peer.member.name.clone() };
        let links: Vec<String> =
            if up.contains(&id) { up.iter().filter(|p| **p != id).cloned().collect() } else { Vec::new() };
        graph.id_to_peername.insert(id.clone(), name);
        graph.ipfs_links.insert(id.clone(), links.clone());
        graph.cluster_links.insert(id.clone(), links);
        graph.cluster_trust_links.insert(id.clone(), true);
        graph.cluster_to_ipfs.insert(id.clone(), id);
    }
    HttpResponse::Ok().json(graph)
}

/// `GET /health/alerts`: a `ping` alert for every member whose metrics expired.
pub(crate) async fn alerts(ctx: web::Data<Context>) -> HttpResponse {
    let members = ctx.members();
    let now = SystemTime::now();
    let alerts: Vec<Metric> = members
        .peers
        .iter()
        .filter(|p| members.down(p).is_some())
        .map(|p| {
            let seen = p.metrics.as_ref().map_or(UNIX_EPOCH, |(age, _)| now - *age);
            Metric {
                name: "ping".into(),
                peer: p.member.peer_id.clone(),
                value: String::new(),
                expire: unix_nanos(seen + ctx.options.metric_ttl),
                valid: false,
                weight: 0,
                partitionable: false,
                received_at: unix_nanos(seen),
            }
        })
        .collect();
    HttpResponse::Ok().json(alerts)
}

/// `GET /health/bandwidth`: no cluster protocols carry traffic yet.
pub(crate) async fn bandwidth() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::Map::new())
}

/// `GET /monitor/metrics`: the metric names.
pub(crate) async fn metric_names() -> HttpResponse {
    HttpResponse::Ok().json(METRIC_NAMES)
}

fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `GET /monitor/metrics/{name}`: the latest value of a metric on each peer
/// (`[]` for a name nobody publishes).
pub(crate) async fn metrics(ctx: web::Data<Context>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let measured: Option<(String, i64)> = match name.as_str() {
        "pinqueue" => {
            let context = ctx.clone();
            let queued = web::block(move || context.tracker.state().cluster_count(StatusSet::only(PinStatus::Queued)))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??;
            Some((queued.to_string(), -i64::try_from(queued).unwrap_or(i64::MAX)))
        }
        "freespace" => {
            let dir = ctx.options.data_dir.clone();
            let free = web::block(move || fs2::available_space(&dir))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| ApiError::Internal(format!("cannot read the free space of the data folder: {e}")))?;
            Some((free.to_string(), i64::try_from(free).unwrap_or(i64::MAX)))
        }
        "reposize" => {
            let stat = ctx.tracker.repo_stat().await?;
            Some((stat.bytes.to_string(), -i64::try_from(stat.bytes).unwrap_or(i64::MAX)))
        }
        "ping" => Some((String::new(), 0)),
        _ => None,
    };
    let now = SystemTime::now();
    let mut metrics: Vec<Metric> = measured
        .into_iter()
        .map(|(value, weight)| Metric {
            name: name.clone(),
            peer: ctx.options.peer_id.clone(),
            value,
            expire: unix_nanos(now + ctx.options.metric_ttl),
            valid: true,
            weight,
            partitionable: false,
            received_at: unix_nanos(now),
        })
        .collect();
    // The others' last reports.
    let members = ctx.members();
    for peer in members.peers.iter().filter(|p| p.member.peer_id != members.me) {
        let Some((age, reported)) = &peer.metrics else { continue };
        let (value, weight) = match name.as_str() {
            "freespace" => (reported.freespace, i64::try_from(reported.freespace).unwrap_or(i64::MAX)),
            "reposize" => (reported.reposize, -i64::try_from(reported.reposize).unwrap_or(i64::MAX)),
            "pinqueue" => (reported.pinqueue, -i64::try_from(reported.pinqueue).unwrap_or(i64::MAX)),
            "ping" => (0, 0),
            _ => continue,
        };
        let seen = now - *age;
        metrics.push(Metric {
            name: name.clone(),
            peer: peer.member.peer_id.clone(),
            value: if name == "ping" { String::new() } else { value.to_string() },
            expire: unix_nanos(seen + ctx.options.metric_ttl),
            valid: members.down(peer).is_none(),
            weight,
            partitionable: false,
            received_at: unix_nanos(seen),
        });
    }
    Ok(HttpResponse::Ok().json(metrics))
}
