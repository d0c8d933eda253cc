//! Token buckets: each holds up to `burst` tokens and refills at
//! `per_second`; a call takes one token or is told how long to wait.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(quota: Quota, now: Instant) -> Self {
        Self {
            tokens: f64::from(quota.burst),
            updated: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, quota: Quota, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(quota.per_second)).min(f64::from(quota.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if quota.per_second == 0 {
            return Err(Duration::from_secs(1));
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / f64::from(quota.per_second),
        ))
    }

    fn is_full(&self, quota: Quota, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * f64::from(quota.per_second) >= f64::from(quota.burst)
    }
}

/// Buckets by key (a tenant, an API key, a client address, a token), each
/// with its own quota.
pub struct RateLimiter<K> {
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    by_id: HashMap<K, (Quota, Bucket)>,
    last_prune: Option<Instant>,
}

impl<K> Default for RateLimiter<K> {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(Buckets {
                by_id: HashMap::new(),
                last_prune: None,
            }),
        }
    }
}

/// Above this many buckets, full ones are dropped: a full bucket is the
/// same as none.
const PRUNE_ABOVE: usize = 10_000;

impl<K: Hash + Eq> RateLimiter<K> {
    /// Takes a token from `id`'s bucket, or returns the wait until one is there.
    pub fn check(&self, id: K, quota: Quota, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // At most once a second, so a crowd of active buckets does not make
        // every call scan them all.
        let due = buckets
            .last_prune
            .is_none_or(|last| now.saturating_duration_since(last) >= Duration::from_secs(1));
        if buckets.by_id.len() > PRUNE_ABOVE && due {
            buckets
                .by_id
                .retain(|_, (quota, bucket)| !bucket.is_full(*quota, now));
            buckets.last_prune = Some(now);
        }
        let (stored_quota, bucket) = buckets
            .by_id
            .entry(id)
            .or_insert_with(|| (quota, Bucket::full(quota, now)));
        if *stored_quota != quota {
            // A changed quota applies from now on, without a fresh burst.
            *stored_quota = quota;
            bucket.tokens = bucket.tokens.min(f64::from(quota.burst));
        }
        bucket.take(quota, now)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const QUOTA: Quota = Quota {
        per_second: 10,
        burst: 3,
    };

    #[test]
    fn a_burst_then_the_steady_rate() {
        let limiter = RateLimiter::default();
        let id = Uuid::now_v7();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(id, QUOTA, t0).is_ok());
        }
        // Empty: the next token comes after 1/10 s.
        assert_eq!(
            limiter.check(id, QUOTA, t0),
            Err(Duration::from_millis(100))
        );
        // 50 ms later half a token has come back: 50 ms more to wait.
        let wait = limiter
            .check(id, QUOTA, t0 + Duration::from_millis(50))
            .unwrap_err();
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "{wait:?}");
        assert!(
            limiter
                .check(id, QUOTA, t0 + Duration::from_millis(100))
                .is_ok()
        );
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.check(id, QUOTA, later).is_ok());
        }
        assert!(limiter.check(id, QUOTA, later).is_err());
    }

    #[test]
    fn buckets_are_independent() {
        let limiter = RateLimiter::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Instant::now();
        for _ in 0..3 {
            limiter.check(a, QUOTA, now).unwrap();
        }
        assert!(limiter.check(a, QUOTA, now).is_err());
        assert!(limiter.check(b, QUOTA, now).is_ok());
    }

    #[test]
    fn a_lowered_quota_caps_the_tokens_at_once() {
        let limiter = RateLimiter::default();
        let id = Uuid::now_v7();
        let now = Instant::now();
        limiter
            .check(
                id,
                Quota {
                    per_second: 100,
                    burst: 100,
                },
                now,
            )
            .unwrap();
        let strict = Quota {
            per_second: 1,
            burst: 1,
        };
        assert!(limiter.check(id, strict, now).is_ok());
        assert!(limiter.check(id, strict, now).is_err());
    }
}
