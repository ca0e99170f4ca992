//! An IPFS Trustless Gateway for what this peer has pinned: `GET`/`HEAD /ipfs/{cid}[/path]`
//! answered with `application/vnd.ipld.raw` (one block) or `application/vnd.ipld.car` (a CARv1
//! stream of the DAG, depth-first), which clients verify block by block. Read [`server`] first,
//! then `handler.rs`.
//!
//! It serves only CIDs this peer holds under a pin, from the local block store; it never asks
//! the network for anything, so it cannot be used to make the peer download arbitrary content.
//! Responses stream through a bounded channel fed by a walk that holds one block at a time, so
//! memory does not grow with the DAG and a slow reader slows the walk down.

mod car;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod handler;
mod limits;
pub mod metrics;
mod range;
mod request;
mod walk;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use pincluster_auth::{Authenticator, TokenOptions};
use pincluster_config::{ApiConfig, GatewayConfig};
use pincluster_httpcommon::ApiServer;
use pincluster_tracker::Tracker;

pub use error::GatewayError;

/// The gateway's HTTP server on the shared HTTP layer (listeners, header limits and timeouts,
/// configured headers, request IDs and request metrics under `api="gateway"`), without
/// authentication: what it serves is verifiable public content. Bind it to start it.
pub fn server(config: &GatewayConfig, tracker: Tracker) -> ApiServer {
    let api = ApiConfig {
        http_listen_multiaddress: config.http_listen_multiaddress.clone(),
        read_header_timeout: config.read_header_timeout,
        idle_timeout: config.idle_timeout,
        max_header_bytes: config.max_header_bytes,
        max_connections: config.max_connections,
        rate_limit_per_address: config.rate_limit_per_address,
        basic_auth_credentials: None,
        headers: config.headers.clone(),
        cors_allowed_origins: vec!["*".into()],
        cors_allowed_methods: vec!["GET".into(), "HEAD".into()],
        cors_allowed_headers: ["Accept", "Range", "If-None-Match"].map(String::from).to_vec(),
        cors_exposed_headers: [
            "Content-Type",
            "Content-Length",
            "Content-Range",
            "Etag",
            "X-Ipfs-Path",
            "X-Ipfs-Roots",
            "X-Request-Id",
        ]
        .map(String::from)
        .to_vec(),
        cors_allow_credentials: false,
        ..ApiConfig::default()
    };
    let state = handler::Gateway::new(tracker, config);
    ApiServer {
        name: "gateway",
        config: api,
        auth: Authenticator::new(None, TokenOptions { ttl: None }),
        render_error,
        routes: Arc::new(move |cfg| handler::routes(cfg, state.clone())),
        metrics: None,
    }
}

/// The gateway's error body: a short line of text.
pub fn render_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(format!("{message}\n"))
}
