//! Token buckets by key (a user, a client address), for the per-user and
//! per-address request limits. Read [`Limiter`] first.
//!
//! Written here rather than taken from a crate: the keyed limiters we looked
//! at keep one entry per key seen until a sweep, with no bound between
//! sweeps; this one never holds more than [`MAX_KEYS`] buckets. A full bucket
//! is the same as no bucket, so those are the ones dropped when the map is
//! full; if every bucket is in use, new keys share one overflow bucket.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pincluster_config::RateLimit;

/// Most keys one limiter tracks (about 100 bytes each).
pub(crate) const MAX_KEYS: usize = 100_000;

/// One key's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, limit: &RateLimit) -> Bucket {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        Bucket { tokens: (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst)), at: now }
    }
}

/// Token buckets keyed by `K`, with at most [`MAX_KEYS`] of them.
#[derive(Debug)]
pub(crate) struct Limiter<K> {
    limit: RateLimit,
    max_keys: usize,
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    buckets: HashMap<K, Bucket>,
    /// Shared by the keys that came while every bucket was in use.
    overflow: Option<Bucket>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub(crate) fn new(limit: RateLimit) -> Limiter<K> {
        Limiter::with_max_keys(limit, MAX_KEYS)
    }

    fn with_max_keys(limit: RateLimit, max_keys: usize) -> Limiter<K> {
        Limiter { limit, max_keys, state: Mutex::new(State { buckets: HashMap::new(), overflow: None }) }
    }

    /// Takes one token from `key`'s bucket when `take`, else only looks.
    /// `Err` holds how long until a token is there.
    pub(crate) fn check(&self, key: &K, take: bool) -> Result<(), Duration> {
        if !self.limit.is_on() {
            return Ok(());
        }
        let now = Instant::now();
        let limit = self.limit;
        let full = Bucket { tokens: f64::from(limit.burst), at: now };
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let state = &mut *state;
        if !state.buckets.contains_key(key) && state.buckets.len() >= self.max_keys {
            state.buckets.retain(|_, bucket| bucket.refilled(now, &limit).tokens < f64::from(limit.burst));
        }
        let bucket = if let Some(bucket) = state.buckets.get_mut(key) {
            bucket
        } else if state.buckets.len() < self.max_keys {
            state.buckets.entry(key.clone()).or_insert(full)
        } else {
            state.overflow.get_or_insert(full)
        };
        *bucket = bucket.refilled(now, &limit);
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            // A tiny configured rate may mean a wait beyond what a Duration holds.
            Err(Duration::try_from_secs_f64((1.0 - bucket.tokens) / limit.per_second).unwrap_or(Duration::MAX))
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().expect("lock").buckets.len()
    }
}

/// The key of a client address: the address itself for IPv4, its /64 for
/// IPv6 (what one host or user is usually given).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Whole seconds for `Retry-After`, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_rate_waits_as_long_as_a_duration_holds() {
        let limiter = Limiter::with_max_keys(RateLimit { per_second: 1e-300, burst: 1 }, 4);
        assert_eq!(limiter.check(&1u8, true), Ok(()));
        let wait = limiter.check(&1u8, true).expect_err("the bucket is empty");
        assert_eq!(wait, Duration::MAX);
        assert_eq!(retry_after_secs(wait), u64::MAX);
    }

    #[test]
    fn a_burst_then_refusals_with_the_wait() {
        let limiter = Limiter::new(RateLimit { per_second: 1.0, burst: 3 });
        for _ in 0..3 {
            assert!(limiter.check(&"alice", true).is_ok());
        }
        let wait = limiter.check(&"alice", true).expect_err("the fourth is refused");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check(&"bob", true).is_ok(), "other keys have their own bucket");
    }

    #[test]
    fn looking_takes_nothing() {
        let limiter = Limiter::new(RateLimit { per_second: 1.0, burst: 1 });
        assert!(limiter.check(&1, false).is_ok());
        assert!(limiter.check(&1, false).is_ok());
        assert!(limiter.check(&1, true).is_ok());
        assert!(limiter.check(&1, false).is_err());
    }

    #[test]
    fn off_never_refuses() {
        let limiter = Limiter::new(RateLimit::OFF);
        for _ in 0..10 {
            assert!(limiter.check(&1, true).is_ok());
        }
    }

    #[test]
    fn keys_are_bounded_and_busy_newcomers_share_a_bucket() {
        let limiter = Limiter::with_max_keys(RateLimit { per_second: 0.001, burst: 2 }, 4);
        for key in 0..4 {
            assert!(limiter.check(&key, true).is_ok());
        }
        // Every bucket is in use: the newcomers share the overflow bucket.
        assert!(limiter.check(&100, true).is_ok());
        assert!(limiter.check(&101, true).is_ok());
        assert!(limiter.check(&102, true).is_err());
        assert_eq!(limiter.len(), 4);
    }

    #[test]
    fn full_buckets_make_room() {
        let limiter = Limiter::with_max_keys(RateLimit { per_second: 1000.0, burst: 1 }, 2);
        assert!(limiter.check(&1, true).is_ok());
        assert!(limiter.check(&2, true).is_ok());
        std::thread::sleep(Duration::from_millis(5));
        // Buckets 1 and 2 are full again, so they are dropped for 3's own.
        assert!(limiter.check(&3, true).is_ok());
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(address_key(v4), v4);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
