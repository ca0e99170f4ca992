//! Loading `service.json` with the `config` crate (file < environment < flags),
//! validating it, and writing a fresh config folder with `init`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use multiaddr::{Multiaddr, Protocol};
use rand::distributions::{Alphanumeric, DistString};

use crate::{ApiConfig, Identity, ServiceConfig, IDENTITY_FILE};

/// The file name of the configuration inside the config folder.
pub const CONFIG_FILE: &str = "service.json";

/// Prefix of environment overrides: `PINCLUSTER_API__RESTAPI__HTTP_LISTEN_MULTIADDRESS`
/// sets `api.restapi.http_listen_multiaddress` (`__` separates the levels).
const ENV_PREFIX: &str = "PINCLUSTER_";

/// Why a config folder could not be used. Every variant names the file and,
/// where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no such file (run `pincluster-service init` first)", file.display())]
    Missing { file: PathBuf },
    #[error("{}: {}{reason}", file.display(), key_prefix(key))]
    Invalid { file: PathBuf, key: String, reason: String },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

/// Values that override the file and the environment, as `(dotted.key, value)`.
#[derive(Clone, Debug, Default)]
pub struct Overrides(pub Vec<(String, String)>);

/// Loads `DIR/service.json`, applies `PINCLUSTER_…` environment variables from
/// `env` and then `overrides`, and validates the result.
pub fn load(
    dir: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<ServiceConfig, ConfigError> {
    let file = dir.join(CONFIG_FILE);
    if !file.exists() {
        return Err(ConfigError::Missing { file });
    }
    let invalid = |key: String, reason: String| ConfigError::Invalid { file: file.clone(), key, reason };
    // Parse the file once with serde_json for precise syntax errors.
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io { file: file.clone(), source })?;
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| invalid(String::new(), e.to_string()))?;

    let mut builder = config::Config::builder().add_source(config::File::from_str(&text, config::FileFormat::Json));
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if !rest.contains("__") {
            continue; // PINCLUSTER_PATH and friends are not config keys.
        }
        let key = rest.split("__").map(str::to_lowercase).collect::<Vec<_>>().join(".");
        builder = builder.set_override(key.clone(), value).map_err(|e| invalid(key, e.to_string()))?;
    }
    for (key, value) in &overrides.0 {
        builder =
            builder.set_override(key.as_str(), value.as_str()).map_err(|e| invalid(key.clone(), e.to_string()))?;
    }
    let layered = builder.build().map_err(|e| invalid(String::new(), e.to_string()))?;
    let config: ServiceConfig = serde_path_to_error::deserialize(layered).map_err(|e| {
        let key = e.path().to_string();
        let reason = e.into_inner().to_string();
        // The config crate appends the key itself; it is already in front.
        let reason = match reason.rfind(" for key `") {
            Some(at) => reason[..at].to_string(),
            None => reason,
        };
        invalid(if key == "." { String::new() } else { key }, reason)
    })?;
    validate(&config).map_err(|(key, reason)| invalid(key, reason))?;
    Ok(config)
}

/// Checks what serde cannot: non-empty credentials, usable listen addresses,
/// no unauthenticated API on a public address unless explicitly allowed.
fn validate(config: &ServiceConfig) -> Result<(), (String, String)> {
    let apis = [("restapi", &config.api.restapi), ("pinsvcapi", &config.api.pinsvcapi)];
    for (name, api) in apis {
        let Some(api) = api else { continue };
        validate_api(api).map_err(|(key, reason)| (format!("api.{name}.{key}"), reason))?;
    }
    if let Some(gateway) = &config.api.gateway {
        validate_gateway(gateway).map_err(|(key, reason)| (format!("api.gateway.{key}"), reason))?;
    }
    for (i, addr) in config.ipfs.listen_multiaddress.iter().enumerate() {
        if !addr.iter().any(|p| matches!(p, Protocol::Tcp(_) | Protocol::Udp(_))) {
            return Err((format!("ipfs.listen_multiaddress[{i}]"), format!("{addr} has no /tcp or /udp port")));
        }
    }
    if config.pin_tracker.concurrent_pins == 0 {
        return Err(("pin_tracker.concurrent_pins".into(), "must be at least 1".into()));
    }
    validate_cluster(&config.cluster).map_err(|(key, reason)| (format!("cluster.{key}"), reason))?;
    validate_observations(&config.observations).map_err(|(key, reason)| (format!("observations.{key}"), reason))
}

