//! The node's one clock. Everything that stamps a time (ledger commands,
//! account records, audit events) reads it here, so tests and the ledger's
//! determinism argument have one place to look.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, for stamping ledger commands.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, for account records.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A duration in whole milliseconds, saturating (config values are bounded,
/// so nothing near the limit is ever reached).
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
