//! The gateway's one route, `GET`/`HEAD /ipfs/{cid}[/path]`: parse and negotiate
//! (`request.rs`), check that the CID is pinned here, then answer with one block, a CAR stream
//! or (when enabled) a file's bytes. Streams are fed by a task on the request's worker through a
//! bounded channel: memory is the channel's few chunks and the block in hand, whatever the DAG.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use cid::Cid;
use pincluster_config::GatewayConfig;
use pincluster_httpcommon::{if_none_match, RouteLabel};
use pincluster_model::PinStatus;
use pincluster_tracker::Tracker;
use tokio::sync::mpsc;

use crate::limits::{Bandwidth, ClientSlots, Slot};
use crate::metrics::{ABORTED, REFUSED, SENT_BLOCKS, SENT_BYTES};
use crate::range::http_range;
use crate::request::{self, Ask, CarAsk, Format, RAW_TYPE};
use crate::walk::{self, Blocks, ByteSink, CarWalk, Resolved, Sink, IDENTITY};
use crate::{render_error, GatewayError};

/// Chunks buffered between the walk and the connection: a block is two (its frame prefix and
/// its data), so at most about four blocks wait for a slow reader.
const CHANNEL_CHUNKS: usize = 8;
/// `Cache-Control` of every `/ipfs/` answer: content addressed, so immutable.
const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// What every request of the gateway shares.
#[derive(Clone)]
pub(crate) struct Gateway {
    store: Store,
    slots: Arc<ClientSlots>,
    bandwidth: Arc<Bandwidth>,
    deserialized: bool,
    write_timeout: Duration,
}

impl Gateway {
    pub(crate) fn new(tracker: Tracker, config: &GatewayConfig) -> Gateway {
        Gateway {
            store: Store(tracker),
            slots: ClientSlots::new(config.max_concurrent_per_client),
            bandwidth: Bandwidth::new(config.max_bytes_per_second),
            deserialized: config.deserialized_responses,
            write_timeout: config.write_timeout.0,
        }
    }
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig, gateway: Gateway) {
    // A scope with a static prefix: matching it costs no regex (a `{tail:.*}` pattern runs one
    // on every request); the handler parses the path itself.
    cfg.app_data(web::Data::new(gateway)).service(web::scope("/ipfs").default_service(web::to(ipfs)));
}

/// The node's local store, as the walks read it.
#[derive(Clone)]
struct Store(Tracker);

impl Blocks for Store {
    async fn get(&self, cid: &Cid) -> Result<Option<Bytes>, GatewayError> {
        self.0.local_block(cid).await.map_err(GatewayError::store)
    }
}

impl Store {
    /// Whether `cid` may be served: this peer's status of it is `pinned` in the pinset (as
    /// CIDv0 or CIDv1), or the node holds it under a pin (a block inside a pinned DAG).
    async fn servable(&self, cid: &Cid) -> Result<bool, GatewayError> {
        if cid.hash().code() == IDENTITY {
            return Ok(true);
        }
        // One or two point reads of the pinset: cheaper inline than a trip to the blocking pool.
        let reader = self.0.state();
        for form in forms(cid) {
            match reader.local_status(&form) {
                Ok(Some(PinStatus::Pinned)) => return Ok(true),
                Ok(_) => {}
                Err(e) => return Err(GatewayError::store(e)),
            }
        }
        self.0.is_pinned_block(cid).await.map_err(GatewayError::store)
    }
}

/// `cid` and its other version (CIDv0 ⇄ CIDv1 for dag-pb sha2-256), as pins may be either.
fn forms(cid: &Cid) -> Vec<Cid> {
    let mut forms = vec![*cid];
    match cid.version() {
        cid::Version::V0 => forms.push(Cid::new_v1(cid.codec(), *cid.hash())),
        cid::Version::V1 => {
            if let Ok(v0) = Cid::new_v0(*cid.hash()) {
                if cid.codec() == walk::DAG_PB {
                    forms.push(v0);
                }
            }
        }
    }
    forms
}

