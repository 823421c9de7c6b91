//! The per-client rate limit: governor's GCRA limiter keyed by client IP. The configuration's
//! `per_second` and `per_minute` add up to one rate (12 a minute is one request every 5 s),
//! `burst` is the bucket's capacity, and a refusal says how many whole seconds to wait.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::{Quota, RateLimiter as Governor};

pub use governor::clock::FakeRelativeClock;

use crate::config::RateLimit;

/// Client IPs tracked before those whose bucket is full again (idle) are forgotten.
const MAX_TRACKED: usize = 100_000;

/// A keyed limiter over any of governor's clocks.
type Keyed<C> = Governor<
    IpAddr,
    governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
    C,
    governor::middleware::NoOpMiddleware<<C as Clock>::Instant>,
>;

/// What the handlers need of a limiter, whatever its clock.
trait Check: Send + Sync {
    fn check(&self, ip: IpAddr) -> Result<(), u64>;
}

impl<C> Check for Keyed<C>
where
    C: Clock + Send + Sync,
{
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.len() >= MAX_TRACKED {
            self.retain_recent();
        }
        self.check_key(&ip)
            .map_err(|refused| seconds(refused.wait_time_from(self.clock().now())))
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
fn seconds(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1).try_into().unwrap_or(u64::MAX)
}

/// The quota for a configured limit, or `None` when it is off.
pub fn quota(limit: RateLimit) -> Option<Quota> {
    let per_minute = u64::from(limit.per_second) * 60 + u64::from(limit.per_minute);
    if per_minute == 0 {
        return None;
    }
    let period = Duration::from_nanos(60_000_000_000 / per_minute);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

/// The limiter every handler that takes requests from browsers checks first.
pub struct RateLimiter(Option<Box<dyn Check>>);

impl RateLimiter {
    /// A limiter on the monotonic clock (no rate at all allows everything).
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter::with_clock(limit, MonotonicClock)
    }

    /// A limiter on another clock: tests pass a [`FakeRelativeClock`] and advance it.
    pub fn with_clock<C>(limit: RateLimit, clock: C) -> RateLimiter
    where
        C: Clock + Send + Sync + 'static,
    {
        RateLimiter(quota(limit).map(|q| {
            let keyed: Keyed<C> = Governor::dashmap_with_clock(q, clock);
            Box::new(keyed) as Box<dyn Check>
        }))
    }

    /// Lets one request of `ip` through, or says how many seconds to wait (`Retry-After`).
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.0.as_ref().map_or(Ok(()), |l| l.check(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, per_minute: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second,
            per_minute,
            burst,
        }
    }

    /// (ms since the previous step, expected) for one client.
    fn steps(l: RateLimit, steps: &[(u64, Result<(), u64>)]) {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(l, clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for (i, (after, want)) in steps.iter().enumerate() {
            clock.advance(Duration::from_millis(*after));
            assert_eq!(limiter.check(ip), *want, "{l:?}, step {i}");
        }
    }

    #[test]
    fn bursts_then_the_rate() {
        // Three in a burst, then one every 500 ms; a long pause refills the burst.
        steps(
            limit(2, 0, 3),
            &[
                (0, Ok(())),
                (0, Ok(())),
                (0, Ok(())),
                (0, Err(1)),
                (499, Err(1)),
                (1, Ok(())),
                (0, Err(1)),
                (9_500, Ok(())),
                (0, Ok(())),
                (0, Ok(())),
                (0, Err(1)),
            ],
        );
        steps(limit(1, 0, 1), &[(0, Ok(())), (100, Err(1)), (900, Ok(()))]);
        // A burst of 0 still lets one request through at a time.
        steps(limit(1, 0, 0), &[(0, Ok(())), (0, Err(1)), (1_000, Ok(()))]);
    }

    #[test]
    fn per_minute_is_added_and_says_how_long_to_wait() {
        // Twelve a minute: one every 5 s, and a Retry-After that says so.
        steps(
            limit(0, 12, 1),
            &[(0, Ok(())), (0, Err(5)), (4_000, Err(1)), (1_000, Ok(()))],
        );
        // One a second plus 60 a minute: two a second.
        steps(limit(1, 60, 1), &[(0, Ok(())), (499, Err(1)), (1, Ok(()))]);
    }

    #[test]
    fn limiter_is_per_ip_and_can_be_off() {
        let l = RateLimiter::with_clock(limit(1, 0, 1), FakeRelativeClock::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(l.check(a), Ok(()));
        assert_eq!(l.check(a), Err(1));
        assert_eq!(l.check(b), Ok(()));
        let off = RateLimiter::new(limit(0, 0, 0));
        for _ in 0..1000 {
            assert_eq!(off.check(a), Ok(()));
        }
        assert!(quota(limit(0, 0, 5)).is_none());
    }
}
