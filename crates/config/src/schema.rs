//! The sections of `service.json`, one serde struct each, with their defaults.
//!
//! Key names follow IPFS Cluster where a key means the same thing.

use std::collections::BTreeMap;

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// The whole `service.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// This peer as a member of a cluster.
    pub cluster: ClusterConfig,
    /// The HTTP APIs. An API runs only when its section is present (not `null`).
    pub api: ApiSections,
    /// The embedded IPFS node.
    pub ipfs: IpfsConfig,
    /// The queue and workers that fetch pinned content.
    pub pin_tracker: TrackerConfig,
    /// The pinset database.
    pub state: StateConfig,
    /// Metrics, tracing and logs, for operators.
    pub observations: ObservationsConfig,
}

/// The `cluster` section: this peer among the others.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// A human name for this peer, shown by `/id`, `/peers` and in statuses.
    pub peername: String,
    /// The cluster's shared secret: 64 hex characters (32 bytes), the same on
    /// every peer. It keys the private network of the cluster port: a peer
    /// without it cannot even open a connection. `init` generates one; empty
    /// means a random one for this run (no other peer can join).
    pub secret: String,
    /// Where peers reach this one (Raft, forwarded writes, metrics).
    pub listen_multiaddress: Vec<Multiaddr>,
    /// The addresses other peers are told to dial; empty = the listen
    /// addresses, an unspecified IP (`0.0.0.0`) replaced by loopback, which
    /// only suits peers on the same host.
    pub announce_multiaddress: Vec<Multiaddr>,
    /// The cluster's first members (each with `/p2p/<peer id>`), written by
    /// `init --peers`: a peer that has no log yet starts a cluster of these
    /// and itself. Ignored once the peer has a log.
    pub peers: Vec<Multiaddr>,
    /// Members to ask to join through (with `/p2p/<peer id>`), tried in
    /// order, when this peer has no log yet. Ignored once it has one.
    pub bootstrap: Vec<Multiaddr>,
    /// Join as a learner: replicate the pinset and pin what is allocated
    /// here, without a vote (like `ipfs-cluster-follow`).
    pub learner: bool,
    /// Peers that must hold a new pin, unless the pin says otherwise; -1 = every peer.
    pub replication_factor_min: i32,
    /// Peers that should hold a new pin, at most; -1 = every peer.
    pub replication_factor_max: i32,
    /// How often this peer reports its metrics to the others.
    pub monitor_ping_interval: Duration,
    /// A peer whose last report is older than this is down (alert).
    pub metric_ttl: Duration,
    /// How long a peer stays down before the leader re-allocates its pins; "0s" = never.
    pub repin_delay: Duration,
    /// Tags of this peer, reported as `tag:<name>` metrics (e.g. `group`).
    pub tags: BTreeMap<String, String>,
    /// Metrics the allocator partitions peers by, in order (Cluster's `allocate_by`).
    pub allocate_by: Vec<String>,
    /// Log entries between two snapshots of the pinset (each entry holds up
    /// to 1000 commands); the log is purged up to a snapshot.
    pub raft_snapshot_threshold: u64,
    /// Entries kept behind a snapshot, for peers slightly behind (the others get the snapshot).
    pub raft_trailing_logs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host = host.trim();
        ClusterConfig {
            peername: if host.is_empty() { "pincluster".into() } else { host.into() },
            secret: String::new(),
            listen_multiaddress: ["/ip4/0.0.0.0/tcp/9096"].iter().filter_map(|a| a.parse().ok()).collect(),
            announce_multiaddress: Vec::new(),
            peers: Vec::new(),
            bootstrap: Vec::new(),
            learner: false,
            replication_factor_min: -1,
            replication_factor_max: -1,
            monitor_ping_interval: Duration::from_secs(15),
            metric_ttl: Duration::from_secs(30),
            repin_delay: Duration::from_secs(60),
            tags: BTreeMap::new(),
            allocate_by: vec!["tag:group".into(), "freespace".into()],
            raft_snapshot_threshold: 5000,
            raft_trailing_logs: 1000,
        }
    }
}