async fn ipfs(req: HttpRequest, gateway: web::Data<Gateway>) -> HttpResponse {
    req.extensions_mut().insert(RouteLabel("/ipfs/{path}"));
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return render_error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served");
    }
    match serve(&req, &gateway).await {
        Ok(response) => response,
        Err(error) => {
            if let GatewayError::Store(cause) = &error {
                tracing::warn!(error = %cause, "gateway read failed");
            }
            let mut response = render_error(error.status(), &error.to_string());
            if matches!(error, GatewayError::ClientLimit | GatewayError::Busy) {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            if let GatewayError::RangeNotSatisfiable { size } = error {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
            }
            response
        }
    }
}

async fn serve(req: &HttpRequest, gateway: &Gateway) -> Result<HttpResponse, GatewayError> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| GatewayError::BadRequest(format!("invalid query: {e}")))?
        .into_inner();
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .map(|v| v.to_str().map_err(|_| GatewayError::BadRequest("malformed Accept header".into())))
        .collect::<Result<Vec<&str>, _>>()?;
    let ask = request::parse(req.uri().path(), &query, &accept, gateway.deserialized)?;
    let ip = req.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let slot = gateway.slots.take(ip).inspect_err(|_| {
        metrics::counter!(REFUSED, "reason" => "client_limit").increment(1);
    })?;
    let store = &gateway.store;
    if !store.servable(&ask.root).await? {
        metrics::counter!(REFUSED, "reason" => "not_pinned").increment(1);
        return Err(GatewayError::NotPinned(ask.root));
    }
    let block = store.get(&ask.root).await?.ok_or(GatewayError::NotPinned(ask.root))?;
    let head = req.method() == Method::HEAD;
    match ask.format {
        Format::Raw => Ok(raw(req, gateway, &ask, block, head).await),
        Format::Car(car) => {
            let resolved = walk::resolve(store, ask.root, block, &ask.segments).await?;
            car_response(req, gateway, &ask, car, resolved, slot, head)
        }
        Format::Plain => {
            let resolved = walk::resolve(store, ask.root, block, &ask.segments).await?;
            plain(req, gateway, &ask, resolved, slot, head)
        }
    }
}

/// The headers of every successful `/ipfs/` answer.
fn immutable(req: &HttpRequest, status: StatusCode, etag: &str, roots: String) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .insert_header((header::ETAG, etag))
        .insert_header((header::VARY, "Accept"))
        .insert_header(("X-Ipfs-Path", req.uri().path()))
        .insert_header(("X-Ipfs-Roots", roots));
    builder
}

