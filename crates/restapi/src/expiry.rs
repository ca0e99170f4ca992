//! The background task that unpins pins whose `expire_at` has passed: read
//! [`Expiry`] first.
//!
//! It sweeps the pinset once at start, then sleeps until the earliest expiry
//! it knows of (at most [`MAX_SLEEP`]); a handler that commits a pin with an
//! expiry wakes it through [`Expiry::schedule`], so a pin with `expire-in=2s`
//! goes away about two seconds later without the pinset being scanned often.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pincluster_model::Timestamp;
use pincluster_tracker::Tracker;
use tokio::sync::Notify;

/// The longest sleep between sweeps, so expiries set by other paths are seen.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// The wait before retrying a failed sweep.
const RETRY: Duration = Duration::from_secs(30);

/// The handle handlers use to tell the task about new expiries.
#[derive(Clone, Default)]
pub(crate) struct Expiry {
    /// The earliest known expiry in milliseconds; `u64::MAX` for none.
    earliest: Arc<AtomicU64>,
    wake: Arc<Notify>,
}

impl Expiry {
    /// Starts the task on the current tokio runtime, if there is one.
    pub(crate) fn start(tracker: Tracker) -> Expiry {
        let expiry = Expiry { earliest: Arc::new(AtomicU64::new(0)), wake: Arc::new(Notify::new()) };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(run(tracker, expiry.clone()));
            }
            Err(_) => tracing::warn!("no async runtime: expired pins will not be removed"),
        }
        expiry
    }

    /// Makes sure the task wakes up by `at`.
    pub(crate) fn schedule(&self, at: Timestamp) {
        let previous = self.earliest.fetch_min(at.0, Ordering::SeqCst);
        if at.0 < previous {
            self.wake.notify_one();
        }
    }
}

async fn run(tracker: Tracker, expiry: Expiry) {
    loop {
        let now = Timestamp::now();
        let earliest = expiry.earliest.load(Ordering::SeqCst);
        if earliest <= now.0 {
            // Pins scheduled from here on lower `earliest` themselves.
            expiry.earliest.store(u64::MAX, Ordering::SeqCst);
            match tracker.unpin_expired(now).await {
                Ok(sweep) => {
                    for cid in &sweep.removed {
                        tracing::info!(%cid, "unpinned an expired pin");
                    }
                    if let Some(next) = sweep.next {
                        expiry.earliest.fetch_min(next.0, Ordering::SeqCst);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "expiry sweep failed; retrying later");
                    let retry = now.0.saturating_add(u64::try_from(RETRY.as_millis()).unwrap_or(u64::MAX));
                    expiry.earliest.fetch_min(retry, Ordering::SeqCst);
                }
            }
            continue;
        }
        let wait = Duration::from_millis(earliest - now.0).min(MAX_SLEEP);
        tokio::select! {
            () = tokio::time::sleep(wait) => {
                if wait == MAX_SLEEP {
                    expiry.earliest.store(0, Ordering::SeqCst);
                }
            }
            () = expiry.wake.notified() => {}
        }
    }
}
