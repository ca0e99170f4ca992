//! Builds and binds one HTTP API: listeners from multiaddrs, timeouts, header
//! and body limits, CORS, configured headers, request IDs and metrics, auth,
//! `/token`, `/health` and, where asked, `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_http::error::DispatchError;
use actix_http::{Extensions, HttpService, KeepAlive, Protocol as HttpProtocol};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt};
use actix_web::body::BoxBody;
use actix_web::dev::{AppConfig, Server, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, NormalizePath};
use actix_web::rt::net::TcpStream;
use actix_web::{web, App, HttpRequest, HttpResponse};
use multiaddr::{Multiaddr, Protocol};
use pincluster_auth::Authenticator;
use pincluster_config::ApiConfig;

use crate::auth::{self, Authenticated};
use crate::conn::{Connection, Guarded, Slots, CONNECTIONS_REFUSED};
use crate::limits::{limits_and_headers, BodyTimeout};
use crate::ratelimit::Limiter;

/// Renders an error in the API's own body shape.
pub type RenderError = fn(StatusCode, &str) -> HttpResponse;

/// Why an API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} is not an /ip4|/ip6/…/tcp/PORT address")]
    BadAddress(Multiaddr),
    #[error("cannot listen on {address}: {reason}")]
    Bind { address: SocketAddr, reason: String },
}

/// Everything one API needs to be served.
pub struct ApiServer {
    /// Short name for logs: `restapi`, `pinsvcapi`.
    pub name: &'static str,
    pub config: ApiConfig,
    pub auth: Authenticator,
    pub render_error: RenderError,
    /// Registers the API's own routes and app data.
    pub routes: Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>,
    /// Serve `GET /metrics` from this renderer.
    pub metrics: Option<MetricsEndpoint>,
}

/// `GET /metrics` on an API's listener.
#[derive(Clone)]
pub struct MetricsEndpoint {
    /// The Prometheus text exposition of every metric.
    pub render: Arc<dyn Fn() -> String + Send + Sync>,
    /// Served without credentials.
    pub open: bool,
}

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A started server and the addresses it really listens on (port 0 resolved).
pub struct BoundServer {
    pub server: Server,
    pub addresses: Vec<SocketAddr>,
}

/// Shared by every worker of one API.
pub(crate) struct Context {
    pub(crate) name: &'static str,
    pub(crate) auth: Authenticator,
    /// `/metrics` is served without credentials.
    pub(crate) open_metrics: bool,
    pub(crate) render_error: RenderError,
    pub(crate) max_header_bytes: usize,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body_timeout: BodyTimeout,
    pub(crate) by_user: Limiter<Arc<str>>,
    pub(crate) by_address: Limiter<IpAddr>,
    pub(crate) auth_failures: Limiter<IpAddr>,
}

