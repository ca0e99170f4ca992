//! What a request may cost before a handler sees it: the head's size (431),
//! encoded bodies (415), the client address's request rate (429), and the
//! time its body may take to arrive (408). Read [`limits_and_headers`] first.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::rt::time::{sleep_until, Sleep};
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, HttpResponse};
use futures_util::Stream;

use crate::conn::READ_TIMEOUTS;
use crate::ratelimit::{address_key, retry_after_secs};
use crate::server::Context;

/// Requests refused with 429, by `api` and `key` (`address`, `user`, `auth_failures`).
pub const RATE_LIMITED: &str = "pincluster_http_rate_limited_total";

/// How long a body may take: `timeout` from its head, plus one second per
/// `min_rate` bytes received (none when `min_rate` is 0).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyTimeout {
    pub(crate) timeout: Duration,
    pub(crate) min_rate: u64,
}

impl BodyTimeout {
    fn deadline(&self, started: Instant, received: u64) -> Instant {
        let earned = match self.min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(received as f64 / rate as f64),
        };
        started + self.timeout + earned
    }
}

/// The 429 answer in the API's shape, with `Retry-After`, counted by `key`.
pub(crate) fn too_many(context: &Context, key: &'static str, wait: Duration) -> HttpResponse {
    metrics::counter!(RATE_LIMITED, "api" => context.name, "key" => key).increment(1);
    let secs = retry_after_secs(wait);
    let message = format!("too many requests: retry in {secs} s");
    let mut response = (context.render_error)(StatusCode::TOO_MANY_REQUESTS, &message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Whether the request's body is encoded (`Content-Encoding` other than `identity`).
fn encoded(req: &ServiceRequest) -> Option<String> {
    req.headers()
        .get_all(header::CONTENT_ENCODING)
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        .map(str::to_string)
}

/// Whether the request announces a body.
fn has_body(req: &ServiceRequest) -> bool {
    let length = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    req.headers().contains_key(header::TRANSFER_ENCODING) || length.is_some_and(|l| l.trim() != "0")
}

/// Refuses request heads over `max_header_bytes` (431), encoded bodies (415)
/// and clients over their address's rate (429), bounds the time the body may
/// take (408), and adds the configured headers to every response.
pub(crate) async fn limits_and_headers(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(context) = req.app_data::<web::Data<Context>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let head_bytes = req.method().as_str().len()
        + req.uri().to_string().len()
        + req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>();
    let refused = if head_bytes > context.max_header_bytes {
        let message = format!("request headers are larger than {} bytes", context.max_header_bytes);
        Some((context.render_error)(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &message))
    } else if let Some(wait) =
        req.peer_addr().and_then(|peer| context.by_address.check(&address_key(peer.ip()), true).err())
    {
        Some(too_many(&context, "address", wait))
    } else if let Some(coding) = encoded(&req) {
        let message =
            format!("request bodies with Content-Encoding {coding:?} are not accepted: send them as they are");
        Some((context.render_error)(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message))
    } else {
        None
    };
    let mut response = match refused {
        Some(response) => req.into_response(response),
        None if has_body(&req) => {
            let fired = Rc::new(Cell::new(false));
            let body = BodyDeadline::new(req.take_payload(), context.body_timeout, context.name, fired.clone());
            req.set_payload(Payload::from(Box::pin(body) as actix_http::BoxedPayloadStream));
            let result = next.call(req).await.map(ServiceResponse::map_into_boxed_body);
            if fired.get() {
                let message = "the request body did not arrive in time";
                let mut late = (context.render_error)(StatusCode::REQUEST_TIMEOUT, message);
                late.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
                match result {
                    Ok(response) => response.into_response(late),
                    Err(error) => return Err(actix_web::error::InternalError::from_response(error, late).into()),
                }
            } else {
                result?
            }
        }
        None => next.call(req).await?.map_into_boxed_body(),
    };
    for (name, value) in &context.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    Ok(response)
}

/// A request body that ends with a timeout error past its [`BodyTimeout`],
/// however slowly its bytes keep coming.
struct BodyDeadline {
    inner: Payload,
    limit: BodyTimeout,
    started: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    api: &'static str,
    /// Set once the deadline has passed, for the middleware's answer.
    fired: Rc<Cell<bool>>,
}

impl BodyDeadline {
    fn new(inner: Payload, limit: BodyTimeout, api: &'static str, fired: Rc<Cell<bool>>) -> BodyDeadline {
        let started = Instant::now();
        let timer_at = limit.deadline(started, 0);
        BodyDeadline {
            inner,
            limit,
            started,
            received: 0,
            timer: Box::pin(sleep_until(timer_at.into())),
            timer_at,
            api,
            fired,
        }
    }
}

impl Stream for BodyDeadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.fired.get() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.received += bytes.len() as u64;
                return Poll::Ready(Some(Ok(bytes)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        let deadline = this.limit.deadline(this.started, this.received);
        if deadline != this.timer_at {
            this.timer.as_mut().reset(deadline.into());
            this.timer_at = deadline;
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            this.fired.set(true);
            metrics::counter!(READ_TIMEOUTS, "api" => this.api, "phase" => "body").increment(1);
            let error = io::Error::new(io::ErrorKind::TimedOut, "the request body did not arrive in time");
            return Poll::Ready(Some(Err(PayloadError::Io(error))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_earn_time_at_the_minimum_rate() {
        let limit = BodyTimeout { timeout: Duration::from_secs(10), min_rate: 1000 };
        let start = Instant::now();
        assert_eq!(limit.deadline(start, 0), start + Duration::from_secs(10));
        assert_eq!(limit.deadline(start, 5000), start + Duration::from_secs(15));
        let fixed = BodyTimeout { timeout: Duration::from_secs(10), min_rate: 0 };
        assert_eq!(fixed.deadline(start, 1 << 30), start + Duration::from_secs(10));
    }
}
