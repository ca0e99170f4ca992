//! The IPFS Cluster compatible admin REST API: routes, wire types and the
//! `{"code","message"}` error body. Read [`routes`] first.

mod error;
mod wire;

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use pincluster_tracker::Tracker;

pub use error::render_error;

/// Facts about this peer that `/id` reports.
#[derive(Clone, Debug)]
pub struct RestOptions {
    /// The peer ID (`12D3KooW…`).
    pub peer_id: String,
    pub peername: String,
    /// The peer's addresses, each ending in `/p2p/<peer id>`.
    pub addresses: Vec<String>,
}

struct Context {
    #[allow(dead_code)]
    tracker: Tracker,
    options: RestOptions,
}

/// Registers the REST routes with their app data.
pub fn routes(tracker: Tracker, options: RestOptions) -> Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync> {
    let context = web::Data::new(Context { tracker, options });
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(context.clone())
            .route("/id", web::get().to(id))
            .route("/version", web::get().to(version));
    })
}

async fn id(ctx: web::Data<Context>) -> HttpResponse {
    HttpResponse::Ok().json(wire::Id::of_this_peer(&ctx.options))
}

async fn version() -> HttpResponse {
    HttpResponse::Ok().json(wire::Version::current())
}
