//! The single writer thread and its group commit; read [`Writer::run`] first.
//!
//! Every write request goes through one channel to one thread. The thread takes
//! every request waiting and applies them in order to a [`Staged`] overlay (so a
//! request sees the writes of the requests before it). The overlay is one
//! *group*: the committer thread applies it to sled as one atomic `Batch`, and
//! the syncer makes it durable (once for every group waiting) and only then
//! answers the callers. While the committer applies group N, the writer
//! prepares group N+1, reading through the overlays still in flight, so no
//! request ever sees stale state. A request that fails leaves no trace in its
//! group. Because there is one writer, read-modify-write needs no transactions.
//! What each operation writes is decided in `apply.rs`.
//!
//! A request is either a log entry (commands, with the index it is applied
//! at, stored in the same batch) or a local update of this peer's records.
//! Local updates that need not survive a crash (progress) are answered as
//! soon as their group is in the tree; a group holding only such updates is
//! not fsynced, and reaches the disk with the next group that is.
//!
//! Committing is itself a pipeline of two threads: the committer applies
//! group N+1 to the tree while the syncer has sled write group N to the file,
//! fsyncs it (a flush and an fsync cover every group applied before they
//! began) and answers its callers. The committer never waits for the disk.
//!
//! A storage error while committing is fatal: the callers of the groups in
//! flight get the error, and later writes get [`StateError::Closed`].

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use pincluster_model::{Cid, Timestamp};
use tokio::sync::oneshot;

use crate::apply;
use crate::keys;
use crate::snapshot::Cow;
use crate::{Applied, Command, StateError, StatusUpdate};

/// The most operations the writer puts in one group commit.
const MAX_OPS_PER_GROUP: usize = 20_000;
/// How many groups may be prepared ahead of the committer.
const MAX_IN_FLIGHT: usize = 2;

/// Writes by key: `None` removes the key.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A prepared group on its way to the committer.
struct Group {
    seq: u64,
    /// The same writes as the overlay, built by the writer thread so that the
    /// committer only applies it.
    batch: sled::Batch,
    /// How many keys the batch writes.
    writes: usize,
    /// Answered once the group is on disk.
    durable: Vec<(oneshot::Sender<Answer>, Results)>,
    /// Answered once the group is in the tree.
    quick: Vec<(oneshot::Sender<Answer>, Results)>,
}

/// The results of one request's operations.
type Results = Vec<Result<Done, StateError>>;

/// One write operation.
pub(crate) enum Op {
    /// A change to the shared pinset.
    Command(Command),
    /// A change to this peer's local record of a CID, at this peer's `at`.
    Local { cid: Cid, update: StatusUpdate, at: Timestamp },
    /// Raw writes by key (`None` removes): installing a snapshot.
    Raw(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    /// The point a snapshot begins at: from here on, commands save the
    /// entries they change for it first (see `snapshot.rs`).
    BeginSnapshot,
}

/// The result of one successful operation.
pub(crate) enum Done {
    Command(Box<Applied>),
    Local,
}

/// Where a request's operations go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Local updates: no log index.
    Local,
    /// A log entry at the index after the last applied one (a single peer's log).
    Next,
    /// A log entry at this index; a no-op when the index is already applied.
    At(u64),
    /// The end of a snapshot install: the applied index becomes this one,
    /// whatever it was.
    Install(u64),
}

/// Results of each operation of a request, or the error that failed the whole group.
pub(crate) type Answer = Result<Vec<Result<Done, StateError>>, StateError>;

/// Operations submitted together; answered once they are durable (or, when
/// `durable` is false, once they are in the tree).
pub(crate) struct Request {
    pub(crate) entry: Entry,
    pub(crate) ops: Vec<Op>,
    /// The log's own record of this entry, stored with the index (log entries only).
    pub(crate) meta: Option<Vec<u8>>,
    pub(crate) durable: bool,
    pub(crate) reply: oneshot::Sender<Answer>,
}