impl ClusterConfig {
    /// The secret's 32 bytes; `None` when it is empty.
    pub fn secret_bytes(&self) -> Option<[u8; 32]> {
        decode_secret(&self.secret)
    }
}

/// The 32 bytes of a 64-hex-character secret.
pub(crate) fn decode_secret(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The `api` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSections {
    /// The IPFS Cluster compatible admin REST API.
    pub restapi: Option<ApiConfig>,
    /// The IPFS Pinning Service API.
    pub pinsvcapi: Option<ApiConfig>,
    /// The trustless HTTP gateway (raw blocks and CAR files of pinned
    /// content, no authentication); `null` (the default) = off.
    pub gateway: Option<GatewayConfig>,
}

impl Default for ApiSections {
    fn default() -> Self {
        ApiSections {
            restapi: Some(ApiConfig::with_port(9094)),
            pinsvcapi: Some(ApiConfig::with_port(9097)),
            gateway: None,
        }
    }
}

/// The `api.gateway` section: an IPFS Trustless Gateway for what this peer
/// has pinned. It never fetches from the network and has no authentication:
/// what it serves is public content that clients verify block by block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where to listen: `/ip4/…/tcp/PORT` or `/ip6/…/tcp/PORT`, one or a list.
    pub http_listen_multiaddress: ListenAddresses,
    /// Also answer plain requests (no trustless `Accept` or `format`) with
    /// the file's bytes and a content type, with `Range` support, like a
    /// classic path gateway.
    pub deserialized_responses: bool,
    /// Requests one client IP may have in progress at once; more get 429.
    pub max_concurrent_per_client: usize,
    /// Bytes per second sent by all responses together; 0 = no limit.
    pub max_bytes_per_second: u64,
    /// A response whose client takes nothing for this long is ended, so a
    /// stalled reader holds neither memory nor a slot.
    pub write_timeout: Duration,
    /// Longest time to read the request head.
    pub read_header_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Connections open at once on each listen address; more are closed as
    /// soon as they are accepted.
    pub max_connections: usize,
    /// Requests per client address (IPv6: per /64); beyond it 429 with
    /// `Retry-After`. Behind a reverse proxy every client shares its address.
    pub rate_limit_per_address: RateLimit,
    /// Headers added to every response: name to list of values.
    pub headers: BTreeMap<String, Vec<String>>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            http_listen_multiaddress: ListenAddresses::One(
                "/ip4/127.0.0.1/tcp/8080".parse().unwrap_or_else(|_| Multiaddr::empty()),
            ),
            deserialized_responses: false,
            max_concurrent_per_client: 16,
            max_bytes_per_second: 0,
            write_timeout: Duration::from_secs(60),
            read_header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 8192,
            max_connections: ApiConfig::default().max_connections,
            rate_limit_per_address: ApiConfig::default().rate_limit_per_address,
            headers: BTreeMap::new(),
        }
    }
}

/// One or more listen addresses: a string or a list in the file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged, try_from = "RawAddresses")]
pub enum ListenAddresses {
    One(Multiaddr),
    Many(Vec<Multiaddr>),
}

/// Listen addresses as written, before they are parsed.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawAddresses {
    One(String),
    Many(Vec<String>),
}

impl TryFrom<RawAddresses> for ListenAddresses {
    type Error = String;
    fn try_from(raw: RawAddresses) -> Result<Self, Self::Error> {
        let parse = |text: &str| text.parse::<Multiaddr>().map_err(|e| format!("invalid multiaddr {text:?}: {e}"));
        Ok(match raw {
            RawAddresses::One(text) => ListenAddresses::One(parse(&text)?),
            RawAddresses::Many(list) => ListenAddresses::Many(list.iter().map(|t| parse(t)).collect::<Result<_, _>>()?),
        })
    }
}

impl ListenAddresses {
    pub fn to_vec(&self) -> Vec<Multiaddr> {
        match self {
            ListenAddresses::One(a) => vec![a.clone()],
            ListenAddresses::Many(v) => v.clone(),
        }
    }
}

