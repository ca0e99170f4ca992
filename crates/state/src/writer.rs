//! The single writer thread and its group commit; read [`Writer::run`] first.
//!
//! Every write request goes through one channel to one thread. The thread takes
//! every request waiting and applies them in order to a [`Staged`] overlay (so a
//! request sees the writes of the requests before it). The overlay is one
//! *group*: the committer thread applies it to sled as one atomic `Batch`, and
//! the syncer makes it durable (once for every group waiting) and only then
//! answers the callers. While the committer applies group N, the writer prepares group N+1, reading
//! through the overlays still in flight, so no request ever sees stale state.
//! A request that fails leaves no trace in its group. Because there is one
//! writer, read-modify-write needs no transactions.
//!
//! Committing is itself a pipeline of two threads: the committer applies
//! group N+1 to the tree while the syncer has sled write group N to the file,
//! fsyncs it (a flush and an fsync cover every group applied before they
//! began) and answers its callers. The committer never waits for the disk.
//!
//! A storage error while committing is fatal: the callers of the groups in
//! flight get the error, and later writes get [`StateError::Closed`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use pincluster_model::{Cid, ClusterPin, NewPin, PinStatus, PinView, Progress, Timestamp, UserName, UserPin};
use tokio::sync::oneshot;

use crate::keys::{self, Tag};
use crate::records::{self, ClusterRecord};
use crate::{PinOutcome, ReplaceOutcome, StateError, StatusUpdate, UnpinOutcome};

/// The most operations the writer puts in one group commit.
const MAX_OPS_PER_GROUP: usize = 20_000;
/// How many groups may be prepared ahead of the committer.
const MAX_IN_FLIGHT: usize = 2;
/// When the per-user clock cache grows past this, it is dropped between groups.
const MAX_CLOCK_ENTRIES: usize = 100_000;

/// Writes by key: `None` removes the key.
type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A prepared group on its way to the committer.
struct Group {
    seq: u64,
    /// The same writes as the overlay, built by the writer thread so that the
    /// committer only applies it.
    batch: sled::Batch,
    /// How many keys the batch writes.
    writes: usize,
    replies: Vec<(oneshot::Sender<Answer>, Results)>,
}

/// The results of one request's operations.
type Results = Vec<Result<Done, StateError>>;

/// One write operation.
pub(crate) enum Op {
    Pin { user: UserName, pin: NewPin },
    Replace { user: UserName, old: Cid, pin: NewPin },
    Unpin { user: UserName, cid: Cid },
    Status { cid: Cid, update: StatusUpdate },
}

/// The result of one successful operation.
pub(crate) enum Done {
    Pin(PinOutcome),
    Replace(ReplaceOutcome),
    Unpin(UnpinOutcome),
    Status,
}

/// Results of each operation of a request, or the error that failed the whole group.
pub(crate) type Answer = Result<Vec<Result<Done, StateError>>, StateError>;

/// Operations submitted together; answered once they are durable.
pub(crate) struct Request {
    pub(crate) ops: Vec<Op>,
    pub(crate) reply: oneshot::Sender<Answer>,
}

/// Starts the writer thread; it stops when every sender is dropped.
///
/// `log_file` is sled's data file, which the syncer fsyncs after each flush.
pub(crate) fn spawn(db: sled::Db, rx: Receiver<Request>, log_file: File) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("pinset-writer".into())
        .spawn(move || Writer { db, last_created: HashMap::new() }.run(rx, log_file))
}

/// Pending writes of the current group over the groups in flight and the tree.
///
/// `committed` holds the writes of operations that succeeded; `pending` those
/// of the operation being applied, dropped if it fails. `in_flight` are the
/// groups handed to the committer and maybe not yet in the tree, oldest first.
struct Staged<'a> {
    db: &'a sled::Db,
    in_flight: &'a VecDeque<(u64, Arc<Overlay>)>,
    committed: Overlay,
    pending: Overlay,
}

