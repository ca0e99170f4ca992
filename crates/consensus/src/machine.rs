//! openraft's state machine over the pinset: applies each entry's batch of
//! commands in one pinset write, stores the applied log id and membership in
//! the same batch, and builds and installs snapshots as files. Read
//! [`StateMachine`] first.
//!
//! Applying is not fsynced: the entry is durable in the log, and after a
//! crash openraft applies again from the stored last applied log id. A
//! snapshot begins only once the pinset is synced, so the log is never
//! purged past what the pinset holds on disk; it is written from the
//! pinset's copy-on-write view while entries go on being applied.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftLogId, SnapshotMeta, StoredMembership};
use pincluster_state::{Applied, Command, Pinset, SnapshotWriter, StateError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::{decode, encode, storage_error, Batch, Member, NodeId, Response, StorageError, TypeConfig};

/// The results of applying one batch, one per command, in order.
pub type Results = Arc<Vec<Result<Applied, StateError>>>;

/// What the state machine did, for whoever acts on it (the tracker).
#[derive(Debug)]
pub enum AppliedBatch {
    /// An entry was applied: its pinset index and each command's result.
    Entry { index: u64, results: Results },
    /// A snapshot replaced the whole shared half at this pinset index: what
    /// is queued or held must be checked against the pinset again.
    Snapshot { index: u64 },
}

/// The log's own record of the state machine, stored with each applied entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Meta {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    /// The pinset's applied index when this log began (see the crate docs).
    base: u64,
}

/// The current snapshot's description, beside its data file.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, Member>,
}

const CURRENT_DATA: &str = "current.snap";
const CURRENT_META: &str = "current.json";
const RECEIVING: &str = "receiving.tmp";

/// Callers waiting for the results of this peer's proposals, by `seq`.
pub(crate) type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Results>>>>;

/// The state machine of one peer.
pub struct StateMachine {
    pinset: Pinset,
    id: NodeId,
    dir: PathBuf,
    meta: Meta,
    waiters: Waiters,
    events: Option<mpsc::Sender<AppliedBatch>>,
}

impl StateMachine {
    /// The state machine of peer `id` over `pinset`, keeping snapshots in
    /// `dir` (created if missing). `events`, when given, receives what every
    /// entry did; applying waits while it is full.
    pub fn open(
        pinset: Pinset,
        id: NodeId,
        dir: impl Into<PathBuf>,
        events: Option<mpsc::Sender<AppliedBatch>>,
    ) -> Result<StateMachine, StorageError> {
        let dir = dir.into();
        fn read_error(e: impl std::error::Error + 'static) -> StorageError {
            storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e)
        }
        std::fs::create_dir_all(&dir).map_err(read_error)?;
        let meta = match pinset.applied_meta().map_err(read_error)? {
            Some(bytes) => decode(&bytes).map_err(read_error)?,
            None => Meta { base: pinset.applied_index().map_err(read_error)?, ..Meta::default() },
        };
        Ok(StateMachine { pinset, id, dir, meta, waiters: Waiters::default(), events })
    }

    pub(crate) fn waiters(&self) -> Waiters {
        Arc::clone(&self.waiters)
    }

    /// Whether the pinset holds entries from before this log began and the
    /// log has applied nothing since: a snapshot must carry them to new peers.
    pub(crate) fn holds_history(&self) -> bool {
        self.meta.base > 0 && self.meta.last_applied.is_none()
    }

    /// The pinset index of a Raft log index.
    fn pinset_index(&self, log_index: u64) -> u64 {
        self.meta.base + log_index + 1
    }

    fn encoded_meta(&self) -> Result<Vec<u8>, StorageError> {
        encode(&self.meta).map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, &e))
    }

    async fn apply_one(&mut self, entry: Entry<TypeConfig>) -> Result<Response, StorageError> {
        let log_id = *entry.get_log_id();
        let index = self.pinset_index(log_id.index);
        self.meta.last_applied = Some(log_id);
        let mut batch = None;
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(b) => batch = Some(b),
            EntryPayload::Membership(m) => self.meta.membership = StoredMembership::new(Some(log_id), m),
        }
        let meta = self.encoded_meta()?;
        let (origin, seq, raw) = match batch {
            Some(Batch { origin, seq, commands }) => (origin, seq, commands),
            None => (0, 0, Vec::new()),
        };
        // A command that does not decode fails alone, at its place, on every peer alike.
        let decoded: Vec<Result<Command, StateError>> = raw.iter().map(|b| Command::decode(b)).collect();
        let commands: Vec<Command> = decoded.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
        let applied = self
            .pinset
            .apply_entry(index, commands, Some(meta), false)
            .await
            .map_err(|e| storage_error(ErrorSubject::Apply(log_id), ErrorVerb::Write, &e))?;
        let mut applied = applied.into_iter();
        let results: Vec<Result<Applied, StateError>> = decoded
            .into_iter()
            .map(|d| match d {
                Ok(_) => applied.next().unwrap_or(Err(StateError::Closed)),
                Err(error) => Err(error),
            })
            .collect();
        let results = Arc::new(results);
        if origin == self.id {
            let waiter = self.waiters.lock().ok().and_then(|mut w| w.remove(&seq));
            if let Some(waiter) = waiter {
                // The caller may have given up waiting.
                let _ = waiter.send(Arc::clone(&results));
            }
        }
        if let Some(events) = &self.events {
            if !results.is_empty() && events.send(AppliedBatch::Entry { index, results }).await.is_err() {
                tracing::debug!("nobody acts on applied entries any more");
            }
        }
        Ok(Response { index })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Detaches `pinset` from its cluster log so that it can be changed offline