/// Settings of one HTTP API (`api.restapi`, `api.pinsvcapi`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where to listen: `/ip4/…/tcp/PORT` or `/ip6/…/tcp/PORT`, one or a list.
    pub http_listen_multiaddress: ListenAddresses,
    /// Longest time to read a request head: from the connection's start for
    /// its first request, from the first byte of the next one on a kept-alive
    /// connection. A fixed deadline: bytes trickling in do not extend it.
    /// The connection is then answered with a bare 408 and closed.
    pub read_header_timeout: Duration,
    /// Time allowed to read a request body, counted from its head; each byte
    /// received adds `1 / min_body_bytes_per_second` to it. Past it the
    /// request is answered with 408 and the connection closed.
    pub read_body_timeout: Duration,
    /// The slowest upload rate that keeps a body's deadline moving, in bytes
    /// per second (long `/add` uploads need it); "0" = `read_body_timeout`
    /// is a fixed deadline for every body.
    pub min_body_bytes_per_second: u64,
    /// How long an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// Connections open at once on each listen address (all workers
    /// together); more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Requests per authenticated user (token bucket); beyond it 429 with
    /// `Retry-After`.
    pub rate_limit_per_user: RateLimit,
    /// Requests per client address (IPv6: per /64), authenticated or not,
    /// counted before authentication; beyond it 429 with `Retry-After`.
    pub rate_limit_per_address: RateLimit,
    /// Failed authentications per client address (IPv6: per /64); beyond it
    /// every request of that address that needs authentication gets 429
    /// until the bucket refills, so passwords cannot be guessed quickly.
    pub rate_limit_auth_failures: RateLimit,
    /// Largest request head (request line and headers), in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Largest JSON request body, in bytes; larger ones get 413. Request
    /// bodies with a `Content-Encoding` other than `identity` get 415.
    pub max_body_bytes: usize,
    /// Largest upload to the REST API's `/add` (all parts together), in bytes;
    /// larger ones are cut off with 413. Uploads stream to disk, so this bounds
    /// disk use, not memory.
    pub max_upload_bytes: u64,
    /// Users and their passwords; `null` turns authentication off. `{}` is refused.
    pub basic_auth_credentials: Option<BTreeMap<String, String>>,
    /// Lifetime of tokens minted by `POST /token`; "0s" = tokens without `exp`.
    pub token_ttl: Duration,
    /// Lets an API without credentials listen on a non-loopback address.
    pub allow_unauthenticated: bool,
    /// Headers added to every response: name to list of values.
    pub headers: BTreeMap<String, Vec<String>>,
    /// CORS: origins allowed to call the API; `"*"` for any.
    pub cors_allowed_origins: Vec<String>,
    /// CORS: methods allowed in cross-origin requests.
    pub cors_allowed_methods: Vec<String>,
    /// CORS: request headers allowed in cross-origin requests.
    pub cors_allowed_headers: Vec<String>,
    /// CORS: response headers scripts may read.
    pub cors_exposed_headers: Vec<String>,
    /// CORS: whether credentials may be sent cross-origin.
    pub cors_allow_credentials: bool,
    /// CORS: how long browsers may cache a preflight answer; "0s" = not sent.
    pub cors_max_age: Duration,
}

