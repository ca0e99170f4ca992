//! What an operator sees of the running peer: logs (text or JSON, with an
//! optional OTLP trace export), the Prometheus metrics (the exporter behind
//! the `metrics` facade the libraries record through, and the gauges sampled
//! here at `observations.reporting_interval`), and the dashboard's board.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use pincluster_config::{LogFormat, ObservationsConfig};
use pincluster_consensus::Consensus;
use pincluster_dashboard::{Board, Overview, PeerRow, PinCounts, QueueRow, TransferRow};
use pincluster_model::{PinStatus, StatusSet, Timestamp};
use pincluster_tracker::Tracker;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// The log filter without `RUST_LOG`: our own `info`, and the swarm's per-connection chatter
/// (each identify exchange, each failed dial of a public peer) left out, since a node on the
/// public network makes thousands of connections.
const DEFAULT_LOG: &str = "info,connexa=warn,connexa::task::swarm=off,quinn_udp=error";

/// Keeps the trace exporter alive; dropping it sends what is buffered.
pub(crate) struct Logging {
    traces: Option<SdkTracerProvider>,
}

impl Drop for Logging {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("pincluster-service: the last traces could not be exported: {error}");
            }
        }
    }
}

/// Installs the global log subscriber: `RUST_LOG` or [`DEFAULT_LOG`], as
/// text or JSON lines on stderr, and spans to an OTLP endpoint when one is
/// configured. Without `config` (commands other than the daemon): text only.
pub(crate) fn init_logging(config: Option<&ObservationsConfig>) -> anyhow::Result<Logging> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let json = config.is_some_and(|c| c.log_format == LogFormat::Json);
    let text_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    let traces = match config.filter(|c| !c.otlp_endpoint.trim().is_empty()) {
        Some(config) => Some(trace_provider(config)?),
        None => None,
    };
    let otel_layer = traces
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("pincluster-service")));
    tracing_subscriber::registry().with(filter).with(text_layer).with(json_layer).with(otel_layer).init();
    if let Some(config) = config.filter(|_| traces.is_some()) {
        tracing::info!(endpoint = %config.otlp_endpoint, ratio = config.sampling_ratio, "exporting traces over OTLP");
    }
    Ok(Logging { traces })
}

/// Spans batched to `observations.otlp_endpoint` (OTLP over HTTP, protobuf)
/// on the exporter's own thread.
fn trace_provider(config: &ObservationsConfig) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the OTLP HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(config.otlp_endpoint.trim())
        .build()
        .with_context(|| format!("observations.otlp_endpoint {}", config.otlp_endpoint))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio))))
        .with_resource(resource)
        .build())
}

/// Pins by this peer's status.
const PINS: &str = "pincluster_pins";
const QUEUE_LENGTH: &str = "pincluster_pin_queue_length";
const WORKERS_BUSY: &str = "pincluster_pin_workers_busy";
const WORKERS: &str = "pincluster_pin_workers";
const IPFS_PEERS: &str = "pincluster_ipfs_connected_peers";
const DHT_PEERS: &str = "pincluster_dht_routing_table_peers";
const BLOCKSTORE_BYTES: &str = "pincluster_blockstore_size_bytes";
const BLOCKSTORE_BLOCKS: &str = "pincluster_blockstore_blocks";
const FREE_BYTES: &str = "pincluster_data_free_bytes";
const RAFT_TERM: &str = "pincluster_raft_term";
const RAFT_LEADER: &str = "pincluster_raft_is_leader";
const RAFT_HAS_LEADER: &str = "pincluster_raft_has_leader";
const RAFT_LAST_LOG: &str = "pincluster_raft_last_log_index";
const RAFT_APPLIED: &str = "pincluster_raft_applied_index";
const RAFT_REPLICATION_LAG: &str = "pincluster_raft_replication_lag_entries";
const CLUSTER_PEERS: &str = "pincluster_cluster_peers";
const CLUSTER_PEER_UP: &str = "pincluster_cluster_peer_up";

