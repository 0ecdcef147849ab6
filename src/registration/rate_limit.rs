//! Registration attempts per client address: per IPv4 address, and per /64
//! for IPv6, since one host usually holds a whole /64.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::throttle::address_bucket;

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
        limiter.check_key(&address_bucket(ip)).is_ok()
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
        // One /64 shares a budget; the next /64 has its own.
        let l = RegistrationLimiter::new(1);
        let h1: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let h2: IpAddr = "2001:db8:0:1:ffff::2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert!(l.allow(h1));
        assert!(!l.allow(h2));
        assert!(l.allow(other));
        // An IPv4-mapped address counts as the IPv4 address.
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert!(l.allow(v4));
        assert!(!l.allow(mapped));
        let off = RegistrationLimiter::new(0);
        assert!((0..100).all(|_| off.allow(a)));
    }
}
