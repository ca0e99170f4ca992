//! The embedded IPFS node of pincluster: read [`Node`] first.
//!
//! This is the only crate that imports libp2p. The engine is `rust-ipfs` (a libp2p swarm with
//! TCP/QUIC, noise, yamux, identify, ping and Kademlia, plus a flat-file block store and pin
//! records); everything it exposes stays behind [`Node`]'s small API so the engine can be replaced
//! without touching the tracker.
//!
//! What this crate adds on top of the engine:
//! - its own Bitswap 1.2 client and server on libp2p streams (`bitswap`), because the engine's
//!   drops responses when Kubo answers several wants at once (see that module);
//! - its own DAG walk for pins ([`Node::pin`]): a bounded window of outstanding wants, progress
//!   reports, a stall timeout and a maximum DAG size; blocks already on disk are not fetched again;
//! - block writes without one fsync per block (`blockfile`): a pin's fetched blocks are synced
//!   together, in parallel, before the pin is recorded;
//! - its own garbage collector ([`Node::gc`]) that compares blocks by multihash (a CIDv0 pin keeps
//!   the blocks stored under their CIDv1 names) and never removes a block an in-progress pin or
//!   import has seen, nor the local DAGs of the extra roots it is given;
//! - UnixFS import ([`Node::importer`], Kubo's CIDs for the same file and options) and CAR import
//!   ([`Node::car_importer`], every block hash-checked) for `/add`;
//! - reads that never reach the network ([`Node::local_block`], [`Node::is_pinned_block`],
//!   [`block_links`]) for the HTTP gateway.
//!
//! CIDs are the `cid` 0.11 crate's type, the same one `pincluster-model` re-exports.

mod bitswap;
mod blockfile;
mod bootstrap;
mod car;
mod dht;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod gc;
mod import;
mod local;
pub mod metrics;
mod node;
mod sink;
mod varint;
mod walk;

pub use bitswap::Traffic;
pub use blockfile::set_block_reserve;
pub use bytes::Bytes;
pub use car::{CarImporter, MAX_CAR_BLOCK};
pub use dht::{DhtMode, DhtStatus};
pub use error::{IpfsError, ProvidersFound, Stall};
pub use gc::{GcStats, RepoStat};
pub use import::{AddedEntry, ImportOptions, Imported, Importer, MAX_CHUNK_SIZE};
pub use local::block_links;
pub use node::{Node, NodeOptions};
pub use sink::ImportProtection;
pub use walk::{DagStats, FetchOptions};

/// Aborts a background task when dropped, however its owner ends.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