impl<'a> Staged<'a> {
    fn new(db: &'a sled::Db, in_flight: &'a VecDeque<(u64, Arc<Overlay>)>) -> Staged<'a> {
        Staged { db, in_flight, committed: BTreeMap::new(), pending: BTreeMap::new() }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
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

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    fn del(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    fn commit(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.committed.extend(pending);
    }

    fn rollback(&mut self) {
        self.pending.clear();
    }

    fn into_writes(self) -> Overlay {
        self.committed
    }

    /// The user's pin created at `created`, from its listing record.
    fn listing_at(&self, user: &UserName, created: Timestamp) -> Result<PinView, StateError> {
        let key = keys::record(user, created)?;
        match self.get(&key)? {
            Some(bytes) => records::decode_listing(&key, &bytes),
            None => {
                Err(StateError::Corrupt { key: keys::display(&key), reason: "a holder has no listing record".into() })
            }
        }
    }

    /// Writes the listing record of a user's pin, with a copy of the cluster
    /// record, under both `r` and the `s` range of the cluster status.
    fn put_listing(&mut self, user: &UserName, pin: &UserPin, cluster: &ClusterPin) -> Result<(), StateError> {
        let value = records::encode_listing(pin, cluster)?;
        self.put(keys::by_status(user, cluster.status, pin.created)?, value.clone());
        self.put(keys::record(user, pin.created)?, value);
        Ok(())
    }

    fn cluster(&self, cid: &Cid) -> Result<Option<ClusterRecord>, StateError> {
        let key = keys::cluster(cid);
        self.get(&key)?.map(|bytes| records::decode_cluster(&key, *cid, &bytes)).transpose()
    }

    /// Writes the cluster record. When its copy of the first holder's pin is
    /// not that holder's (the holders changed), it is read from their listing
    /// record first; callers that change the first holder's pin object set
    /// the copy themselves.
    fn put_cluster(&mut self, rec: &mut ClusterRecord) -> Result<(), StateError> {
        if !rec.first_is_current() {
            rec.first = match rec.holders.first() {
                Some((user, created)) => Some((user.clone(), self.listing_at(user, *created)?.user)),
                None => None,
            };
        }
        let value = records::encode_cluster(rec)?;
        self.put(keys::cluster(&rec.pin.cid), value);
        Ok(())
    }

    /// Adds `delta` to a counter; a counter at zero is removed.
    fn bump(&mut self, key: Vec<u8>, delta: i64) -> Result<(), StateError> {
        let current = match self.get(&key)? {
            Some(bytes) => keys::decode_u64(&bytes).ok_or_else(|| StateError::Corrupt {
                key: keys::display(&key),
                reason: "counter is not 8 bytes".into(),
            })?,
            None => 0,
        };
        let next = current.saturating_add_signed(delta);
        if next == 0 {
            self.del(key);
        } else {
            self.put(key, keys::encode_u64(next).to_vec());
        }
        Ok(())
    }

    /// Writes the name index entry and the counter of a new user pin in
    /// `status`; the listing record is written by [`Staged::put_listing`] and
    /// the holder entry by the caller, in the cluster record.
    fn index_user_pin(&mut self, user: &UserName, pin: &UserPin, status: PinStatus) -> Result<(), StateError> {
        if let Some(name) = &pin.name {
            self.put(keys::by_name(user, name, pin.created)?, pin.cid.to_bytes());
        }
        self.bump(keys::user_count(user, status)?, 1)
    }

    /// Removes the user pin: its listing records, name entry and count.
    fn unindex_user_pin(&mut self, user: &UserName, pin: &UserPin, status: PinStatus) -> Result<(), StateError> {
        self.del(keys::record(user, pin.created)?);
        self.del(keys::by_status(user, status, pin.created)?);
        if let Some(name) = &pin.name {
            self.del(keys::by_name(user, name, pin.created)?);
        }
        self.bump(keys::user_count(user, status)?, -1)
    }

    /// Rewrites the listing records of every holder with the new cluster
    /// record and, when the status changed, moves them and the counters.
    fn refresh_holders(&mut self, cluster: &ClusterRecord, from: PinStatus) -> Result<(), StateError> {
        let to = cluster.pin.status;
        for (user, created) in &cluster.holders {
            if from != to {
                self.del(keys::by_status(user, from, *created)?);
                self.bump(keys::user_count(user, from)?, -1)?;
                self.bump(keys::user_count(user, to)?, 1)?;
            }
            let view = self.listing_at(user, *created)?;
            self.put_listing(user, &view.user, &cluster.pin)?;
        }
        Ok(())
    }
}

/// The state of the writer thread.
struct Writer {
    db: sled::Db,
    /// The newest `created` handed out per user, so that `created` stays unique.
    last_created: HashMap<UserName, u64>,
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
            let mut staged = Staged::new(&db, &in_flight);
            let mut replies = Vec::with_capacity(requests.len());
            for request in requests {
                let results: Vec<_> = request
                    .ops
                    .into_iter()
                    .map(|op| {
                        let result = self.apply(&mut staged, op);
                        match result {
                            Ok(_) => staged.commit(),
                            Err(_) => staged.rollback(),
                        }
                        result
                    })
                    .collect();
                replies.push((request.reply, results));
            }
            let writes = staged.into_writes();
            if self.last_created.len() > MAX_CLOCK_ENTRIES {
                self.last_created.clear();
            }
            if writes.is_empty() {
                // Nothing succeeded: nothing to make durable.
                for (reply, results) in replies {
                    let _ = reply.send(Ok(results));
                }
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
            if let Err(mpsc::SendError(group)) = groups.send(Group { seq, batch, writes: count, replies }) {
                for (reply, _) in group.replies {
                    let _ = reply.send(Err(StateError::Closed));
                }
                break;
            }
        }
        drop(groups);
        if committer.join().is_err() || syncer.join().is_err() {
            tracing::error!("a pinset committer thread panicked");
        }
    }