/// `X-Ipfs-Roots`: the root and each path segment's CID.
fn roots_text(roots: &[Cid]) -> String {
    roots.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

async fn raw(req: &HttpRequest, gateway: &Gateway, ask: &Ask, block: Bytes, head: bool) -> HttpResponse {
    // The CID's text, once: encoding it is a good part of a small block's cost.
    let root = ask.root.to_string();
    let etag = format!("\"{root}.raw\"");
    if if_none_match(req, &etag) {
        return immutable(req, StatusCode::NOT_MODIFIED, &etag, root).finish();
    }
    let disposition = format!("attachment; filename=\"{root}.bin\"");
    let mut builder = immutable(req, StatusCode::OK, &etag, root);
    builder
        .content_type(RAW_TYPE)
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if !head {
        gateway.bandwidth.take(block.len()).await;
        metrics::counter!(SENT_BYTES, "format" => "raw").increment(block.len() as u64);
        metrics::counter!(SENT_BLOCKS, "format" => "raw").increment(1);
    }
    // For HEAD, actix sends the head with this length and no body.
    builder.body(block)
}

fn car_response(
    req: &HttpRequest,
    gateway: &Gateway,
    ask: &Ask,
    car: CarAsk,
    resolved: Resolved,
    slot: Slot,
    head: bool,
) -> Result<HttpResponse, GatewayError> {
    // entity-bytes applies to UnixFS files only (ignored for directories and other data).
    let range = match (car.entity_bytes, walk::file_size(&resolved.terminus, &resolved.block)) {
        (Some(bytes), Some(size)) => bytes.resolve(size)?,
        _ => None,
    };
    let dups = if car.dups { "y" } else { "n" };
    let etag = format!("\"{}.car.{:016x}\"", ask.root, car_tag(ask, car, range));
    if if_none_match(req, &etag) {
        return Ok(immutable(req, StatusCode::NOT_MODIFIED, &etag, roots_text(&resolved.roots)).finish());
    }
    let mut builder = immutable(req, StatusCode::OK, &etag, roots_text(&resolved.roots));
    builder
        .insert_header((header::CONTENT_TYPE, format!("application/vnd.ipld.car; version=1; order=dfs; dups={dups}")))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.car\"", ask.root)))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::ACCEPT_RANGES, "none"));
    if head {
        return Ok(builder.finish());
    }
    let root = ask.root;
    let store = gateway.store.clone();
    let body = stream(gateway, slot, "car", move |mut sink| async move {
        sink.send(crate::car::header(&root)).await?;
        CarWalk::new(&store, sink, car.dups).run(resolved, car.scope, range).await
    });
    Ok(builder.streaming(body))
}

/// A stable tag of what a CAR response holds (FNV-1a of its root, path, scope, dups and range),
/// for its `Etag`: the same request always gives the same bytes.
fn car_tag(ask: &Ask, car: CarAsk, range: Option<(u64, u64)>) -> u64 {
    let text = format!("{}/{}|{:?}|{}|{:?}", ask.root, ask.segments.join("/"), car.scope, car.dups, range);
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A deserialized response: a UnixFS file's bytes (with `Range`), or a flat directory's names.
fn plain(
    req: &HttpRequest,
    gateway: &Gateway,
    ask: &Ask,
    resolved: Resolved,
    slot: Slot,
    head: bool,
) -> Result<HttpResponse, GatewayError> {
    let etag = format!("\"{}\"", resolved.terminus);
    let Some(size) = walk::file_size(&resolved.terminus, &resolved.block) else {
        return directory(req, &resolved, &etag);
    };
    let range = http_range(req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()), size)?;
    if range.is_none() && if_none_match(req, &etag) {
        return Ok(immutable(req, StatusCode::NOT_MODIFIED, &etag, roots_text(&resolved.roots)).finish());
    }
    let status = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let mut builder = immutable(req, status, &etag, roots_text(&resolved.roots));
    let length = match range {
        Some((first, last)) => {
            builder.insert_header((header::CONTENT_RANGE, format!("bytes {first}-{last}/{size}")));
            last - first + 1
        }
        None => size,
    };
    let name = ask.segments.last().map_or("", String::as_str);
    builder
        .content_type(content_type(name))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .no_chunking(length);
    if head || length == 0 {
        return Ok(builder.finish());
    }
    let store = gateway.store.clone();
    let (cid, block) = (resolved.terminus, resolved.block);
    let body = stream(gateway, slot, "file", move |mut sink| async move {
        walk::file_bytes(&store, cid, block, range, &mut sink).await
    });
    Ok(builder.streaming(body))
}

fn directory(req: &HttpRequest, resolved: &Resolved, etag: &str) -> Result<HttpResponse, GatewayError> {
    use rust_unixfs::dir::{describe, NodeDescription};
    let names = match describe(&resolved.block) {
        NodeDescription::Directory { links } => links.into_iter().map(|l| l.name).collect::<Vec<_>>(),
        NodeDescription::HamtShard { .. } => {
            return Err(GatewayError::NotAcceptable(
                "listing a sharded directory is not supported here: ask for format=car&dag-scope=entity".into(),
            ))
        }
        _ => {
            return Err(GatewayError::NotAcceptable(
                "not a UnixFS file or directory: ask for format=raw or format=car".into(),
            ))
        }
    };
    let mut listing = names.join("\n");
    listing.push('\n');
    Ok(immutable(req, StatusCode::OK, etag, roots_text(&resolved.roots))
        .content_type("text/plain; charset=utf-8")
        .body(listing))
}