impl ApiConfig {
    pub fn with_port(port: u16) -> ApiConfig {
        let address = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap_or_else(|_| Multiaddr::empty());
        ApiConfig { http_listen_multiaddress: ListenAddresses::One(address), ..ApiConfig::default() }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            http_listen_multiaddress: ListenAddresses::Many(Vec::new()),
            read_header_timeout: Duration::from_secs(5),
            read_body_timeout: Duration::from_secs(30),
            min_body_bytes_per_second: 4096,
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            rate_limit_per_user: RateLimit { per_second: 200.0, burst: 1000 },
            rate_limit_per_address: RateLimit { per_second: 400.0, burst: 2000 },
            rate_limit_auth_failures: RateLimit { per_second: 1.0, burst: 100 },
            max_header_bytes: 8192,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 64 * 1024 * 1024 * 1024,
            basic_auth_credentials: None,
            token_ttl: Duration::from_secs(0),
            allow_unauthenticated: false,
            headers: BTreeMap::new(),
            cors_allowed_origins: vec!["*".into()],
            cors_allowed_methods: ["GET", "POST", "DELETE"].map(String::from).to_vec(),
            cors_allowed_headers: ["Authorization", "Content-Type"].map(String::from).to_vec(),
            cors_exposed_headers: [
                "Content-Type",
                "X-Stream-Output",
                "X-Chunked-Output",
                "X-Content-Length",
                "X-Request-Id",
            ]
            .map(String::from)
            .to_vec(),
            cors_allow_credentials: true,
            cors_max_age: Duration::from_secs(0),
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second; "0" = no limit.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit { per_second: 0.0, burst: 1 };

    /// Whether the limit applies at all.
    pub fn is_on(&self) -> bool {
        self.per_second > 0.0
    }
}

/// The `ipfs` section: the embedded IPFS node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpfsConfig {
    /// Swarm listen addresses of the embedded IPFS node. Port 4011 by
    /// default, beside a Kubo node's 4001 on the same host.
    pub listen_multiaddress: Vec<Multiaddr>,
    /// Addresses to announce to peers and return as `delegates`; empty = the
    /// dialable listen addresses.
    pub announce_multiaddress: Vec<Multiaddr>,
    /// DHT bootstrap peers (with `/p2p/<id>`; `/dnsaddr/` names are
    /// resolved). The default is the public IPFS (Amino) DHT's list, as Kubo
    /// ships it; `[]` keeps the node off the public DHT. With a swarm key the
    /// default list is dropped (it cannot reach a private network).
    pub bootstrap: Vec<Multiaddr>,
    /// Whether the node answers DHT queries: "auto" (the public DHT once the
    /// node has a confirmed public address, as Kubo's `auto`; the LAN DHT
    /// always), "client" (never: behind a NAT) or "server" (always).
    pub dht_mode: DhtMode,
    /// A private network's key in Kubo's `swarm.key` format; the node then
    /// speaks only to peers with the same key, over TCP. Empty = the public
    /// network.
    pub swarm_key_file: String,
    /// What is announced to the DHT and re-announced on a schedule.
    pub reprovider: ReproviderConfig,
    /// A pin fails when no block arrives for this long.
    pub pin_timeout: Duration,
    /// Largest DAG a pin may fetch, in bytes; "0" = no limit.
    pub max_dag_size: u64,
    /// Most blocks wanted from the network at once, per pin.
    pub max_outstanding_wants: usize,
}

impl Default for IpfsConfig {
    fn default() -> Self {
        IpfsConfig {
            listen_multiaddress: ["/ip4/0.0.0.0/tcp/4011"].iter().filter_map(|a| a.parse().ok()).collect(),
            announce_multiaddress: Vec::new(),
            bootstrap: amino_bootstrap(),
            dht_mode: DhtMode::Auto,
            swarm_key_file: String::new(),
            reprovider: ReproviderConfig::default(),
            pin_timeout: Duration::from_secs(120),
            max_dag_size: 1 << 40,
            max_outstanding_wants: 256,
        }
    }
}

/// The public IPFS DHT's bootstrap peers, as Kubo ships them (boxo's
/// fallback list).
pub fn amino_bootstrap() -> Vec<Multiaddr> {
    [
        "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
        "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
        "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
        "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
        "/dnsaddr/va1.bootstrap.libp2p.io/p2p/12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8",
        "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
        "/ip4/104.131.131.82/udp/4001/quic-v1/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

/// `ipfs.dht_mode`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DhtMode {
    #[default]
    Auto,
    Client,
    Server,
}

/// `ipfs.reprovider.strategy`, Kubo's names.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReprovideStrategy {
    /// The root CID of every pin this peer holds.
    #[default]
    Roots,
    /// Every block of every pin this peer holds.
    All,
    /// Nothing is announced.
    None,
}

/// The `ipfs.reprovider` section: announcing what this peer keeps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReproviderConfig {
    /// "roots" (default), "all" or "none". A pin is announced when it
    /// reaches `pinned`, and again on every run.
    pub strategy: ReprovideStrategy,
    /// Time between the starts of two runs over everything held (Kubo: 22h;
    /// DHT records live 48h); "0s" = announce new pins only.
    pub interval: Duration,
    /// Most announcements started per second, so a large pinset is spread
    /// over the interval instead of starving pinning.
    pub max_per_second: u32,
    /// Most announcements in flight at once.
    pub concurrency: usize,
}

