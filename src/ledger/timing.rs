//! openraft's timers from the one `ledger.election_timeout` setting.
//!
//! openraft 0.9 makes the leader lease equal to `election_timeout_max`, and a
//! follower that heard from a leader waits the lease *plus* a random election
//! timeout in `[min, max)` before it stands. So failover after a leader dies is
//! `max + [min, max)` after its last heartbeat: with `max = 2 × min` that is 3–4
//! times the setting (3.2 s measured at 1 s). A narrow random window keeps it
//! at 2.25–2.5 times; a quarter of the setting is still far wider than a vote's
//! round trip on a LAN, so split votes stay rare (one costs another timeout).

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
    /// for election: the lease (openraft: the maximum timeout), then the
    /// longest random timeout.
    fn worst_failover(t: &RaftTimers) -> Duration {
        Duration::from_millis(t.election_max_ms * 2)
    }

    #[test]
    fn failover_stays_within_two_and_a_half_timeouts() {
        for ms in [200u64, 1000, 3000, 60_000] {
            let t = RaftTimers::for_election_timeout(Duration::from_millis(ms));
            assert!(t.election_min_ms < t.election_max_ms, "{t:?}");
            assert!(t.heartbeat_ms * 4 <= t.election_min_ms, "{t:?}");
            assert_eq!(worst_failover(&t), Duration::from_millis(ms * 5 / 2));
        }
        // The documented default: at most 2.5 s from the last heartbeat.
        let default = RaftTimers::for_election_timeout(Duration::from_secs(1));
        assert_eq!(worst_failover(&default), Duration::from_millis(2500));
    }
}
