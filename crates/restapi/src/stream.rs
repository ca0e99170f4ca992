//! NDJSON streaming responses, produced on a blocking thread so a walk over
//! the pinset never holds an async worker and never builds the whole list.
//! Read [`ndjson`] first, then [`respond`], which `/add` shares.
//!
//! Framing follows Cluster: `Trailer: X-Stream-Error` is announced up front,
//! every item is one compact JSON object followed by `\n` and sent as its own
//! chunk, an error before the first item is a 500 with the error body, and an
//! empty stream is 200 with an empty body (not Cluster's 204, which browser
//! clients cannot read). The body ends with the `X-Stream-Error` trailer that
//! Cluster's clients check: empty, or the error that stopped the stream.
//! actix-web cannot write trailers, so on HTTP/1.1 this module writes the
//! chunked framing itself; HTTP/1.0 has neither chunks nor trailers, and there
//! an error cuts the body off.

use std::convert::Infallible;

use actix_web::http::header::{HeaderValue, TRAILER, TRANSFER_ENCODING};
use actix_web::http::{StatusCode, Version};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::render_error;

/// How many encoded lines wait between the producer and the socket.
const CHANNEL_CAPACITY: usize = 64;
/// The trailer that ends every stream, announced in the `Trailer` header.
const X_STREAM_ERROR: &str = "X-Stream-Error";
/// The longest `X-Stream-Error` value sent; longer messages are cut.
const MAX_TRAILER_BYTES: usize = 1024;

/// Where a producer writes its items.
pub(crate) struct Sink {
    tx: mpsc::Sender<Result<Bytes, String>>,
}

impl Sink {
    /// Sends one item; `false` when the client went away and producing should stop.
    pub(crate) fn send<T: Serialize>(&mut self, item: &T) -> bool {
        let mut line = match serde_json::to_vec(item) {
            Ok(line) => line,
            Err(error) => {
                let _ = self.tx.blocking_send(Err(format!("cannot encode an item: {error}")));
                return false;
            }
        };
        line.push(b'\n');
        self.tx.blocking_send(Ok(Bytes::from(line))).is_ok()
    }
}

/// Runs `produce` on a blocking thread and streams what it sends. An `Err`
/// from `produce` becomes a 500 before the first item, else the trailer.
pub(crate) async fn ndjson<F>(req: &HttpRequest, produce: F) -> HttpResponse
where
    F: FnOnce(&mut Sink) -> Result<(), String> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::task::spawn_blocking(move || {
        let mut sink = Sink { tx };
        if let Err(error) = produce(&mut sink) {
            let _ = sink.tx.blocking_send(Err(error));
        }
    });
    let mut builder = HttpResponse::build(StatusCode::OK);
    builder.content_type("application/json");
    let first = match rx.recv().await {
        None => return builder.insert_header((TRAILER, X_STREAM_ERROR)).finish(),
        Some(Err(error)) => {
            tracing::error!(%error, "stream failed before its first item");
            let mut response = render_error(StatusCode::INTERNAL_SERVER_ERROR, &error);
            response.headers_mut().insert(TRAILER, HeaderValue::from_static(X_STREAM_ERROR));
            return response;
        }
        Some(Ok(first)) => first,
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    respond(req, builder, first, rest)
}

/// A streamed response: `first`, then `rest` until it ends or fails.
///
/// On HTTP/1.1 the body is framed here (actix-web is told not to chunk it), so
/// that a failure ends it with a last chunk carrying `X-Stream-Error`; the
/// connection stays usable. HTTP/1.0 gets the bare body up to the end of the
/// connection, which a failure cuts off.
pub(crate) fn respond<S>(req: &HttpRequest, mut builder: HttpResponseBuilder, first: Bytes, rest: S) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, String>> + 'static,
{
    builder.insert_header((TRAILER, X_STREAM_ERROR));
    let body = futures_util::stream::once(async move { Ok(first) }).chain(rest);
    match req.version() {
        Version::HTTP_11 => {
            builder.insert_header((TRANSFER_ENCODING, "chunked"));
            let mut response = builder.streaming(framed(body));
            response.head_mut().no_chunking(true);
            response
        }
        Version::HTTP_10 => {
            // The body runs to the end of the connection (actix-web would chunk it).
            let mut response = builder.force_close().streaming(cut_off(body));
            response.head_mut().no_chunking(true);
            response
        }
        _ => builder.streaming(cut_off(body)),
    }
}

/// The body as HTTP/1.1 chunks, ended by the last chunk and its trailer.
fn framed<S>(body: S) -> impl Stream<Item = Result<Bytes, Infallible>>
where
    S: Stream<Item = Result<Bytes, String>>,
{
    futures_util::stream::unfold(Some(Box::pin(body)), |state| async move {
        let mut body = state?;
        loop {
            let last = match body.next().await {
                Some(Ok(bytes)) if bytes.is_empty() => continue,
                Some(Ok(bytes)) => return Some((Ok(chunk(&bytes)), Some(body))),
                Some(Err(error)) => {
                    tracing::error!(%error, "stream failed; ending it with X-Stream-Error");
                    last_chunk(Some(&error))
                }
                None => last_chunk(None),
            };
            return Some((Ok(last), None));
        }
    })
}

/// The body as it is; a failure aborts it (no trailers without chunks).
fn cut_off<S>(body: S) -> impl Stream<Item = Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, String>>,
{
    body.map(|item| {
        item.map_err(|error| {
            tracing::error!(%error, "stream failed; cutting the response off");
            std::io::Error::other(error)
        })
    })
}

/// One HTTP/1.1 chunk holding `data` (not empty).
fn chunk(data: &[u8]) -> Bytes {
    let size = format!("{:x}\r\n", data.len());
    let mut out = BytesMut::with_capacity(size.len() + data.len() + 2);
    out.extend_from_slice(size.as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// The last chunk with the `X-Stream-Error` trailer: the error, or empty when
/// the stream went well (as Cluster sends it).
fn last_chunk(error: Option<&str>) -> Bytes {
    let Some(error) = error else { return Bytes::from(format!("0\r\n{X_STREAM_ERROR}: \r\n\r\n")) };
    // A header value is one line of visible text.
    let mut value: String = error.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if value.len() > MAX_TRAILER_BYTES {
        let mut end = MAX_TRAILER_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    Bytes::from(format!("0\r\n{X_STREAM_ERROR}: {}\r\n\r\n", value.trim()))
}
