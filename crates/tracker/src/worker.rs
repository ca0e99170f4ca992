//! The pin workers: a bounded queue of CIDs, `concurrent_pins` workers that
//! fetch each DAG into the embedded node and record every status change in
//! this peer's local records of the pinset, retries with backoff, resume after a restart, and garbage
//! collection when content is no longer held. Read [`Workers`] first.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::{AbortHandle, Abortable};
use pincluster_ipfs::{FetchOptions, GcStats, Node};
use pincluster_model::{Cid, Multiaddr, PinStatus, Progress, StatusSet};
use pincluster_state::{Pinset, StateError, StatusUpdate};
use tokio::sync::{mpsc, Notify};

use crate::policy::{self, AfterFailure, RetryPolicy};
use crate::report::Reporter;
use crate::reprovide::{ReprovideOptions, ReprovideStrategy, Reprovider};
use crate::TrackerError;

/// How often a running pin writes its progress to the pinset.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long after the last unpin the collector runs.
const GC_DEBOUNCE: Duration = Duration::from_secs(2);
/// How often the queue is refilled from the pinset when it overflowed.
const REFILL_INTERVAL: Duration = Duration::from_secs(5);
/// Beyond this many unfinished pins a collection is skipped (the roots are held in memory).
const MAX_GC_EXTRA_ROOTS: usize = 100_000;

/// Tuning of the workers.
#[derive(Clone, Debug)]
pub struct TrackerOptions {
    /// How many pins are fetched at the same time.
    pub concurrent_pins: usize,
    /// Most CIDs waiting in memory; the rest wait as `queued` in the pinset.
    pub max_pin_queue_size: usize,
    /// Retries after a failed attempt before a pin stays `failed`.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// Period of the background collection; `None` = only after unpins and on request.
    pub gc_interval: Option<Duration>,
    /// A pin fails when no block arrives for this long.
    pub stall_timeout: Duration,
    /// A pin fails when its DAG is larger than this.
    pub max_dag_size: Option<u64>,
    /// Most blocks one pin wants from the network at once.
    pub max_outstanding_wants: usize,
    /// This peer's ID: a pin with allocations is fetched here only when they name it.
    pub peer_id: String,
    /// The metrics allocation orders peers by (`cluster.allocate_by`).
    pub allocate_by: Vec<String>,
    /// Announcing held pins to the DHT.
    pub reprovide: ReprovideOptions,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            concurrent_pins: 10,
            max_pin_queue_size: 100_000,
            max_retries: 3,
            retry_backoff: Duration::from_secs(30),
            gc_interval: Some(Duration::from_secs(600)),
            stall_timeout: Duration::from_secs(120),
            max_dag_size: None,
            max_outstanding_wants: 256,
            peer_id: String::new(),
            allocate_by: vec!["tag:group".into(), "freespace".into()],
            reprovide: ReprovideOptions {
                strategy: ReprovideStrategy::None,
                interval: None,
                max_per_second: 100,
                concurrency: 16,
                state_file: std::path::PathBuf::new(),
            },
        }
    }
}

/// The queue and what workers share.
/// What the workers are doing, for metrics and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStatus {
    /// CIDs waiting in the in-memory queue (more may wait on disk).
    pub queued: usize,
    /// Pins being fetched now: busy workers.
    pub running: usize,
    /// Workers in all (`pin_tracker.concurrent_pins`).
    pub workers: usize,
}

pub(crate) struct Workers {
    state: Pinset,
    node: Node,
    options: TrackerOptions,
    queue: mpsc::Sender<Cid>,
    /// CIDs queued in memory or being pinned; a CID is never in the queue twice.
    scheduled: Mutex<HashSet<Cid>>,
    /// Aborts the running job of a CID whose last holder left.
    running: Mutex<HashMap<Cid, AbortHandle>>,
    /// Set when a CID could not be queued because the queue was full.
    overflowed: Notify,
    gc_wanted: Notify,
    runtime: tokio::runtime::Handle,
    /// Where every recorded status goes, to be reported through the log.
    pub(crate) reporter: Arc<Reporter>,
    /// Announces pins once they are pinned, and all of them on a schedule.
    pub(crate) reprovider: Reprovider,
}

