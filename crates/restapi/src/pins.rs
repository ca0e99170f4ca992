//! The pinset routes: `/pins…` and `/allocations…`. Every write goes through
//! the tracker; reads go to the pinset on blocking threads. Read [`pin`] first.

use actix_web::{web, HttpRequest, HttpResponse};
use pincluster_httpcommon::Authenticated;
use pincluster_model::{Cid, NewPin, PinOptions, PinView, StatusSet, Timestamp, UserName};
use pincluster_state::ClusterEntry;

use crate::error::ApiError;
use crate::options::{self, PinRequest, StatusQuery};
use crate::stream;
use crate::wire::{self, GlobalPinInfo, Pin};
use crate::Context;

pub(crate) fn user_name(user: &Authenticated) -> Result<UserName, ApiError> {
    UserName::new(user.0.name()).map_err(|e| ApiError::bad(e.to_string()))
}

fn path_cid(text: &str) -> Result<Cid, ApiError> {
    options::parse_cid(text).map_err(ApiError::bad)
}

/// Runs a pinset read off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(work).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

async fn entry(ctx: &web::Data<Context>, cid: Cid) -> Result<Option<ClusterEntry>, ApiError> {
    let context = ctx.clone();
    blocking(move || Ok(context.tracker.state().cluster_pin(&cid)?)).await
}

/// The `GlobalPinInfo` of one CID as the caller sees it.
async fn answer_status(ctx: &web::Data<Context>, user: &Authenticated, cid: Cid) -> Result<HttpResponse, ApiError> {
    let caller = user_name(user)?;
    let entry = entry(ctx, cid).await?;
    let others = ctx.members().others();
    Ok(HttpResponse::Ok().json(GlobalPinInfo::from_domain(&cid, entry.as_ref(), Some(&caller), &ctx.options, &others)))
}

/// `GET /pins`: the status of every pin (or of the `cids` given), as NDJSON.
pub(crate) async fn status_all(req: HttpRequest, ctx: web::Data<Context>) -> Result<HttpResponse, ApiError> {
    let query = StatusQuery::parse(req.query_string())?;
    let others = ctx.members().others();
    let context = ctx.into_inner();
    Ok(stream::ndjson(&req, move |sink| {
        let state = context.tracker.state();
        if let Some(cids) = query.cids {
            for cid in cids {
                let entry = state.cluster_pin(&cid).map_err(|e| e.to_string())?;
                if !sink.send(&GlobalPinInfo::from_domain(&cid, entry.as_ref(), None, &context.options, &others)) {
                    return Ok(());
                }
            }
            return Ok(());
        }
        if query.filter.is_empty() {
            return Ok(());
        }
        // One sequential scan: each record carries its representative holder's
        // pin, which is all `GlobalPinInfo` shows of the holders without a caller.
        for summary in state.cluster_summaries(query.filter) {
            let summary = summary.map_err(|e| e.to_string())?;
            let cid = summary.pin.cid;
            let entry = ClusterEntry { pin: summary.pin, holders: summary.representative.into_iter().collect() };
            if !sink.send(&GlobalPinInfo::from_domain(&cid, Some(&entry), None, &context.options, &others)) {
                return Ok(());
            }
        }
        Ok(())
    })
    .await)
}

/// `GET /pins/{cid}`: the status of one CID; `unpinned` when it is not pinned.
pub(crate) async fn status(
    req: HttpRequest,
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    options::check_local_only(req.query_string())?;
    let cid = path_cid(&path)?;
    answer_status(&ctx, &user, cid).await
}

/// `POST /pins/{cid}`: pins for the authenticated user with the query's options.
pub(crate) async fn pin(
    req: HttpRequest,
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cid = path_cid(&path)?;
    pin_cid(&req, &user, &ctx, cid).await
}

async fn pin_cid(
    req: &HttpRequest,
    user: &Authenticated,
    ctx: &web::Data<Context>,
    cid: Cid,
) -> Result<HttpResponse, ApiError> {
    let request = PinRequest::parse(req.query_string(), Timestamp::now())?;
    let view = pin_as(ctx, &user_name(user)?, &request, cid, None).await?;
    let body = Pin::from_domain(&view.cluster, Some(&view.user), request.pin_update.as_ref());
    Ok(HttpResponse::Ok().json(body))
}

/// Pins `cid` for `caller` with the options of `request`; `default_name`
/// names it when the request does not. Shared by `/pins/{cid}` and `/add`.
pub(crate) async fn pin_as(
    ctx: &web::Data<Context>,
    caller: &UserName,
    request: &PinRequest,
    cid: Cid,
    default_name: Option<&str>,
) -> Result<PinView, ApiError> {
    let (rmin, rmax) =
        options::replication_factors(request.replication, ctx.options.default_replication, ctx.members().peers.len())?;
    let pin = NewPin {
        cid,
        name: request.name.clone().or_else(|| default_name.filter(|n| !n.is_empty()).map(str::to_string)),
        meta: request.meta.clone(),
        origins: request.origins.clone(),
        options: PinOptions {
            mode: request.mode.unwrap_or_default(),
            replication_min: rmin,
            replication_max: rmax,
            user_allocations: request.user_allocations.clone(),
            expire_at: request.expire_at,
        },
    };
    // Cluster's pin update (the old pin's options, metadata and origins with
    // the request's name and expiry) and the refusal to pin a recursive pin
    // in direct mode are rules of the pinset, applied with the command.
    let view = ctx.tracker.pin_from(caller, pin, request.pin_update).await?;
    if let Some(at) = view.cluster.options.expire_at {
        ctx.expiry.schedule(at);
    }
    Ok(view)
}