impl ApiServer {
    /// Binds every listen address and returns the running server; it serves
    /// once the actix system polls it.
    pub fn bind(self) -> Result<BoundServer, HttpError> {
        let config = self.config;
        let context = web::Data::new(Context {
            name: self.name,
            auth: self.auth,
            open_metrics: self.metrics.as_ref().is_some_and(|m| m.open),
            render_error: self.render_error,
            max_header_bytes: config.max_header_bytes,
            body_timeout: BodyTimeout {
                timeout: config.read_body_timeout.0,
                min_rate: config.min_body_bytes_per_second,
            },
            by_user: Limiter::new(config.rate_limit_per_user),
            by_address: Limiter::new(config.rate_limit_per_address),
            auth_failures: Limiter::new(config.rate_limit_auth_failures),
            headers: config
                .headers
                .iter()
                .flat_map(|(name, values)| values.iter().map(move |v| (name, v)))
                .filter_map(|(name, value)| {
                    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                    Some((name, HeaderValue::from_str(value).ok()?))
                })
                .collect(),
        });
        let routes = self.routes;
        let metrics = self.metrics.map(|m| m.render);
        let render = self.render_error;
        let max_body = config.max_body_bytes;
        let cors_config = config.clone();
        let app = move || {
            App::new()
                .app_data(context.clone())
                .app_data(json_config(max_body, render))
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(web::QueryConfig::default().error_handler(move |e, _| query_error(e, render)))
                .app_data(web::PathConfig::default().error_handler(move |e, _| path_error(e, render)))
                .route("/health", web::get().to(HttpResponse::NoContent))
                .route("/token", web::post().to(token))
                .configure(|cfg| {
                    if let Some(render) = metrics.clone() {
                        cfg.route("/metrics", web::get().to(move || metrics_text(render.clone())));
                    }
                    routes(cfg)
                })
                .default_service(web::to(move || async move { render(StatusCode::NOT_FOUND, "not found") }))
                .wrap(from_fn(auth::middleware))
                .wrap(cors(&cors_config))
                .wrap(from_fn(limits_and_headers))
                .wrap(from_fn(crate::observe::middleware))
                .wrap(NormalizePath::trim())
                .wrap(from_fn(crate::conn::track))
        };
        let timeouts = Timeouts {
            header: config.read_header_timeout.0,
            idle: config.idle_timeout.non_zero().unwrap_or(Duration::from_secs(120)),
        };
        let mut server = actix_server::Server::build()
            .shutdown_timeout(5)
            .disable_signals()
            .workers(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2));
        // Tells kept-alive connections to close when the server stops, as HttpServer does.
        let shutdown = server.graceful_shutdown_signal();
        let mut addresses = Vec::new();
        for address in config.http_listen_multiaddress.to_vec() {
            let socket = socket_address(&address).ok_or(HttpError::BadAddress(address))?;
            let bind_error = |e: std::io::Error| HttpError::Bind { address: socket, reason: e.to_string() };
            let listener = listen(socket).map_err(bind_error)?;
            let local = listener.local_addr().map_err(bind_error)?;
            let slots = Slots::new(config.max_connections);
            let (name, app, shutdown) = (self.name, app.clone(), shutdown.clone());
            let listener_config = Listener { api: name, local, timeouts, slots, shutdown };
            server = server
                .listen(format!("{name}-{local}"), listener, move || serve(listener_config.clone(), app.clone()))
                .map_err(bind_error)?;
            addresses.push(local);
        }
        tracing::info!(api = self.name, ?addresses, "listening");
        Ok(BoundServer { server: server.run(), addresses })
    }
}

/// The timeouts of one listener's connections.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// What each worker's service of one listener shares.
#[derive(Clone)]
struct Listener {
    api: &'static str,
    local: SocketAddr,
    timeouts: Timeouts,
    slots: Arc<Slots>,
    shutdown: actix_server::GracefulShutdownSignal,
}