/// A content type from a file name's extension; bytes otherwise.
fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "txt" | "md" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "car" => "application/vnd.ipld.car",
        _ => "application/octet-stream",
    }
}

/// Chunks of a streamed response on their way to the connection, paced by the shared bandwidth
/// and given up when the client takes nothing for `write_timeout`.
pub(crate) struct ChannelSink {
    tx: mpsc::Sender<Bytes>,
    bandwidth: Arc<Bandwidth>,
    write_timeout: Duration,
    format: &'static str,
}

impl ChannelSink {
    async fn send(&mut self, chunk: Bytes) -> Result<(), GatewayError> {
        self.bandwidth.take(chunk.len()).await;
        match tokio::time::timeout(self.write_timeout, self.tx.send(chunk)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(GatewayError::ClientGone),
            Err(_) => Err(GatewayError::WriteTimeout(self.write_timeout)),
        }
    }
}

impl Sink for ChannelSink {
    async fn block(&mut self, cid: &Cid, data: &Bytes) -> Result<(), GatewayError> {
        self.send(crate::car::frame_prefix(cid, data.len())).await?;
        self.send(data.clone()).await?;
        metrics::counter!(SENT_BLOCKS, "format" => self.format).increment(1);
        Ok(())
    }
}

impl ByteSink for ChannelSink {
    async fn bytes(&mut self, chunk: Bytes) -> Result<(), GatewayError> {
        self.send(chunk).await
    }
}

/// Runs `produce` on this worker, feeding a bounded channel, and returns the body that drains
/// it. A failure after the head was sent ends the body with an error, so the connection is cut
/// instead of the response looking complete.
fn stream<F, Fut>(
    gateway: &Gateway,
    slot: Slot,
    format: &'static str,
    produce: F,
) -> impl futures_util::Stream<Item = Result<Bytes, GatewayError>>
where
    F: FnOnce(ChannelSink) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), GatewayError>> + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let failed = Arc::new(AtomicBool::new(false));
    let sink = ChannelSink {
        tx: tx.clone(),
        bandwidth: gateway.bandwidth.clone(),
        write_timeout: gateway.write_timeout,
        format,
    };
    let flag = failed.clone();
    actix_web::rt::spawn(async move {
        // Held until the flag is set, so the body never sees the channel close before it.
        let keep_open = tx;
        let result = produce(sink).await;
        match result {
            Ok(()) | Err(GatewayError::ClientGone) => {}
            Err(error) => {
                flag.store(true, Ordering::Release);
                metrics::counter!(ABORTED, "reason" => error.reason()).increment(1);
                tracing::warn!(%error, format, "gateway response cut off");
            }
        }
        drop(keep_open);
        drop(slot);
    });
    futures_util::stream::unfold(Some(rx), move |state| {
        let failed = failed.clone();
        async move {
            let mut rx = state?;
            match rx.recv().await {
                Some(chunk) => {
                    metrics::counter!(SENT_BYTES, "format" => format).increment(chunk.len() as u64);
                    Some((Ok(chunk), Some(rx)))
                }
                None if failed.load(Ordering::Acquire) => Some((Err(GatewayError::Aborted), None)),
                None => None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_cid_versions_are_looked_up() {
        let v0: Cid = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n".parse().expect("cid");
        let v1 = Cid::new_v1(0x70, *v0.hash());
        assert_eq!(forms(&v0), vec![v0, v1]);
        assert_eq!(forms(&v1), vec![v1, v0]);
        let raw = Cid::new_v1(0x55, *v0.hash());
        assert_eq!(forms(&raw), vec![raw], "a raw CID has no CIDv0 form");
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("a.TXT"), "text/plain; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }
}
