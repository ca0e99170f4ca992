//! The pin tracker: the one door through which the APIs change the pinset, so
//! that every new, replaced or dropped pin reaches the workers that fetch or
//! release its content in the embedded IPFS node. Read [`Tracker`] first;
//! the workers are in `worker.rs`.

mod worker;

use std::sync::Arc;

use pincluster_ipfs::{GcStats, Node, RepoStat};

pub use pincluster_ipfs::{AddedEntry, CarImporter, ImportOptions, Imported, Importer, IpfsError, MAX_CHUNK_SIZE};
use pincluster_model::{Cid, NewPin, PinStatus, PinView, UserName, ValidationError};
use pincluster_state::{Pinset, StateError, StatusUpdate};

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
    workers: Arc<Workers>,
}

impl Tracker {
    /// Starts the workers on the current tokio runtime (the node's) and
    /// resumes every pin a previous run left unfinished.
    pub fn start(state: Pinset, node: Node, options: TrackerOptions) -> Tracker {
        let workers = Workers::start(state.clone(), node, options);
        Tracker { state, workers }
    }

    /// The pinset, for reads.
    pub fn state(&self) -> &Pinset {
        &self.state
    }

    /// Pins `pin.cid` for `user`, or updates that user's pin object. Pinning
    /// a CID whose content failed queues it again.
    pub async fn pin(&self, user: &UserName, pin: NewPin) -> Result<PinView, TrackerError> {
        pin.validate()?;
        let outcome = self.state.pin(user, pin).await?;
        self.follow(&outcome.view).await
    }

    /// Replaces `user`'s pin of `old` by `pin` in one step. Blocks the two
    /// DAGs share are not fetched again: the collector waits while pins are
    /// in progress.
    pub async fn replace(&self, user: &UserName, old: &Cid, pin: NewPin) -> Result<PinView, TrackerError> {
        pin.validate()?;
        let outcome = self.state.replace(user, old, pin).await?;
        let view = self.follow(&outcome.view).await?;
        if let Some(orphan) = outcome.orphaned {
            self.workers.release(orphan).await;
        }
        Ok(view)
    }

    /// Drops `user`'s pin of `cid`; the content goes when no user holds it.
    pub async fn unpin(&self, user: &UserName, cid: &Cid) -> Result<(), TrackerError> {
        let outcome = self.state.unpin(user, cid).await?;
        if outcome.orphaned {
            self.workers.release(*cid).await;
        }
        Ok(())
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
    /// Removes `cid` for every user who holds it, so the cluster record goes
    /// away, and returns the entry as it was. [`TrackerError::NotFound`] when
    /// the CID is not in the pinset.
    pub async fn unpin_all(&self, cid: &Cid) -> Result<pincluster_state::ClusterEntry, TrackerError> {
        let entry = self.state.cluster_pin(cid)?.ok_or(TrackerError::NotFound)?;
        // A user who pins the CID meanwhile is removed by a further round.
        let mut current = Some(entry.clone());
        while let Some(round) = current {
            for (user, _) in &round.holders {
                match self.unpin(user, cid).await {
                    Ok(()) | Err(TrackerError::NotFound) => {}
                    Err(other) => return Err(other),
                }
            }
            current = self.state.cluster_pin(cid)?;
        }
        Ok(entry)
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
        for cid in due {
            match self.unpin_all(&cid).await {
                Ok(_) => removed.push(cid),
                Err(TrackerError::NotFound) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(ExpirySweep { removed, next })
    }
}