/// A listening socket with actix's backlog (the standard library's is 128).
fn listen(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Connections the kernel queues before they are accepted.
const BACKLOG: i32 = 2048;

/// One worker's HTTP/1.1 service for one listener: a connection beyond the
/// listener's limit is closed at once; the others are wrapped in [`Guarded`].
fn serve<F, A>(
    listener: Listener,
    app: F,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = DispatchError, InitError = ()>
where
    F: Fn() -> App<A>,
    A: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<BoxBody>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    let Listener { api, local, timeouts, slots, shutdown } = listener;
    let accept = fn_service(move |io: TcpStream| {
        let slot = slots.take();
        async move {
            let Some(slot) = slot else {
                metrics::counter!(CONNECTIONS_REFUSED, "api" => api).increment(1);
                return Err(DispatchError::Io(std::io::Error::other("the listener has max_connections open")));
            };
            let _ = io.set_nodelay(true);
            let peer = io.peer_addr().ok();
            let connection = Connection::new(timeouts.header, timeouts.idle);
            Ok((Guarded::new(io, slot, api, connection), HttpProtocol::Http1, peer))
        }
    });
    let http = HttpService::<Guarded, _, BoxBody>::build()
        .keep_alive(KeepAlive::Timeout(timeouts.idle))
        .client_request_timeout(timeouts.header)
        .client_disconnect_timeout(Duration::from_secs(1))
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .local_addr(local)
        .on_connect_ext(|io: &Guarded, data: &mut Extensions| {
            data.insert(io.connection.clone());
        })
        .finish(map_config(app().into_factory().map_err(|error| error.error_response()), |_| AppConfig::default()));
    accept.and_then(http)
}

/// `/ip4/HOST/tcp/PORT` or `/ip6/HOST/tcp/PORT` as a socket address.
pub fn socket_address(address: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = address.iter();
    let ip: std::net::IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match (parts.next()?, parts.next()) {
        (Protocol::Tcp(port), None) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// Whether the request's `If-None-Match` names `etag` (weak comparison, as
/// RFC 9110 asks for this header) or is `*`: the answer may be a 304.
pub fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(actix_web::http::header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `GET /metrics`: rendered off the worker thread, as it walks every series.
pub async fn metrics_text(render: Arc<dyn Fn() -> String + Send + Sync>) -> HttpResponse {
    match web::block(move || render()).await {
        Ok(text) => HttpResponse::Ok().content_type(PROMETHEUS_TEXT).body(text),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// `POST /token`: a JWT for the authenticated user.
async fn token(user: Authenticated, context: web::Data<Context>) -> HttpResponse {
    match context.auth.mint_token(&user.0) {
        Ok(token) => HttpResponse::Ok().json(serde_json::json!({ "token": token })),
        Err(error) => auth::unauthorized(&context, &error),
    }
}

fn json_config(limit: usize, render: RenderError) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(move |error, _req: &HttpRequest| {
        let response = match &error {
            JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                render(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body is larger than {limit} bytes"))
            }
            JsonPayloadError::ContentType => {
                render(StatusCode::BAD_REQUEST, "request body must have Content-Type: application/json")
            }
            JsonPayloadError::Deserialize(e) => render(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")),
            other => render(StatusCode::BAD_REQUEST, &format!("invalid request body: {other}")),
        };
        actix_web::error::InternalError::from_response(error, response).into()
    })
}

fn query_error(error: QueryPayloadError, render: RenderError) -> actix_web::Error {
    let response = render(StatusCode::BAD_REQUEST, &format!("invalid query: {error}"));
    actix_web::error::InternalError::from_response(error, response).into()
}

fn path_error(error: PathError, render: RenderError) -> actix_web::Error {
    let response = render(StatusCode::BAD_REQUEST, &format!("invalid path: {error}"));
    actix_web::error::InternalError::from_response(error, response).into()
}

/// CORS from config. Unlike Cluster's defaults, ours let a browser send
/// `Authorization` and use every method out of the box.
fn cors(config: &ApiConfig) -> Cors {
    let mut cors = Cors::default();
    if config.cors_allowed_origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &config.cors_allowed_origins {
            cors = cors.allowed_origin(origin);
        }
    }
    let methods: Vec<actix_web::http::Method> =
        config.cors_allowed_methods.iter().filter_map(|m| m.parse().ok()).collect();
    let headers: Vec<HeaderName> =
        config.cors_allowed_headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect();
    let exposed: Vec<HeaderName> =
        config.cors_exposed_headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect();
    cors = cors.allowed_methods(methods).allowed_headers(headers);
    if !exposed.is_empty() {
        cors = cors.expose_headers(exposed);
    }
    if config.cors_allow_credentials && !config.cors_allowed_origins.iter().any(|o| o == "*") {
        cors = cors.supports_credentials();
    }
    if let Some(age) = config.cors_max_age.non_zero() {
        cors = cors.max_age(usize::try_from(age.as_secs()).ok());
    }
    cors
}
