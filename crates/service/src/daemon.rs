//! `pincluster-service daemon`: loads the config, takes the folder lock, opens
//! the pinset and serves both APIs until SIGINT or SIGTERM.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use pincluster_auth::{Authenticator, TokenOptions};
use pincluster_config::{ApiConfig, Identity, Overrides, ServiceConfig, CONFIG_FILE, IDENTITY_FILE};
use pincluster_dashboard::{Board, DashboardOptions};
use pincluster_httpcommon::{ApiServer, MetricsEndpoint, RenderError};
use pincluster_ipfs::{DhtMode, IpfsError, Node, NodeOptions};
use pincluster_state::StateOptions;
use pincluster_tracker::{ReprovideOptions, ReprovideStrategy, Tracker, TrackerOptions};

use crate::cluster;
use crate::observe;
use crate::reload::{self, Reloadable};

/// The lock file that keeps a second daemon off the same folder.
const LOCK_FILE: &str = "pincluster.lock";
/// The most delegates a pin status may list (the spec's `maxItems`).
const MAX_DELEGATES: usize = 20;

/// Flags of `daemon`; they override service.json and the environment.
#[derive(clap::Args, Default)]
pub struct DaemonArgs {
    /// REST API listen multiaddress, e.g. /ip4/127.0.0.1/tcp/9094.
    #[arg(long, value_name = "MULTIADDR")]
    restapi_listen: Option<String>,
    /// Pinning Service API listen multiaddress, e.g. /ip4/127.0.0.1/tcp/9097.
    #[arg(long, value_name = "MULTIADDR")]
    pinsvcapi_listen: Option<String>,
    /// This peer's name.
    #[arg(long)]
    peername: Option<String>,
    /// Join the cluster through these members (comma-separated cluster
    /// multiaddresses ending in /p2p/<peer id>) when this peer has no log
    /// yet; replaces `cluster.bootstrap`.
    #[arg(long, value_delimiter = ',', value_name = "MULTIADDRS")]
    bootstrap: Vec<multiaddr::Multiaddr>,
    /// Join as a learner: replicate and pin without a vote (`cluster.learner`).
    #[arg(long)]
    learner: bool,
}

impl DaemonArgs {
    fn overrides(&self) -> Overrides {
        let pairs = [
            ("api.restapi.http_listen_multiaddress", &self.restapi_listen),
            ("api.pinsvcapi.http_listen_multiaddress", &self.pinsvcapi_listen),
            ("cluster.peername", &self.peername),
        ];
        Overrides(pairs.into_iter().filter_map(|(k, v)| Some((k.to_string(), v.clone()?))).collect())
    }
}

