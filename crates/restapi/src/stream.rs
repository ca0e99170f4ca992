//! NDJSON streaming responses, produced on a blocking thread so a walk over
//! the pinset never holds an async worker and never builds the whole list.
//! Read [`ndjson`] first.
//!
//! Framing follows Cluster: `Trailer: X-Stream-Error` is announced up front,
//! every item is one compact JSON object followed by `\n` and sent as its own
//! chunk, an error before the first item is a 500 with the error body, and an
//! empty stream is 200 with an empty body (not Cluster's 204, which browser
//! clients cannot read). actix-web cannot send HTTP trailers, so an error in
//! the middle of a stream aborts the response: the client sees a truncated
//! chunked body instead of a complete one and reports the failure.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::render_error;

/// How many encoded lines wait between the producer and the socket.
const CHANNEL_CAPACITY: usize = 64;

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

fn stream_headers(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder.insert_header(("Trailer", "X-Stream-Error")).content_type("application/json");
    builder
}

/// Runs `produce` on a blocking thread and streams what it sends. An `Err`
/// from `produce` becomes a 500 before the first item, else an aborted body.
pub(crate) async fn ndjson<F>(produce: F) -> HttpResponse
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
    let first = match rx.recv().await {
        None => return stream_headers(StatusCode::OK).finish(),
        Some(Err(error)) => {
            tracing::error!(%error, "stream failed before its first item");
            let mut response = render_error(StatusCode::INTERNAL_SERVER_ERROR, &error);
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str("X-Stream-Error") {
                response.headers_mut().insert(actix_web::http::header::TRAILER, value);
            }
            return response;
        }
        Some(Ok(first)) => first,
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await? {
            Ok(bytes) => Some((Ok(bytes), rx)),
            Err(error) => {
                tracing::error!(%error, "stream failed; aborting the response");
                Some((Err(std::io::Error::other(error)), rx))
            }
        }
    });
    let body = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
    stream_headers(StatusCode::OK).streaming(body)
}
