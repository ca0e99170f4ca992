//! The pin tracker: the one door through which the APIs change the pinset, so
//! that every new, replaced or dropped pin reaches the workers that fetch or
//! release its content in the embedded IPFS node. Read [`Tracker`] first;
//! the workers are in `worker.rs`.
//!
//! The APIs read the pinset directly; every write is a [`Command`] the
//! tracker proposes, and the local work (fetch, release) follows from what
//! applying it did ([`Tracker::act_on`]), never from what was asked. The
//! workers alone write this peer's local records (status, progress).

mod allocate;
pub mod metrics;
mod policy;
mod report;
mod reprovide;
mod worker;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use pincluster_ipfs::{GcStats, Node, RepoStat};

pub use pincluster_ipfs::{
    block_links, AddedEntry, CarImporter, DhtStatus, ImportOptions, Imported, Importer, IpfsError, Traffic,
    MAX_CHUNK_SIZE,
};
use pincluster_model::{Cid, NewPin, PinStatus, PinView, Timestamp, UserName, ValidationError};
use pincluster_state::{
    Applied, Command, PinOutcome, Pinset, Reader, ReplaceOutcome, Reported, StateError, StatusUpdate,
};

pub use allocate::{allocate, Candidate};
pub use reprovide::{ReprovideOptions, ReprovideStatus, ReprovideStrategy};
use worker::Workers;
pub use worker::{QueueStatus, TrackerOptions};

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
    /// The cluster could not take the write now (no leader); retry.
    #[error("the cluster cannot take writes now: {0}")]
    Unavailable(String),
}

impl From<StateError> for TrackerError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::NotFound => TrackerError::NotFound,
            other => TrackerError::State(other),
        }
    }
}

/// The results of applying a batch of commands, one per command, in order.
pub type Proposed = Vec<Result<Applied, StateError>>;

/// The log the tracker proposes its commands to: the cluster's replicated
/// log. It answers once the commands are applied to this peer's pinset; the
/// local work then follows from [`Tracker::act_on`], which whoever applies
/// entries calls for every entry, this peer's own or not.
pub trait Log: Send + Sync + 'static {
    /// Proposes `commands` in one entry and answers this peer's results of applying them.
    fn propose(&self, commands: Vec<Command>) -> BoxFuture<'_, Result<Proposed, LogError>>;

    /// The peers that may take new pins now (up, with fresh metrics).
    fn candidates(&self) -> Vec<Candidate>;
}

/// Why the log did not take a proposal.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// No leader, or no answer in time: the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The log is shutting down.
    #[error("the cluster log is shut down")]
    Closed,
    /// The free-space guard refused the proposal before it reached the log
    /// (whose storage must never meet a full disk); retry once space is freed.
    #[error(transparent)]
    NoSpace(pincluster_state::NoSpace),
}

/// The cluster's log behind the free-space guard: every proposal, whoever
/// makes it, is refused below the floor (see [`pincluster_state::Space`]).
struct GuardedLog {
    log: Arc<dyn Log>,
    space: pincluster_state::Space,
}

impl Log for GuardedLog {
    fn propose(&self, commands: Vec<Command>) -> BoxFuture<'_, Result<Proposed, LogError>> {
        match self.space.check_floor() {
            Ok(()) => self.log.propose(commands),
            Err(refused) => Box::pin(std::future::ready(Err(LogError::NoSpace(refused)))),
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.log.candidates()
    }
}

/// The pin tracker. Cheap to clone.
#[derive(Clone)]
pub struct Tracker {
    state: Pinset,
    reader: Reader,
    workers: Arc<Workers>,
    log: Arc<dyn Log>,
}

impl Tracker {
    /// Starts the workers on the current tokio runtime (the node's) and
    /// resumes every pin a previous run left unfinished. Commands go to
    /// `log`, and so do this peer's statuses: the ones that differ from
    /// what the log holds are reported again first.
    pub fn start(state: Pinset, node: Node, options: TrackerOptions, log: Arc<dyn Log>) -> Tracker {
        let log: Arc<dyn Log> = Arc::new(GuardedLog { log, space: state.space().clone() });
        let workers = Workers::start(state.clone(), node, options);
        let reporter = workers.reporter.clone();
        tokio::spawn(reporter.run(log.clone(), workers.options().peer_id.clone()));
        let tracker = Tracker { reader: state.reader(), state, workers, log };
        tracker.reconcile();
        tracker
    }

