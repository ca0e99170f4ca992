//! `pincluster-ctl`: the command-line client of pincluster's REST API, shaped
//! like `ipfs-cluster-ctl`. Read [`Command`] first; HTTP is in `client.rs`,
//! the text output in `text.rs`.

mod add;
mod client;
mod text;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::Value;

use client::{Auth, Client};

/// Command-line client of a pincluster peer's REST API.
#[derive(Parser)]
#[command(name = "pincluster-ctl", version, about)]
struct Cli {
    /// The REST API: a multiaddress (/ip4/127.0.0.1/tcp/9094) or a URL.
    #[arg(long, global = true, default_value = "/ip4/127.0.0.1/tcp/9094")]
    host: String,
    /// Basic auth credentials, USER:PASSWORD.
    #[arg(long, global = true, value_name = "USER:PASSWORD")]
    basic_auth: Option<String>,
    /// A bearer token (from `pincluster-ctl token`).
    #[arg(long, global = true, conflicts_with = "basic_auth")]
    token: Option<String>,
    /// Output encoding.
    #[arg(long, global = true, value_enum, default_value_t = Encoding::Text)]
    enc: Encoding,
    /// Seconds to wait for any one request.
    #[arg(long, global = true, default_value_t = 120)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Encoding {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Shows this peer's identity.
    Id,
    /// Shows the peer's version.
    Version,
    /// Lists and manages cluster peers.
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Pins, unpins, lists and updates pins.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Adds files or directories to the peer's IPFS node and pins them.
    Add(add::AddArgs),
    /// Shows the status of pins: all, or the CIDs given.
    Status {
        /// CIDs to show; none for every pin.
        cids: Vec<String>,
        /// Only pins in these tracker statuses (CSV, e.g. pinned,pin_error).
        #[arg(long)]
        filter: Option<String>,
        /// Only this peer's view.
        #[arg(long)]
        local: bool,
    },
    /// Queues failed pins again: one CID, or all of them.
    Recover {
        cid: Option<String>,
        /// Only on this peer.
        #[arg(long)]
        local: bool,
    },
    /// Gets a bearer token for the authenticated user.
    Token,
    /// Checks the peer's health, or shows the graph, alerts, metrics or bandwidth.
    Health {
        #[command(subcommand)]
        what: Option<HealthCommand>,
    },
}

#[derive(Subcommand)]
enum PeersCommand {
    /// Lists the peers of the cluster: name, addresses, role and health.
    Ls,
    /// Moves a peer's pins to the other peers, then removes it from the cluster.
    Rm {
        /// The peer ID.
        peer: String,
    },
}

#[derive(clap::Args)]
struct PinFlags {
    /// The pin's name.
    #[arg(long, short = 'n')]
    name: Option<String>,
    /// Sets both replication factors (-1 = every peer).
    #[arg(long, allow_negative_numbers = true)]
    replication: Option<i32>,
    /// The minimum replication factor.
    #[arg(long, allow_negative_numbers = true)]
    replication_min: Option<i32>,
    /// The maximum replication factor.
    #[arg(long, allow_negative_numbers = true)]
    replication_max: Option<i32>,
    /// Peers to allocate the pin to first (CSV of peer IDs).
    #[arg(long)]
    allocations: Option<String>,
    /// Unpin automatically after this long (Go duration: 90s, 1h30m).
    #[arg(long)]
    expire_in: Option<String>,
    /// Metadata entries, KEY=VALUE; repeat for several.
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// recursive or direct.
    #[arg(long)]
    mode: Option<String>,
    /// Origins to fetch from first (CSV of multiaddresses with /p2p/).
    #[arg(long)]
    origins: Option<String>,
    /// Do not show the status afterwards.
    #[arg(long)]
    no_status: bool,
    /// Wait until the pin is pinned (or failed).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    wait_timeout: u64,
}

#[derive(Subcommand)]
enum PinCommand {
    /// Pins a CID (or /ipfs/CID path) for the authenticated user.
    Add {
        cid: String,
        /// Same as --replication.
        #[arg(short = 'r', value_name = "N", allow_negative_numbers = true, conflicts_with = "replication")]
        replication_short: Option<i32>,
        /// Same as --wait.
        #[arg(short = 'w')]
        wait_short: bool,
        #[command(flatten)]
        flags: PinFlags,
    },
    /// Unpins a CID (for every holder).
    Rm {
        cid: String,
        /// Do not show the status afterwards.
        #[arg(long)]
        no_status: bool,
    },
    /// Lists the pinset, or one pin.
    Ls { cid: Option<String> },
    /// Pins TO with the options of FROM; FROM stays pinned.
    Update {
        from: String,
        to: String,
        /// The new pin's name.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Unpin TO automatically after this long.
        #[arg(long)]
        expire_in: Option<String>,
        /// Do not show the status afterwards.
        #[arg(long)]
        no_status: bool,
    },
}

