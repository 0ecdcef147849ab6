//! Messages kept for a user with no available resource (XEP-0160): what a
//! store holds per message. The queue is bounded per user by the caller's
//! limit, and taking it hands each message to one caller only, so a message
//! is delivered once even when two nodes look at once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineMessage {
    /// When it was stored, in milliseconds since the Unix epoch (for the
    /// XEP-0203 delay stamp at delivery).
    pub stored_at: u64,
    /// The stanza as XML, its `from` already stamped by the sender's server.
    pub stanza: String,
}

/// The outcome of queueing an offline message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Stored,
    /// The user's queue holds its limit already.
    Full,
}
