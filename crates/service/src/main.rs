//! `pincluster-service`: the daemon binary. `init` writes a config folder,
//! `daemon` (the default) runs the APIs over the pinset, `state export` and
//! `state import` back up and restore the shared pinset. Read [`Command`] first.

mod cluster;
mod daemon;
mod observe;
mod reload;
mod space;
mod statefile;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pincluster-service", version, about = "A pinning peer for IPFS")]
struct Cli {
    /// The config folder [default: $PINCLUSTER_PATH, or ~/.pincluster].
    #[arg(long, short = 'c', global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write service.json (defaults, a generated password) and identity.json.
    Init {
        /// Rewrite an existing service.json; identity.json is never rewritten.
        #[arg(long, short = 'f')]
        force: bool,
        /// The cluster's first members, comma-separated cluster multiaddresses
        /// ending in /p2p/<peer id> (as `ipfs-cluster-service init --peers`);
        /// give every first peer the same list and the same `cluster.secret`.
        #[arg(long, value_delimiter = ',', value_name = "MULTIADDRS")]
        peers: Vec<multiaddr::Multiaddr>,
    },
    /// Run the peer; initialises the config folder first when it is empty.
    Daemon(daemon::DaemonArgs),
    /// Back up or restore the shared pinset as newline-delimited JSON (the daemon must be stopped).
    #[command(subcommand)]
    State(statefile::StateCommand),
}

fn config_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("PINCLUSTER_PATH").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither --config-dir, PINCLUSTER_PATH nor HOME is set")?;
    Ok(PathBuf::from(home).join(".pincluster"))
}

fn main() {
    let cli = Cli::parse();
    // The daemon sets up its logs once its config is read (format, trace export).
    let daemon = matches!(cli.command, None | Some(Command::Daemon(_)));
    let _logging = if daemon {
        None
    } else {
        match observe::init_logging(None) {
            Ok(logging) => Some(logging),
            Err(error) => {
                eprintln!("pincluster-service: {error:#}");
                std::process::exit(1);
            }
        }
    };
    let result = config_dir(cli.config_dir).and_then(|dir| match cli.command {
        Some(Command::Init { force, peers }) => init(&dir, force, &peers),
        Some(Command::Daemon(args)) => daemon::run(&dir, args),
        Some(Command::State(command)) => statefile::run(&dir, command),
        None => daemon::run(&dir, daemon::DaemonArgs::default()),
    });
    if let Err(error) = result {
        eprintln!("pincluster-service: {error:#}");
        std::process::exit(1);
    }
}

fn init(dir: &std::path::Path, force: bool, peers: &[multiaddr::Multiaddr]) -> anyhow::Result<()> {
    if !force && dir.join(pincluster_config::CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} already exists; use --force to rewrite it (identity.json is kept)",
            dir.join(pincluster_config::CONFIG_FILE).display()
        );
    }
    if let Some(bad) = peers.iter().find(|a| !matches!(a.iter().last(), Some(multiaddr::Protocol::P2p(_)))) {
        anyhow::bail!("--peers {bad}: each peer's cluster address must end with /p2p/<peer id>");
    }
    let report = pincluster_config::init_with(dir, force, peers)?;
    println!("config folder {} initialised; peer ID {}", dir.display(), report.peer_id);
    if !report.identity_written {
        println!("kept the existing identity.json");
    }
    println!("the password of user \"admin\" is in {}", dir.join(pincluster_config::CONFIG_FILE).display());
    Ok(())
}
