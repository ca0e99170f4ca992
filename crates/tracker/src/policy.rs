//! The workers' decisions, kept apart from their tasks so that they can be tested without a node,
//! a network or a clock: when a failed pin is tried again, which unfinished pins a refill queues,
//! and which roots a garbage collection must keep.

use std::collections::HashSet;
use std::time::Duration;

use pincluster_model::{Cid, ClusterPin, PinStatus};

/// Longest doubling of the backoff: beyond 2^16 times the first wait, it stops growing.
const MAX_DOUBLINGS: u32 = 16;

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Queue the pin again after this wait.
    RetryIn(Duration),
    /// No retry is left: the pin stays `failed` until someone recovers it.
    GiveUp,
}

/// How failed pins are retried: `max_retries` more attempts after the first, the first retry
/// after `backoff`, each further one after twice the wait before it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) backoff: Duration,
}

impl RetryPolicy {
    /// What follows the failure of attempt number `attempts` (counted from 1).
    pub(crate) fn after_failure(&self, attempts: u32) -> AfterFailure {
        if attempts > self.max_retries {
            return AfterFailure::GiveUp;
        }
        let doublings = attempts.saturating_sub(1).min(MAX_DOUBLINGS);
        AfterFailure::RetryIn(self.backoff.saturating_mul(1 << doublings))
    }

    /// The pin's error text after the failure of attempt `attempts` for `reason`.
    pub(crate) fn details(&self, reason: &str, attempts: u32) -> String {
        match self.after_failure(attempts) {
            AfterFailure::RetryIn(wait) => {
                format!("{reason} (attempt {attempts}; retrying in {}s)", wait.as_secs())
            }
            AfterFailure::GiveUp => format!("{reason} (gave up after {attempts} attempt(s))"),
        }
    }

    /// Whether a pin in the pinset still has an attempt coming: it is unfinished and, when
    /// `failed`, has retries left.
    pub(crate) fn wants_attempt(&self, pin: &ClusterPin) -> bool {
        match pin.status {
            PinStatus::Queued | PinStatus::Pinning => true,
            PinStatus::Failed => pin.attempts <= self.max_retries,
            _ => false,
        }
    }
}

/// Whether a refill should scan the pinset now. A scan walks past every scheduled CID, so it
/// waits until the workers have drained at least half of the queue.
pub(crate) fn refill_due(room: usize, capacity: usize) -> bool {
    room >= capacity / 2
}

/// The pins a refill queues, in scan order, with whether more were left out for lack of `room`.
/// A pin is taken when it still wants an attempt, is not already scheduled and is allocated to
/// this peer.
pub(crate) fn refill_pick<E>(
    pins: impl IntoIterator<Item = Result<ClusterPin, E>>,
    scheduled: &HashSet<Cid>,
    room: usize,
    retry: &RetryPolicy,
    allocated_here: impl Fn(&[String]) -> bool,
) -> (Vec<(Cid, PinStatus)>, bool) {
    let mut found = Vec::new();
    for pin in pins.into_iter().flatten() {
        if scheduled.contains(&pin.cid) || !retry.wants_attempt(&pin) || !allocated_here(&pin.allocations) {
            continue;
        }
        if found.len() == room {
            return (found, true);
        }
        found.push((pin.cid, pin.status));
    }
    (found, false)
}

/// The roots a collection keeps besides finished pins: every unfinished pin, except one that
/// other peers already hold (its summary is `pinned`) and that is not allocated here, and one
/// that failed for lack of space (its blocks are what filled the disk; a retry fetches them
/// again). `None` when there are more than `max` of them: the collection is skipped rather than
/// hold them all.
pub(crate) fn gc_extra_roots<E>(
    unfinished: impl IntoIterator<Item = Result<ClusterPin, E>>,
    allocated_here: impl Fn(&[String]) -> bool,
    max: usize,
) -> Result<Option<Vec<Cid>>, E> {
    let mut roots = Vec::new();
    for pin in unfinished {
        let pin = pin?;
        if pin.summary == PinStatus::Pinned && !allocated_here(&pin.allocations) {
            continue;
        }
        if pin.status == PinStatus::Failed && pin.error.as_deref().is_some_and(is_no_space_reason) {
            continue;
        }
        if roots.len() == max {
            return Ok(None);
        }
        roots.push(pin.cid);
    }
    Ok(Some(roots))
}