/// Installs the Prometheus recorder behind the `metrics` facade, with every
/// metric described (promtool wants a HELP line each) and histograms with
/// buckets fit for what they measure.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    const SECONDS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    const COUNTS: [f64; 12] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Prefix("pincluster_pinset_batch_".into()), &COUNTS))
        .context("metric buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    pincluster_httpcommon::describe_metrics();
    pincluster_state::metrics::describe();
    pincluster_ipfs::metrics::describe();
    pincluster_tracker::metrics::describe();
    pincluster_gateway::metrics::describe();
    use metrics::{describe_gauge, Unit};
    describe_gauge!(PINS, "Pins by this peer's status (queued, pinning, pinned, failed).");
    describe_gauge!(QUEUE_LENGTH, "Pins waiting in the workers' in-memory queue.");
    describe_gauge!(WORKERS_BUSY, "Workers fetching a pin now.");
    describe_gauge!(WORKERS, "Workers in all (pin_tracker.concurrent_pins).");
    describe_gauge!(IPFS_PEERS, "Peers the embedded IPFS node is connected to.");
    describe_gauge!(DHT_PEERS, "Peers in the DHT routing tables, by table (wan, lan).");
    describe_gauge!(BLOCKSTORE_BYTES, Unit::Bytes, "Bytes of blocks in the block store.");
    describe_gauge!(BLOCKSTORE_BLOCKS, "Blocks in the block store.");
    describe_gauge!(FREE_BYTES, Unit::Bytes, "Bytes free on the file system of the data folder.");
    describe_gauge!(RAFT_TERM, "The current Raft term.");
    describe_gauge!(RAFT_LEADER, "1 when this peer is the Raft leader.");
    describe_gauge!(RAFT_HAS_LEADER, "1 when this peer knows a Raft leader.");
    describe_gauge!(RAFT_LAST_LOG, "Index of the last entry in this peer's Raft log.");
    describe_gauge!(RAFT_APPLIED, "Index of the last Raft entry applied to this peer's pinset.");
    describe_gauge!(RAFT_REPLICATION_LAG, "On the leader: entries each follower is behind the leader's log.");
    describe_gauge!(CLUSTER_PEERS, "Cluster members by health (up: fresh metrics; down).");
    describe_gauge!(CLUSTER_PEER_UP, "1 when a cluster member's metrics are fresh, by peer name.");
    Ok(handle)
}

/// What the sampler reads from.
pub(crate) struct Sampled {
    pub(crate) tracker: Tracker,
    pub(crate) consensus: Consensus,
    pub(crate) board: Arc<Board>,
    pub(crate) data_dir: PathBuf,
    pub(crate) interval: Duration,
    pub(crate) metric_ttl: Duration,
    pub(crate) handle: Option<PrometheusHandle>,
}

/// The block store's figures take a walk of its folder: read at most this often.
const REPO_STAT_EVERY: Duration = Duration::from_secs(60);

/// What one sampling carries over to the next.
#[derive(Default)]
struct Previous {
    traffic: Option<(Instant, pincluster_tracker::Traffic)>,
    repo: Option<Instant>,
}

/// Samples the gauges and the dashboard's board every interval, for ever.
pub(crate) async fn sample(sampled: Sampled) {
    let mut last = Previous::default();
    let mut ticker = tokio::time::interval(sampled.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let overview = sample_once(&sampled, &mut last).await;
        sampled.board.record(overview, Timestamp::now().to_rfc3339(), sampled.interval.as_secs());
        if let Some(handle) = &sampled.handle {
            handle.run_upkeep();
        }
    }
}

