//! What keeps one client, or all of them, from taking the peer over: a cap on each client IP's
//! requests in progress ([`ClientSlots`]) and one byte rate shared by every response
//! ([`Bandwidth`], a token bucket that makes senders wait).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::GatewayError;

/// The most client IPs tracked at once; beyond them new clients get 503.
const MAX_CLIENTS: usize = 10_000;

/// Requests in progress per client IP.
#[derive(Debug)]
pub(crate) struct ClientSlots {
    per_client: usize,
    busy: Mutex<HashMap<IpAddr, usize>>,
}

/// One request's slot, given back when dropped (after the last byte of a stream).
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    pub(crate) fn new(per_client: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots { per_client: per_client.max(1), busy: Mutex::new(HashMap::new()) })
    }

    /// Takes a slot for `ip`, or refuses: [`GatewayError::ClientLimit`] when the client has all
    /// of its own, [`GatewayError::Busy`] when too many clients are being tracked.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, GatewayError> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let tracked = busy.len();
        match busy.get_mut(&ip) {
            Some(count) if *count >= self.per_client => return Err(GatewayError::ClientLimit),
            Some(count) => *count += 1,
            None if tracked >= MAX_CLIENTS => return Err(GatewayError::Busy),
            None => {
                busy.insert(ip, 1);
            }
        }
        Ok(Slot { slots: self.clone(), ip })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.slots.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = busy.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                busy.remove(&self.ip);
            }
        }
    }
}

/// A byte rate shared by every response: each sender waits until its bytes fit. A burst of a
/// tenth of a second's worth passes at once.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    /// Bytes per second; 0 = no limit.
    rate: u64,
    /// When the bytes granted so far will have been sent at `rate` (the bucket's debt).
    until: Mutex<Option<Instant>>,
}

impl Bandwidth {
    pub(crate) fn new(rate: u64) -> Arc<Bandwidth> {
        Arc::new(Bandwidth { rate, until: Mutex::new(None) })
    }

    /// How long a sender of `bytes` now must wait before sending them, and books them.
    pub(crate) fn book(&self, bytes: usize, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let burst = Duration::from_millis(100);
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        let start = until.map_or(now, |u| u.max(now));
        let end = start + cost;
        *until = Some(end);
        end.saturating_duration_since(now + burst)
    }

    /// Waits until `bytes` may be sent.
    pub(crate) async fn take(&self, bytes: usize) {
        let wait = self.book(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_slots_and_they_come_back() {
        let slots = ClientSlots::new(2);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let a = slots.take(ip).expect("first");
        let b = slots.take(ip).expect("second");
        assert!(matches!(slots.take(ip), Err(GatewayError::ClientLimit)));
        let c = slots.take(other).expect("another client is not limited by the first");
        drop(a);
        let d = slots.take(ip).expect("a slot came back");
        drop((b, c, d));
        assert_eq!(slots.tracked(), 0, "idle clients are forgotten");
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_paces() {
        let bandwidth = Bandwidth::new(1_000_000);
        let now = Instant::now();
        assert_eq!(bandwidth.book(50_000, now), Duration::ZERO, "within the burst");
        assert_eq!(bandwidth.book(50_000, now), Duration::ZERO, "exactly the burst");
        let wait = bandwidth.book(100_000, now);
        assert!(wait >= Duration::from_millis(99) && wait <= Duration::from_millis(101), "{wait:?}");
        // Later, the debt has been paid.
        assert_eq!(bandwidth.book(1000, now + Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(Bandwidth::new(0).book(usize::MAX, now), Duration::ZERO, "0 = no limit");
    }
}