/// Whether a pin's error says it failed for lack of space (`IpfsError::is_no_space`'s errors).
fn is_no_space_reason(reason: &str) -> bool {
    reason.contains("no space left")
}

/// Whether a collection may run now: not while any pin is queued or being fetched, as a queued
/// pin may need blocks that are unreferenced right now (a replaced pin's old DAG).
pub(crate) fn gc_may_run(scheduled: usize) -> bool {
    scheduled == 0
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use pincluster_model::{PinOptions, Timestamp};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// A CIDv1 (raw, sha2-256) whose digest is `n` repeated.
    fn cid(n: u8) -> Cid {
        let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
        bytes.extend_from_slice(&[n; 32]);
        Cid::try_from(bytes).expect("a well-formed CID")
    }

    fn pin(n: u8, status: PinStatus, attempts: u32, allocations: &[&str]) -> ClusterPin {
        let allocations = allocations.iter().map(|a| a.to_string()).collect();
        let mut pin = ClusterPin::shared(cid(n), PinOptions::default(), allocations, Timestamp::now());
        pin.status = status;
        pin.attempts = attempts;
        pin.summary = status;
        pin
    }

    fn ok(pins: Vec<ClusterPin>) -> impl Iterator<Item = Result<ClusterPin, Infallible>> {
        pins.into_iter().map(Ok)
    }

    fn here(allocations: &[String]) -> bool {
        allocations.is_empty() || allocations.iter().any(|a| a == "me")
    }

    #[test]
    fn backoff_doubles_until_the_retries_run_out() {
        let policy = RetryPolicy { max_retries: 3, backoff: 30 * SECOND };
        assert_eq!(policy.after_failure(1), AfterFailure::RetryIn(30 * SECOND));
        assert_eq!(policy.after_failure(2), AfterFailure::RetryIn(60 * SECOND));
        assert_eq!(policy.after_failure(3), AfterFailure::RetryIn(120 * SECOND));
        assert_eq!(policy.after_failure(4), AfterFailure::GiveUp);
        assert_eq!(policy.after_failure(u32::MAX), AfterFailure::GiveUp);
    }

    #[test]
    fn backoff_stops_growing_and_never_overflows() {
        let policy = RetryPolicy { max_retries: u32::MAX, backoff: 30 * SECOND };
        let cap = AfterFailure::RetryIn(30 * SECOND * (1 << MAX_DOUBLINGS));
        assert_eq!(policy.after_failure(MAX_DOUBLINGS + 1), cap);
        assert_eq!(policy.after_failure(1000), cap);
        let huge = RetryPolicy { max_retries: u32::MAX, backoff: Duration::MAX };
        assert_eq!(huge.after_failure(40), AfterFailure::RetryIn(Duration::MAX));
    }

    #[test]
    fn no_retries_means_the_first_failure_is_final() {
        let policy = RetryPolicy { max_retries: 0, backoff: SECOND };
        assert_eq!(policy.after_failure(1), AfterFailure::GiveUp);
        assert_eq!(policy.details("stalled", 1), "stalled (gave up after 1 attempt(s))");
    }

    #[test]
    fn details_say_when_the_next_attempt_comes() {
        let policy = RetryPolicy { max_retries: 2, backoff: 5 * SECOND };
        assert_eq!(policy.details("no space left", 2), "no space left (attempt 2; retrying in 10s)");
        assert_eq!(policy.details("no space left", 3), "no space left (gave up after 3 attempt(s))");
    }

    #[test]
    fn only_unfinished_pins_with_retries_left_want_an_attempt() {
        let policy = RetryPolicy { max_retries: 2, backoff: SECOND };
        assert!(policy.wants_attempt(&pin(1, PinStatus::Queued, 0, &[])));
        assert!(policy.wants_attempt(&pin(1, PinStatus::Pinning, 5, &[])));
        assert!(policy.wants_attempt(&pin(1, PinStatus::Failed, 2, &[])));
        assert!(!policy.wants_attempt(&pin(1, PinStatus::Failed, 3, &[])));
        assert!(!policy.wants_attempt(&pin(1, PinStatus::Pinned, 0, &[])));
    }

    #[test]
    fn refill_waits_for_half_the_queue() {
        assert!(refill_due(100, 100));
        assert!(refill_due(50, 100));
        assert!(!refill_due(49, 100));
        assert!(refill_due(1, 1));
    }

    #[test]
    fn refill_skips_scheduled_exhausted_and_foreign_pins() {
        let policy = RetryPolicy { max_retries: 1, backoff: SECOND };
        let pins = vec![
            pin(1, PinStatus::Queued, 0, &[]),
            pin(2, PinStatus::Queued, 0, &[]),
            pin(3, PinStatus::Failed, 1, &["me"]),
            pin(4, PinStatus::Failed, 2, &[]),
            pin(5, PinStatus::Pinning, 1, &["other"]),
            pin(6, PinStatus::Pinning, 1, &["other", "me"]),
        ];
        let scheduled = HashSet::from([cid(2)]);
        let (found, more) = refill_pick(ok(pins), &scheduled, 10, &policy, here);
        assert_eq!(found, vec![(cid(1), PinStatus::Queued), (cid(3), PinStatus::Failed), (cid(6), PinStatus::Pinning)]);
        assert!(!more);
    }

    #[test]
    fn refill_stops_at_the_room_left_and_says_more_wait() {
        let policy = RetryPolicy { max_retries: 1, backoff: SECOND };
        let pins = (1..=5).map(|n| pin(n, PinStatus::Queued, 0, &[])).collect();
        let (found, more) = refill_pick(ok(pins), &HashSet::new(), 3, &policy, here);
        assert_eq!(found.len(), 3);
        assert!(more);
        // Exactly as many as the room: nothing is left out.
        let pins = (1..=3).map(|n| pin(n, PinStatus::Queued, 0, &[])).collect();
        assert_eq!(
            refill_pick(ok(pins), &HashSet::new(), 3, &policy, here),
            (vec![(cid(1), PinStatus::Queued), (cid(2), PinStatus::Queued), (cid(3), PinStatus::Queued)], false)
        );
    }

    #[test]
    fn refill_passes_over_records_it_cannot_read() {
        let policy = RetryPolicy { max_retries: 1, backoff: SECOND };
        let pins = vec![Err("corrupt"), Ok(pin(1, PinStatus::Queued, 0, &[]))];
        let (found, _) = refill_pick(pins, &HashSet::new(), 10, &policy, here);
        assert_eq!(found, vec![(cid(1), PinStatus::Queued)]);
    }

    #[test]
    fn gc_keeps_unfinished_pins_unless_held_elsewhere() {
        let mut held_elsewhere = pin(2, PinStatus::Queued, 0, &["other"]);
        held_elsewhere.summary = PinStatus::Pinned;
        let mut held_elsewhere_and_mine = pin(3, PinStatus::Failed, 1, &["me"]);
        held_elsewhere_and_mine.summary = PinStatus::Pinned;
        let pins = vec![pin(1, PinStatus::Queued, 0, &["other"]), held_elsewhere, held_elsewhere_and_mine];
        let roots = gc_extra_roots(ok(pins), here, 10).expect("no read error");
        assert_eq!(roots, Some(vec![cid(1), cid(3)]));
    }

    #[test]
    fn gc_gives_back_the_blocks_of_pins_that_failed_for_lack_of_space() {
        let mut no_space = pin(1, PinStatus::Failed, 1, &[]);
        no_space.error = Some(RetryPolicy { max_retries: 3, backoff: SECOND }.details("no space left for blocks", 1));
        let mut stalled = pin(2, PinStatus::Failed, 1, &[]);
        stalled.error = Some("no progress for 120s".into());
        let roots = gc_extra_roots(ok(vec![no_space, stalled]), here, 10).expect("no read error");
        assert_eq!(roots, Some(vec![cid(2)]));
    }

    #[test]
    fn gc_is_skipped_beyond_the_root_cap_and_on_read_errors() {
        let pins: Vec<_> = (1..=3).map(|n| pin(n, PinStatus::Queued, 0, &[])).collect();
        assert_eq!(gc_extra_roots(ok(pins.clone()), here, 3).expect("no read error").map(|r| r.len()), Some(3));
        assert_eq!(gc_extra_roots(ok(pins), here, 2).expect("no read error"), None);
        let broken = vec![Ok(pin(1, PinStatus::Queued, 0, &[])), Err("corrupt")];
        assert_eq!(gc_extra_roots(broken, here, 10), Err("corrupt"));
    }

    #[test]
    fn gc_waits_while_pins_are_scheduled() {
        assert!(gc_may_run(0));
        assert!(!gc_may_run(1));
    }
}
