//! The per-client rate limit: a token bucket per client IP, kept in 60,000ths of a token so
//! the arithmetic stays in integers for rates per second and per minute alike.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::RateLimit;

/// One client's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// 60,000ths of a token available.
    pub units: u64,
    /// When it was last refilled (ms).
    pub at: u64,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(limit: RateLimit, now: u64) -> Bucket {
        Bucket {
            units: u64::from(limit.burst) * TOKEN,
            at: now,
        }
    }
}

/// One token, in the bucket's units.
const TOKEN: u64 = 60_000;

/// Tokens per minute, which is units per millisecond.
fn per_minute(limit: RateLimit) -> u64 {
    u64::from(limit.per_second) * 60 + u64::from(limit.per_minute)
}

/// Refills the bucket up to `now` and takes one token, or says how many whole seconds to wait
/// (at least 1) for the next one.
pub fn take(b: &mut Bucket, now: u64, limit: RateLimit) -> Result<(), u64> {
    let rate = per_minute(limit);
    let cap = u64::from(limit.burst).max(1) * TOKEN;
    b.units = b
        .units
        .saturating_add(now.saturating_sub(b.at).saturating_mul(rate))
        .min(cap);
    b.at = b.at.max(now);
    if b.units >= TOKEN {
        b.units -= TOKEN;
        return Ok(());
    }
    let wait_ms = (TOKEN - b.units).div_ceil(rate.max(1));
    Err(wait_ms.div_ceil(1000).max(1))
}

/// Buckets for every client IP seen recently.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Buckets kept before full (idle) ones are forgotten.
const MAX_TRACKED: usize = 100_000;

impl RateLimiter {
    /// A limiter with this limit (no rate at all allows everything).
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip` at `now` (ms), or gives the `Retry-After` seconds.
    pub fn check(&self, ip: IpAddr, now: u64) -> Result<(), u64> {
        if per_minute(self.limit) == 0 {
            return Ok(());
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            // A bucket that has refilled completely holds no information: drop those.
            let (limit, cap) = (self.limit, u64::from(self.limit.burst) * TOKEN);
            map.retain(|_, b| {
                let mut probe = *b;
                let _ = take(&mut probe, now, limit);
                probe.units + TOKEN < cap
            });
        }
        let b = map.entry(ip).or_insert_with(|| Bucket::full(self.limit, now));
        take(b, now, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket() {
        let limit = RateLimit {
            per_second: 2,
            per_minute: 0,
            burst: 3,
        };
        let mut b = Bucket::full(limit, 0);
        // (time, expected): three in a burst, then one every 500 ms.
        let steps: &[(u64, Result<(), u64>)] = &[
            (0, Ok(())),
            (0, Ok(())),
            (0, Ok(())),
            (0, Err(1)),
            (499, Err(1)),
            (500, Ok(())),
            (500, Err(1)),
            (10_000, Ok(())),
            (10_000, Ok(())),
            (10_000, Ok(())),
            (10_000, Err(1)),
        ];
        for (i, (now, want)) in steps.iter().enumerate() {
            assert_eq!(take(&mut b, *now, limit), *want, "step {i} at {now}");
        }
        let slow = RateLimit {
            per_second: 1,
            per_minute: 0,
            burst: 1,
        };
        let mut b = Bucket::full(slow, 0);
        assert_eq!(take(&mut b, 0, slow), Ok(()));
        assert_eq!(take(&mut b, 100, slow), Err(1));
        // A clock that goes backwards must not mint tokens.
        let mut b = Bucket { units: 0, at: 5_000 };
        assert_eq!(take(&mut b, 1_000, slow), Err(1));
        // Twelve a minute: one every 5 s, and a Retry-After that says so.
        let minute = RateLimit {
            per_second: 0,
            per_minute: 12,
            burst: 1,
        };
        let mut b = Bucket::full(minute, 0);
        assert_eq!(take(&mut b, 0, minute), Ok(()));
        assert_eq!(take(&mut b, 0, minute), Err(5));
        assert_eq!(take(&mut b, 4_000, minute), Err(1));
        assert_eq!(take(&mut b, 5_000, minute), Ok(()));
    }

    #[test]
    fn limiter_is_per_ip_and_can_be_off() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1,
            per_minute: 0,
            burst: 1,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(l.check(a, 0), Ok(()));
        assert_eq!(l.check(a, 0), Err(1));
        assert_eq!(l.check(b, 0), Ok(()));
        let off = RateLimiter::new(RateLimit {
            per_second: 0,
            per_minute: 0,
            burst: 0,
        });
        for _ in 0..1000 {
            assert_eq!(off.check(a, 0), Ok(()));
        }
    }
}
