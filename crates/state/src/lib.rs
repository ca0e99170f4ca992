//! The pinset: every pin of every user and the one cluster record per CID, in
//! sled. Read [`Pinset`] and [`Command`] first. This is the only crate that
//! imports sled.
//!
//! # Model: a replicated state machine and this peer's view
//!
//! The pinset has two halves. The *shared* half is what users asked for: a
//! cluster record per CID ([`ClusterPin`]'s options, allocations and
//! `created`) and each holder's own *user pin* ([`UserPin`]: name, meta,
//! origins, `created`). It changes only by [`Command`]s, applied in log order
//! ([`Pinset::apply_entry`], or [`Pinset::propose`] for a single peer's own
//! log); applying one is a pure function of the stored state and the command,
//! so replicas that apply the same log hold the same shared records, byte for
//! byte. The index of the last applied entry is stored in the same batch.
//!
//! The *local* half is what this peer's node did about each CID: status,
//! error, attempts, progress, DAG size ([`Pinset::update_status`],
//! [`Pinset::update_progress`]), written by the tracker alone. Progress is not
//! fsynced on its own.
//!
//! `created` is in milliseconds and strictly increases per user:
//! `max(proposer's clock, newest of the user + 1)`, computed in apply from the
//! stored newest, so it is unique per user and paging by `before` never skips
//! or repeats.
//!
//! # The summary: the status users see
//!
//! Listings filter, order and count by status at page cost, so each user pin
//! is indexed under one status: the *summary* of its CID. Each allocated
//! peer reports its own status of the CID through the log
//! ([`Command::Report`], in batches); the shared record keeps every
//! report, and their summary ([`pincluster_model::summarize`]: `pinned`
//! once `replication_factor_min` allocated peers hold it) is stored with
//! them, so every peer lists and counts the same. Applying a report or an
//! allocation that changes the summary moves the index entries and counters
//! of every holder in the same batch. This peer's local status orders the
//! cluster status index (`q`, `k`), which the tracker works from.
//!
//! # Writes and durability
//!
//! All writes go to one writer thread (see `writer.rs`; what each operation
//! writes is in `apply.rs`). It takes every request waiting and applies them in
//! order to an overlay: one *group*. A committer thread writes each group as
//! one atomic sled batch, fsyncs once for all the groups it holds and only then
//! answers their callers, while the writer prepares the next group. A write
//! whose future resolved with `Ok` survives `kill -9` and power loss, and
//! records, indexes and counters always move together. Reads go straight to
//! sled and never wait for the writer; they may see a group that is applied
//! but whose fsync is still running.
//!
//! # Key layout (schema 5)
//!
//! One sled tree (the default one). Every key starts with a tag byte.
//! `len` is a one-byte length prefix, `len16` a two-byte big-endian one;
//! `!created` is the bitwise complement of the milliseconds, big-endian, so
//! that a forward scan yields the newest pin first; `status` is
//! [`PinStatus::code`]. A CID at the end of a key is its raw binary form.
//!
//! | key | value | half | purpose |
//! |-----|-------|------|---------|
//! | `\0schema` | `u32` BE | | schema version ([`SCHEMA_VERSION`]) |
//! | `\0applied` | `u64` BE | shared | index of the last applied log entry |
//! | `c` cid | cluster record | shared | options, allocations, every holder with the `created` of their pin, a copy of the first holder's pin object, each peer's reported status and their summary |
//! | `t` len user | `u64` BE | shared | the newest `created` given to the user |
//! | `n` len user len16 lowercase(name) !created | cid | shared | a user's pins by name |
//! | `l` cid | local record | local | status, error, attempts, progress, DAG size |
//! | `s` len user summary !created | listing record | view | a user's pin object with a copy of its joined cluster pin, by summary |
//! | `m` len user summary | `u64` BE | view | a user's pins per summary |
//! | `q` status created cid | empty | view | cluster pins by this peer's status, oldest first ([`Reader::cluster_pins`]) |
//! | `k` status | `u64` BE | view | cluster pins per this peer's status ([`Reader::cluster_count`]) |
//!
//! Counters at zero are removed. Records are postcard-encoded structs behind a
//! one-byte format version (see `records.rs`); the domain types are never
//! stored directly. A CID without a local record is `queued`.
//!
//! A new pin costs three keys (`c`, `q`, `s`), four with a name; counters and
//! `t` are written once per group commit: sled's work per key is most of a
//! write's cost. `q` is ordered by `created`, so new pins append to one leaf.
//! The listing record holds everything a listing shows, so a page is one
//! range scan per status with no point lookups, and its cost hardly depends
//! on how large the pinset is. The copies are rewritten for every holder, in
//! the same batch, whenever the cluster pin or its local record changes, so
//! they never disagree. A user's pin of a CID is found through the holder
//! list of the CID's cluster record.
//!
//! # Opening fast
//!
//! sled 0.34 writes its recovery snapshot only while opening: an open replays
//! every log segment written since the previous open, which after a long
//! write session takes seconds per million pins. Closing the last handle
//! ([`Pinset::close`], or dropping it) therefore reopens the database once
//! and closes it again, so that the replay happens at shutdown and the next
//! start reads a fresh snapshot.
//!
//! # Listing
//!
//! [`Reader::list`] walks newest first, bounded by `after`/`before` in the
//! key: `n` for `exact`/`iexact` names (each entry leads to the listing record
//! through the cluster record), else a merge of the `s` ranges of the selected
//! statuses; `cids` are direct lookups. The first page costs the page plus the
//! entries the other filters skip. `count` comes from the `m` counters when
//! only `statuses` filters, else from continuing the same walk (decoding
//! nothing when the key decides).

