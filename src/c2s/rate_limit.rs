//! Registration attempts per client IP address.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Forgets idle addresses once this many are tracked, to bound memory.
const RETAIN_THRESHOLD: usize = 10_000;

pub struct RegistrationLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RegistrationLimiter {
    /// `per_minute == 0` disables the limit.
    pub fn new(per_minute: u32) -> Self {
        RegistrationLimiter {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// Counts one attempt; false when the address is over its budget.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if limiter.len() > RETAIN_THRESHOLD {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address() {
        let l = RegistrationLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(a));
        assert!(l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b));
        let off = RegistrationLimiter::new(0);
        assert!((0..100).all(|_| off.allow(a)));
    }
}