pub fn run(dir: &Path, args: DaemonArgs) -> anyhow::Result<()> {
    let initialised =
        if dir.join(CONFIG_FILE).exists() { None } else { Some(pincluster_config::init(dir, false)?.peer_id) };
    let overrides = args.overrides();
    let mut config = pincluster_config::load(dir, std::env::vars(), &overrides)?;
    let _logging = observe::init_logging(Some(&config.observations))?;
    if let Some(peer_id) = initialised {
        tracing::info!(dir = %dir.display(), %peer_id, "initialised a new config folder");
    }
    let metrics = config.observations.enable_metrics.then(observe::install_metrics).transpose()?;
    let board = Arc::new(Board::default());
    if !args.bootstrap.is_empty() {
        config.cluster.bootstrap = args.bootstrap.clone();
    }
    config.cluster.learner |= args.learner;
    if let Some(bad) =
        config.cluster.bootstrap.iter().find(|a| !matches!(a.iter().last(), Some(multiaddr::Protocol::P2p(_))))
    {
        anyhow::bail!("--bootstrap {bad}: a member's cluster address must end with /p2p/<peer id>");
    }
    let identity = Identity::load(&dir.join(IDENTITY_FILE))?;
    let _lock = lock(dir)?;
    // The IPFS node and the pin workers get a runtime of their own, so block
    // transfers never wait behind HTTP work (and the other way round).
    let node_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ipfs")
        .enable_all()
        .build()
        .context("cannot start the IPFS runtime")?;
    let state = crate::space::open_pinset(&state_options(dir, &config))?;
    // Blocks stop where the pinset's reserve begins.
    pincluster_ipfs::set_block_reserve(state.space().reserve());
    let node = node_runtime.block_on(Node::start(node_options(dir, &config, &identity)?)).map_err(|e| match e {
        IpfsError::Listen { addr, reason } => anyhow::anyhow!(
            "the IPFS node cannot listen on {addr}: {reason}; another program (a Kubo node?) may hold the port: \
             change ipfs.listen_multiaddress in {}",
            dir.join(CONFIG_FILE).display()
        ),
        other => anyhow::Error::new(other).context("cannot start the IPFS node"),
    })?;
    let delegates: Vec<String> = node_runtime.block_on(node.delegates()).iter().map(ToString::to_string).collect();
    let (consensus, events) = node_runtime
        .block_on(cluster::start(dir, &config, &identity, state.clone()))
        .context("cannot start the cluster")?;
    let tracker = {
        let _entered = node_runtime.enter();
        tokio::spawn(crate::space::watch(state.space().clone()));
        let mut options = tracker_options(dir, &config);
        options.peer_id = identity.peer_id();
        let tracker = Tracker::start(state.clone(), node.clone(), options, cluster::log(&consensus, &config.cluster));
        tokio::spawn(cluster::follow(tracker.clone(), events));
        tokio::spawn(cluster::report(consensus.clone(), tracker.clone(), dir.join("data"), config.cluster.clone()));
        tokio::spawn(cluster::repair(consensus.clone(), tracker.clone(), config.cluster.clone()));
        tokio::spawn(observe::sample(observe::Sampled {
            tracker: tracker.clone(),
            consensus: consensus.clone(),
            board: board.clone(),
            data_dir: dir.join("data"),
            interval: config.observations.reporting_interval.0,
            metric_ttl: config.cluster.metric_ttl.0,
            handle: metrics.clone(),
        }));
        tracker
    };
    let result = actix_web::rt::System::new().block_on(serve(
        dir,
        config,
        identity,
        overrides,
        Services { tracker, consensus: consensus.clone(), metrics, board },
        delegates,
    ));
    node_runtime.block_on(consensus.shutdown());
    node_runtime.block_on(node.shutdown());
    node_runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    // Last: a checkpoint, so that the next start opens the pinset at once
    // instead of replaying the log (which is what happens after a crash).
    match state.close() {
        Ok(true) => tracing::info!("pinset closed"),
        Ok(false) => {
            tracing::warn!("the pinset is still in use by a task that did not stop; the next start replays its log")
        }
        Err(error) => tracing::warn!(%error, "the pinset checkpoint failed; the next start replays its log"),
    }
    result
}

fn node_options(dir: &Path, config: &ServiceConfig, identity: &Identity) -> anyhow::Result<NodeOptions> {
    let ipfs = &config.ipfs;
    let swarm_key = match ipfs.swarm_key_file.trim() {
        "" => None,
        file => Some(pincluster_config::read_swarm_key(&dir.join(file)).map_err(|reason| {
            anyhow::anyhow!("ipfs.swarm_key_file in {}: {reason}", dir.join(pincluster_config::CONFIG_FILE).display())
        })?),
    };
    let mut bootstrap = ipfs.bootstrap.clone();
    if swarm_key.is_some() && bootstrap == pincluster_config::amino_bootstrap() {
        tracing::info!("private network: the public DHT bootstrap list is not used (set ipfs.bootstrap to your peers)");
        bootstrap.clear();
    }
    Ok(NodeOptions {
        keypair_protobuf: identity.keypair_protobuf(),
        listen: ipfs.listen_multiaddress.clone(),
        announce: ipfs.announce_multiaddress.clone(),
        bootstrap,
        dht_mode: match ipfs.dht_mode {
            pincluster_config::DhtMode::Auto => DhtMode::Auto,
            pincluster_config::DhtMode::Client => DhtMode::Client,
            pincluster_config::DhtMode::Server => DhtMode::Server,
        },
        swarm_key,
        repo_path: dir.join("data").join("ipfs"),
    })
}