/// `DELETE /pins/{cid}`: removes the CID from the pinset (for every holder:
/// the REST API is the admin view) and returns the pin as it was.
pub(crate) async fn unpin(
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cid = path_cid(&path)?;
    unpin_cid(&user, &ctx, cid).await
}

async fn unpin_cid(user: &Authenticated, ctx: &web::Data<Context>, cid: Cid) -> Result<HttpResponse, ApiError> {
    let caller = user_name(user)?;
    let removed = ctx.tracker.unpin_all(&cid).await?;
    let holder = wire::representative(&removed, Some(&caller));
    Ok(HttpResponse::Ok().json(Pin::from_domain(&removed.pin, holder, None)))
}

/// A `/pins/{ipfs|ipns|ipld}/{path…}` path as a CID. Only a bare CID is
/// accepted: resolving IPNS names or paths below a CID is not built.
fn resolve_path(kind: &str, rest: &str) -> Result<Cid, ApiError> {
    let rest = rest.trim_matches('/');
    match kind {
        "ipfs" | "ipld" if !rest.is_empty() && !rest.contains('/') => path_cid(rest),
        "ipfs" | "ipld" | "ipns" => Err(ApiError::bad(format!(
            "cannot resolve /{kind}/{rest}: only /ipfs/<cid> paths are supported (no IPNS, no paths below a \
             CID); pin the CID itself"
        ))),
        other => Err(ApiError::NotFound(format!("not found: /pins/{other} is not a path namespace"))),
    }
}

/// `POST /pins/{ipfs|ipns|ipld}/{path…}`.
pub(crate) async fn pin_path(
    req: HttpRequest,
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, rest) = path.into_inner();
    let cid = resolve_path(&kind, &rest)?;
    pin_cid(&req, &user, &ctx, cid).await
}

/// `DELETE /pins/{ipfs|ipns|ipld}/{path…}`.
pub(crate) async fn unpin_path(
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, rest) = path.into_inner();
    let cid = resolve_path(&kind, &rest)?;
    unpin_cid(&user, &ctx, cid).await
}

/// `POST /pins/{cid}/recover`: queues a failed pin again; answers its status.
pub(crate) async fn recover(
    req: HttpRequest,
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    options::check_local_only(req.query_string())?;
    let cid = path_cid(&path)?;
    ctx.tracker.recover(&cid).await?;
    answer_status(&ctx, &user, cid).await
}

/// `POST /pins/recover`: queues every failed pin again; streams those re-queued.
pub(crate) async fn recover_all(req: HttpRequest, ctx: web::Data<Context>) -> Result<HttpResponse, ApiError> {
    options::check_local_only(req.query_string())?;
    let others = ctx.members().others();
    let context = ctx.into_inner();
    let runtime = tokio::runtime::Handle::current();
    Ok(stream::ndjson(&req, move |sink| {
        let state = context.tracker.state();
        let failed = StatusSet::only(pincluster_model::PinStatus::Failed);
        for pin in state.cluster_pins(failed) {
            let pin = pin.map_err(|e| e.to_string())?;
            let requeued = match runtime.block_on(context.tracker.recover(&pin.cid)) {
                Ok(requeued) => requeued,
                Err(pincluster_tracker::TrackerError::NotFound) => false,
                Err(error) => return Err(error.to_string()),
            };
            if !requeued {
                continue;
            }
            let entry = state.cluster_pin(&pin.cid).map_err(|e| e.to_string())?;
            if !sink.send(&GlobalPinInfo::from_domain(&pin.cid, entry.as_ref(), None, &context.options, &others)) {
                return Ok(());
            }
        }
        Ok(())
    })
    .await)
}

/// `GET /allocations`: every pin of the pinset, as NDJSON.
pub(crate) async fn allocations(req: HttpRequest, ctx: web::Data<Context>) -> Result<HttpResponse, ApiError> {
    let include_pins = options::parse_allocation_filter(req.query_string())?;
    let context = ctx.into_inner();
    Ok(stream::ndjson(&req, move |sink| {
        if !include_pins {
            return Ok(());
        }
        let state = context.tracker.state();
        for pin in state.cluster_pins(StatusSet::ALL) {
            let pin = pin.map_err(|e| e.to_string())?;
            let Some(entry) = state.cluster_pin(&pin.cid).map_err(|e| e.to_string())? else { continue };
            let holder = wire::representative(&entry, None);
            if !sink.send(&Pin::from_domain(&entry.pin, holder, None)) {
                return Ok(());
            }
        }
        Ok(())
    })
    .await)
}

/// `GET /allocations/{cid}`: one pin; 404 when it is not in the pinset.
pub(crate) async fn allocation(
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cid = path_cid(&path)?;
    let caller = user_name(&user)?;
    let entry = entry(&ctx, cid).await?.ok_or_else(ApiError::not_in_pinset)?;
    let holder = wire::representative(&entry, Some(&caller));
    Ok(HttpResponse::Ok().json(Pin::from_domain(&entry.pin, holder, None)))
}