impl Workers {
    /// Starts the workers, the refill task and the collector on the current
    /// tokio runtime, and queues every pin left `queued`, `pinning` or
    /// retryable `failed` by a previous run.
    pub(crate) fn start(state: Pinset, node: Node, options: TrackerOptions) -> Arc<Workers> {
        let capacity = options.max_pin_queue_size.max(1);
        let (queue, receiver) = mpsc::channel(capacity);
        let reprovider = Reprovider::start(state.clone(), node.clone(), options.reprovide.clone());
        let workers = Arc::new(Workers {
            state,
            node,
            options,
            queue,
            scheduled: Mutex::new(HashSet::new()),
            running: Mutex::new(HashMap::new()),
            overflowed: Notify::new(),
            gc_wanted: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
            reporter: Arc::new(Reporter::default()),
            reprovider,
        });
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..workers.options.concurrent_pins.max(1) {
            let (w, r) = (workers.clone(), receiver.clone());
            tokio::spawn(async move { w.work(r).await });
        }
        let w = workers.clone();
        tokio::spawn(async move { w.refill_loop().await });
        let w = workers.clone();
        tokio::spawn(async move { w.gc_loop().await });
        workers.overflowed.notify_one();
        workers
    }

    /// Runs `future` on the node's runtime, whatever runtime the caller is on.
    pub(crate) async fn on_node_runtime<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.runtime.spawn(future).await.ok()
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    pub(crate) fn options(&self) -> &TrackerOptions {
        &self.options
    }

    /// Whether a pin with these allocations is this peer's to hold (none = every peer's).
    pub(crate) fn allocated_here(&self, allocations: &[String]) -> bool {
        allocations.is_empty() || allocations.contains(&self.options.peer_id)
    }

