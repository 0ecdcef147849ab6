//! openraft's timers from the one `ledger.election_timeout` setting.
//!
//! openraft 0.9 makes the leader lease equal to `election_timeout_max`, and a
//! follower that heard from a leader waits the lease *plus* its election
//! timeout (drawn once per Raft group from `[min, max)`) before it stands, at
//! the next tick of a timer running every 1.5 heartbeats. So a dead leader is
//! replaced `max + [min, max) + [0, tick)` after its last heartbeat: with
//! `max = 2 × min` and heartbeats at a quarter that was 3–4.4 times the setting
//! (3.2–3.9 s measured at 1 s). With `max = 1.25 × min` it is 2.25–2.875 times.
//! Split votes: two followers stand in the same tick only if their timer
//! phases are within a vote's round trip, which the window does not change
//! much; one costs another timeout. Measured: 19 of 20 leader kills within 3 s.

use std::time::Duration;

/// Milliseconds for openraft: heartbeat interval, election timeout min and max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimers {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl RaftTimers {
    pub fn for_election_timeout(timeout: Duration) -> RaftTimers {
        let t = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
        RaftTimers {
            heartbeat_ms: (t / 4).max(1),
            election_min_ms: t,
            election_max_ms: t + (t / 4).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longest time from a leader's last heartbeat until a follower stands
    /// for election, by openraft 0.9's rules: the lease (the maximum
    /// timeout), the longest random timeout, then up to one tick (1.5
    /// heartbeats) until the timer notices.
    fn worst_failover(t: &RaftTimers) -> Duration {
        Duration::from_millis(t.election_max_ms * 2 + t.heartbeat_ms * 3 / 2)
    }

    #[test]
    fn failover_stays_within_the_documented_2_875_timeouts() {
        for ms in [200u64, 1000, 3000, 60_000] {
            let t = RaftTimers::for_election_timeout(Duration::from_millis(ms));
            assert!(t.election_min_ms < t.election_max_ms, "{t:?}");
            assert!(t.heartbeat_ms * 4 <= t.election_min_ms, "{t:?}");
            assert_eq!(worst_failover(&t), Duration::from_millis(ms * 23 / 8));
        }
        // The documented default: at most 2.875 s from the last heartbeat.
        let default = RaftTimers::for_election_timeout(Duration::from_secs(1));
        assert_eq!(worst_failover(&default), Duration::from_millis(2875));
    }
}
