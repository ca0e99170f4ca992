//! The pin tracker: the one door through which the APIs change the pinset, so
//! that every new, replaced or dropped pin reaches the workers that fetch or
//! release its content in the embedded IPFS node. Read [`Tracker`] first;
//! the workers are in `worker.rs`.
//!
//! The APIs read the pinset directly; every write is a [`Command`] the
//! tracker proposes, and the local work (fetch, release) follows from what
//! applying it did ([`Tracker::act_on`]), never from what was asked. The
//! workers alone write this peer's local records (status, progress).

mod worker;

use std::sync::Arc;

use pincluster_ipfs::{GcStats, Node, RepoStat};

pub use pincluster_ipfs::{AddedEntry, CarImporter, ImportOptions, Imported, Importer, IpfsError, MAX_CHUNK_SIZE};
use pincluster_model::{Cid, NewPin, PinStatus, PinView, Timestamp, UserName, ValidationError};
use pincluster_state::{Applied, Command, Pinset, Reader, StateError, StatusUpdate};

pub use worker::TrackerOptions;
use worker::Workers;

/// Why a tracker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("pin not found")]
    NotFound,
    #[error(transparent)]
    State(StateError),
    #[error(transparent)]
    Ipfs(#[from] IpfsError),
    #[error("the IPFS node is shutting down")]
    Stopped,
}

impl From<StateError> for TrackerError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::NotFound => TrackerError::NotFound,
            other => TrackerError::State(other),
        }
    }
}

/// The pin tracker. Cheap to clone.
#[derive(Clone)]
pub struct Tracker {
    state: Pinset,
    reader: Reader,
    workers: Arc<Workers>,
}

impl Tracker {
    /// Starts the workers on the current tokio runtime (the node's) and
    /// resumes every pin a previous run left unfinished.
    pub fn start(state: Pinset, node: Node, options: TrackerOptions) -> Tracker {
        let workers = Workers::start(state.clone(), node, options);
        Tracker { reader: state.reader(), state, workers }
    }

    /// The pinset, read-only: every write goes through the tracker.
    pub fn state(&self) -> &Reader {
        &self.reader
    }

    /// Proposes one command and acts on what applying it did: queues the
    /// CID it added, releases those it removed.
    async fn propose(&self, command: Command) -> Result<Applied, TrackerError> {
        let applied = self.state.propose(vec![command]).await?.pop().ok_or(TrackerError::Stopped)??;
        self.act_on(&applied).await;
        Ok(applied)
    }

    /// Schedules the local work that an applied command calls for. Whatever
    /// applied it (this peer's own proposal today, a replicated log
    /// tomorrow), the work follows from the outcome alone.
    pub async fn act_on(&self, applied: &Applied) {
        if let Some(cid) = applied.added() {
            self.workers.schedule(cid);
        }
        for cid in applied.removed() {
            self.workers.release(cid).await;
        }
    }

    /// Pins `pin.cid` for `user`, or updates that user's pin object. Pinning
    /// a CID whose content failed queues it again.
    pub async fn pin(&self, user: &UserName, pin: NewPin) -> Result<PinView, TrackerError> {
        self.pin_from(user, pin, None).await
    }

    /// Pins `pin.cid` for `user`; with `update_from`, Cluster's pin update
    /// (see [`Command::Pin`]): the rules run where the command is applied, so
    /// they cannot race with other writes.
    pub async fn pin_from(
        &self,
        user: &UserName,
        pin: NewPin,
        update_from: Option<Cid>,
    ) -> Result<PinView, TrackerError> {
        pin.validate()?;
        let command = Command::Pin { user: user.clone(), pin, at: Timestamp::now(), update_from };
        match self.propose(command).await? {
            Applied::Pin(outcome) => self.follow(&outcome.view).await,
            _ => Err(TrackerError::Stopped),
        }
    }

    /// Replaces `user`'s pin of `old` by `pin` in one step. Blocks the two
    /// DAGs share are not fetched again: the collector waits while pins are
    /// in progress.
    pub async fn replace(&self, user: &UserName, old: &Cid, pin: NewPin) -> Result<PinView, TrackerError> {
        pin.validate()?;
        let command = Command::Replace { user: user.clone(), old: *old, pin, at: Timestamp::now() };
        match self.propose(command).await? {
            Applied::Replace(outcome) => self.follow(&outcome.view).await,
            _ => Err(TrackerError::Stopped),
        }
    }

    /// Drops `user`'s pin of `cid`; the content goes when no user holds it.
    pub async fn unpin(&self, user: &UserName, cid: &Cid) -> Result<(), TrackerError> {
        self.propose(Command::Unpin { user: user.clone(), cid: *cid }).await.map(drop)
    }

    /// Collects every block no pin reaches, now.
    pub async fn gc(&self) -> Result<GcStats, TrackerError> {
        let workers = self.workers.clone();
        self.workers
            .on_node_runtime(async move { workers.collect_garbage().await })
            .await
            .ok_or(TrackerError::Stopped)?
    }