fn validate_observations(observations: &crate::ObservationsConfig) -> Result<(), (String, String)> {
    if let Some(addr) = &observations.metrics_listen_multiaddress {
        let (host_ok, port_ok) = socket_parts(addr);
        if !(host_ok && port_ok) {
            let reason = format!("{addr} is not of the form /ip4/HOST/tcp/PORT or /ip6/HOST/tcp/PORT");
            return Err(("metrics_listen_multiaddress".into(), reason));
        }
        if !is_loopback(addr) && !observations.metrics_allow_unauthenticated {
            let reason = format!(
                "{addr} is not a loopback address and this listener has no authentication; \
                 set metrics_allow_unauthenticated: true to serve metrics on it anyway"
            );
            return Err(("metrics_listen_multiaddress".into(), reason));
        }
    }
    if observations.reporting_interval.0.is_zero() {
        return Err(("reporting_interval".into(), "must be more than 0s".into()));
    }
    if !(0.0..=1.0).contains(&observations.sampling_ratio) {
        return Err(("sampling_ratio".into(), "must be between 0 and 1".into()));
    }
    Ok(())
}

fn validate_cluster(cluster: &crate::ClusterConfig) -> Result<(), (String, String)> {
    if !cluster.secret.is_empty() && cluster.secret_bytes().is_none() {
        return Err(("secret".into(), "must be 64 hexadecimal characters (32 bytes), the same on every peer".into()));
    }
    for (i, addr) in cluster.listen_multiaddress.iter().enumerate() {
        if !socket_parts(addr).0 || !addr.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
            return Err((format!("listen_multiaddress[{i}]"), format!("{addr} is not /ip4|ip6/HOST/tcp/PORT")));
        }
    }
    for (name, list) in [("peers", &cluster.peers), ("bootstrap", &cluster.bootstrap)] {
        for (i, addr) in list.iter().enumerate() {
            if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                return Err((format!("{name}[{i}]"), format!("{addr} must end with /p2p/<peer id>")));
            }
        }
    }
    for (name, value) in [
        ("replication_factor_min", cluster.replication_factor_min),
        ("replication_factor_max", cluster.replication_factor_max),
    ] {
        if value == 0 || value < -1 {
            return Err((name.into(), "must be -1 (every peer) or at least 1".into()));
        }
    }
    let (min, max) = (cluster.replication_factor_min, cluster.replication_factor_max);
    if max != -1 && (min == -1 || min > max) {
        return Err((
            "replication_factor_min".into(),
            format!("{min} does not fit under replication_factor_max {max}"),
        ));
    }
    if cluster.raft_snapshot_threshold == 0 {
        return Err(("raft_snapshot_threshold".into(), "must be at least 1".into()));
    }
    if cluster.monitor_ping_interval.0.is_zero() || cluster.metric_ttl.0 < cluster.monitor_ping_interval.0 {
        return Err(("metric_ttl".into(), "must be at least monitor_ping_interval, which must not be 0s".into()));
    }
    Ok(())
}

fn validate_api(api: &ApiConfig) -> Result<(), (String, String)> {
    if let Some(users) = &api.basic_auth_credentials {
        if users.is_empty() {
            return Err((
                "basic_auth_credentials".into(),
                "should be null (authentication off) or have at least one entry".into(),
            ));
        }
        if users.iter().any(|(user, pass)| user.is_empty() || pass.is_empty() || user.contains(':')) {
            return Err((
                "basic_auth_credentials".into(),
                "user names and passwords must be non-empty and user names must not contain ':'".into(),
            ));
        }
    }
    if api.max_header_bytes < 1024 {
        return Err(("max_header_bytes".into(), "must be at least 1024".into()));
    }
    if api.max_body_bytes == 0 {
        return Err(("max_body_bytes".into(), "must be at least 1".into()));
    }
    if api.max_upload_bytes == 0 {
        return Err(("max_upload_bytes".into(), "must be at least 1".into()));
    }
    if api.max_connections == 0 {
        return Err(("max_connections".into(), "must be at least 1".into()));
    }
    if api.read_body_timeout.0.is_zero() {
        return Err(("read_body_timeout".into(), "must be more than 0s".into()));
    }
    let limits = [
        ("rate_limit_per_user", &api.rate_limit_per_user),
        ("rate_limit_per_address", &api.rate_limit_per_address),
        ("rate_limit_auth_failures", &api.rate_limit_auth_failures),
    ];
    for (key, limit) in limits {
        validate_rate_limit(key, limit)?;
    }
    for (i, addr) in api.http_listen_multiaddress.to_vec().iter().enumerate() {
        let (host_ok, port_ok) = socket_parts(addr);
        if !(host_ok && port_ok) {
            return Err((
                format!("http_listen_multiaddress[{i}]"),
                format!("{addr} is not of the form /ip4/HOST/tcp/PORT or /ip6/HOST/tcp/PORT"),
            ));
        }
        if api.basic_auth_credentials.is_none() && !api.allow_unauthenticated && !is_loopback(addr) {
            return Err((
                format!("http_listen_multiaddress[{i}]"),
                format!(
                    "{addr} is not a loopback address and basic_auth_credentials is null; \
                     set credentials, or allow_unauthenticated: true to serve it without authentication"
                ),
            ));
        }
    }
    Ok(())
}

