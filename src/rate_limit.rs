//! The per-client request rate limit (`[limits] requests_per_minute`, SPEC §8).
//!
//! One token bucket per key (the client's name, or the peer IP under open access): it holds
//! at most `requests_per_minute` tokens, refills continuously at `requests_per_minute / 60`
//! per second, and each request takes one. A full bucket lets a client burst a minute's worth
//! of requests at once; a client that keeps to its rate is never refused.
//!
//! Entry point: [`RateLimiter::check`]. The clock is a parameter so the arithmetic is tested
//! without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle ones are dropped; bounds memory when keys are peer IPs.
const MAX_KEYS: usize = 10_000;

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(capacity: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: capacity,
            updated: now,
        }
    }

    /// Take one token at `now`; when none is left, how long until one is.
    /// Take one token at `now` from a bucket of `per_minute` tokens that refills `per_minute`
    /// tokens a minute; when none is left, how long until one is.
    pub fn take(&mut self, per_minute: f64, now: Instant) -> Result<(), Duration> {
        self.refill(per_minute, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // Rates stay per minute: `60 / per_minute` is exact for whole numbers where
            // `1 / (per_minute / 60)` often is not.
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) * 60.0 / per_minute,
            ))
        }
    }

    fn refill(&mut self, per_minute: f64, now: Instant) {
        // A clock that went backwards (`Instant` cannot, but a test could pass one) refills
        // nothing rather than panicking.
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(per_minute);
        self.updated = self.updated.max(now);
    }

    fn is_full(&mut self, per_minute: f64, now: Instant) -> bool {
        self.refill(per_minute, now);
        self.tokens >= per_minute
    }
}

/// The buckets of every key, behind a `std::sync::Mutex`: the critical section is a few
/// arithmetic operations and never awaits, so an async lock would only add cost.
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    pub fn per_minute(requests_per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: f64::from(requests_per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Count one request of `key` at `now`: `Err(retry_after)` when over the limit.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            // A full bucket is the same as no bucket, so dropping them loses nothing.
            let per_minute = self.per_minute;
            buckets.retain(|_, bucket| !bucket.is_full(per_minute, now));
        }
        buckets
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::full(self.per_minute, now))
            .take(self.per_minute, now)
    }
}

/// Whole seconds a client should wait, as sent in `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_a_minute_of_requests_then_refuses() {
        let limiter = RateLimiter::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("a", t0), Ok(()));
        }
        let wait = limiter.check("a", t0).expect_err("over the limit");
        // 3 per minute: one token every 20 s.
        assert_eq!(retry_after_secs(wait), 20);
        // Another key has its own bucket.
        assert_eq!(limiter.check("b", t0), Ok(()));
    }

    #[test]
    fn tokens_come_back_at_the_configured_rate() {
        let limiter = RateLimiter::per_minute(60);
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.check("a", t0).expect("within the burst");
        }
        assert!(limiter.check("a", t0).is_err());
        let half = limiter
            .check("a", t0 + Duration::from_millis(500))
            .expect_err("half a token");
        assert_eq!(half, Duration::from_millis(500));
        assert_eq!(limiter.check("a", t0 + Duration::from_secs(1)), Ok(()));
        assert!(limiter.check("a", t0 + Duration::from_secs(1)).is_err());
        // Refill stops at the capacity: an hour idle is still one minute's burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..60 {
            limiter.check("a", later).expect("refilled");
        }
        assert!(limiter.check("a", later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn idle_buckets_are_dropped_when_there_are_too_many_keys() {
        let limiter = RateLimiter::per_minute(1);
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            limiter.check(&i.to_string(), t0).expect("first request");
        }
        // A minute later every bucket is full again and can be forgotten.
        limiter
            .check("new", t0 + Duration::from_secs(60))
            .expect("first request");
        let buckets = limiter.buckets.lock().expect("lock");
        assert_eq!(buckets.len(), 1);
    }
}
