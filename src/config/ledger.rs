//! `ledger.*`: the Raft-replicated invite ledger.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bounds::{count, duration, millis, secs};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Group commands that arrive together into one Raft entry.
    pub batching: bool,
    /// Shards (Raft groups) the ledger is split into; fixed at creation.
    pub shards: u32,
    /// How long a registration may hold an invite use before the janitor
    /// decides it by looking for the account.
    #[serde(with = "humantime_serde")]
    pub reservation_lease: Duration,
    /// How often the janitor looks for expired leases.
    #[serde(with = "humantime_serde")]
    pub janitor_interval: Duration,
    /// Raft entries between snapshots of a shard. A snapshot copies the shard's
    /// whole state, so with many pending invites a larger value trades a
    /// longer log (disk, restart replay) for less CPU. openraft's default of
    /// 5000 doubled the CPU per registration with a million invites pending.
    pub snapshot_every: u64,
    /// Sets the Raft timers of every shard: heartbeats every quarter of it;
    /// a follower stands for election after the leader's lease (1.25 × this)
    /// plus a random 1–1.25 × this without a heartbeat (checked every 1.5
    /// heartbeats), so a dead leader is replaced 2.25–2.875 × this after its
    /// last heartbeat. Shorter fails over
    /// faster; peers far apart (a round trip of a good fraction of it) need it
    /// longer. Every member should use the same value.
    #[serde(with = "humantime_serde")]
    pub election_timeout: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            batching: true,
            shards: 8,
            reservation_lease: Duration::from_secs(30),
            janitor_interval: Duration::from_secs(2),
            snapshot_every: 50_000,
            election_timeout: Duration::from_secs(1),
        }
    }
}

impl LedgerConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        count("ledger.shards", self.shards, 1, 1024)?;
        duration(
            "ledger.reservation_lease",
            self.reservation_lease,
            millis(200),
            secs(3600),
        )?;
        duration(
            "ledger.janitor_interval",
            self.janitor_interval,
            millis(100),
            secs(600),
        )?;
        count(
            "ledger.snapshot_every",
            self.snapshot_every,
            100,
            100_000_000,
        )?;
        duration(
            "ledger.election_timeout",
            self.election_timeout,
            millis(200),
            secs(60),
        )
    }
}