mod apply;
mod check;
mod command;
mod error;
mod keys;
pub mod metrics;
mod migrate;
mod query;
mod raftlog;
mod read;
mod records;
mod scan;
mod snapshot;
mod space;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pincluster_model::{
    Cid, ClusterPin, NameMatch, NewPin, PinStatus, PinView, Progress, StatusSet, Timestamp, UserName, UserPin,
};
use tokio::sync::oneshot;

pub use check::IntegrityReport;
pub use command::{Applied, Command, Reported};
pub use error::{StateError, StorageError};
pub use raftlog::LogStore;
pub use scan::{ClusterPins, ClusterSummaries, ClusterSummary};
pub use snapshot::SnapshotWriter;
pub use space::{auto_reserve, filesystem_space, is_no_space_io, NoSpace, Space};

use writer::{Done, Entry, Op, Request};

/// The schema version this build writes. Opening a schema-3 or 4 pinset migrates
/// it (see `migrate.rs`); versions 1 and 2 only existed in development builds.
pub const SCHEMA_VERSION: u32 = 5;
/// The largest page [`Reader::list`] returns; larger limits are clamped.
pub const MAX_LIMIT: usize = 1000;
/// The default sled cache size: 16 MiB (see `state.cache_capacity` in the
/// service configuration for why it is small).
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// Where and how to open the pinset.
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// The sled database directory; created when missing.
    pub path: PathBuf,
    /// The sled page cache size in bytes.
    pub cache_capacity_bytes: u64,
    /// Bytes kept free on the database's filesystem (see [`Space`]);
    /// `None` = the automatic reserve ([`auto_reserve`]), 0 = no guard.
    pub min_free_space: Option<u64>,
}

impl StateOptions {
    /// Options for a database at `path` with the default cache size.
    pub fn new(path: impl Into<PathBuf>) -> StateOptions {
        StateOptions { path: path.into(), cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES, min_free_space: None }
    }
}

/// What [`Pinset::pin`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinOutcome {
    /// The user's pin as stored, with the cluster status.
    pub view: PinView,
    /// The CID had no cluster record before: the tracker must queue it.
    pub new_cluster_pin: bool,
}