fn tracker_options(dir: &Path, config: &ServiceConfig) -> TrackerOptions {
    let tracker = &config.pin_tracker;
    TrackerOptions {
        concurrent_pins: tracker.concurrent_pins,
        max_pin_queue_size: tracker.max_pin_queue_size,
        max_retries: tracker.max_retries,
        retry_backoff: tracker.retry_backoff.0,
        gc_interval: tracker.gc_interval.non_zero(),
        stall_timeout: config.ipfs.pin_timeout.0,
        max_dag_size: (config.ipfs.max_dag_size > 0).then_some(config.ipfs.max_dag_size),
        max_outstanding_wants: config.ipfs.max_outstanding_wants,
        peer_id: String::new(),
        allocate_by: config.cluster.allocate_by.clone(),
        reprovide: ReprovideOptions {
            strategy: match config.ipfs.reprovider.strategy {
                pincluster_config::ReprovideStrategy::Roots => ReprovideStrategy::Roots,
                pincluster_config::ReprovideStrategy::All => ReprovideStrategy::All,
                pincluster_config::ReprovideStrategy::None => ReprovideStrategy::None,
            },
            interval: config.ipfs.reprovider.interval.non_zero(),
            max_per_second: config.ipfs.reprovider.max_per_second,
            concurrency: config.ipfs.reprovider.concurrency,
            state_file: dir.join("data").join("reprovide.state"),
        },
    }
}

/// Where the pinset of the config folder `dir` lives and how to open it.
pub(crate) fn state_options(dir: &Path, config: &ServiceConfig) -> StateOptions {
    StateOptions {
        path: dir.join("data").join("pinset"),
        cache_capacity_bytes: config.state.cache_capacity,
        min_free_space: config.state.min_free_space,
    }
}

/// Takes the folder lock; the OS releases it when the process ends, even on `kill -9`.
fn lock(dir: &Path) -> anyhow::Result<File> {
    try_lock(dir)?.with_context(|| {
        format!("another pincluster-service is running on {} (it holds {})", dir.display(), lock_path(dir).display())
    })
}

/// Takes the folder lock, or `None` when another process holds it.
pub(crate) fn try_lock(dir: &Path) -> anyhow::Result<Option<File>> {
    let path = lock_path(dir);
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// The file [`lock`] locks.
pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    dir.join(LOCK_FILE)
}

fn authenticator(api: &ApiConfig) -> Authenticator {
    Authenticator::new(api.basic_auth_credentials.clone(), TokenOptions { ttl: api.token_ttl.non_zero() })
}

/// What the HTTP servers serve from.
struct Services {
    tracker: Tracker,
    consensus: pincluster_consensus::Consensus,
    metrics: Option<PrometheusHandle>,
    board: Arc<Board>,
}