/// (`state import`): the log and its snapshots are forgotten, and the next
/// start begins a new log with the pinset as its history. Refused when the
/// peer is one of several members: the others would not see the change.
pub fn detach(pinset: &Pinset, snapshot_dir: &Path) -> Result<(), crate::ConsensusError> {
    let Some(bytes) = pinset.applied_meta()? else { return Ok(()) };
    let meta: Meta = decode(&bytes).map_err(crate::ConsensusError::raft("reading the applied meta"))?;
    let members = meta.membership.membership().nodes().count();
    if members > 1 {
        return Err(crate::ConsensusError::Refused(format!(
            "this peer is one of {members} cluster peers, which would not see an offline change; \
             restore on a new single peer and let the others join it"
        )));
    }
    pinset.forget_log()?;
    match std::fs::remove_dir_all(snapshot_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::ConsensusError::raft("removing the snapshot folder")(e)),
    }
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> impl Fn(std::io::Error) -> StorageError {
    move |e| storage_error(subject.clone(), verb, &e)
}

/// Writes `meta` as the current snapshot's description, atomically.
fn write_current_meta(dir: &Path, meta: &SnapshotMeta<NodeId, Member>) -> std::io::Result<()> {
    let tmp = dir.join("current.json.tmp");
    let bytes = serde_json::to_vec(&SnapshotFile { meta: meta.clone() }).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(CURRENT_META))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads the current snapshot's description; `None` when there is none.