fn validate_gateway(gateway: &crate::GatewayConfig) -> Result<(), (String, String)> {
    let addresses = gateway.http_listen_multiaddress.to_vec();
    if addresses.is_empty() {
        return Err((
            "http_listen_multiaddress".into(),
            "needs at least one address (or set api.gateway to null)".into(),
        ));
    }
    for (i, addr) in addresses.iter().enumerate() {
        let (host_ok, port_ok) = socket_parts(addr);
        if !(host_ok && port_ok) {
            return Err((
                format!("http_listen_multiaddress[{i}]"),
                format!("{addr} is not of the form /ip4/HOST/tcp/PORT or /ip6/HOST/tcp/PORT"),
            ));
        }
    }
    if gateway.max_concurrent_per_client == 0 {
        return Err(("max_concurrent_per_client".into(), "must be at least 1".into()));
    }
    if gateway.max_bytes_per_second != 0 && gateway.max_bytes_per_second < 1024 {
        return Err(("max_bytes_per_second".into(), "must be 0 (no limit) or at least 1024".into()));
    }
    if gateway.max_header_bytes < 1024 {
        return Err(("max_header_bytes".into(), "must be at least 1024".into()));
    }
    if gateway.write_timeout.0.is_zero() {
        return Err(("write_timeout".into(), "must be more than 0s".into()));
    }
    if gateway.max_connections == 0 {
        return Err(("max_connections".into(), "must be at least 1".into()));
    }
    validate_rate_limit("rate_limit_per_address", &gateway.rate_limit_per_address)
}

fn validate_rate_limit(key: &str, limit: &crate::RateLimit) -> Result<(), (String, String)> {
    if !limit.per_second.is_finite() || limit.per_second < 0.0 {
        return Err((format!("{key}.per_second"), "must be a number, 0 (no limit) or more".into()));
    }
    if limit.burst == 0 {
        return Err((format!("{key}.burst"), "must be at least 1".into()));
    }
    Ok(())
}

fn socket_parts(addr: &Multiaddr) -> (bool, bool) {
    let mut parts = addr.iter();
    let host = matches!(parts.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)));
    let port = matches!(parts.next(), Some(Protocol::Tcp(_))) && parts.next().is_none();
    (host, port)
}

/// Whether `addr` starts with a loopback IP.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// What `init` did.
#[derive(Debug)]
pub struct InitReport {
    pub config_written: bool,
    pub identity_written: bool,
    pub peer_id: String,
}

/// Creates the config folder: `service.json` with defaults and a generated
/// password for user `admin` (rewritten only with `force`), and `identity.json`
/// (never overwritten).
pub fn init(dir: &Path, force: bool) -> Result<InitReport, ConfigError> {
    init_with(dir, force, &[])
}

/// [`init`], with the cluster's first members (`init --peers`).
pub fn init_with(dir: &Path, force: bool, peers: &[Multiaddr]) -> Result<InitReport, ConfigError> {
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Io { file: dir.to_path_buf(), source })?;
    let config_path = dir.join(CONFIG_FILE);
    let config_written = force || !config_path.exists();
    if config_written {
        let mut config = ServiceConfig::default();
        let secret: [u8; 32] = rand::random();
        config.cluster.secret = secret.iter().map(|b| format!("{b:02x}")).collect();
        config.cluster.peers = peers.to_vec();
        let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
        let users = BTreeMap::from([("admin".to_string(), password)]);
        for api in [&mut config.api.restapi, &mut config.api.pinsvcapi].into_iter().flatten() {
            api.basic_auth_credentials = Some(users.clone());
        }
        let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
        write_private(&config_path, text.as_bytes())?;
    }
    let identity_path = dir.join(IDENTITY_FILE);
    let identity_written = !identity_path.exists();
    let identity = if identity_written {
        let identity = Identity::generate();
        identity.save(&identity_path)?;
        identity
    } else {
        Identity::load(&identity_path)?
    };
    Ok(InitReport { config_written, identity_written, peer_id: identity.peer_id() })
}

/// Writes a file readable by its owner only, atomically (temp file + rename).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| ConfigError::Io { file: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
