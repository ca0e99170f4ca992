//! The five operations of the spec. Each takes the authenticated user, so a
//! user only ever sees and changes their own pin objects.

use actix_web::{web, HttpRequest, HttpResponse};
use pincluster_httpcommon::Authenticated;
use pincluster_model::{Cid, UserName};
use pincluster_tracker::Tracker;

use crate::error::ApiError;
use crate::wire::{parse_cid, PinBody, PinResultsWire, PinStatusWire};

/// A JSON body, size- and type-checked by the shared layer, read as a value
/// first so that a mistake is reported with the path of the offending field.
type JsonBody = web::Json<serde_json::Value>;
use crate::{query, PinsvcOptions};

pub(crate) struct Context {
    tracker: Tracker,
    delegates: Vec<String>,
    replication: (i32, i32),
}

impl Context {
    pub(crate) fn new(tracker: Tracker, options: PinsvcOptions) -> Context {
        Context { tracker, delegates: options.delegates, replication: options.replication }
    }
}

fn user_name(user: &Authenticated) -> Result<UserName, ApiError> {
    UserName::new(user.0.name()).map_err(|e| ApiError::bad(e.to_string()))
}

/// A request ID names one of the user's pins; one that is not a CID names none.
fn requestid_cid(requestid: &str) -> Result<Cid, ApiError> {
    parse_cid(requestid).map_err(|_| ApiError::no_pin(requestid))
}

/// Runs a pinset read off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(work).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

pub(crate) async fn list(
    req: HttpRequest,
    user: Authenticated,
    ctx: web::Data<Context>,
) -> Result<HttpResponse, ApiError> {
    let query = query::parse(req.query_string())?;
    let user = user_name(&user)?;
    let page = if query::bounded_by_page(&query) {
        ctx.tracker.state().list(&user, &query)?
    } else {
        let context = ctx.clone();
        blocking(move || Ok(context.tracker.state().list(&user, &query)?)).await?
    };
    let results = page.results.into_iter().map(|v| PinStatusWire::from_domain(v, &ctx.delegates)).collect();
    Ok(HttpResponse::Ok().json(PinResultsWire { count: page.count, results }))
}

pub(crate) async fn add(
    user: Authenticated,
    ctx: web::Data<Context>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let pin = PinBody::from_value(body.into_inner())?.into_domain(ctx.replication)?;
    let view = ctx.tracker.pin(&user_name(&user)?, pin).await?;
    Ok(HttpResponse::Accepted().json(PinStatusWire::from_domain(view, &ctx.delegates)))
}

pub(crate) async fn get(
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let requestid = path.into_inner();
    let cid = requestid_cid(&requestid)?;
    let user = user_name(&user)?;
    let context = ctx.clone();
    let view = blocking(move || Ok(context.tracker.state().get(&user, &cid)?)).await?;
    let view = view.ok_or_else(|| ApiError::no_pin(&requestid))?;
    Ok(HttpResponse::Ok().json(PinStatusWire::from_domain(view, &ctx.delegates)))
}

pub(crate) async fn replace(
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let requestid = path.into_inner();
    let old = requestid_cid(&requestid)?;
    let pin = PinBody::from_value(body.into_inner())?.into_domain(ctx.replication)?;
    let view = ctx.tracker.replace(&user_name(&user)?, &old, pin).await.map_err(ApiError::about(&requestid))?;
    Ok(HttpResponse::Accepted().json(PinStatusWire::from_domain(view, &ctx.delegates)))
}

pub(crate) async fn delete(
    user: Authenticated,
    ctx: web::Data<Context>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let requestid = path.into_inner();
    let cid = requestid_cid(&requestid)?;
    ctx.tracker.unpin(&user_name(&user)?, &cid).await.map_err(ApiError::about(&requestid))?;
    Ok(HttpResponse::Accepted().finish())
}