    /// How failed pins are retried.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { max_retries: self.options.max_retries, backoff: self.options.retry_backoff }
    }

    /// Checks the queue against the pinset again (after a snapshot replaced it).
    pub(crate) fn resync(&self) {
        self.overflowed.notify_one();
        self.gc_wanted.notify_one();
    }

    /// The in-memory queue and the workers, now.
    pub(crate) fn queue_status(&self) -> QueueStatus {
        QueueStatus {
            queued: self.queue.max_capacity() - self.queue.capacity(),
            running: lock(&self.running).len(),
            workers: self.options.concurrent_pins.max(1),
        }
    }

    /// Queues `cid` unless it is already queued or running.
    pub(crate) fn schedule(&self, cid: Cid) {
        if !lock(&self.scheduled).insert(cid) {
            return;
        }
        if self.queue.try_send(cid).is_err() {
            // Full: it stays `queued` in the pinset and the refill task picks it up.
            lock(&self.scheduled).remove(&cid);
            self.overflowed.notify_one();
        }
    }

    /// The last holder of `cid` left: stop fetching it, unpin it, collect soon.
    pub(crate) async fn release(&self, cid: Cid) {
        if let Some(job) = lock(&self.running).remove(&cid) {
            job.abort();
        }
        let node = self.node.clone();
        if let Some(Err(error)) = self.on_node_runtime(async move { node.unpin(&cid).await }).await {
            tracing::warn!(%cid, %error, "unpin in the IPFS node failed");
        }
        self.gc_wanted.notify_one();
    }

    async fn work(self: Arc<Self>, receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Cid>>>) {
        loop {
            let next = receiver.lock().await.recv().await;
            let Some(cid) = next else { return };
            let (handle, registration) = AbortHandle::new_pair();
            lock(&self.running).insert(cid, handle);
            let job = Abortable::new(self.clone().pin_one(cid), registration);
            if job.await.is_err() {
                tracing::info!(%cid, "pin stopped: no user holds it any more");
            }
            lock(&self.running).remove(&cid);
            lock(&self.scheduled).remove(&cid);
        }
    }

    /// One attempt at one pin, with every status change recorded.
    #[tracing::instrument(name = "pin", skip(self), fields(%cid))]
    async fn pin_one(self: Arc<Self>, cid: Cid) {
        let entry = match self.state.cluster_pin(&cid) {
            Ok(Some(entry)) => entry,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%cid, %error, "cannot read the pin");
                return;
            }
        };
        if entry.pin.status == PinStatus::Pinned || !self.allocated_here(&entry.pin.allocations) {
            return;
        }
        let attempts = entry.pin.attempts + 1;
        let pinning = StatusUpdate { attempts: Some(attempts), ..StatusUpdate::status(PinStatus::Pinning) };
        match self.set_status(&cid, pinning).await {
            Ok(()) => {}
            // The disk is full: the pin stays as it is on disk and is tried again later.
            Err(error) if error.is_no_space() => {
                tracing::info!(%cid, %error, "pin postponed");
                let workers = self.clone();
                let wait = self.options.retry_backoff;
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    workers.schedule(cid);
                });
                return;
            }
            Err(StateError::NotFound) => return,
            Err(error) => {
                tracing::error!(%cid, %error, "cannot record the pin status");
                return;
            }
        }
        let mut origins: Vec<Multiaddr> = Vec::new();
        for origin in entry.holders.iter().flat_map(|(_, pin)| pin.origins.iter()) {
            if !origins.contains(origin) {
                origins.push(origin.clone());
            }
        }
        let fetch = FetchOptions {
            origins,
            stall_timeout: self.options.stall_timeout,
            max_dag_size: self.options.max_dag_size,
            max_outstanding: self.options.max_outstanding_wants.max(1),
        };
        tracing::info!(%cid, attempt = attempts, "pinning");
        let blocks = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (b, y) = (blocks.clone(), bytes.clone());
        let node = self.node.clone();
        let mode = entry.pin.options.mode;
        let fetch_job = tokio::spawn(async move {
            node.pin(&cid, mode, fetch, move |p: Progress| {
                b.store(p.blocks, Ordering::Relaxed);
                y.store(p.bytes, Ordering::Relaxed);
            })
            .await
        });
        // Abort the fetch too when this job is aborted.
        struct AbortOnDrop(tokio::task::AbortHandle);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _guard = AbortOnDrop(fetch_job.abort_handle());
        tokio::pin!(fetch_job);
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        ticker.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut fetch_job => break result,
                _ = ticker.tick() => {
                    let progress = Progress { blocks: blocks.load(Ordering::Relaxed), bytes: bytes.load(Ordering::Relaxed) };
                    // Informational: not fsynced on its own.
                    match self.state.update_progress(&cid, progress).await {
                        Ok(()) => {}
                        Err(StateError::NotFound) => return,
                        Err(error) => tracing::warn!(%cid, %error, "cannot record the pin's progress"),
                    }
                    tracing::info!(%cid, blocks = progress.blocks, bytes = progress.bytes, "pinning progress");
                }
            }
        };
        match result {
            Ok(Ok(stats)) => {
                let update = StatusUpdate {
                    progress: Some(Progress { blocks: stats.blocks, bytes: stats.bytes }),
                    dag_size: Some(stats.bytes),
                    ..StatusUpdate::status(PinStatus::Pinned)
                };
                tracing::info!(%cid, blocks = stats.blocks, bytes = stats.bytes, fetched = stats.fetched_blocks, "pinned");
                metrics::counter!(crate::metrics::PIN_ATTEMPTS, "outcome" => "pinned").increment(1);
                if self.record(&cid, update).await {
                    self.reprovider.announce(cid);
                } else {
                    // Unpinned while the last block arrived: release it again.
                    let node = self.node.clone();
                    let _ = node.unpin(&cid).await;
                    self.gc_wanted.notify_one();
                }
            }
            Ok(Err(error)) if error.is_no_space() => {
                // What it fetched is not kept (see `collect_garbage`): collect it now.
                self.failed(cid, attempts, error.to_string()).await;
                self.gc_wanted.notify_one();
            }
            Ok(Err(error)) => self.failed(cid, attempts, error.to_string()).await,
            Err(join) => self.failed(cid, attempts, format!("pin task ended: {join}")).await,
        }
    }

    async fn failed(self: &Arc<Self>, cid: Cid, attempts: u32, reason: String) {
        let policy = self.retry_policy();
        let details = policy.details(&reason, attempts);
        tracing::warn!(%cid, %details, "pin failed");
        metrics::counter!(crate::metrics::PIN_ATTEMPTS, "outcome" => "failed").increment(1);
        let update = StatusUpdate { error: Some(details), ..StatusUpdate::status(PinStatus::Failed) };
        let unrecorded = match self.set_status(&cid, update).await {
            Ok(()) => false,
            // A disk too full for the status too: the pin stays `pinning` on disk; try again later.
            Err(error) if error.is_no_space() => {
                tracing::warn!(%cid, %error, "cannot record the pin's failure");
                true
            }
            Err(StateError::NotFound) => return,
            Err(error) => {
                tracing::error!(%cid, %error, "cannot record the pin status");
                return;
            }
        };
        let backoff = match policy.after_failure(attempts) {
            AfterFailure::RetryIn(backoff) => backoff,
            // The failure is not on disk: the pin is tried again even without retries left.
            AfterFailure::GiveUp if unrecorded => policy.backoff,
            AfterFailure::GiveUp => return,
        };
        let workers = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            workers.retry(cid, unrecorded).await;
        });
    }

    /// Queues a `failed` pin again, keeping its attempt count (or, with
    /// `unrecorded`, a pin whose failure could not be written, as it is).
    async fn retry(&self, cid: Cid, unrecorded: bool) {
        let status = match self.state.cluster_pin(&cid) {
            Ok(Some(entry)) => entry.pin.status,
            _ => return,
        };
        let again = (unrecorded && status == PinStatus::Pinning)
            || (status == PinStatus::Failed && self.record(&cid, StatusUpdate::status(PinStatus::Queued)).await);
        if again {
            self.schedule(cid);
        }
    }

    /// Writes a status change durably, then hands it to the reporter.
    pub(crate) async fn set_status(&self, cid: &Cid, update: StatusUpdate) -> Result<(), StateError> {
        let (status, error) = (update.status, update.error.clone());
        self.state.update_status(cid, update).await?;
        self.reporter.note(*cid, status, error);
        Ok(())
    }

    /// Writes a status change; `false` when the pin is gone (or the pinset failed).
    async fn record(&self, cid: &Cid, update: StatusUpdate) -> bool {
        match self.set_status(cid, update).await {
            Ok(()) => true,
            Err(StateError::NotFound) => false,
            Err(error) => {
                tracing::error!(%cid, %error, "cannot record the pin status");
                false
            }
        }
    }

    /// Feeds the queue from the pinset: at start (resuming a previous run) and
    /// whenever the queue overflowed.
    async fn refill_loop(self: Arc<Self>) {
        loop {
            self.overflowed.notified().await;
            loop {
                let overflow = self.refill().await;
                if !overflow {
                    break;
                }
                tokio::time::sleep(REFILL_INTERVAL).await;
            }
        }
    }

    /// Queues every unfinished pin not yet scheduled, up to the queue's room.
    /// Returns whether some were left out for lack of room.
    async fn refill(self: &Arc<Self>) -> bool {
        let room = self.queue.capacity();
        if !policy::refill_due(room, self.queue.max_capacity()) {
            return true;
        }
        let scheduled: HashSet<Cid> = lock(&self.scheduled).clone();
        let workers = Arc::clone(self);
        let scan = tokio::task::spawn_blocking(move || {
            let pins = workers.state.cluster_pins(unfinished());
            policy::refill_pick(pins, &scheduled, room, &workers.retry_policy(), |a| workers.allocated_here(a))
        });
        let Ok((found, more)) = scan.await else { return false };
        for (cid, status) in found {
            if status == PinStatus::Failed {
                self.retry(cid, false).await;
            } else {
                self.schedule(cid);
            }
        }
        more
    }

    /// Collects unreferenced blocks after unpins (debounced) and periodically.
    async fn gc_loop(self: Arc<Self>) {
        loop {
            let periodic = async {
                match self.options.gc_interval {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.gc_wanted.notified() => tokio::time::sleep(GC_DEBOUNCE).await,
                _ = periodic => {}
            }
            while !policy::gc_may_run(lock(&self.scheduled).len()) {
                tokio::time::sleep(GC_DEBOUNCE).await;
            }
            match self.collect_garbage().await {
                Ok(stats) if stats.removed_blocks > 0 => {
                    tracing::info!(blocks = stats.removed_blocks, bytes = stats.removed_bytes, "garbage collected")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "garbage collection failed"),
            }
        }
    }
}

