//! Rate limits: a token bucket per API key and one per signing account, so that neither
//! a leaked key nor one busy account can flood the log. A bucket holds `burst` tokens,
//! refills at `per_second`, and a request takes one; an empty bucket means 429 with the
//! time until the next token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One limit. `per_second == 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit {
        per_second: 0.0,
        burst: 0.0,
    };
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets per caller (an API key name or an account address).
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Buckets kept before idle (full) ones are dropped.
    capacity: usize,
}

impl RateLimiter {
    pub fn new(limit: RateLimit, capacity: usize) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Takes a token for `who`; `Err(wait)` when there is none, with the time until one.
    pub fn check(&self, who: &str) -> Result<(), Duration> {
        self.check_at(who, Instant::now())
    }

    /// [`RateLimiter::check`] at a given instant (for tests).
    pub fn check_at(&self, who: &str, now: Instant) -> Result<(), Duration> {
        let RateLimit { per_second, burst } = self.limit;
        if per_second <= 0.0 {
            return Ok(());
        }
        let burst = burst.max(1.0);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= self.capacity && !buckets.contains_key(who) {
            // Forget callers whose buckets have refilled: they are as if new.
            let full_after = Duration::from_secs_f64(burst / per_second);
            buckets.retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
        }
        let bucket = buckets.entry(who.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_per_caller() {
        let limiter = RateLimiter::new(
            RateLimit {
                per_second: 2.0,
                burst: 3.0,
            },
            100,
        );
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("a", start).is_ok());
        }
        let wait = limiter.check_at("a", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another caller has its own bucket.
        assert!(limiter.check_at("b", start).is_ok());
        // Half a second later one token is back, and only one.
        let later = start + Duration::from_millis(500);
        assert!(limiter.check_at("a", later).is_ok());
        assert!(limiter.check_at("a", later).is_err());
    }

    #[test]
    fn off_means_no_limit_and_idle_callers_are_forgotten() {
        let off = RateLimiter::new(RateLimit::OFF, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(off.check_at("a", now).is_ok());
        }
        let limiter = RateLimiter::new(
            RateLimit {
                per_second: 10.0,
                burst: 1.0,
            },
            2,
        );
        assert!(limiter.check_at("a", now).is_ok());
        assert!(limiter.check_at("b", now).is_ok());
        // "a" and "b" have refilled a second later: a third caller evicts them.
        let later = now + Duration::from_secs(1);
        assert!(limiter.check_at("c", later).is_ok());
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