#[derive(Subcommand)]
enum HealthCommand {
    /// The connection graph of the cluster.
    Graph,
    /// Peers that stopped sending metrics.
    Alerts,
    /// Metric names, or the values of one metric.
    Metrics { name: Option<String> },
    /// Bandwidth per protocol.
    Bandwidth,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn auth(cli: &Cli) -> anyhow::Result<Auth> {
    if let Some(pair) = &cli.basic_auth {
        let Some((user, password)) = pair.split_once(':') else {
            bail!("--basic-auth must be USER:PASSWORD");
        };
        return Ok(Auth::Basic { user: user.to_string(), password: password.to_string() });
    }
    Ok(cli.token.clone().map_or(Auth::None, Auth::Bearer))
}

/// Prints one value in the chosen encoding.
fn show(enc: Encoding, value: &Value, text: impl Fn(&Value) -> String) -> anyhow::Result<()> {
    match enc {
        Encoding::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Encoding::Text => println!("{}", text(value)),
    }
    Ok(())
}

/// Prints a stream: a JSON array, or one text entry per item as it arrives.
fn show_stream(
    client: &Client,
    enc: Encoding,
    method: Method,
    path: &str,
    query: &[(String, String)],
    text: impl Fn(&Value) -> String,
) -> anyhow::Result<()> {
    let mut all = Vec::new();
    client.stream(method, path, query, |value| {
        match enc {
            Encoding::Json => all.push(value),
            Encoding::Text => println!("{}", text(&value)),
        }
        Ok(())
    })?;
    if enc == Encoding::Json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// `/pins/CID`, or `/pins/ipfs/…` for a path.
fn pin_path(arg: &str) -> String {
    match arg.strip_prefix('/') {
        Some(path) => format!("/pins/{path}"),
        None => format!("/pins/{arg}"),
    }
}

/// The CID a `pin add|rm` argument names, for the status shown afterwards.
fn status_cid(arg: &str) -> &str {
    let trimmed = arg.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some(("ipfs" | "ipld", rest)) if !rest.contains('/') => rest,
        _ => arg,
    }
}

fn pin_query(flags: &PinFlags) -> anyhow::Result<Vec<(String, String)>> {
    let mut query = Vec::new();
    let mut put = |k: &str, v: String| query.push((k.to_string(), v));
    if let Some(name) = &flags.name {
        put("name", name.clone());
    }
    if let Some(r) = flags.replication {
        put("replication", r.to_string());
    }
    if let Some(r) = flags.replication_min {
        put("replication-min", r.to_string());
    }
    if let Some(r) = flags.replication_max {
        put("replication-max", r.to_string());
    }
    if let Some(a) = &flags.allocations {
        put("user-allocations", a.clone());
    }
    if let Some(e) = &flags.expire_in {
        put("expire-in", e.clone());
    }
    if let Some(m) = &flags.mode {
        put("mode", m.clone());
    }
    if let Some(o) = &flags.origins {
        put("origins", o.clone());
    }
    for entry in &flags.metadata {
        let Some((key, value)) = entry.split_once('=') else {
            bail!("--metadata {entry:?} must be KEY=VALUE");
        };
        put(&format!("meta-{key}"), value.to_string());
    }
    Ok(query)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let base = client::api_url(&cli.host)?;
    let client = Client::new(base, auth(&cli)?, Duration::from_secs(cli.timeout))?;
    let enc = cli.enc;
    let none: &[(String, String)] = &[];
    match cli.command {
        Command::Id => show(enc, &client.call(Method::GET, "/id", none, None)?, text::id),
        Command::Version => show(enc, &client.call(Method::GET, "/version", none, None)?, |v| {
            v["version"].as_str().unwrap_or_default().to_string()
        }),
        Command::Peers(PeersCommand::Ls) => show_stream(&client, enc, Method::GET, "/peers", none, text::id),
        Command::Peers(PeersCommand::Rm { peer }) => {
            client.call(Method::DELETE, &format!("/peers/{peer}"), none, None)?;
            eprintln!("peer {peer}: its pins moved to other peers, and it left the cluster");
            Ok(())
        }
        Command::Pin(PinCommand::Add { cid, replication_short, wait_short, mut flags }) => {
            flags.replication = flags.replication.or(replication_short);
            flags.wait |= wait_short;
            let query = pin_query(&flags)?;
            let pin = client.call(Method::POST, &pin_path(&cid), &query, None)?;
            let cid = pin["cid"].as_str().map_or_else(|| status_cid(&cid).to_string(), str::to_string);
            after_pin(&client, enc, &cid, &pin, flags.no_status, flags.wait.then_some(flags.wait_timeout))
        }
        Command::Add(args) => add::run(&client, enc, args),
        Command::Pin(PinCommand::Rm { cid, no_status }) => {
            let pin = client.call(Method::DELETE, &pin_path(&cid), none, None)?;
            let cid = pin["cid"].as_str().map_or_else(|| status_cid(&cid).to_string(), str::to_string);
            after_pin(&client, enc, &cid, &pin, no_status, None)
        }
        Command::Pin(PinCommand::Ls { cid: Some(cid) }) => {
            show(enc, &client.call(Method::GET, &format!("/allocations/{cid}"), none, None)?, text::pin)
        }
        Command::Pin(PinCommand::Ls { cid: None }) => {
            show_stream(&client, enc, Method::GET, "/allocations", none, text::pin)
        }
        Command::Pin(PinCommand::Update { from, to, name, expire_in, no_status }) => {
            let mut query = vec![("pin-update".to_string(), from)];
            if let Some(name) = name {
                query.push(("name".into(), name));
            }
            if let Some(e) = expire_in {
                query.push(("expire-in".into(), e));
            }
            let pin = client.call(Method::POST, &pin_path(&to), &query, None)?;
            after_pin(&client, enc, status_cid(&to), &pin, no_status, None)
        }
        Command::Status { cids, filter, local } => {
            let mut query = Vec::new();
            if local {
                query.push(("local".to_string(), "true".to_string()));
            }
            if let Some(filter) = filter {
                query.push(("filter".to_string(), filter));
            }
            if !cids.is_empty() {
                query.push(("cids".to_string(), cids.join(",")));
            }
            show_stream(&client, enc, Method::GET, "/pins", &query, text::status)
        }
        Command::Recover { cid, local } => {
            let query: Vec<(String, String)> = if local { vec![("local".into(), "true".into())] } else { Vec::new() };
            match cid {
                Some(cid) => {
                    show(enc, &client.call(Method::POST, &format!("/pins/{cid}/recover"), &query, None)?, text::status)
                }
                None => show_stream(&client, enc, Method::POST, "/pins/recover", &query, text::status),
            }
        }
        Command::Token => show(enc, &client.call(Method::POST, "/token", none, None)?, |v| {
            v["token"].as_str().unwrap_or_default().to_string()
        }),
        Command::Health { what: None } => {
            client.call(Method::GET, "/health", none, None)?;
            show(enc, &serde_json::json!({ "healthy": true }), |_| "ok".to_string())
        }
        Command::Health { what: Some(HealthCommand::Graph) } => {
            show(enc, &client.call(Method::GET, "/health/graph", none, None)?, text::graph)
        }
        Command::Health { what: Some(HealthCommand::Alerts) } => {
            show(enc, &client.call(Method::GET, "/health/alerts", none, None)?, text::alerts)
        }
        Command::Health { what: Some(HealthCommand::Metrics { name: None }) } => {
            show(enc, &client.call(Method::GET, "/monitor/metrics", none, None)?, text::lines)
        }
        Command::Health { what: Some(HealthCommand::Metrics { name: Some(name) }) } => {
            show(enc, &client.call(Method::GET, &format!("/monitor/metrics/{name}"), none, None)?, text::metrics)
        }
        Command::Health { what: Some(HealthCommand::Bandwidth) } => {
            show(enc, &client.call(Method::GET, "/health/bandwidth", none, None)?, text::bandwidth)
        }
    }
}

/// After a pin change: the status (optionally once settled), or the pin itself.
fn after_pin(
    client: &Client,
    enc: Encoding,
    cid: &str,
    pin: &Value,
    no_status: bool,
    wait: Option<u64>,
) -> anyhow::Result<()> {
    if no_status {
        return show(enc, pin, text::pin);
    }
    let path = format!("/pins/{cid}");
    let mut status = client.call(Method::GET, &path, &[], None)?;
    if let Some(limit) = wait {
        let started = Instant::now();
        while !text::settled(&status) {
            if limit > 0 && started.elapsed() > Duration::from_secs(limit) {
                bail!("{cid} is still not pinned after {limit}s: {}", text::status_names(&status));
            }
            std::thread::sleep(Duration::from_millis(500));
            status = client.call(Method::GET, &path, &[], None).context("while waiting for the pin")?;
        }
        if text::status_names(&status).contains("error") {
            show(enc, &status, text::status)?;
            bail!("{cid} failed to pin");
        }
    }
    show(enc, &status, text::status)
}