    fn apply(&mut self, st: &mut Staged<'_>, op: Op) -> Result<Done, StateError> {
        match op {
            Op::Pin { user, pin } => self.pin(st, &user, pin).map(Done::Pin),
            Op::Replace { user, old, pin } => self.replace(st, &user, &old, pin).map(Done::Replace),
            Op::Unpin { user, cid } => self.unpin(st, &user, &cid).map(Done::Unpin),
            Op::Status { cid, update } => self.update_status(st, &cid, update).map(|()| Done::Status),
        }
    }

    /// A `created` for a new pin of `user`: now, or one past the user's newest.
    fn next_created(&mut self, user: &UserName, now: Timestamp) -> Result<Timestamp, StateError> {
        let last = match self.last_created.get(user) {
            Some(last) => *last,
            None => {
                // Only reached for a user without allocations in this group, so
                // the tree alone is up to date for this user.
                let prefix = keys::user_prefix(Tag::Record, user)?;
                match self.db.scan_prefix(&prefix).next() {
                    Some(item) => {
                        let (key, _) = item?;
                        keys::trailing_created(&key).map_or(0, |t| t.0)
                    }
                    None => 0,
                }
            }
        };
        let created = now.0.max(last.saturating_add(1));
        self.last_created.insert(user.clone(), created);
        Ok(Timestamp(created))
    }

    fn pin(&mut self, st: &mut Staged<'_>, user: &UserName, new: NewPin) -> Result<PinOutcome, StateError> {
        new.validate()?;
        let now = Timestamp::now();
        let cid = new.cid;
        let (mut cluster, new_cluster_pin, options_changed) = match st.cluster(&cid)? {
            Some(mut rec) => {
                let changed = rec.pin.options != new.options;
                rec.pin.options = new.options;
                (rec, false, changed)
            }
            None => {
                let rec = ClusterRecord {
                    pin: ClusterPin {
                        cid,
                        options: new.options,
                        status: PinStatus::Queued,
                        error: None,
                        attempts: 0,
                        progress: Progress::default(),
                        dag_size: None,
                        created: now,
                        updated: now,
                    },
                    holders: Vec::new(),
                    first: None,
                };
                st.put(keys::cluster_status(PinStatus::Queued, &cid), Vec::new());
                st.bump(keys::cluster_count(PinStatus::Queued), 1)?;
                (rec, true, false)
            }
        };
        let user_pin = match cluster.holder(user) {
            Some(created) => {
                let old = st.listing_at(user, created)?.user;
                let updated = UserPin { cid, name: new.name, meta: new.meta, origins: new.origins, created };
                if old.name != updated.name {
                    if let Some(name) = &old.name {
                        st.del(keys::by_name(user, name, created)?);
                    }
                    if let Some(name) = &updated.name {
                        st.put(keys::by_name(user, name, created)?, cid.to_bytes());
                    }
                }
                updated
            }
            None => {
                let created = self.next_created(user, now)?;
                let pin = UserPin { cid, name: new.name, meta: new.meta, origins: new.origins, created };
                st.index_user_pin(user, &pin, cluster.pin.status)?;
                cluster.add_holder(user, created);
                pin
            }
        };
        st.put_listing(user, &user_pin, &cluster.pin)?;
        if options_changed {
            // The copies of the other holders are stale too.
            st.refresh_holders(&cluster, cluster.pin.status)?;
        }
        if cluster.holders.first().is_some_and(|(first, _)| first == user) {
            // The cluster record's copy of the first holder's pin.
            cluster.first = Some((user.clone(), user_pin.clone()));
        }
        st.put_cluster(&mut cluster)?;
        Ok(PinOutcome { view: PinView { user: user_pin, cluster: cluster.pin }, new_cluster_pin })
    }

