//! `pincluster-service daemon`: loads the config, takes the folder lock, opens
//! the pinset and serves both APIs until SIGINT or SIGTERM.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use multiaddr::{Multiaddr, Protocol};
use pincluster_auth::{Authenticator, TokenOptions};
use pincluster_config::{ApiConfig, Identity, Overrides, ServiceConfig, CONFIG_FILE, IDENTITY_FILE};
use pincluster_httpcommon::{ApiServer, RenderError};
use pincluster_state::{Pinset, StateOptions};
use pincluster_tracker::Tracker;

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
    if !dir.join(CONFIG_FILE).exists() {
        let report = pincluster_config::init(dir, false)?;
        tracing::info!(dir = %dir.display(), peer_id = %report.peer_id, "initialised a new config folder");
    }
    let overrides = args.overrides();
    let config = pincluster_config::load(dir, std::env::vars(), &overrides)?;
    let identity = Identity::load(&dir.join(IDENTITY_FILE))?;
    let _lock = lock(dir)?;
    actix_web::rt::System::new().block_on(serve(dir, config, identity, overrides))
}

/// Takes the folder lock; the OS releases it when the process ends, even on `kill -9`.
fn lock(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another pincluster-service is running on {} (it holds {})",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

fn authenticator(api: &ApiConfig) -> Authenticator {
    Authenticator::new(api.basic_auth_credentials.clone(), TokenOptions { ttl: api.token_ttl.non_zero() })
}

async fn serve(dir: &Path, config: ServiceConfig, identity: Identity, overrides: Overrides) -> anyhow::Result<()> {
    let data = dir.join("data");
    let state = Pinset::open(&StateOptions {
        path: data.join("pinset"),
        cache_capacity_bytes: config.state.cache_capacity,
    })
    .context("cannot open the pinset")?;
    let tracker = Tracker::new(state.clone());
    let peer_id = identity.peer_id();
    let delegates = delegates(&config.ipfs.announce_multiaddress, &config.ipfs.listen_multiaddress, &peer_id);

    let mut servers = Vec::new();
    let mut reloadable = Vec::new();
    let apis: [(&'static str, Option<&ApiConfig>); 2] =
        [("restapi", config.api.restapi.as_ref()), ("pinsvcapi", config.api.pinsvcapi.as_ref())];
    for (name, api) in apis {
        let Some(api) = api else { continue };
        let auth = authenticator(api);
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
                    },
                ),
            ),
            _ => (
                pincluster_pinsvc::render_error,
                pincluster_pinsvc::routes(
                    tracker.clone(),
                    pincluster_pinsvc::PinsvcOptions { delegates: delegates.clone() },
                ),
            ),
        };
        let bound = ApiServer { name, config: api.clone(), auth: auth.clone(), render_error, routes }
            .bind()
            .with_context(|| format!("cannot start the {name}"))?;
        for address in &bound.addresses {
            println!("{name} listening on {}", http_url(address));
        }
        reloadable.push(Reloadable { api: name, auth });
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
    drop(state);
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

/// The addresses other peers should use to reach our node, each ending in
/// `/p2p/<peer id>`: the announce addresses, else the listen addresses with
/// unspecified hosts replaced by loopback.
fn delegates(announce: &[Multiaddr], listen: &[Multiaddr], peer_id: &str) -> Vec<String> {
    let source = if announce.is_empty() { listen } else { announce };
    let mut out: Vec<String> = source
        .iter()
        .map(|addr| {
            let replaced: Multiaddr = addr
                .iter()
                .map(|p| match p {
                    Protocol::Ip4(ip) if ip.is_unspecified() => Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST),
                    Protocol::Ip6(ip) if ip.is_unspecified() => Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST),
                    other => other,
                })
                .filter(|p| !matches!(p, Protocol::P2p(_)))
                .collect();
            format!("{replaced}/p2p/{peer_id}")
        })
        .collect();
    out.dedup();
    out.truncate(MAX_DELEGATES);
    if out.is_empty() {
        out.push(format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer_id}"));
    }
    out
}
