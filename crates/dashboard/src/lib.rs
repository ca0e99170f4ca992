//! The operator's and user's web dashboard, served by the peer itself at
//! `/ui` on the Pinning Service API's listener: static assets built into the
//! binary (`assets.rs`) and the few JSON routes only the dashboard uses
//! (`overview.rs`). Everything else it shows comes from the PSA itself.

mod assets;

use std::sync::Arc;

use actix_web::web;

/// Registers `/ui` and everything under it.
pub fn routes() -> Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync> {
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        assets::configure(cfg);
    })
}
