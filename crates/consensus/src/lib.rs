//! The cluster's shared pinset as a Raft state machine, on openraft 0.9: every
//! peer applies the same log of [`Command`] batches to its own pinset. Read
//! [`TypeConfig`] and [`Batch`] first, then `store.rs` (the log and vote),
//! `machine.rs` (applying entries, snapshots) and `node.rs` (the running
//! peer, proposing and RPCs). The only crate importing openraft.
//!
//! # Layout on disk
//!
//! The Raft log and vote are in the pinset's database (a tree of their own,
//! through [`pincluster_state::LogStore`]); the state machine's last applied
//! log id and membership are stored with every applied entry, in the same
//! batch ([`pincluster_state::Pinset::apply_entry`]'s `meta`); snapshots are
//! files under the data folder, streamed, never held in memory whole.
//!
//! # Indices
//!
//! Raft's first entry has index 0; the pinset counts applied entries from 1
//! and may already hold entries from before it joined a log (a single peer's
//! own log). A pinset index is therefore `base + raft index + 1`, where
//! `base` is the pinset's applied index when this log began; it is kept in
//! the stored meta.

// openraft's traits fix their error type (`StorageError`, over 200 bytes);
// this crate's helpers return the same one.
#![allow(clippy::result_large_err)]

mod machine;
mod node;
mod store;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use machine::{detach, AppliedBatch, Results, StateMachine};
pub use node::{node_id, Consensus, ConsensusError, ConsensusOptions, PeerMetrics, PeerView, Role, MAX_BATCH_COMMANDS};
pub use openraft;
pub use store::LogStorage;

use pincluster_state::{Command, StateError};

/// A peer's number in the Raft membership, derived from its peer ID.
pub type NodeId = u64;

/// What the membership records of each peer: enough to reach it and show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The peer's libp2p peer ID (base58), which it proves on every connection.
    pub peer_id: String,
    /// The peer's name (`cluster.peername`).
    pub name: String,
    /// Where to dial the peer's cluster port.
    pub addrs: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.peer_id)
    }
}

/// The payload of one log entry: commands proposed together, in order.
///
/// `origin` and `seq` name the proposal, so that the peer that proposed it
/// (directly or through the leader) hands the results of applying it to the
/// caller waiting on its own copy of the state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The peer whose callers wait for this batch.
    pub origin: NodeId,
    /// That peer's number for the proposal.
    pub seq: u64,
    /// Each command in [`Command::encode`]'s versioned form.
    pub commands: Vec<Vec<u8>>,
}

impl Batch {
    /// A batch of `commands` for `origin`'s proposal `seq`.
    pub fn new(origin: NodeId, seq: u64, commands: &[Command]) -> Result<Batch, StateError> {
        let commands = commands.iter().map(Command::encode).collect::<Result<_, _>>()?;
        Ok(Batch { origin, seq, commands })
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch {}:{} of {} commands", self.origin, self.seq, self.commands.len())
    }
}

/// What applying an entry answers to `client_write`: the pinset index it
/// reached. The results themselves reach the proposer through the state
/// machine (see [`Batch`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The pinset's applied index after the entry.
    pub index: u64,
}

openraft::declare_raft_types!(
    /// The types of pincluster's Raft: batches of commands applied to the
    /// pinset, members named by peer ID, snapshots in files.
    pub TypeConfig:
        D = Batch,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft storage error of this crate's types.
pub type StorageError = openraft::StorageError<NodeId>;

/// A storage error of `subject` while doing `verb`, for openraft.
fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    error: &(impl std::error::Error + 'static),
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(error)).into()
}

/// Encodes a value of the log's own types (entries, vote, log ids) with postcard.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes what [`encode`] wrote.
fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