impl Default for ReproviderConfig {
    fn default() -> Self {
        ReproviderConfig {
            strategy: ReprovideStrategy::Roots,
            interval: Duration::from_secs(22 * 3600),
            max_per_second: 100,
            concurrency: 16,
        }
    }
}

/// The `pin_tracker` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// How many pins are fetched at the same time.
    pub concurrent_pins: usize,
    /// Most pins waiting in the queue; beyond it pins stay `queued` on disk and
    /// are picked up when the queue drains.
    pub max_pin_queue_size: usize,
    /// How many times a failed pin is retried before it stays `failed`.
    pub max_retries: u32,
    /// Wait before the first retry; doubled at each further one.
    pub retry_backoff: Duration,
    /// How often unreferenced blocks are collected; "0s" = only on request.
    pub gc_interval: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            concurrent_pins: 10,
            max_pin_queue_size: 100_000,
            max_retries: 3,
            retry_backoff: Duration::from_secs(30),
            gc_interval: Duration::from_secs(600),
        }
    }
}

/// The `state` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Memory the pinset database may use as cache, in bytes (sled's own
    /// accounting; the heap it takes is about twice that). Small on purpose:
    /// sled's file stays in the OS page cache, so a miss costs a read and a
    /// decode, not a disk seek, and a walk over the whole pinset (a REST
    /// stream) only churns this much memory. Inserts into pinsets of 100k
    /// pins and more gain from a bigger cache (about 15 % at 64 MiB).
    pub cache_capacity: u64,
    /// Bytes kept free on the filesystem of the data folder, in bytes. Below
    /// it, new pins are refused (HTTP 507) and blocks are no longer stored
    /// (a pin being fetched fails with "no space left"); below half of it,
    /// every write is refused, so that the pinset database and the Raft log
    /// never meet a full disk. Writes resume by themselves once space is
    /// freed. `null`: 1 % of the filesystem, at least 64 MiB and at most
    /// 1 GiB. `0` turns the guard off.
    pub min_free_space: Option<u64>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { cache_capacity: 16 * 1024 * 1024, min_free_space: None }
    }
}

/// The `observations` section: what an operator sees of the peer
/// (Cluster's `observations`, with Prometheus on by default and OTLP in
/// place of Jaeger).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ObservationsConfig {
    /// Serve `GET /metrics` in the Prometheus text format.
    pub enable_metrics: bool,
    /// Where `/metrics` is served: `null` = on the REST API listener (open
    /// when it listens on loopback only, else behind its credentials); an
    /// address = a listener of its own, without authentication (loopback
    /// unless `metrics_allow_unauthenticated`).
    pub metrics_listen_multiaddress: Option<Multiaddr>,
    /// Serve `/metrics` without credentials on any address.
    pub metrics_allow_unauthenticated: bool,
    /// How often the gauges (pins by status, queue, peers, disk, Raft) and
    /// the dashboard's history are sampled.
    pub reporting_interval: Duration,
    /// `text` (human-readable) or `json` (one object per line) logs.
    pub log_format: LogFormat,
    /// OTLP over HTTP endpoint that receives traces, e.g.
    /// `http://127.0.0.1:4318/v1/traces`; empty = no export.
    pub otlp_endpoint: String,
    /// The service name traces are exported under.
    pub service_name: String,
    /// Share of requests traced when exporting, 0 to 1.
    pub sampling_ratio: f64,
}

impl Default for ObservationsConfig {
    fn default() -> Self {
        ObservationsConfig {
            enable_metrics: true,
            metrics_listen_multiaddress: None,
            metrics_allow_unauthenticated: false,
            reporting_interval: Duration::from_secs(10),
            log_format: LogFormat::Text,
            otlp_endpoint: String::new(),
            service_name: "pincluster".into(),
            sampling_ratio: 1.0,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
