//! This peer's statuses on their way into the log: every status the workers
//! record is reported to the other peers as a [`Command::Report`], in
//! batches, at most about once a second, so that every peer lists and
//! counts pins by the same summary. Read [`Reporter`] first.
//!
//! Only the latest status of a CID waits: a pin that goes `pinning` then
//! `pinned` within a second is reported once, `pinned`. The first change
//! after a quiet second goes at once, so a single pin's status shows without
//! waiting. A report the log refuses (no leader) is retried, unless a newer
//! status of the same CID replaced it meanwhile. What waits is in memory:
//! after a restart, [`crate::Tracker::start`] compares this peer's local
//! records with what the log holds and reports the differences again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pincluster_model::{Cid, PinStatus, Timestamp};
use pincluster_state::{Command, Reported};
use tokio::sync::Notify;

use crate::{Log, LogError};

/// At most one report per this interval.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The most CIDs one report carries.
const MAX_REPORT: usize = 10_000;
/// Beyond this many waiting statuses, the comparison after a restart waits.
const MAX_WAITING: usize = 50_000;

/// The statuses waiting to be reported, latest per CID.
#[derive(Default)]
pub(crate) struct Reporter {
    waiting: Mutex<HashMap<Cid, (PinStatus, Option<String>)>>,
    wake: Notify,
    /// Signalled after each report, for those waiting for room.
    sent: Notify,
}

impl Reporter {
    /// Queues this peer's status of `cid` (`queued`: it holds nothing of it).
    pub(crate) fn note(&self, cid: Cid, status: PinStatus, error: Option<String>) {
        lock(&self.waiting).insert(cid, (status, error));
        self.wake.notify_one();
    }

    /// Waits until fewer than [`MAX_WAITING`] statuses wait.
    pub(crate) async fn room(&self) {
        while lock(&self.waiting).len() >= MAX_WAITING {
            // A report may go out between the check and the wait: look again each second.
            let _ = tokio::time::timeout(REPORT_INTERVAL, self.sent.notified()).await;
        }
    }

    /// Sends the waiting statuses as `peer`'s reports, until the log closes.
    pub(crate) async fn run(self: Arc<Self>, log: Arc<dyn Log>, peer: String) {
        loop {
            self.wake.notified().await;
            loop {
                let batch = self.take();
                if batch.is_empty() {
                    break;
                }
                let count = batch.len();
                let command = Command::Report { peer: peer.clone(), at: Timestamp::now(), statuses: batch.clone() };
                match log.propose(vec![command]).await {
                    Ok(_) => tracing::debug!(count, "statuses reported"),
                    Err(LogError::Closed) => return,
                    Err(LogError::Unavailable(reason)) => {
                        tracing::warn!(count, %reason, "cannot report statuses now; retrying");
                        self.put_back(batch);
                    }
                    // The daemon says once that the disk is full; this retries each interval.
                    Err(LogError::NoSpace(refused)) => {
                        tracing::debug!(count, %refused, "cannot report statuses now; retrying");
                        self.put_back(batch);
                    }
                }
                self.sent.notify_waiters();
                tokio::time::sleep(REPORT_INTERVAL).await;
            }
        }
    }

    fn take(&self) -> Vec<Reported> {
        let mut waiting = lock(&self.waiting);
        let cids: Vec<Cid> = waiting.keys().take(MAX_REPORT).copied().collect();
        cids.into_iter()
            .filter_map(|cid| waiting.remove(&cid).map(|(status, error)| Reported { cid, status, error }))
            .collect()
    }

    /// Queues a refused batch again, except where a newer status came meanwhile.
    fn put_back(&self, batch: Vec<Reported>) {
        let mut waiting = lock(&self.waiting);
        for Reported { cid, status, error } in batch {
            waiting.entry(cid).or_insert((status, error));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
