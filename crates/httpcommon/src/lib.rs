//! What both HTTP APIs share, written once: listeners from multiaddrs, limits,
//! CORS, configured headers, request IDs and HTTP metrics, and the actix
//! adapter of the auth crate. Read
//! [`ApiServer`] first.
//!
//! Each API crate brings its routes and its own error body ([`RenderError`]);
//! everything that is the same for both lives here.

mod auth;
mod conn;
mod limits;
mod observe;
mod ratelimit;
mod server;

pub use auth::Authenticated;
pub use observe::{describe_metrics, RequestId, RouteLabel, REQUEST_ID};
pub use server::{
    if_none_match, metrics_text, socket_address, ApiServer, BoundServer, HttpError, MetricsEndpoint, RenderError,
};