fn read_current_meta(dir: &Path) -> std::io::Result<Option<SnapshotMeta<NodeId, Member>>> {
    match std::fs::read(dir.join(CURRENT_META)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice::<SnapshotFile>(&bytes).map_err(std::io::Error::other)?.meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies everything read through it into a file: a received snapshot is
/// installed and kept (to send on) in one pass.
struct Tee<R> {
    input: R,
    copy: BufWriter<std::fs::File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError> {
        Ok((self.meta.last_applied, self.meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            responses.push(self.apply_one(entry).await?);
        }
        Ok(responses)
    }

    /// Marks the snapshot's point in the pinset here, on the state machine's
    /// task, between two entries: the pinset keeps that point-in-time view
    /// for the builder, which writes it while entries go on being applied.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let meta = SnapshotMeta {
            last_log_id: self.meta.last_applied,
            last_membership: self.meta.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{:x}",
                self.meta.last_applied.map_or(0, |l| l.leader_id.term),
                self.meta.last_applied.map_or(0, |l| l.index),
                rand::random::<u32>()
            ),
        };
        let walk = self
            .pinset
            .begin_snapshot()
            .await
            .map_err(|error| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &error));
        Builder { meta, dir: self.dir.clone(), walk: Some(walk) }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path(RECEIVING))
            .await
            .map_err(io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncSeekExt;
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let mut file = *snapshot;
        file.seek(std::io::SeekFrom::Start(0)).await.map_err(io_error(subject.clone(), ErrorVerb::Read))?;
        let file = file.into_std().await;
        let new_meta =
            Meta { last_applied: meta.last_log_id, membership: meta.last_membership.clone(), base: self.meta.base };
        let index = self.pinset_index(meta.last_log_id.map_or(0, |l| l.index));
        let encoded = encode(&new_meta).map_err(|e| storage_error(subject.clone(), ErrorVerb::Write, &e))?;
        let (pinset, dir, snapshot_meta) = (self.pinset.clone(), self.dir.clone(), meta.clone());
        let installed = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let tmp = dir.join("incoming.tmp");
            let copy = BufWriter::new(std::fs::File::create(&tmp)?);
            let mut tee = Tee { input: BufReader::new(file), copy };
            let count = pinset.install_snapshot(&mut tee, index, encoded).map_err(std::io::Error::other)?;
            tee.copy.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, dir.join(CURRENT_DATA))?;
            write_current_meta(&dir, &snapshot_meta)?;
            Ok(count)
        })
        .await;
        match installed {
            Ok(Ok(count)) => tracing::info!(snapshot = %meta.snapshot_id, entries = count, "snapshot installed"),
            Ok(Err(e)) => return Err(storage_error(subject, ErrorVerb::Write, &e)),
            Err(e) => return Err(storage_error(subject, ErrorVerb::Write, &e)),
        }
        self.meta = new_meta;
        if let Some(events) = &self.events {
            let _ = events.send(AppliedBatch::Snapshot { index }).await;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        current_snapshot(&self.dir).await
    }
}

async fn current_snapshot(dir: &Path) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
    let subject = ErrorSubject::Snapshot(None);
    let Some(meta) = read_current_meta(dir).map_err(io_error(subject.clone(), ErrorVerb::Read))? else {
        return Ok(None);
    };
    let file = tokio::fs::File::open(dir.join(CURRENT_DATA)).await.map_err(io_error(subject, ErrorVerb::Read))?;
    Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
}

/// A snapshot begun by [`StateMachine::get_snapshot_builder`], written by
/// [`RaftSnapshotBuilder::build_snapshot`] into the snapshot folder.
pub struct Builder {
    meta: SnapshotMeta<NodeId, Member>,
    dir: PathBuf,
    /// The pinset's view, taken by the first build.
    walk: Option<Result<SnapshotWriter, StorageError>>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let subject = ErrorSubject::Snapshot(Some(self.meta.signature()));
        let walk = self.walk.take().ok_or_else(|| {
            storage_error(subject.clone(), ErrorVerb::Read, &std::io::Error::other("already built"))
        })??;
        let (dir, meta) = (self.dir.clone(), self.meta.clone());
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, std::fs::File)> {
            let tmp = dir.join("building.tmp");
            let mut out = BufWriter::new(std::fs::File::create(&tmp)?);
            let count = walk.write(&mut out).map_err(std::io::Error::other)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, dir.join(CURRENT_DATA))?;
            write_current_meta(&dir, &meta)?;
            // Opened now, so that a newer snapshot replacing the file later does not change this one.
            Ok((count, std::fs::File::open(dir.join(CURRENT_DATA))?))
        })
        .await;
        let (count, file) = match written {
            Ok(Ok(written)) => written,
            Ok(Err(e)) => return Err(storage_error(subject, ErrorVerb::Write, &e)),
            Err(e) => return Err(storage_error(subject, ErrorVerb::Write, &e)),
        };
        tracing::info!(snapshot = %self.meta.snapshot_id, entries = count, "snapshot written");
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Box::new(tokio::fs::File::from_std(file)) })
    }
}