/// What [`Pinset::replace`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplaceOutcome {
    /// The new pin as stored.
    pub view: PinView,
    /// The new CID had no cluster record before: the tracker must queue it.
    pub new_cluster_pin: bool,
    /// The old CID, when no user holds it any more and its cluster record was removed.
    pub orphaned: Option<Cid>,
}

/// What [`Pinset::unpin`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpinOutcome {
    /// The user was the last holder: the cluster record was removed too.
    pub orphaned: bool,
}

/// A change to a cluster record made by the tracker. `None` fields keep their value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The new status.
    pub status: PinStatus,
    /// The error text. With status `Failed`, `None` keeps the current text; with
    /// any other status the text is replaced by this value, so `None` clears it.
    pub error: Option<String>,
    /// The attempt count.
    pub attempts: Option<u32>,
    /// Blocks and bytes fetched so far.
    pub progress: Option<Progress>,
    /// Size of the whole DAG once known.
    pub dag_size: Option<u64>,
}

impl StatusUpdate {
    /// An update that only changes the status (and clears the error unless `Failed`).
    pub fn status(status: PinStatus) -> StatusUpdate {
        StatusUpdate { status, error: None, attempts: None, progress: None, dag_size: None }
    }
}

/// A cluster record with every user who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEntry {
    /// The cluster record.
    pub pin: ClusterPin,
    /// Each holder with their own pin object, in user-name byte order.
    pub holders: Vec<(UserName, UserPin)>,
}

/// A listing query over one user's pins: the AND of every filter given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Only these CIDs (direct lookups).
    pub cids: Option<Vec<Cid>>,
    /// Only pins whose name matches; pins without a name never match.
    pub name: Option<(String, NameMatch)>,
    /// Only pins whose cluster status is in the set; [`StatusSet::ALL`] means no filter.
    pub statuses: StatusSet,
    /// Only pins with `created < before`.
    pub before: Option<Timestamp>,
    /// Only pins with `created > after`.
    pub after: Option<Timestamp>,
    /// Only pins whose meta has every one of these keys with an equal value.
    pub meta: BTreeMap<String, String>,
    /// The page size, at most [`MAX_LIMIT`]; 0 returns only the count.
    pub limit: usize,
}

impl Default for Query {
    /// No filter (every status), a page of 10.
    fn default() -> Query {
        Query {
            cids: None,
            name: None,
            statuses: StatusSet::ALL,
            before: None,
            after: None,
            meta: BTreeMap::new(),
            limit: 10,
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// How many pins match the query in all (not just this page).
    pub count: u64,
    /// The page, newest `created` first.
    pub results: Vec<PinView>,
}

/// The pinset. Cheap to clone; every clone shares one database and one writer.
#[derive(Clone)]
pub struct Pinset {
    reader: Reader,
}

/// The read-only side of the pinset, which the APIs get: every query and
/// none of the writes. Cheap to clone; a clone is a handle like a
/// [`Pinset`] clone (see [`Pinset::close`]).
#[derive(Clone)]
pub struct Reader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

/// A pinset reads like its reader.
impl std::ops::Deref for Pinset {
    type Target = Reader;

    fn deref(&self) -> &Reader {
        &self.reader
    }
}

impl std::fmt::Debug for Pinset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinset").finish_non_exhaustive()
    }
}

struct Inner {
    // Fields drop in declaration order: this handle, then the writer (which
    // holds the others), then the checkpoint, which needs every handle gone.
    db: sled::Db,
    writer: WriterHandle,
    checkpoint: Checkpoint,
    /// The snapshot being written, shared with the writer thread.
    cow: Arc<snapshot::Cow>,
    /// The free-space guard of the database's filesystem.
    space: Space,
}