impl Workers {
    /// One garbage collection that keeps, besides every finished pin, the
    /// blocks on disk under every unfinished one: a DAG imported by `/add`
    /// whose pin is still queued, or the part of a DAG a failed pin fetched.
    /// A CID allocated to other peers is kept only until they hold it (its
    /// summary is `pinned`): a DAG added here for them is served until then.
    pub(crate) async fn collect_garbage(self: &Arc<Self>) -> Result<GcStats, TrackerError> {
        let (state, workers) = (self.state.clone(), self.clone());
        let unfinished = tokio::task::spawn_blocking(move || {
            let pins = state.cluster_pins(unfinished());
            policy::gc_extra_roots(pins, |a| workers.allocated_here(a), MAX_GC_EXTRA_ROOTS)
        })
        .await
        .map_err(|_| TrackerError::Stopped)??;
        let Some(roots) = unfinished else {
            tracing::info!("garbage collection skipped: more than {MAX_GC_EXTRA_ROOTS} pins are unfinished");
            return Ok(GcStats::default());
        };
        Ok(self.node.gc(&roots).await?)
    }
}

/// The statuses of pins that still have work to do here.
fn unfinished() -> StatusSet {
    [PinStatus::Queued, PinStatus::Pinning, PinStatus::Failed].into_iter().collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