/// Starts the writer thread; it stops when every sender is dropped.
///
/// `log_file` is sled's data file, which the syncer fsyncs after each flush;
/// `applied` the index of the last log entry the pinset holds.
pub(crate) fn spawn(
    db: sled::Db,
    rx: Receiver<Request>,
    log_file: File,
    applied: u64,
    cow: Arc<Cow>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("pinset-writer".into()).spawn(move || Writer { db, applied, cow }.run(rx, log_file))
}

/// Pending writes of the current group over the groups in flight and the tree.
///
/// `committed` holds the writes of operations that succeeded; `pending` those
/// of the operation being applied, dropped if it fails. `in_flight` are the
/// groups handed to the committer and maybe not yet in the tree, oldest first.
pub(crate) struct Staged<'a> {
    db: &'a sled::Db,
    in_flight: &'a VecDeque<(u64, Arc<Overlay>)>,
    /// The snapshot being written, if any: commands save its entries before they change them.
    cow: &'a Cow,
    committed: Overlay,
    pending: Overlay,
}

impl<'a> Staged<'a> {
    pub(crate) fn new(db: &'a sled::Db, in_flight: &'a VecDeque<(u64, Arc<Overlay>)>, cow: &'a Cow) -> Staged<'a> {
        Staged { db, in_flight, cow, committed: BTreeMap::new(), pending: BTreeMap::new() }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(value) = self.pending.get(key).or_else(|| self.committed.get(key)) {
            return Ok(value.clone());
        }
        for (_, group) in self.in_flight.iter().rev() {
            if let Some(value) = group.get(key) {
                return Ok(value.clone());
            }
        }
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    pub(crate) fn del(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    fn commit(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.committed.extend(pending);
    }

    fn rollback(&mut self) {
        self.pending.clear();
    }

    pub(crate) fn into_writes(self) -> Overlay {
        self.committed
    }

    /// Applies one operation; its writes are kept only when it succeeds.
    fn apply(&mut self, op: Op) -> Result<Done, StateError> {
        let result = match op {
            Op::Command(command) => {
                let cow = self.cow;
                cow.save(self, &command);
                apply::command(self, command).map(|applied| Done::Command(Box::new(applied)))
            }
            Op::Local { cid, update, at } => apply::local(self, &cid, update, at).map(|()| Done::Local),
            Op::Raw(writes) => {
                self.pending.extend(writes);
                Ok(Done::Local)
            }
            Op::BeginSnapshot => self.cow.begin().map(|()| Done::Local),
        };
        match result {
            Ok(_) => self.commit(),
            Err(_) => self.rollback(),
        }
        result
    }
}

/// The state of the writer thread.
struct Writer {
    db: sled::Db,
    /// The index of the last log entry applied (in the tree or in flight).
    applied: u64,
    /// The snapshot being written, if any, which commands save entries for.
    cow: Arc<Cow>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>, log_file: File) {
        let (groups, groups_rx) = mpsc::channel();
        let (applied_tx, applied) = mpsc::channel();
        let (synced_tx, synced_rx) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let (db, sync_db, failed2) = (self.db.clone(), self.db.clone(), Arc::clone(&failed));
        let committer = thread::Builder::new()
            .name("pinset-committer".into())
            .spawn(move || commit_loop(&db, &groups_rx, &applied_tx, &synced_tx, &failed));
        let syncer = thread::Builder::new()
            .name("pinset-syncer".into())
            .spawn(move || sync_loop(&sync_db, &log_file, &synced_rx, &failed2));
        let (committer, syncer) = match (committer, syncer) {
            (Ok(committer), Ok(syncer)) => (committer, syncer),
            _ => {
                tracing::error!("cannot start the pinset committer threads");
                return;
            }
        };
        let mut in_flight: VecDeque<(u64, Arc<Overlay>)> = VecDeque::new();
        let mut seq = 0u64;
        'groups: while let Ok(first) = rx.recv() {
            let mut count = first.ops.len();
            let mut requests = vec![first];
            while count < MAX_OPS_PER_GROUP {
                match rx.try_recv() {
                    Ok(request) => {
                        count += request.ops.len();
                        requests.push(request);
                    }
                    Err(_) => break,
                }
            }
            // Forget groups the committer has applied; wait if too far ahead.
            loop {
                for done in applied.try_iter() {
                    while in_flight.front().is_some_and(|(s, _)| *s <= done) {
                        in_flight.pop_front();
                    }
                }
                if in_flight.len() < MAX_IN_FLIGHT {
                    break;
                }
                match applied.recv() {
                    Ok(done) => {
                        while in_flight.front().is_some_and(|(s, _)| *s <= done) {
                            in_flight.pop_front();
                        }
                    }
                    Err(_) => break 'groups,
                }
            }
            let db = self.db.clone();
            let cow = Arc::clone(&self.cow);
            let mut staged = Staged::new(&db, &in_flight, &cow);
            let (mut durable, mut quick) = (Vec::new(), Vec::new());
            for mut request in requests {
                let results = self.apply_request(&mut staged, &mut request);
                if request.durable {
                    durable.push((request.reply, results));
                } else {
                    quick.push((request.reply, results));
                }
            }
            let writes = staged.into_writes();
            if writes.is_empty() && durable.is_empty() {
                // Nothing to write and nobody waiting for the disk.
                answer_all(quick, &Ok(()));
                continue;
            }
            seq += 1;
            let mut batch = sled::Batch::default();
            for (key, value) in &writes {
                match value {
                    Some(value) => batch.insert(key.as_slice(), value.as_slice()),
                    None => batch.remove(key.as_slice()),
                }
            }
            let count = writes.len();
            in_flight.push_back((seq, Arc::new(writes)));
            if let Err(mpsc::SendError(group)) = groups.send(Group { seq, batch, writes: count, durable, quick }) {
                answer_all(group.durable, &Err(StateError::Closed));
                answer_all(group.quick, &Err(StateError::Closed));
                break;
            }
        }
        drop(groups);
        if committer.join().is_err() || syncer.join().is_err() {
            tracing::error!("a pinset committer thread panicked");
        }
    }

    /// Applies one request's operations; a log entry at or below the applied
    /// index is skipped (it was applied before), others advance the index.
    fn apply_request(&mut self, staged: &mut Staged<'_>, request: &mut Request) -> Results {
        let index = match request.entry {
            Entry::Local => None,
            Entry::Next => Some(self.applied + 1),
            Entry::At(index) if index <= self.applied => return Vec::new(),
            Entry::At(index) | Entry::Install(index) => Some(index),
        };
        let results = std::mem::take(&mut request.ops).into_iter().map(|op| staged.apply(op)).collect();
        if let Some(index) = index {
            self.applied = index;
            staged.put(keys::APPLIED_KEY.to_vec(), keys::encode_u64(index).to_vec());
            if let Some(meta) = request.meta.take() {
                staged.put(keys::APPLIED_META_KEY.to_vec(), meta);
            }
            staged.commit();
        }
        results
    }
}

/// A group that is in the tree, on its way to the syncer.
struct InTree {
    replies: Vec<(oneshot::Sender<Answer>, Results)>,
}

/// The committer thread: applies each group as one atomic batch, in order,
/// hands it to the syncer, then reclaims what applying it retired.
///
/// Each group is reported on `applied` as soon as it is in the tree (reads see
/// it from then on); its callers are answered by the syncer once it is on disk.
/// Applying the next group overlaps with the syncer's flush and fsync of the
/// previous ones.
fn commit_loop(
    db: &sled::Db,
    groups: &Receiver<Group>,
    applied: &Sender<u64>,
    synced: &Sender<InTree>,
    failed: &AtomicBool,
) {
    for group in groups.iter() {
        if failed.load(Ordering::Acquire) {
            answer_all(group.durable, &Err(StateError::Closed));
            answer_all(group.quick, &Err(StateError::Closed));
            continue;
        }
        let writes = group.writes;
        metrics::counter!(crate::metrics::WRITE_BATCHES).increment(1);
        metrics::histogram!(crate::metrics::BATCH_REQUESTS).record((group.durable.len() + group.quick.len()) as f64);
        metrics::histogram!(crate::metrics::BATCH_KEYS).record(writes as f64);
        if let Err(error) = db.apply_batch(group.batch) {
            let error = StateError::from(error);
            tracing::error!(%error, "pinset group commit failed; refusing further writes");
            failed.store(true, Ordering::Release);
            answer_all(group.durable, &Err(error.clone()));
            answer_all(group.quick, &Err(error));
            continue;
        }
        // The writer may have stopped waiting; the tree is what counts.
        let _ = applied.send(group.seq);
        answer_all(group.quick, &Ok(()));
        if !group.durable.is_empty() {
            if let Err(mpsc::SendError(lost)) = synced.send(InTree { replies: group.durable }) {
                answer_all(lost.replies, &Err(StateError::Closed));
            }
        }
        // Off the callers' path: the syncer is fsyncing meanwhile.
        reclaim(writes);
    }
}

/// The syncer thread: makes every applied group durable with one sled flush
/// (which writes sled's buffers to its file) and one `fdatasync` of that file
/// for all groups waiting, and answers their callers.
///
/// sled 0.34's flush ends with `sync_file_range`, which neither writes the
/// file's metadata (sled grows the file as the log advances) nor flushes the
/// disk's write cache; the `fdatasync` does both, so that an acknowledged
/// write also survives power loss, not only `kill -9`.
fn sync_loop(db: &sled::Db, log_file: &File, synced: &Receiver<InTree>, failed: &AtomicBool) {
    while let Ok(first) = synced.recv() {
        let mut round = vec![first];
        round.extend(synced.try_iter());
        let mut result = if failed.load(Ordering::Acquire) { Err(StateError::Closed) } else { Ok(()) };
        let started = std::time::Instant::now();
        if result.is_ok() {
            // sled's flush writes its buffers (up to everything applied so far) to the file.
            result = db.flush().map(|_| ()).map_err(StateError::from);
        }
        if result.is_ok() {
            result = log_file.sync_data().map_err(|e| StateError::from(sled::Error::Io(e)));
            metrics::histogram!(crate::metrics::FSYNC_DURATION).record(started.elapsed().as_secs_f64());
        }
        if let Err(error) = &result {
            if !failed.swap(true, Ordering::AcqRel) {
                tracing::error!(%error, "pinset fsync failed; refusing further writes");
            }
        }
        for group in round {
            answer_all(group.replies, &result);
        }
    }
}

/// Sends every caller of a group its results, or `outcome`'s error.
fn answer_all(replies: Vec<(oneshot::Sender<Answer>, Results)>, outcome: &Result<(), StateError>) {
    for (reply, results) in replies {
        // A caller that went away no longer needs its answer.
        let _ = reply.send(outcome.clone().map(|()| results));
    }
}

/// Reclaims the memory of the page versions that applying `writes` keys retired.
///
/// sled 0.34 frees every replaced in-memory page through crossbeam-epoch, and
/// the collector frees a bounded number of retired objects per pin. A batch is
/// applied under one pin while it retires a page version per key, so after
/// bulk writes the backlog is paid by whichever threads pin next: a page read
/// right after a 100k-pin import took 6-10 ms instead of 0.7 ms. Flushing
/// in the committer, after it handed the group to the syncer, pays that cost
/// while the group's fsync runs.
fn reclaim(writes: usize) {
    // Each flush frees up to a few hundred retired objects.
    for _ in 0..writes / RETIRED_PER_FLUSH + 1 {
        crossbeam_epoch::pin().flush();
    }
}

/// About how many retired objects one collector flush frees.
const RETIRED_PER_FLUSH: usize = 128;