/// The writer thread; dropping it stops the thread after it answered what it holds.
struct WriterHandle {
    requests: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it answered what it holds.
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the pinset writer thread panicked");
            }
        }
    }
}

/// Reopens the closed database once, so that sled replays its log and writes
/// a fresh recovery snapshot now rather than at the next start.
struct Checkpoint {
    options: StateOptions,
    armed: bool,
}

/// How long [`Checkpoint::run`] waits for sled's own threads to release the database.
const CHECKPOINT_LOCK_WAIT: Duration = Duration::from_secs(2);

impl Checkpoint {
    fn run(&mut self) -> Result<(), StateError> {
        if !std::mem::take(&mut self.armed) {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            match sled_config(&self.options).open() {
                Ok(db) => {
                    drop(db);
                    tracing::debug!(elapsed = ?started.elapsed(), "pinset checkpoint written");
                    return Ok(());
                }
                // sled's IO threads may hold the file for a moment after the last handle went.
                Err(sled::Error::Io(error))
                    if error.to_string().contains("could not acquire lock")
                        && started.elapsed() < CHECKPOINT_LOCK_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        if let Err(error) = self.run() {
            tracing::warn!(%error, "cannot checkpoint the pinset at close; the next open replays the log");
        }
    }
}

/// The sled configuration for `options`.
fn sled_config(options: &StateOptions) -> sled::Config {
    sled::Config::new()
        .path(&options.path)
        .cache_capacity(options.cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        // The writer flushes every group itself.
        .flush_every_ms(None)
}

impl Pinset {
    /// Opens (or creates) the database and starts the writer thread. A
    /// schema-3 or 4 database is migrated first (see `migrate.rs`).
    ///
    /// Fails with [`StateError::NewerSchema`] when a newer pincluster wrote it.
    pub fn open(options: &StateOptions) -> Result<Pinset, StateError> {
        let db = sled_config(options).open()?;
        let space =
            Space::new(&options.path, options.min_free_space).map_err(|e| StateError::from(sled::Error::Io(e)))?;
        // sled's data file, opened again so that the syncer can fsync it (see writer.rs).
        let log_file =
            std::fs::File::open(options.path.join("db")).map_err(|e| StateError::from(sled::Error::Io(e)))?;
        migrate::prepare(&db, &log_file)?;
        snapshot::recover(&db)?;
        let applied = read::counter(&db, keys::APPLIED_KEY)?;
        let (requests, rx) = mpsc::channel();
        let cow = Arc::new(snapshot::Cow::default());
        let thread = writer::spawn(db.clone(), rx, log_file, applied, Arc::clone(&cow))
            .map_err(|e| StateError::from(sled::Error::Io(e)))?;
        Ok(Pinset {
            reader: Reader {
                inner: Arc::new(Inner {
                    db,
                    writer: WriterHandle { requests: Some(requests), thread: Some(thread) },
                    checkpoint: Checkpoint { options: options.clone(), armed: true },
                    cow,
                    space,
                }),
            },
        })
    }

    /// The read-only side, for those who must not write (the APIs).
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }

    /// Closes the pinset when this is its last handle: waits for the writes in
    /// flight, closes the database, then opens and closes it once more so that
    /// sled writes its recovery snapshot now and the next [`Pinset::open`] is
    /// fast (this takes about as long as an open after the same writes).
    /// Dropping the last handle does the same but can only log errors.
    ///
    /// Returns `Ok(false)` and does nothing else when other handles (clones,
    /// readers, or streams from [`Reader::cluster_pins`]) are still alive;
    /// they keep working.
    pub fn close(self) -> Result<bool, StateError> {
        let Ok(inner) = Arc::try_unwrap(self.reader.inner) else {
            return Ok(false);
        };
        let Inner { db, writer, mut checkpoint, cow: _, space: _ } = inner;
        drop(db);
        drop(writer);
        checkpoint.run()?;
        Ok(true)
    }

    fn send(
        &self,
        entry: Entry,
        ops: Vec<Op>,
        meta: Option<Vec<u8>>,
        durable: bool,
    ) -> Result<oneshot::Receiver<writer::Answer>, StateError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.reader.inner.writer.requests.as_ref().ok_or(StateError::Closed)?;
        sender.send(Request { entry, ops, meta, durable, reply }).map_err(|_| StateError::Closed)?;
        Ok(answer)
    }

    async fn submit(
        &self,
        entry: Entry,
        ops: Vec<Op>,
        durable: bool,
    ) -> Result<Vec<Result<Done, StateError>>, StateError> {
        self.send(entry, ops, None, durable)?.await.map_err(|_| StateError::Closed)?
    }

    /// [`Pinset::submit`] for threads that may block.
    fn submit_blocking(
        &self,
        entry: Entry,
        ops: Vec<Op>,
        meta: Option<Vec<u8>>,
        durable: bool,
    ) -> Result<Vec<Result<Done, StateError>>, StateError> {
        self.send(entry, ops, meta, durable)?.blocking_recv().map_err(|_| StateError::Closed)?
    }

    /// The database, for the modules that scan it while writing through the writer.
    fn db(&self) -> &sled::Db {
        &self.reader.inner.db
    }

    async fn commands(
        &self,
        entry: Entry,
        commands: Vec<Command>,
        meta: Option<Vec<u8>>,
        durable: bool,
    ) -> Result<Vec<Result<Applied, StateError>>, StateError> {
        let ops = commands.into_iter().map(Op::Command).collect();
        let results = self.send(entry, ops, meta, durable)?.await.map_err(|_| StateError::Closed)??;
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(Done::Command(applied)) => Ok(*applied),
                Ok(Done::Local) => Err(StateError::Closed),
                Err(error) => Err(error),
            })
            .collect())
    }

    /// Applies `commands` as the log entry after the last applied one (a
    /// single peer's own log), durably, in one group commit. One result per
    /// command, in order; a command that fails leaves no trace and does not
    /// stop the others.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Result<Applied, StateError>>, StateError> {
        self.commands(Entry::Next, commands, None, true).await
    }

    /// Applies `commands` as the log entry at `index`, storing the index and
    /// the log's own `meta` in the same batch. An index at or below the last
    /// applied one is a no-op that answers no results (what a Raft state
    /// machine needs when entries are replayed).
    ///
    /// With `durable`, answered once on disk; else once in the tree (a
    /// replicated log that holds the entry durably replays it after a crash).
    pub async fn apply_entry(
        &self,
        index: u64,
        commands: Vec<Command>,
        meta: Option<Vec<u8>>,
        durable: bool,
    ) -> Result<Vec<Result<Applied, StateError>>, StateError> {
        self.commands(Entry::At(index), commands, meta, durable).await
    }

    /// The log of a replicated pinset, stored beside it (see [`LogStore`]).
    pub fn log_store(&self) -> Result<LogStore, StateError> {
        LogStore::open(&self.reader.inner.db, &self.reader.inner.checkpoint.options.path)
    }

    /// Forgets the replicated log (entries, vote, and the stored record of the
    /// last applied entry); the pinset and its applied index stay, and a new
    /// log starts from them. For offline use: after an import, say.
    pub fn forget_log(&self) -> Result<(), StateError> {
        self.log_store()?.clear()?;
        let forget = vec![Op::Raw(vec![(keys::APPLIED_META_KEY.to_vec(), None)])];
        self.submit_blocking(Entry::Local, forget, None, true).map(drop)
    }

    /// Makes everything written so far durable.
    pub async fn sync(&self) -> Result<(), StateError> {
        self.submit(Entry::Local, Vec::new(), true).await.map(drop)
    }

    async fn propose_one(&self, command: Command) -> Result<Applied, StateError> {
        self.propose(vec![command]).await?.pop().unwrap_or(Err(StateError::Closed))
    }

    /// Proposes [`Command::Pin`] for `user`, stamped with this peer's clock.
    ///
    /// A new user pin gets `created` = now (or one past the user's newest pin);
    /// if the user already holds the CID, its name, meta and origins are
    /// replaced and `created` is kept. The cluster record is created when
    /// missing (`queued` here), else its options are replaced.
    pub async fn pin(&self, user: &UserName, pin: NewPin) -> Result<PinOutcome, StateError> {
        let command = Command::Pin { user: user.clone(), pin, at: Timestamp::now(), update_from: None };
        match self.propose_one(command).await? {
            Applied::Pin(outcome) => Ok(outcome),
            _ => Err(StateError::Closed),
        }
    }

    /// Pins many at once in one log entry (bulk import). One result per item,
    /// in order; an item that fails does not stop the others.
    pub async fn pin_many(
        &self,
        items: Vec<(UserName, NewPin)>,
    ) -> Result<Vec<Result<PinOutcome, StateError>>, StateError> {
        let at = Timestamp::now();
        let commands = items.into_iter().map(|(user, pin)| Command::Pin { user, pin, at, update_from: None }).collect();
        let results = self.propose(commands).await?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(Applied::Pin(outcome)) => Ok(outcome),
                Ok(_) => Err(StateError::Closed),
                Err(error) => Err(error),
            })
            .collect())
    }

    /// Proposes [`Command::Replace`]: the user's pin `old` becomes `pin`.
    ///
    /// [`StateError::NotFound`] when the user does not hold `old`. The same CID
    /// updates in place; another CID creates the new pin and removes the old one
    /// in one atomic step.
    pub async fn replace(&self, user: &UserName, old: &Cid, pin: NewPin) -> Result<ReplaceOutcome, StateError> {
        let command = Command::Replace { user: user.clone(), old: *old, pin, at: Timestamp::now() };
        match self.propose_one(command).await? {
            Applied::Replace(outcome) => Ok(outcome),
            _ => Err(StateError::Closed),
        }
    }

    /// Proposes [`Command::Unpin`]; [`StateError::NotFound`] when absent.
    pub async fn unpin(&self, user: &UserName, cid: &Cid) -> Result<UnpinOutcome, StateError> {
        match self.propose_one(Command::Unpin { user: user.clone(), cid: *cid }).await? {
            Applied::Unpin { orphaned, .. } => Ok(UnpinOutcome { orphaned }),
            _ => Err(StateError::Closed),
        }
    }

    /// A local write: refused below the free-space floor (see [`Space`]),
    /// so that sled never meets a full disk for a status.
    async fn local(&self, cid: &Cid, update: StatusUpdate, durable: bool) -> Result<(), StateError> {
        self.reader.inner.space.check_floor()?;
        let op = Op::Local { cid: *cid, update, at: Timestamp::now() };
        match self.submit(Entry::Local, vec![op], durable).await?.pop() {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(error),
            None => Err(StateError::Closed),
        }
    }

    /// Changes this peer's local record of `cid` and moves every holder's
    /// index entries and counters with it, durably; sets `updated` to now.
    /// [`StateError::NotFound`] when the CID has no record.
    pub async fn update_status(&self, cid: &Cid, update: StatusUpdate) -> Result<(), StateError> {
        self.local(cid, update, true).await
    }

    /// Records the progress of a pin being fetched, without waiting for the
    /// disk: it reaches it with the next durable write (or at close).
    pub async fn update_progress(&self, cid: &Cid, progress: Progress) -> Result<(), StateError> {
        let update = StatusUpdate { progress: Some(progress), ..StatusUpdate::status(PinStatus::Pinning) };
        self.local(cid, update, false).await
    }
}

