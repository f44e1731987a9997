//! A keyed token bucket (GCRA, governor) that forgets idle keys.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How often, in checks, a limiter looks at how many keys it holds.
const SIZE_CHECK_EVERY: u32 = 1024;

/// Sustained rate and burst.
pub type Rate = (NonZeroU32, NonZeroU32);

/// The rate of `rps` and `burst`, both at least 1.
pub fn rate(rps: u32, burst: u32) -> Rate {
    (
        NonZeroU32::new(rps).unwrap_or(NonZeroU32::MIN),
        NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
    )
}

/// One token bucket per key.
#[derive(Debug)]
pub struct Keyed<K: Hash + Eq + Clone> {
    rate: Rate,
    max_keys: usize,
    buckets: DefaultKeyedRateLimiter<K>,
    checks: AtomicU32,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    pub fn new(rate: Rate, max_keys: u32) -> Keyed<K> {
        Keyed {
            rate,
            max_keys: usize::try_from(max_keys).unwrap_or(usize::MAX),
            buckets: RateLimiter::keyed(Quota::per_second(rate.0).allow_burst(rate.1)),
            checks: AtomicU32::new(0),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one of `key`'s tokens, or says in how many whole seconds to retry.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SIZE_CHECK_EVERY)
            && self.buckets.len() > self.max_keys
        {
            self.evict_idle();
        }
        // The limiter's own clock: the time the check was made against.
        self.buckets.check_key(key).map_err(|not_until| {
            retry_after_secs(not_until.wait_time_from(self.buckets.clock().now()))
        })
    }

    /// Drops the keys whose buckets have refilled: they are indistinguishable from
    /// keys never seen, so no limit is lost.
    pub fn evict_idle(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }

    /// Keys held.
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }
}

/// A wait as the whole seconds of a `Retry-After`, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_burst_passes_then_the_rest_wait() {
        let limiter: Keyed<u32> = Keyed::new(rate(1, 3), 1000);
        let passed = (0..10).filter(|_| limiter.check(&7).is_ok()).count();
        assert_eq!(passed, 3);
        assert_eq!(limiter.check(&7), Err(1));
        // Another key has its own bucket.
        assert!(limiter.check(&8).is_ok());
    }

    #[test]
    fn idle_keys_are_forgotten_so_memory_stays_bounded() {
        // 1,000 tokens a second: an idle bucket refills within a millisecond.
        let limiter: Keyed<u64> = Keyed::new(rate(1000, 1), 1000);
        for key in 0..300_000u64 {
            let _ = limiter.check(&key);
        }
        // The size check ran along the way: far fewer than 300,000 keys are held.
        assert!(limiter.keys() < 300_000, "{}", limiter.keys());
        std::thread::sleep(std::time::Duration::from_millis(20));
        limiter.evict_idle();
        assert_eq!(limiter.keys(), 0);
        // A drained bucket is kept: forgetting it would refill it.
        let slow: Keyed<u64> = Keyed::new(rate(1, 1), 1000);
        assert!(slow.check(&1).is_ok());
        slow.evict_idle();
        assert_eq!(slow.keys(), 1);
        assert!(slow.check(&1).is_err());
    }
}
