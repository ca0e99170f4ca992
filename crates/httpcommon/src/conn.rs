//! One API's connections: a limit per listen address, and a head deadline on
//! every request of a kept-alive connection. Read [`Guarded`] first.
//!
//! actix-http's `client_request_timeout` is a fixed deadline, from the
//! connection's start, for its first request head only; after a response the
//! keep-alive timer stops at the first byte of the next request, and then
//! nothing bounds how slowly that head arrives. [`Guarded`] wraps the socket
//! and closes it when a head that started while no request was being served
//! is not complete within `read_header_timeout` (a fixed deadline: bytes
//! trickling in do not move it). Which request is being served comes from
//! [`track`], the outermost middleware, through the connection's data.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::rt::net::TcpStream;
use actix_web::rt::time::{sleep_until, Sleep};
use actix_web::web::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Connections closed at once because their listener was full, by `api`.
pub const CONNECTIONS_REFUSED: &str = "pincluster_http_connections_refused_total";
/// Requests cut because their head or body did not arrive in time, by `api` and `phase`.
pub const READ_TIMEOUTS: &str = "pincluster_http_read_timeouts_total";

/// What a connection whose next request head is late gets before it is closed.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The open connections of one listen address, shared by every worker.
#[derive(Debug)]
pub(crate) struct Slots {
    open: AtomicUsize,
    max: usize,
}

impl Slots {
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots { open: AtomicUsize::new(0), max })
    }

    /// A slot for one more connection, or `None` when all are taken.
    pub(crate) fn take(self: &Arc<Slots>) -> Option<Slot> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

/// One connection's place; given back when the connection is dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the socket wrapper and the middleware know of one connection; both
/// run on the connection's worker thread.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Requests handed to the app whose response is not finished.
    in_flight: Cell<u32>,
    /// When the socket is closed unless a request head has arrived.
    deadline: Cell<Option<Instant>>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Connection {
    pub(crate) fn new(header_timeout: Duration, idle_timeout: Duration) -> Rc<Connection> {
        Rc::new(Connection { in_flight: Cell::new(0), deadline: Cell::new(None), header_timeout, idle_timeout })
    }

    fn request_started(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.deadline.set(None);
    }

    /// A response is done: the next head must be complete by the end of the
    /// keep-alive time plus a head's time (actix closes an idle connection
    /// at the first; a partly received head is cut at the second).
    fn request_finished(&self) {
        let left = self.in_flight.get().saturating_sub(1);
        self.in_flight.set(left);
        if left == 0 {
            self.deadline.set(Some(Instant::now() + self.idle_timeout + self.header_timeout));
        }
    }

    /// Bytes arrived: while no request is served they begin a head, which
    /// must be complete within `header_timeout`.
    fn bytes_read(&self) {
        if self.in_flight.get() == 0 {
            let head = Instant::now() + self.header_timeout;
            let deadline = self.deadline.get().map_or(head, |d| d.min(head));
            self.deadline.set(Some(deadline));
        }
    }
}

/// A client socket with its listener slot and its head deadline.
pub(crate) struct Guarded {
    io: TcpStream,
    pub(crate) connection: Rc<Connection>,
    api: &'static str,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    _slot: Slot,
}

impl Guarded {
    pub(crate) fn new(io: TcpStream, slot: Slot, api: &'static str, connection: Rc<Connection>) -> Guarded {
        let now = Instant::now();
        Guarded { io, connection, api, timer: Box::pin(sleep_until(now.into())), timer_at: None, _slot: slot }
    }

    /// Whether the head deadline has passed; arms the timer for it otherwise.
    fn expired(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let Some(deadline) = self.connection.deadline.get() else {
            return false;
        };
        if self.timer_at != Some(deadline) {
            self.timer.as_mut().reset(deadline.into());
            self.timer_at = Some(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired(cx) {
            // Best effort: the client learns why, if it reads.
            let _ = this.io.try_write(REQUEST_TIMEOUT);
            metrics::counter!(READ_TIMEOUTS, "api" => this.api, "phase" => "head").increment(1);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request being served on its connection, until its response is done.
struct InFlight(Rc<Connection>);

impl InFlight {
    fn start(connection: Rc<Connection>) -> InFlight {
        connection.request_started();
        InFlight(connection)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that marks its request finished when it is dropped.
struct Tracked {
    body: BoxBody,
    _in_flight: InFlight,
}

impl MessageBody for Tracked {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// The outermost middleware: tells the connection a request is being served
/// until its response body is done.
pub(crate) async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(connection) = req.conn_data::<Rc<Connection>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let in_flight = InFlight::start(connection);
    let response = next.call(req).await?;
    Ok(response.map_into_boxed_body().map_body(|_, body| BoxBody::new(Tracked { body, _in_flight: in_flight })))
}
