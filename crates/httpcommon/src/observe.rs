//! What an operator sees of each request: a request ID (the client's
//! `X-Request-Id` or a new one) echoed in the response and carried by the
//! span of every log line the request causes, and the request counted and
//! timed by API, route template and status.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use rand::Rng;
use tracing::Instrument;

use crate::server::Context;

/// Requests answered, by `api`, `method`, `route` (the template) and `status`.
pub const HTTP_REQUESTS: &str = "pincluster_http_requests_total";
/// Time from the request's head to its response's head, by `api`, `method` and `route`.
pub const HTTP_DURATION: &str = "pincluster_http_request_duration_seconds";
/// Refused authentications, by `api` and `reason` (never the credential).
pub const AUTH_FAILURES: &str = "pincluster_auth_failures_total";

/// The header that carries a request's ID both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen request ID kept; longer or odd ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Registers the descriptions of the metrics this crate records.
pub fn describe_metrics() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by API, method, route template and status.");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request (to the response head), by API, method and route template."
    );
    metrics::describe_counter!(AUTH_FAILURES, "Refused authentications, by API and reason.");
    metrics::describe_counter!(
        crate::limits::RATE_LIMITED,
        "Requests refused with 429, by API and the limit's key (address, user, auth_failures)."
    );
    metrics::describe_counter!(
        crate::conn::CONNECTIONS_REFUSED,
        "Connections closed at once because their listener had max_connections open, by API."
    );
    metrics::describe_counter!(
        crate::conn::READ_TIMEOUTS,
        "Requests cut because their head or body did not arrive in time, by API and phase."
    );
}

/// The route template of a request served without a route pattern (a scope's default
/// service), set by its handler in the request's extensions for the metrics' `route` label.
#[derive(Clone, Copy, Debug)]
pub struct RouteLabel(pub &'static str);

/// The ID of the request being handled, for handlers that want to show it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A client's ID when it is short and plain (so it is safe in logs), else a new one.
fn request_id(req: &ServiceRequest) -> String {
    let given = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        _ => format!("{:032x}", rand::thread_rng().gen::<u128>()),
    }
}

pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let api = req.app_data::<web::Data<Context>>().map_or("unknown", |c| c.name);
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let span = tracing::info_span!("request", id = %id, api, method = %method, path = %req.path());
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let (mut response, status) = match result {
        Ok(response) => {
            let status = response.status();
            (Ok(response.map_into_boxed_body()), status)
        }
        Err(error) => {
            let status = error.as_response_error().status_code();
            (Err(error), status)
        }
    };
    let route = match &response {
        Ok(response) => {
            let request = response.request();
            let label = || request.extensions().get::<RouteLabel>().map(|label| label.0.to_string());
            request.match_pattern().or_else(label).unwrap_or_else(|| "unmatched".into())
        }
        Err(_) => "unmatched".into(),
    };
    let labels = [("api", api.to_string()), ("method", method.to_string()), ("route", route)];
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
    let status_label = ("status", status.as_u16().to_string());
    metrics::counter!(HTTP_REQUESTS, &[labels[0].clone(), labels[1].clone(), labels[2].clone(), status_label])
        .increment(1);
    // Changes are logged (an audit trail, each line with its request ID);
    // reads only at debug, as scrapers and dashboards poll.
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "answered");
        } else if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
            tracing::debug!(status = status.as_u16(), ms, "answered");
        } else {
            tracing::info!(status = status.as_u16(), ms, "answered");
        }
    });
    if let (Ok(response), Ok(value)) = (&mut response, HeaderValue::from_str(&id)) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
