//! The IPFS Cluster compatible admin REST API: routes, wire types and the
//! `{"code","message"}` error body. Read [`routes`] first, then `pins.rs`.
//!
//! This is the admin view: it sees every user's pins. A pin made here belongs
//! to the authenticated REST user (so that user sees it through the Pinning
//! Service API too); an unpin here removes the CID for every holder, as an
//! unpin removes it from a Cluster. Pins whose `expire_at` passes are removed
//! by a background task started here (see `expiry.rs`).

mod add;
mod cluster;
mod error;
mod expiry;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod members;
mod options;
mod pins;
mod stream;
mod wire;

use std::sync::Arc;

use actix_web::web;
use pincluster_consensus::Consensus;
use pincluster_tracker::Tracker;

pub use error::render_error;

/// Facts about this peer that the REST API reports.
#[derive(Clone, Debug)]
pub struct RestOptions {
    /// The peer ID (`12D3KooW…`).
    pub peer_id: String,
    /// The peer's human name, from `cluster.peername`.
    pub peername: String,
    /// The peer's addresses, each ending in `/p2p/<peer id>`.
    pub addresses: Vec<String>,
    /// The data folder; the `freespace` metric is the space left on its file system.
    pub data_dir: std::path::PathBuf,
    /// The largest `/add` upload, in bytes.
    pub max_upload_bytes: u64,
    /// The cluster this peer belongs to.
    pub cluster: Consensus,
    /// A peer whose last metrics are older than this is down.
    pub metric_ttl: std::time::Duration,
    /// Replication factors (min, max) of a pin that gives none.
    pub default_replication: (i32, i32),
}

struct Context {
    tracker: Tracker,
    options: RestOptions,
    expiry: expiry::Expiry,
}

impl Context {
    /// The membership now, with each peer's health.
    fn members(&self) -> members::Members {
        members::Members::of(&self.options.cluster, self.options.metric_ttl)
    }
}

/// Registers the REST routes with their app data, and starts the task that
/// unpins expired pins on the current async runtime.
pub fn routes(tracker: Tracker, options: RestOptions) -> Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync> {
    let expiry = expiry::Expiry::start(tracker.clone());
    let context = web::Data::new(Context { tracker, options, expiry });
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(context.clone())
            .route("/id", web::get().to(cluster::id))
            .route("/version", web::get().to(cluster::version))
            .service(
                web::resource("/peers").route(web::get().to(cluster::peers)).route(web::post().to(cluster::add_peer)),
            )
            .service(web::resource("/peers/{peer}").route(web::delete().to(cluster::remove_peer)))
            .service(web::resource("/allocations").route(web::get().to(pins::allocations)))
            .service(web::resource("/allocations/{cid}").route(web::get().to(pins::allocation)))
            .service(web::resource("/pins").route(web::get().to(pins::status_all)))
            .service(web::resource("/pins/recover").route(web::post().to(pins::recover_all)))
            .service(web::resource("/pins/{cid}/recover").route(web::post().to(pins::recover)))
            .service(
                web::resource("/pins/{kind}/{path:.*}")
                    .route(web::post().to(pins::pin_path))
                    .route(web::delete().to(pins::unpin_path)),
            )
            .service(
                web::resource("/pins/{cid}")
                    .route(web::get().to(pins::status))
                    .route(web::post().to(pins::pin))
                    .route(web::delete().to(pins::unpin)),
            )
            .service(web::resource("/add").route(web::post().to(add::add)))
            .service(web::resource("/ipfs/gc").route(web::post().to(cluster::repo_gc)))
            .service(web::resource("/health/graph").route(web::get().to(cluster::graph)))
            .service(web::resource("/health/alerts").route(web::get().to(cluster::alerts)))
            .service(web::resource("/health/bandwidth").route(web::get().to(cluster::bandwidth)))
            .service(web::resource("/monitor/metrics").route(web::get().to(cluster::metric_names)))
            .service(web::resource("/monitor/metrics/{name}").route(web::get().to(cluster::metrics)));
    })
}