    /// Starts a UnixFS import into the node (`/add`). Its blocks stay safe from
    /// garbage collection until the returned importer, or what it finishes
    /// into, is dropped: pin the roots first.
    #[allow(clippy::result_large_err)] // the node's own error, on a cold path, as in pincluster-ipfs
    pub fn importer(&self, options: ImportOptions) -> Result<Importer, IpfsError> {
        self.workers.node().importer(options)
    }

    /// Starts the import of a CAR file into the node; as [`Tracker::importer`].
    pub fn car_importer(&self) -> CarImporter {
        self.workers.node().car_importer()
    }

    /// Block store figures.
    pub async fn repo_stat(&self) -> Result<RepoStat, TrackerError> {
        let node = self.workers.node().clone();
        Ok(self.workers.on_node_runtime(async move { node.repo_stat().await }).await.ok_or(TrackerError::Stopped)??)
    }

    /// Queues the pin when its content is not there yet; a failed one starts over.
    async fn follow(&self, view: &PinView) -> Result<PinView, TrackerError> {
        let cid = view.cluster.cid;
        match view.cluster.status {
            PinStatus::Queued => self.workers.schedule(cid),
            PinStatus::Failed => {
                let update = StatusUpdate { attempts: Some(0), ..StatusUpdate::status(PinStatus::Queued) };
                self.state.update_status(&cid, update).await?;
                self.workers.schedule(cid);
                let mut requeued = view.clone();
                requeued.cluster.status = PinStatus::Queued;
                requeued.cluster.attempts = 0;
                requeued.cluster.error = None;
                return Ok(requeued);
            }
            PinStatus::Pinning | PinStatus::Pinned => {}
        }
        Ok(view.clone())
    }
}

/// How many expired CIDs one command removes.
const EXPIRE_BATCH: usize = 1000;

/// What [`Tracker::unpin_expired`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpirySweep {
    /// The CIDs removed because their `expire_at` had passed.
    pub removed: Vec<Cid>,
    /// The earliest `expire_at` still in the future, if any pin has one.
    pub next: Option<pincluster_model::Timestamp>,
}

/// Admin operations of the cluster REST API: whole-CID removal, recover and expiry.
impl Tracker {
    /// Removes `cid` for every user who holds it, in one command, and returns
    /// the entry as it was. [`TrackerError::NotFound`] when the CID is not in
    /// the pinset.
    pub async fn unpin_all(&self, cid: &Cid) -> Result<pincluster_state::ClusterEntry, TrackerError> {
        match self.propose(Command::UnpinAll { cid: *cid }).await? {
            Applied::UnpinAll(entry) => Ok(entry),
            _ => Err(TrackerError::Stopped),
        }
    }

    /// Queues a failed pin again. `Ok(true)` when it was `Failed` and is now
    /// `Queued`, `Ok(false)` when it was in another status (nothing to do);
    /// [`TrackerError::NotFound`] when the CID is not in the pinset.
    pub async fn recover(&self, cid: &Cid) -> Result<bool, TrackerError> {
        let entry = self.state.cluster_pin(cid)?.ok_or(TrackerError::NotFound)?;
        if entry.pin.status != pincluster_model::PinStatus::Failed {
            return Ok(false);
        }
        let update = pincluster_state::StatusUpdate {
            attempts: Some(0),
            ..pincluster_state::StatusUpdate::status(pincluster_model::PinStatus::Queued)
        };
        self.state.update_status(cid, update).await?;
        self.workers.schedule(*cid);
        Ok(true)
    }

    /// Removes, for every holder, each pin whose `expire_at` is at or before
    /// `now`. The scan runs on a blocking thread and keeps only the due CIDs.
    pub async fn unpin_expired(&self, now: pincluster_model::Timestamp) -> Result<ExpirySweep, TrackerError> {
        let state = self.state.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let mut due = Vec::new();
            let mut next: Option<pincluster_model::Timestamp> = None;
            for item in state.cluster_pins(pincluster_model::StatusSet::ALL) {
                let pin = match item {
                    Ok(pin) => pin,
                    Err(error) => {
                        tracing::error!(%error, "skipping unreadable pin in expiry sweep");
                        continue;
                    }
                };
                match pin.options.expire_at {
                    Some(at) if at <= now => due.push(pin.cid),
                    Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    None => {}
                }
            }
            (due, next)
        });
        let (due, next) = scan.await.map_err(|_| TrackerError::State(StateError::Closed))?;
        let mut removed = Vec::with_capacity(due.len());
        // Applying checks each `expire_at` again, so a pin renewed meanwhile stays.
        for chunk in due.chunks(EXPIRE_BATCH) {
            if let Applied::Expire(cids) = self.propose(Command::Expire { cids: chunk.to_vec(), at: now }).await? {
                removed.extend(cids);
            }
        }
        Ok(ExpirySweep { removed, next })
    }
}