    /// Reports, in the background, this peer's statuses that differ from
    /// what the log holds for it: those reported before a crash but not yet
    /// applied, and after an upgrade. `queued` is not reported: a CID this
    /// peer still has to walk keeps what it reported until the walk ends.
    fn reconcile(&self) {
        let workers = self.workers.clone();
        let (scan, mut rx) = scan_pins(&self.state, |_| true);
        tokio::spawn(async move {
            let me = workers.options().peer_id.clone();
            let mut reported = 0usize;
            while let Some(pins) = rx.recv().await {
                workers.reporter.room().await;
                for pin in pins {
                    let known = pin.peers.iter().find(|p| p.peer == me);
                    let (status, error) = match (workers.allocated_here(&pin.allocations), known) {
                        (true, _) if pin.status == PinStatus::Queued => continue,
                        (true, Some(k)) if k.status == pin.status && k.error == pin.error => continue,
                        (true, _) => (pin.status, pin.error.filter(|_| pin.status == PinStatus::Failed)),
                        (false, Some(_)) => (PinStatus::Queued, None),
                        (false, None) => continue,
                    };
                    workers.reporter.note(pin.cid, status, error);
                    reported += 1;
                }
            }
            let _ = scan.await;
            if reported > 0 {
                tracing::info!(count = reported, "statuses that the log did not hold are reported again");
            }
        });
    }

    /// What the reprovider has announced to the DHT.
    pub fn reprovide_status(&self) -> ReprovideStatus {
        self.workers.reprovider.status()
    }

    /// The workers' queue, now.
    pub fn queue_status(&self) -> QueueStatus {
        self.workers.queue_status()
    }

    /// What went over Bitswap since the node started.
    pub fn bitswap_traffic(&self) -> pincluster_ipfs::Traffic {
        self.workers.node().bitswap_traffic()
    }

    /// The embedded node's DHT routing tables and counters.
    pub fn dht_status(&self) -> pincluster_ipfs::DhtStatus {
        self.workers.node().dht_status()
    }

    /// The pinset, read-only: every write goes through the tracker.
    pub fn state(&self) -> &Reader {
        &self.reader
    }

    /// The allocation a pin of a CID new to the pinset needs, proposed in the
    /// same entry as the pin (none for a pin on every peer, or a CID the
    /// pinset has: it keeps its allocations).
    fn allocation(&self, pin: &NewPin) -> Result<Option<Command>, StateError> {
        if pin.options.replication_min == -1 || self.state.cluster_pin(&pin.cid)?.is_some() {
            return Ok(None);
        }
        let allocations = allocate::allocate(&pin.options, &self.log.candidates(), &self.workers.options().allocate_by)
            .map_err(StateError::Refused)?;
        Ok(Some(Command::SetAllocations { cid: pin.cid, allocations }))
    }

    /// Proposes commands in one log entry; answers once they are applied here.
    #[tracing::instrument(name = "log.propose", skip_all, fields(commands = commands.len()))]
    async fn propose_all(&self, commands: Vec<Command>) -> Result<Proposed, TrackerError> {
        self.log.propose(commands).await.map_err(|e| match e {
            LogError::Unavailable(text) => TrackerError::Unavailable(text),
            LogError::Closed => TrackerError::Stopped,
            LogError::NoSpace(refused) => TrackerError::State(StateError::NoSpace(refused)),
        })
    }

    async fn propose(&self, command: Command) -> Result<Applied, TrackerError> {
        Ok(self.propose_all(vec![command]).await?.pop().ok_or(TrackerError::Stopped)??)
    }

    /// Schedules the local work that an applied command calls for: queues
    /// the CID it added or allocated here, releases those it removed or
    /// allocated elsewhere. Whoever applies the log calls it for every
    /// entry; the work follows from the outcome alone.
    pub async fn act_on(&self, applied: &Applied) {
        if let Some(cid) = applied.added() {
            self.workers.schedule(cid);
        }
        if let Applied::SetAllocations(cid) = applied {
            match self.state.cluster_pin(cid) {
                Ok(Some(entry)) if self.workers.allocated_here(&entry.pin.allocations) => self.workers.schedule(*cid),
                Ok(Some(_)) => self.workers.release(*cid).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(%cid, %error, "cannot read a re-allocated pin"),
            }
        }
        for cid in applied.removed() {
            self.workers.release(cid).await;
        }
    }

    /// The pinset was replaced by a snapshot: check the queue and the held
    /// content against it again.
    pub fn resync(&self) {
        self.workers.resync();
        self.reconcile();
    }

    /// Pins `pin.cid` for `user`, or updates that user's pin object. Pinning
    /// a CID whose content failed queues it again.
    pub async fn pin(&self, user: &UserName, pin: NewPin) -> Result<PinView, TrackerError> {
        self.pin_from(user, pin, None).await
    }

