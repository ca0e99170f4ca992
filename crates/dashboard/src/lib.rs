//! The operator's and user's web dashboard, served by the peer itself at
//! `/ui` on the Pinning Service API's listener: static assets built into the
//! binary (`assets.rs`) and the two JSON routes only the dashboard uses
//! (`overview.rs`). Everything else it shows comes from the PSA itself, with
//! the signed-in user's token, so it shows that user's pins and no others.

mod assets;
mod overview;

use std::sync::Arc;

use actix_web::web;
use pincluster_auth::Authenticator;
use pincluster_httpcommon::RenderError;

pub use overview::{Board, Overview, PeerRow, PinCounts, QueueRow, Sample, TransferRow, HISTORY_SAMPLES};

/// What the dashboard's routes need.
#[derive(Clone)]
pub struct DashboardOptions {
    /// The latest overview and the history of pin counts, kept by the binary.
    pub board: Arc<Board>,
    /// The admin API's authenticator: a user whose token it accepts too is
    /// an admin and sees the overview. `None`: no admin API, no admins.
    pub admin_auth: Option<Authenticator>,
    /// The listener's error body.
    pub render_error: RenderError,
}

/// Registers `/ui` and everything under it.
pub fn routes(options: DashboardOptions) -> Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync> {
    let options = web::Data::new(options);
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(options.clone())
            .route("/ui/api/session", web::get().to(overview::session))
            .route("/ui/api/overview", web::get().to(overview::overview));
        assets::configure(cfg);
    })
}
