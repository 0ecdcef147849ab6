//! Failed attempts (passwords, invite tokens) counted per key over a window,
//! so guessing is slowed across streams. Per node: every node counts its own.
//!
//! governor (used for registration attempts) cannot ask "is this key over?"
//! without spending a cell, and here only failures count while the check comes
//! before the attempt, hence this small fixed-window counter.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most per limiter; beyond it expired windows are dropped,
/// then an arbitrary live one, so memory stays bounded under a spray.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// How often a full map may be swept for expired windows.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

struct State<K> {
    windows: HashMap<K, Window>,
    last_sweep: Option<Instant>,
}

pub struct FailureLimiter<K> {
    /// Failures a key may have in one window; 0 turns the limiter off.
    limit: u32,
    window: Duration,
    capacity: usize,
    state: Mutex<State<K>>,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub fn new(limit: u32, window: Duration, capacity: usize) -> Self {
        FailureLimiter {
            limit,
            window,
            capacity: capacity.max(1),
            state: Mutex::new(State {
                windows: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A panic elsewhere cannot leave a counter half-updated: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Failures of `key` in its current window.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures_at(key, Instant::now())
    }

    fn failures_at(&self, key: &K, now: Instant) -> u32 {
        if self.limit == 0 {
            return 0;
        }
        self.lock()
            .windows
            .get(key)
            .filter(|w| now.duration_since(w.start) < self.window)
            .map_or(0, |w| w.failures)
    }

    /// How long `key` stays refused: `Some` once it has `limit` failures in
    /// the current window, until that window ends.
    pub fn blocked(&self, key: &K) -> Option<Duration> {
        self.blocked_at(key, Instant::now())
    }

    fn blocked_at(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let state = self.lock();
        let w = state.windows.get(key)?;
        let left = self.window.checked_sub(now.duration_since(w.start))?;
        (w.failures >= self.limit && !left.is_zero()).then_some(left)
    }

    /// Counts one failure of `key`; returns its failures in the window.
    pub fn record(&self, key: K) -> u32 {
        self.record_at(key, Instant::now())
    }

    fn record_at(&self, key: K, now: Instant) -> u32 {
        if self.limit == 0 {
            return 0;
        }
        let mut state = self.lock();
        if !state.windows.contains_key(&key) && state.windows.len() >= self.capacity {
            self.make_room(&mut state, now);
        }
        let w = state.windows.entry(key).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= self.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures
    }

    fn make_room(&self, state: &mut State<K>, now: Instant) {
        let swept_lately = state
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < SWEEP_EVERY);
        if !swept_lately {
            let window = self.window;
            state
                .windows
                .retain(|_, w| now.duration_since(w.start) < window);
            state.last_sweep = Some(now);
        }
        if state.windows.len() >= self.capacity {
            if let Some(victim) = state.windows.keys().next().cloned() {
                state.windows.remove(&victim);
            }
        }
    }

    /// Keys tracked now (expired windows included until swept).
    pub fn len(&self) -> usize {
        self.lock().windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key an address is counted under: itself for IPv4 (and IPv4-mapped
/// IPv6), its /64 prefix for IPv6, since one host usually holds a whole /64.
pub fn address_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn blocks_at_the_limit_until_the_window_ends() {
        let l = FailureLimiter::new(3, MIN, 100);
        let t0 = Instant::now();
        assert_eq!(l.blocked_at(&"a", t0), None);
        assert_eq!(l.record_at("a", t0), 1);
        assert_eq!(l.record_at("a", t0), 2);
        assert_eq!(l.blocked_at(&"a", t0), None);
        assert_eq!(l.record_at("a", t0 + Duration::from_secs(10)), 3);
        assert_eq!(
            l.blocked_at(&"a", t0 + Duration::from_secs(20)),
            Some(Duration::from_secs(40))
        );
        // Another key is unaffected.
        assert_eq!(l.blocked_at(&"b", t0), None);
        // The window ends: the key starts afresh.
        let later = t0 + MIN;
        assert_eq!(l.blocked_at(&"a", later), None);
        assert_eq!(l.failures_at(&"a", later), 0);
        assert_eq!(l.record_at("a", later), 1);
    }

    #[test]
    fn zero_turns_it_off() {
        let l = FailureLimiter::new(0, MIN, 100);
        for _ in 0..10 {
            assert_eq!(l.record("a"), 0);
        }
        assert_eq!(l.blocked(&"a"), None);
        assert!(l.is_empty());
    }

    #[test]
    fn memory_stays_bounded_under_a_spray() {
        let l = FailureLimiter::new(5, MIN, 50);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            l.record_at(i, t0);
        }
        assert!(l.len() <= 50, "{} keys", l.len());
        // Expired windows are swept first: old keys make room for new ones.
        let later = t0 + MIN + SWEEP_EVERY;
        l.record_at(20_000, later);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn addresses_are_bucketed_per_host() {
        let b = |s: &str| address_bucket(s.parse().unwrap());
        assert_eq!(b("192.0.2.1"), b("192.0.2.1"));
        assert_ne!(b("192.0.2.1"), b("192.0.2.2"));
        assert_eq!(b("2001:db8:0:1::1"), b("2001:db8:0:1:ffff::2"));
        assert_ne!(b("2001:db8:0:1::1"), b("2001:db8:0:2::1"));
        assert_eq!(b("::ffff:192.0.2.9"), b("192.0.2.9"));
    }
}
