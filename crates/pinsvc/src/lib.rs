//! The IPFS Pinning Service API, to the letter of the official OpenAPI document:
//! routes, wire types and the spec's `Failure` body. Read [`routes`] first.
//!
//! A pin's request ID is its CID, scoped to the authenticated user: each user
//! has their own pin object per CID. Pins live in the state crate; every change
//! goes through the tracker so the content is fetched or released.

mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod handlers;
mod query;
mod wire;

use std::sync::Arc;

use actix_web::web;
use pincluster_tracker::Tracker;

pub use error::render_error;

/// What the PSA needs besides the tracker.
#[derive(Clone, Debug)]
pub struct PinsvcOptions {
    /// Our receiving peers, each ending in `/p2p/<peer id>`: 1 to 20 of them.
    pub delegates: Vec<String>,
    /// The replication factors (min, max) of every pin: the PSA has no way to
    /// give its own (`cluster.replication_factor_*`).
    pub replication: (i32, i32),
}

/// Registers `/pins` and `/pins/{requestid}` with their app data.
pub fn routes(tracker: Tracker, options: PinsvcOptions) -> Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync> {
    let context = web::Data::new(handlers::Context::new(tracker, options));
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(context.clone())
            .service(web::resource("/pins").route(web::get().to(handlers::list)).route(web::post().to(handlers::add)))
            .service(
                web::resource("/pins/{requestid}")
                    .route(web::get().to(handlers::get))
                    .route(web::post().to(handlers::replace))
                    .route(web::delete().to(handlers::delete)),
            );
    })
}