async fn serve(
    dir: &Path,
    config: ServiceConfig,
    identity: Identity,
    overrides: Overrides,
    services: Services,
    delegates: Vec<String>,
) -> anyhow::Result<()> {
    let Services { tracker, consensus, metrics, board } = services;
    let peer_id = identity.peer_id();
    let delegates = with_fallback(delegates, &peer_id);

    let mut servers = Vec::new();
    let mut reloadable = Vec::new();
    let render_metrics =
        metrics.map(|handle| -> Arc<dyn Fn() -> String + Send + Sync> { Arc::new(move || handle.render()) });
    let observations = &config.observations;
    if let (Some(render), Some(address)) = (&render_metrics, &observations.metrics_listen_multiaddress) {
        let (server, bound) = observe::metrics_server(address, render.clone()).with_context(|| {
            format!(
                "cannot serve metrics (observations.metrics_listen_multiaddress in {})",
                dir.join(CONFIG_FILE).display()
            )
        })?;
        println!("metrics listening on {}/metrics", http_url(&bound));
        servers.push(server);
    }
    // The admin API's authenticator: whoever it accepts is an admin of the dashboard.
    let mut admin_auth = None;
    let apis: [(&'static str, Option<&ApiConfig>); 2] =
        [("restapi", config.api.restapi.as_ref()), ("pinsvcapi", config.api.pinsvcapi.as_ref())];
    for (name, api) in apis {
        let Some(api) = api else { continue };
        let auth = authenticator(api);
        if name == "restapi" {
            admin_auth = Some(auth.clone());
        }
        if !auth.enabled() {
            tracing::warn!(api = name, "authentication is off: basic_auth_credentials is null");
        }
        let (render_error, routes): (RenderError, _) = match name {
            "restapi" => (
                pincluster_restapi::render_error,
                pincluster_restapi::routes(
                    tracker.clone(),
                    pincluster_restapi::RestOptions {
                        peer_id: peer_id.clone(),
                        peername: config.cluster.peername.clone(),
                        addresses: delegates.clone(),
                        data_dir: dir.join("data"),
                        max_upload_bytes: api.max_upload_bytes,
                        cluster: consensus.clone(),
                        metric_ttl: config.cluster.metric_ttl.0,
                        default_replication: (
                            config.cluster.replication_factor_min,
                            config.cluster.replication_factor_max,
                        ),
                    },
                ),
            ),
            _ => (pincluster_pinsvc::render_error, {
                let psa = pincluster_pinsvc::routes(
                    tracker.clone(),
                    pincluster_pinsvc::PinsvcOptions {
                        delegates: delegates.clone(),
                        replication: (config.cluster.replication_factor_min, config.cluster.replication_factor_max),
                    },
                );
                let dashboard = pincluster_dashboard::routes(DashboardOptions {
                    board: board.clone(),
                    admin_auth: admin_auth.clone(),
                    render_error: pincluster_pinsvc::render_error,
                });
                Arc::new(move |cfg: &mut actix_web::web::ServiceConfig| {
                    psa(cfg);
                    dashboard(cfg);
                })
            }),
        };
        // /metrics on the REST API unless it has a listener of its own; open
        // without credentials only on loopback, unless configured otherwise.
        let metrics = render_metrics
            .clone()
            .filter(|_| name == "restapi" && observations.metrics_listen_multiaddress.is_none())
            .map(|render| MetricsEndpoint {
                render,
                open: observations.metrics_allow_unauthenticated
                    || api.http_listen_multiaddress.to_vec().iter().all(pincluster_config::is_loopback),
            });
        let bound = ApiServer { name, config: api.clone(), auth: auth.clone(), render_error, routes, metrics }
            .bind()
            .with_context(|| {
            let file = dir.join(CONFIG_FILE);
            format!("cannot start the {name} (api.{name}.http_listen_multiaddress in {})", file.display())
        })?;
        for address in &bound.addresses {
            println!("{name} listening on {}", http_url(address));
        }
        reloadable.push(Reloadable { api: name, auth });
        servers.push(bound.server);
    }
    if let Some(gateway) = &config.api.gateway {
        let bound = pincluster_gateway::server(gateway, tracker.clone()).bind().with_context(|| {
            let file = dir.join(CONFIG_FILE);
            format!("cannot start the gateway (api.gateway.http_listen_multiaddress in {})", file.display())
        })?;
        for address in &bound.addresses {
            println!("gateway listening on {}", http_url(address));
        }
        servers.push(bound.server);
    }
    println!("ready: peer {peer_id}");

    let handles: Vec<_> = servers.iter().map(|s| s.handle()).collect();
    // An actix server runs only while its future is polled: give each a task.
    let running = futures_util::future::join_all(servers.into_iter().map(actix_web::rt::spawn));
    let watcher = reload::spawn(dir.to_path_buf(), overrides, reloadable);
    tokio::pin!(running);
    tokio::select! {
        signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
        _ = &mut running => tracing::warn!("the HTTP servers stopped"),
    }
    watcher.abort();
    for handle in handles {
        handle.stop(true).await;
    }
    drop(tracker);
    tracing::info!("stopped");
    Ok(())
}

fn http_url(address: &SocketAddr) -> String {
    format!("http://{address}")
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        let _ = tokio::signal::ctrl_c().await;
        return "ctrl-c";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The node's delegates, capped at the spec's 20; the spec needs at least one.
fn with_fallback(mut delegates: Vec<String>, peer_id: &str) -> Vec<String> {
    delegates.truncate(MAX_DELEGATES);
    if delegates.is_empty() {
        delegates.push(format!("/ip4/127.0.0.1/tcp/4011/p2p/{peer_id}"));
    }
    delegates
}
