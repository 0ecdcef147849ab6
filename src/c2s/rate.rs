//! A token bucket for a stream's outgoing stanzas (`limits.stanzas_per_second`):
//! refills continuously, holds at most one second's worth.

use std::time::Instant;

pub(super) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn per_second(rate: u32) -> TokenBucket {
        let rate = f64::from(rate.max(1));
        TokenBucket {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    /// Takes a token; false when there is none.
    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let mut b = TokenBucket::per_second(10);
        let t0 = b.last;
        assert_eq!((0..20).filter(|_| b.take_at(t0)).count(), 10);
        assert!(!b.take_at(t0));
        // A tenth of a second buys one stanza more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take_at(t1));
        assert!(!b.take_at(t1));
        // A long pause refills one second's worth, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take_at(t2)).count(), 10);
    }
}