    /// Pins `pin.cid` for `user`; with `update_from`, Cluster's pin update
    /// (see [`Command::Pin`]): the rules run where the command is applied, so
    /// they cannot race with other writes.
    #[tracing::instrument(name = "tracker.pin", skip_all, fields(cid = %pin.cid, user = %user))]
    pub async fn pin_from(
        &self,
        user: &UserName,
        pin: NewPin,
        update_from: Option<Cid>,
    ) -> Result<PinView, TrackerError> {
        pin.validate()?;
        // A new pin grows the pinset and then the block store: refused below the reserve.
        self.reader.space().check().map_err(StateError::NoSpace)?;
        let allocation = self.allocation(&pin)?;
        let command = Command::Pin { user: user.clone(), pin, at: Timestamp::now(), update_from };
        match self.propose_allocated(command, allocation).await? {
            Applied::Pin(outcome) => self.follow(&outcome.view).await,
            _ => Err(TrackerError::Stopped),
        }
    }

    /// Proposes `command`, which pins a CID, with the allocation it needs
    /// (see [`Tracker::allocation`]) in the same entry; the view in its
    /// outcome shows the allocation.
    async fn propose_allocated(&self, command: Command, allocation: Option<Command>) -> Result<Applied, TrackerError> {
        let allocations = match &allocation {
            Some(Command::SetAllocations { allocations, .. }) => Some(allocations.clone()),
            _ => None,
        };
        let mut results = self.propose_all(std::iter::once(command).chain(allocation).collect()).await?.into_iter();
        let mut applied = results.next().ok_or(TrackerError::Stopped)??;
        // The allocation was applied right after the command.
        if let (Some(allocations), Some(Ok(_))) = (allocations, results.next()) {
            if let Applied::Pin(PinOutcome { view, .. }) | Applied::Replace(ReplaceOutcome { view, .. }) = &mut applied
            {
                view.cluster.allocations = allocations;
            }
        }
        Ok(applied)
    }

    /// Replaces `user`'s pin of `old` by `pin` in one step. Blocks the two
    /// DAGs share are not fetched again: the collector waits while pins are
    /// in progress.
    #[tracing::instrument(name = "tracker.replace", skip_all, fields(old = %old, cid = %pin.cid, user = %user))]
    pub async fn replace(&self, user: &UserName, old: &Cid, pin: NewPin) -> Result<PinView, TrackerError> {
        pin.validate()?;
        self.reader.space().check().map_err(StateError::NoSpace)?;
        let allocation = self.allocation(&pin)?;
        let command = Command::Replace { user: user.clone(), old: *old, pin, at: Timestamp::now() };
        match self.propose_allocated(command, allocation).await? {
            Applied::Replace(outcome) => self.follow(&outcome.view).await,
            _ => Err(TrackerError::Stopped),
        }
    }

    /// Drops `user`'s pin of `cid`; the content goes when no user holds it.
    #[tracing::instrument(name = "tracker.unpin", skip_all, fields(cid = %cid, user = %user))]
    pub async fn unpin(&self, user: &UserName, cid: &Cid) -> Result<(), TrackerError> {
        self.propose(Command::Unpin { user: user.clone(), cid: *cid }).await.map(drop)
    }

    /// The embedded node's addresses (with `/p2p/<peer id>`).
    pub async fn delegates(&self) -> Vec<pincluster_model::Multiaddr> {
        let node = self.workers.node().clone();
        self.workers.on_node_runtime(async move { node.delegates().await }).await.unwrap_or_default()
    }

    /// The peer IDs the IPFS node is connected to.
    pub async fn connected_peers(&self) -> Vec<String> {
        let node = self.workers.node().clone();
        self.workers.on_node_runtime(async move { node.connected_peers().await }).await.unwrap_or_default()
    }

    /// Dials another IPFS node (a cluster peer's), so that blocks flow both ways.
    pub async fn connect(&self, addr: pincluster_model::Multiaddr) -> Result<(), TrackerError> {
        let node = self.workers.node().clone();
        Ok(self
            .workers
            .on_node_runtime(async move { node.connect(addr).await })
            .await
            .ok_or(TrackerError::Stopped)??)
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
    pub fn importer(&self, options: ImportOptions) -> Result<Importer, IpfsError> {
        self.workers.node().importer(options)
    }

    /// Starts the import of a CAR file into the node; as [`Tracker::importer`].
    pub fn car_importer(&self) -> CarImporter {
        self.workers.node().car_importer()
    }

    /// The block of `cid` from the node's local store (hash-checked), never from the network;
    /// `None` when it is not there. For readers such as the HTTP gateway.
    pub async fn local_block(&self, cid: &Cid) -> Result<Option<pincluster_ipfs::Bytes>, IpfsError> {
        self.workers.node().local_block(cid).await
    }

    /// Whether the node holds `cid` under a pin (a pinned root or a block below one).
    pub async fn is_pinned_block(&self, cid: &Cid) -> Result<bool, IpfsError> {
        self.workers.node().is_pinned_block(cid).await
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
                self.workers.set_status(&cid, update).await?;
                self.workers.schedule(cid);
                let mut requeued = view.clone();
                requeued.cluster.status = PinStatus::Queued;
                // As the report just noted will make it.
                requeued.cluster.summary = PinStatus::Queued;
                requeued.cluster.summary_error = None;
                requeued.cluster.attempts = 0;
                requeued.cluster.error = None;
                return Ok(requeued);
            }
            PinStatus::Pinning | PinStatus::Pinned => {}
        }
        Ok(view.clone())
    }
}

