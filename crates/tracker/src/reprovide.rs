//! Keeping what this peer holds findable: every pin is announced to the DHT when it reaches
//! `pinned`, and everything held is announced again on a schedule (DHT provider records expire
//! after 48 h), at a bounded rate, resuming an interrupted run where it stopped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use pincluster_ipfs::Node;
use pincluster_model::{Cid, PinStatus, StatusSet};
use pincluster_state::Pinset;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

/// New pins waiting to be announced; beyond it they wait for the next run.
const ANNOUNCE_QUEUE: usize = 10_000;
/// CIDs read from the pinset at a time during a run.
const CHUNK: usize = 256;
/// How often a run's position is saved.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// What is announced (`ipfs.reprovider.strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReprovideStrategy {
    /// Each pin's root CID.
    #[default]
    Roots,
    /// Every block of each pin's DAG.
    All,
    /// Nothing.
    None,
}

/// How announcing runs.
#[derive(Clone, Debug)]
pub struct ReprovideOptions {
    pub strategy: ReprovideStrategy,
    /// Between the starts of two runs; `None` = new pins only.
    pub interval: Option<Duration>,
    /// Most announcements started per second.
    pub max_per_second: u32,
    /// Most announcements in flight.
    pub concurrency: usize,
    /// Where a run's position survives a restart.
    pub state_file: PathBuf,
}

/// The reprovider's figures, for `/id`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReprovideStatus {
    pub strategy: ReprovideStrategy,
    /// The run in progress: when it started (ms since the epoch) and how many pins it covered.
    pub running_since: Option<u64>,
    pub run_done: u64,
    /// The last complete run: when it ended (ms), how many pins, how long it took (ms).
    pub last_run_end: Option<u64>,
    pub last_run_pins: u64,
    pub last_run_ms: u64,
    /// New pins announced since start, and announcements that reached no DHT peer.
    pub announced: u64,
    pub failed: u64,
}

/// Saved between runs of the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Saved {
    /// The run in progress (start ms, pins done), if any.
    running: Option<(u64, u64)>,
    /// The last complete run's start and end (ms) and pin count.
    last: Option<(u64, u64, u64)>,
}

impl Saved {
    fn read(path: &PathBuf) -> Saved {
        let Ok(text) = std::fs::read_to_string(path) else { return Saved::default() };
        let n: Vec<u64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        match n.as_slice() {
            [a, b, c, d, e] => Saved { running: (*a > 0).then_some((*a, *b)), last: (*c > 0).then_some((*c, *d, *e)) },
            _ => Saved::default(),
        }
    }

    fn write(&self, path: &PathBuf) {
        let (a, b) = self.running.unwrap_or_default();
        let (c, d, e) = self.last.unwrap_or_default();
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, format!("{a} {b} {c} {d} {e}\n")).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(error) = written {
            tracing::warn!(%error, file = %path.display(), "cannot save the reprovider's position");
        }
    }
}

/// The handle the workers announce new pins through. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Reprovider {
    queue: mpsc::Sender<Cid>,
    status: Arc<Mutex<ReprovideStatus>>,
}

impl Reprovider {
    pub(crate) fn start(state: Pinset, node: Node, options: ReprovideOptions) -> Reprovider {
        let (queue, rx) = mpsc::channel(ANNOUNCE_QUEUE);
        let status = Arc::new(Mutex::new(ReprovideStatus { strategy: options.strategy, ..Default::default() }));
        if options.strategy != ReprovideStrategy::None {
            let run = Run { state, node, options, status: status.clone(), saved: Saved::default() };
            tokio::spawn(run.run(rx));
        }
        Reprovider { queue, status }
    }

    /// Queues `cid` to be announced soon; when the queue is full it waits for the next run.
    pub(crate) fn announce(&self, cid: Cid) {
        if self.queue.try_send(cid).is_err() {
            tracing::debug!(%cid, "announce queue full: the next reprovide run covers it");
        }
    }