    fn replace(
        &mut self,
        st: &mut Staged<'_>,
        user: &UserName,
        old: &Cid,
        new: NewPin,
    ) -> Result<ReplaceOutcome, StateError> {
        if st.cluster(old)?.and_then(|rec| rec.holder(user)).is_none() {
            return Err(StateError::NotFound);
        }
        if *old == new.cid {
            let out = self.pin(st, user, new)?;
            return Ok(ReplaceOutcome { view: out.view, new_cluster_pin: out.new_cluster_pin, orphaned: None });
        }
        let out = self.pin(st, user, new)?;
        let gone = self.unpin(st, user, old)?;
        Ok(ReplaceOutcome {
            view: out.view,
            new_cluster_pin: out.new_cluster_pin,
            orphaned: gone.orphaned.then_some(*old),
        })
    }

    fn unpin(&mut self, st: &mut Staged<'_>, user: &UserName, cid: &Cid) -> Result<UnpinOutcome, StateError> {
        let mut cluster = st.cluster(cid)?.ok_or(StateError::NotFound)?;
        let created = cluster.holder(user).ok_or(StateError::NotFound)?;
        let old = st.listing_at(user, created)?.user;
        let status = cluster.pin.status;
        st.unindex_user_pin(user, &old, status)?;
        cluster.remove_holder(user);
        if !cluster.holders.is_empty() {
            // When `user` was the first holder, this reads the next one's pin.
            st.put_cluster(&mut cluster)?;
            return Ok(UnpinOutcome { orphaned: false });
        }
        st.del(keys::cluster(cid));
        st.del(keys::cluster_status(status, cid));
        st.bump(keys::cluster_count(status), -1)?;
        Ok(UnpinOutcome { orphaned: true })
    }

    fn update_status(&mut self, st: &mut Staged<'_>, cid: &Cid, update: StatusUpdate) -> Result<(), StateError> {
        let mut cluster = st.cluster(cid)?.ok_or(StateError::NotFound)?;
        let (from, to) = (cluster.pin.status, update.status);
        if from != to {
            st.del(keys::cluster_status(from, cid));
            st.put(keys::cluster_status(to, cid), Vec::new());
            st.bump(keys::cluster_count(from), -1)?;
            st.bump(keys::cluster_count(to), 1)?;
        }
        let pin = &mut cluster.pin;
        pin.status = to;
        if to == PinStatus::Failed {
            if let Some(error) = update.error {
                pin.error = Some(error);
            }
        } else {
            pin.error = update.error;
        }
        if let Some(attempts) = update.attempts {
            pin.attempts = attempts;
        }
        if let Some(progress) = update.progress {
            pin.progress = progress;
        }
        if let Some(dag_size) = update.dag_size {
            pin.dag_size = Some(dag_size);
        }
        pin.updated = Timestamp::now();
        st.refresh_holders(&cluster, from)?;
        st.put_cluster(&mut cluster)
    }
}

/// A group that is in the tree, on its way to the syncer.
struct Applied {
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
    synced: &Sender<Applied>,
    failed: &AtomicBool,
) {
    for group in groups.iter() {
        if failed.load(Ordering::Acquire) {
            answer_all(group.replies, &Err(StateError::Closed));
            continue;
        }
        let writes = group.writes;
        if let Err(error) = db.apply_batch(group.batch) {
            let error = StateError::from(error);
            tracing::error!(%error, "pinset group commit failed; refusing further writes");
            failed.store(true, Ordering::Release);
            answer_all(group.replies, &Err(error));
            continue;
        }
        // The writer may have stopped waiting; the tree is what counts.
        let _ = applied.send(group.seq);
        if let Err(mpsc::SendError(lost)) = synced.send(Applied { replies: group.replies }) {
            answer_all(lost.replies, &Err(StateError::Closed));
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
fn sync_loop(db: &sled::Db, log_file: &File, synced: &Receiver<Applied>, failed: &AtomicBool) {
    while let Ok(first) = synced.recv() {
        let mut round = vec![first];
        round.extend(synced.try_iter());
        let mut result = if failed.load(Ordering::Acquire) { Err(StateError::Closed) } else { Ok(()) };
        if result.is_ok() {
            // sled's flush writes its buffers (up to everything applied so far) to the file.
            result = db.flush().map(|_| ()).map_err(StateError::from);
        }
        if result.is_ok() {
            result = log_file.sync_data().map_err(|e| StateError::from(sled::Error::Io(e)));
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