/// How many pins one re-allocation entry moves.
const REALLOCATE_BATCH: usize = 1000;

type PinChunks = tokio::sync::mpsc::Receiver<Vec<pincluster_model::ClusterPin>>;

/// Walks every cluster pin on a blocking thread and hands those `keep`
/// selects over in chunks of [`REALLOCATE_BATCH`], two chunks ahead at most.
fn scan_pins(
    state: &Pinset,
    keep: impl Fn(&pincluster_model::ClusterPin) -> bool + Send + 'static,
) -> (tokio::task::JoinHandle<()>, PinChunks) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let state = state.clone();
    let scan = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::new();
        for pin in state.cluster_pins(pincluster_model::StatusSet::ALL).flatten() {
            if keep(&pin) {
                chunk.push(pin);
            }
            if chunk.len() == REALLOCATE_BATCH && tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
    });
    (scan, rx)
}

/// Re-allocation: moving pins off a peer that leaves or is down.
impl Tracker {
    /// Moves every pin allocated to `peer` to other peers (it is leaving):
    /// each keeps its other allocations and gets new ones in place of
    /// `peer`, by the usual allocation; returns how many pins were moved.
    /// The statuses it reported of pins on every peer are withdrawn.
    pub async fn vacate(&self, peer: &str) -> Result<usize, TrackerError> {
        self.reallocate(peer, false).await
    }

    /// Re-allocates the pins allocated to `peer` (down for too long) that
    /// now have fewer than `replication_factor_min` allocations on peers
    /// that are up; the others keep their allocations. Returns how many.
    pub async fn repair(&self, peer: &str) -> Result<usize, TrackerError> {
        self.reallocate(peer, true).await
    }

    async fn reallocate(&self, peer: &str, only_below_min: bool) -> Result<usize, TrackerError> {
        let candidates: Vec<Candidate> = self.log.candidates().into_iter().filter(|c| c.peer_id != peer).collect();
        let up: std::collections::HashSet<String> = candidates.iter().map(|c| c.peer_id.clone()).collect();
        let gone = peer.to_string();
        let (scan, mut rx) = scan_pins(&self.state, move |pin| {
            let everywhere = pin.allocations.is_empty() && pin.peers.iter().any(|p| p.peer == gone);
            pin.allocations.contains(&gone) || (everywhere && !only_below_min)
        });
        let mut moved = 0;
        while let Some(pins) = rx.recv().await {
            let mut commands = Vec::new();
            let mut withdrawn = Vec::new();
            for pin in pins {
                if pin.allocations.is_empty() {
                    withdrawn.push(Reported { cid: pin.cid, status: PinStatus::Queued, error: None });
                    continue;
                }
                let kept: Vec<String> =
                    pin.allocations.iter().filter(|a| *a != peer && up.contains(*a)).cloned().collect();
                let min = usize::try_from(pin.options.replication_min).unwrap_or(0);
                if only_below_min && kept.len() >= min {
                    continue;
                }
                let mut options = pin.options.clone();
                options.user_allocations = kept.iter().chain(&pin.options.user_allocations).cloned().collect();
                let allocations = match allocate::allocate(&options, &candidates, &self.workers.options().allocate_by) {
                    Ok(allocations) => allocations,
                    Err(reason) => {
                        tracing::warn!(cid = %pin.cid, %reason, "cannot re-allocate a pin fully; keeping the peers it has");
                        kept
                    }
                };
                commands.push(Command::SetAllocations { cid: pin.cid, allocations });
            }
            moved += commands.len();
            if !withdrawn.is_empty() {
                commands.push(Command::Report { peer: peer.to_owned(), at: Timestamp::now(), statuses: withdrawn });
            }
            if !commands.is_empty() {
                for result in self.propose_all(commands).await? {
                    result?;
                }
            }
        }
        scan.await.map_err(|_| TrackerError::Stopped)?;
        Ok(moved)
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
        if entry.pin.status != PinStatus::Failed {
            return Ok(false);
        }
        let update = StatusUpdate { attempts: Some(0), ..StatusUpdate::status(PinStatus::Queued) };
        self.workers.set_status(cid, update).await?;
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
