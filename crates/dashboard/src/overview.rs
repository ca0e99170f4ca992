//! The dashboard's own data: who is signed in (`/ui/api/session`) and, for
//! admins, the peers, queue, transfer rates and pins over time
//! (`/ui/api/overview`). The binary samples these at its reporting interval
//! into a [`Board`]; the routes only read it.

use std::collections::VecDeque;
use std::sync::Mutex;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use pincluster_httpcommon::Authenticated;
use serde::Serialize;

use crate::DashboardOptions;

/// Samples of pin counts kept for the chart: two hours at the default 10 s.
pub const HISTORY_SAMPLES: usize = 720;

/// What the binary last sampled, and the pin counts over time.
#[derive(Default)]
pub struct Board {
    inner: Mutex<BoardState>,
}

#[derive(Default)]
struct BoardState {
    overview: Option<Overview>,
    history: VecDeque<Sample>,
    interval_seconds: u64,
}

/// One sampling of the peer and the cluster.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overview {
    pub peer: PeerRow,
    pub peers: Vec<PeerRow>,
    pub pins: PinCounts,
    pub queue: QueueRow,
    pub transfer: TransferRow,
}

/// A cluster member as last reported.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerRow {
    pub id: String,
    pub peername: String,
    /// Bytes free where it stores blocks.
    pub freespace: u64,
    /// Bytes of blocks it stores.
    pub reposize: u64,
    /// Pins waiting or being fetched there.
    pub pin_queue: u64,
    /// Its metrics are fresh (within `cluster.metric_ttl`).
    pub up: bool,
    pub leader: bool,
}

/// This peer's pins by its own status.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PinCounts {
    pub queued: u64,
    pub pinning: u64,
    pub pinned: u64,
    pub failed: u64,
}

/// The pin queue and workers.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct QueueRow {
    pub queued: u64,
    pub pinning: u64,
    pub workers_busy: u64,
    pub workers: u64,
}

/// Bitswap rates over the last interval, and IPFS connections.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TransferRow {
    pub received_bytes_per_second: f64,
    pub sent_bytes_per_second: f64,
    pub connected_peers: u64,
}

/// Pin counts at one time, for the chart.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// RFC 3339.
    pub time: String,
    #[serde(flatten)]
    pub pins: PinCounts,
}

impl Board {
    /// Keeps `overview` as the latest and adds its pin counts to the history.
    pub fn record(&self, overview: Overview, time: String, interval_seconds: u64) {
        let mut state = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.history.len() == HISTORY_SAMPLES {
            state.history.pop_front();
        }
        state.history.push_back(Sample { time, pins: overview.pins });
        state.interval_seconds = interval_seconds;
        state.overview = Some(overview);
    }

    fn body(&self) -> Option<serde_json::Value> {
        let state = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let overview = state.overview.as_ref()?;
        let mut body = serde_json::to_value(overview).ok()?;
        let history = serde_json::json!({ "interval_seconds": state.interval_seconds, "samples": state.history });
        body.as_object_mut()?.insert("history".into(), history);
        Some(body)
    }
}

/// Whether the admin API would accept this request's credentials for the same user.
fn is_admin(options: &DashboardOptions, req: &HttpRequest, user: &Authenticated) -> bool {
    let Some(auth) = &options.admin_auth else { return false };
    let headers = req.headers().get_all(header::AUTHORIZATION).filter_map(|v| v.to_str().ok());
    auth.authenticate(headers).is_ok_and(|admin| admin.name() == user.0.name())
}

/// `GET /ui/api/session`: the signed-in user and whether they are an admin.
pub(crate) async fn session(
    user: Authenticated,
    req: HttpRequest,
    options: web::Data<DashboardOptions>,
) -> HttpResponse {
    let admin = is_admin(&options, &req, &user);
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "user": user.0.name(), "admin": admin }))
}

/// `GET /ui/api/overview`: the latest sampling, for admins only.
pub(crate) async fn overview(
    user: Authenticated,
    req: HttpRequest,
    options: web::Data<DashboardOptions>,
) -> HttpResponse {
    if !is_admin(&options, &req, &user) {
        return (options.render_error)(StatusCode::FORBIDDEN, "the overview is for admins (users of the REST API)");
    }
    match options.board.body() {
        Some(body) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body),
        None => (options.render_error)(StatusCode::SERVICE_UNAVAILABLE, "no sample yet; try again in a few seconds"),
    }
}