async fn sample_once(s: &Sampled, last: &mut Previous) -> Overview {
    use metrics::{counter, gauge};
    let state = s.tracker.state();
    let count = |status: PinStatus| state.cluster_count(StatusSet::only(status)).unwrap_or(0);
    let pins = PinCounts {
        queued: count(PinStatus::Queued),
        pinning: count(PinStatus::Pinning),
        pinned: count(PinStatus::Pinned),
        failed: count(PinStatus::Failed),
    };
    for (status, value) in
        [("queued", pins.queued), ("pinning", pins.pinning), ("pinned", pins.pinned), ("failed", pins.failed)]
    {
        gauge!(PINS, "status" => status).set(value as f64);
    }

    let queue = s.tracker.queue_status();
    gauge!(QUEUE_LENGTH).set(queue.queued as f64);
    gauge!(WORKERS_BUSY).set(queue.running as f64);
    gauge!(WORKERS).set(queue.workers as f64);

    let traffic = s.tracker.bitswap_traffic();
    counter!(pincluster_ipfs::metrics::BITSWAP_RECEIVED_BLOCKS).absolute(traffic.received_blocks);
    counter!(pincluster_ipfs::metrics::BITSWAP_RECEIVED_BYTES).absolute(traffic.received_bytes);
    counter!(pincluster_ipfs::metrics::BITSWAP_SENT_BLOCKS).absolute(traffic.sent_blocks);
    counter!(pincluster_ipfs::metrics::BITSWAP_SENT_BYTES).absolute(traffic.sent_bytes);
    let now = Instant::now();
    let (received_rate, sent_rate) = match last.traffic.replace((now, traffic)) {
        Some((then, before)) => {
            let seconds = now.duration_since(then).as_secs_f64().max(0.001);
            (
                traffic.received_bytes.saturating_sub(before.received_bytes) as f64 / seconds,
                traffic.sent_bytes.saturating_sub(before.sent_bytes) as f64 / seconds,
            )
        }
        None => (0.0, 0.0),
    };
    let connected = s.tracker.connected_peers().await.len() as u64;
    gauge!(IPFS_PEERS).set(connected as f64);
    let dht = s.tracker.dht_status();
    gauge!(DHT_PEERS, "dht" => "wan").set(dht.wan_peers as f64);
    gauge!(DHT_PEERS, "dht" => "lan").set(dht.lan_peers as f64);

    if last.repo.is_none_or(|at| at.elapsed() >= REPO_STAT_EVERY) {
        last.repo = Some(now);
        if let Ok(repo) = s.tracker.repo_stat().await {
            gauge!(BLOCKSTORE_BYTES).set(repo.bytes as f64);
            gauge!(BLOCKSTORE_BLOCKS).set(repo.blocks as f64);
        }
    }
    let dir = s.data_dir.clone();
    let free = tokio::task::spawn_blocking(move || fs2::available_space(&dir)).await.ok().and_then(Result::ok);
    if let Some(free) = free {
        gauge!(FREE_BYTES).set(free as f64);
    }

    let me = s.consensus.id();
    let raft = s.consensus.metrics().borrow().clone();
    gauge!(RAFT_TERM).set(raft.current_term as f64);
    gauge!(RAFT_LEADER).set(if raft.current_leader == Some(me) { 1.0 } else { 0.0 });
    gauge!(RAFT_HAS_LEADER).set(if raft.current_leader.is_some() { 1.0 } else { 0.0 });
    let last_log = raft.last_log_index.unwrap_or(0);
    gauge!(RAFT_LAST_LOG).set(last_log as f64);
    gauge!(RAFT_APPLIED).set(raft.last_applied.map_or(0, |l| l.index) as f64);

    let mut peers = Vec::new();
    let (mut up, mut down) = (0u64, 0u64);
    let mut this_peer = PeerRow::default();
    for peer in s.consensus.peers() {
        let fresh = peer.id == me || peer.metrics.as_ref().is_some_and(|(age, _)| *age <= s.metric_ttl);
        let reported = peer.metrics.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
        if fresh {
            up += 1;
        } else {
            down += 1;
        }
        gauge!(CLUSTER_PEER_UP, "peer" => peer.member.name.clone()).set(if fresh { 1.0 } else { 0.0 });
        let follower = raft.replication.as_ref().filter(|_| peer.id != me).and_then(|r| r.get(&peer.id));
        if let Some(Some(matched)) = follower {
            gauge!(RAFT_REPLICATION_LAG, "peer" => peer.member.name.clone())
                .set(last_log.saturating_sub(matched.index) as f64);
        }
        let row = PeerRow {
            id: peer.member.peer_id.clone(),
            peername: peer.member.name.clone(),
            freespace: reported.freespace,
            reposize: reported.reposize,
            pin_queue: reported.pinqueue,
            up: fresh,
            leader: matches!(peer.role, pincluster_consensus::Role::Leader),
        };
        if peer.id == me {
            this_peer = row.clone();
        }
        peers.push(row);
    }
    gauge!(CLUSTER_PEERS, "health" => "up").set(up as f64);
    gauge!(CLUSTER_PEERS, "health" => "down").set(down as f64);

    Overview {
        peer: this_peer,
        peers,
        pins,
        queue: QueueRow {
            queued: pins.queued,
            pinning: pins.pinning,
            workers_busy: queue.running as u64,
            workers: queue.workers as u64,
        },
        transfer: TransferRow {
            received_bytes_per_second: received_rate,
            sent_bytes_per_second: sent_rate,
            connected_peers: connected,
        },
    }
}

/// `GET /metrics` alone on `observations.metrics_listen_multiaddress`, without
/// authentication (the config allows a non-loopback address only when told to).
pub(crate) fn metrics_server(
    address: &multiaddr::Multiaddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> anyhow::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let socket = pincluster_httpcommon::socket_address(address)
        .with_context(|| format!("{address} is not an /ip4|/ip6/…/tcp/PORT address"))?;
    let server = HttpServer::new(move || {
        let render = render.clone();
        App::new()
            .route("/metrics", web::get().to(move || pincluster_httpcommon::metrics_text(render.clone())))
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(socket)
    .with_context(|| format!("cannot listen on {socket}"))?;
    let bound = server.addrs().first().copied().unwrap_or(socket);
    Ok((server.run(), bound))
}