impl Reader {
    /// The free-space guard of the database's filesystem: writers check it
    /// before proposing (see [`Space`]).
    pub fn space(&self) -> &Space {
        &self.inner.space
    }

    /// The index of the last applied log entry (0 for none), as on disk or about to be.
    pub fn applied_index(&self) -> Result<u64, StateError> {
        read::counter(&self.inner.db, keys::APPLIED_KEY)
    }

    /// The log's own record of the last applied entry, as given to [`Pinset::apply_entry`].
    pub fn applied_meta(&self) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.inner.db.get(keys::APPLIED_META_KEY)?.map(|v| v.to_vec()))
    }

    /// The user's pin of `cid` with its cluster status.
    pub fn get(&self, user: &UserName, cid: &Cid) -> Result<Option<PinView>, StateError> {
        read::view(&self.inner.db, user, cid)
    }

    /// One page of the user's pins matching `query`, newest `created` first,
    /// and the number of all matches. Unreadable pins are logged and skipped.
    pub fn list(&self, user: &UserName, query: &Query) -> Result<Page, StateError> {
        query::list(&self.inner.db, user, query)
    }

    /// How many pins `user` holds, from the counters.
    pub fn user_pin_count(&self, user: &UserName) -> Result<u64, StateError> {
        query::user_count(&self.inner.db, user, StatusSet::ALL)
    }

    /// The cluster record of `cid` and every user who holds it.
    pub fn cluster_pin(&self, cid: &Cid) -> Result<Option<ClusterEntry>, StateError> {
        read::joined(&self.inner.db, cid)?.map(|(rec, pin)| read::entry(&self.inner.db, rec, pin)).transpose()
    }

    /// This peer's status of `cid`, when the pinset holds it: two point reads,
    /// without the holders [`Reader::cluster_pin`] gathers.
    pub fn local_status(&self, cid: &Cid) -> Result<Option<PinStatus>, StateError> {
        Ok(read::joined(&self.inner.db, cid)?.map(|(_, pin)| pin.status))
    }

    /// Every cluster entry with all its holders, in CID byte order, lazily:
    /// the shared pinset as [`Command::Restore`] takes it back (an export).
    pub fn entries(&self) -> impl Iterator<Item = Result<ClusterEntry, StateError>> + '_ {
        let db = &self.inner.db;
        scan::Records::new(db, StatusSet::ALL)
            .map(move |item| item.and_then(|(rec, pin)| read::entry(db, rec, pin)))
            // A CID whose holders all left since the scan read it is skipped.
            .filter(|entry| entry.as_ref().map_or(true, |e| !e.holders.is_empty()))
    }

    /// Every cluster pin whose status is in `filter`, lazily: in CID byte order
    /// without a filter, else oldest `created` first. Memory use does not grow
    /// with the pinset.
    pub fn cluster_pins(&self, filter: StatusSet) -> ClusterPins {
        ClusterPins::new(&self.inner.db, filter)
    }

    /// Like [`Reader::cluster_pins`], with each CID's representative holder:
    /// the first in user-name byte order, with their pin object (the first of
    /// [`ClusterEntry::holders`]). One sequential scan of the cluster records,
    /// which carry a copy of that pin, so it costs no per-pin lookups.
    pub fn cluster_summaries(&self, filter: StatusSet) -> ClusterSummaries {
        ClusterSummaries::new(&self.inner.db, filter)
    }

    /// How many cluster pins have a status in `filter`, from the counters.
    pub fn cluster_count(&self, filter: StatusSet) -> Result<u64, StateError> {
        let mut total = 0u64;
        for status in filter.iter() {
            total = total.saturating_add(read::counter(&self.inner.db, &keys::cluster_count(status))?);
        }
        Ok(total)
    }

    /// Checks that every record, index entry and counter agree. Walks the whole
    /// database: meant for tests and operators, not for request paths.
    pub fn check_integrity(&self) -> Result<IntegrityReport, StateError> {
        check::check(&self.inner.db)
    }

    /// Bytes the database uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StateError> {
        Ok(self.inner.db.size_on_disk()?)
    }
}
