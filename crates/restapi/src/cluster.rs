//! The routes about the cluster itself: `/id`, `/version`, `/peers…`,
//! `/ipfs/gc`, `/health/…` and `/monitor/metrics…`, answered truthfully for a
//! cluster of one peer whose IPFS node is embedded.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use pincluster_model::{PinStatus, StatusSet};

use crate::error::ApiError;
use crate::options;
use crate::stream;
use crate::wire::{self, ConnectGraph, GlobalRepoGc, Metric, RepoGc};
use crate::Context;

/// The metrics this peer publishes.
const METRIC_NAMES: [&str; 4] = ["freespace", "ping", "pinqueue", "reposize"];
/// How long a metric is valid, as Cluster's informers default to.
const METRIC_TTL: Duration = Duration::from_secs(30);

pub(crate) async fn id(ctx: web::Data<Context>) -> HttpResponse {
    HttpResponse::Ok().json(wire::Id::of_this_peer(&ctx.options))
}

pub(crate) async fn version() -> HttpResponse {
    HttpResponse::Ok().json(wire::Version::current())
}

/// `GET /peers`: the one peer, as an NDJSON stream.
pub(crate) async fn peers(req: HttpRequest, ctx: web::Data<Context>) -> HttpResponse {
    let id = wire::Id::of_this_peer(&ctx.options);
    stream::ndjson(&req, move |sink| {
        sink.send(&id);
        Ok(())
    })
    .await
}

/// `POST /peers`: adding ourselves is a no-op; other peers cannot join yet.
pub(crate) async fn add_peer(
    ctx: web::Data<Context>,
    body: web::Json<wire::AddPeerBody>,
) -> Result<HttpResponse, ApiError> {
    let peer = options::parse_peer_id(body.peer_id.trim()).map_err(ApiError::bad)?;
    if peer == ctx.options.peer_id {
        return Ok(HttpResponse::Ok().json(wire::Id::of_this_peer(&ctx.options)));
    }
    Err(ApiError::NotImplemented(format!(
        "cannot add peer {peer}: pincluster runs as a cluster of one peer and does not support adding peers yet"
    )))
}

/// `DELETE /peers/{peer}`: we are the only peer, and we do not remove ourselves.
pub(crate) async fn remove_peer(ctx: web::Data<Context>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let peer = options::parse_peer_id(path.trim()).map_err(ApiError::bad)?;
    if peer == ctx.options.peer_id {
        return Err(ApiError::bad(format!("cannot remove peer {peer}: it is this peer, the only one of the cluster")));
    }
    Err(ApiError::NotFound(format!("peer {peer} is not part of the cluster")))
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

/// `GET /health/graph`: one peer, linked to nobody, its IPFS node being itself.
pub(crate) async fn graph(ctx: web::Data<Context>) -> HttpResponse {
    let id = ctx.options.peer_id.clone();
    HttpResponse::Ok().json(ConnectGraph {
        cluster_id: id.clone(),
        id_to_peername: BTreeMap::from([(id.clone(), ctx.options.peername.clone())]),
        ipfs_links: BTreeMap::from([(id.clone(), Vec::new())]),
        cluster_links: BTreeMap::from([(id.clone(), Vec::new())]),
        cluster_trust_links: BTreeMap::from([(id.clone(), true)]),
        cluster_to_ipfs: BTreeMap::from([(id.clone(), id)]),
    })
}

/// `GET /health/alerts`: no peer ever misses a metric in a cluster of one.
pub(crate) async fn alerts() -> HttpResponse {
    HttpResponse::Ok().json(Vec::<Metric>::new())
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
    let metrics: Vec<Metric> = measured
        .into_iter()
        .map(|(value, weight)| Metric {
            name: name.clone(),
            peer: ctx.options.peer_id.clone(),
            value,
            expire: unix_nanos(now + METRIC_TTL),
            valid: true,
            weight,
            partitionable: false,
            received_at: unix_nanos(now),
        })
        .collect();
    Ok(HttpResponse::Ok().json(metrics))
}
