//! Why an operation of the embedded node failed: [`IpfsError`].

use std::time::Duration;

use cid::Cid;
use multiaddr::Multiaddr;

/// Every way the embedded node can fail. The texts are meant for `status_details`: they say what
/// happened without leaking secrets.
#[derive(Debug, thiserror::Error)]
pub enum IpfsError {
    /// The identity key could not be decoded.
    #[error("invalid node identity key: {0}")]
    Identity(String),
    /// The engine refused to start (for example, the repo is locked by another process).
    #[error("IPFS node failed to start: {0}")]
    Start(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    /// A dial failed or did not finish in time.
    #[error("cannot connect to {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    /// No block arrived for the whole stall timeout.
    #[error("{0}")]
    Stalled(Box<Stall>),
    /// The DAG is larger than the configured maximum.
    #[error("DAG of {cid} exceeds the maximum size of {max_bytes} bytes")]
    TooLarge { cid: Cid, max_bytes: u64 },
    /// A block arrived but its content cannot be decoded for its links.
    #[error("block {cid} cannot be decoded: {reason}")]
    Decode { cid: Cid, reason: String },
    /// Import options out of range (chunk size, CID version).
    #[error("invalid import options: {0}")]
    InvalidOptions(String),
    /// A file or directory path of an import is not acceptable.
    #[error("invalid import path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// An import was used out of order or its directory tree could not be built.
    #[error("import failed: {0}")]
    Import(String),
    /// A CAR stream is malformed, truncated, too large or has a block that does not match its
    /// CID.
    #[error("invalid CAR: {0}")]
    Car(String),
    /// The block store or pin store failed.
    #[error("block store error: {0}")]
    Store(String),
    /// A block file could not be written (the cause is kept, so that a full disk is told apart).
    #[error("cannot write block {cid}: {source}")]
    WriteBlock {
        cid: Cid,
        #[source]
        source: std::io::Error,
    },
    /// The block store's filesystem has less free space than the reserve kept for the pinset
    /// (see [`crate::set_block_reserve`]), or the disk itself is full: the walk stops.
    #[error(
        "no space left for blocks: {available} bytes free, below the reserve of {reserve} bytes; \
         {blocks} block(s), {bytes} bytes were in store before giving up"
    )]
    NoSpace { available: u64, reserve: u64, blocks: u64, bytes: u64 },
}

impl IpfsError {
    /// Whether the disk is too full for the operation: it may work once space is freed.
    pub fn is_no_space(&self) -> bool {
        match self {
            IpfsError::NoSpace { .. } => true,
            IpfsError::WriteBlock { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
            }
            _ => false,
        }
    }

    pub(crate) fn store(error: impl std::fmt::Display) -> IpfsError {
        IpfsError::Store(error.to_string())
    }
}

/// Where a fetch stood when no block had arrived for the whole stall timeout (boxed in
/// [`IpfsError::Stalled`], so that every `Result` of the node stays small).
#[derive(Debug, thiserror::Error)]
#[error(
    "no progress for {}s: no peer sent the {waiting} block(s) still wanted \
     (first: {first_wanted}){}; {blocks} block(s), {bytes} bytes were in store before giving up",
    stalled_for.as_secs(),
    providers.map(|p| format!("; {p}")).unwrap_or_default()
)]
pub struct Stall {
    pub stalled_for: Duration,
    pub waiting: usize,
    pub first_wanted: Cid,
    pub blocks: u64,
    pub bytes: u64,
    /// What the DHT lookup for the root found, when one ran.
    pub providers: Option<ProvidersFound>,
}

/// What a pin's DHT provider lookup had found when the pin gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvidersFound {
    /// The node knows no DHT peer to ask (no bootstrap peer reachable).
    NoDhtPeers,
    /// The lookup was still running, with this many providers so far.
    Searching(usize),
    /// The lookup ended with this many providers.
    Done(usize),
}

impl std::fmt::Display for ProvidersFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProvidersFound::NoDhtPeers => {
                f.write_str("no DHT peer to look for providers (no bootstrap peer reachable)")
            }
            ProvidersFound::Searching(0) | ProvidersFound::Done(0) => {
                f.write_str("no provider found in the DHT and no connected peer has it")
            }
            ProvidersFound::Searching(n) | ProvidersFound::Done(n) => {
                write!(f, "{n} DHT provider(s) found, none of them sent it")
            }
        }
    }
}
