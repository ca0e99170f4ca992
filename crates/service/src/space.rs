//! The daemon's side of the free-space guard (`pincluster_state::Space`):
//! opening the pinset on a disk too full for it without exiting, and saying
//! in the log when the peer becomes read-only and when it takes writes again.
//! Read [`watch`] first.
//!
//! Read-only is not a mode to enter or leave: every write checks the free
//! space when it is made (see `crates/state/src/space.rs`), so writes resume
//! as soon as space is freed. This module only tells.

use std::time::Duration;

use anyhow::Context as _;
use pincluster_state::{Pinset, Space, StateOptions};

/// How often the free space is looked at for the log and the gauge.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How often opening the pinset is tried again while the disk is full.
const OPEN_RETRY: Duration = Duration::from_secs(5);
/// How often the wait for space to open the pinset is logged.
const OPEN_LOG_EVERY: u32 = 12;

/// Opens the pinset; when the disk is too full for sled to open it (it
/// writes a snapshot at open), waits for space instead of exiting, so that a
/// supervisor does not restart the daemon in a loop. SIGINT and SIGTERM end
/// the wait (their default action: no handler is installed yet).
pub(crate) fn open_pinset(options: &StateOptions) -> anyhow::Result<Pinset> {
    let mut tries = 0u32;
    loop {
        match Pinset::open(options) {
            Ok(pinset) => return Ok(pinset),
            Err(error) if error.is_no_space() => {
                if tries.is_multiple_of(OPEN_LOG_EVERY) {
                    tracing::error!(
                        %error,
                        path = %options.path.display(),
                        "the disk is too full to open the pinset; waiting for free space (free some space on this \
                         filesystem: nothing is lost)"
                    );
                }
                tries = tries.saturating_add(1);
                std::thread::sleep(OPEN_RETRY);
            }
            Err(error) => return Err(error).context("cannot open the pinset"),
        }
    }
}

/// Says at start whether the peer is read-only, then logs each change and
/// keeps the `pincluster_read_only` and free-space gauges current.
pub(crate) async fn watch(space: Space) {
    let mut short = false;
    let mut first = true;
    loop {
        let available = space.available();
        let refused = space.check().err();
        metrics::gauge!(pincluster_state::metrics::READ_ONLY).set(if refused.is_some() { 1.0 } else { 0.0 });
        if let Some(free) = available {
            metrics::gauge!(pincluster_state::metrics::FREE_SPACE).set(free as f64);
        }
        match (&refused, short) {
            (Some(error), false) => tracing::error!(
                %error,
                reserve = space.reserve(),
                "read-only: free space is below the reserve (state.min_free_space); new pins answer 507 and no \
                 blocks are stored until space is freed"
            ),
            (None, true) => tracing::info!(free = available, "free space is above the reserve again: writes resume"),
            (None, false) if first => {
                tracing::info!(free = available, reserve = space.reserve(), "free space above the reserve")
            }
            _ => {}
        }
        short = refused.is_some();
        first = false;
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}