    pub(crate) fn status(&self) -> ReprovideStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

struct Run {
    state: Pinset,
    node: Node,
    options: ReprovideOptions,
    status: Arc<Mutex<ReprovideStatus>>,
    saved: Saved,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Run {
    async fn run(mut self, mut queue: mpsc::Receiver<Cid>) {
        self.saved = Saved::read(&self.options.state_file);
        self.publish(|s, saved| {
            s.last_run_end = saved.last.map(|l| l.1);
            s.last_run_pins = saved.last.map_or(0, |l| l.2);
            s.last_run_ms = saved.last.map_or(0, |l| l.1.saturating_sub(l.0));
        });
        let mut ticker = tokio::time::interval(Duration::from_secs(1) / self.options.max_per_second.max(1));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_run = self.next_run();
            tokio::select! {
                cid = queue.recv() => {
                    let Some(cid) = cid else { return };
                    ticker.tick().await;
                    let ok = self.announce(cid).await;
                    self.publish(|s, _| if ok { s.announced += 1 } else { s.failed += 1 });
                }
                () = sleep_until(next_run) => self.full_run(&mut queue, &mut ticker).await,
            }
        }
    }

    /// When the next run starts: at once to finish an interrupted one, else an interval after
    /// the last one started; never without an interval.
    fn next_run(&self) -> Option<Instant> {
        let interval = self.options.interval?;
        if self.saved.running.is_some() {
            return Some(Instant::now());
        }
        let Some((started, _, _)) = self.saved.last else {
            // The first run waits a little, so a starting node has found DHT peers.
            return Some(Instant::now() + Duration::from_secs(60));
        };
        let due = started.saturating_add(interval.as_millis() as u64);
        Some(Instant::now() + Duration::from_millis(due.saturating_sub(now_ms())))
    }

    fn publish(&self, f: impl FnOnce(&mut ReprovideStatus, &Saved)) {
        if let Ok(mut status) = self.status.lock() {
            f(&mut status, &self.saved);
        }
    }

    async fn announce(&self, cid: Cid) -> bool {
        match self.options.strategy {
            ReprovideStrategy::Roots => self.node.provide(&cid).await,
            ReprovideStrategy::All => self.node.provide_dag(&cid).await.0 > 0,
            ReprovideStrategy::None => true,
        }
    }

    /// Announces every pin this peer holds, oldest first, from where an interrupted run stopped;
    /// new pins queued meanwhile go first.
    async fn full_run(&mut self, queue: &mut mpsc::Receiver<Cid>, ticker: &mut tokio::time::Interval) {
        if self.node.dht_status().peers() == 0 {
            // Nobody to announce to: try again later rather than fail every pin.
            tracing::debug!("reprovide run postponed: no DHT peer");
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let (started, skip) = self.saved.running.unwrap_or((now_ms(), 0));
        self.saved.running = Some((started, skip));
        self.saved.write(&self.options.state_file);
        tracing::info!(resumed_at = skip, "reprovide run started");
        let (tx, mut chunks) = mpsc::channel::<Vec<Cid>>(2);
        let state = self.state.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            let pins = state.reader().cluster_pins(StatusSet::only(PinStatus::Pinned));
            for pin in pins.flatten().skip(skip as usize) {
                chunk.push(pin.cid);
                if chunk.len() == CHUNK
                    && tx.blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))).is_err()
                {
                    return;
                }
            }
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
        });
        let mut done = skip;
        let mut inflight = FuturesUnordered::new();
        let mut last_save = Instant::now();
        let concurrency = self.options.concurrency.max(1);
        let this = &*self;
        while let Some(chunk) = chunks.recv().await {
            for cid in chunk {
                while let Ok(new) = queue.try_recv() {
                    ticker.tick().await;
                    inflight.push(this.announce(new));
                    while inflight.len() >= concurrency {
                        inflight.next().await;
                    }
                }
                ticker.tick().await;
                inflight.push(this.announce(cid));
                while inflight.len() >= concurrency {
                    inflight.next().await;
                }
                done += 1;
                if last_save.elapsed() >= SAVE_EVERY {
                    last_save = Instant::now();
                    // Saved a little behind: what is in flight is announced again after a crash.
                    let saved =
                        Saved { running: Some((started, done.saturating_sub(concurrency as u64))), ..this.saved };
                    saved.write(&this.options.state_file);
                    this.publish(|s, _| {
                        s.running_since = Some(started);
                        s.run_done = done;
                    });
                    tracing::info!(done, "reprovide run progress");
                }
            }
        }
        while inflight.next().await.is_some() {}
        drop(inflight);
        let _ = scan.await;
        let ended = now_ms();
        self.saved = Saved { running: None, last: Some((started, ended, done)) };
        self.saved.write(&self.options.state_file);
        self.publish(|s, _| {
            s.running_since = None;
            s.run_done = 0;
            s.last_run_end = Some(ended);
            s.last_run_pins = done;
            s.last_run_ms = ended.saturating_sub(started);
        });
        tracing::info!(pins = done, seconds = ended.saturating_sub(started) / 1000, "reprovide run done");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
